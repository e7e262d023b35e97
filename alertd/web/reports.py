"""The console's monthly report (alertd.core.stats): a page with charts drawn here as SVG, CSV and XLSX
exports, and a printable page per village (A4). Within the user's groups, like every console page."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web

from alertd.core.events import Satisfaction
from alertd.core.messages import KIND_ZH
from alertd.core.stats import DrillFigures, Figures, drill_figures, figures
from alertd.report import device_health
from alertd.web.console import CONSOLE, SESSION

_MONTH = re.compile(r"(\d{4})-(\d{2})")

# Columns of the table, the CSV and the XLSX: (heading, value of a row).
COLUMNS: Sequence[tuple[str, str]] = (
    ("报警 alarms", "alarms"),
    ("真实 real", "real"),
    ("误报 false", "false_alarms"),
    ("演练 drills", "drills"),
    ("未结 open", "still_open"),
    ("误报率 false-alarm rate", "false_alarm_rate"),
    ("确认用时 p50 (s) ack p50", "ack_p50_s"),
    ("确认用时 p90 (s) ack p90", "ack_p90_s"),
    ("到场用时 p50 (s) scene p50", "scene_p50_s"),
    ("到场用时 p90 (s) scene p90", "scene_p90_s"),
    ("短信 texts", "texts_sent"),
    ("送达 delivered", "texts_delivered"),
    ("设备完好率 device availability", "availability"),
    ("设备检修 maintenance", "maintenance"),
)
RATINGS = ((Satisfaction.SATISFIED, "满意"), (Satisfaction.FAIR, "基本满意"), (Satisfaction.DISSATISFIED, "不满意"))


def add_reports(app: web.Application) -> None:
    app.router.add_get("/reports", report_page)
    app.router.add_get("/reports.csv", report_csv)
    app.router.add_get("/reports.xlsx", report_xlsx)
    app.router.add_get("/reports/print", report_print)


def month_bounds(month: str, zone: ZoneInfo) -> tuple[float, float]:
    """[start, end) of a calendar month in the daemon's time zone, as epoch seconds; ValueError if not YYYY-MM."""
    match = _MONTH.fullmatch(month)
    if match is None:
        raise ValueError(f"month {month!r}: expected YYYY-MM")
    year, number = int(match.group(1)), int(match.group(2))
    start = datetime(year, number, 1, tzinfo=zone)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
    return start.timestamp(), end.timestamp()


async def _figures(
    request: web.Request, *, by_village: bool | None = None
) -> tuple[str, bool, list[Figures], list[DrillFigures]]:
    deps, user = request.app[CONSOLE], request[SESSION].user
    now = datetime.fromtimestamp(deps.clock(), UTC).astimezone(deps.zone)
    month = request.query.get("month") or f"{now.year:04d}-{now.month:02d}"
    village = request.query.get("by") == "village" if by_village is None else by_village
    try:
        start, end = month_bounds(month, deps.zone)
    except ValueError as err:
        raise web.HTTPBadRequest(text=str(err)) from None
    roster = deps.roster()
    incidents = await deps.store.incidents_between(start, end)
    texts = await deps.store.texts_between(start, end)
    health = device_health(roster, await deps.store.devices(), deps.profiles(), deps.clock())
    ready = {device.id: h.healthy for device, h in health}
    scope = [g for g in roster.groups if user.sees(g)]
    rows = figures(incidents, texts, ready, roster, by_village=village, groups=scope)
    return month, village, rows, drill_figures(incidents, roster, groups=scope)


def value(row: Figures, name: str) -> str:
    raw = getattr(row, name)
    if raw is None:
        return "-"
    if name in ("false_alarm_rate", "availability"):
        return f"{raw * 100:.0f}%"
    if isinstance(raw, float):
        return f"{raw:.0f}"
    return str(raw)


def kinds(row: Figures) -> str:
    return "、".join(f"{KIND_ZH.get(k, k)}{n}" for k, n in sorted(row.kinds.items(), key=lambda kv: -kv[1])) or "-"


def ratings(row: Figures) -> str:
    return " ".join(f"{label}{row.ratings.get(s, 0)}" for s, label in RATINGS)


def bar_chart(rows: Sequence[Figures], title: str) -> str:
    """Alarms per row, stacked by how they ended, as an inline SVG (no script, no external file)."""
    shown = [r for r in rows if r.key != "total"]
    width, bar, gap, left, top = 640, 18, 8, 140, 28
    height = top + len(shown) * (bar + gap) + 24
    most = max((r.alarms for r in shown), default=0) or 1
    scale = (width - left - 60) / most
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label={quoteattr(title)}>',
        f'<text x="0" y="16" class="chart-title">{escape(title)}</text>',
    ]
    for n, row in enumerate(shown):
        y = top + n * (bar + gap)
        parts.append(f'<text x="0" y="{y + bar - 4}" class="chart-label">{escape(row.label)}</text>')
        x = float(left)
        other = row.alarms - row.real - row.false_alarms - row.drills
        for count, css in ((row.real, "real"), (row.false_alarms, "false"), (row.drills, "drill"), (other, "other")):
            if count > 0:
                size = f'width="{count * scale:.1f}" height="{bar}"'
                parts.append(f'<rect x="{x:.1f}" y="{y}" {size} class="bar-{css}"/>')
                x += count * scale
        parts.append(f'<text x="{x + 4:.1f}" y="{y + bar - 4}" class="chart-label">{row.alarms}</text>')
    legend_y = height - 6
    for n, (css, label) in enumerate((("real", "真实"), ("false", "误报"), ("drill", "演练"), ("other", "未结"))):
        parts.append(f'<rect x="{left + n * 80}" y="{legend_y - 10}" width="10" height="10" class="bar-{css}"/>')
        parts.append(f'<text x="{left + n * 80 + 14}" y="{legend_y}" class="chart-label">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


async def report_page(request: web.Request) -> web.StreamResponse:
    month, village, rows, drills = await _figures(request)
    context = {
        "session": request[SESSION], "month": month, "by_village": village, "rows": rows, "columns": COLUMNS,
        "drills": drills, "seconds": _seconds,
        "value": value, "kinds": kinds, "ratings": ratings,
        "chart": bar_chart(rows, f"{month} 报警 alarms by {'village' if village else 'group'}"),
    }  # fmt: skip
    return aiohttp_jinja2.render_template("reports.html", request, context)


def _table(rows: Sequence[Figures], village: bool) -> list[list[str]]:
    head = ["村 village" if village else "联防组 group", *(h for h, _ in COLUMNS), "类别 kinds", "评单 ratings"]
    return [head] + [[r.label, *(value(r, n) for _, n in COLUMNS), kinds(r), ratings(r)] for r in rows]


async def report_csv(request: web.Request) -> web.StreamResponse:
    month, village, rows, _ = await _figures(request)
    out = io.StringIO()
    csv.writer(out).writerows(_table(rows, village))
    # A BOM, so Excel on the duty PC reads the Chinese as UTF-8.
    return _download("\ufeff" + out.getvalue(), f"alertd-report-{month}.csv", "text/csv; charset=utf-8")


async def report_xlsx(request: web.Request) -> web.StreamResponse:
    from openpyxl import Workbook  # type: ignore[import-untyped]  # noqa: PLC0415 (only this export needs it)

    month, village, rows, _ = await _figures(request)
    book = Workbook()
    sheet = book.active
    assert sheet is not None  # noqa: S101 (a new workbook has its sheet)
    sheet.title = month
    for line in _table(rows, village):
        sheet.append([_number(cell) for cell in line])
    data = io.BytesIO()
    book.save(data)
    kind = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return _download(data.getvalue(), f"alertd-report-{month}.xlsx", kind)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} s"


def _number(cell: str) -> str | float:
    try:
        return float(cell)
    except ValueError:
        return cell


def _download(body: str | bytes, name: str, content_type: str) -> web.Response:
    response = web.Response(body=body.encode() if isinstance(body, str) else body)
    response.headers["Content-Type"] = content_type
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


async def report_print(request: web.Request) -> web.StreamResponse:
    """One A4 page per village: its groups' rows, its total, and its chart."""
    month, _, rows, _ = await _figures(request, by_village=False)
    deps = request.app[CONSOLE]
    roster = deps.roster()
    villages: dict[str, list[Figures]] = {}
    for row in rows:
        if row.key != "total":
            villages.setdefault(roster.groups[row.key].village, []).append(row)
    _, _, totals, _ = await _figures(request, by_village=True)
    by_name = {t.key: t for t in totals}
    pages = [
        {"village": name, "rows": [*groups, by_name[name]], "chart": bar_chart(groups, f"{name} {month}")}
        for name, groups in villages.items()
    ]
    context = {"session": request[SESSION], "month": month, "pages": pages, "columns": COLUMNS, "value": value,
               "kinds": kinds, "ratings": ratings}  # fmt: skip
    return aiohttp_jinja2.render_template("report_print.html", request, context)
