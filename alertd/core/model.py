"""The roster and the vocabulary of alarms: plain, frozen values shared by every layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from alertd.core.schedule import Schedule


class Kind(StrEnum):
    PANIC = "panic"
    FIRE = "fire"
    SMOKE = "smoke"
    GAS = "gas"
    WATER = "water"
    INTRUSION = "intrusion"
    MEDICAL = "medical"


class Severity(IntEnum):
    LOW = 1
    HIGH = 2
    CRITICAL = 3


SEVERITY: Mapping[Kind, Severity] = {
    Kind.FIRE: Severity.CRITICAL,
    Kind.SMOKE: Severity.CRITICAL,
    Kind.GAS: Severity.CRITICAL,
    Kind.PANIC: Severity.CRITICAL,
    Kind.MEDICAL: Severity.HIGH,
    Kind.INTRUSION: Severity.HIGH,
    Kind.WATER: Severity.LOW,
}


class Role(StrEnum):
    """Who a policy step addresses, resolved against the group of the calling household."""

    LEADER = "leader"
    DEPUTY = "deputy"
    PATROL = "patrol"
    GRID_WORKER = "grid_worker"
    DUTY = "duty"


class Prefers(StrEnum):
    """How a person wants to be alerted besides the text: "call" for those who cannot read one quickly
    (many elderly residents and leaders) and for whom a text at night wakes nobody."""

    SMS = "sms"
    CALL = "call"


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str
    phone: str  # E.164
    language: str | None = None  # None: the daemon default
    prefers: Prefers = Prefers.SMS  # CALL: also called wherever they are sent an alert text


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    household_id: str
    profile: str = "alertd-terminal"
    ringable: bool = True
    account: str | None = None  # Contact ID account of the alarm panel or dialer
    zone: int | None = None  # Contact ID zone; None: any zone of the account


@dataclass(frozen=True, slots=True)
class Household:
    id: str
    label: str  # what neighbours' terminals show, e.g. "2号户 王家"
    group_id: str
    address: str = ""
    people: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    # 平安键: minutes after local midnight by which the household shows a sign of life each day (someone
    # living alone); None: not watched.
    check_in: int | None = None


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    name: str
    village: str
    households: tuple[str, ...]
    leader: str
    deputy: str | None = None
    grid_worker: str | None = None


@dataclass(frozen=True, slots=True)
class PatrolTeam:
    id: str
    name: str
    members: tuple[str, ...]
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Step:
    after_s: float
    ring: bool = False
    sms: tuple[Role, ...] = ()
    call: tuple[Role, ...] = ()  # alert calls (a spoken alert with a keypress acknowledgement)
    # Households that must say they are coming before an acknowledgement may stop escalation; the leader is
    # told when it is reached, or missed when the next step is due. 0: the first acknowledgement stops it.
    quorum: int = 0


# An alert call that ends without a key (busy, no answer, a machine) is placed again this often, this far
# apart, while the incident is still unanswered. Escalation goes on regardless.
CALL_RETRIES = 2
CALL_RETRY_S = 60.0


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    steps: tuple[Step, ...]
    call_retries: int = CALL_RETRIES
    call_retry_s: float = CALL_RETRY_S
    # When someone acknowledges, everyone already texted is told who ("陈国庆已确认 #17"), so that nobody
    # assumes someone else went.
    ack_notice: bool = True


DEFAULT_POLICY = Policy(
    name="default",
    steps=(
        Step(after_s=0, ring=True, sms=(Role.LEADER, Role.PATROL)),
        Step(after_s=120, sms=(Role.DEPUTY, Role.GRID_WORKER, Role.PATROL)),
        Step(after_s=300, sms=(Role.DUTY,)),
    ),
)


@dataclass(frozen=True, slots=True)
class ScheduledDrill:
    """演练 on a schedule, e.g. the first Sunday of each month at 10:00 at one household."""

    id: str
    household_id: str
    kind: Kind
    schedule: Schedule


@dataclass(frozen=True, slots=True)
class Roster:
    """Everyone and everything alertd knows, with the lookups the engine needs precomputed."""

    people: Mapping[str, Person]
    households: Mapping[str, Household]
    groups: Mapping[str, Group]
    devices: Mapping[str, Device]
    patrols: Mapping[str, PatrolTeam] = field(default_factory=dict)
    duty: tuple[str, ...] = ()
    policies: Mapping[str, Policy] = field(default_factory=lambda: {"default": DEFAULT_POLICY})
    kind_policy: Mapping[Kind, str] = field(default_factory=dict)  # missing kinds use "default"
    drills: Mapping[str, ScheduledDrill] = field(default_factory=dict)
    _by_phone: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _patrols_by_group: dict[str, tuple[str, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _by_account: dict[tuple[str, int | None], str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for person in self.people.values():
            self._by_phone.setdefault(person.phone, person.id)
        by_group: dict[str, list[str]] = {}
        for team in self.patrols.values():
            for group_id in team.groups:
                by_group.setdefault(group_id, []).append(team.id)
        self._patrols_by_group.update({g: tuple(t) for g, t in by_group.items()})
        for device in self.devices.values():
            if device.account is not None:
                self._by_account.setdefault((_account_key(device.account), device.zone), device.id)

    def device_for_account(self, account: str, zone: int | None) -> Device | None:
        """The device a Contact ID report comes from: the account's zone if mapped, else the account."""
        key = _account_key(account)
        device_id = self._by_account.get((key, zone)) or self._by_account.get((key, None))
        return self.devices[device_id] if device_id else None

    def policy_for(self, kind: Kind) -> Policy:
        return self.policies.get(self.kind_policy.get(kind, "default"), DEFAULT_POLICY)

    def person_by_phone(self, phone: str) -> Person | None:
        person_id = self._by_phone.get(phone)
        return self.people[person_id] if person_id else None

    def household_of_device(self, device_id: str) -> Household | None:
        device = self.devices.get(device_id)
        return self.households.get(device.household_id) if device else None

    def patrol_teams_of(self, group_id: str) -> tuple[str, ...]:
        return self._patrols_by_group.get(group_id, ())

    def people_for(self, group_id: str, role: Role) -> list[Person]:
        """The people a role means for one group, in a stable order, without duplicates."""
        group = self.groups[group_id]
        ids: list[str | None]
        match role:
            case Role.LEADER:
                ids = [group.leader]
            case Role.DEPUTY:
                ids = [group.deputy]
            case Role.GRID_WORKER:
                ids = [group.grid_worker]
            case Role.PATROL:
                ids = [m for t in self.patrol_teams_of(group_id) for m in self.patrols[t].members]
            case Role.DUTY:
                ids = list(self.duty)
        seen: dict[str, Person] = {}
        for person_id in ids:
            if person_id and person_id in self.people and person_id not in seen:
                seen[person_id] = self.people[person_id]
        return list(seen.values())

    def group_devices(self, household_id: str) -> list[Device]:
        """Every device of every household in the caller's group, in roster order."""
        group = self.groups[self.households[household_id].group_id]
        return [self.devices[d] for h in group.households for d in self.households[h].devices]

    def ring_targets(self, household_id: str) -> list[Device]:
        """Ringable devices of every other household in the caller's group."""
        caller = self.households[household_id]
        group = self.groups[caller.group_id]
        targets: list[Device] = []
        for other_id in group.households:
            if other_id == household_id:
                continue
            for device_id in self.households[other_id].devices:
                device = self.devices[device_id]
                if device.ringable:
                    targets.append(device)
        return targets


def _account_key(account: str) -> str:
    # Contact ID transmits the digit 0 as "A": account A234 is account 0234.
    return account.upper().replace("A", "0")
