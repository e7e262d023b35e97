"""The daily readiness digest: when it is due, and what each group's leader is told.

Pure: the clock reading is an argument. The digest follows local wall time (a leader expects it at 08:00
whatever the server's uptime), so its schedule is computed from the calendar, never by adding 24 h: a
clock step or a daylight-saving change moves it to the right local time instead of drifting.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from alertd.core.incidents import Notification, Purpose
from alertd.core.messages import Texts, text_to
from alertd.core.model import Device, Roster
from alertd.core.profile import DeviceProfile
from alertd.core.supervision import Condition, Reported, assess

# The store's record of the last day a digest was planned for, so a restart never plans it twice.
LAST_DAY_KEY = "last_digest_day"


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One day's digest: its local day (the outbox key names it) and its instant."""

    day: str  # ISO date in the digest's time zone
    at: float  # epoch seconds


def _occurrence(day: dt.date, at: dt.time, zone: ZoneInfo) -> Occurrence:
    return Occurrence(day.isoformat(), dt.datetime.combine(day, at, zone).timestamp())


def previous(now: float, at: dt.time, zone: ZoneInfo) -> Occurrence:
    """The latest digest time at or before now."""
    today = dt.datetime.fromtimestamp(now, zone).date()
    candidate = _occurrence(today, at, zone)
    return candidate if candidate.at <= now else _occurrence(today - dt.timedelta(days=1), at, zone)


def following(now: float, at: dt.time, zone: ZoneInfo) -> Occurrence:
    """The first digest time strictly after now."""
    today = dt.datetime.fromtimestamp(now, zone).date()
    candidate = _occurrence(today, at, zone)
    return candidate if candidate.at > now else _occurrence(today + dt.timedelta(days=1), at, zone)


def first_due(
    now: float,
    at: dt.time,
    zone: ZoneInfo,
    *,
    in_use_since: float | None,
    last_day: str | None,
    catch_up_s: float,
) -> Occurrence:
    """The first digest to plan after a start.

    The one just missed is caught up (its `at` is in the past, so it goes out at once) only when the
    store was already in use at that time (so never on the first start of a new store), it was not
    planned already (alertd was down at digest time), and the start is within catch_up_s of it. Any
    other start waits for the next digest time.
    """
    missed = previous(now, at, zone)
    if (
        in_use_since is not None
        and in_use_since < missed.at
        and last_day != missed.day
        and now - missed.at <= catch_up_s
    ):
        return missed
    return following(now, at, zone)


def plan(
    day: str,
    roster: Roster,
    profiles: Mapping[str, DeviceProfile],
    reported: Mapping[str, Reported],
    texts: Texts,
    now: float,
) -> list[Notification]:
    """One SMS to each group's leader: how many devices are fine, which need a visit."""
    notifications = []
    for group in roster.groups.values():
        leader = roster.people.get(group.leader)
        if leader is None:
            continue
        devices = [roster.devices[d] for h in group.households for d in roster.households[h].devices]
        problems = [
            (roster.households[device.household_id], device, condition)
            for device in devices
            for condition in _conditions(device, profiles, reported, now)
            if condition != Condition.OK
        ]
        text = texts.digest(group, len(devices), problems, leader.language)
        notifications.append(text_to(leader, text, None, 0, Purpose.NOTICE, scope=f"digest:{group.id}:{day}"))
    return notifications


def _conditions(
    device: Device, profiles: Mapping[str, DeviceProfile], reported: Mapping[str, Reported], now: float
) -> tuple[Condition, ...]:
    return assess(device, profiles.get(device.profile), reported.get(device.id, Reported()), now).conditions
