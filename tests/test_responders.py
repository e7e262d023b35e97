""" "One household alarms, ten respond": who is coming, the quorum a policy step asks for, and the notice of
who acknowledged. The core decides; driven through the engine and a real store with a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from alertd.core.events import Alarm, CheckIn, Coming, Reply, Tick
from alertd.core.incidents import Purpose, State
from alertd.core.model import Kind, Policy, Role, Roster, Step
from alertd.store import Store
from tests.engine_rig import T0, Clock, Rig, rig_for
from tests.fakes.twilio_server import TwilioServer
from tests.harness import forget_session, leader_phone, running_daemon, terminals, write_village
from tests.test_core_incidents import DUTY, LEADER, make_roster

QUORUM = Policy(
    "quorum",
    (
        Step(after_s=0, ring=True, sms=(Role.LEADER, Role.PATROL), quorum=3),
        Step(after_s=120, sms=(Role.DUTY,)),
    ),
)


def roster_with(policy: Policy) -> Roster:
    return replace(make_roster(), policies={"default": policy})


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with rig_for(tmp_path / "alertd.db", roster_with(QUORUM)) as made:
        yield made


async def test_the_first_coming_acknowledges_and_the_quorum_stops_escalation(rig: Rig) -> None:
    assert await rig.call(Alarm("t03", Kind.FIRE, 1)) == "opened 1"
    rig.clock.now += 30
    assert await rig.call(Coming("t05", None)) == "acknowledged 1"
    incident = await rig.incident()
    assert incident.state == State.ACKNOWLEDGED
    assert [r.label for r in incident.responders] == ["5号户 王家"]
    assert incident.next_step == 1, "the first acknowledgement stops the ringing, not the count"
    assert len([r for r in await rig.store.notifications(1) if r.purpose == Purpose.STOP]) == 9
    rig.clock.now += 10
    assert await rig.call(Coming("t06", None)) == "2 coming to 1"
    assert await rig.call(Coming("t06", None)) == "2 coming to 1"  # one household counts once
    assert await rig.call(Coming("t07", 1)) == "3 coming to 1"
    incident = await rig.incident()
    assert (incident.quorum_state, incident.next_step) == ("reached", None)
    [news] = [r for r in await rig.texts() if r.template == "quorum_reached"]
    assert news.recipient == LEADER
    assert news.body == "【联防】#1 已有3/9户响应：5号户 王家、6号户 王家、7号户 王家"
    rig.clock.now = T0 + 600
    await rig.call(Tick())
    assert await rig.texts(step=1) == [], "reached: the duty room is not disturbed"


async def test_a_quorum_missed_at_the_next_step_tells_the_leader_and_escalation_goes_on(rig: Rig) -> None:
    await rig.call(Alarm("t03", Kind.FIRE, 1))
    await rig.call(Coming("t05", None))
    rig.clock.now = T0 + 120
    await rig.call(Tick())
    incident = await rig.incident()
    assert (incident.state, incident.quorum_state) == (State.ACKNOWLEDGED, "missed")
    [news] = [r for r in await rig.texts() if r.template == "quorum_missed"]
    assert (news.recipient, news.body) == (LEADER, "【联防】#1 仅1/9户响应（需3户），请组织人员前往")
    assert [r.recipient for r in await rig.texts(step=1)] == [DUTY]
    events = [t.event for t in await rig.store.timeline(1)]
    assert events.index("quorum missed") < events.index("step 1")


async def test_reply_2_counts_the_household_and_an_outsider_as_themselves(rig: Rig) -> None:
    await rig.call(Alarm("t03", Kind.FIRE, 1))
    assert await rig.call(Reply("+8613800000006", "2", "twilio")) == "on_scene 1"  # p06 lives in h06
    assert await rig.call(Reply("+8613900090021", "2", "twilio")) == "incident 1 is already on_scene"
    incident = await rig.incident()
    assert [(r.who, r.label) for r in incident.responders] == [("h06", "6号户 王家"), ("pat1", "巡逻一")]


async def test_coming_from_the_alarming_household_or_with_nothing_open_counts_nothing(rig: Rig) -> None:
    assert await rig.call(Coming("t05", None)) == "no_incident"
    await rig.call(Alarm("t03", Kind.FIRE, 1))
    assert await rig.call(Coming("t03", None)) == "no_incident"
    assert (await rig.incident()).responders == ()


async def test_responders_survive_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    async with rig_for(tmp_path / "alertd.db", roster_with(QUORUM), clock) as rig:
        await rig.call(Alarm("t03", Kind.FIRE, 1))
        await rig.call(Coming("t05", None))
    async with rig_for(tmp_path / "alertd.db", roster_with(QUORUM), clock) as rig:
        assert await rig.call(Coming("t06", None)) == "2 coming to 1"
        clock.now += 120
        await rig.call(Tick())  # still acknowledged-but-counting after the restart: step 1 fires
        assert [r.recipient for r in await rig.texts(step=1)] == [DUTY]


async def test_who_acknowledged_is_told_to_everyone_already_texted_unless_the_policy_says_not(
    tmp_path: Path,
) -> None:
    plain = Policy("plain", (Step(0, ring=True, sms=(Role.LEADER, Role.PATROL)), Step(120, sms=(Role.DUTY,))))
    async with rig_for(tmp_path / "a.db", roster_with(plain)) as rig:
        await rig.call(Alarm("t03", Kind.FIRE, 1))
        rig.clock.now = T0 + 200  # step 1 fired: the duty room was texted too
        await rig.call(Tick())
        assert await rig.call(Reply("+8613900090021", "1", "twilio")) == "acknowledged 1"  # pat1
        notices = [r for r in await rig.texts() if r.template == "ack_notice"]
        assert sorted(r.recipient for r in notices) == sorted([LEADER, "pat2", DUTY])  # not pat1 himself
        assert {r.body for r in notices} == {"【联防】巡逻一已确认 #1"}
    async with rig_for(tmp_path / "b.db", roster_with(replace(plain, ack_notice=False))) as rig:
        await rig.call(Alarm("t03", Kind.FIRE, 1))
        await rig.call(Reply("+8613900090021", "1", "twilio"))
        assert [r for r in await rig.texts() if r.template == "ack_notice"] == []


async def test_a_check_in_is_a_sign_of_life_from_the_device(rig: Rig) -> None:
    assert await rig.call(CheckIn("t04")) == "ok"
    assert await rig.call(CheckIn("nobody")) == "unknown_device"


async def test_neighbours_coming_through_their_terminals_reach_the_quorum_end_to_end(
    tmp_path: Path, twilio: TwilioServer
) -> None:
    village = write_village(tmp_path, twilio=twilio, quorum=3)
    try:
        async with running_daemon(village), terminals(village) as sims:
            await sims.alarm("t1-2", "fire", seq=1)
            await sims.wait_until(lambda: len(sims.rings(1)) == 9)
            await sims.coming("t1-4")
            await sims.wait_until(lambda: len(sims.stops(1)) == 9)  # the first one coming silences them
            await sims.coming("t1-6", 1)
            await sims.coming("t1-9")
            async with asyncio.timeout(10):
                while not [m for m in twilio.messages if "已有3/9户响应" in m.body]:
                    await asyncio.sleep(0.05)
        store = await Store.open(village.store_path, readonly=True)
        try:
            incident = await store.incident(1)
        finally:
            await store.close()
    finally:
        await forget_session(village)
    [news] = [m for m in twilio.messages if "已有3/9户响应" in m.body]
    assert news.to == leader_phone(1)
    assert news.body == "【联防】#1 已有3/9户响应：4号户 1组、6号户 1组、9号户 1组"
    assert incident is not None
    assert (incident.state, incident.quorum_state, incident.next_step) == (State.ACKNOWLEDGED, "reached", None)
