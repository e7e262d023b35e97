"""The roster as the spreadsheets village cadres keep: a template, an export, and an import that lists every problem.

The workbook has a 说明 (instructions) sheet first, then one sheet per kind of entry:

    人员    people      编号 id, 姓名 name, 联系电话 phone, 语言 language, 联系方式偏好 prefers
    联防组  groups      编号 id, 组名 name, 村 village, 组长 leader, 副组长 deputy, 网格员 grid_worker
    住户    households  编号 id, 联防组 group, 户名 label, 门牌 address, 家庭成员 people, 平安键时间 check_in
    设备    devices     编号 id, 住户 household, 型号 profile, 可响铃 ringable, 账号 account, 防区 zone
    巡逻队  patrols     编号 id, 名称 name, 队员 members, 负责联防组 groups
    值班室  duty        人员编号 (a person id, one per row)

One header row, in Chinese; each header cell's comment gives the roster key it fills (people.phone...) and what
to write. Reading, a header may also be the English key, spaces and a trailing note in brackets are ignored, and
columns with other headers (备注...) are ignored, as are sheets with other names. The header row is the first
row (of the first ten) that holds a known header, so a title row above it is fine. Lists (家庭成员, 队员,
负责联防组) are separated by 、 or commas (either width), semicolons or spaces. 可响铃 is 是/否;
语言 is 中文/英文 (or zh-CN, en...); 联系方式偏好 is 短信/电话. A household's 联防组 and a patrol's 负责联防组
may give the group's 编号 or its (unique) 组名.
Devices are listed on their own sheet and nested into their household, in sheet order.

CSV: either a folder holding one CSV per sheet, named after it (人员.csv or people.csv ...), or a single CSV
whose first column names the sheet each row belongs to, the first row of each sheet being that sheet's header
row (its first cell the sheet name, the rest the headers); a single CSV named after a sheet (人员.csv) holds
that sheet alone. Each file is read as UTF-8 (with or without a BOM), else as GBK (GB 18030). Row numbers in
problems are the rows Excel shows: for CSV, the record's number in its file.

Every problem is listed at once, as "sheet 第N行 header "value": reason", in Chinese for the cadre. After the
sheet-level checks pass, the roster is written as TOML and validated as `alertd check` validates it
(alertd.config's reader and the device profiles); anything found there is passed on unchanged.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as dt_time
from pathlib import Path
from typing import Any, TypeVar

import tomli
from openpyxl import Workbook, load_workbook  # type: ignore[import-untyped]
from openpyxl.comments import Comment  # type: ignore[import-untyped]
from openpyxl.styles import Alignment, Font, PatternFill  # type: ignore[import-untyped]
from openpyxl.worksheet.datavalidation import DataValidation  # type: ignore[import-untyped]

from alertd.config import _read_roster, load_roster
from alertd.core.model import Prefers, Roster
from alertd.core.profile import DeviceProfile, Transport
from alertd.phones import mask, normalize
from alertd.problems import show
from alertd.profiles import check_roster_profiles, load_profiles

__all__ = ["export_roster", "import_sheets", "read_sheets", "write_template"]

DEFAULT_PROFILE = "alertd-terminal"
_KEPT = ("policies", "kinds", "drills")  # not in the sheets: kept from the base roster on import
_T = TypeVar("_T")


# ---------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True, slots=True)
class _Col:
    key: str
    header: str
    required: bool
    hint: str
    width: int = 14


@dataclass(frozen=True, slots=True)
class _Sheet:
    key: str  # the roster section (duty: the top-level list)
    name: str
    cols: tuple[_Col, ...]
    examples: tuple[tuple[object, ...], ...]

    def col(self, key: str) -> _Col:
        return next(c for c in self.cols if c.key == key)


_SHEETS: tuple[_Sheet, ...] = (
    _Sheet(
        "people",
        "人员",
        (
            _Col("id", "编号", True, "每人一个，不能重复，如 p0101a", 12),
            _Col("name", "姓名", True, "短信里显示的名字", 18),
            _Col("phone", "联系电话", True, "手机号，或带区号的座机，如 138 0001 0101；不能与别人重复", 18),
            _Col("language", "语言", False, "中文 或 英文；不填：按系统默认", 8),
            _Col("prefers", "联系方式偏好", False, "短信 或 电话（短信之外还打电话提醒）；不填：短信", 14),
        ),
        (
            ("p0101a", "李志强", "138 0001 0101", "", "短信"),
            ("p0102a", "王桂芬", "138 0001 0201", "", "电话"),
            ("p0201a", "徐桂芬", "138 0002 0101", "中文", ""),
            ("p-grid-1", "网格员 孟庆丰", "138 0009 0011", "", ""),
            ("p-patrol-1", "护边员 姜海涛", "138 0009 0021", "", ""),
            ("p-duty-1", "长甸镇值班室 白班", "138 0009 0001", "", ""),
            ("p-duty-2", "长甸镇值班室 夜班", "138 0009 0002", "", ""),
        ),
    ),
    _Sheet(
        "groups",
        "联防组",
        (
            _Col("id", "编号", True, "每组一个，不能重复，如 g1", 10),
            _Col("name", "组名", True, "如 一组", 12),
            _Col("village", "村", True, "如 河口村", 12),
            _Col("leader", "组长", True, "人员编号；须是本组住户的家庭成员", 12),
            _Col("deputy", "副组长", False, "人员编号；须是本组住户的家庭成员", 12),
            _Col("grid_worker", "网格员", False, "人员编号；可以不住在本村", 12),
        ),
        (
            ("g1", "一组", "河口村", "p0101a", "p0102a", "p-grid-1"),
            ("g2", "二组", "河口村", "p0201a", "", "p-grid-1"),
        ),
    ),
    _Sheet(
        "households",
        "住户",
        (
            _Col("id", "编号", True, "每户一个，不能重复，如 h0102（一组2号）", 10),
            _Col("group", "联防组", True, "联防组的编号或组名；同一组的可以合并单元格", 10),
            _Col("label", "户名", True, "邻居的报警器和短信里显示的，如 2号户 王家", 16),
            _Col("address", "门牌", False, "如 河口村一组2号", 18),
            _Col("people", "家庭成员", False, "人员编号，用 、 或 , 隔开", 20),
            _Col("check_in", "平安键时间", False, "独居老人：每天几点前报平安，如 10:00；不填：不用报", 12),
        ),
        (
            ("h0101", "g1", "1号户 李家", "河口村一组1号", "p0101a", "10:00"),
            ("h0102", "g1", "2号户 王家", "河口村一组2号", "p0102a", ""),
            ("h0201", "g2", "1号户 徐家", "河口村二组1号", "p0201a", ""),
        ),
    ),
    _Sheet(
        "devices",
        "设备",
        (
            _Col("id", "编号", True, "每台一个，全村不能重复，如 t-h0102", 12),
            _Col("household", "住户", True, "住户编号", 10),
            _Col("profile", "型号", False, "设备型号，如 alertd-terminal、zigbee-smoke；不填：alertd-terminal", 18),
            _Col("ringable", "可响铃", False, "是 或 否（烟感等只报警不响铃的填 否）；不填：按型号", 8),
            _Col("account", "账号", False, "报警主机（contact-id）的4位账号，0-9 和 B-F", 8),
            _Col("zone", "防区", False, "报警主机的防区号，0 到 999", 8),
        ),
        (
            ("t-h0101", "h0101", "alertd-terminal", "是", "", ""),
            ("s-h0101", "h0101", "zigbee-smoke", "否", "", ""),
            ("t-h0102", "h0102", "alertd-terminal", "是", "", ""),
            ("t-h0201", "h0201", "alertd-terminal", "是", "", ""),
        ),
    ),
    _Sheet(
        "patrols",
        "巡逻队",
        (
            _Col("id", "编号", True, "每队一个，不能重复", 14),
            _Col("name", "名称", True, "如 河口护边巡逻队", 18),
            _Col("members", "队员", True, "人员编号，用 、 或 , 隔开", 24),
            _Col("groups", "负责联防组", True, "联防组编号或组名，用 、 或 , 隔开", 18),
        ),
        (
            ("patrol-hekou", "河口护边巡逻队", "p-patrol-1", "g1、g2"),
            ("patrol-militia", "河口民兵巡逻队", "p-patrol-1、p-grid-1", "二组"),
        ),
    ),
    _Sheet(
        "duty",
        "值班室",
        (_Col("person", "人员编号", True, "镇值班室的人员编号，每行一个；每组最后一步通知他们", 14),),
        (("p-duty-1",), ("p-duty-2",)),
    ),
)
_BY_KEY = {s.key: s for s in _SHEETS}
_REQUIRED_SHEETS = ("people", "groups", "households")

_INSTRUCTIONS = (
    "联防名册填写说明",
    "",
    "1. 每张表第一行是表头，不要改表头文字；从第二行起每行填一条。表头上的批注说明每列怎么填。",
    "2. 编号是系统用来对应的，不能重复；改编号时，别的表里引用它的地方也要一起改。",
    "3. 人员：全村要通知到的人（村民、组长、网格员、护边员、镇值班室）。电话写手机号，座机带区号。",
    "4. 联防组：组长、副组长填人员编号，须是本组住户的家庭成员；网格员可以不是本村人。",
    "5. 住户：联防组填编号（如 g1）或组名（如 一组）；同一组的住户可以合并单元格。",
    "   家庭成员填人员编号，多人用 、 隔开。独居老人可填平安键时间（如 10:00），到点没报平安会通知组长和网格员。",
    "6. 设备：每台报警器、烟感一行，住户填住户编号。烟感等只报警、不能响铃的，可响铃填 否。",
    "7. 巡逻队：队员填人员编号，负责联防组填联防组编号，多个用 、 隔开。",
    "8. 值班室：镇值班室的人员编号，每行一个。",
    "9. 表里的名字和号码都是示例，请换成本村的。可以加备注列，导入时不读。",
    "10. 导入时会一次列出所有问题（哪张表、第几行、哪一列、填的什么、为什么不对），改好后再导入即可。",
)

_HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
_REQUIRED_FONT = Font(bold=True, color="C00000")
_OPTIONAL_FONT = Font(bold=True)
_CHOICES = {"language": '"中文,英文"', "prefers": '"短信,电话"', "ringable": '"是,否"'}


# ---------------------------------------------------------------------------------------------- writing


def write_template(path: Path) -> None:
    """An empty roster workbook for cadres: the instructions, every sheet's headers, and a few example rows."""
    _save(_workbook({s.key: [list(row) for row in s.examples] for s in _SHEETS}), path)


def export_roster(roster_toml: Path, out: Path) -> None:
    """The workbook filled in from a roster file (ConfigError when the roster itself has problems)."""
    _save(_workbook(_rows_of(load_roster(roster_toml))), out)


def _rows_of(roster: Roster) -> Mapping[str, list[list[object]]]:
    people: list[list[object]] = [
        [p.id, p.name, _national(p.phone), _language_shown(p.language), "电话" if p.prefers == Prefers.CALL else "短信"]
        for p in roster.people.values()
    ]
    groups: list[list[object]] = [
        [g.id, g.name, g.village, g.leader, g.deputy or "", g.grid_worker or ""] for g in roster.groups.values()
    ]
    households: list[list[object]] = [
        [h.id, h.group_id, h.label, h.address, "、".join(h.people), _clock(h.check_in)]
        for h in roster.households.values()
    ]
    devices: list[list[object]] = [
        [d.id, h.id, d.profile, "是" if d.ringable else "否", d.account or "", "" if d.zone is None else d.zone]
        for h in roster.households.values()
        for d in (roster.devices[i] for i in h.devices)
    ]
    patrols: list[list[object]] = [
        [t.id, t.name, "、".join(t.members), "、".join(t.groups)] for t in roster.patrols.values()
    ]
    duty: list[list[object]] = [[person_id] for person_id in roster.duty]
    return {
        "people": people,
        "groups": groups,
        "households": households,
        "devices": devices,
        "patrols": patrols,
        "duty": duty,
    }


def _national(e164: str) -> str:
    """A mainland number as cadres write it (138 0001 0101); others in international form."""
    import phonenumbers  # noqa: PLC0415 (as alertd.phones: costly, and only the export needs it here)

    number = phonenumbers.parse(e164, None)
    if number.country_code == 86:
        return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL))


def _language_shown(language: str | None) -> str:
    return {None: "", "zh-CN": "中文", "en": "英文"}.get(language, language or "")


def _clock(minutes: int | None) -> str:
    return "" if minutes is None else f"{minutes // 60:02d}:{minutes % 60:02d}"


def _workbook(rows: Mapping[str, list[list[object]]]) -> Any:
    book = Workbook()
    notes = book.active
    notes.title = "说明"
    for line in _INSTRUCTIONS:
        notes.append([line])
    notes["A1"].font = Font(bold=True, size=14)
    notes.column_dimensions["A"].width = 110
    for spec in _SHEETS:
        sheet = book.create_sheet(spec.name)
        for column, col in enumerate(spec.cols, 1):
            cell = sheet.cell(row=1, column=column, value=col.header)
            cell.font = _REQUIRED_FONT if col.required else _OPTIONAL_FONT
            cell.fill = _HEADER_FILL
            cell.alignment = Alignment(horizontal="center")
            need = "必填" if col.required else "选填"
            key = spec.key if spec.key == "duty" else f"{spec.key}.{col.key}"  # duty: a top-level list of ids
            cell.comment = Comment(f"{key}（{need}）\n{col.hint}", "alertd", width=260, height=110)
            letter = cell.column_letter
            sheet.column_dimensions[letter].width = col.width
            sheet.column_dimensions[letter].number_format = "@"
            if col.key in _CHOICES and not (spec.key == "people" and col.key == "language"):
                choice = DataValidation(type="list", formula1=_CHOICES[col.key], allow_blank=True)
                choice.add(f"{letter}2:{letter}{len(rows.get(spec.key, [])) + 5000}")  # room to add rows
                sheet.add_data_validation(choice)
        for number, row in enumerate(rows.get(spec.key, []), 2):
            for column, value in enumerate(row, 1):
                cell = sheet.cell(row=number, column=column, value=value)
                if isinstance(value, str):
                    cell.number_format = "@"  # phones, accounts and times stay text when edited in Excel
        sheet.freeze_panes = "A2"
    return book


def _save(book: Any, path: Path) -> None:
    data = io.BytesIO()
    book.save(data)
    _write_atomic(path, data.getvalue())


def _write_atomic(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------- reading files


@dataclass
class _Table:
    """One sheet's rows as found: (row number as Excel shows it, values, columns filled from a merged range)."""

    name: str
    rows: list[tuple[int, list[object], frozenset[int]]] = field(default_factory=list)


def _clean(text: str) -> str:
    for odd in ("\u00a0", "\u3000", "\u2007", "\u202f"):
        text = text.replace(odd, " ")
    return text.replace("\u200b", "").replace("\ufeff", "").strip()


def _sheet_key(name: str) -> str | None:
    name = re.sub(r"\s+", "", _clean(unicodedata.normalize("NFKC", name))).lower()
    return next((s.key for s in _SHEETS if name in (s.name, s.key)), None)


def _read_xlsx(path: Path, problems: list[str]) -> list[_Table]:
    try:
        book = load_workbook(path, data_only=True)  # not read_only: merged ranges are needed
    except Exception as err:  # noqa: BLE001 - openpyxl raises anything on a damaged or foreign file
        problems.append(f"{path}: 打不开这个表格文件（要 .xlsx 格式）: {err}")
        return []
    tables: list[_Table] = []
    for sheet in book.worksheets:
        grid = [list(row) for row in sheet.iter_rows(values_only=True)]
        filled: dict[int, set[int]] = {}
        for merged in sheet.merged_cells.ranges:
            top = sheet.cell(row=merged.min_row, column=merged.min_col).value
            for row in range(merged.min_row, min(merged.max_row, len(grid)) + 1):
                values = grid[row - 1]
                for column in range(merged.min_col, merged.max_col + 1):
                    while len(values) < column:
                        values.append(None)
                    values[column - 1] = top
                    if (row, column) != (merged.min_row, merged.min_col):
                        filled.setdefault(row, set()).add(column - 1)
        table = _Table(str(sheet.title))
        table.rows = [(n, values, frozenset(filled.get(n, ()))) for n, values in enumerate(grid, 1)]
        tables.append(table)
    return tables


def _decode(raw: bytes, label: str, problems: list[str]) -> str | None:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        problems.append(f"{label}: 既不是 UTF-8 也不是 GBK 编码，请另存为“CSV UTF-8”")
        return None


def _csv_rows(path: Path, problems: list[str]) -> list[tuple[int, list[object]]] | None:
    try:
        raw = path.read_bytes()
    except OSError as err:
        problems.append(f"{path}: 读不了: {err.strerror}")
        return None
    text = _decode(raw, str(path), problems)
    if text is None:
        return None
    return [(n, list[object](row)) for n, row in enumerate(csv.reader(io.StringIO(text, newline="")), 1)]


def _read_csv_folder(folder: Path, problems: list[str]) -> list[_Table]:
    tables: list[_Table] = []
    for file in sorted(folder.iterdir()):
        if file.suffix.lower() != ".csv" or _sheet_key(file.stem) is None:
            continue
        rows = _csv_rows(file, problems)
        if rows is not None:
            tables.append(_Table(file.stem, [(n, values, frozenset()) for n, values in rows]))
    if not tables and not problems:
        names = "、".join(f"{s.name}.csv" for s in _SHEETS)
        problems.append(f"{folder}: 文件夹里没有名册的 CSV 文件（{names}）")
    return tables


def _read_csv_file(path: Path, problems: list[str]) -> list[_Table]:
    rows = _csv_rows(path, problems)
    if rows is None:
        return []
    if _sheet_key(path.stem) is not None:
        return [_Table(path.stem, [(n, values, frozenset()) for n, values in rows])]
    tables: dict[str, _Table] = {}
    for number, values in rows:
        first = _text(values[0]) if values else ""
        if not first and not any(_text(v) for v in values):
            continue
        key = _sheet_key(first) if first else None
        if key is None:
            if first.lower() in ("表", "工作表", "表名", "sheet"):
                continue  # a heading over the first column
            names = "、".join(s.name for s in _SHEETS)
            problems.append(f"{path.name} 第{number}行 第一列 {show(first)}: 第一列要写这行属于哪张表（{names}）")
            continue
        tables.setdefault(key, _Table(first)).rows.append((number, values[1:], frozenset()))
    return list(tables.values())


# ---------------------------------------------------------------------------------------------- cell values


def _text(value: object) -> str:
    """A cell as the cadre sees it: numbers without ".0", times as HH:MM, odd spaces gone."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt_time):
        return value.strftime("%H:%M")
    return _clean(str(value))


def _phone(value: object) -> str:
    """E.164 of a phone cell; ValueError with the reason, in Chinese."""
    text = re.sub(r"\s", "", unicodedata.normalize("NFKC", _text(value)))
    if sci := re.fullmatch(r"([0-9])\.([0-9]+)[eE]\+?([0-9]+)", text):
        digits, exponent = sci[1] + sci[2].rstrip("0"), int(sci[3])
        if len(digits) <= exponent + 1 < 16:
            if len(digits) < 11:
                raise ValueError("被显示成了科学计数法，号码已经丢了位数；请把这一列设成文本，重新填写")
            text = digits.ljust(exponent + 1, "0")
    text = re.sub(r"[-()]", "", text)
    if re.fullmatch(r"\+?[0-9]+\.0+", text):
        text = text[: text.index(".")]
    if text.startswith("00"):
        text = "+" + text[2:]
    elif re.fullmatch(r"861[3-9][0-9]{9}", text):
        text = "+" + text
    try:
        return normalize(text)
    except ValueError:
        raise ValueError("不是有效的电话号码（手机号11位，座机要带区号）") from None


def _hh_mm(value: object) -> str:
    if isinstance(value, datetime):
        value = value.time()
    if isinstance(value, dt_time):
        return f"{value.hour:02d}:{value.minute:02d}"
    if isinstance(value, float) and 0 <= value < 1:  # a time of day Excel lost the format of
        minutes = round(value * 1440)
        if minutes < 1440:
            return _clock(minutes)
    text = re.sub(r"\s", "", unicodedata.normalize("NFKC", _text(value)))
    if found := re.fullmatch(r"([01]?[0-9]|2[0-3])(?:[:.点时]([0-5][0-9])?(?::00)?分?)", text):
        return f"{int(found[1]):02d}:{found[2] or '00'}"
    raise ValueError("不是有效的时间（写成 时:分，如 10:00）")


_YES = frozenset({"是", "y", "yes", "true", "1", "√", "✓", "✔", "能", "可以", "对"})
_NO = frozenset({"否", "n", "no", "false", "0", "×", "x", "✗", "不", "不能", "不可以", "不是"})


def _yes_no(value: object) -> bool:
    text = _text(value).lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise ValueError("只能填“是”或“否”")


def _language(value: object) -> str:
    text = _text(value)
    if text in ("中文", "汉语", "普通话", "简体中文"):
        return "zh-CN"
    if text in ("英文", "英语"):
        return "en"
    if text.lower().startswith(("zh", "en")):
        return text
    raise ValueError("只能填“中文”或“英文”")


def _prefers(value: object) -> str:
    text = _text(value).lower()
    if text in ("短信", "sms", "发短信"):
        return "sms"
    if text in ("电话", "call", "打电话", "来电", "短信+电话", "短信和电话"):
        return "call"
    raise ValueError("只能填“短信”或“电话”")


def _account(value: object) -> str:
    text = _text(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and text.isdigit():
        text = text.zfill(4)  # 0123 typed into a number cell
    if not re.fullmatch(r"[0-9A-Fa-f]{4}", text):
        raise ValueError("账号是4位，只能有 0-9 和 B-F")
    return text


def _zone(value: object) -> int:
    text = _text(value)
    if not text.isdigit() or int(text) > 999:
        raise ValueError("防区是 0 到 999 的整数")
    return int(text)


def _ids(value: object) -> list[str]:
    return [part for part in re.split(r"[、,，;；\s]+", unicodedata.normalize("NFKC", _text(value))) if part]


# ---------------------------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class _Row:
    sheet: _Sheet
    number: int
    cells: Mapping[str, object]  # column key -> raw value, merged ranges filled in


def _header_key(text: str) -> str:
    text = unicodedata.normalize("NFKC", _clean(text))
    text = re.sub(r"\(.*?\)$|\[.*?\]$", "", re.sub(r"\s+", "", text))
    return text.strip("*").lower()


class _Check:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def at(self, row: _Row, key: str, value: object, reason: str) -> None:
        header = row.sheet.col(key).header
        text = _text(value)
        shown = f" {show(text)}" if text else ""
        self.problems.append(f"{row.sheet.name} 第{row.number}行 {header}{shown}: {reason}")

    def text(self, row: _Row, key: str) -> str:
        """The cell's text; a problem when it is required and empty."""
        text = _text(row.cells.get(key))
        if not text and row.sheet.col(key).required:
            self.at(row, key, None, "必须填写")
        return text

    def parse(self, row: _Row, key: str, parse: Callable[[object], _T]) -> _T | None:
        """The cell parsed; None when empty (a problem if required) or unreadable (a problem)."""
        value = row.cells.get(key)
        if not self.text(row, key):
            return None
        try:
            return parse(value)
        except ValueError as err:
            self.at(row, key, value, str(err))
            return None

    def refs(self, row: _Row, key: str, ids: Iterable[str], known: Mapping[str, object] | set[str], what: str) -> None:
        for ref in ids:
            if ref not in known:
                self.at(row, key, ref, f"没有这个{what}")


def _rows(spec: _Sheet, table: _Table, check: _Check) -> list[_Row]:
    wanted = {}
    for col in spec.cols:
        wanted[_header_key(col.header)] = col.key
        wanted[col.key] = col.key
    header_at = next(
        (i for i, (_, values, _) in enumerate(table.rows[:10]) if any(_header_key(_text(v)) in wanted for v in values)),
        None,
    )
    if header_at is None:
        if any(_text(v) for _, values, _ in table.rows for v in values):
            check.problems.append(f"{spec.name}: 找不到表头行（{'、'.join(c.header for c in spec.cols)}）")
        return []
    columns: dict[str, int] = {}
    for index, value in enumerate(table.rows[header_at][1]):
        key = wanted.get(_header_key(_text(value)))
        if key is not None:
            columns.setdefault(key, index)
    for col in spec.cols:
        if col.required and col.key not in columns:
            check.problems.append(f"{spec.name}: 缺少“{col.header}”列")
    if any(col.required and col.key not in columns for col in spec.cols):
        return []
    rows: list[_Row] = []
    for number, values, filled in table.rows[header_at + 1 :]:
        own = [_text(values[i]) for i in columns.values() if i < len(values) and i not in filled]
        if not any(own):
            continue  # an empty row, or one only a merged range reaches into
        cells = {key: values[i] if i < len(values) else None for key, i in columns.items()}
        rows.append(_Row(spec, number, cells))
    return rows


# ---------------------------------------------------------------------------------------------- the roster


@dataclass
class _Built:
    """The roster being built from the rows, with where each entry came from."""

    people: dict[str, tuple[_Row, dict[str, Any]]] = field(default_factory=dict)
    groups: dict[str, tuple[_Row, dict[str, Any]]] = field(default_factory=dict)
    group_names: dict[str, list[str]] = field(default_factory=dict)
    households: dict[str, tuple[_Row, dict[str, Any]]] = field(default_factory=dict)
    devices: dict[str, _Row] = field(default_factory=dict)
    patrols: dict[str, tuple[_Row, dict[str, Any]]] = field(default_factory=dict)
    duty: list[str] = field(default_factory=list)
    # Every id written, valid row or not, so one broken row is not also "unknown" everywhere it is used.
    seen: dict[str, set[str]] = field(default_factory=dict)

    def group_id(self, ref: str) -> str:
        """A group named by its id, or by a name no other group has."""
        if ref in self.seen["groups"]:
            return ref
        named = self.group_names.get(ref, [])
        return named[0] if len(named) == 1 else ref


def _unique(check: _Check, row: _Row, entry_id: str, taken: Mapping[str, Any], seen: set[str]) -> bool:
    seen.add(entry_id)
    first = taken.get(entry_id)
    if first is None:
        return True
    first_row = first if isinstance(first, _Row) else first[0]
    where = first_row.number if first_row.sheet is row.sheet else f"{first_row.sheet.name} 第{first_row.number}"
    check.at(row, "id", entry_id, f"编号重复，第{where}行已经用了")
    return False


def _read_people(rows: list[_Row], built: _Built, check: _Check) -> None:
    seen = built.seen.setdefault("people", set())
    numbers: dict[str, _Row] = {}
    for row in rows:
        before = len(check.problems)
        entry_id, name = check.text(row, "id"), check.text(row, "name")
        phone = check.parse(row, "phone", _phone)
        language = check.parse(row, "language", _language)
        prefers = check.parse(row, "prefers", _prefers)
        if phone is not None:
            if phone in numbers:
                check.at(
                    row, "phone", mask(phone), f"与第{numbers[phone].number}行是同一个号码（回复按号码认人，不能重复）"
                )
            else:
                numbers[phone] = row
        if entry_id and not _unique(check, row, entry_id, built.people, seen):
            continue
        if len(check.problems) != before or phone is None:
            continue
        entry: dict[str, Any] = {"id": entry_id, "name": name, "phone": phone}
        if language is not None:
            entry["language"] = language
        if prefers == "call":
            entry["prefers"] = "call"
        built.people[entry_id] = (row, entry)


def _read_groups(rows: list[_Row], built: _Built, check: _Check) -> None:
    seen = built.seen.setdefault("groups", set())
    for row in rows:
        before = len(check.problems)
        entry_id = check.text(row, "id")
        entry: dict[str, Any] = {"id": entry_id}
        for key in ("name", "village", "leader", "deputy", "grid_worker"):
            if text := check.text(row, key):
                entry[key] = text
        if entry.get("name"):
            built.group_names.setdefault(entry["name"], []).append(entry_id)
        if entry_id and not _unique(check, row, entry_id, built.groups, seen):
            continue
        if len(check.problems) == before:
            built.groups[entry_id] = (row, entry)


def _read_households(rows: list[_Row], built: _Built, check: _Check) -> None:
    seen = built.seen.setdefault("households", set())
    for row in rows:
        before = len(check.problems)
        entry_id, group, label = check.text(row, "id"), check.text(row, "group"), check.text(row, "label")
        group = built.group_id(group) if group else group
        if group and group not in built.seen["groups"]:
            check.at(row, "group", group, "没有这个联防组（填联防组的编号或组名）")
        people = _ids(row.cells.get("people"))
        check.refs(row, "people", people, built.seen["people"], "人员编号")
        check_in = check.parse(row, "check_in", _hh_mm)
        if entry_id and not _unique(check, row, entry_id, built.households, seen):
            continue
        if len(check.problems) != before:
            continue
        entry: dict[str, Any] = {"id": entry_id, "group": group, "label": label}
        if address := _text(row.cells.get("address")):
            entry["address"] = address
        if people:
            entry["people"] = people
        entry["devices"] = []
        if check_in is not None:
            entry["check_in"] = check_in
        built.households[entry_id] = (row, entry)


def _read_devices(rows: list[_Row], built: _Built, check: _Check, profiles: Mapping[str, DeviceProfile]) -> None:
    accounts: dict[tuple[str, int | None], _Row] = {}
    seen = built.seen.setdefault("devices", set())
    for row in rows:
        before = len(check.problems)
        entry_id, household = check.text(row, "id"), check.text(row, "household")
        if household and household not in built.seen["households"]:
            check.at(row, "household", household, "没有这个住户编号")
        profile_id = _text(row.cells.get("profile")) or DEFAULT_PROFILE
        profile = profiles.get(profile_id)
        if profile is None:
            check.at(row, "profile", profile_id, f"没有这个设备型号（可填：{'、'.join(sorted(profiles))}）")
        ringable = check.parse(row, "ringable", _yes_no)
        if ringable is None and profile is not None and not _text(row.cells.get("ringable")):
            ringable = profile.ringable
        if ringable and profile is not None and not profile.ringable:
            check.at(row, "ringable", row.cells.get("ringable"), f"型号 {profile.id} 不能响铃，请填“否”")
        account, zone = check.parse(row, "account", _account), check.parse(row, "zone", _zone)
        contact_id = profile is not None and profile.transport == Transport.CONTACT_ID
        if contact_id and account is None and not _text(row.cells.get("account")):
            check.at(row, "account", None, f"型号 {profile_id} 是报警主机，要填它的4位账号")
        if profile is not None and not contact_id and (account is not None or zone is not None):
            key = "account" if account is not None else "zone"
            check.at(row, key, row.cells.get(key), "只有报警主机（contact-id）才填账号和防区")
        if account is not None and len(check.problems) == before:
            if (account.upper(), zone) in accounts:
                first = accounts[(account.upper(), zone)].number
                check.at(
                    row, "account", account, f"这个账号{'' if zone is None else f'和防区 {zone} '}第{first}行已经用了"
                )
            accounts[(account.upper(), zone)] = row
        if entry_id and not _unique(check, row, entry_id, built.devices, seen):
            continue
        if len(check.problems) != before or household not in built.households:
            continue
        built.devices[entry_id] = row
        entry: dict[str, Any] = {"id": entry_id}
        if profile_id != DEFAULT_PROFILE:
            entry["profile"] = profile_id
        if not ringable:
            entry["ringable"] = False
        if account is not None:
            entry["account"] = account
        if zone is not None:
            entry["zone"] = zone
        built.households[household][1]["devices"].append(entry)


def _read_patrols(rows: list[_Row], built: _Built, check: _Check) -> None:
    seen = built.seen.setdefault("patrols", set())
    for row in rows:
        before = len(check.problems)
        entry_id, name = check.text(row, "id"), check.text(row, "name")
        members = _ids(row.cells.get("members"))
        groups = [built.group_id(g) for g in _ids(row.cells.get("groups"))]
        for key, listed in (("members", members), ("groups", groups)):
            if not listed:
                check.at(row, key, None, "必须填写")
        check.refs(row, "members", members, built.seen["people"], "人员编号")
        check.refs(row, "groups", groups, built.seen["groups"], "联防组")
        if entry_id and not _unique(check, row, entry_id, built.patrols, seen):
            continue
        if len(check.problems) == before:
            built.patrols[entry_id] = (row, {"id": entry_id, "name": name, "members": members, "groups": groups})


def _read_duty(rows: list[_Row], built: _Built, check: _Check) -> None:
    for row in rows:
        if person := check.text(row, "person"):
            check.refs(row, "person", [person], built.seen["people"], "人员编号")
            built.duty.append(person)


def _check_groups(built: _Built, check: _Check) -> None:
    residents: dict[str, set[str]] = {}
    for _, household in built.households.values():
        residents.setdefault(household["group"], set()).update(household.get("people", ()))
    for group_id, (row, group) in built.groups.items():
        if group_id not in residents:
            check.at(row, "id", group_id, "没有住户属于这个联防组（住户表的“联防组”列）")
        for key in ("leader", "deputy", "grid_worker"):
            person = group.get(key)
            if person is None:
                continue
            if person not in built.seen["people"]:
                check.at(row, key, person, "没有这个人员编号")
            elif key != "grid_worker" and group_id in residents and person not in residents[group_id]:
                check.at(row, key, person, "不是本组住户的家庭成员（组长、副组长要住在本组）")


def _roster_dict(built: _Built) -> dict[str, Any]:
    households = []
    for _, household in built.households.values():
        entry = dict(household)
        if not entry["devices"]:
            del entry["devices"]
        households.append(entry)
    data: dict[str, Any] = {}
    if built.duty:
        data["duty"] = built.duty
    data["people"] = [entry for _, entry in built.people.values()]
    data["groups"] = [entry for _, entry in built.groups.values()]
    data["households"] = households
    if built.patrols:
        data["patrols"] = [entry for _, entry in built.patrols.values()]
    return data


def _tables(path: Path, problems: list[str]) -> list[_Table]:
    if path.is_dir():
        return _read_csv_folder(path, problems)
    if not path.exists():
        problems.append(f"{path}: 找不到这个文件")
        return []
    if path.suffix.lower() == ".csv":
        return _read_csv_file(path, problems)
    return _read_xlsx(path, problems)


def read_sheets(
    path: Path, *, profiles: Mapping[str, DeviceProfile] | None = None
) -> tuple[dict[str, Any] | None, list[str]]:
    """The roster in the workbook (.xlsx), CSV file or CSV folder at `path`, as the TOML-shaped dict
    alertd.config reads; or None and every problem. `profiles`: the device profiles devices may name
    (default: the shipped ones)."""
    profiles = load_profiles() if profiles is None else profiles
    problems: list[str] = []
    tables = _tables(path, problems)
    if problems and not tables:
        return None, problems
    found: dict[str, _Table] = {}
    for table in tables:
        key = _sheet_key(table.name)
        if key is not None and key not in found:
            found[key] = table
    for key in _REQUIRED_SHEETS:
        if key not in found:
            problems.append(f"{path.name}: 缺少“{_BY_KEY[key].name}”表")
    check = _Check()
    rows = {s.key: _rows(s, found[s.key], check) if s.key in found else [] for s in _SHEETS}
    built = _Built()
    _read_people(rows["people"], built, check)
    _read_groups(rows["groups"], built, check)
    _read_households(rows["households"], built, check)
    _read_devices(rows["devices"], built, check, profiles)
    _read_patrols(rows["patrols"], built, check)
    _read_duty(rows["duty"], built, check)
    _check_groups(built, check)
    problems += check.problems
    if problems:
        return None, problems
    data = _roster_dict(built)
    problems = _validate(data, str(path), profiles)
    return (None, problems) if problems else (data, [])


def _validate(data: Mapping[str, Any], label: str, profiles: Mapping[str, DeviceProfile]) -> list[str]:
    """What `alertd check` says of this roster: alertd.config's reader, then the device profiles."""
    roster, problems = _read_roster(Path(label), label, _to_toml(data).encode())
    if roster is not None and not problems:
        problems = check_roster_profiles(roster, profiles, label)
    return problems


def import_sheets(
    path: Path, out: Path, *, base: Path | None = None, profiles: Mapping[str, DeviceProfile] | None = None
) -> list[str]:
    """Read the sheets at `path` and, when they have no problem, write the roster TOML to `out` (atomically).

    `policies`, `kinds` and `drills` are not in the sheets: with `base` (the roster in use) they are kept from
    it, and the whole is validated together. Returns every problem; nothing is written when there is one.
    """
    data, problems = read_sheets(path, profiles=profiles)
    kept: dict[str, Any] = {}
    if base is not None:
        try:
            raw = tomli.loads(base.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomli.TOMLDecodeError) as err:
            return [*problems, f"{base}: 读不了原来的名册: {err}"]
        kept = {key: raw[key] for key in _KEPT if key in raw}
    if data is None:
        return problems
    data |= kept
    if kept:
        problems = _validate(data, str(out), load_profiles() if profiles is None else profiles)
        if problems:
            return problems
    header = f"# alertd roster, imported from {path.name} (alertd.roster_sheets). Reference: docs/configuration.md.\n"
    _write_atomic(out, (header + _to_toml(data)).encode())
    return []


# ---------------------------------------------------------------------------------------------- TOML


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)  # inf, -inf, nan: TOML spells them so
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {type(value).__name__}")


def _is_tables(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _to_toml(data: Mapping[str, Any]) -> str:
    """`data` as TOML: plain keys first, then tables ([a.b]) and arrays of tables ([[a]]), values inline."""
    lines: list[str] = []
    _table_body(lines, data, ())
    return "\n".join(lines) + "\n"


def _table_body(lines: list[str], data: Mapping[str, Any], path: tuple[str, ...]) -> None:
    for key, value in data.items():
        if not isinstance(value, Mapping) and not _is_tables(value):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in data.items():
        name = ".".join(_key(k) for k in (*path, key))
        if isinstance(value, Mapping):
            lines += ["", f"[{name}]"]
            _table_body(lines, value, (*path, key))
        elif _is_tables(value):
            for entry in value:
                lines += ["", f"[[{name}]]"]
                lines += [f"{_key(k)} = {_value(v)}" for k, v in entry.items()]
