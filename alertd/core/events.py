"""Typed inputs to the engine. Ingress adapters produce these; nothing else crosses into the core."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from alertd.core.model import Kind


class Via(StrEnum):
    """How an acknowledgement or other action reached us."""

    TERMINAL = "terminal"
    SMS = "sms"
    OPERATOR = "operator"  # the operator socket (alertd ack and friends)
    CONSOLE = "console"  # the duty-room web console
    API = "api"  # the console's JSON API (an integration with a bearer token)
    VOICE = "voice"  # a key pressed during an alert call
    MISSED_CALL = "missed_call"  # a registered phone rang the village modem and was rejected
    SYSTEM = "system"


class Action(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    ON_SCENE = "on_scene"
    RESOLVE = "resolve"
    CANCEL = "cancel"


class Outcome(StrEnum):
    """How an incident ended, as whoever resolved it says (an operator, an SMS reply); kept on the record."""

    REAL = "real"
    FALSE_ALARM = "false_alarm"
    DRILL = "drill"


class Satisfaction(StrEnum):
    """评单: how the household rates the response once it is resolved (the county's 12345 loop:
    点单 → 接单 → 派单 → 办单 → 评单)."""

    SATISFIED = "satisfied"  # 满意
    FAIR = "fair"  # 基本满意
    DISSATISFIED = "dissatisfied"  # 不满意


@dataclass(frozen=True, slots=True)
class Rating:
    """A household's SMS answer to the follow-up text (alertd.protocols.replies reads it)."""

    satisfaction: Satisfaction
    code: str | None = None  # the incident's code, when the answer gives it


@dataclass(frozen=True, slots=True)
class Alarm:
    device_id: str
    kind: Kind
    seq: int | None  # device sequence number; None: deduplicate by content within a window
    source: str = "mqtt"
    silent: bool = False  # duress or silent panic: nothing may sound; only the leader and patrol are told


@dataclass(frozen=True, slots=True)
class Restore:
    """A device reports its alarm condition cleared (Contact ID qualifier 3): a timeline entry."""

    device_id: str
    detail: str


class Arming(StrEnum):
    """What an alarm panel last said about itself: armed (away), armed with people at home, disarmed."""

    ARMED = "armed"
    ARMED_STAY = "armed_stay"
    DISARMED = "disarmed"


class SupervisionKind(StrEnum):
    """What device news that is not an alarm is about (:attr:`Supervision.event`).

    The conditions (``restore`` ends one) are spelled as :class:`alertd.core.supervision.Condition` spells
    them, and as the devices table's columns are named."""

    TAMPERED = "tampered"
    BATTERY_LOW = "battery_low"
    AC_LOSS = "ac_loss"  # mains power gone: the panel runs on its battery
    COMM_TROUBLE = "comm_trouble"  # the panel cannot reach the receiver, or a part of it
    TEST = "test"  # a periodic or manual test report: the device checks in
    OPEN_CLOSE = "open_close"  # the panel was armed or disarmed
    OTHER = "other"  # a valid report alertd gives no meaning to: recorded, never an alarm


@dataclass(frozen=True, slots=True)
class Supervision:
    """Device news that is not an alarm. ``event`` is a condition (``tampered``, ``battery_low``, ``ac_loss``,
    ``comm_trouble``: ``restore`` ends one), ``test`` (a periodic or manual test report), ``open_close`` (the
    panel was armed or disarmed: ``armed``, by ``user``) or ``other`` (a valid report alertd gives no meaning
    to, e.g. a Contact ID code outside its table: recorded, never an alarm)."""

    device_id: str
    event: SupervisionKind
    restore: bool = False
    armed: Arming | None = None  # open_close: the panel's state from now on
    user: int | None = None  # open_close: who armed or disarmed it (the panel's user number)
    detail: str = ""  # what the report was, for the log (e.g. "event 305 system reset, zone 0")


@dataclass(frozen=True, slots=True)
class TerminalAck:
    device_id: str
    incident_id: int | None  # None: the newest incident ringing this terminal


@dataclass(frozen=True, slots=True)
class Coming:
    """A neighbour's "I'm coming" (我来了) button on a ringing terminal: that household is responding."""

    device_id: str
    incident_id: int | None  # None: the newest incident ringing this terminal


@dataclass(frozen=True, slots=True)
class CheckIn:
    """A household's daily sign of life: its terminal's 平安键, or activity its devices' profiles count
    as a sign of life (water flowing, a door opened, a plug switched)."""

    device_id: str


@dataclass(frozen=True, slots=True)
class SensorState:
    """A Zigbee2MQTT device's whole state, as published; the engine finds the transitions in it."""

    device_id: str
    payload: bytes
    retained: bool = False


@dataclass(frozen=True, slots=True)
class Heartbeat:
    device_id: str
    battery: int | None = None


@dataclass(frozen=True, slots=True)
class TestReport:
    __test__ = False  # not a pytest test class, despite the name

    device_id: str


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    device_id: str
    online: bool
    source: str = "mqtt"  # "zigbee2mqtt": the coordinator reports every device, watched or not


@dataclass(frozen=True, slots=True)
class Reply:
    """A text message from a phone: an acknowledgement if the sender is known and it parses."""

    phone: str  # E.164
    text: str
    carrier: str  # "twilio", "modem", ...
    # The provider's id for this message (Twilio's MessageSid, the modem's SIM slot and timestamp): a reply
    # is acted on once, however often it is delivered. None: no id, no protection (tests, the CLI).
    message_id: str | None = None
    # When the provider received it (the SMSC timestamp for the modem); None: when alertd first sees it.
    # A reply acts only on incidents that were open by then.
    received_at: float | None = None

    def __repr__(self) -> str:
        # Logged on an internal error: never the whole number (the same masking as alertd.phones.mask).
        phone = self.phone[:6] + "****" + self.phone[-4:] if len(self.phone) > 10 else "****"
        return f"Reply(phone={phone!r}, text={self.text!r}, carrier={self.carrier!r}, message_id={self.message_id!r})"


@dataclass(frozen=True, slots=True)
class OperatorCommand:
    incident_id: int
    action: Action
    by: str
    outcome: Outcome | None = None
    note: str = ""  # kept in the timeline beside the action
    via: Via = Via.OPERATOR


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The household's rating of a resolved incident, entered for them (a grid worker, on the console)."""

    incident_id: int
    satisfaction: Satisfaction
    by: str
    via: Via = Via.CONSOLE


@dataclass(frozen=True, slots=True)
class Drill:
    """演练: a real alarm at a household, raised on purpose and tagged as a drill. Everything happens as for
    a real one (rings, texts saying 演练, escalation, responses timed); the statistics keep it apart."""

    household_id: str
    kind: Kind
    by: str  # who raised it ("alertd: schedule <name>" for a scheduled one)
    via: Via = Via.OPERATOR


@dataclass(frozen=True, slots=True)
class CheckInPause:
    """A household's daily check-in paused while the person is away (until a moment), or resumed (None)."""

    household_id: str
    until: float | None
    by: str
    via: Via = Via.OPERATOR


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: fire escalation steps that are due."""


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A carrier's word on a message it accepted earlier (Twilio status callback, modem +CDS)."""

    provider_id: str
    status: str  # queued, sent, delivered, undelivered, failed
    error_code: str | None = None
    token: str | None = None  # the carrier's idempotency token: a retried report is recorded once


class CallStatus(StrEnum):
    """What became of a call alertd placed (Twilio's call statuses; the modem's ATD result codes)."""

    ANSWERED = "answered"  # picked up (Twilio in-progress; the modem's OK / +COLP)
    COMPLETED = "completed"  # hung up after being answered
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"  # the number cannot be called, or the carrier failed
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class CallReport:
    """A carrier's word on a call alertd placed: Twilio's signed status and gather callbacks, the modem's
    ATD outcome. A key is an acknowledgement ("1") or on scene ("2") by the person called; a machine or a
    voicemail never acknowledges anything."""

    notification_id: int  # the outbox row the call was placed for (in the signed callback's URL)
    status: CallStatus
    digits: str | None = None  # the key pressed, if any
    machine: bool = False  # answered by an answering machine or a voicemail
    provider_id: str | None = None  # Twilio's CallSid; the modem's call id
    token: str | None = None  # the carrier's idempotency token: a retried callback is handled once


@dataclass(frozen=True, slots=True)
class MissedCall:
    """A phone rang the village modem (its number from +CLIP) and was rejected unanswered: from a registered
    number, an acknowledgement of the newest alarm that person answers for, at no cost to them."""

    phone: str  # E.164
    received_at: float | None = None  # when the modem reported the ring
    call_id: str | None = None  # handled once (the modem's RING burst of one call)

    def __repr__(self) -> str:
        phone = self.phone[:6] + "****" + self.phone[-4:] if len(self.phone) > 10 else "****"
        return f"MissedCall(phone={phone!r}, call_id={self.call_id!r})"


Input = (
    Alarm
    | Restore
    | Supervision
    | TerminalAck
    | Coming
    | CheckIn
    | SensorState
    | Heartbeat
    | TestReport
    | DeviceStatus
    | Reply
    | OperatorCommand
    | Evaluation
    | Drill
    | CheckInPause
    | Tick
    | DeliveryReport
    | CallReport
    | MissedCall
)
