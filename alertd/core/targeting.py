"""Which open incident a button press or an SMS reply means. Pure: the open incidents are an argument.

A reply rarely names its incident ("1" rather than "1 #17"), so the rules must pick the one the sender
most likely means, and never one they cannot have meant.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from alertd.core.events import Action, Outcome
from alertd.core.incidents import ACTION_TARGET, STATE_ORDER
from alertd.core.model import Role, Roster
from alertd.core.records import Incident, State

# Roles through which a person answers for a group (besides living in one of its households).
_GROUP_ROLES = (Role.LEADER, Role.DEPUTY, Role.GRID_WORKER, Role.PATROL)


class ReplyCommand(Protocol):
    """A parsed SMS reply (alertd.protocols.replies.ParsedReply)."""

    @property
    def action(self) -> Action: ...
    @property
    def code(self) -> str | None: ...
    @property
    def outcome(self) -> Outcome | None: ...


def for_button(
    incidents: Iterable[Incident], group_id: str, device_id: str, incident_id: int | None
) -> Incident | None:
    """The alarm an acknowledge button means: the one it names, else the newest open one it is ringing for,
    else the newest open one in its group. Never a maintenance incident."""
    in_group = [i for i in incidents if i.group_id == group_id and i.is_alarm]
    if incident_id is not None:
        return next((i for i in in_group if i.id == incident_id), None)
    ringing = [i for i in in_group if device_id in i.rung and i.state == State.OPEN]
    return max(ringing or [i for i in in_group if i.state == State.OPEN], key=lambda i: i.id, default=None)


def for_coming(
    incidents: Iterable[Incident], group_id: str, device_id: str, incident_id: int | None
) -> Incident | None:
    """The alarm an "I'm coming" button means: the one it names, else the newest active alarm that rang this
    terminal, else the newest active alarm in its group. Acknowledged ones too: people keep coming after the
    first acknowledgement, and the quorum counts them."""
    in_group = [i for i in incidents if i.group_id == group_id and i.is_alarm and i.active]
    if incident_id is not None:
        return next((i for i in in_group if i.id == incident_id), None)
    rang_here = [i for i in in_group if device_id in i.rung]
    return max(rang_here or in_group, key=lambda i: i.id, default=None)


def for_reply(
    incidents: Iterable[Incident], groups: set[str] | None, command: ReplyCommand, received: float
) -> Incident | None:
    """The incident an SMS reply means, among those of the sender's groups (None: all) already open when
    the reply was received: the one whose code it gives, else the newest alarm it can still move forward
    ("1" skips ones already acknowledged), maintenance incidents only when no alarm is."""
    relevant = [i for i in incidents if (groups is None or i.group_id in groups) and i.opened_at <= received]
    if command.code is not None:
        return next((i for i in relevant if i.code == command.code), None)
    movable = [i for i in relevant if STATE_ORDER[i.state] < STATE_ORDER[ACTION_TARGET[command.action]]]
    alarms = [i for i in movable if i.is_alarm]
    return max(alarms or movable or relevant, key=lambda i: i.id, default=None)


def groups_of(roster: Roster, person_id: str) -> set[str] | None:
    """Groups a person answers for; None means all (the township duty room)."""
    if person_id in roster.duty:
        return None
    groups = {h.group_id for h in roster.households.values() if person_id in h.people}
    for group in roster.groups.values():
        for role in _GROUP_ROLES:
            if any(p.id == person_id for p in roster.people_for(group.id, role)):
                groups.add(group.id)
    return groups
