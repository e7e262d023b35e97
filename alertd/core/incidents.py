"""Incident state machine and escalation: pure functions of (incident, input, now) -> (incident, effects)."""

from __future__ import annotations

from dataclasses import replace

from alertd.core.events import Action, Outcome, Via
from alertd.core.messages import Texts, text_to
from alertd.core.model import SEVERITY, Device, Household, Kind, Person, Prefers, Role, Roster
from alertd.core.ports import Commands
from alertd.core.records import (
    ACTIVE_STATES,
    Channel,
    Effects,
    Incident,
    Notification,
    Purpose,
    Responder,
    State,
    TimelineEntry,
)
from alertd.core.supervision import Condition

# The records are used with the decisions everywhere; they are importable from here as well.
__all__ = [
    "ACTION_TARGET",
    "ACTIVE_STATES",
    "QUORUM_STEP",
    "SILENT_ROLES",
    "STATE_ORDER",
    "STOP_STEP",
    "Channel",
    "Effects",
    "Incident",
    "Notification",
    "Outcome",
    "Purpose",
    "State",
    "TimelineEntry",
    "TransitionError",
    "apply_action",
    "call_to",
    "escalating",
    "fire_due_steps",
    "join_alarm",
    "metrics_times",
    "open_incident",
    "open_maintenance",
    "open_welfare",
    "responding",
]


# A duress or silent panic goes to these roles only: no neighbour learns of it by a ringing terminal.
SILENT_ROLES = frozenset({Role.LEADER, Role.PATROL})

# Stop commands are planned once per incident; a reserved step number keeps their outbox keys unique.
STOP_STEP = 1000
QUORUM_STEP = STOP_STEP + 4  # the leader's one text about the quorum (reached or missed)


class TransitionError(ValueError):
    """The action does not apply to the incident in its current state."""


def open_incident(
    incident_id: int,
    household: Household,
    kind: Kind,
    roster: Roster,
    now: float,
    source: str,
    silent: bool = False,
    drill: bool = False,
) -> tuple[Incident, Effects]:
    incident = Incident(
        id=incident_id,
        household_id=household.id,
        group_id=household.group_id,
        kind=kind,
        policy=roster.policy_for(kind).name,
        state=State.OPEN,
        opened_at=now,
        last_alarm_at=now,
        next_step=0,
        next_step_at=now,
        silent=silent,
        drill=drill,
    )
    detail = f"{kind} via {source}" + (" (silent)" if silent else "") + (" (drill)" if drill else "")
    effects = Effects(timeline=[TimelineEntry(incident_id, now, "opened", household.label, detail)])
    return incident, effects


def open_maintenance(
    incident_id: int,
    device: Device,
    household: Household,
    condition: Condition,
    kind: Kind,
    roster: Roster,
    texts: Texts,
    now: float,
) -> tuple[Incident, Effects]:
    """A device that cannot be trusted to raise an alarm: the grid worker is told (and the leader when it
    was tampered with). Nothing rings and nothing escalates; it closes itself when the device is healthy."""
    group = roster.groups[household.group_id]
    incident = Incident(
        id=incident_id,
        household_id=household.id,
        group_id=household.group_id,
        kind=kind,  # what the device would report; shown in lists, never rung or escalated by
        policy="maintenance",
        state=State.OPEN,
        opened_at=now,
        last_alarm_at=now,
        next_step=None,
        next_step_at=None,
        device_id=device.id,
        maintenance=condition,
    )
    roles = [Role.GRID_WORKER, Role.LEADER] if condition == Condition.TAMPERED else [Role.GRID_WORKER]
    people: dict[str, Person] = {p.id: p for role in roles for p in roster.people_for(group.id, role)}
    effects = Effects(timeline=[TimelineEntry(incident_id, now, "maintenance", device.id, condition.value)])
    for person in people.values():
        text = texts.maintenance(incident, household, device, condition, person.language)
        effects.notifications.append(text_to(person, text, incident_id, 0, Purpose.NOTICE))
    return incident, effects


def open_welfare(
    incident_id: int, household: Household, roster: Roster, texts: Texts, due: str, now: float
) -> tuple[Incident, Effects]:
    """平安键: no sign of life from a household by its check-in time. The leader and the grid worker are told;
    nothing rings, nothing escalates. It closes at the next check-in, or by a person."""
    incident = Incident(
        id=incident_id,
        household_id=household.id,
        group_id=household.group_id,
        kind=Kind.MEDICAL,  # what a silent home most likely means: someone who fell, or fell ill
        policy="welfare",
        state=State.OPEN,
        opened_at=now,
        last_alarm_at=now,
        next_step=None,
        next_step_at=None,
        welfare=True,
    )
    effects = Effects(timeline=[TimelineEntry(incident_id, now, "no check-in", household.label, f"by {due}")])
    people = {p.id: p for role in (Role.LEADER, Role.GRID_WORKER) for p in roster.people_for(household.group_id, role)}
    for person in people.values():
        text = texts.welfare(incident, household, due, person.language)
        effects.notifications.append(text_to(person, text, incident_id, 0, Purpose.ALERT))
    return incident, effects


def join_alarm(incident: Incident, kind: Kind, now: float, source: str, actor: str) -> tuple[Incident, Effects]:
    """A further alarm from the same household: a timeline entry, and the kind rises to the worst one."""
    worse = SEVERITY[kind] > SEVERITY[incident.kind]
    updated = replace(incident, last_alarm_at=now, kind=kind if worse else incident.kind)
    detail = f"{kind} via {source}" + (f" (was {incident.kind})" if worse else "")
    return updated, Effects(timeline=[TimelineEntry(incident.id, now, "alarm", actor, detail)])


def fire_due_steps(
    incident: Incident, roster: Roster, texts: Texts, now: float, commands: Commands
) -> tuple[Incident, Effects]:
    """Every escalation step whose deadline has passed, in order; overdue steps fire at once."""
    effects = Effects()
    policy = roster.policies.get(incident.policy) or roster.policy_for(incident.kind)
    household = roster.households.get(incident.household_id)
    while (
        escalating(incident)
        and incident.next_step is not None
        and incident.next_step_at is not None
        and incident.next_step_at <= now
        and household is not None
    ):
        index = incident.next_step
        step = policy.steps[index]
        rung = list(incident.rung)
        notes: list[Notification] = []
        if incident.quorum_pending and incident.quorum_state == "":
            # The quorum's deadline is the next step: too few are coming; the leader is told once.
            incident = replace(incident, quorum_state="missed")
            effects.notifications.extend(_quorum_news(incident, roster, texts))
            effects.timeline.append(
                TimelineEntry(incident.id, now, "quorum missed", "", f"{len(incident.responders)}/{incident.quorum}")
            )
        if step.quorum > 0:
            incident = replace(incident, quorum=step.quorum, quorum_state="")
        if step.ring and not incident.silent and incident.state == State.OPEN:
            for device in roster.group_devices(household.id):
                if device.household_id == household.id and commands.is_terminal(device):
                    continue  # the caller's own terminal is where the alarm came from; its siren may sound
                # A drill rings as the real thing would, its caller shown as 演练 on every terminal.
                caller = replace(household, label=f"演练 {household.label}") if incident.drill else household
                command = commands.ring(device, incident.id, incident.kind, caller)
                if command is None:
                    continue
                topic, payload = command
                notes.append(
                    Notification(incident.id, index, Channel.TERMINAL, Purpose.RING, device.id, topic, payload)
                )
                if device.id not in rung:
                    rung.append(device.id)
        group = roster.groups[household.group_id]
        people = _people(roster, household.group_id, step.sms, incident.silent)
        for person in people.values():
            text = texts.alert(incident, household, group, person.language, step=index)
            notes.append(text_to(person, text, incident.id, index, Purpose.ALERT))
        # Called: the step's call roles, and whoever prefers a call among those texted.
        called = _people(roster, household.group_id, step.call, incident.silent) | {
            p.id: p for p in people.values() if p.prefers == Prefers.CALL
        }
        for person in called.values():
            spoken = texts.spoken_alert(incident, household, group, person.language)
            notes.append(call_to(person, spoken.body, incident.id, index))
        following = index + 1
        has_more = following < len(policy.steps)
        incident = replace(
            incident,
            rung=tuple(rung),
            next_step=following if has_more else None,
            next_step_at=incident.opened_at + policy.steps[following].after_s if has_more else None,
        )
        effects.notifications.extend(notes)
        rang = sum(n.channel == Channel.TERMINAL for n in notes)
        texted = "、".join(p.name for p in people.values()) or "nobody"
        detail = f"rang {rang} terminals; SMS to {texted}"
        if called:
            detail += f"; called {'、'.join(p.name for p in called.values())}"
        effects.timeline.append(TimelineEntry(incident.id, now, f"step {index}", "", detail))
    return incident, effects


def escalating(incident: Incident) -> bool:
    """Its steps still fire: nobody acknowledged it yet, or a quorum it asked for is not reached."""
    return incident.state == State.OPEN or (incident.active and incident.quorum_pending)


def _quorum_news(incident: Incident, roster: Roster, texts: Texts) -> list[Notification]:
    """The group's leader, told once whether the quorum was reached or missed."""
    total = max(0, len(roster.groups[incident.group_id].households) - 1) if incident.group_id in roster.groups else 0
    return (
        [
            text_to(leader, texts.quorum(incident, total, leader.language), incident.id, QUORUM_STEP, Purpose.NOTICE)
            for leader in roster.people_for(incident.group_id, Role.LEADER)
        ]
        if incident.group_id in roster.groups
        else []
    )


def responding(
    incident: Incident, who: str, label: str, roster: Roster, texts: Texts, now: float
) -> tuple[Incident, Effects]:
    """Someone is coming: counted once each. Reaching the quorum tells the leader and, once acknowledged,
    stops the escalation the quorum kept going."""
    effects = Effects()
    if any(r.who == who for r in incident.responders):
        return incident, effects
    updated = replace(incident, responders=(*incident.responders, Responder(who, label, now)))
    effects.timeline.append(TimelineEntry(incident.id, now, "coming", label, f"{len(updated.responders)} coming"))
    if updated.quorum > 0 and updated.quorum_state != "reached" and len(updated.responders) >= updated.quorum:
        updated = replace(updated, quorum_state="reached")
        effects.notifications.extend(_quorum_news(updated, roster, texts))
        effects.timeline.append(
            TimelineEntry(incident.id, now, "quorum reached", "", f"{len(updated.responders)}/{updated.quorum}")
        )
        if updated.state != State.OPEN:
            updated = replace(updated, next_step=None, next_step_at=None)
    return updated, effects


def _people(roster: Roster, group_id: str, roles: tuple[Role, ...], silent: bool) -> dict[str, Person]:
    """The people a step's roles mean for a group, once each; a silent alarm reaches only SILENT_ROLES."""
    people: dict[str, Person] = {}
    for role in roles:
        if silent and role not in SILENT_ROLES:
            continue
        for person in roster.people_for(group_id, role):
            people.setdefault(person.id, person)
    return people


def call_to(
    person: Person, spoken: str, incident_id: int, step: int, attempt: int = 0, at: float | None = None
) -> Notification:
    """An alert call to one person (attempt > 0: placed again, not before `at`)."""
    return Notification(
        incident_id, step, Channel.VOICE, Purpose.ALERT, person.id, person.phone, spoken, attempt=attempt, not_before=at
    )


STATE_ORDER = {State.OPEN: 0, State.ACKNOWLEDGED: 1, State.ON_SCENE: 2, State.RESOLVED: 3, State.CANCELLED: 3}
ACTION_TARGET = {
    Action.ACKNOWLEDGE: State.ACKNOWLEDGED,
    Action.ON_SCENE: State.ON_SCENE,
    Action.RESOLVE: State.RESOLVED,
    Action.CANCEL: State.CANCELLED,
}


def apply_action(
    incident: Incident,
    action: Action,
    actor: str,
    via: Via,
    now: float,
    outcome: Outcome | None = None,
    *,
    commands: Commands,
) -> tuple[Incident, Effects]:
    """Move an incident forward. Skipped states are filled in (on scene implies acknowledged)."""
    if not incident.active:
        raise TransitionError(f"incident {incident.id} is already {incident.state}")
    target = ACTION_TARGET[action]
    if STATE_ORDER[target] <= STATE_ORDER[incident.state]:
        raise TransitionError(f"incident {incident.id} is already {incident.state}")
    effects = Effects()
    who = f"{actor} ({via})"
    updated = incident
    if incident.acknowledged_at is None:
        updated = replace(updated, acknowledged_at=now, acknowledged_by=actor)
    if target == State.ON_SCENE:
        updated = replace(updated, on_scene_at=now)
    if target in (State.RESOLVED, State.CANCELLED):
        default = Outcome.REAL if target == State.RESOLVED else Outcome.FALSE_ALARM
        default = Outcome.DRILL if incident.drill else default
        updated = replace(updated, resolved_at=now, outcome=outcome or default)
    detail = f"outcome {updated.outcome}" if target in (State.RESOLVED, State.CANCELLED) else ""
    if target in (State.RESOLVED, State.CANCELLED) or not incident.quorum_pending:
        updated = replace(updated, state=target, next_step=None, next_step_at=None)
    else:  # a quorum is still to come: the first acknowledgement stops the ringing, not the count
        updated = replace(updated, state=target)
    effects.timeline.append(TimelineEntry(incident.id, now, target.value, who, detail))
    if incident.state == State.OPEN:
        # The first acknowledgement silences every terminal we rang.
        for device_id in incident.rung:
            command = commands.stop(device_id, incident.id, incident.kind)
            if command is not None:
                topic, payload = command
                effects.notifications.append(
                    Notification(incident.id, STOP_STEP, Channel.TERMINAL, Purpose.STOP, device_id, topic, payload)
                )
    return updated, effects


def metrics_times(incident: Incident) -> dict[str, float | None]:
    """Seconds from opening to each milestone, None where it has not happened."""

    def since(at: float | None) -> float | None:
        return None if at is None else at - incident.opened_at

    return {
        "time_to_acknowledge": since(incident.acknowledged_at),
        "time_on_scene": since(incident.on_scene_at),
        "time_to_resolve": since(incident.resolved_at),
    }
