"""Typed inputs to the engine. Ingress adapters produce these; nothing else crosses into the core."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from alertd.core.model import Kind


class Via(StrEnum):
    """How an acknowledgement or other action reached us."""

    TERMINAL = "terminal"
    SMS = "sms"
    OPERATOR = "operator"
    SYSTEM = "system"


class Action(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    ON_SCENE = "on_scene"
    RESOLVE = "resolve"
    CANCEL = "cancel"


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


@dataclass(frozen=True, slots=True)
class Supervision:
    """Device health news that is not an alarm: tamper, low battery, AC loss, periodic test."""

    device_id: str
    event: str
    restore: bool = False


@dataclass(frozen=True, slots=True)
class TerminalAck:
    device_id: str
    incident_id: int | None  # None: the newest incident ringing this terminal


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


@dataclass(frozen=True, slots=True)
class OperatorCommand:
    incident_id: int
    action: Action
    by: str
    outcome: str | None = None
    note: str = ""


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


Input = (
    Alarm
    | Restore
    | Supervision
    | TerminalAck
    | SensorState
    | Heartbeat
    | TestReport
    | DeviceStatus
    | Reply
    | OperatorCommand
    | Tick
    | DeliveryReport
)
