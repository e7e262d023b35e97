"""Terminal protocol v1: our own alarm terminals over MQTT, as a sans-I/O codec.

Topics (prefix configurable, default ``alertd/v1``):

* ``{prefix}/dev/{device_id}/event``  device -> daemon, QoS 1, JSON object with a ``type``
  (``alarm`` ``ack`` ``heartbeat`` ``test``; revision 2 adds ``coming`` and ``checkin``)
* ``{prefix}/dev/{device_id}/status`` device -> daemon, retained, ``online`` / ``offline`` (Last Will)
* ``{prefix}/dev/{device_id}/cmd``    daemon -> device, QoS 1, JSON ``ring`` / ``stop``

Parsing is strict about types and lenient about extra fields, so newer firmware can add fields
without breaking an older daemon. Every rejection is a :class:`ProtocolError` whose ``reason`` is
one of :data:`REASONS`, meant as a metrics label. See docs/protocol.md.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Final, Literal, get_args

from alertd.core.events import Alarm, CheckIn, Coming, Heartbeat, TerminalAck, TestReport
from alertd.core.model import Kind
from alertd.protocols.common import CodecError, quote

__all__ = [
    "DEFAULT_PREFIX",
    "MAX_PAYLOAD",
    "REASONS",
    "DeviceEvent",
    "Leaf",
    "ProtocolError",
    "Reason",
    "RingCommand",
    "StopCommand",
    "Topics",
    "decode_command",
    "encode_event",
    "encode_ring",
    "encode_stop",
    "parse_event",
    "parse_status",
]

DEFAULT_PREFIX: Final = "alertd/v1"
MAX_PAYLOAD: Final = 4096  # bytes; a terminal event is tens of bytes, anything near this is not ours

# Incident ids and sequence numbers are stored as SQLite INTEGER (signed 64 bit).
_MAX_INT: Final = 2**63 - 1
_DECIMAL = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() would let "²" or "١" through

Reason = Literal[
    "too_large",
    "not_utf8",
    "not_json",
    "not_object",
    "missing_field",
    "bad_type",
    "unknown_type",
    "unknown_kind",
    "bad_value",
    "bad_topic",
]
REASONS: Final[frozenset[str]] = frozenset(get_args(Reason))

Leaf = Literal["event", "status"]
DeviceEvent = Alarm | TerminalAck | Coming | CheckIn | Heartbeat | TestReport


class ProtocolError(CodecError[Reason]):
    """A payload or topic we cannot accept."""


def _check_segment(what: str, value: str) -> None:
    # A device id is one topic level: no separators, no wildcards, no NUL (forbidden by MQTT).
    if not value or any(c in value for c in "/+#\0"):
        raise ValueError(f"invalid {what} {quote(value)}")


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic layout under one prefix; ``parse`` is the inverse of ``event`` and ``status``."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        levels = self.prefix.split("/")
        if any(not level or any(c in level for c in "+#\0") for level in levels):
            raise ValueError(f"invalid topic prefix {quote(self.prefix)}")

    def event(self, device_id: str) -> str:
        _check_segment("device id", device_id)
        return f"{self.prefix}/dev/{device_id}/event"

    def status(self, device_id: str) -> str:
        _check_segment("device id", device_id)
        return f"{self.prefix}/dev/{device_id}/status"

    def cmd(self, device_id: str) -> str:
        _check_segment("device id", device_id)
        return f"{self.prefix}/dev/{device_id}/cmd"

    def every(self, leaf: Literal["event", "status", "cmd"]) -> str:
        """The wildcard for one leaf of every device (subscriptions, the broker's ACL)."""
        return f"{self.prefix}/dev/+/{leaf}"

    def subscriptions(self) -> list[str]:
        """What the daemon reads: every device's events and status."""
        return [self.every("event"), self.every("status")]

    def commanded(self, topic: str) -> str:
        """The device id a ``cmd`` topic is addressed to (the inverse of ``cmd``)."""
        head = f"{self.prefix}/dev/"
        match topic.removeprefix(head).split("/") if topic.startswith(head) else []:
            case [device_id, "cmd"] if device_id:
                return device_id
            case _:
                raise ProtocolError("bad_topic", f"not a device command topic: {quote(topic)}")

    def parse(self, topic: str) -> tuple[str, Leaf]:
        """(device_id, leaf) of a topic we subscribed to; anything else is ``bad_topic``."""
        head = f"{self.prefix}/dev/"
        match topic.removeprefix(head).split("/") if topic.startswith(head) else []:
            case [device_id, "event" | "status" as leaf] if device_id and "\0" not in device_id:
                return device_id, leaf
            case _:
                raise ProtocolError("bad_topic", f"not a device event or status topic: {quote(topic)}")


# --- decoding helpers -------------------------------------------------------------------------


def _load_object(payload: bytes) -> dict[str, object]:
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError("too_large", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProtocolError("not_utf8", f"payload is not UTF-8 (byte {err.start})") from None
    try:
        # NaN and Infinity are not JSON; Python accepts them unless told otherwise.
        data: object = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:  # RecursionError: "[[[[..." nested beyond the stack
        raise ProtocolError("not_json", f"payload is not JSON: {quote(str(err))}") from None
    if not isinstance(data, dict):
        raise ProtocolError("not_object", f"payload is a JSON {type(data).__name__}, not an object")
    return data


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _require(data: dict[str, object], name: str) -> object:
    if name not in data:
        raise ProtocolError("missing_field", f"field {name!r} is missing")
    return data[name]


def _str(data: dict[str, object], name: str) -> str:
    value = _require(data, name)
    if not isinstance(value, str):
        raise ProtocolError("bad_type", f"field {name!r} must be a string, got {quote(value)}")
    return value


def _optional_int(data: dict[str, object], name: str, low: int, high: int) -> int | None:
    value = data.get(name)
    if value is None:  # absent or null: firmware often serializes "unknown" as null
        return None
    if isinstance(value, bool) or not isinstance(value, int):  # bool is an int in Python, not in JSON
        raise ProtocolError("bad_type", f"field {name!r} must be an integer, got {quote(value)}")
    if not low <= value <= high:
        raise ProtocolError("bad_value", f"field {name!r} must be in {low}..{high}, got {quote(value)}")
    return value


def _incident_id(name: str, value: object) -> int:
    """An incident id: the decimal string we send in commands, or a JSON integer."""
    match value:
        case str() if _DECIMAL.fullmatch(value):
            number = int(value)
        case str():
            raise ProtocolError("bad_value", f"field {name!r} is not a decimal incident id: {quote(value)}")
        case int() if not isinstance(value, bool):  # bool is an int in Python, not in JSON
            number = value
        case _:
            raise ProtocolError("bad_type", f"field {name!r} must be a string or integer, got {quote(value)}")
    if not 0 <= number <= _MAX_INT:
        raise ProtocolError("bad_value", f"field {name!r} is out of range: {quote(value)}")
    return number


def _optional_incident(data: dict[str, object]) -> int | None:
    value = data.get("incident")  # absent or null: the newest incident ringing this terminal
    return None if value is None else _incident_id("incident", value)


def _kind(data: dict[str, object]) -> Kind:
    name = _str(data, "kind")
    try:
        return Kind(name)
    except ValueError:
        raise ProtocolError("unknown_kind", f"unknown alarm kind {quote(name)}") from None


# --- device -> daemon -------------------------------------------------------------------------


def parse_event(device_id: str, payload: bytes) -> DeviceEvent:
    """Decode one message from ``{prefix}/dev/{device_id}/event``."""
    data = _load_object(payload)
    match _str(data, "type"):
        case "alarm":
            return Alarm(device_id, _kind(data), _optional_int(data, "seq", 0, _MAX_INT))
        case "ack":
            return TerminalAck(device_id, _optional_incident(data))
        case "coming":  # v1 revision 2
            return Coming(device_id, _optional_incident(data))
        case "checkin":  # v1 revision 2
            return CheckIn(device_id)
        case "heartbeat":
            return Heartbeat(device_id, _optional_int(data, "battery", 0, 100))
        case "test":
            return TestReport(device_id)
        case other:
            raise ProtocolError("unknown_type", f"unknown event type {quote(other)}")


def parse_status(payload: bytes) -> bool:
    """Decode the retained ``status`` message: True for ``online``, False for ``offline``."""
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError("too_large", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ProtocolError("not_utf8", f"payload is not UTF-8 (byte {err.start})") from None
    # Lenient on case and a trailing newline: status only drives the dashboard, never an alarm.
    match text.strip().lower():
        case "online":
            return True
        case "offline":
            return False
        case "":
            # An empty retained message is how a broker user clears the retained status.
            raise ProtocolError("bad_value", "empty status (retained status cleared?)")
        case _:
            raise ProtocolError("bad_value", f"status must be online or offline, got {quote(text)}")


def encode_event(event: DeviceEvent) -> bytes:
    """What a terminal publishes for ``event``: for simulated terminals and round-trip tests."""
    body: dict[str, object]
    match event:
        case Alarm(kind=kind, seq=seq):
            body = {"type": "alarm", "kind": kind.value, "seq": seq}
        case TerminalAck(incident_id=incident_id):
            body = {"type": "ack", "incident": None if incident_id is None else str(incident_id)}
        case Coming(incident_id=incident_id):
            body = {"type": "coming", "incident": None if incident_id is None else str(incident_id)}
        case CheckIn():
            body = {"type": "checkin"}
        case Heartbeat(battery=battery):
            body = {"type": "heartbeat", "battery": battery}
        case TestReport():
            body = {"type": "test"}
    # Optional fields are left out rather than sent as null, as real terminals do.
    body = {name: value for name, value in body.items() if value is not None}
    return _dumps(body).encode("utf-8")


# --- daemon -> device -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RingCommand:
    incident_id: int
    kind: Kind
    household_id: str
    label: str


@dataclass(frozen=True, slots=True)
class StopCommand:
    incident_id: int


def _dumps(body: dict[str, object]) -> str:
    # Compact and unescaped: labels are Chinese, and small terminals have small buffers.
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


@functools.lru_cache(maxsize=256)  # an incident rings ~9 neighbours with the same body; a burst has many incidents
def encode_ring(incident_id: int, kind: Kind, household_id: str, label: str) -> str:
    """The ``cmd`` body that makes a neighbour's terminal ring for ``household_id``'s alarm."""
    return _dumps(
        {
            "type": "ring",
            "incident": str(incident_id),
            "kind": kind.value,
            "from": {"household": household_id, "label": label},
        }
    )


def encode_stop(incident_id: int) -> str:
    """The ``cmd`` body that silences a terminal ringing for ``incident_id``."""
    return _dumps({"type": "stop", "incident": str(incident_id)})


def decode_command(payload: bytes) -> RingCommand | StopCommand:
    """Decode a ``cmd`` message, as a terminal (or a simulated one) would."""
    data = _load_object(payload)
    match _str(data, "type"):
        case "ring":
            incident_id = _incident_id("incident", _require(data, "incident"))
            kind = _kind(data)
            origin = _require(data, "from")
            if not isinstance(origin, dict):
                raise ProtocolError("bad_type", f"field 'from' must be an object, got {quote(origin)}")
            return RingCommand(incident_id, kind, _str(origin, "household"), _str(origin, "label"))
        case "stop":
            return StopCommand(_incident_id("incident", _require(data, "incident")))
        case other:
            raise ProtocolError("unknown_type", f"unknown command type {quote(other)}")
