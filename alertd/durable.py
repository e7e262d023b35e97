"""Committing a batch however long it takes: the store's disk may fill, and alarms must wait, not die.

Until a batch is on disk nothing in it is acknowledged to the broker or the receivers, so alarms wait
there, safe. The first commit that fails for lack of space gives up the reserve (alertd.reserve) and is
retried at once in the space it freed; the duty room is told. With no reserve left, commits are retried
with backoff and reported (healthz, metrics, one log line) until there is room.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from alertd.core.incidents import Channel
from alertd.core.records import Batch
from alertd.errors import StoreFull
from alertd.metrics import Metrics
from alertd.reserve import Reserve
from alertd.store import Claim, OutboxRow, Store

_LOGGER = logging.getLogger("alertd.engine")

RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0
RELAY_INTERVAL_S = 10.0  # while on the reserve, how often to look for room to lay it again

# Plans the duty room's message into the batch: (full, now, batch).
TellDuty = Callable[[bool, float, Batch], None]


class DurableCommit:
    def __init__(self, store: Store, metrics: Metrics, reserve: Reserve | None, tell_duty: TellDuty) -> None:
        self.store = store
        self.metrics = metrics
        self.reserve = reserve
        self.tell_duty = tell_duty
        self.failure: str | None = None  # why commits are failing right now
        self.on_reserve = False  # the disk filled; running on the reserve until there is room again
        self._next_relay = 0.0

    async def commit(
        self, batch: Batch, claims: Mapping[Channel, Claim] | None = None
    ) -> dict[Channel, list[OutboxRow]]:
        """The batch on disk, and the outbox rows claimed with it (Store.commit)."""
        delay = RETRY_MIN_S
        while True:
            try:
                claimed = await self.store.commit(batch, claims)
            except StoreFull as err:
                self.metrics.store_writable.set(0)
                if self.reserve is not None and await self.reserve.release():
                    self.on_reserve = True
                    _LOGGER.error(
                        "Disk full (%s): gave up the %d-byte reserve to keep recording alarms; telling the duty room",
                        err, self.reserve.size,
                    )  # fmt: skip
                    self.tell_duty(True, batch.now, batch)
                    continue
                if self.failure is None:
                    _LOGGER.error(
                        "Cannot commit (%s): alarms stay unacknowledged at the broker; retrying until there is room",
                        err,
                    )
                self.failure = str(err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            else:
                break
        if self.failure is not None:
            _LOGGER.info("Commits go through again")
            self.failure = None
        self.metrics.store_writable.set(1)
        return claimed

    async def relay_reserve(self, batch: Batch) -> None:
        """While on the reserve: lay it again once there is room, and tell the duty room."""
        if not self.on_reserve or self.reserve is None or batch.now < self._next_relay:
            return
        self._next_relay = batch.now + RELAY_INTERVAL_S
        if await self.reserve.lay():
            _LOGGER.info("Disk has room again: the %d-byte reserve is back in place", self.reserve.size)
            self.on_reserve = False
            self.tell_duty(False, batch.now, batch)
