"""alertd/sqlite_thread.py: whole transactions in the connection's own thread, on a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from alertd.sqlite_thread import SqliteThread, in_transaction


async def test_a_transaction_that_fails_leaves_nothing(tmp_path: Path) -> None:
    db = await SqliteThread.connect(tmp_path / "t.db")
    try:
        await db.execute("CREATE TABLE t (a INTEGER)")

        def half_then_fail(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("a bug halfway through a commit")

        with pytest.raises(RuntimeError, match="halfway"):
            await db.run(lambda c: in_transaction(c, half_then_fail))
        assert await db.fetchall("SELECT a FROM t") == []
        await db.run(lambda c: in_transaction(c, lambda c: c.execute("INSERT INTO t VALUES (2)").close()))
        assert await db.fetchall("SELECT a FROM t") == [(2,)]
        assert not await db.run(lambda c: c.in_transaction)
    finally:
        await db.close()


async def test_every_call_runs_in_one_thread_that_is_not_the_loops(tmp_path: Path) -> None:
    db = await SqliteThread.connect(tmp_path / "t.db")
    try:
        names = await asyncio.gather(*(db.run(lambda _c: threading.current_thread().name) for _ in range(20)))
    finally:
        await db.close()
    assert len(set(names)) == 1
    assert names[0] != threading.current_thread().name
    assert names[0].startswith("alertd-sqlite")


async def test_concurrent_transactions_do_not_interleave(tmp_path: Path) -> None:
    # Each transaction reads the counter and writes it back one higher: interleaved, some increments
    # would be lost (or SQLite would refuse a nested BEGIN).
    db = await SqliteThread.connect(tmp_path / "t.db")
    try:
        await db.execute("CREATE TABLE n (v INTEGER)")
        await db.execute("INSERT INTO n VALUES (0)")

        def bump(c: sqlite3.Connection) -> None:
            (v,) = c.execute("SELECT v FROM n").fetchone()
            c.execute("UPDATE n SET v = ?", (v + 1,))

        await asyncio.gather(*(db.run(lambda c: in_transaction(c, bump)) for _ in range(50)))
        assert await db.fetchone("SELECT v FROM n") == (50,)
    finally:
        await db.close()


async def test_a_closed_connection_refuses_work(tmp_path: Path) -> None:
    db = await SqliteThread.connect(tmp_path / "t.db")
    await db.close()
    await db.close()  # twice is fine
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        await db.fetchall("SELECT 1")
