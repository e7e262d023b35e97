"""What a new roster changes compared with the one running: `alertd roster diff old.toml new.toml`, read
before `systemctl reload alertd`.

Every difference a SIGHUP reload would bring is one `Change`, in a stable order (the order of `What`, then
the id of what changed), with the ids involved and the values before and after. Names come along with ids
(`Ref`) so that the changes can be shown to a cadre without either roster (alertd.roster_diff_text).
Phone numbers are kept whole here, in E.164; whatever shows them masks them. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from alertd.core.model import CALL_RETRIES, CALL_RETRY_S, Kind, Policy, Roster, ScheduledDrill, Step

__all__ = ["Change", "Ref", "Value", "What", "diff", "policy_text"]


class What(StrEnum):
    """The kinds of change, in the order they are listed."""

    GROUP_ADDED = "group_added"
    GROUP_REMOVED = "group_removed"
    GROUP_RENAMED = "group_renamed"  # its name or village
    LEADER_CHANGED = "leader_changed"
    DEPUTY_CHANGED = "deputy_changed"
    GRID_WORKER_CHANGED = "grid_worker_changed"
    HOUSEHOLD_ADDED = "household_added"
    HOUSEHOLD_REMOVED = "household_removed"
    HOUSEHOLD_MOVED = "household_moved"  # to another group
    HOUSEHOLD_RELABELLED = "household_relabelled"
    HOUSEHOLD_ADDRESS_CHANGED = "household_address_changed"
    HOUSEHOLD_PEOPLE_CHANGED = "household_people_changed"
    CHECK_IN_CHANGED = "check_in_changed"
    PERSON_ADDED = "person_added"
    PERSON_REMOVED = "person_removed"
    PERSON_RENAMED = "person_renamed"
    PHONE_CHANGED = "phone_changed"
    LANGUAGE_CHANGED = "language_changed"
    PREFERS_CHANGED = "prefers_changed"
    DEVICE_ADDED = "device_added"
    DEVICE_REMOVED = "device_removed"
    DEVICE_MOVED = "device_moved"  # to another household
    DEVICE_PROFILE_CHANGED = "device_profile_changed"
    DEVICE_RINGABLE_CHANGED = "device_ringable_changed"
    DEVICE_ACCOUNT_CHANGED = "device_account_changed"  # Contact ID account or zone
    PATROL_ADDED = "patrol_added"
    PATROL_REMOVED = "patrol_removed"
    PATROL_RENAMED = "patrol_renamed"
    PATROL_MEMBERS_CHANGED = "patrol_members_changed"
    PATROL_GROUPS_CHANGED = "patrol_groups_changed"
    DUTY_CHANGED = "duty_changed"
    POLICY_ADDED = "policy_added"
    POLICY_REMOVED = "policy_removed"
    POLICY_CHANGED = "policy_changed"
    KIND_POLICY_CHANGED = "kind_policy_changed"  # which policy an alarm kind escalates with
    DRILL_ADDED = "drill_added"
    DRILL_REMOVED = "drill_removed"
    DRILL_CHANGED = "drill_changed"


_RANK = {what: index for index, what in enumerate(What)}


@dataclass(frozen=True, slots=True)
class Ref:
    """Something of the roster by id, with the name a cadre knows it by (a person's name, a group's name, a
    household's label); the id itself when the roster does not have it."""

    id: str
    name: str


# A value before or after a change: text (a label, an E.164 number, "10:00", a policy written out...), a flag,
# something of the roster, or a list of them (patrol members, duty); None: not set, or not there.
Value = str | bool | Ref | tuple[Ref, ...] | None


@dataclass(frozen=True, slots=True)
class Change:
    """One difference. `id` is what changed: a group, household, person, device, patrol, policy or drill id, an
    alarm kind for KIND_POLICY_CHANGED, "" for DUTY_CHANGED. `name` is how a cadre knows it (from the new
    roster, or the old one when it is removed); `where` what it belongs to (a household's group, a device's
    household, a drill's household) when that helps to find it."""

    what: What
    id: str
    name: str = ""
    before: Value = None
    after: Value = None
    where: Ref | None = None

    @property
    def sort_key(self) -> tuple[int, str]:
        return _RANK[self.what], self.id


def diff(old: Roster, new: Roster) -> list[Change]:
    """Every difference between the running roster `old` and `new`, in a stable order: by kind, then id."""
    found: list[Change] = []
    found += _groups(old, new)
    found += _households(old, new)
    found += _people(old, new)
    found += _devices(old, new)
    found += _patrols(old, new)
    if old.duty != new.duty:
        found.append(Change(What.DUTY_CHANGED, "", "", _people_refs(old, old.duty), _people_refs(new, new.duty)))
    found += _policies(old, new)
    found += _drills(old, new)
    return sorted(found, key=lambda change: change.sort_key)


# ---------------------------------------------------------------------------------------------- by section

_T = TypeVar("_T")


def _split(
    old: Mapping[str, _T], new: Mapping[str, _T]
) -> tuple[list[tuple[str, _T]], list[tuple[str, _T]], list[tuple[str, _T, _T]]]:
    """(added, removed, in both) entries, by id."""
    added = [(key, new[key]) for key in sorted(new.keys() - old.keys())]
    removed = [(key, old[key]) for key in sorted(old.keys() - new.keys())]
    both = [(key, old[key], new[key]) for key in sorted(old.keys() & new.keys())]
    return added, removed, both


def _groups(old: Roster, new: Roster) -> Iterable[Change]:
    added, removed, both = _split(old.groups, new.groups)
    for group_id, group in added:
        yield Change(What.GROUP_ADDED, group_id, group.name, after=group.village)
    for group_id, group in removed:
        yield Change(What.GROUP_REMOVED, group_id, group.name, before=group.village)
    for group_id, before, after in both:
        if (before.village, before.name) != (after.village, after.name):
            yield Change(
                What.GROUP_RENAMED,
                group_id,
                after.name,
                f"{before.village} {before.name}",
                f"{after.village} {after.name}",
            )
        for what, role_before, role_after in (
            (What.LEADER_CHANGED, before.leader, after.leader),
            (What.DEPUTY_CHANGED, before.deputy, after.deputy),
            (What.GRID_WORKER_CHANGED, before.grid_worker, after.grid_worker),
        ):
            if role_before != role_after:
                yield Change(what, group_id, after.name, _person(old, role_before), _person(new, role_after))


def _households(old: Roster, new: Roster) -> Iterable[Change]:
    added, removed, both = _split(old.households, new.households)
    for household_id, household in added:
        yield Change(What.HOUSEHOLD_ADDED, household_id, household.label, where=_group(new, household.group_id))
    for household_id, household in removed:
        yield Change(What.HOUSEHOLD_REMOVED, household_id, household.label, where=_group(old, household.group_id))
    for household_id, before, after in both:
        where = _group(new, after.group_id)
        if before.group_id != after.group_id:
            yield Change(What.HOUSEHOLD_MOVED, household_id, after.label, _group(old, before.group_id), where, where)
        if before.label != after.label:
            yield Change(What.HOUSEHOLD_RELABELLED, household_id, after.label, before.label, after.label, where)
        if before.address != after.address:
            yield Change(
                What.HOUSEHOLD_ADDRESS_CHANGED, household_id, after.label, before.address, after.address, where
            )
        if before.people != after.people:
            yield Change(
                What.HOUSEHOLD_PEOPLE_CHANGED,
                household_id,
                after.label,
                _people_refs(old, before.people),
                _people_refs(new, after.people),
                where,
            )
        if before.check_in != after.check_in:
            yield Change(
                What.CHECK_IN_CHANGED,
                household_id,
                after.label,
                _hh_mm(before.check_in),
                _hh_mm(after.check_in),
                where,
            )


def _people(old: Roster, new: Roster) -> Iterable[Change]:
    added, removed, both = _split(old.people, new.people)
    for person_id, person in added:
        yield Change(What.PERSON_ADDED, person_id, person.name, after=person.phone)
    for person_id, person in removed:
        yield Change(What.PERSON_REMOVED, person_id, person.name, before=person.phone)
    for person_id, before, after in both:
        if before.name != after.name:
            yield Change(What.PERSON_RENAMED, person_id, after.name, before.name, after.name)
        if before.phone != after.phone:
            yield Change(What.PHONE_CHANGED, person_id, after.name, before.phone, after.phone)
        if before.language != after.language:
            yield Change(What.LANGUAGE_CHANGED, person_id, after.name, before.language, after.language)
        if before.prefers != after.prefers:
            yield Change(What.PREFERS_CHANGED, person_id, after.name, str(before.prefers), str(after.prefers))


def _devices(old: Roster, new: Roster) -> Iterable[Change]:
    added, removed, both = _split(old.devices, new.devices)
    for device_id, device in added:
        yield Change(What.DEVICE_ADDED, device_id, after=device.profile, where=_household(new, device.household_id))
    for device_id, device in removed:
        yield Change(What.DEVICE_REMOVED, device_id, before=device.profile, where=_household(old, device.household_id))
    for device_id, before, after in both:
        where = _household(new, after.household_id)
        if before.household_id != after.household_id:
            yield Change(What.DEVICE_MOVED, device_id, "", _household(old, before.household_id), where, where)
        if before.profile != after.profile:
            yield Change(What.DEVICE_PROFILE_CHANGED, device_id, "", before.profile, after.profile, where)
        if before.ringable != after.ringable:
            yield Change(What.DEVICE_RINGABLE_CHANGED, device_id, "", before.ringable, after.ringable, where)
        if (before.account, before.zone) != (after.account, after.zone):
            yield Change(
                What.DEVICE_ACCOUNT_CHANGED,
                device_id,
                "",
                _account(before.account, before.zone),
                _account(after.account, after.zone),
                where,
            )


def _patrols(old: Roster, new: Roster) -> Iterable[Change]:
    added, removed, both = _split(old.patrols, new.patrols)
    for team_id, team in added:
        # before and after: the groups it covers
        yield Change(What.PATROL_ADDED, team_id, team.name, after=_refs(team.groups, lambda g: _group(new, g)))
    for team_id, team in removed:
        yield Change(What.PATROL_REMOVED, team_id, team.name, before=_refs(team.groups, lambda g: _group(old, g)))
    for team_id, before, after in both:
        if before.name != after.name:
            yield Change(What.PATROL_RENAMED, team_id, after.name, before.name, after.name)
        if before.members != after.members:
            yield Change(
                What.PATROL_MEMBERS_CHANGED,
                team_id,
                after.name,
                _people_refs(old, before.members),
                _people_refs(new, after.members),
            )
        if before.groups != after.groups:
            yield Change(
                What.PATROL_GROUPS_CHANGED,
                team_id,
                after.name,
                _refs(before.groups, lambda g: _group(old, g)),
                _refs(after.groups, lambda g: _group(new, g)),
            )


def _policies(old: Roster, new: Roster) -> Iterable[Change]:
    added, removed, both = _split(old.policies, new.policies)
    for name, policy in added:
        yield Change(What.POLICY_ADDED, name, name, after=policy_text(policy))
    for name, policy in removed:
        yield Change(What.POLICY_REMOVED, name, name, before=policy_text(policy))
    for name, before, after in both:
        if before != after:
            yield Change(What.POLICY_CHANGED, name, name, policy_text(before), policy_text(after))
    for kind in Kind:
        # The policy an alarm kind escalates with: what the engine uses (Roster.policy_for), not what is written.
        before_name = _effective_policy(old, kind)
        after_name = _effective_policy(new, kind)
        if before_name != after_name:
            yield Change(What.KIND_POLICY_CHANGED, str(kind), str(kind), before_name, after_name)


def _drills(old: Roster, new: Roster) -> Iterable[Change]:
    added, removed, both = _split(old.drills, new.drills)
    for drill_id, drill in added:
        yield Change(What.DRILL_ADDED, drill_id, after=_drill(drill), where=_household(new, drill.household_id))
    for drill_id, drill in removed:
        yield Change(What.DRILL_REMOVED, drill_id, before=_drill(drill), where=_household(old, drill.household_id))
    for drill_id, before, after in both:
        if before != after:
            where = _household(new, after.household_id)
            yield Change(What.DRILL_CHANGED, drill_id, "", _drill(before), _drill(after), where)


# ---------------------------------------------------------------------------------------------- values


def _person(roster: Roster, person_id: str | None) -> Ref | None:
    if person_id is None:
        return None
    person = roster.people.get(person_id)
    return Ref(person_id, person.name if person else person_id)


def _people_refs(roster: Roster, person_ids: Iterable[str]) -> tuple[Ref, ...]:
    return tuple(Ref(i, roster.people[i].name if i in roster.people else i) for i in person_ids)


def _group(roster: Roster, group_id: str) -> Ref:
    group = roster.groups.get(group_id)
    return Ref(group_id, group.name if group else group_id)


def _household(roster: Roster, household_id: str) -> Ref:
    household = roster.households.get(household_id)
    return Ref(household_id, household.label if household else household_id)


def _refs(ids: Iterable[str], ref: Callable[[str], Ref]) -> tuple[Ref, ...]:
    return tuple(ref(i) for i in ids)


def _hh_mm(minutes: int | None) -> str | None:
    return None if minutes is None else f"{minutes // 60:02d}:{minutes % 60:02d}"


def _account(account: str | None, zone: int | None) -> str | None:
    if account is None:
        return None
    return account if zone is None else f"{account}/{zone}"


def _effective_policy(roster: Roster, kind: Kind) -> str:
    name = roster.kind_policy.get(kind, "default")
    return name if name in roster.policies else "default"  # Roster.policy_for falls back the same way


def _drill(drill: ScheduledDrill) -> str:
    return f"{drill.household_id} {drill.kind} {drill.schedule}"


def policy_text(policy: Policy) -> str:
    """A policy written out as in the roster file, e.g. "0s ring sms=leader,patrol quorum=3; 60s sms=duty"."""
    text = "; ".join(_step_text(step) for step in policy.steps)
    extras = [
        f"call_retries={policy.call_retries}" if policy.call_retries != CALL_RETRIES else "",
        f"call_retry_s={policy.call_retry_s:g}" if policy.call_retry_s != CALL_RETRY_S else "",
        "ack_notice=false" if not policy.ack_notice else "",
    ]
    return " | ".join([text, *(e for e in extras if e)])


def _step_text(step: Step) -> str:
    parts = [f"{step.after_s:g}s"]
    if step.ring:
        parts.append("ring")
    if step.sms:
        parts.append("sms=" + ",".join(step.sms))
    if step.call:
        parts.append("call=" + ",".join(step.call))
    if step.quorum:
        parts.append(f"quorum={step.quorum}")
    return " ".join(parts)
