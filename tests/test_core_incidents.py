"""The incident state machine as tables: (incident, input, now) -> (incident, effects), with plain floats for now."""

from __future__ import annotations

from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from alertd.commands import CommandBook
from alertd.core.events import Action, Via
from alertd.core.incidents import (
    STOP_STEP,
    Channel,
    Incident,
    Notification,
    Outcome,
    Purpose,
    State,
    TransitionError,
    apply_action,
    fire_due_steps,
    join_alarm,
    metrics_times,
    open_incident,
)
from alertd.core.messages import Texts
from alertd.core.model import (
    DEFAULT_POLICY,
    Device,
    Group,
    Household,
    Kind,
    PatrolTeam,
    Person,
    Role,
    Roster,
)

T0 = 1_800_000_000.0
TEXTS = Texts(ZoneInfo("Asia/Shanghai"))

LEADER = "p05"
DEPUTY = "p08"
GRID = "grid"
PATROL = ("pat1", "pat2")
DUTY = "duty"
SENSOR = "s02"  # a smoke detector in house 2: it reports, it cannot ring

PLAIN = CommandBook()  # our terminal protocol, no device profiles


def make_roster(*, patrol_members: tuple[str, ...] = PATROL) -> Roster:
    """One group of ten households, one ringable terminal each, plus a non-ringable sensor in house 2."""
    people = {f"p{n:02d}": Person(f"p{n:02d}", f"住户{n}", f"+8613800{n:06d}") for n in range(1, 11)}
    people[GRID] = Person(GRID, "网格员", "+8613900090011")
    people["pat1"] = Person("pat1", "巡逻一", "+8613900090021")
    people["pat2"] = Person("pat2", "巡逻二", "+8613900090022")
    people[DUTY] = Person(DUTY, "值班室", "+8613900090001")
    households: dict[str, Household] = {}
    devices: dict[str, Device] = {}
    for n in range(1, 11):
        hid = f"h{n:02d}"
        device_ids = [f"t{n:02d}"]
        devices[f"t{n:02d}"] = Device(f"t{n:02d}", hid)
        if n == 2:
            devices[SENSOR] = Device(SENSOR, hid, profile="zigbee-smoke", ringable=False)
            device_ids.append(SENSOR)
        households[hid] = Household(
            hid, f"{n}号户 王家", "g1", address=f"东村{n}号", people=(f"p{n:02d}",), devices=tuple(device_ids)
        )
    group = Group("g1", "一组", "东村", tuple(households), leader=LEADER, deputy=DEPUTY, grid_worker=GRID)
    return Roster(
        people=people,
        households=households,
        groups={"g1": group},
        devices=devices,
        patrols={"team": PatrolTeam("team", "联防队", patrol_members, ("g1",))},
        duty=(DUTY,),
    )


ROSTER = make_roster()
CALLER = ROSTER.households["h01"]


def opened(kind: Kind = Kind.PANIC, now: float = T0) -> Incident:
    incident, _ = open_incident(7, CALLER, kind, ROSTER, now, "mqtt")
    return incident


def fire(incident: Incident, now: float) -> tuple[Incident, list[Notification]]:
    updated, effects = fire_due_steps(incident, ROSTER, TEXTS, now, commands=PLAIN)
    return updated, effects.notifications


def sms_recipients(notes: list[Notification]) -> list[str]:
    return [n.recipient for n in notes if n.channel == Channel.SMS]


def rung(notes: list[Notification]) -> list[str]:
    return [n.recipient for n in notes if n.channel == Channel.TERMINAL]


# --- opening and the first step ---------------------------------------------------------------------


def test_open_incident_is_due_at_once_and_logs_opening() -> None:
    incident, effects = open_incident(7, CALLER, Kind.FIRE, ROSTER, T0, "mqtt")
    assert incident.state == State.OPEN
    assert (incident.next_step, incident.next_step_at) == (0, T0)
    assert incident.policy == DEFAULT_POLICY.name
    assert effects.notifications == []
    assert [(t.event, t.at) for t in effects.timeline] == [("opened", T0)]


def test_step_zero_rings_neighbours_and_texts_leader_and_patrol() -> None:
    incident, notes = fire(opened(), T0)
    assert rung(notes) == [f"t{n:02d}" for n in range(2, 11)]  # not t01 (the caller), not the sensor
    assert all(n.purpose == Purpose.RING and n.step == 0 for n in notes if n.channel == Channel.TERMINAL)
    assert sms_recipients(notes) == [LEADER, *PATROL]
    assert {n.address for n in notes if n.channel == Channel.SMS} == {
        "+8613800000005", "+8613900090021", "+8613900090022",
    }  # fmt: skip
    assert incident.rung == tuple(f"t{n:02d}" for n in range(2, 11))
    assert (incident.next_step, incident.next_step_at) == (1, T0 + 120)
    assert incident.state == State.OPEN


@pytest.mark.parametrize(
    ("now", "expected_sms", "next_step", "next_at"),
    [
        (T0 + 119, [], 1, T0 + 120),
        (T0 + 120, [DEPUTY, GRID, *PATROL], 2, T0 + 300),
        (T0 + 299, [DEPUTY, GRID, *PATROL], 2, T0 + 300),
    ],
)
def test_step_one_fires_exactly_at_its_deadline(
    now: float, expected_sms: list[str], next_step: int, next_at: float
) -> None:
    after_zero, _ = fire(opened(), T0)
    incident, notes = fire(after_zero, now)
    assert rung(notes) == []
    assert sms_recipients(notes) == expected_sms
    assert all(n.step == 1 for n in notes)
    assert (incident.next_step, incident.next_step_at) == (next_step, next_at)


def test_full_ladder_on_time_then_escalation_stops() -> None:
    incident, step0 = fire(opened(), T0)
    incident, step1 = fire(incident, T0 + 120)
    incident, step2 = fire(incident, T0 + 300)
    assert sms_recipients(step2) == [DUTY]
    assert [n.step for n in step2] == [2]
    assert (incident.next_step, incident.next_step_at) == (None, None)
    incident, later = fire(incident, T0 + 10_000)
    assert later == []
    # The patrol is texted at steps 0 and 1: different keys, so the outbox keeps both.
    patrol_keys = {n.key for n in step0 + step1 if n.recipient == "pat1"}
    assert len(patrol_keys) == 2


def test_overdue_first_evaluation_fires_every_step_in_order() -> None:
    incident, effects = fire_due_steps(opened(), ROSTER, TEXTS, T0 + 400, commands=PLAIN)
    notes = effects.notifications
    assert [n.step for n in notes] == sorted(n.step for n in notes)
    assert sorted({n.step for n in notes}) == [0, 1, 2]
    assert len(rung(notes)) == 9
    assert sms_recipients(notes) == [LEADER, *PATROL, DEPUTY, GRID, *PATROL, DUTY]
    assert [t.event for t in effects.timeline] == ["step 0", "step 1", "step 2"]
    assert (incident.next_step, incident.next_step_at) == (None, None)


# --- acknowledgement stops escalation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("ack_at", "fired_until"),
    [
        (T0 + 60, T0),  # after step 0, before step 1
        (T0 + 200, T0 + 120),  # between steps 1 and 2
        (T0 + 350, T0 + 300),  # after the last step
    ],
)
def test_acknowledgement_stops_the_rest(ack_at: float, fired_until: float) -> None:
    incident = opened()
    for at in (T0, T0 + 120, T0 + 300):
        if at <= fired_until:
            incident, _ = fire(incident, at)
    acked, effects = apply_action(incident, Action.ACKNOWLEDGE, "住户5", Via.SMS, ack_at, commands=PLAIN)
    assert acked.state == State.ACKNOWLEDGED
    assert (acked.acknowledged_at, acked.acknowledged_by) == (ack_at, "住户5")
    assert (acked.next_step, acked.next_step_at) == (None, None)
    stops = effects.notifications
    assert [n.recipient for n in stops] == list(incident.rung)
    assert len(stops) == 9
    assert {(n.step, n.purpose, n.channel) for n in stops} == {(STOP_STEP, Purpose.STOP, Channel.TERMINAL)}
    assert len({n.key for n in stops}) == 9
    for later in (ack_at + 1, T0 + 300, T0 + 100_000):
        assert fire(acked, later)[1] == []


def test_acknowledging_twice_is_refused() -> None:
    incident, _ = fire(opened(), T0)
    acked, _ = apply_action(incident, Action.ACKNOWLEDGE, "a", Via.TERMINAL, T0 + 10, commands=PLAIN)
    with pytest.raises(TransitionError):
        apply_action(acked, Action.ACKNOWLEDGE, "b", Via.SMS, T0 + 20, commands=PLAIN)


def test_on_scene_after_ack_keeps_ack_and_sends_no_second_stop() -> None:
    incident, _ = fire(opened(), T0)
    acked, _ = apply_action(incident, Action.ACKNOWLEDGE, "a", Via.TERMINAL, T0 + 10, commands=PLAIN)
    there, effects = apply_action(acked, Action.ON_SCENE, "b", Via.SMS, T0 + 90, commands=PLAIN)
    assert there.state == State.ON_SCENE
    assert (there.acknowledged_at, there.acknowledged_by, there.on_scene_at) == (T0 + 10, "a", T0 + 90)
    assert effects.notifications == []
    with pytest.raises(TransitionError):
        apply_action(there, Action.ACKNOWLEDGE, "c", Via.SMS, T0 + 100, commands=PLAIN)


def test_resolve_as_false_alarm_closes_and_refuses_more() -> None:
    incident, _ = fire(opened(), T0)
    acked, _ = apply_action(incident, Action.ACKNOWLEDGE, "a", Via.TERMINAL, T0 + 10, commands=PLAIN)
    done, effects = apply_action(acked, Action.RESOLVE, "b", Via.SMS, T0 + 500, Outcome.FALSE_ALARM, commands=PLAIN)
    assert (done.state, done.outcome, done.resolved_at) == (State.RESOLVED, Outcome.FALSE_ALARM, T0 + 500)
    assert not done.active
    assert effects.timeline[-1].detail == "outcome false_alarm"
    for action in Action:
        with pytest.raises(TransitionError):
            apply_action(done, action, "c", Via.OPERATOR, T0 + 600, commands=PLAIN)


def test_cancel_defaults_to_false_alarm_and_silences_terminals() -> None:
    incident, _ = fire(opened(), T0)
    cancelled, effects = apply_action(incident, Action.CANCEL, "op", Via.OPERATOR, T0 + 30, commands=PLAIN)
    assert (cancelled.state, cancelled.outcome) == (State.CANCELLED, Outcome.FALSE_ALARM)
    assert len(effects.notifications) == 9
    assert fire(cancelled, T0 + 1000)[1] == []


def test_resolve_directly_from_open_fills_ack_but_not_on_scene() -> None:
    incident, _ = fire(opened(), T0)
    done, effects = apply_action(incident, Action.RESOLVE, "住户5", Via.SMS, T0 + 45, commands=PLAIN)
    assert (done.state, done.outcome) == (State.RESOLVED, Outcome.REAL)
    assert (done.acknowledged_at, done.acknowledged_by) == (T0 + 45, "住户5")
    assert done.on_scene_at is None
    assert len(effects.notifications) == 9  # the stop commands still go out
    assert metrics_times(done) == {"time_to_acknowledge": 45.0, "time_on_scene": None, "time_to_resolve": 45.0}


def test_metrics_times_along_the_whole_path() -> None:
    incident, _ = fire(opened(), T0)
    assert metrics_times(incident) == {"time_to_acknowledge": None, "time_on_scene": None, "time_to_resolve": None}
    incident, _ = apply_action(incident, Action.ACKNOWLEDGE, "a", Via.TERMINAL, T0 + 30, commands=PLAIN)
    incident, _ = apply_action(incident, Action.ON_SCENE, "a", Via.SMS, T0 + 240, commands=PLAIN)
    incident, _ = apply_action(incident, Action.RESOLVE, "a", Via.SMS, T0 + 900, Outcome.DRILL, commands=PLAIN)
    assert metrics_times(incident) == {"time_to_acknowledge": 30.0, "time_on_scene": 240.0, "time_to_resolve": 900.0}
    assert incident.outcome == Outcome.DRILL


# --- joining alarms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (Kind.WATER, Kind.FIRE, Kind.FIRE),  # up
        (Kind.INTRUSION, Kind.PANIC, Kind.PANIC),  # up
        (Kind.FIRE, Kind.WATER, Kind.FIRE),  # never down
        (Kind.MEDICAL, Kind.WATER, Kind.MEDICAL),  # never down
        (Kind.FIRE, Kind.SMOKE, Kind.FIRE),  # same severity: keep the first
    ],
)
def test_join_alarm_kind_only_rises(first: Kind, second: Kind, expected: Kind) -> None:
    incident = opened(first)
    joined, effects = join_alarm(incident, second, T0 + 50, "zigbee", "1号户 王家")
    assert joined.kind == expected
    assert joined.last_alarm_at == T0 + 50
    assert joined.opened_at == T0
    assert [t.event for t in effects.timeline] == ["alarm"]
    assert effects.notifications == []


# --- notification keys -------------------------------------------------------------------------------


def test_notification_keys_are_unique_across_steps_purposes_and_recipients() -> None:
    incident, effects = fire_due_steps(opened(), ROSTER, TEXTS, T0 + 400, commands=PLAIN)
    _, stop = apply_action(incident, Action.CANCEL, "op", Via.OPERATOR, T0 + 401, commands=PLAIN)
    notes = effects.notifications + stop.notifications
    assert len(notes) == 9 + 3 + 4 + 1 + 9
    assert len({n.key for n in notes}) == len(notes)
    ring = next(n for n in notes if n.purpose == Purpose.RING and n.recipient == "t02")
    stop_t02 = next(n for n in notes if n.purpose == Purpose.STOP and n.recipient == "t02")
    assert ring.key != stop_t02.key
    assert replace(ring, body="other").key == ring.key  # the body is not part of the identity


def test_person_with_two_roles_in_one_step_is_texted_once() -> None:
    roster = make_roster(patrol_members=(LEADER, "pat1"))  # the leader also walks patrol
    incident, _ = open_incident(7, CALLER, Kind.PANIC, roster, T0, "mqtt")
    _, effects = fire_due_steps(incident, roster, TEXTS, T0, commands=PLAIN)
    assert sms_recipients(effects.notifications) == [LEADER, "pat1"]


def test_people_for_and_ring_targets() -> None:
    assert [p.id for p in ROSTER.people_for("g1", Role.PATROL)] == list(PATROL)
    assert [p.id for p in ROSTER.people_for("g1", Role.DUTY)] == [DUTY]
    assert [d.id for d in ROSTER.ring_targets("h02")] == ["t01", *(f"t{n:02d}" for n in range(3, 11))]
