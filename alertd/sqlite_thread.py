"""One SQLite connection and the one thread that uses it, for the event loop.

Every call is one trip to the thread and back, and on a busy two-core server that trip costs about as much
as the SQL it carries (100-250 µs: a wake-up, the GIL, a wake-up). So work is handed over whole: `run`
takes a function of the connection, and a transaction of many statements (an engine commit, an outbox
claim) is one function and one trip, where a statement-at-a-time client (aiosqlite) costs one per statement.
The connection is used by this thread only; nothing else can interleave with a transaction in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from alertd.database import Row

T = TypeVar("T")


class SqliteThread:
    def __init__(self, executor: ThreadPoolExecutor, connection: sqlite3.Connection) -> None:
        self._executor = executor
        self._connection: sqlite3.Connection | None = connection

    @classmethod
    async def connect(cls, path: Path) -> SqliteThread:
        """Autocommit mode (isolation_level None): transactions are explicit BEGIN ... COMMIT."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alertd-sqlite")
        loop = asyncio.get_running_loop()
        try:
            connection = await loop.run_in_executor(
                executor, lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, connection)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(connection) in the connection's thread. Cancelling the caller does not stop fn once begun."""
        connection = self._connection
        if connection is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, connection)

    async def transact(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn inside BEGIN IMMEDIATE ... COMMIT (in_transaction), in one trip."""
        return await self.run(lambda connection: in_transaction(connection, fn))

    def out_of_room(self, err: BaseException) -> bool:
        return isinstance(err, sqlite3.OperationalError) and err.sqlite_errorcode & 0xFF in (
            sqlite3.SQLITE_FULL,
            sqlite3.SQLITE_IOERR,
        )

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self.run(lambda c: c.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        def one(c: sqlite3.Connection) -> Row | None:
            row: Row | None = c.execute(sql, params).fetchone()
            return row

        return await self.run(one)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self.run(lambda c: c.execute(sql, params).close())

    async def executescript(self, script: str) -> None:
        await self.run(lambda c: c.executescript(script).close())

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, connection.close)
        finally:
            self._executor.shutdown(wait=False)


def in_transaction(connection: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """fn inside BEGIN IMMEDIATE ... COMMIT, rolled back if it or the COMMIT fails. In the thread."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = fn(connection)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:  # a failed COMMIT may have rolled back already
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise
    return result
