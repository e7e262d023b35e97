"""Alert calls and missed calls, decided by the core, through the engine and a real store (fake clock):
who is called, what a key does, when a call is placed again, what a machine or a replay can never do."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from alertd.core.events import Action, Alarm, CallReport, CallStatus, MissedCall, OperatorCommand
from alertd.core.incidents import Channel, Purpose, State
from alertd.core.model import Kind, Policy, Prefers, Role, Roster, Step
from alertd.store import OutboxRow
from tests.engine_rig import T0, rig_for
from tests.engine_rig import Rig as BaseRig
from tests.test_core_incidents import DUTY, LEADER, make_roster

RESIDENT = "p03"  # lives in h03; prefers a call in some tests
CALLING = Policy(
    "calling",
    (
        Step(after_s=0, ring=True, sms=(Role.LEADER, Role.PATROL), call=(Role.LEADER,)),
        Step(after_s=120, sms=(Role.DUTY,), call=(Role.DUTY,)),
    ),
    call_retries=2,
    call_retry_s=60.0,
)


def roster_with(*, prefers_call: tuple[str, ...] = ()) -> Roster:
    base = make_roster()
    people = {pid: replace(p, prefers=Prefers.CALL) if pid in prefers_call else p for pid, p in base.people.items()}
    return replace(base, people=people, policies={"default": CALLING})


class Rig(BaseRig):
    async def calls(self, incident_id: int = 1) -> list[OutboxRow]:
        return [r for r in await self.store.notifications(incident_id) if r.channel == Channel.VOICE]

    async def texts_to(self, person: str) -> list[OutboxRow]:
        return [r for r in await self.store.notifications() if r.channel == Channel.SMS and r.recipient == person]


@contextlib.asynccontextmanager
async def voice_rig(tmp_path: Path, roster: Roster) -> AsyncIterator[Rig]:
    async with rig_for(tmp_path / "alertd.db", roster) as base:
        yield Rig(base.store, base.clock, base.engine)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with voice_rig(tmp_path, roster_with()) as made:
        yield made


async def test_a_step_calls_its_call_roles_and_says_who_and_what(rig: Rig) -> None:
    assert await rig.call(Alarm("t03", Kind.FIRE, 1)) == "opened 1"
    [call] = await rig.calls()
    assert (call.recipient, call.address, call.step, call.purpose) == (LEADER, "+8613800000005", 0, Purpose.ALERT)
    assert call.body == "紧急情况：东村一组3号户 王家，火警。报警编号1。"
    assert call.next_attempt_at == T0  # at once
    # The leader is still texted: the text carries the reply code and stays on the phone.
    assert [r.step for r in await rig.texts_to(LEADER)] == [0]
    [_, step] = await rig.store.timeline(1)
    assert "called 住户5" in step.detail


async def test_whoever_prefers_a_call_is_called_wherever_they_are_texted(tmp_path: Path) -> None:
    async with voice_rig(tmp_path, roster_with(prefers_call=("pat1",))) as rig:
        await rig.call(Alarm("t03", Kind.PANIC, 1))
        assert sorted(c.recipient for c in await rig.calls()) == [LEADER, "pat1"]
        assert [r.template for r in await rig.texts_to("pat1")] == ["alert"]  # and still texted


async def test_key_1_acknowledges_as_the_person_called_and_stops_the_ringing(rig: Rig) -> None:
    await rig.call(Alarm("t03", Kind.FIRE, 1))
    [call] = await rig.calls()
    rig.clock.now += 20
    result = await rig.call(CallReport(call.id, CallStatus.ANSWERED, digits="1", provider_id="CA1"))
    assert result == "acknowledged 1"
    incident = await rig.store.incident(1)
    assert incident is not None
    assert (incident.state, incident.acknowledged_by) == (State.ACKNOWLEDGED, "住户5")
    assert any(r.purpose == Purpose.STOP for r in await rig.store.notifications(1))
    assert [(t.event, t.actor) for t in await rig.store.timeline(1)][-2:] == [
        ("call", "住户5"),
        ("acknowledged", "住户5 (voice)"),
    ]
    # The call ends: nothing is placed again, the incident is answered.
    rig.clock.now += 30
    assert await rig.call(CallReport(call.id, CallStatus.COMPLETED, provider_id="CA1", token="t-done")) == "ok"
    assert len(await rig.calls()) == 1


async def test_key_2_is_on_scene(rig: Rig) -> None:
    await rig.call(Alarm("t03", Kind.FIRE, 1))
    [call] = await rig.calls()
    assert await rig.call(CallReport(call.id, CallStatus.ANSWERED, digits="2", provider_id="CA1")) == "on_scene 1"


@pytest.mark.parametrize("status", [CallStatus.NO_ANSWER, CallStatus.BUSY, CallStatus.FAILED, CallStatus.COMPLETED])
async def test_a_call_without_a_key_is_placed_again_as_the_policy_says_then_no_more(
    rig: Rig, status: CallStatus
) -> None:
    await rig.call(Alarm("t03", Kind.FIRE, 1))
    for attempt in range(1, 4):
        calls = await rig.calls()
        assert len(calls) == attempt
        newest = calls[-1]
        rig.clock.now += 30
        await rig.call(CallReport(newest.id, status, provider_id=f"CA{attempt}", token=f"t{attempt}"))
    calls = await rig.calls()
    assert len(calls) == 3  # the first and two more (call_retries = 2)
    assert [c.next_attempt_at - T0 for c in calls] == [0, 30 + 60, 60 + 60]
    assert len({c.key for c in calls}) == 3
    details = [t.detail for t in await rig.store.timeline(1) if t.event == "call"]
    assert details == [
        f"{status.value}; called again in 60 s (2 of 3)",
        f"{status.value}; called again in 60 s (3 of 3)",
        status.value,
    ]
    incident = await rig.store.incident(1)
    assert incident is not None
    assert incident.state == State.OPEN  # escalation goes on regardless


async def test_no_call_is_placed_again_once_someone_answered(rig: Rig) -> None:
    await rig.call(Alarm("t03", Kind.FIRE, 1))
    [call] = await rig.calls()
    await rig.call(Alarm("t03", Kind.FIRE, 2))  # joins
    await rig.call(CallReport(call.id, CallStatus.NO_ANSWER, provider_id="CA1"))
    assert len(await rig.calls()) == 2  # placed again: nobody answered yet
    await rig.call(Alarm("t04", Kind.PANIC, 1))  # another household: incident 2
    assert await rig.call(OperatorCommand(1, Action.ACKNOWLEDGE, "老周")) == "acknowledged 1"
    second = (await rig.calls())[-1]
    await rig.call(CallReport(second.id, CallStatus.NO_ANSWER, provider_id="CA2"))
    assert len(await rig.calls()) == 2


async def test_an_answering_machine_never_acknowledges_even_with_a_key(rig: Rig) -> None:
    await rig.call(Alarm("t03", Kind.FIRE, 1))
    [call] = await rig.calls()
    machine = CallReport(call.id, CallStatus.ANSWERED, digits="1", machine=True, provider_id="CA1", token="m1")
    assert await rig.call(machine) == "ok"
    incident = await rig.store.incident(1)
    assert incident is not None
    assert incident.state == State.OPEN
    assert len(await rig.calls()) == 2  # a machine is no answer: placed again
    first = next(t.detail for t in await rig.store.timeline(1) if t.event == "call")
    assert first.startswith("answering machine")


async def test_a_replayed_report_is_handled_once(rig: Rig) -> None:
    await rig.call(Alarm("t03", Kind.FIRE, 1))
    [call] = await rig.calls()
    report = CallReport(call.id, CallStatus.NO_ANSWER, provider_id="CA1", token="same")
    assert await rig.call(report) == "ok"
    assert await rig.call(report) == "replay"
    assert len(await rig.calls()) == 2


async def test_a_report_for_a_row_that_is_no_call_does_nothing(rig: Rig) -> None:
    await rig.call(Alarm("t03", Kind.FIRE, 1))
    text = (await rig.texts_to(LEADER))[0]
    assert (await rig.call(CallReport(text.id, CallStatus.ANSWERED, digits="1", provider_id="SM1"))).startswith(
        "no call"
    )
    assert await rig.call(CallReport(9999, CallStatus.ANSWERED, digits="1", provider_id="X")) == "no call 9999"
    incident = await rig.store.incident(1)
    assert incident is not None
    assert incident.state == State.OPEN


# --- missed calls ---------------------------------------------------------------------------------


async def test_a_missed_call_from_a_registered_phone_acknowledges_and_is_confirmed_by_text(rig: Rig) -> None:
    await rig.call(Alarm("t03", Kind.FIRE, 1))
    rig.clock.now += 40
    result = await rig.call(MissedCall("+8613800000005", received_at=rig.clock.now, call_id="c1"))
    assert result == "acknowledged 1"
    incident = await rig.store.incident(1)
    assert incident is not None
    assert incident.acknowledged_by == "住户5"
    confirm = [r for r in await rig.texts_to(LEADER) if r.template == "confirm"]
    assert [(r.body, r.purpose) for r in confirm] == [("【联防】已确认 #1，谢谢", Purpose.NOTICE)]
    # The same call reported again (the modem's RINGs of one call) changes nothing.
    assert await rig.call(MissedCall("+8613800000005", received_at=rig.clock.now, call_id="c1")) == "replay"


async def test_a_missed_call_from_an_unknown_number_is_ignored(rig: Rig) -> None:
    await rig.call(Alarm("t03", Kind.FIRE, 1))
    assert await rig.call(MissedCall("+8613712345678", call_id="c2")) == "unknown_sender"
    incident = await rig.store.incident(1)
    assert incident is not None
    assert incident.state == State.OPEN
    assert [r for r in await rig.store.notifications() if r.template == "confirm"] == []


async def test_a_missed_call_acts_only_on_alarms_the_caller_answers_for_and_open_when_they_rang(rig: Rig) -> None:
    assert await rig.call(MissedCall("+8613800000005", call_id="c3")) == "no_incident"
    rang_at = rig.clock.now
    rig.clock.now += 1000
    await rig.call(Alarm("t03", Kind.FIRE, 1))  # opened after the ring: a late report must not take it
    assert await rig.call(MissedCall("+8613800000005", received_at=rang_at, call_id="c4")) == "no_incident"
    # The duty room answers for every group.
    assert await rig.call(MissedCall("+8613900090001", call_id="c5")) == "acknowledged 1"
    assert (await rig.store.incident(1)).acknowledged_by == "值班室"  # type: ignore[union-attr]
    assert DUTY in {r.recipient for r in await rig.store.notifications() if r.template == "confirm"}


async def test_several_reports_on_one_call_place_it_again_once(rig: Rig) -> None:
    # Twilio says "machine" when it fetches what to say, then "completed" with the machine again.
    await rig.call(Alarm("t03", Kind.FIRE, 1))
    [call] = await rig.calls()
    await rig.call(CallReport(call.id, CallStatus.ANSWERED, machine=True, provider_id="CA1", token="m"))
    await rig.call(CallReport(call.id, CallStatus.COMPLETED, machine=True, provider_id="CA1", token="c"))
    assert len(await rig.calls()) == 2
    details = [t.detail for t in await rig.store.timeline(1) if t.event == "call"]
    assert details == ["answering machine; called again in 60 s (2 of 3)"] * 2


async def test_an_answered_ring_is_in_the_timeline_and_not_placed_again(rig: Rig) -> None:
    await rig.call(Alarm("t03", Kind.FIRE, 1))
    [call] = await rig.calls()
    assert await rig.call(CallReport(call.id, CallStatus.ANSWERED, provider_id="modem-call:1")) == "ok"
    assert [t.detail for t in await rig.store.timeline(1) if t.event == "call"] == ["answered"]
    assert len(await rig.calls()) == 1
