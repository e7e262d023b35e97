"""Scheduled drills: the spec a cadre writes, and the next occurrence on the village's local calendar,
across month and year ends, short and long months, and daylight-saving gaps and overlaps.

Every instant is built from a datetime with an explicit zone: no test reads the machine's clock, date or
time zone."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest

from alertd.core.schedule import WEEKDAYS, Cadence, Schedule, parse_schedule

SHANGHAI = ZoneInfo("Asia/Shanghai")  # no daylight saving since 1991
BERLIN = ZoneInfo("Europe/Berlin")  # 2026: 02:00 -> 03:00 on 29 March, 03:00 -> 02:00 on 25 October
NEW_YORK = ZoneInfo("America/New_York")  # 2026: 02:00 -> 03:00 on 8 March, 02:00 -> 01:00 on 1 November


def sh(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    """An instant on the wall clock of a village on the Chinese border."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).timestamp()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    """An instant in UTC: unambiguous where the local wall time of a DST change is not."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()


def local(stamp: float, zone: ZoneInfo) -> str:
    """For readable failures: the instant as the village's wall clock shows it."""
    return dt.datetime.fromtimestamp(stamp, zone).isoformat()


# --- parsing and the canonical spec ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("monthly first sunday 10:00", Schedule(Cadence.MONTHLY, dt.time(10, 0), weekday=6, week=1)),
        ("monthly last mon 06:15", Schedule(Cadence.MONTHLY, dt.time(6, 15), weekday=0, week=-1)),
        ("monthly 15 09:30", Schedule(Cadence.MONTHLY, dt.time(9, 30), day=15)),
        ("weekly saturday 20:00", Schedule(Cadence.WEEKLY, dt.time(20, 0), weekday=5)),
        ("daily 08:00", Schedule(Cadence.DAILY, dt.time(8, 0))),
    ],
)
def test_each_form_parses_to_its_fields(spec: str, expected: Schedule) -> None:
    assert parse_schedule(spec) == expected


@pytest.mark.parametrize(
    ("spec", "canonical"),
    [
        ("monthly first sunday 10:00", "monthly first sunday 10:00"),
        ("  MONTHLY   First\tSUN   10:00  ", "monthly first sunday 10:00"),
        ("monthly second tue 7:05", "monthly second tuesday 07:05"),
        ("monthly third Wednesday 12:00", "monthly third wednesday 12:00"),
        ("monthly fourth thu 23:59", "monthly fourth thursday 23:59"),
        ("Monthly LAST fri 0:00", "monthly last friday 00:00"),
        ("monthly 15 09:30", "monthly 15 09:30"),
        ("monthly 05 9:30", "monthly 5 09:30"),
        ("monthly 1 00:00", "monthly 1 00:00"),
        ("monthly 28 18:00", "monthly 28 18:00"),
        ("weekly saturday 20:00", "weekly saturday 20:00"),
        ("WEEKLY Sat 20:00", "weekly saturday 20:00"),
        ("daily 08:00", "daily 08:00"),
        ("daily 8:00", "daily 08:00"),
        ("daily\u300023:59", "daily 23:59"),  # a full-width space from a Chinese input method
    ],
)
def test_str_is_the_canonical_spec_and_round_trips(spec: str, canonical: str) -> None:
    schedule = parse_schedule(spec)
    assert str(schedule) == canonical
    assert parse_schedule(str(schedule)) == schedule


@pytest.mark.parametrize("number", range(7))
def test_every_weekday_by_full_and_short_name(number: int) -> None:
    name = WEEKDAYS[number]
    for word in (name, name[:3], name.upper(), name[:3].title()):
        assert parse_schedule(f"weekly {word} 10:00").weekday == number
    for ordinal in ("first", "second", "third", "fourth", "last"):
        schedule = parse_schedule(f"monthly {ordinal} {name[:3]} 10:00")
        assert str(schedule) == f"monthly {ordinal} {name} 10:00"
        assert parse_schedule(str(schedule)) == schedule


_EXAMPLE = "'monthly first sunday 10:00', 'monthly 15 09:30', 'weekly saturday 20:00' or 'daily 08:00'"
_BY_WEEKDAY = "a monthly drill by weekday takes which one, the weekday and the time, as in 'monthly first sunday 10:00'"
_DAY = (
    "expected 1 to 28, which every month has (for the end of the month, use 'last' and a weekday,"
    " as in 'monthly last sunday 10:00')"
)
_TIME = "expected HH:MM from 00:00 to 23:59"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        # Garbage: empty, an unknown cadence, words in the wrong place.
        ("", f"empty schedule: expected {_EXAMPLE}"),
        ("   ", f"empty schedule: expected {_EXAMPLE}"),
        ("yearly 10:00", f"unknown schedule 'yearly' in 'yearly 10:00': expected {_EXAMPLE}"),
        ("每月 第一个 星期日 10:00", f"unknown schedule '每月' in '每月 第一个 星期日 10:00': expected {_EXAMPLE}"),
        ("10:00 daily", f"unknown schedule '10:00' in '10:00 daily': expected {_EXAMPLE}"),
        ("daily", "wrong number of parts in schedule 'daily': expected 'daily HH:MM', as in 'daily 08:00'"),
        (
            "daily 08:00 sunday",
            "wrong number of parts in schedule 'daily 08:00 sunday': expected 'daily HH:MM', as in 'daily 08:00'",
        ),
        (
            "weekly 20:00",
            "wrong number of parts in schedule 'weekly 20:00':"
            " expected 'weekly WEEKDAY HH:MM', as in 'weekly saturday 20:00'",
        ),
        (
            "monthly",
            "wrong number of parts in schedule 'monthly': expected 'monthly first sunday 10:00' or 'monthly 15 09:30'",
        ),
        (
            "monthly first sunday 10:00 11:00",
            "wrong number of parts in schedule 'monthly first sunday 10:00 11:00':"
            " expected 'monthly first sunday 10:00' or 'monthly 15 09:30'",
        ),
        ("monthly first 10:00", f"incomplete schedule 'monthly first 10:00': {_BY_WEEKDAY}"),
        ("monthly sunday 10:00", f"incomplete schedule 'monthly sunday 10:00': {_BY_WEEKDAY}"),
        ("monthly first sunday", f"incomplete schedule 'monthly first sunday': {_BY_WEEKDAY}"),
        # A bad ordinal.
        (
            "monthly fifth sunday 10:00",
            "unknown ordinal 'fifth' in schedule 'monthly fifth sunday 10:00':"
            " expected first, second, third, fourth or last",
        ),
        (
            "monthly 1st Sunday 10:00",
            "unknown ordinal '1st' in schedule 'monthly 1st Sunday 10:00':"
            " expected first, second, third, fourth or last",
        ),
        # A bad weekday.
        (
            "monthly first funday 10:00",
            "unknown weekday 'funday' in schedule 'monthly first funday 10:00': expected monday..sunday or mon..sun",
        ),
        ("weekly su 10:00", "unknown weekday 'su' in schedule 'weekly su 10:00': expected monday..sunday or mon..sun"),
        (
            "weekly sundays 10:00",
            "unknown weekday 'sundays' in schedule 'weekly sundays 10:00': expected monday..sunday or mon..sun",
        ),
        # A day of the month that not every month has, or no day at all.
        ("monthly 29 10:00", f"bad day of month '29' in schedule 'monthly 29 10:00': {_DAY}"),
        ("monthly 31 10:00", f"bad day of month '31' in schedule 'monthly 31 10:00': {_DAY}"),
        ("monthly 0 10:00", f"bad day of month '0' in schedule 'monthly 0 10:00': {_DAY}"),
        ("monthly -1 10:00", f"bad day of month '-1' in schedule 'monthly -1 10:00': {_DAY}"),
        ("monthly 15th 10:00", f"bad day of month '15th' in schedule 'monthly 15th 10:00': {_DAY}"),
        ("monthly １５ 10:00", f"bad day of month '１５' in schedule 'monthly １５ 10:00': {_DAY}"),
        # A bad time.
        ("daily 24:00", f"bad time '24:00' in schedule 'daily 24:00': {_TIME}"),
        ("daily 23:60", f"bad time '23:60' in schedule 'daily 23:60': {_TIME}"),
        ("daily 8", f"bad time '8' in schedule 'daily 8': {_TIME}"),
        ("daily 8.00", f"bad time '8.00' in schedule 'daily 8.00': {_TIME}"),
        ("daily 08:00:00", f"bad time '08:00:00' in schedule 'daily 08:00:00': {_TIME}"),
        ("daily 8:0", f"bad time '8:0' in schedule 'daily 8:0': {_TIME}"),
        ("daily 108:00", f"bad time '108:00' in schedule 'daily 108:00': {_TIME}"),
        ("daily ０８:００", f"bad time '０８:００' in schedule 'daily ０８:００': {_TIME}"),
        ("weekly sat 25:00", f"bad time '25:00' in schedule 'weekly sat 25:00': {_TIME}"),
        ("monthly 15 9h30", f"bad time '9h30' in schedule 'monthly 15 9h30': {_TIME}"),
        ("monthly last sun noon", f"bad time 'noon' in schedule 'monthly last sun noon': {_TIME}"),
        # Read left to right: the first bad part is the one named.
        (
            "monthly fifth funday 24:00",
            "unknown ordinal 'fifth' in schedule 'monthly fifth funday 24:00':"
            " expected first, second, third, fourth or last",
        ),
        (
            "weekly funday 24:00",
            "unknown weekday 'funday' in schedule 'weekly funday 24:00': expected monday..sunday or mon..sun",
        ),
        ("monthly 29 24:00", f"bad day of month '29' in schedule 'monthly 29 24:00': {_DAY}"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_bad_part(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_schedule(spec)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: Schedule(Cadence.DAILY, dt.time(8, 0, 30)),
            "a schedule's time is a local wall time in whole minutes, not datetime.time(8, 0, 30)",
        ),
        (
            lambda: Schedule(Cadence.DAILY, dt.time(8, 0, tzinfo=dt.UTC)),
            "a schedule's time is a local wall time in whole minutes,"
            " not datetime.time(8, 0, tzinfo=datetime.timezone.utc)",
        ),
        (lambda: Schedule(Cadence.WEEKLY, dt.time(8), weekday=7), "weekday 7 out of range: 0 (Monday) to 6 (Sunday)"),
        (
            lambda: Schedule(Cadence.MONTHLY, dt.time(8), weekday=6, week=5),
            "week 5 out of range: 1 to 4, or -1 for the last",
        ),
        (lambda: Schedule(Cadence.MONTHLY, dt.time(8), day=29), "day of month 29 out of range: 1 to 28"),
        (
            lambda: Schedule(Cadence.WEEKLY, dt.time(8)),
            "a weekly schedule cannot have weekday=None, week=None, day=None",
        ),
        (
            lambda: Schedule(Cadence.DAILY, dt.time(8), day=1),
            "a daily schedule cannot have weekday=None, week=None, day=1",
        ),
        (
            lambda: Schedule(Cadence.MONTHLY, dt.time(8), weekday=6),
            "a monthly schedule cannot have weekday=6, week=None, day=None",
        ),
        (
            lambda: Schedule(Cadence.MONTHLY, dt.time(8), weekday=6, week=1, day=1),
            "a monthly schedule cannot have weekday=6, week=1, day=1",
        ),
    ],
)
def test_a_schedule_built_in_code_must_mean_something(build: Callable[[], Schedule], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build()


# --- the next occurrence, in a zone without daylight saving ----------------------------------------------
# December 2026 in Shanghai: Tuesday the 1st, Saturday the 5th, Sunday the 6th. 1 January 2027 is a Friday.


@pytest.mark.parametrize(
    ("spec", "after", "expected"),
    [
        # daily
        ("daily 08:00", sh(2026, 12, 3, 7, 59), sh(2026, 12, 3, 8)),
        ("daily 08:00", sh(2026, 12, 3, 8) - 1, sh(2026, 12, 3, 8)),
        ("daily 08:00", sh(2026, 12, 3, 8), sh(2026, 12, 4, 8)),  # exactly at one: the next
        ("daily 08:00", sh(2026, 12, 3, 8) + 0.001, sh(2026, 12, 4, 8)),
        ("daily 08:00", sh(2026, 11, 30, 9), sh(2026, 12, 1, 8)),  # month end
        ("daily 08:00", sh(2026, 12, 31, 8), sh(2027, 1, 1, 8)),  # year end
        ("daily 00:00", sh(2026, 12, 31, 23, 59), sh(2027, 1, 1, 0)),
        ("daily 23:59", sh(2026, 12, 31, 23, 59), sh(2027, 1, 1, 23, 59)),
        ("daily 08:00", sh(2028, 2, 28, 9), sh(2028, 2, 29, 8)),  # leap day
        # 07:00 on the 4th in Shanghai is still the 3rd in UTC: the local date counts.
        ("daily 06:00", utc(2026, 12, 3, 23), sh(2026, 12, 5, 6)),
        ("daily 08:00", utc(2026, 12, 3, 23), sh(2026, 12, 4, 8)),
        # weekly
        ("weekly saturday 20:00", sh(2026, 12, 1), sh(2026, 12, 5, 20)),
        ("weekly saturday 20:00", sh(2026, 12, 5, 19, 59), sh(2026, 12, 5, 20)),
        ("weekly saturday 20:00", sh(2026, 12, 5, 20), sh(2026, 12, 12, 20)),  # exactly at one: the next
        ("weekly saturday 20:00", sh(2026, 12, 5, 21), sh(2026, 12, 12, 20)),
        ("weekly saturday 20:00", sh(2026, 12, 26, 21), sh(2027, 1, 2, 20)),  # year end
        ("weekly sun 09:00", sh(2026, 11, 29, 10), sh(2026, 12, 6, 9)),  # month end
        # Sunday 20:00 UTC is already Monday 04:00 in Shanghai: this Monday's 01:00 is past.
        ("weekly monday 01:00", utc(2026, 12, 6, 20), sh(2026, 12, 14, 1)),
        ("weekly monday 05:00", utc(2026, 12, 6, 20), sh(2026, 12, 7, 5)),
        # monthly, by weekday
        ("monthly first sunday 10:00", sh(2026, 12, 1), sh(2026, 12, 6, 10)),
        ("monthly first sunday 10:00", sh(2026, 12, 6, 10), sh(2027, 1, 3, 10)),  # exact instant, year end
        ("monthly first sunday 10:00", sh(2026, 11, 1, 10), sh(2026, 12, 6, 10)),  # month end
        ("monthly first tuesday 10:00", sh(2026, 11, 30), sh(2026, 12, 1, 10)),  # on the 1st itself
        ("monthly second tuesday 10:00", sh(2026, 12, 1), sh(2026, 12, 8, 10)),
        ("monthly third friday 10:00", sh(2026, 12, 1), sh(2026, 12, 18, 10)),
        ("monthly fourth monday 10:00", sh(2026, 12, 1), sh(2026, 12, 28, 10)),  # the 28th: the latest a fourth is
        ("monthly fourth monday 10:00", sh(2026, 12, 28, 10), sh(2027, 1, 25, 10)),
        # monthly, by date
        ("monthly 15 09:30", sh(2026, 12, 15, 9, 29), sh(2026, 12, 15, 9, 30)),
        ("monthly 15 09:30", sh(2026, 1, 15, 9, 30), sh(2026, 2, 15, 9, 30)),  # exactly at one: the next
        ("monthly 15 09:30", sh(2026, 12, 20), sh(2027, 1, 15, 9, 30)),  # year end
        ("monthly 1 00:00", sh(2026, 12, 31, 23, 59), sh(2027, 1, 1, 0)),
        ("monthly 28 23:59", sh(2026, 2, 1), sh(2026, 2, 28, 23, 59)),  # a 28-day February has it
        ("monthly 28 23:59", sh(2028, 2, 28, 23, 59), sh(2028, 3, 28, 23, 59)),
    ],
)
def test_next_after_in_shanghai(spec: str, after: float, expected: float) -> None:
    found = parse_schedule(spec).next_after(after, SHANGHAI)
    assert local(found, SHANGHAI) == local(expected, SHANGHAI)
    assert found == expected


@pytest.mark.parametrize(
    ("year", "month", "last_sunday"),
    [
        (2026, 2, 22),  # 28 days, ends on a Saturday
        (2028, 2, 27),  # 29 days, ends on a Tuesday
        (2032, 2, 29),  # 29 days, ends on a Sunday: the leap day itself
        (2026, 4, 26),  # 30 days, ends on a Thursday
        (2026, 11, 29),  # 30 days, ends on a Monday
        (2026, 5, 31),  # 31 days, ends on a Sunday: the last day itself
        (2026, 12, 27),  # 31 days, ends on a Thursday
        (2027, 1, 31),  # 31 days, ends on a Sunday
    ],
)
def test_last_sunday_in_months_of_every_length(year: int, month: int, last_sunday: int) -> None:
    schedule = parse_schedule("monthly last sunday 10:00")
    found = schedule.next_after(sh(year, month, 1), SHANGHAI)
    assert local(found, SHANGHAI) == local(sh(year, month, last_sunday, 10), SHANGHAI)
    # From that one, the next is in the following month, never later in the same one.
    following = dt.datetime.fromtimestamp(schedule.next_after(found, SHANGHAI), SHANGHAI)
    assert (following.year, following.month) == ((year + 1, 1) if month == 12 else (year, month + 1))


def test_last_weekday_when_the_month_ends_the_day_after_it() -> None:
    # May 2026 ends on a Sunday: its last Monday is six days earlier.
    assert parse_schedule("monthly last monday 10:00").next_after(sh(2026, 5, 1), SHANGHAI) == sh(2026, 5, 25, 10)


def test_without_daylight_saving_every_day_is_24_hours() -> None:
    schedule = parse_schedule("daily 02:30")
    stamp = sh(2026, 1, 1)
    gaps = set()
    for _ in range(366):
        following = schedule.next_after(stamp, SHANGHAI)
        gaps.add(following - stamp)
        stamp = following
    assert gaps == {86400.0} | {sh(2026, 1, 1, 2, 30) - sh(2026, 1, 1)}


# --- daylight saving -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "zone", "after", "expected"),
    [
        # Spring forward, Berlin (02:00 CET -> 03:00 CEST, at 01:00 UTC): a time in the gap is at its end.
        ("daily 02:30", BERLIN, utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),
        ("daily 02:00", BERLIN, utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),  # the first missing minute
        ("daily 02:59", BERLIN, utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),  # the last missing minute
        ("daily 03:00", BERLIN, utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),  # exists: 03:00 CEST
        ("daily 01:59", BERLIN, utc(2026, 3, 28, 12), utc(2026, 3, 29, 0, 59)),  # exists: 01:59 CET
        ("monthly last sunday 02:30", BERLIN, utc(2026, 3, 1), utc(2026, 3, 29, 1)),
        ("weekly sun 02:30", BERLIN, utc(2026, 3, 22, 12), utc(2026, 3, 29, 1)),
        # Exactly at the moved one: the next day's, which exists again (02:30 CEST).
        ("daily 02:30", BERLIN, utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)),
        # Just before the moved one, already past the wall time's naive reading (02:30 CET = 01:30 UTC).
        ("daily 02:30", BERLIN, utc(2026, 3, 29, 0, 59), utc(2026, 3, 29, 1)),
        # Across the change, a drill far from it keeps its wall time: 23 h after yesterday's.
        ("daily 10:00", BERLIN, utc(2026, 3, 28, 9), utc(2026, 3, 29, 8)),
        # Fall back, Berlin (03:00 CEST -> 02:00 CET, at 01:00 UTC): 02:30 happens twice, the first counts.
        ("daily 02:30", BERLIN, utc(2026, 10, 24, 12), utc(2026, 10, 25, 0, 30)),
        ("daily 02:30", BERLIN, utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)),  # not the second 02:30
        ("daily 02:30", BERLIN, utc(2026, 10, 25, 1), utc(2026, 10, 26, 1, 30)),  # between the two
        ("monthly last sunday 02:30", BERLIN, utc(2026, 10, 1), utc(2026, 10, 25, 0, 30)),
        ("daily 10:00", BERLIN, utc(2026, 10, 24, 8), utc(2026, 10, 25, 9)),  # 25 h after yesterday's
        # New York, spring forward (02:00 EST -> 03:00 EDT, at 07:00 UTC) and fall back (02:00 EDT -> 01:00
        # EST, at 06:00 UTC).
        ("weekly sunday 02:15", NEW_YORK, utc(2026, 3, 7, 12), utc(2026, 3, 8, 7)),
        ("monthly second sunday 02:30", NEW_YORK, utc(2026, 3, 1), utc(2026, 3, 8, 7)),
        ("daily 01:30", NEW_YORK, utc(2026, 10, 31, 12), utc(2026, 11, 1, 5, 30)),  # 01:30 EDT
        ("daily 01:30", NEW_YORK, utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)),  # not 01:30 EST
        ("monthly first sunday 01:30", NEW_YORK, utc(2026, 10, 15), utc(2026, 11, 1, 5, 30)),
        # Samoa skipped 30 December 2011 altogether (-10 -> +14 at its midnight): that day's drill is at
        # the first instant that exists, midnight of the 31st, and the 31st keeps its own.
        ("daily 10:00", ZoneInfo("Pacific/Apia"), utc(2011, 12, 29, 22), utc(2011, 12, 30, 10)),
        ("daily 10:00", ZoneInfo("Pacific/Apia"), utc(2011, 12, 30, 10), utc(2011, 12, 30, 20)),
    ],
)
def test_next_after_across_daylight_saving(spec: str, zone: ZoneInfo, after: float, expected: float) -> None:
    found = parse_schedule(spec).next_after(after, zone)
    assert local(found, zone) == local(expected, zone)
    assert found == expected


def test_with_daylight_saving_the_wall_time_holds_all_year() -> None:
    schedule = parse_schedule("daily 10:00")
    stamp = utc(2026, 1, 1)
    hours = set()
    for _ in range(365):
        following = schedule.next_after(stamp, BERLIN)
        assert dt.datetime.fromtimestamp(following, BERLIN).time() == dt.time(10, 0)
        hours.add(following - stamp)
        stamp = following
    # The first is from midnight UTC; then 24 h, except 23 h and 25 h across the two changes.
    assert hours - {utc(2026, 1, 1, 9) - utc(2026, 1, 1)} == {82800.0, 86400.0, 90000.0}
