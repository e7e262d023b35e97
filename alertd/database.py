"""What the store needs of a database connection: the shape both SQLite's and PostgreSQL's have.

The store's SQL is written once, in the dialect both accept (upserts with ON CONFLICT, CASE in sums, `?`
marks that alertd.postgres_thread turns into psycopg's `%s`), and handed to the connection's own thread in
whole transactions: the engine's commit is one function and one trip, on either database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Row = tuple[Any, ...]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def close(self) -> None: ...


class Connection(Protocol):
    """sqlite3.Connection, or alertd.postgres_thread's psycopg connection speaking the same SQL."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...


class Database(Protocol):
    """One connection and the one thread that uses it (alertd.sqlite_thread, alertd.postgres_thread)."""

    async def run(self, fn: Callable[[Connection], T]) -> T:
        """fn(connection) in the connection's thread, outside any transaction (reads)."""
        ...

    async def transact(self, fn: Callable[[Connection], T]) -> T:
        """fn in one write transaction, committed, or rolled back if fn or the commit fails."""
        ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    async def close(self) -> None: ...

    def out_of_room(self, err: BaseException) -> bool:
        """Whether a failed write failed for lack of disk (or an I/O error): retried, never a crash."""
        ...
