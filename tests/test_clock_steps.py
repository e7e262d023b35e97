"""Timers run on the monotonic clock: a step of the wall clock (NTP after drifting offline) neither delays
nor fires escalation, nor reopens deduplication windows. The real daemon runs under libfaketime, whose
wall clock the test steps while the monotonic clock stays real."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from alertd.clock import SteadyClock
from alertd.store import Store
from tests.fakes.twilio_server import TwilioServer
from tests.harness import (
    GRID_PHONE,
    WAIT_S,
    DaemonProcess,
    forget_session,
    leader_phone,
    terminals,
    write_village,
)


class Clocks:
    wall = 1_800_000_000.0
    monotonic = 500.0


def test_the_steady_clock_follows_monotonic_time_and_reports_a_step_once(caplog: pytest.LogCaptureFixture) -> None:
    clocks = Clocks()
    clock = SteadyClock(wall=lambda: clocks.wall, monotonic=lambda: clocks.monotonic)
    assert clock() == 1_800_000_000.0
    clocks.wall += 10
    clocks.monotonic += 10
    assert clock() == 1_800_000_010.0
    assert clock.check() is None
    clocks.wall += 1 - 3600  # a second passes, and NTP steps the clock back an hour
    clocks.monotonic += 1
    with caplog.at_level(logging.WARNING):
        assert clock.check() == pytest.approx(-3600)
        assert clock.check() is None  # one line per step
    assert clock() == 1_800_000_011.0
    assert clock.offset == pytest.approx(-3600)
    assert len([r for r in caplog.records if "Wall clock stepped" in r.message]) == 1
    clocks.wall += 0.5  # slewing, not a step
    assert clock.check() is None


@pytest.mark.parametrize("step", ["+3600", "-3600"])
async def test_a_wall_clock_step_neither_fires_nor_delays_escalation(
    tmp_path: Path, twilio: TwilioServer, step: str
) -> None:
    clock_file = tmp_path / "wall-offset"
    clock_file.write_text("+0\n", encoding="utf-8")
    village = write_village(tmp_path, twilio=twilio, steps=(0, 4, 60))
    daemon = DaemonProcess(village, tmp_path / "daemon.log", clock_file=clock_file)
    try:
        async with terminals(village) as sims:
            await daemon.start()
            await sims.alarm("t1-2", "fire", seq=1)
            await sims.wait_until(lambda: len(sims.rings(1)) == 9)
            await twilio.wait_for_messages(3)
            opened = asyncio.get_running_loop().time()
            clock_file.write_text(f"{step}\n", encoding="utf-8")
            # A forward step must not fire step 1 (the grid worker, due 4 s after opening) early...
            await asyncio.sleep(2.0)
            assert GRID_PHONE not in {m.to for m in twilio.messages}, "step 1 fired early"
            # ...nor make a redelivered alarm look new.
            await sims.alarm("t1-2", "fire", seq=1)
            # A backward step must not hold it for an hour: it comes about 4 s after the alarm.
            async with asyncio.timeout(WAIT_S):
                while GRID_PHONE not in {m.to for m in twilio.messages}:
                    await asyncio.sleep(0.05)
            took = asyncio.get_running_loop().time() - opened
            await sims.ack("t1-5")  # the leader
            await sims.wait_until(lambda: len(sims.stops(1)) == 9)
            assert await daemon.terminate() == 0
    finally:
        await daemon.kill()
        await forget_session(village)
    assert 1.0 < took < 6.0
    assert len(sims.rings()) == 9, "the redelivered alarm rang again"
    store = await Store.open(village.store_path, readonly=True)
    try:
        incident = await store.incident(1)
        assert await store.incident(2) is None
    finally:
        await store.close()
    assert incident is not None
    assert incident.acknowledged_at is not None
    assert 0 < incident.acknowledged_at - incident.opened_at < 30
    log = (tmp_path / "daemon.log").read_text(encoding="utf-8")
    assert log.count("Wall clock stepped") == 1
    assert leader_phone(1) in {m.to for m in twilio.messages}
