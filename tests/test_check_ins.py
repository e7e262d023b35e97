"""平安键: a household living alone shows a sign of life each day by its check-in time, or its leader and grid
worker are told (never the neighbours' terminals); the next sign of life closes it; a pause while away.
Through the engine and a real store, with a fake clock (T0 is 16:00 in Asia/Shanghai)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from alertd.core.events import Action, CheckIn, CheckInPause, OperatorCommand, Tick
from alertd.core.incidents import Channel, Outcome, Purpose, State
from alertd.core.model import Roster
from alertd.store import Store, reading
from tests.engine_rig import T0, Clock, Rig, rig_for
from tests.fakes.twilio_server import TwilioServer
from tests.harness import GRID_PHONE, forget_session, leader_phone, running_daemon, terminals, write_village
from tests.test_core_incidents import GRID, LEADER, make_roster

ALONE = "h04"  # its terminal is t04
NEXT_DUE = T0 + 18 * 3600  # 10:00 the next day


def roster() -> Roster:
    base = make_roster()
    households = dict(base.households)
    households[ALONE] = replace(households[ALONE], check_in=10 * 60)
    return replace(base, households=households)


async def tick(rig: Rig, at: float) -> None:
    rig.clock.now = at
    await rig.call(Tick())


async def test_no_sign_of_life_by_the_time_tells_the_leader_and_grid_worker_and_a_check_in_closes_it(
    tmp_path: Path,
) -> None:
    async with rig_for(tmp_path / "alertd.db", roster()) as rig:
        await tick(rig, T0)  # watched from now on: today (already past 10:00) is not judged against it
        assert await rig.store.incidents() == []
        await tick(rig, NEXT_DUE - 1)
        assert await rig.store.incidents() == []
        await tick(rig, NEXT_DUE)
        incident = await rig.incident()
        assert (incident.welfare, incident.household_id, incident.state) == (True, ALONE, State.OPEN)
        rows = await rig.store.notifications(1)
        assert {r.recipient for r in rows} == {LEADER, GRID}
        assert all(r.channel == Channel.SMS and r.purpose == Purpose.ALERT for r in rows), "no terminal rings"
        assert {r.body for r in rows} == {"【联防关爱】4号户 王家 今天10:00前未报平安，请尽快上门看看 #1"}
        await tick(rig, NEXT_DUE + 60)
        assert len(await rig.store.incidents()) == 1, "judged once a day"
        rig.clock.now = NEXT_DUE + 900
        assert await rig.call(CheckIn("t04")) == "resolved 1"
        assert [r for r in await rig.store.notifications(1) if r.template == "follow_up"] == []


async def test_a_sign_of_life_before_the_time_is_enough(tmp_path: Path) -> None:
    async with rig_for(tmp_path / "alertd.db", roster()) as rig:
        await tick(rig, T0)
        rig.clock.now = NEXT_DUE - 3 * 3600  # 07:00
        assert await rig.call(CheckIn("t04")) == "ok"
        await tick(rig, NEXT_DUE + 1)
        assert await rig.store.incidents() == []


async def test_a_sign_of_life_from_yesterday_evening_does_not_count_for_today(tmp_path: Path) -> None:
    async with rig_for(tmp_path / "alertd.db", roster()) as rig:
        await tick(rig, T0)
        rig.clock.now = T0 + 6 * 3600  # 22:00 the day before
        await rig.call(CheckIn("t04"))
        await tick(rig, NEXT_DUE)
        assert (await rig.incident()).welfare


async def test_a_paused_household_is_not_judged_until_the_pause_ends(tmp_path: Path) -> None:
    async with rig_for(tmp_path / "alertd.db", roster()) as rig:
        await tick(rig, T0)
        assert await rig.call(CheckInPause(ALONE, NEXT_DUE + 86400 + 3600, "网格员")) == "ok"
        await tick(rig, NEXT_DUE)
        await tick(rig, NEXT_DUE + 86400)
        assert await rig.store.incidents() == []
        await tick(rig, NEXT_DUE + 2 * 86400)  # the pause ended yesterday
        assert (await rig.incident()).welfare
        assert await rig.call(CheckInPause("h05", None, "网格员")) == "household h05 has no daily check-in"


async def test_the_grid_worker_can_close_it_and_a_restart_does_not_open_it_again(tmp_path: Path) -> None:
    clock = Clock()
    async with rig_for(tmp_path / "alertd.db", roster(), clock) as rig:
        await tick(rig, T0)
        await tick(rig, NEXT_DUE)
        rig.clock.now = NEXT_DUE + 600
        assert await rig.call(OperatorCommand(1, Action.RESOLVE, "网格员")) == "resolved 1"
        incident = await rig.incident()
        assert incident.outcome == Outcome.REAL
    async with rig_for(tmp_path / "alertd.db", roster(), clock) as rig:
        await tick(rig, NEXT_DUE + 1200)
        assert len(await rig.store.incidents()) == 1, "today was judged already (kept in the store)"
        await tick(rig, NEXT_DUE + 86400)
        assert len(await rig.store.incidents()) == 2, "the next day is judged again"


async def test_a_missed_check_in_end_to_end_and_the_terminal_button_closes_it(
    tmp_path: Path, twilio: TwilioServer
) -> None:
    # Check-in by 00:00: today's time has always passed, at any hour the test runs. The household was last
    # seen two days ago (as the store remembers it), so the first judgement finds no sign of life today.
    village = write_village(tmp_path, twilio=twilio)
    roster_file = tmp_path / "roster.toml"
    text = roster_file.read_text(encoding="utf-8")
    roster_file.write_text(text.replace('label = "4号户 1组"', 'label = "4号户 1组"\ncheck_in = "00:00"'), "utf-8")
    store = await Store.open(village.store_path)
    try:
        await store.set_meta("sign:h1-4", repr(time.time() - 2 * 86400))
    finally:
        await store.close()
    try:
        async with running_daemon(village), terminals(village) as sims:
            async with asyncio.timeout(10):
                while not [m for m in twilio.messages if "未报平安" in m.body]:
                    await asyncio.sleep(0.05)
            assert sims.rings() == [], "a missed check-in never rings the neighbours"
            await sims.checkin("t1-4")
            async with asyncio.timeout(10):
                while True:
                    async with reading(village.store_path) as view:
                        incident = await view.incident(1)
                    if incident is not None and incident.state == State.RESOLVED:
                        break
                    await asyncio.sleep(0.05)
    finally:
        await forget_session(village)
    told = {m.to for m in twilio.messages if "未报平安" in m.body}
    assert told == {leader_phone(1), GRID_PHONE}
    assert incident.welfare
