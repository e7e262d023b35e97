"""The roster from cadres' spreadsheets: template, export, import with every problem at once, round trip.

Real .xlsx files written and read with openpyxl, real CSV files in UTF-8 and GBK; nothing is mocked.
"""

from __future__ import annotations

from datetime import time as dt_time
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook  # type: ignore[import-untyped]

from alertd.config import load_roster
from alertd.roster_sheets import export_roster, import_sheets, read_sheets, write_template

EXAMPLE = Path(__file__).parent.parent / "config" / "roster.toml"

HEADERS = {
    "人员": ["编号", "姓名", "联系电话", "语言", "联系方式偏好"],
    "联防组": ["编号", "组名", "村", "组长", "副组长", "网格员"],
    "住户": ["编号", "联防组", "户名", "门牌", "家庭成员", "平安键时间"],
    "设备": ["编号", "住户", "型号", "可响铃", "账号", "防区"],
    "巡逻队": ["编号", "名称", "队员", "负责联防组"],
    "值班室": ["人员编号"],
}
KEYS = {
    "人员": "people.id",
    "联防组": "groups.id",
    "住户": "households.id",
    "设备": "devices.id",
    "巡逻队": "patrols.id",
    "值班室": "duty",
}


def _book(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    """A workbook with these sheets, each given as its rows (the header row included)."""
    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def _good() -> dict[str, list[list[Any]]]:
    """A small valid village: two groups, three households."""
    return {
        "人员": [
            HEADERS["人员"],
            ["p1", "李志强", "138 0001 0101", "", ""],
            ["p2", "王桂芬", "138 0001 0201", "", ""],
            ["p3", "徐桂芬", "138 0002 0101", "", ""],
            ["p-duty", "值班室", "138 0009 0001", "", ""],
        ],
        "联防组": [
            HEADERS["联防组"],
            ["g1", "一组", "河口村", "p1", "p2", ""],
            ["g2", "二组", "河口村", "p3", "", ""],
        ],
        "住户": [
            HEADERS["住户"],
            ["h1", "g1", "1号户 李家", "", "p1", ""],
            ["h2", "g1", "2号户 王家", "", "p2", ""],
            ["h3", "g2", "1号户 徐家", "", "p3", ""],
        ],
        "设备": [HEADERS["设备"], ["t-h1", "h1", "", "", "", ""]],
        "值班室": [HEADERS["值班室"], ["p-duty"]],
    }


# ---------------------------------------------------------------------------------------------- template, export


def test_the_template_has_the_instructions_every_sheet_and_its_headers(tmp_path: Path) -> None:
    path = tmp_path / "名册模板.xlsx"
    write_template(path)
    book = load_workbook(path)
    assert book.sheetnames == ["说明", *HEADERS]
    for name, headers in HEADERS.items():
        sheet = book[name]
        assert [c.value for c in sheet[1]] == headers
        assert 2 <= sheet.max_row - 1 <= 7  # a few example rows
        assert sheet["A1"].comment is not None
        assert sheet["A1"].comment.text.startswith(KEYS[name])  # the roster key the column fills
    assert "人员编号" in str(book["值班室"]["A1"].value)
    assert "填写说明" in str(book["说明"]["A1"].value)


def test_the_template_examples_import_without_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "模板.xlsx"
    write_template(path)
    data, problems = read_sheets(path)
    assert problems == []
    assert data is not None
    assert [h["id"] for h in data["households"]] == ["h0101", "h0102", "h0201"]
    assert data["households"][0]["devices"][1] == {"id": "s-h0101", "profile": "zigbee-smoke", "ringable": False}
    assert data["patrols"][1]["groups"] == ["g2"]  # a group named by its 组名


def test_export_then_import_gives_back_the_example_village(tmp_path: Path) -> None:
    sheets, out = tmp_path / "河口村.xlsx", tmp_path / "roster.toml"
    export_roster(EXAMPLE, sheets)
    book = load_workbook(sheets)
    assert book["人员"]["C2"].value == "138 0009 0001"  # numbers as cadres write them
    assert book["设备"]["D3"].value == "否"

    assert import_sheets(sheets, out, base=EXAMPLE) == []
    assert load_roster(out) == load_roster(EXAMPLE)


def test_without_a_base_the_policies_are_the_built_in_ones(tmp_path: Path) -> None:
    sheets, out = tmp_path / "河口村.xlsx", tmp_path / "roster.toml"
    export_roster(EXAMPLE, sheets)
    assert import_sheets(sheets, out) == []
    roster, example = load_roster(out), load_roster(EXAMPLE)
    assert roster.people == example.people
    assert roster.households == example.households
    assert roster.devices == example.devices
    assert roster.kind_policy == {}
    assert roster.drills == {}


# ---------------------------------------------------------------------------------------------- problems


def test_every_problem_is_listed_at_once_with_sheet_row_column_and_value(tmp_path: Path) -> None:
    sheets = _good()
    sheets["人员"] += [
        ["p5", "", "1380001", "", ""],  # row 6
        ["p1", "重名", "139 0000 0001", "法语", "微信"],  # row 7
        ["p6", "同号", "13800010101", "", ""],  # row 8
    ]
    sheets["联防组"].append(["g3", "三组", "河口村", "p9", "p1", "p-nobody"])  # row 4
    sheets["住户"] += [
        ["h4", "g9", "4号户", "", "p1、p404", "25:00"],  # row 5
        ["h1", "g2", "重复户", "", "", ""],  # row 6
    ]
    sheets["设备"] += [
        ["t-h9", "h9", "alertd-terminal", "也许", "", ""],  # row 3
        ["s-h2", "h2", "zigbee-smoke", "是", "", ""],  # row 4
        ["t-h1", "h2", "no-such-model", "", "", "1000"],  # row 5
    ]
    sheets["值班室"].append(["p-gone"])
    path = _book(tmp_path / "名册.xlsx", sheets)
    out = tmp_path / "roster.toml"

    data, problems = read_sheets(path)
    assert data is None
    assert problems == [
        "人员 第6行 姓名: 必须填写",
        '人员 第6行 联系电话 "1380001": 不是有效的电话号码（手机号11位，座机要带区号）',
        '人员 第7行 语言 "法语": 只能填“中文”或“英文”',
        '人员 第7行 联系方式偏好 "微信": 只能填“短信”或“电话”',
        '人员 第7行 编号 "p1": 编号重复，第2行已经用了',
        '人员 第8行 联系电话 "+86138****0101": 与第2行是同一个号码（回复按号码认人，不能重复）',
        '住户 第5行 联防组 "g9": 没有这个联防组（填联防组的编号或组名）',
        '住户 第5行 家庭成员 "p404": 没有这个人员编号',
        '住户 第5行 平安键时间 "25:00": 不是有效的时间（写成 时:分，如 10:00）',
        '住户 第6行 编号 "h1": 编号重复，第2行已经用了',
        '设备 第3行 住户 "h9": 没有这个住户编号',
        '设备 第3行 可响铃 "也许": 只能填“是”或“否”',
        '设备 第4行 可响铃 "是": 型号 zigbee-smoke 不能响铃，请填“否”',
        '设备 第5行 型号 "no-such-model": 没有这个设备型号（可填：alertd-terminal、contact-id、zigbee-door、'
        "zigbee-gas、zigbee-siren、zigbee-smoke、zigbee-sos-button、zigbee-water）",
        '设备 第5行 防区 "1000": 防区是 0 到 999 的整数',
        '设备 第5行 编号 "t-h1": 编号重复，第2行已经用了',
        '值班室 第3行 人员编号 "p-gone": 没有这个人员编号',
        '联防组 第4行 编号 "g3": 没有住户属于这个联防组（住户表的“联防组”列）',
        '联防组 第4行 组长 "p9": 没有这个人员编号',
        '联防组 第4行 网格员 "p-nobody": 没有这个人员编号',
    ]
    assert import_sheets(path, out) == problems
    assert not out.exists()


def test_a_leader_must_live_in_the_group(tmp_path: Path) -> None:
    sheets = _good()
    sheets["联防组"][2][3] = "p1"  # 二组's leader lives in 一组
    problems = import_sheets(_book(tmp_path / "名册.xlsx", sheets), tmp_path / "roster.toml")
    assert problems == ['联防组 第3行 组长 "p1": 不是本组住户的家庭成员（组长、副组长要住在本组）']


def test_missing_sheets_and_columns_are_problems(tmp_path: Path) -> None:
    sheets = _good()
    del sheets["联防组"]
    sheets["人员"] = [[h for h in HEADERS["人员"] if h != "联系电话"], ["p1", "李志强", "", ""]]
    data, problems = read_sheets(_book(tmp_path / "名册.xlsx", sheets))
    assert data is None
    assert problems[:2] == ["名册.xlsx: 缺少“联防组”表", "人员: 缺少“联系电话”列"]


def test_nothing_is_written_over_the_roster_when_there_are_problems(tmp_path: Path) -> None:
    sheets = _good()
    sheets["人员"][1][2] = "12345"
    out = tmp_path / "roster.toml"
    out.write_text("# the roster in use\n", encoding="utf-8")
    problems = import_sheets(_book(tmp_path / "名册.xlsx", sheets), out, base=EXAMPLE)
    assert problems == ['人员 第2行 联系电话 "12345": 不是有效的电话号码（手机号11位，座机要带区号）']
    assert out.read_text(encoding="utf-8") == "# the roster in use\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roster.toml", "名册.xlsx"]  # no temporary file left


def test_what_alertd_check_refuses_is_refused_even_when_no_cell_shows_it(tmp_path: Path) -> None:
    # The base roster's drill is at h0102, which the sheets no longer have: only the full check sees it.
    out = tmp_path / "roster.toml"
    problems = import_sheets(_book(tmp_path / "名册.xlsx", _good()), out, base=EXAMPLE)
    assert problems == [f'{out}: drills[fire-drill-g1]: household "h0102": unknown household']
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- what cadres do


def test_merged_cells_empty_rows_spaces_and_numbers_stored_as_numbers_import(tmp_path: Path) -> None:
    book = Workbook()
    book.remove(book.active)
    people = book.create_sheet("人员")
    people.append(["河口村联防名册（人员）"])  # a title row above the headers
    people.append([" 编号 ", "姓名\u00a0", "联系 电话", "语言", "联系方式偏好", "备注"])
    people.append(["p1 ", "\u00a0李志强", 13800010101.0, "", "", "组长"])
    people.append([])
    people.append(["p2", "王桂芬", 1.3800010201e10, "", "电话", ""])
    people.append(["p3", "徐桂芬", "１３８ ０００２ ０１０１", "中文", "", ""])
    people.append(["p4", "孙德明", "+86-138-0002-0201", "", "", ""])
    people.append(["p5", "马玉珍", "0086 138 0002 0301", "", "", ""])
    people.append(["p6", "朱国庆", "＋８６ １３８－０００２－０４０１", "", "", ""])
    people.append([None, "  ", None, None, None, None])
    groups = book.create_sheet("联防组")
    groups.append(HEADERS["联防组"])
    groups.append(["g1", "一组", "河口村", "p1", "p2", None])
    groups.append(["g2", "二组", "河口村", "p3", None, None])
    households = book.create_sheet("住户")
    households.append(HEADERS["住户"])
    households.append(["h1", "一组", "1号户 李家", "河口村一组1号", "p1", dt_time(10, 0)])
    households.append(["h2", None, "2号户 王家", "", "p2, p6", None])
    households.append(["h3", "g2", "1号户 徐家", "", "p3，p4 p5", "9:30"])
    households.append([None, None, None, None, None, None])  # reached by the merged range only
    households.merge_cells("B2:B3")  # 一组, written once over its two households
    households.merge_cells("B4:B5")
    devices = book.create_sheet("设备")
    devices.append(HEADERS["设备"])
    devices.append(["t-h1", "h1", None, True, None, None])
    devices.append(["s-h1", "h1", "zigbee-smoke", None, None, None])
    devices.append(["t-h2", "h2", "alertd-terminal", " 是 ", None, None])
    path = tmp_path / "名册.xlsx"
    book.save(path)

    data, problems = read_sheets(path)
    assert problems == []
    assert data is not None
    assert {p["id"]: p["phone"] for p in data["people"]} == {
        "p1": "+8613800010101",
        "p2": "+8613800010201",
        "p3": "+8613800020101",
        "p4": "+8613800020201",
        "p5": "+8613800020301",
        "p6": "+8613800020401",
    }
    assert data["people"][0]["name"] == "李志强"
    assert data["people"][1]["prefers"] == "call"
    assert data["people"][2]["language"] == "zh-CN"
    assert data["households"] == [
        {
            "id": "h1",
            "group": "g1",
            "label": "1号户 李家",
            "address": "河口村一组1号",
            "people": ["p1"],
            "devices": [{"id": "t-h1"}, {"id": "s-h1", "profile": "zigbee-smoke", "ringable": False}],
            "check_in": "10:00",
        },
        {"id": "h2", "group": "g1", "label": "2号户 王家", "people": ["p2", "p6"], "devices": [{"id": "t-h2"}]},
        {"id": "h3", "group": "g2", "label": "1号户 徐家", "people": ["p3", "p4", "p5"], "check_in": "09:30"},
    ]

    out = tmp_path / "roster.toml"
    assert import_sheets(path, out) == []
    roster = load_roster(out)
    assert roster.groups["g1"].households == ("h1", "h2")
    assert roster.households["h3"].check_in == 9 * 60 + 30


def test_a_gbk_csv_with_a_sheet_column_imports(tmp_path: Path) -> None:
    lines = [["表", ""]]
    for sheet, rows in _good().items():
        lines += [[sheet, *row] for row in rows]
    lines.insert(5, ["", "", ""])  # an empty row
    text = "\r\n".join(",".join(str(cell) for cell in line) for line in lines) + "\r\n"
    path = tmp_path / "名册.csv"
    path.write_bytes(text.encode("gbk"))

    data, problems = read_sheets(path)
    assert problems == []
    assert data is not None
    assert [p["name"] for p in data["people"]] == ["李志强", "王桂芬", "徐桂芬", "值班室"]
    assert data["duty"] == ["p-duty"]

    out = tmp_path / "roster.toml"
    assert import_sheets(path, out) == []
    assert load_roster(out).groups["g1"].leader == "p1"


def test_a_csv_row_numbers_are_the_lines_excel_shows(tmp_path: Path) -> None:
    lines = [["表"]]
    for sheet, rows in _good().items():
        lines += [[sheet, *row] for row in rows]
    lines[3][3] = "1.38E+10"  # 王桂芬's number, after Excel showed it in scientific notation
    path = tmp_path / "名册.csv"
    path.write_text("\n".join(",".join(map(str, line)) for line in lines) + "\n", encoding="utf-8-sig")
    data, problems = read_sheets(path)
    assert data is None
    assert problems == [
        '人员 第4行 联系电话 "1.38E+10": 被显示成了科学计数法，号码已经丢了位数；请把这一列设成文本，重新填写'
    ]


def test_a_folder_of_csv_files_one_per_sheet_imports(tmp_path: Path) -> None:
    folder = tmp_path / "名册"
    folder.mkdir()
    for sheet, rows in _good().items():
        text = "\n".join(",".join(map(str, row)) for row in rows) + "\n"
        (folder / f"{sheet}.csv").write_bytes(text.encode("gbk" if sheet == "人员" else "utf-8-sig"))
    (folder / "备注.csv").write_text("随便写的\n", encoding="utf-8")
    data, problems = read_sheets(folder)
    assert problems == []
    assert data is not None
    assert [h["id"] for h in data["households"]] == ["h1", "h2", "h3"]


@pytest.mark.parametrize("name", ["坏文件.xlsx", "缺.xlsx"])
def test_a_file_that_is_not_a_workbook_is_one_problem(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.startswith("坏"):
        path.write_bytes(b"not a zip")
    data, problems = read_sheets(path)
    assert data is None
    assert len(problems) == 1
    assert problems[0].startswith(str(path))
