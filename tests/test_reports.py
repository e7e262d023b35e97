"""The monthly report: its figures (pure, alertd.core.stats) and the console's report page, CSV, XLSX and
printable pages against a real daemon, within the user's groups."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook  # type: ignore[import-untyped]

from alertd.core.events import Drill, Outcome, Satisfaction
from alertd.core.model import Kind
from alertd.core.records import Incident, State
from alertd.core.stats import figures, percentile
from alertd.store import reading
from alertd.web.reports import month_bounds
from tests.console_client import console, raise_alarm
from tests.harness import Village, running_daemon, terminals
from tests.test_core_incidents import make_roster

ZONE = ZoneInfo("Asia/Shanghai")
T0 = 1_800_000_000.0


def incident(n: int, group: str = "g1", kind: Kind = Kind.FIRE, **changes: Any) -> Incident:
    return replace(Incident(n, f"h{n:02d}", group, kind, "default", State.OPEN, T0, T0), **changes)


def test_the_figures_of_a_group() -> None:
    roster = make_roster()
    incidents = [
        incident(1, state=State.RESOLVED, outcome=Outcome.REAL, acknowledged_at=T0 + 30, on_scene_at=T0 + 300,
                 resolved_at=T0 + 900, satisfaction=Satisfaction.FAIR),
        incident(2, kind=Kind.GAS, state=State.CANCELLED, outcome=Outcome.FALSE_ALARM, acknowledged_at=T0 + 60),
        incident(3, state=State.RESOLVED, outcome=Outcome.DRILL, acknowledged_at=T0 + 10),
        incident(4),  # still open
        incident(5, maintenance=None, group="elsewhere"),  # not a group of this roster: not counted
    ]  # fmt: skip
    ready = {d: d != "t03" for d in roster.devices}
    [g1, total] = figures(incidents, {1: (3, 2), 2: (3, 3)}, ready, roster)
    assert (g1.key, g1.label, g1.alarms, g1.real, g1.false_alarms, g1.drills, g1.still_open) == (
        "g1", "一组", 4, 1, 1, 1, 1,
    )  # fmt: skip
    assert g1.kinds == {Kind.FIRE: 3, Kind.GAS: 1}
    assert g1.false_alarm_rate == 0.5  # drills are neither real nor false
    assert (g1.ack_p50_s, g1.ack_p90_s, g1.scene_p50_s) == (30, 60, 300)
    assert (g1.texts_sent, g1.texts_delivered) == (6, 5)
    assert g1.devices == len(roster.devices)
    assert g1.devices_ready == len(roster.devices) - 1
    assert g1.ratings == {Satisfaction.FAIR: 1}
    assert total.alarms == 4
    assert total.label == "合计"
    assert figures(incidents, {}, ready, roster, groups=[])[-1].alarms == 0  # a scope with no group


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 10.0], 50) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 10.0], 90) == 10.0


def test_months_are_calendar_months_in_the_daemons_zone() -> None:
    start, end = month_bounds("2026-12", ZONE)
    assert datetime.fromtimestamp(start, ZONE) == datetime(2026, 12, 1, tzinfo=ZONE)
    assert datetime.fromtimestamp(end, ZONE) == datetime(2027, 1, 1, tzinfo=ZONE)
    assert end - start == 31 * 86400
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds("12/2026", ZONE)


async def test_the_report_page_and_its_exports_keep_to_the_users_groups(village: Village) -> None:
    async with (
        running_daemon(village),
        terminals(village) as sims,
        console(village) as duty,
        console(village) as leader,
    ):
        await duty.login("老周")
        await leader.login("陈国庆")
        first = await raise_alarm(sims, village, 1, 2, "fire")
        await raise_alarm(sims, village, 1, 7, "gas")
        await raise_alarm(sims, village, 2, 3, "medical")
        assert (await duty.act(first, "resolve", outcome="false_alarm"))[0] == 303
        async with reading(village.store_path) as store:
            record = await store.incident(first)
        assert record is not None
        # The month the alarms fell in, in the village's zone (from the record: right at any hour, even at a
        # month's last second).
        opened = datetime.fromtimestamp(record.opened_at, UTC).astimezone(ZONE)
        month = f"{opened.year:04d}-{opened.month:02d}"

        status, page = await duty.get(f"/reports?month={month}")
        assert status == 200
        assert "<svg" in page
        assert 'data-key="g1"' in page
        assert 'data-key="g2"' in page
        rows = {r[0]: r for r in csv.reader(io.StringIO((await duty.get(f"/reports.csv?month={month}"))[1]))}
        header = next(iter(rows.values()))
        assert header[0] == "\ufeff联防组 group"
        alarms = header.index("报警 alarms")
        assert (rows["1组"][alarms], rows["2组"][alarms], rows["合计"][alarms]) == ("2", "1", "3")
        assert rows["1组"][header.index("误报 false")] == "1"

        status, page = await leader.get(f"/reports?month={month}")
        assert 'data-key="g1"' in page
        assert 'data-key="g2"' not in page
        async with leader.http.get(f"{leader.base}/reports.xlsx?month={month}") as response:
            assert response.status == 200
            book = load_workbook(io.BytesIO(await response.read()))
        sheet = book.active
        lines = [[c.value for c in row] for row in sheet.iter_rows()]
        assert [line[0] for line in lines] == ["联防组 group", "1组", "合计"]
        assert lines[1][1] == 2.0

        status, page = await duty.get(f"/reports/print?month={month}")
        assert status == 200
        assert page.count('<section class="a4"') == 1  # one village, one A4 page
        assert "河口村 联防月报" in page
        assert (await duty.get("/reports?month=2026-13"))[0] == 400


async def test_drills_are_reported_on_their_own_and_not_as_alarms(village: Village) -> None:
    async with running_daemon(village) as daemon, terminals(village) as sims, console(village) as duty:
        await duty.login("老周")
        parts = await daemon.started()
        opened = await parts.engine.call(Drill("h1-2", Kind.FIRE, "老周"))
        await sims.wait_until(lambda: len(sims.rung) >= 9)
        assert opened.incident_id is not None
        await sims.coming("t1-5", opened.incident_id)
        await sims.wait_until(lambda: len(sims.stops(opened.incident_id)) == 9)
        async with reading(village.store_path) as store:
            record = await store.incident(opened.incident_id)
        assert record is not None
        assert record.drill
        local = datetime.fromtimestamp(record.opened_at, UTC).astimezone(ZONE)
        month = f"{local.year:04d}-{local.month:02d}"
        status, page = await duty.get(f"/reports?month={month}")
        rows = {r[0]: r for r in csv.reader(io.StringIO((await duty.get(f"/reports.csv?month={month}"))[1]))}
    assert status == 200
    drills = page[page.index('id="drills"') :]
    assert "<td>1组</td><td>1</td><td>1</td>" in drills  # one drill, answered
    alarms = next(iter(rows.values())).index("报警 alarms")
    assert rows["合计"][alarms] == "0", "a drill is not an alarm in the figures"
