"""What a new roster changes for incidents that are still open.

A roster edit must never silently end a response: the household that called may be removed, moved to
another group, or its policy renamed while its alarm is still escalating. The engine keeps escalating
such an incident with the roster it had (`Engine.replace_roster`); `alertd check` warns before the
reload. Both read the changes from here. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from alertd.core.incidents import Incident
from alertd.core.model import Roster


@dataclass(frozen=True, slots=True)
class Change:
    incident_id: int
    what: str  # in words, for the log and for `alertd check`


def changes(incidents: Iterable[Incident], roster: Roster) -> list[Change]:
    """How the roster differs from what each open incident was escalating with."""
    found = []
    for incident in incidents:
        if not incident.active:
            continue
        household = roster.households.get(incident.household_id)
        if household is None:
            found.append(Change(incident.id, f"household {incident.household_id} is no longer in the roster"))
        elif household.group_id != incident.group_id:
            found.append(
                Change(
                    incident.id,
                    f"household {incident.household_id} moved from group {incident.group_id} to {household.group_id}",
                )
            )
        elif incident.group_id not in roster.groups:
            found.append(Change(incident.id, f"group {incident.group_id} is no longer in the roster"))
        elif incident.policy not in roster.policies and incident.policy != "default":
            found.append(Change(incident.id, f"policy {incident.policy} is no longer in the roster"))
    return found
