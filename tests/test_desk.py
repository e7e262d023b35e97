"""The response desk as tables: (state, input, now) -> (result, changes). No store, no event loop, no
clock: the desk is pure, so every row is a plain function call."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from alertd.commands import CommandBook
from alertd.core.desk import REPLY_CLOCK_SKEW_S, Desk, Seen
from alertd.core.events import Action, Alarm, Input, OperatorCommand, Reply, TerminalAck, Tick
from alertd.core.messages import Texts
from alertd.core.model import Kind
from alertd.core.records import Batch, Channel, State
from alertd.core.results import Result, Verdict
from alertd.core.upkeep import Upkeep
from alertd.protocols.replies import parse_reply
from tests.test_core_incidents import DUTY, LEADER, make_roster

T0 = 1_800_000_000.0
ROSTER = make_roster()
LEADER_PHONE = ROSTER.people[LEADER].phone


def desk_with(*alarms: tuple[str, float]) -> Desk:
    """A desk with an incident opened by each (device, when) alarm."""
    desk = Desk(
        ROSTER, Texts(ZoneInfo("Asia/Shanghai")), CommandBook(devices=ROSTER.devices), upkeep=Upkeep(interval_s=3600)
    )
    desk.resume((), {}, next_id=1, now=T0)
    for device, at in alarms:
        desk.decide(Alarm(device, Kind.FIRE, seq=None), at, Seen(), Batch(at))
    return desk


NOTHING_SEEN = Seen()


def decide(desk: Desk, item: Input, now: float, seen: Seen = NOTHING_SEEN) -> tuple[Result, Batch]:
    batch = Batch(now)
    if isinstance(item, Reply):
        return desk.decide_reply(item, parse_reply(item.text), now, seen, batch), batch
    return desk.decide(item, now, seen, batch), batch


@pytest.mark.parametrize(
    ("state", "item", "now", "seen", "expected"),
    [
        # An alarm opens an incident, rings the other nine terminals, texts the first step.
        ((), Alarm("t02", Kind.FIRE, seq=1), T0, Seen(), Result(Verdict.OPENED, 1)),
        # Seen in the store within the window: a redelivery.
        ((), Alarm("t02", Kind.FIRE, seq=1), T0, Seen(alarms=frozenset({("t02", 1)})), Result(Verdict.DUPLICATE)),
        # Within the join window a second alarm from the household joins; after it, a new incident opens.
        ((("t02", T0),), Alarm("t02", Kind.GAS, seq=2), T0 + 60, Seen(), Result(Verdict.JOINED, 1)),
        ((("t02", T0),), Alarm("t02", Kind.GAS, seq=2), T0 + 601, Seen(), Result(Verdict.OPENED, 2)),
        ((), Alarm("nobody", Kind.FIRE, seq=1), T0, Seen(), Result(Verdict.UNKNOWN_DEVICE)),
        # The leader's button acknowledges the alarm ringing on it.
        ((("t02", T0),), TerminalAck("t05", None), T0 + 30, Seen(), Result(Verdict.ACTED, 1, "acknowledged", 30.0)),
        ((), TerminalAck("t05", None), T0, Seen(), Result(Verdict.NO_INCIDENT)),
        # An SMS "1" from the leader; a replay of it; one received before the incident opened.
        ((("t02", T0),), Reply(LEADER_PHONE, "1", "twilio", "twilio:SM1"), T0 + 9, Seen(),
         Result(Verdict.ACTED, 1, "acknowledged", 9.0)),
        ((("t02", T0),), Reply(LEADER_PHONE, "1", "twilio", "twilio:SM1"), T0 + 9,
         Seen(inbound=frozenset({"twilio:SM1"})), Result(Verdict.REPLAY)),
        ((("t02", T0),), Reply(LEADER_PHONE, "1", "modem", "m:1", T0 - REPLY_CLOCK_SKEW_S - 1), T0 + 9, Seen(),
         Result(Verdict.NO_INCIDENT)),
        ((("t02", T0),), Reply(LEADER_PHONE, "你好", "twilio"), T0 + 9, Seen(), Result(Verdict.NOT_A_COMMAND)),
        ((("t02", T0),), Reply("+8613999999999", "1", "twilio"), T0 + 9, Seen(), Result(Verdict.UNKNOWN_SENDER)),
        # Operator commands name their incident; one that is not open is refused.
        ((("t02", T0),), OperatorCommand(1, Action.CANCEL, "值班员"), T0 + 5, Seen(),
         Result(Verdict.ACTED, 1, "cancelled", 5.0)),  # a cancel fills in the acknowledgement it skipped
        ((), OperatorCommand(7, Action.ACKNOWLEDGE, "值班员"), T0, Seen(), Result(Verdict.NOT_OPEN, 7)),
        ((), Tick(), T0, Seen(), Result(Verdict.RECORDED)),
    ],
)  # fmt: skip
def test_decide(state: tuple[tuple[str, float], ...], item: Input, now: float, seen: Seen, expected: Result) -> None:
    result, _ = decide(desk_with(*state), item, now, seen)
    assert result == expected


def test_an_opened_alarm_plans_its_first_step_and_a_button_plans_the_stops() -> None:
    desk = desk_with()
    opened, batch = decide(desk, Alarm("t02", Kind.FIRE, seq=1), T0)
    assert opened == Result(Verdict.OPENED, 1)
    assert batch.seen == [("t02", 1)]
    rings = [n.recipient for n in batch.notifications if n.channel == Channel.TERMINAL]
    assert sorted(rings) == sorted(d for d in ROSTER.devices if d.startswith("t") and d != "t02")
    assert batch.incidents[1].state == State.OPEN
    acked, batch = decide(desk, TerminalAck("t05", None), T0 + 20)
    assert acked.verdict == Verdict.ACTED
    stops = {n.recipient for n in batch.notifications if n.channel == Channel.TERMINAL}
    assert stops == set(rings)  # every ringing terminal is told to stop
    # and everyone texted so far hears who acknowledged it
    notices = {n.recipient: n.body for n in batch.notifications if n.channel == Channel.SMS}
    # (the leader lives in 5号户 and pressed the button: he knows)
    assert notices == dict.fromkeys(("pat1", "pat2"), "【联防】5号户 王家已确认 #1")
    assert 1 in desk.active


def test_time_passing_fires_the_next_step_once() -> None:
    desk = desk_with(("t02", T0))
    assert desk.next_wakeup() == T0 + 120
    batch = Batch(T0 + 119)
    desk.tick(T0 + 119, batch)
    assert not batch.notifications
    batch = Batch(T0 + 300)
    desk.tick(T0 + 300, batch)  # late: step 1 and step 2 fire at once, in order
    assert [n.step for n in batch.notifications] == sorted(n.step for n in batch.notifications)
    assert DUTY in {n.recipient for n in batch.notifications}
    again = Batch(T0 + 301)
    desk.tick(T0 + 301, again)
    assert not again.notifications
