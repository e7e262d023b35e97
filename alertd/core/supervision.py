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
    AC_LOSS = "ac_loss"  # mains power gone: the panel runs on its battery (Contact ID 301)
    COMM_TROUBLE = "comm_trouble"  # the panel cannot reach the receiver, or a part of it (Contact ID 350)


@dataclass(frozen=True, slots=True)
class Reported:
    """What the store knows of a device (None: never reported that)."""

    online: bool | None = None
    last_seen: float | None = None
    battery: int | None = None
    battery_low: bool | None = None
    tampered: bool | None = None
    ac_loss: bool | None = None
    comm_trouble: bool | None = None


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
    if reported.ac_loss:
        conditions.append(Condition.AC_LOSS)
    if reported.comm_trouble:
        conditions.append(Condition.COMM_TROUBLE)
    return DeviceHealth(device.id, tuple(conditions) or (Condition.OK,), reported.last_seen, reported.battery)


# What opens a maintenance incident, and after how long a condition must have lasted: a radio flap at
# 3 a.m. must not wake the grid worker, a tampered or dying device should. Power cuts and phone line
# faults are as often over in minutes (the panel rides them out on its battery), so they wait too.
MAINTENANCE_CONDITIONS = frozenset(
    {
        Condition.OFFLINE,
        Condition.SILENT,
        Condition.BATTERY_LOW,
        Condition.TAMPERED,
        Condition.AC_LOSS,
        Condition.COMM_TROUBLE,
    }
)
GRACE_APPLIES = frozenset({Condition.OFFLINE, Condition.SILENT, Condition.AC_LOSS, Condition.COMM_TROUBLE})


@dataclass(frozen=True, slots=True)
class Review:
    """What one supervision pass decided: conditions to open a maintenance incident for, and ones over."""

    to_open: tuple[tuple[str, Condition], ...]
    to_close: tuple[tuple[str, Condition], ...]
    pending: dict[tuple[str, Condition], float]  # condition first seen, while its grace period runs


def review(
    healths: list[DeviceHealth],
    open_cases: set[tuple[str, Condition]],
    pending: dict[tuple[str, Condition], float],
    now: float,
    grace_s: float,
) -> Review:
    """Compare what devices report with the maintenance incidents that are open. Pure: the engine acts on it."""
    present = {(h.device_id, c) for h in healths for c in h.conditions if c in MAINTENANCE_CONDITIONS}
    still_pending = {key: since for key, since in pending.items() if key in present}
    to_open = []
    for key in sorted(present - open_cases):
        since = still_pending.setdefault(key, now)
        if key[1] not in GRACE_APPLIES or now - since >= grace_s:
            to_open.append(key)
            still_pending.pop(key)
    to_close = tuple(sorted(open_cases - present))
    return Review(tuple(to_open), to_close, still_pending)
