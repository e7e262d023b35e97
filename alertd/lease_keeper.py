"""Keeping the lease (issue 15): the loop that makes this instance a standby, then the active, and stops it
acting the moment it may not (alertd/core/lease.py decides; alertd/lease_table.py reads and writes the row).

The keeper has its own connection, so a renewal never waits behind a long commit. A standby looks at the row
every `look_every_s` and takes the lease once it has expired; the active renews every `renew_every_s` and
answers three questions for the rest of the daemon:
* `may_act()`: may a message go to a carrier now? (by the monotonic clock: false before any standby can
  take over, even when the database no longer answers);
* `fence(conn)`: the first statement of every write transaction (alertd.postgres_thread), which fails once
  another instance holds the lease;
* `hold()`: returns never; raises Deposed when the lease is lost or lapses, which stops the daemon at once
  (systemd starts it again, as a standby).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, NoReturn

import psycopg

from alertd.core.lease import Move, Standing, Timing, after_read, after_write, move
from alertd.lease_table import Deposed, LeaseTable
from alertd.postgres_thread import DEAD_LINK, safe_url
from alertd.ratelog import RateLimitedLog

_LOGGER = logging.getLogger("alertd.standby")
CONNECT_TIMEOUT_S = 3
RETRY_S = 0.2  # after a failed renewal: try again this soon while there is still time


class LeaseKeeper:
    def __init__(
        self,
        url: str,
        me: str,
        timing: Timing,
        *,
        table: LeaseTable | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        on_lost: Callable[[Deposed], None] | None = None,
    ) -> None:
        self.url = url
        self.me = me
        self.timing = timing
        self.table = table or LeaseTable()
        self.monotonic = monotonic
        # Called the moment the lease is lost or lapses, before Deposed is raised: the daemon exits there and
        # then (a commit hung on a database that no longer answers must not hold the exit up).
        self.on_lost = on_lost
        self.standing = Standing()
        self.problem: str | None = "lease not read yet"  # why the database cannot be read now (for /healthz)
        self.took_at: float | None = None  # monotonic, when this instance became active
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._log = RateLimitedLog(_LOGGER)

    # --- what the daemon asks ------------------------------------------------------------------------

    def may_act(self) -> bool:
        return self.standing.may_act(self.monotonic())

    def fence(self, conn: psycopg.Connection[Any]) -> None:
        """In the store's thread, first in each write transaction: Deposed unless the lease is still ours."""
        standing = self.standing  # one read: the keeper replaces it whole, never edits it
        if standing.token is None or not standing.may_act(self.monotonic()):
            raise Deposed(f"{self.me} is not active (its lease lapsed or was taken)")
        self.table.fence_sync(conn, self.me, standing.token)

    def role(self) -> dict[str, object]:
        """What /healthz and `alertd status` show: this instance's role and who is active."""
        active = self.standing.active
        return {
            "role": "active" if active else "standby",
            "instance": self.me,
            "active": self.standing.active_holder or None,
            "token": self.standing.token,
            "database": self.problem or "ok",
        }

    # --- the loops -----------------------------------------------------------------------------------

    async def wait_active(self) -> None:
        """As a standby: look at the lease until it is free, then take it. Returns once active."""
        while True:
            look = asyncio.create_task(self._look())
            if not (await asyncio.wait({look}, timeout=CONNECT_TIMEOUT_S))[0]:
                # /healthz says so now; the look itself ends when the connection fails (TCP keepalives,
                # tcp_user_timeout): cancelling psycopg mid-query would wait seconds for a cancel request.
                self.problem = f"database unreachable: no answer in {CONNECT_TIMEOUT_S} s"
            await look
            if self.standing.active:
                self.took_at = self.monotonic()
                _LOGGER.warning("Active now: took the lease (token %d)", self.standing.token)
                return
            await asyncio.sleep(self.timing.look_every_s)

    async def _look(self) -> None:
        """Read the lease, and take it if it is free; a failure is reported (problem), never raised."""
        try:
            conn = await self._connection()
            row = await self.table.read(conn)
            self.standing = after_read(self.standing, self.me, row)
            if move(row, self.me) != Move.WAIT:
                asked = self.monotonic()
                written = await self.table.take(conn, self.me, self.timing.lease_s)
                self.standing = after_write(self.standing, self.me, written, asked, self.timing)
            self.problem = None
        except (psycopg.Error, OSError) as err:
            self._lost_connection(err)

    async def hold(self) -> NoReturn:
        """As the active: renew the lease until it is lost or lapses, then raise Deposed.

        The renewals run in a task of their own, and this loop only watches the clock: a renewal that hangs
        (a database that stopped answering, not even with a reset) must not keep the active acting."""
        renewing = asyncio.create_task(self._renewing(), name="lease-renewals")
        try:
            while True:
                standing = self.standing
                if standing.token is None:
                    self._lost(f"another instance ({standing.active_holder or 'unknown'}) took the lease")
                left = standing.acts_until - self.monotonic()
                if left <= 0:
                    self._lost(f"the lease could not be renewed in time ({self.problem or 'no answer'})")
                await asyncio.sleep(left)  # then look again: a renewal in the meantime moved acts_until on
        finally:
            renewing.cancel()

    async def _renewing(self) -> None:
        while (token := self.standing.token) is not None:
            renewed_at = self.standing.acts_until - self.timing.acts_for_s  # when the standing renewal was asked
            await asyncio.sleep(max(0.0, renewed_at + self.timing.renew_every_s - self.monotonic()))
            if self.standing.may_act(self.monotonic()):
                await self._renew(token)

    def _lost(self, why: str) -> NoReturn:
        err = Deposed(f"{self.me}: {why}")
        if self.on_lost is not None:
            self.on_lost(err)
        raise err

    async def _renew(self, token: int) -> None:
        asked = self.monotonic()
        try:
            conn = await self._connection()
            written = await self.table.renew(conn, self.me, token, self.timing.lease_s)
        except (psycopg.Error, OSError) as err:
            self._lost_connection(err)
            await asyncio.sleep(RETRY_S)
            return
        self.problem = None
        self.standing = after_write(self.standing, self.me, written, asked, self.timing)

    async def release(self) -> None:
        """A clean stop of the active: let the lease go, so a standby takes over at its next look."""
        token = self.standing.token
        self.standing = Standing(None, 0.0, "")
        if token is None or self._conn is None:
            return
        with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                if await self.table.release(self._conn, self.me, token):
                    _LOGGER.info("Lease released: a standby takes over now")

    # --- the connection ------------------------------------------------------------------------------

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, application_name=f"alertd {self.me} lease",
                connect_timeout=CONNECT_TIMEOUT_S, **DEAD_LINK,
            )  # fmt: skip
            await self.table.setup(self._conn)
        return self._conn

    def _lost_connection(self, err: BaseException) -> None:
        self.problem = f"database unreachable: {str(err).strip() or type(err).__name__}"
        self._log.warning_for("lease", "Lease: %s (%s)", self.problem, safe_url(self.url))
        conn, self._conn = self._conn, None
        if conn is not None:
            # Not awaited: a connection cut off may never answer a goodbye.
            conn.pgconn.finish()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await conn.close()
