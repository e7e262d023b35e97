"""What an incident is, and what deciding about one produces: the records the store keeps and the
vocabularies they are written in (an outcome is the events' Outcome, as an operator or a reply gives it; a
maintenance condition is supervision's Condition). Plain data; the decisions live in incidents.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from alertd.core.events import Arming, DeliveryReport, Outcome, Satisfaction
from alertd.core.model import Kind
from alertd.core.supervision import Condition


class State(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    ON_SCENE = "on_scene"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


ACTIVE_STATES = frozenset({State.OPEN, State.ACKNOWLEDGED, State.ON_SCENE})


class Channel(StrEnum):
    TERMINAL = "terminal"
    SMS = "sms"
    VOICE = "voice"  # a spoken alert call (Twilio), or the modem ringing the phone (响铃提醒)


class Purpose(StrEnum):
    RING = "ring"
    STOP = "stop"
    ALERT = "alert"  # an alarm text: urgent, hedged across SMS carriers
    NOTICE = "notice"  # maintenance, the daily digest, the server's own trouble: can wait for a carrier


@dataclass(frozen=True, slots=True)
class Incident:
    id: int
    household_id: str
    group_id: str
    kind: Kind
    policy: str
    state: State
    opened_at: float
    last_alarm_at: float
    next_step: int | None = 0  # index of the next escalation step, None when escalation stopped
    next_step_at: float | None = None  # absolute deadline (UTC epoch) of next_step
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    on_scene_at: float | None = None
    resolved_at: float | None = None
    outcome: Outcome | None = None
    rung: tuple[str, ...] = ()  # terminals told to ring; they get a stop when it is over
    silent: bool = False  # duress / silent panic: never ring, tell only the leader and the patrol
    device_id: str | None = None  # maintenance incidents: the device that needs a visit
    maintenance: Condition | None = None  # maintenance incidents: the condition (offline, silent, battery_low, ...)
    satisfaction: Satisfaction | None = None  # 评单: the household's rating, once resolved
    evaluated_by: str | None = None
    responders: tuple[Responder, ...] = ()  # who said they are coming ("I'm coming" button, reply 2), in order
    quorum: int = 0  # responders a policy step asked for before escalation may stop; 0: none
    quorum_state: str = ""  # "" pending (or none asked), "reached", "missed" (the leader was told which)
    drill: bool = False  # 演练: a real alarm in every way, kept out of the real statistics
    welfare: bool = False  # 平安键: no sign of life from a household by its check-in time; never rings

    @property
    def is_alarm(self) -> bool:
        """An alarm from a household (or a drill): not a device's maintenance nor a missed check-in."""
        return self.maintenance is None and not self.welfare

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def quorum_pending(self) -> bool:
        """A quorum was asked for and not reached yet: escalation goes on after the first acknowledgement."""
        return self.quorum > 0 and len(self.responders) < self.quorum and self.quorum_state != "reached"

    @property
    def code(self) -> str:
        """Short code residents type in SMS replies."""
        return str(self.id)


@dataclass(frozen=True, slots=True)
class Responder:
    """One who is coming to an alarm: a household (its "I'm coming" button, or a member's reply 2), or a
    person from outside the group (a patrol member's reply 2)."""

    who: str  # household id or person id
    label: str  # what the leader and the console see: "7号户 李家", "护边员甲"
    at: float


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to one recipient, planned by the core and put in the outbox before it is sent."""

    incident_id: int | None  # None: about no incident (the daily readiness digest)
    step: int  # escalation step; stop commands use the step after the last
    channel: Channel
    purpose: Purpose
    recipient: str  # device id or person id
    address: str  # device id or E.164 phone
    body: str  # the text as sent (or, for a call, as spoken)
    scope: str | None = None  # what the message is about when it is no incident, e.g. "digest:g1:2026-11-29"
    # What the text says for a template carrier (Aliyun SMS): its kind and parameters (alertd.core.messages).
    template: str = ""
    params: tuple[tuple[str, str], ...] = ()
    attempt: int = 0  # a call placed again after one that got no key: 1, 2, ...
    not_before: float | None = None  # not sent before then (a call's retry, a storm's summary); None: at once
    merged_into: str | None = None  # in a storm: kept in the outbox, never sent, carried by this summary
    rewrite: bool = False  # a storm's summary: rewritten with each alert merged into it while it waits

    @property
    def key(self) -> str:
        """Unique per incident, step, purpose, channel, recipient and attempt: the outbox never holds it twice."""
        key = f"{self.scope or self.incident_id}:{self.step}:{self.purpose}:{self.channel}:{self.recipient}"
        return f"{key}:{self.attempt}" if self.attempt else key


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    incident_id: int
    at: float
    event: str
    actor: str = ""
    detail: str = ""


@dataclass(slots=True)
class Effects:
    notifications: list[Notification] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)

    def extend(self, other: Effects) -> None:
        self.notifications.extend(other.notifications)
        self.timeline.extend(other.timeline)


@dataclass(frozen=True, slots=True)
class DeviceUpdate:
    """What one input says about a device; None leaves the stored value as it was."""

    device_id: str
    at: float
    online: bool | None = None
    battery: int | None = None
    test: bool = False
    battery_low: bool | None = None
    tampered: bool | None = None
    state: str | None = None  # JSON of the sensor's last interpreted state
    ac_loss: bool | None = None
    comm_trouble: bool | None = None
    armed: Arming | None = None  # a panel armed or disarmed: replaces armed_user and armed_at as well
    armed_user: int | None = None


@dataclass(slots=True)
class Batch:
    """Everything one engine step decided (the desk's changes), committed in one transaction."""

    now: float
    incidents: dict[int, Incident] = field(default_factory=dict)
    timeline: list[TimelineEntry] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    seen: list[tuple[str, int]] = field(default_factory=list)
    devices: list[DeviceUpdate] = field(default_factory=list)
    deliveries: list[DeliveryReport] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)  # facts about the store, e.g. the last digest day
    inbound: list[str] = field(default_factory=list)  # ids of inbound messages handled in this batch

    def __bool__(self) -> bool:
        return bool(
            self.incidents
            or self.timeline
            or self.notifications
            or self.seen
            or self.devices
            or self.deliveries
            or self.meta
            or self.inbound
        )
