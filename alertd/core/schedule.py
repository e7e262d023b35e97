"""Scheduled drills (演练): when a recurring fire or flood drill such as "the first Sunday of each month at
10:00" next takes place.

Pure: the clock reading and the time zone are arguments. A drill follows the village's wall clock, so each
occurrence is found on the local calendar and only then turned into an instant, never by adding a fixed
number of seconds: a daylight-saving change keeps it at the announced local time.

The spec is short and readable because village cadres write it themselves:

    monthly first sunday 10:00    (first, second, third, fourth or last; monday..sunday or mon..sun)
    monthly 15 09:30              (day of month 1-28, so that every month has it)
    weekly saturday 20:00
    daily 08:00
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")  # date.weekday()
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
# Up to 28 only: a drill "on the 30th" would silently skip February, and the cadres would not notice.
LAST_DAY = 28

_WEEKDAY_NUMBERS = {**{name: i for i, name in enumerate(WEEKDAYS)}, **{name[:3]: i for i, name in enumerate(WEEKDAYS)}}
_ORDINAL_NAMES = {number: name for name, number in ORDINALS.items()}
# ASCII digits only: \d would also accept full-width and other scripts' digits, which int() reads but no
# cadre means to type into a time.
_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})")
_DAY = re.compile(r"[0-9]{1,2}")
_EXAMPLE = "'monthly first sunday 10:00', 'monthly 15 09:30', 'weekly saturday 20:00' or 'daily 08:00'"


class Cadence(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


@dataclass(frozen=True, slots=True)
class Schedule:
    """A recurring drill. Monthly schedules set either `day` or both `week` and `weekday`."""

    cadence: Cadence
    at: dt.time  # local wall time, whole minutes, no tzinfo: the zone is given when it is used
    weekday: int | None = None  # 0 Monday .. 6 Sunday; weekly, and monthly by weekday
    week: int | None = None  # 1..4: the nth such weekday of the month, -1: the last; monthly by weekday
    day: int | None = None  # 1..28; monthly by date

    def __post_init__(self) -> None:
        # Checked here as well as in parse_schedule, so a Schedule built in code cannot mean nothing or
        # fail to round-trip through its spec.
        if self.at.tzinfo is not None or self.at.second or self.at.microsecond:
            raise ValueError(f"a schedule's time is a local wall time in whole minutes, not {self.at!r}")
        if self.weekday is not None and not 0 <= self.weekday <= 6:
            raise ValueError(f"weekday {self.weekday} out of range: 0 (Monday) to 6 (Sunday)")
        if self.week is not None and self.week not in _ORDINAL_NAMES:
            raise ValueError(f"week {self.week} out of range: 1 to 4, or -1 for the last")
        if self.day is not None and not 1 <= self.day <= LAST_DAY:
            raise ValueError(f"day of month {self.day} out of range: 1 to {LAST_DAY}")
        fields = (self.weekday is not None, self.week is not None, self.day is not None)
        allowed = {
            Cadence.DAILY: {(False, False, False)},
            Cadence.WEEKLY: {(True, False, False)},
            Cadence.MONTHLY: {(True, True, False), (False, False, True)},
        }[self.cadence]
        if fields not in allowed:
            raise ValueError(
                f"a {self.cadence} schedule cannot have weekday={self.weekday}, week={self.week}, day={self.day}"
            )

    def __str__(self) -> str:
        at = f"{self.at.hour:02d}:{self.at.minute:02d}"
        match self:
            case Schedule(cadence=Cadence.WEEKLY, weekday=int(weekday)):
                return f"weekly {WEEKDAYS[weekday]} {at}"
            case Schedule(cadence=Cadence.MONTHLY, day=int(day)):
                return f"monthly {day} {at}"
            case Schedule(cadence=Cadence.MONTHLY, week=int(week), weekday=int(weekday)):
                return f"monthly {_ORDINAL_NAMES[week]} {WEEKDAYS[weekday]} {at}"
        return f"daily {at}"

    def next_after(self, after: float, zone: ZoneInfo) -> float:
        """The first occurrence strictly after `after` (epoch seconds), on the local calendar of zone.

        A local time that falls in a spring-forward gap happens at the end of the gap (the clocks jump from
        02:00 to 03:00, a 02:30 drill is at 03:00): the drill still takes place that day, as soon as the
        time exists. A local time that happens twice in a fall-back overlap takes the first (fold=0): one
        drill a day, at the earlier of the two.
        """
        # From the day before, as cheap insurance: one extra candidate saves reasoning about zones whose
        # clocks jump across midnight (a gap can move an occurrence into the next local day).
        start = dt.datetime.fromtimestamp(after, zone).date() - dt.timedelta(days=1)
        for day in self._days_from(start):
            instant = _instant(dt.datetime.combine(day, self.at), zone)
            if instant > after:
                return instant
        raise AssertionError("unreachable: _days_from never ends")  # pragma: no cover

    def _days_from(self, start: dt.date) -> Iterator[dt.date]:
        """The local dates of the occurrences on or after start, in order, without end."""
        match self:
            case Schedule(cadence=Cadence.WEEKLY, weekday=int(weekday)):
                day = start + dt.timedelta(days=(weekday - start.weekday()) % 7)
                step = dt.timedelta(days=7)
            case Schedule(cadence=Cadence.MONTHLY):
                yield from self._months_from(start)
                return
            case _:
                day, step = start, dt.timedelta(days=1)
        while True:
            yield day
            day += step

    def _months_from(self, start: dt.date) -> Iterator[dt.date]:
        year, month = start.year, start.month
        while True:
            match self:
                case Schedule(day=int(day_of_month)):
                    day = dt.date(year, month, day_of_month)
                case Schedule(week=-1, weekday=int(weekday)):
                    last = dt.date(year, month, calendar.monthrange(year, month)[1])
                    day = last - dt.timedelta(days=(last.weekday() - weekday) % 7)
                case Schedule(week=int(week), weekday=int(weekday)):
                    first = dt.date(year, month, 1)
                    # The fourth is at most on the 28th, so it exists in every month.
                    day = first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (week - 1))
                case _:  # pragma: no cover
                    raise AssertionError(f"unreachable: __post_init__ admits no monthly {self!r}")
            if day >= start:
                yield day
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)


_FORMS = {
    "daily": "'daily HH:MM', as in 'daily 08:00'",
    "weekly": "'weekly WEEKDAY HH:MM', as in 'weekly saturday 20:00'",
    "monthly": "'monthly first sunday 10:00' or 'monthly 15 09:30'",
}


def parse_schedule(spec: str) -> Schedule:
    """A Schedule from its spec; case and extra spaces do not matter. ValueError names the bad part."""
    words = spec.lower().split()
    if not words:
        raise ValueError(f"empty schedule: expected {_EXAMPLE}")
    # Each part is read left to right, so the message names the first bad one.
    match words:
        case ["daily", at]:
            return Schedule(Cadence.DAILY, _time(at, spec))
        case ["weekly", weekday, at]:
            weekday_number = _weekday(weekday, spec)
            return Schedule(Cadence.WEEKLY, _time(at, spec), weekday=weekday_number)
        case ["monthly", ordinal, weekday, at]:
            week, weekday_number = _ordinal(ordinal, spec), _weekday(weekday, spec)
            return Schedule(Cadence.MONTHLY, _time(at, spec), weekday=weekday_number, week=week)
        case ["monthly", day, _] if day in ORDINALS or day in _WEEKDAY_NUMBERS:
            # Read as a day of the month it would be "bad day 'first'", which misleads: a part is missing.
            raise ValueError(
                f"incomplete schedule {spec!r}: a monthly drill by weekday takes which one, the weekday and the"
                " time, as in 'monthly first sunday 10:00'"
            )
        case ["monthly", day, at]:
            day_number = _day(day, spec)
            return Schedule(Cadence.MONTHLY, _time(at, spec), day=day_number)
        case ["daily" | "weekly" | "monthly" as cadence, *_]:
            raise ValueError(f"wrong number of parts in schedule {spec!r}: expected {_FORMS[cadence]}")
    raise ValueError(f"unknown schedule {words[0]!r} in {spec!r}: expected {_EXAMPLE}")


def _time(word: str, spec: str) -> dt.time:
    match = _TIME.fullmatch(word)
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f"bad time {word!r} in schedule {spec!r}: expected HH:MM from 00:00 to 23:59")
    return dt.time(int(match[1]), int(match[2]))


def _weekday(word: str, spec: str) -> int:
    if word not in _WEEKDAY_NUMBERS:
        raise ValueError(f"unknown weekday {word!r} in schedule {spec!r}: expected monday..sunday or mon..sun")
    return _WEEKDAY_NUMBERS[word]


def _ordinal(word: str, spec: str) -> int:
    if word not in ORDINALS:
        raise ValueError(
            f"unknown ordinal {word!r} in schedule {spec!r}: expected first, second, third, fourth or last"
        )
    return ORDINALS[word]


def _day(word: str, spec: str) -> int:
    if _DAY.fullmatch(word) is None or not 1 <= int(word) <= LAST_DAY:
        raise ValueError(
            f"bad day of month {word!r} in schedule {spec!r}: expected 1 to {LAST_DAY}, which every month has"
            " (for the end of the month, use 'last' and a weekday, as in 'monthly last sunday 10:00')"
        )
    return int(word)


def _instant(wall: dt.datetime, zone: ZoneInfo) -> float:
    """The instant of a naive local wall time in zone: the first if it happens twice, the end of the gap if
    it does not happen at all."""
    first = wall.replace(tzinfo=zone, fold=0).timestamp()
    if dt.datetime.fromtimestamp(first, zone).replace(tzinfo=None) == wall:
        return first  # it exists; fold=0 is the earlier of two
    # In a gap, the two folds read the wall time with the offsets before and after the change, and the
    # change lies between them. zoneinfo's own answer (fold=0) would be as far past the gap as the wall
    # time is into it (02:30 -> 03:30); the drill is due as soon as the time exists, so find the change.
    lo, hi = sorted((int(first), int(wall.replace(tzinfo=zone, fold=1).timestamp())))
    before = dt.datetime.fromtimestamp(lo, zone).utcoffset()
    while hi - lo > 1:  # offsets change on whole seconds
        mid = (lo + hi) // 2
        if dt.datetime.fromtimestamp(mid, zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return float(hi)
