"""Device profiles: read the TOML files of devices/ (and of any local folders) into core `DeviceProfile` values.

One file per device model or protocol, named after the profile id (zigbee-smoke.toml holds id "zigbee-smoke").
The shipped files are installed as the package `alertd.devices`; a site may add a folder of its own. Every
file is checked as a whole and every problem is reported at once, each naming the file, the entry and the
value, as `ConfigError` problems (the same style as alertd.config). Schema: devices/README.md.
Command templates are filled in by alertd.protocols.zigbee2mqtt.render; they are checked here, at load.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import re
from collections.abc import Mapping, Sequence
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any

import tomli
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from alertd.core.model import Kind, Roster
from alertd.core.profile import ActivityRule, AlarmRule, Command, DeviceProfile, Transport, Value
from alertd.errors import ConfigError
from alertd.problems import reason as _reason
from alertd.problems import show as _show
from alertd.problems import where as _where

__all__ = [
    "PLACEHOLDERS",
    "SHIPPED_PACKAGE",
    "check_roster_profiles",
    "load_profiles",
]

_LOGGER = logging.getLogger(__name__)

SHIPPED_PACKAGE = "alertd.devices"  # the top-level devices/ folder, mapped into the package when installed
PLACEHOLDERS = ("base", "name", "incident", "kind")  # what a [ring] or [stop] template may use

# The same pattern alertd.protocols.zigbee2mqtt.render fills in: JSON braces never look like this ('{"' or
# '{}'), so payloads need no escaping.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SAMPLE = "x"  # stands in for every placeholder when a template is checked
_KINDS = frozenset(k.value for k in Kind)
_TRANSPORTS = frozenset(t.value for t in Transport)


# ---------------------------------------------------------------------------------------------- helpers


def _unknown_placeholders(template: str) -> str | None:
    unknown = sorted({f"{{{p}}}" for p in _PLACEHOLDER.findall(template) if p not in PLACEHOLDERS})
    if not unknown:
        return None
    allowed = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
    return f"unknown placeholder {', '.join(unknown)} (allowed: {allowed})"


# ---------------------------------------------------------------------------------------------- file schema


def _kind(value: object) -> object:
    if isinstance(value, str) and value not in _KINDS:
        raise ValueError(f"unknown kind (one of {', '.join(Kind)})")
    return Kind(value) if isinstance(value, str) else value


def _transport(value: object) -> object:
    if isinstance(value, str) and value not in _TRANSPORTS:
        raise ValueError(f"unknown transport (one of {', '.join(Transport)})")
    return Transport(value) if isinstance(value, str) else value


def _scalar(value: object) -> object:
    if not isinstance(value, bool | int | float | str):
        raise ValueError("must be a boolean, a number or a string")  # noqa: TRY004 - pydantic reports ValueError only
    return value


FieldName = Annotated[str, Field(min_length=1)]


class _In(BaseModel):
    # strict: TOML already has types, so "true" for a bool or "20" for a percent is a typo worth reporting.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class _CommandIn(_In):
    topic: str = Field(min_length=1)
    payload: str

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        problems = [p] if (p := _unknown_placeholders(value)) else []
        topic = _PLACEHOLDER.sub(_SAMPLE, value)
        if any(c in topic for c in "+#\0"):
            problems.append("wildcards (+, #) cannot be published to")
        if "{" in topic or "}" in topic:
            problems.append("stray brace (placeholders are {base}, {name}, {incident}, {kind})")
        if any(not level for level in topic.split("/")):
            problems.append("empty topic level (a leading, trailing or double /)")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("payload")
    @classmethod
    def _payload(cls, value: str) -> str:
        problems = [p] if (p := _unknown_placeholders(value)) else []
        try:
            body = json.loads(_PLACEHOLDER.sub(_SAMPLE, value))
        except json.JSONDecodeError as err:
            problems.append(f"not valid JSON ({err.msg} at column {err.colno}; placeholders go inside strings)")
        else:
            if not isinstance(body, dict):
                problems.append("must be a JSON object")
        if problems:
            raise ValueError("; ".join(problems))
        return value


class _AlarmIn(_In):
    field: FieldName
    value: Annotated[Value, BeforeValidator(_scalar)]
    kind: Annotated[Kind, BeforeValidator(_kind)]
    momentary: bool = False


class _ActivityIn(_In):
    field: FieldName
    value: Annotated[Value, BeforeValidator(_scalar)]


class _ProfileIn(_In):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    transport: Annotated[Transport, BeforeValidator(_transport)]
    checkin_s: float = Field(default=0.0, ge=0)
    battery_field: FieldName | None = None
    battery_low: int = Field(default=20, ge=0, le=100)
    battery_low_field: FieldName | None = None
    tamper_field: FieldName | None = None
    alarms: list[_AlarmIn] = []
    ring: _CommandIn | None = None
    stop: _CommandIn | None = None
    activity: list[_ActivityIn] = []


def _cross_checks(profile: _ProfileIn) -> list[str]:
    """What each key allows on its own, but not together."""
    problems: list[str] = []
    if profile.ring is not None and profile.stop is None:
        problems.append("[ring] without [stop]: a siren that cannot be silenced keeps sounding after the incident")
    if profile.stop is not None and profile.ring is None:
        problems.append("[stop] without [ring]")
    if profile.transport != Transport.ZIGBEE2MQTT:
        carried = "the alertd protocol" if profile.transport == Transport.ALERTD else "the Contact ID event code"
        if profile.alarms:
            problems.append(f"[[alarms]]: transport {_show(profile.transport.value)} carries the kind in {carried}")
        if profile.activity:
            problems.append(f"[[activity]]: transport {_show(profile.transport.value)} has no state reports to read")
        if profile.ring is not None or profile.stop is not None:
            how = "rings through its own protocol" if profile.transport == Transport.ALERTD else "is one-way"
            problems.append(f"[ring]/[stop]: transport {_show(profile.transport.value)} {how}")
    if "battery_low" in profile.model_fields_set and profile.battery_field is None:
        problems.append(f"battery_low {profile.battery_low}: needs battery_field (the percent it applies to)")
    seen: dict[tuple[str, str], int] = {}
    for index, rule in enumerate(profile.alarms, 1):
        key = (rule.field, json.dumps(rule.value))  # json: true and 1 are different values here
        if key in seen:
            problems.append(f"alarms[{index}]: {rule.field} = {_show(rule.value)} already in alarms[{seen[key]}]")
        seen.setdefault(key, index)
    return problems


def _build(profile: _ProfileIn) -> DeviceProfile:
    def command(raw: _CommandIn | None) -> Command | None:
        return None if raw is None else Command(raw.topic, raw.payload)

    return DeviceProfile(
        id=profile.id,
        name=profile.name,
        transport=profile.transport,
        alarms=tuple(AlarmRule(a.field, a.value, a.kind, a.momentary) for a in profile.alarms),
        activity=tuple(ActivityRule(a.field, a.value) for a in profile.activity),
        checkin_s=profile.checkin_s,
        battery_field=profile.battery_field,
        battery_low=profile.battery_low,
        battery_low_field=profile.battery_low_field,
        tamper_field=profile.tamper_field,
        ring=command(profile.ring),
        stop=command(profile.stop),
    )


# ---------------------------------------------------------------------------------------------- reading


def _read_profile(file: Traversable, label: str) -> tuple[DeviceProfile | None, list[str]]:
    try:
        data: dict[str, Any] = tomli.loads(file.read_bytes().decode("utf-8"))
    except tomli.TOMLDecodeError as err:
        return None, [f"{label}: TOML syntax error: {err}"]
    except UnicodeDecodeError:
        return None, [f"{label}: not UTF-8 text"]
    except OSError as err:
        return None, [f"{label}: cannot read: {err.strerror}"]

    problems: list[str] = []
    stem = file.name.removesuffix(".toml")
    file_id = data.get("id")
    if isinstance(file_id, str) and file_id and file_id != stem:
        problems.append(f"{label}: id {_show(file_id)}: file name and id differ (name the file {file_id}.toml)")
    try:
        profile = _ProfileIn.model_validate(data)
    except ValidationError as err:
        for error in err.errors():
            key = _where(error["loc"])
            shown = "" if error["type"] in ("extra_forbidden", "missing") else " " + _show(error["input"])
            problems.append(f"{label}: {key}{shown}: {_reason(error)}" if key else f"{label}: {_reason(error)}")
        return None, problems
    problems += [f"{label}: {problem}" for problem in _cross_checks(profile)]
    return (None, problems) if problems else (_build(profile), [])


def _shipped() -> Traversable:
    try:
        return importlib.resources.files(SHIPPED_PACKAGE)
    except ModuleNotFoundError:
        # A source checkout run without installing it: the files sit at the top of the repository.
        return Path(__file__).resolve().parent.parent / "devices"


def _label(file: Traversable) -> str:
    return str(file) if isinstance(file, Path) else f"{SHIPPED_PACKAGE}/{file.name}"


def load_profiles(extra: Sequence[Path] = (), *, shipped: bool = True) -> dict[str, DeviceProfile]:
    """Every profile, by id: the shipped ones (unless shipped=False), then each folder of `extra`.

    A folder's *.toml files are read in name order. A profile id may be defined once: a local file cannot
    silently replace a shipped one. Raises ConfigError listing every problem in every file.
    """
    folders: list[tuple[Traversable, str]] = [(_shipped(), "shipped profiles")] if shipped else []
    folders += [(Path(folder), str(folder)) for folder in extra]
    profiles: dict[str, DeviceProfile] = {}
    defined_in: dict[str, str] = {}
    problems: list[str] = []
    for folder, label in folders:
        if not folder.is_dir():
            problems.append(f"{label}: profile folder not found")
            continue
        for file in sorted((f for f in folder.iterdir() if f.name.endswith(".toml")), key=lambda f: f.name):
            where = _label(file)
            profile, file_problems = _read_profile(file, where)
            problems += file_problems
            if profile is None:
                continue
            if profile.id in defined_in:
                problems.append(
                    f"{where}: id {_show(profile.id)}: duplicate profile id, also in {defined_in[profile.id]}"
                )
                continue
            defined_in[profile.id] = where
            profiles[profile.id] = profile
    if problems:
        raise ConfigError(problems)
    _LOGGER.info("device profiles: %d (%s)", len(profiles), ", ".join(profiles))
    return profiles


def check_roster_profiles(
    roster: Roster, profiles: Mapping[str, DeviceProfile], label: str = "roster.toml"
) -> list[str]:
    """Problems of the roster's devices against the profiles: unknown profile names, and settings a profile rules out.

    `label` names the roster file in the messages, as alertd.config does.
    """
    problems: list[str] = []
    known = ", ".join(sorted(profiles))
    for device in roster.devices.values():
        where = f"{label}: device {_show(device.id)}"
        profile = profiles.get(device.profile)
        if profile is None:
            problems.append(f"{where}: profile {_show(device.profile)}: unknown profile (known: {known})")
            continue
        if device.ringable and not profile.ringable:
            problems.append(f"{where}: ringable, but profile {_show(profile.id)} cannot be rung (set ringable = false)")
        if profile.transport == Transport.CONTACT_ID and device.account is None:
            problems.append(f"{where}: profile {_show(profile.id)} needs the panel's Contact ID account")
        if profile.transport != Transport.CONTACT_ID and (device.account is not None or device.zone is not None):
            problems.append(
                f"{where}: account/zone only apply to Contact ID devices, not to profile {_show(profile.id)}"
            )
    return problems
