"""Which devices can still raise an alarm and which terminals can still ring: pure, from what each device
last reported, its profile's check-in interval and the time now."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from alertd.core.model import Device
from alertd.core.profile import DeviceProfile

# A device is silent when nothing came from it for this many check-in intervals (radio flaps, a missed
# heartbeat or two are normal).
CHECKIN_TOLERANCE = 2.5


class Condition(StrEnum):
    OK = "ok"
    NEVER_SEEN = "never_seen"
    OFFLINE = "offline"  # its Last Will / availability says so
    SILENT = "silent"  # missed its check-in window
    BATTERY_LOW = "battery_low"
    TAMPERED = "tampered"


@dataclass(frozen=True, slots=True)
class Reported:
    """What the store knows of a device (None: never reported that)."""

    online: bool | None = None
    last_seen: float | None = None
    battery: int | None = None
    battery_low: bool | None = None
    tampered: bool | None = None


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    device_id: str
    conditions: tuple[Condition, ...]
    last_seen: float | None
    battery: int | None

    @property
    def healthy(self) -> bool:
        return self.conditions == (Condition.OK,)


def assess(
    device: Device, profile: DeviceProfile | None, reported: Reported, now: float, tolerance: float = CHECKIN_TOLERANCE
) -> DeviceHealth:
    conditions: list[Condition] = []
    checkin = profile.checkin_s if profile is not None else 0.0
    if reported.last_seen is None:
        if checkin > 0:
            conditions.append(Condition.NEVER_SEEN)
    elif reported.online is False:
        conditions.append(Condition.OFFLINE)
    elif checkin > 0 and now - reported.last_seen > checkin * tolerance:
        conditions.append(Condition.SILENT)
    low_at = profile.battery_low if profile is not None else 20
    if reported.battery_low or (reported.battery is not None and reported.battery <= low_at):
        conditions.append(Condition.BATTERY_LOW)
    if reported.tampered:
        conditions.append(Condition.TAMPERED)
    return DeviceHealth(device.id, tuple(conditions) or (Condition.OK,), reported.last_seen, reported.battery)
