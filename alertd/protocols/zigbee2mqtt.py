"""Zigbee2MQTT as a sans-I/O codec: topics, availability, device state, siren commands.

Topics (base configurable, default ``zigbee2mqtt``):

* ``{base}/{name}``              the WHOLE device state as a JSON object, on every report
* ``{base}/{name}/availability`` ``{"state":"online"}`` / ``{"state":"offline"}`` (legacy: plain text)
* ``{base}/{name}/set``          daemon -> device, e.g. a siren's ``{"warning":{...}}``

Friendly names must be one topic level (no ``/``): that is what ``{base}/+`` matches.

Because every message repeats the whole state, alarms come from transitions, computed purely by
:func:`interpret` from the previous :class:`DeviceState` (the caller keeps it) and the new payload.

After a restart there is no previous state, and the first message is special:

* A *retained* state (the broker replaying what it kept) is taken as the baseline and raises
  nothing: a retained or repeated state after a restart must not re-raise a resolved incident.
  An alarm value in it was handled before the restart, or is stale.
* A *live* (not retained) state is news from the device now: an alarm value in it raises. With
  Zigbee2MQTT's default ``retain: false`` nothing is replayed at all, and a sleepy smoke detector's
  first report after a restart may be the fire itself; swallowing it would lose the alarm. The cost
  is that a condition still present from before the restart (a sensor left wet) raises again; the
  engine's per-device deduplication absorbs that, and persisting DeviceState avoids it entirely.

Every rejection is a :class:`Z2mError` whose ``reason`` is one of :data:`REASONS` (a metrics label).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final, Literal, get_args

from alertd.core.events import Alarm, CheckIn, Heartbeat, Restore, Supervision, SupervisionKind
from alertd.core.profile import ActivityRule, AlarmRule, Command, DeviceProfile, Value
from alertd.protocols.common import CodecError, quote

__all__ = [
    "DEFAULT_BASE",
    "MAX_PAYLOAD",
    "REASONS",
    "SOURCE",
    "DeviceState",
    "Event",
    "Reason",
    "TopicKind",
    "Z2mError",
    "Z2mTopics",
    "interpret",
    "parse_availability",
    "render",
]

DEFAULT_BASE: Final = "zigbee2mqtt"
MAX_PAYLOAD: Final = 4096  # bytes; a device state is a few hundred at most
SOURCE: Final = "zigbee2mqtt"

Reason = Literal[
    "too_large",
    "not_utf8",
    "not_json",
    "not_object",
    "bad_type",
    "bad_value",
    "bad_topic",
    "bad_command",
]
REASONS: Final[frozenset[str]] = frozenset(get_args(Reason))

TopicKind = Literal["state", "availability"]
Event = Alarm | Restore | Supervision | Heartbeat | CheckIn

# {base}, {name}, {incident}, {kind}; any other {identifier} in a command template is a typo.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOKEN = re.compile(r"[a-z][a-z0-9_]{0,31}")  # an alarm kind: plain, safe anywhere in JSON or a topic


class Z2mError(CodecError[Reason]):
    """A topic, payload or command we cannot accept."""


def _bad_level(level: str) -> bool:
    return not level or any(c in level for c in "/+#\0")


# --- topics -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Z2mTopics:
    """The topic layout under one base topic; ``parse`` is the inverse of the state topic."""

    base: str = DEFAULT_BASE

    def __post_init__(self) -> None:
        if any(not level or any(c in level for c in "+#\0") for level in self.base.split("/")):
            raise ValueError(f"invalid Zigbee2MQTT base topic {quote(self.base)}")

    def subscriptions(self) -> list[str]:
        return [f"{self.base}/+", f"{self.base}/+/availability"]

    def everything(self) -> str:
        """Every topic under the base (the broker's ACL: Zigbee2MQTT's own, and the daemon's)."""
        return f"{self.base}/#"

    def parse(self, topic: str) -> tuple[str, TopicKind]:
        """(friendly name, kind) of a topic we subscribed to; anything else is ``bad_topic``.

        ``{base}/bridge/...``, ``{base}/<name>/set`` and ``/get`` (our own commands echoed back, or
        another client's) are refused, as is a device named ``bridge``.
        """
        head = f"{self.base}/"
        match topic.removeprefix(head).split("/") if topic.startswith(head) else []:
            case [name] if name != "bridge" and "\0" not in name and name:
                return name, "state"
            case [name, "availability"] if name != "bridge" and "\0" not in name and name:
                return name, "availability"
            case _:
                raise Z2mError("bad_topic", f"not a device state or availability topic: {quote(topic)}")

    def set_topic(self, name: str) -> str:
        if _bad_level(name) or name == "bridge":
            raise Z2mError("bad_topic", f"invalid friendly name {quote(name)}")
        return f"{self.base}/{name}/set"


# --- payload helpers --------------------------------------------------------------------------


def _text(payload: bytes) -> str:
    if len(payload) > MAX_PAYLOAD:
        raise Z2mError("too_large", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Z2mError("not_utf8", f"payload is not UTF-8 (byte {err.start})") from None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _json(text: str) -> object:
    # NaN and Infinity are not JSON; RecursionError: "[[[[..." nested beyond the stack.
    return json.loads(text, parse_constant=_reject_constant)


def _load_object(payload: bytes) -> dict[str, object]:
    text = _text(payload)
    if not text.strip():
        # Zigbee2MQTT clears a removed device's retained state with an empty message.
        raise Z2mError("not_json", "empty payload (retained state cleared?)")
    try:
        data = _json(text)
    except (ValueError, RecursionError) as err:
        raise Z2mError("not_json", f"payload is not JSON: {quote(str(err))}") from None
    if not isinstance(data, dict):
        raise Z2mError("not_object", f"payload is a JSON {type(data).__name__}, not an object")
    return data


def parse_availability(payload: bytes) -> bool:
    """``{"state":"online"}`` (Zigbee2MQTT >= 1.30) or legacy plain ``online``; True when online."""
    text = _text(payload).strip()
    state: object = text
    if text.startswith("{"):
        data = _load_object(payload)
        if "state" not in data:
            raise Z2mError("bad_value", "availability object has no 'state'")
        state = data["state"]
        if not isinstance(state, str):
            raise Z2mError("bad_type", f"availability 'state' must be a string, got {quote(state)}")
    match state:
        case "online":
            return True
        case "offline":
            return False
        case "":
            raise Z2mError("bad_value", "empty availability (retained availability cleared?)")
        case _:
            raise Z2mError("bad_value", f"availability must be online or offline, got {quote(state)}")


def _same_type(value: object, expected: Value) -> bool:
    # bool is an int in Python, not in JSON; a numeric rule accepts int or float.
    if isinstance(expected, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(expected, bool)
    if isinstance(expected, str) or isinstance(value, str):
        return isinstance(value, str) and isinstance(expected, str)
    return isinstance(value, int | float)


def _rule_value(data: dict[str, object], rule: AlarmRule | ActivityRule) -> object:
    """The rule's field, or None when absent or null ("no change"); a wrong type is ``bad_type``."""
    value = data.get(rule.field)
    if value is not None and not _same_type(value, rule.value):
        raise Z2mError(
            "bad_type",
            f"field {rule.field!r} must be a {type(rule.value).__name__}, got {quote(value)}",
        )
    return value


def _bool(data: dict[str, object], name: str | None) -> bool | None:
    if name is None:
        return None
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        raise Z2mError("bad_type", f"field {name!r} must be a boolean, got {quote(value)}")
    return value


def _battery(data: dict[str, object], name: str | None) -> int | None:
    if name is None:
        return None
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Z2mError("bad_type", f"field {name!r} must be a number, got {quote(value)}")
    # Some converters report 0..200 or 101 %; clamping keeps a quirky battery from costing an alarm.
    return max(0, min(100, round(value)))


# --- device state -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What we last knew of one device; the caller keeps it and passes it back as ``previous``.

    ``alarms`` holds the fields of *state* rules currently in their alarm value (one state rule per
    field: a second rule on the same field would share its entry). Unknown counts as not in alarm.
    """

    alarms: frozenset[str] = frozenset()
    battery: int | None = None
    battery_low: bool = False
    tamper: bool = False

    def to_json(self) -> str:
        """For the store (devices.state), so that after a restart ``previous`` is known, not None."""
        body = {
            "alarms": sorted(self.alarms),
            "battery": self.battery,
            "battery_low": self.battery_low,
            "tamper": self.tamper,
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> DeviceState:
        """The inverse of :meth:`to_json`; anything else is ``bad_value`` (then start from None)."""
        try:
            data = _json(text)
        except (ValueError, RecursionError):
            data = None
        match data:
            case {"alarms": list(alarms), "battery": battery, "battery_low": bool(low), "tamper": bool(tamper)} if all(
                isinstance(a, str) for a in alarms
            ) and (battery is None or (isinstance(battery, int) and not isinstance(battery, bool))):
                return cls(frozenset(alarms), battery, low, tamper)
            case _:
                raise Z2mError("bad_value", f"not a stored device state: {quote(text)}")


def interpret(
    device_id: str,
    profile: DeviceProfile,
    previous: DeviceState | None,
    payload: bytes,
    *,
    retained: bool,
) -> tuple[DeviceState, list[Event]]:
    """Decode one ``{base}/{name}`` state message into the new state and the events it implies.

    * ``Alarm`` when a state rule's field goes into its value from anything else (not on repeats);
      when a momentary rule's value is reported (``action: emergency``), unless ``retained``.
    * ``Restore(device_id, "<field> cleared")`` when a state rule's field leaves its value.
    * ``Supervision(device_id, BATTERY_LOW | TAMPERED, restore=...)`` on each transition.
    * ``Heartbeat(device_id, battery)`` for every live message: a retained one proves nothing about
      the device being alive now, so it gives none.

    ``previous is None`` (nothing known, e.g. after a restart): the payload becomes the baseline.
    From a retained message it raises nothing at all; from a live message only alarms raise (a
    restore or supervision change needs a known "before"). See the module docstring.

    Absent or null fields mean "no change"; unknown fields are ignored; a field we read with the
    wrong JSON type rejects the whole message (``bad_type``), as the profile and device disagree.
    """
    data = _load_object(payload)
    before = previous if previous is not None else DeviceState()
    baseline = previous is None

    alarms: list[Event] = []
    restores: list[Event] = []
    active = set(before.alarms)
    # A live report of activity (a door opened, water running) is a sign of life from the household.
    if not retained and any(_rule_value(data, rule) == rule.value for rule in profile.activity):
        alarms.append(CheckIn(device_id))
    for rule in profile.alarms:
        value = _rule_value(data, rule)
        if value is None:
            continue  # absent: no change
        hit = value == rule.value
        if rule.momentary:
            if hit and not retained:
                alarms.append(Alarm(device_id, rule.kind, seq=None, source=SOURCE))
            continue
        if hit and rule.field not in before.alarms and not (baseline and retained):
            alarms.append(Alarm(device_id, rule.kind, seq=None, source=SOURCE))
        elif not hit and rule.field in before.alarms:
            restores.append(Restore(device_id, f"{rule.field} cleared"))
        if hit:
            active.add(rule.field)
        else:
            active.discard(rule.field)

    battery = _battery(data, profile.battery_field)
    if battery is None:
        battery = before.battery
    low_flag = _bool(data, profile.battery_low_field)
    battery_low = before.battery_low
    battery_reported = profile.battery_field is not None and data.get(profile.battery_field) is not None
    if low_flag is not None or battery_reported:
        # Either signal says low; with neither in this message the battery is "no change".
        battery_low = bool(low_flag) or (battery is not None and battery <= profile.battery_low)
    tamper = _bool(data, profile.tamper_field)
    if tamper is None:
        tamper = before.tamper

    state = DeviceState(frozenset(active), battery, battery_low, tamper)
    events: list[Event] = [*alarms, *restores]
    if not baseline:
        for news, was, now in (
            (SupervisionKind.BATTERY_LOW, before.battery_low, battery_low),
            (SupervisionKind.TAMPERED, before.tamper, tamper),
        ):
            if was != now:
                events.append(Supervision(device_id, news, restore=not now))
    if not retained:
        events.append(Heartbeat(device_id, battery))
    return state, events


# --- commands ---------------------------------------------------------------------------------


def render(command: Command, *, base: str, name: str, incident: int, kind: str) -> tuple[str, str]:
    """(topic, payload) of ``command`` for device ``name``, placeholders substituted.

    The payload template is JSON text, so ``str.format`` cannot be used on it (its braces are JSON's).
    Only ``{base}``, ``{name}``, ``{incident}`` and ``{kind}`` are replaced, with values escaped as
    JSON string content; any other ``{identifier}`` is a typo and refused. The result must parse as a
    JSON object and is returned compact. ``incident`` must be a non-negative integer and ``kind`` a
    plain lower-case token; every problem is ``bad_command``.
    """
    if isinstance(incident, bool) or not isinstance(incident, int) or incident < 0:
        raise Z2mError("bad_command", f"incident must be a non-negative integer, got {quote(incident)}")
    if not _TOKEN.fullmatch(kind):
        raise Z2mError("bad_command", f"kind must be a plain token, got {quote(kind)}")
    if _bad_level(name) or name == "bridge":
        raise Z2mError("bad_command", f"invalid friendly name {quote(name)}")
    if any(not level or any(c in level for c in "+#\0") for level in base.split("/")):
        raise Z2mError("bad_command", f"invalid base topic {quote(base)}")
    values = {"base": base, "name": name, "incident": str(incident), "kind": kind}

    def substitute(template: str, escape: bool) -> str:
        def one(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in values:
                raise Z2mError("bad_command", f"unknown placeholder {{{key}}} in {quote(template)}")
            value = values[key]
            return json.dumps(value, ensure_ascii=False)[1:-1] if escape else value

        return _PLACEHOLDER.sub(one, template)

    topic = substitute(command.topic, escape=False)
    if any(c in topic for c in "+#\0") or any(not level for level in topic.split("/")):
        raise Z2mError("bad_command", f"invalid command topic {quote(topic)}")
    text = substitute(command.payload, escape=True)
    try:
        body = _json(text)
    except (ValueError, RecursionError) as err:
        raise Z2mError("bad_command", f"command payload is not JSON: {quote(str(err))}") from None
    if not isinstance(body, dict):
        raise Z2mError("bad_command", f"command payload is a JSON {type(body).__name__}, not an object")
    return topic, json.dumps(body, ensure_ascii=False, separators=(",", ":"))
