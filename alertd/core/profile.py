"""Device profiles as values: what a device model's payloads mean and how to make it ring.

The files live in devices/ (one per model or protocol) and are read by alertd.profiles; adding a
supported device means adding a file, not code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from alertd.core.model import Kind


class Transport(StrEnum):
    ALERTD = "alertd"  # our terminal protocol over MQTT
    ZIGBEE2MQTT = "zigbee2mqtt"
    CONTACT_ID = "contact-id"


Value = bool | int | float | str


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """`field == value` in a state payload means an alarm of `kind`.

    A state rule (smoke: true) raises on the transition into the value and restores on the way out; a
    momentary rule (action: emergency) raises every time the value is reported.
    """

    field: str
    value: Value
    kind: Kind
    momentary: bool = False


@dataclass(frozen=True, slots=True)
class ActivityRule:
    """A live report with field = value is a sign of life from the household (平安键 by activity): water
    running through a meter, a door opened, a plug switched on."""

    field: str
    value: Value


@dataclass(frozen=True, slots=True)
class Command:
    """A command to publish: topic and payload templates with {base}, {name} (and {incident}, {kind})."""

    topic: str
    payload: str


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    id: str
    name: str
    transport: Transport
    alarms: tuple[AlarmRule, ...] = ()
    checkin_s: float = 0.0  # expected report interval; 0: the device is not expected to check in
    battery_field: str | None = None  # percent
    battery_low: int = 20  # percent at or below which the battery is low
    battery_low_field: str | None = None  # a boolean the device computes itself
    tamper_field: str | None = None
    ring: Command | None = None
    stop: Command | None = None
    activity: tuple[ActivityRule, ...] = ()  # reports that are a sign of someone at home

    @property
    def ringable(self) -> bool:
        return self.transport == Transport.ALERTD or self.ring is not None
