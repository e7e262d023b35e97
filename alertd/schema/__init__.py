"""The store's schema, one SQL file per version: NNNN_what.sql is version NNNN (as zigpy's appdb keeps its
schemas). alertd.store applies, in order and each in its own transaction, the files a store has not seen yet.

A shipped file is never edited, since stores in the field already ran it: a change is a new file with the
next number. The statements keep the four-space indentation they had inside store.py, where they lived
until version 9: SQLite stores a CREATE statement's text as written (sqlite_master), so a store created
now has byte for byte the schema of one created before they moved.
"""
