"""The engine on a real store with a fake clock, run in the test's loop: what the core's rules are tested
through (tests/test_responders.py, test_voice_core.py, test_drills.py, test_check_ins.py, test_storm.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from alertd.core.events import Input
from alertd.core.incidents import Channel, Incident
from alertd.core.messages import Texts
from alertd.core.model import Roster
from alertd.core.storm import Storm
from alertd.engine import Engine
from alertd.metrics import Metrics
from alertd.store import OutboxRow, Store

T0 = 1_800_000_000.0  # 2027-01-15 16:00 in Asia/Shanghai


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    store: Store
    clock: Clock
    engine: Engine

    async def call(self, item: Input) -> str:
        """Submit and wait for the commit: the result in words."""
        return str(await asyncio.wait_for(self.engine.call(item), 5))

    async def incident(self, incident_id: int = 1) -> Incident:
        incident = await self.store.incident(incident_id)
        assert incident is not None
        return incident

    async def texts(self, step: int | None = None, incident_id: int = 1) -> list[OutboxRow]:
        rows = await self.store.notifications(incident_id)
        return [r for r in rows if r.channel == Channel.SMS and (step is None or r.step == step)]


@contextlib.asynccontextmanager
async def rig_for(
    path: Path, roster: Roster, clock: Clock | None = None, *, storm: Storm | None = None
) -> AsyncIterator[Rig]:
    store = await Store.open(path)
    clock = clock or Clock()
    engine = Engine(store, roster, Texts(ZoneInfo("Asia/Shanghai")), Metrics(), clock=clock, storm=storm)
    task = asyncio.create_task(engine.run())
    try:
        yield Rig(store, clock, engine)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
