"""演练: a drill is a real alarm in every way, raised on purpose: it rings and texts (every text says 演练),
escalates and times the responses, never joins a real alarm, and stays out of the real statistics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from alertd.core.events import Action, Alarm, Coming, Drill, OperatorCommand, Tick
from alertd.core.incidents import Channel, Outcome, Purpose, State
from alertd.core.model import Kind, Policy, Role, ScheduledDrill, Step
from alertd.core.schedule import parse_schedule
from alertd.core.stats import drill_figures, figures
from tests.engine_rig import T0, Rig, rig_for
from tests.test_core_incidents import LEADER, make_roster
from tests.test_responders import roster_with

PLAIN = Policy("plain", (Step(0, ring=True, sms=(Role.LEADER, Role.PATROL)), Step(120, sms=(Role.DUTY,))))


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with rig_for(tmp_path / "alertd.db", roster_with(PLAIN)) as made:
        yield made


async def test_a_drill_rings_and_texts_as_a_real_alarm_and_says_it_is_a_drill(rig: Rig) -> None:
    assert await rig.call(Drill("h03", Kind.FIRE, "老周")) == "opened 1"
    incident = await rig.incident()
    assert incident.drill
    rows = await rig.store.notifications(1)
    rings = [r for r in rows if r.channel == Channel.TERMINAL and r.purpose == Purpose.RING]
    assert len(rings) == 9
    assert all('"label":"演练 3号户 王家"' in r.body for r in rings), rings[0].body
    [leader] = [r for r in rows if r.recipient == LEADER]
    assert leader.body.startswith("【联防演练】3号户 王家 火警！")
    assert leader.template == "drill"
    [opened, _] = await rig.store.timeline(1)
    assert opened.detail == "fire via drill by 老周 (operator) (drill)"


async def test_a_real_alarm_during_a_drill_is_its_own_incident(rig: Rig) -> None:
    await rig.call(Drill("h03", Kind.FIRE, "老周"))
    rig.clock.now += 30
    assert await rig.call(Alarm("t03", Kind.FIRE, 1)) == "opened 2", "never joined into the drill"
    rig.clock.now += 30
    assert await rig.call(Alarm("t03", Kind.SMOKE, 2)) == "joined 2"
    assert not (await rig.incident(2)).drill


async def test_responses_are_timed_and_the_drill_ends_as_a_drill(rig: Rig) -> None:
    await rig.call(Drill("h03", Kind.FIRE, "老周"))
    rig.clock.now = T0 + 45
    assert await rig.call(Coming("t05", None)) == "acknowledged 1"
    notices = [r for r in await rig.texts() if r.template == "ack_notice"]
    assert {r.body for r in notices} == {"【联防演练】5号户 王家已确认 #1"}
    rig.clock.now = T0 + 300
    assert await rig.call(OperatorCommand(1, Action.RESOLVE, "老周")) == "resolved 1"
    incident = await rig.incident()
    assert (incident.outcome, incident.acknowledged_at) == (Outcome.DRILL, T0 + 45)
    assert [r for r in await rig.texts() if r.template == "follow_up"] == [], "no 评单 for a drill"


async def test_a_drill_at_an_unknown_household_is_refused(rig: Rig) -> None:
    assert await rig.call(Drill("h99", Kind.FIRE, "老周")) == "no household h99"
    assert await rig.store.incidents() == []


async def test_drills_are_kept_out_of_the_real_figures_and_reported_on_their_own(rig: Rig) -> None:
    await rig.call(Drill("h03", Kind.FIRE, "老周"))
    rig.clock.now = T0 + 60
    await rig.call(Coming("t05", None))
    rig.clock.now = T0 + 90
    await rig.call(Coming("t06", None))
    rig.clock.now = T0 + 100
    await rig.call(Alarm("t07", Kind.PANIC, 1))  # a real one, answered in 20 s
    rig.clock.now = T0 + 120
    await rig.call(OperatorCommand(2, Action.ACKNOWLEDGE, "老周"))
    incidents = await rig.store.incidents()
    [group, total] = figures(incidents, {}, {}, make_roster())
    assert (total.alarms, total.drills, total.ack_p50_s) == (1, 1, 20.0)
    [drills_g1, drills_total] = drill_figures(incidents, make_roster())
    assert (drills_g1.key, drills_g1.drills, drills_g1.answered, drills_g1.ack_p50_s) == ("g1", 1, 1, 60.0)
    assert (drills_g1.coming_mean, drills_total.drills) == (2.0, 1)
    assert (await rig.incident(1)).state == State.ACKNOWLEDGED
    assert group.alarms == 1


async def test_a_scheduled_drill_is_raised_at_its_time_once_and_not_caught_up(tmp_path: Path) -> None:
    # T0 is 16:00 in Asia/Shanghai; the drill is daily at 16:30.
    drill = ScheduledDrill("d1", "h03", Kind.GAS, parse_schedule("daily 16:30"))
    roster = replace(roster_with(PLAIN), drills={"d1": drill})
    async with rig_for(tmp_path / "alertd.db", roster) as rig:
        rig.clock.now = T0 + 1799
        await rig.call(Tick())
        assert await rig.store.incidents() == []
        rig.clock.now = T0 + 1800
        await rig.call(Tick())
        incident = await rig.incident()
        assert (incident.drill, incident.kind, incident.household_id, incident.opened_at) == (
            True, Kind.GAS, "h03", T0 + 1800,
        )  # fmt: skip
        rig.clock.now = T0 + 1860
        await rig.call(Tick())
        assert len(await rig.store.incidents()) == 1
        assert rig.engine.desk.next_wakeup() <= T0 + 86400 + 1800
    # Down over the next day's 16:30: on return the drill waits for the day after, never at once.
    async with rig_for(tmp_path / "alertd.db", roster) as rig:
        rig.clock.now = T0 + 86400 + 3600
        await rig.call(Tick())
        await rig.call(Tick())
        assert len(await rig.store.incidents()) == 1
