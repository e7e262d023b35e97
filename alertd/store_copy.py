"""`alertd migrate`: copy an SQLite store into the PostgreSQL at [store] url (issue 15), once, with alertd stopped.

The SQLite store is first brought to this alertd's schema (opening it does that), the PostgreSQL one is made
with the same schema (alertd.postgres_thread translates it), and every table is copied whole in one
transaction (COPY), keeping every id: incident numbers, the SMS reply codes (#17) that name them, and the
console's accounts carry on. The identity counters are then moved past the copied ids. The target must be
empty and nobody may hold its lease: a copy over a store in use would mix two histories.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from alertd.errors import StoreError, StoreUnavailable
from alertd.lease_table import LeaseTable
from alertd.postgres_thread import safe_url
from alertd.store import Store

# Parents before the tables that refer to them (the foreign keys are checked row by row).
_FIRST = ("incidents", "users")


@dataclass(frozen=True, slots=True)
class Copied:
    tables: dict[str, int]  # rows copied, by table

    def summary(self) -> str:
        return ", ".join(f"{n} {t}" for t, n in self.tables.items() if n)


async def copy_store(source: Path, url: str, cache: Path) -> Copied:
    """Copy the SQLite store at `source` into the empty PostgreSQL store at `url`."""
    if not await asyncio.to_thread(source.is_file):
        raise StoreError(f"{source}: no SQLite store here (the old [store] path)")
    await (await Store.open(source)).close()  # checks it is ours, and brings it to this alertd's schema
    await (await Store.open_postgres(url, cache=cache)).close()  # the same schema, made if new
    return Copied(await asyncio.to_thread(_copy, source, url))


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _tables(db: sqlite3.Connection) -> list[str]:
    names = [
        str(r[0])
        for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    ]
    return [t for t in _FIRST if t in names] + sorted(t for t in names if t not in _FIRST)


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")]  # a name from sqlite_master


def _copy(source: Path, url: str) -> dict[str, int]:
    """In one PostgreSQL transaction: refuse a target in use, copy every table, move the id counters on."""
    name = safe_url(url)  # in messages: never the password
    copied: dict[str, int] = {}
    # A file name, not a URI: '?', '#' or '%' in the path must not cut it short (SQLite would open another
    # database, empty, and the copy would "succeed" with nothing). Closed on the way out, not just committed.
    with contextlib.closing(sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True)) as lite:
        lite.execute("BEGIN")  # every table read as of one moment
        tables = _tables(lite)
        try:
            pg = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as err:
            raise StoreUnavailable(f"{name}: cannot connect: {_first_line(err)}") from err
        with pg, pg.transaction():  # the check and the copy in one transaction: all of it, or nothing
            _refuse_in_use(pg, name, tables)
            for table in tables:
                try:
                    copied[table] = _copy_table(lite, pg, table)
                except psycopg.OperationalError as err:
                    raise StoreUnavailable(f"{name}: copying {table}: {_first_line(err)}") from err
                except psycopg.Error as err:  # a row PostgreSQL refuses: nothing is copied
                    raise StoreError(f"{name}: copying {table}, nothing copied: {_first_line(err)}") from err
    return copied


def _copy_table(lite: sqlite3.Connection, pg: psycopg.Connection[Any], table: str) -> int:
    columns = _columns(lite, table)
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)  # `key`, `groups`: keywords to SQLite
    rows = lite.execute(f'SELECT {quoted} FROM "{table}"')  # noqa: S608 (names from the schema)
    count = 0
    with pg.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), names)) as cp:
        for row in rows:
            cp.write_row(row)
            count += 1
    if "id" in columns:
        _move_identity_on(pg, table)
    return count


def _refuse_in_use(pg: psycopg.Connection[Any], name: str, tables: list[str]) -> None:
    """Inside the copy's transaction. The lease row is locked first (an instance starting now waits for the
    copy to end), then every table the copy writes (no write can slip in between the check and the copy)."""
    lease = LeaseTable()
    held = None
    if _has_lease(pg):
        pg.execute(sql.SQL("SELECT 1 FROM {} WHERE id = 1 FOR UPDATE").format(sql.Identifier(lease.table)))
        held = pg.execute(lease.holder_query()).fetchone()
    pg.execute(
        sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(sql.SQL(", ").join(map(sql.Identifier, tables)))
    )
    # Every table, not just the incidents: a daemon's first start writes meta before any alarm, and a
    # duplicate key halfway through the copy would say less than this.
    for table in tables:
        found = pg.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        if found and found[0]:
            raise StoreError(f"{name}: the database already holds an alertd store ({found[0]} rows in {table}); "
                             "alertd migrate copies into an empty one only")  # fmt: skip
    if held is not None:
        raise StoreError(f"{name}: instance {held[0]} is running on this database; stop every alertd first")


def _has_lease(pg: psycopg.Connection[Any]) -> bool:
    row = pg.execute("SELECT to_regclass(%s)", (LeaseTable().table,)).fetchone()
    return row is not None and row[0] is not None


def _move_identity_on(pg: psycopg.Connection[Any], table: str) -> None:
    """The next id PostgreSQL gives is past every copied one (a copied id is given, not drawn)."""
    sequence = pg.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,)).fetchone()
    if sequence is None or sequence[0] is None:
        return  # a table whose id is no number (devices)
    pg.execute(
        sql.SQL("SELECT setval(%s, (SELECT coalesce(max(id), 0) + 1 FROM {}), false)").format(sql.Identifier(table)),
        (sequence[0],),
    )
