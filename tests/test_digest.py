"""The daily readiness digest goes out at digest_at local time, once a day, and is caught up only after
downtime across digest time, within the catch-up window, and never on a new store's first start."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alertd.core import digest
from alertd.core.events import Tick
from alertd.core.messages import Texts
from alertd.engine import Engine
from alertd.metrics import Metrics
from alertd.store import OutboxRow, Store
from tests.test_core_incidents import make_roster

ZONE = ZoneInfo("Asia/Shanghai")
AT = dt.time(8, 0)
HOUR = 3600.0


def local(day: int, hour: int, minute: int = 0) -> float:
    """An instant in Dandong, December 2026; no test reads the machine's clock or time zone."""
    return dt.datetime(2026, 12, day, hour, minute, tzinfo=ZONE).timestamp()


# --- the schedule, pure -------------------------------------------------------------------------------


def test_previous_and_following_are_on_the_local_calendar() -> None:
    assert digest.previous(local(3, 18, 40), AT, ZONE) == digest.Occurrence("2026-12-03", local(3, 8))
    assert digest.previous(local(3, 3), AT, ZONE) == digest.Occurrence("2026-12-02", local(2, 8))
    assert digest.previous(local(3, 8), AT, ZONE).at == local(3, 8)  # at the minute itself: due
    assert digest.following(local(3, 3), AT, ZONE) == digest.Occurrence("2026-12-03", local(3, 8))
    assert digest.following(local(3, 8), AT, ZONE) == digest.Occurrence("2026-12-04", local(4, 8))
    # 00:30 in Dandong is still the previous day in UTC: the local day names the digest.
    assert digest.following(local(4, 0, 30), AT, ZONE).day == "2026-12-04"


def test_following_after_a_long_stall_is_the_next_one_not_a_burst_of_missed_days() -> None:
    assert digest.following(local(9, 12), AT, ZONE) == digest.Occurrence("2026-12-10", local(10, 8))


@pytest.mark.parametrize(
    ("now", "in_use_since", "last_day", "expected"),
    [
        # A fresh install started in the evening waits for tomorrow morning.
        (local(3, 18, 40), None, None, local(4, 8)),
        # A fresh install started before 08:00 sends today's at 08:00.
        (local(3, 3), None, None, local(3, 8)),
        # Down at 08:00, back at 09:30: the missed digest goes out now (its time is in the past).
        (local(3, 9, 30), local(1, 12), "2026-12-02", local(3, 8)),
        # Down at 08:00, back at 10:01: outside the 2 h window, wait for tomorrow.
        (local(3, 10, 1), local(1, 12), "2026-12-02", local(4, 8)),
        # Up at 08:00 (today's planned), restarted at 09:00: never twice.
        (local(3, 9), local(1, 12), "2026-12-03", local(4, 8)),
        # The store first used at 08:20, restarted at 08:40: there was no alertd at 08:00 to miss it.
        (local(3, 8, 40), local(3, 8, 20), None, local(4, 8)),
        # A store from before the meta table counts as in use since the epoch.
        (local(3, 9), 0.0, None, local(3, 8)),
        # A restart at 03:00: today's comes at 08:00 as usual; yesterday's is long past the window.
        (local(3, 3), local(1, 12), "2026-12-01", local(3, 8)),
    ],
)
def test_first_digest_after_a_start(
    now: float, in_use_since: float | None, last_day: str | None, expected: float
) -> None:
    due = digest.first_due(now, AT, ZONE, in_use_since=in_use_since, last_day=last_day, catch_up_s=2 * HOUR)
    assert due.at == expected


# --- the engine, with a real store ---------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def run_engine(store: Store, clock: Clock, *advances: float) -> None:
    """Start an engine on the store, let it tick through each advance of the clock, stop it."""
    eng = Engine(
        store, make_roster(), Texts(ZONE), Metrics(), clock=clock, supervision_interval_s=60, digest_at=AT,
        digest_catch_up_s=2 * HOUR,
    )  # fmt: skip
    task = asyncio.create_task(eng.run())
    try:
        await asyncio.wait_for(eng.call(Tick()), 5)
        for seconds in advances:
            clock.now += seconds
            await asyncio.wait_for(eng.call(Tick()), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def digests(store: Store) -> list[OutboxRow]:
    return [n for n in await store.notifications() if n.incident_id is None]


async def test_a_fresh_install_started_in_the_evening_sends_no_digest_until_the_next_morning(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "alertd.db")
    clock = Clock(local(3, 18, 40))
    try:
        await run_engine(store, clock, 60, 12 * HOUR)  # 18:41, then 06:41 next morning
        assert await digests(store) == []
        await run_engine(store, clock, 1.5 * HOUR)  # a restart at 06:41, then 08:11
        [row] = await digests(store)
    finally:
        await store.close()
    assert row.key.startswith("digest:g1:2026-12-04:")


async def test_a_restart_after_digest_time_does_not_send_it_again(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "alertd.db")
    clock = Clock(local(3, 7, 50))
    try:
        await run_engine(store, clock, 15 * 60)  # sent at 08:05
        assert len(await digests(store)) == 1
        clock.now += 60
        await run_engine(store, clock, 60)  # restarted at 08:06
        await run_engine(store, clock, 3 * HOUR)  # and at 08:07, then 11:07
        rows = await digests(store)
    finally:
        await store.close()
    assert [r.key.split(":")[2] for r in rows] == ["2026-12-03"]


@pytest.mark.parametrize(("back_at", "caught_up"), [((4, 9, 30), True), ((4, 10, 30), False)])
async def test_a_digest_missed_while_down_is_caught_up_only_within_the_window(
    tmp_path: Path, back_at: tuple[int, int, int], caught_up: bool
) -> None:
    store = await Store.open(tmp_path / "alertd.db")
    clock = Clock(local(3, 7, 50))
    try:
        await run_engine(store, clock, 15 * 60)  # the 3rd's at 08:00
        clock.now = local(*back_at)  # down from 08:05 on the 3rd across 08:00 on the 4th
        await run_engine(store, clock, 60)
        days = [r.key.split(":")[2] for r in await digests(store)]
    finally:
        await store.close()
    assert days == (["2026-12-03", "2026-12-04"] if caught_up else ["2026-12-03"])
