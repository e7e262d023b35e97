"""The lease of alertd/core/lease.py in PostgreSQL (issue 15): one row, written only by conditional UPDATEs
on the database's clock, and the fence every commit and claim of the active takes in its own transaction.

The fence reads the row FOR SHARE: a standby's takeover (an UPDATE of that row) waits until the active's
transaction in flight has finished, and the active's next transaction finds the token moved on and fails.
So a deposed active can commit nothing after a takeover, even before it learns it was deposed.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from alertd.core.lease import LeaseRow
from alertd.errors import Deposed

# The database's clock, so that the instances' own clocks never have to agree. The SQL is composed with
# psycopg.sql: the table's name is an identifier, the values are parameters.
_NOW = "extract(epoch from clock_timestamp())"
_ROW = "holder, token, expires_at, " + _NOW

__all__ = ["Deposed", "LeaseTable"]


class LeaseTable:
    """The lease row's reads and writes, on connections the caller owns."""

    def __init__(self, table: str = "alertd_lease") -> None:
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        self.table = table

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text.replace("{now}", _NOW).replace("{row}", _ROW)).format(table=sql.Identifier(self.table))

    async def setup(self, conn: psycopg.AsyncConnection[Any]) -> None:
        async with conn.transaction():
            await conn.execute(
                self._q(
                    "CREATE TABLE IF NOT EXISTS {table} (id integer PRIMARY KEY CHECK (id = 1), "
                    "holder text NOT NULL DEFAULT '', token bigint NOT NULL DEFAULT 0, "
                    "expires_at double precision NOT NULL DEFAULT 0)"
                )
            )
            await conn.execute(self._q("INSERT INTO {table} (id) VALUES (1) ON CONFLICT DO NOTHING"))

    async def read(self, conn: psycopg.AsyncConnection[Any]) -> LeaseRow:
        cur = await conn.execute(self._q("SELECT {row} FROM {table} WHERE id = 1"))
        return _row(await cur.fetchone())

    async def take(self, conn: psycopg.AsyncConnection[Any], me: str, ttl_s: float) -> LeaseRow | None:
        """The lease with the next token, if nobody holds it or its holder's time ran out; else None."""
        cur = await conn.execute(
            self._q(
                "UPDATE {table} SET holder = %(me)s, token = token + 1, expires_at = {now} + %(ttl)s "
                "WHERE id = 1 AND (holder = '' OR expires_at <= {now}) RETURNING {row}"
            ),
            {"me": me, "ttl": ttl_s},
        )
        found = await cur.fetchone()
        return None if found is None else _row(found)

    async def renew(self, conn: psycopg.AsyncConnection[Any], me: str, token: int, ttl_s: float) -> LeaseRow | None:
        """Pushed on, if it is still ours with this token and not expired; else None (deposed or lapsed)."""
        cur = await conn.execute(
            self._q(
                "UPDATE {table} SET expires_at = {now} + %(ttl)s "
                "WHERE id = 1 AND holder = %(me)s AND token = %(token)s AND expires_at > {now} RETURNING {row}"
            ),
            {"me": me, "token": token, "ttl": ttl_s},
        )
        found = await cur.fetchone()
        return None if found is None else _row(found)

    def holder_query(self) -> sql.Composed:
        """Who holds the lease now (no row: nobody, or it expired), for `alertd status`."""
        return self._q("SELECT holder FROM {table} WHERE id = 1 AND holder <> '' AND expires_at > {now}")

    def _fence_query(self) -> sql.Composed:
        return self._q(
            "SELECT 1 FROM {table} WHERE id = 1 AND holder = %(me)s AND token = %(token)s "
            "AND expires_at > {now} FOR SHARE"
        )

    async def fence(self, conn: psycopg.AsyncConnection[Any], me: str, token: int) -> None:
        """Inside the caller's transaction, before it writes: Deposed unless the lease is still ours."""
        cur = await conn.execute(self._fence_query(), {"me": me, "token": token})
        if await cur.fetchone() is None:
            raise Deposed(f"{me} no longer holds the lease with token {token}")

    def fence_sync(self, conn: psycopg.Connection[Any], me: str, token: int) -> None:
        """fence, on the store's own (synchronous) connection, in its thread (alertd.postgres_thread)."""
        if conn.execute(self._fence_query(), {"me": me, "token": token}).fetchone() is None:
            raise Deposed(f"{me} no longer holds the lease with token {token}")

    async def release(self, conn: psycopg.AsyncConnection[Any], me: str, token: int) -> bool:
        """Let the lease go now (a clean stop): a standby takes over at its next look, not at the expiry."""
        cur = await conn.execute(
            self._q("UPDATE {table} SET expires_at = {now} WHERE id = 1 AND holder = %(me)s AND token = %(token)s"),
            {"me": me, "token": token},
        )
        return cur.rowcount == 1


def _row(found: tuple[Any, ...] | None) -> LeaseRow:
    if found is None:
        raise RuntimeError("the lease row is missing: setup() was not run")
    holder, token, expires_at, now = found
    return LeaseRow(str(holder), int(token), float(expires_at), float(now))
