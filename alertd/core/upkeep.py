"""Upkeep of the devices: what each last told us, which maintenance incidents are open, which conditions
are in their grace period, and when the next review and the next daily digest are due. Pure: the desk
asks it what to do and opens or closes the incidents itself (they share its incident numbers)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

from alertd.core import digest
from alertd.core.events import Supervision, SupervisionKind
from alertd.core.model import Roster
from alertd.core.profile import DeviceProfile
from alertd.core.records import DeviceUpdate, Incident
from alertd.core.supervision import Condition, Reported, assess, review


def news_update(news: Supervision, now: float) -> DeviceUpdate:
    """What device news changes on the device's record: a condition set (or cleared by its restore), an
    arming. Every report is a check-in."""
    update = DeviceUpdate(news.device_id, now, online=True, test=news.event == SupervisionKind.TEST)
    present = not news.restore
    match news.event:
        case SupervisionKind.BATTERY_LOW:
            return replace(update, battery_low=present)
        case SupervisionKind.TAMPERED:
            return replace(update, tampered=present)
        case SupervisionKind.AC_LOSS:
            return replace(update, ac_loss=present)
        case SupervisionKind.COMM_TROUBLE:
            return replace(update, comm_trouble=present)
        case SupervisionKind.OPEN_CLOSE if news.armed is not None:
            return replace(update, armed=news.armed, armed_user=news.user)
    return update


@dataclass(frozen=True, slots=True)
class Review:
    to_open: tuple[tuple[str, Condition], ...]  # (device, condition) that need a maintenance incident
    to_close: tuple[int, ...]  # maintenance incidents whose condition is over


@dataclass(slots=True)
class Upkeep:
    grace_s: float = 600.0
    interval_s: float = 60.0
    digest_at: dt.time | None = None  # local time of the daily readiness digest; None: no digest
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    reported: dict[str, Reported] = field(default_factory=dict)  # what each device last told us
    maintenance: dict[tuple[str, Condition], int] = field(default_factory=dict)  # open maintenance incidents
    pending: dict[tuple[str, Condition], float] = field(default_factory=dict)  # in their grace period
    next_review: float = 0.0
    next_digest: digest.Occurrence | None = None

    def resume(self, devices: Mapping[str, Reported], incidents: Iterable[Incident], now: float) -> None:
        self.reported = dict(devices)
        for incident in incidents:
            if incident.active and incident.device_id is not None and incident.maintenance is not None:
                self.maintenance[(incident.device_id, incident.maintenance)] = incident.id
        # Devices get a full interval to report in before the first review judges them.
        self.next_review = now + self.interval_s

    def schedule_digest(
        self, now: float, *, in_use_since: float | None, last_day: str | None, catch_up_s: float
    ) -> None:
        if self.digest_at is not None:
            self.next_digest = digest.first_due(
                now, self.digest_at, self.zone, in_use_since=in_use_since, last_day=last_day, catch_up_s=catch_up_s
            )

    @property
    def next_due(self) -> float:
        return min(self.next_review, self.next_digest.at if self.next_digest is not None else self.next_review)

    def remember(self, updates: Iterable[DeviceUpdate]) -> None:
        """After a commit: the device news is now what supervision judges by."""
        for u in updates:
            r = self.reported.get(u.device_id, Reported())
            self.reported[u.device_id] = Reported(
                online=r.online if u.online is None else u.online,
                last_seen=u.at,
                battery=r.battery if u.battery is None else u.battery,
                battery_low=r.battery_low if u.battery_low is None else u.battery_low,
                tampered=r.tampered if u.tampered is None else u.tampered,
                ac_loss=r.ac_loss if u.ac_loss is None else u.ac_loss,
                comm_trouble=r.comm_trouble if u.comm_trouble is None else u.comm_trouble,
            )

    def review_due(self, now: float, roster: Roster, profiles: Mapping[str, DeviceProfile]) -> Review | None:
        """Every interval: which devices need a maintenance incident, which incidents are over."""
        if now < self.next_review:
            return None
        self.next_review = now + self.interval_s
        healths = [
            assess(device, profiles.get(device.profile), self.reported.get(device.id, Reported()), now)
            for device in roster.devices.values()
        ]
        decided = review(healths, set(self.maintenance), self.pending, now, self.grace_s)
        self.pending = decided.pending
        closing = tuple(self.maintenance.pop(key) for key in decided.to_close)
        return Review(decided.to_open, closing)

    def digest_due(self, now: float) -> digest.Occurrence | None:
        """The digest to plan now, if its time has come; the next one is then scheduled from the calendar
        (not +24 h: after a clock step or a long stall it is still at digest_at, and skipped days are not
        sent in a burst)."""
        due = self.next_digest
        if due is None or self.digest_at is None or now < due.at:
            return None
        self.next_digest = digest.following(now, self.digest_at, self.zone)
        return due
