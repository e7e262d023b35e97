"""`alertd roster diff`: every change a reload would bring, found (alertd.core.roster_diff) and said in words with
phone numbers masked (alertd.roster_diff_text)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import time
from pathlib import Path
from typing import Any

import pytest

from alertd.config import load_roster
from alertd.core.model import (
    DEFAULT_POLICY,
    Device,
    Group,
    Household,
    Kind,
    PatrolTeam,
    Person,
    Policy,
    Prefers,
    Role,
    Roster,
    ScheduledDrill,
    Step,
)
from alertd.core.roster_diff import Change, Ref, What, diff, policy_text
from alertd.core.schedule import Cadence, Schedule
from alertd.roster_diff_text import render

ROSTER_TOML = Path(__file__).parent.parent / "config" / "roster.toml"

FAST = Policy("fast", (Step(0, ring=True, sms=(Role.LEADER, Role.PATROL), quorum=3), Step(60, sms=(Role.DUTY,))))
MONTHLY = Schedule(Cadence.MONTHLY, time(10, 0), weekday=6, week=1)


def make_roster() -> Roster:
    """Two groups: 一组 with h0101 and h0102, 二组 with h0201; a patrol for both, a duty room, a fire policy."""
    people = {
        p.id: p
        for p in (
            Person("p0101a", "李志强", "+8613800010101"),
            Person("p0102a", "王桂芬", "+8613800010201"),
            Person("p0102b", "王永福", "+8613900010202"),
            Person("p0201a", "马玉珍", "+8613800020101"),
            Person("p-grid", "网格员 孟庆丰", "+8613800090011"),
            Person("p-patrol", "护边员 姜海涛", "+8613800090021"),
            Person("p-duty", "值班室", "+8613800090001"),
        )
    }
    households = {
        h.id: h
        for h in (
            Household("h0101", "1号户 李家", "g1", "河口村一组1号", ("p0101a",), ("t-h0101", "s-h0101")),
            Household("h0102", "2号户 王家", "g1", "河口村一组2号", ("p0102a", "p0102b"), ("t-h0102",), check_in=600),
            Household("h0201", "1号户 马家", "g2", "河口村二组1号", ("p0201a",), ("t-h0201",)),
        )
    }
    devices = {
        d.id: d
        for d in (
            Device("t-h0101", "h0101"),
            Device("s-h0101", "h0101", "zigbee-smoke", ringable=False),
            Device("t-h0102", "h0102"),
            Device("t-h0201", "h0201", "contact-id", account="1234", zone=3),
        )
    }
    groups = {
        "g1": Group("g1", "一组", "河口村", ("h0101", "h0102"), "p0101a", "p0102a", "p-grid"),
        "g2": Group("g2", "二组", "河口村", ("h0201",), "p0201a", None, "p-grid"),
    }
    return Roster(
        people=people,
        households=households,
        groups=groups,
        devices=devices,
        patrols={"patrol": PatrolTeam("patrol", "河口护边巡逻队", ("p-patrol",), ("g1", "g2"))},
        duty=("p-duty",),
        policies={"default": DEFAULT_POLICY, "fast": FAST},
        kind_policy={Kind.FIRE: "fast"},
        drills={"drill-g1": ScheduledDrill("drill-g1", "h0102", Kind.FIRE, MONTHLY)},
    )


OLD = make_roster()


# ---------------------------------------------------------------------------------------------- edits


def person(person_id: str, **changes: Any) -> Callable[[Roster], Roster]:
    def edit(r: Roster) -> Roster:
        return replace(r, people={**r.people, person_id: replace(r.people[person_id], **changes)})

    return edit


def household(household_id: str, **changes: Any) -> Callable[[Roster], Roster]:
    def edit(r: Roster) -> Roster:
        return replace(r, households={**r.households, household_id: replace(r.households[household_id], **changes)})

    return edit


def group(group_id: str, **changes: Any) -> Callable[[Roster], Roster]:
    def edit(r: Roster) -> Roster:
        return replace(r, groups={**r.groups, group_id: replace(r.groups[group_id], **changes)})

    return edit


def device(device_id: str, **changes: Any) -> Callable[[Roster], Roster]:
    def edit(r: Roster) -> Roster:
        return replace(r, devices={**r.devices, device_id: replace(r.devices[device_id], **changes)})

    return edit


def patrol(**changes: Any) -> Callable[[Roster], Roster]:
    def edit(r: Roster) -> Roster:
        return replace(r, patrols={"patrol": replace(r.patrols["patrol"], **changes)})

    return edit


def roster(**changes: Any) -> Callable[[Roster], Roster]:
    def edit(r: Roster) -> Roster:
        return replace(r, **changes)

    return edit


def without(section: str, key: str) -> Callable[[Roster], Roster]:
    def edit(r: Roster) -> Roster:
        entries: dict[str, Any] = dict(getattr(r, section))
        del entries[key]
        fields: dict[str, Any] = {section: entries}
        return replace(r, **fields)

    return edit


def adding(section: str, key: str, value: Any) -> Callable[[Roster], Roster]:
    def edit(r: Roster) -> Roster:
        fields: dict[str, Any] = {section: {**getattr(r, section), key: value}}
        return replace(r, **fields)

    return edit


def moving_h0102_to_g2(r: Roster) -> Roster:
    r = household("h0102", group_id="g2")(r)
    r = group("g1", households=("h0101",))(r)
    return group("g2", households=("h0201", "h0102"))(r)


def moving_t_h0102_to_h0101(r: Roster) -> Roster:
    r = device("t-h0102", household_id="h0101")(r)
    r = household("h0101", devices=("t-h0101", "s-h0101", "t-h0102"))(r)
    return household("h0102", devices=())(r)


G1, G2 = Ref("g1", "一组"), Ref("g2", "二组")
H0101, H0102, H0201 = Ref("h0101", "1号户 李家"), Ref("h0102", "2号户 王家"), Ref("h0201", "1号户 马家")
NEW_HOUSEHOLD = Household("h0103", "3号户 张家", "g1", people=("p0102b",), devices=())
NEW_GROUP = Group("g3", "三组", "河口村", (), "p0101a")
NEW_TEAM = PatrolTeam("patrol-2", "二队", ("p-grid",), ("g2",))
NEW_DRILL = ScheduledDrill("drill-g2", "h0201", Kind.SMOKE, Schedule(Cadence.DAILY, time(8, 0)))
SLOW = Policy("slow", (Step(0, sms=(Role.LEADER,)),))
FASTER = replace(FAST, steps=(FAST.steps[0], Step(30, sms=(Role.DUTY,))))
FAST_TEXT = "0s ring sms=leader,patrol quorum=3; 60s sms=duty"

# Each edit of the roster and exactly what diff(OLD, edited) says about it.
CASES: list[tuple[What, Callable[[Roster], Roster], list[Change]]] = [
    (What.GROUP_ADDED, adding("groups", "g3", NEW_GROUP), [Change(What.GROUP_ADDED, "g3", "三组", after="河口村")]),
    (What.GROUP_REMOVED, without("groups", "g2"), [Change(What.GROUP_REMOVED, "g2", "二组", before="河口村")]),
    (
        What.GROUP_RENAMED,
        group("g2", name="二组（东）"),
        [Change(What.GROUP_RENAMED, "g2", "二组（东）", "河口村 二组", "河口村 二组（东）")],
    ),
    (
        What.LEADER_CHANGED,
        group("g1", leader="p0102b"),
        [Change(What.LEADER_CHANGED, "g1", "一组", Ref("p0101a", "李志强"), Ref("p0102b", "王永福"))],
    ),
    (
        What.DEPUTY_CHANGED,
        group("g2", deputy="p0201a"),
        [Change(What.DEPUTY_CHANGED, "g2", "二组", None, Ref("p0201a", "马玉珍"))],
    ),
    (
        What.GRID_WORKER_CHANGED,
        group("g1", grid_worker=None),
        [Change(What.GRID_WORKER_CHANGED, "g1", "一组", Ref("p-grid", "网格员 孟庆丰"), None)],
    ),
    (
        What.HOUSEHOLD_ADDED,
        adding("households", "h0103", NEW_HOUSEHOLD),
        [Change(What.HOUSEHOLD_ADDED, "h0103", "3号户 张家", where=G1)],
    ),
    (
        What.HOUSEHOLD_REMOVED,
        without("households", "h0201"),
        [Change(What.HOUSEHOLD_REMOVED, "h0201", "1号户 马家", where=G2)],
    ),
    (What.HOUSEHOLD_MOVED, moving_h0102_to_g2, [Change(What.HOUSEHOLD_MOVED, "h0102", "2号户 王家", G1, G2, G2)]),
    (
        What.HOUSEHOLD_RELABELLED,
        household("h0102", label="2号户 王家(新)"),
        [Change(What.HOUSEHOLD_RELABELLED, "h0102", "2号户 王家(新)", "2号户 王家", "2号户 王家(新)", G1)],
    ),
    (
        What.HOUSEHOLD_ADDRESS_CHANGED,
        household("h0101", address="河口村一组1号之一"),
        [Change(What.HOUSEHOLD_ADDRESS_CHANGED, "h0101", "1号户 李家", "河口村一组1号", "河口村一组1号之一", G1)],
    ),
    (
        What.HOUSEHOLD_PEOPLE_CHANGED,
        household("h0102", people=("p0102a",)),
        [
            Change(
                What.HOUSEHOLD_PEOPLE_CHANGED,
                "h0102",
                "2号户 王家",
                (Ref("p0102a", "王桂芬"), Ref("p0102b", "王永福")),
                (Ref("p0102a", "王桂芬"),),
                G1,
            )
        ],
    ),
    (
        What.CHECK_IN_CHANGED,
        household("h0101", check_in=9 * 60 + 30),
        [Change(What.CHECK_IN_CHANGED, "h0101", "1号户 李家", None, "09:30", G1)],
    ),
    (
        What.PERSON_ADDED,
        adding("people", "p0103a", Person("p0103a", "张德明", "+8613800010301")),
        [Change(What.PERSON_ADDED, "p0103a", "张德明", after="+8613800010301")],
    ),
    (
        What.PERSON_REMOVED,
        without("people", "p-duty"),
        [Change(What.PERSON_REMOVED, "p-duty", "值班室", before="+8613800090001")],
    ),
    (
        What.PERSON_RENAMED,
        person("p0102a", name="王桂兰"),
        [Change(What.PERSON_RENAMED, "p0102a", "王桂兰", "王桂芬", "王桂兰")],
    ),
    (
        What.PHONE_CHANGED,
        person("p0102a", phone="+8613900010202"),
        [Change(What.PHONE_CHANGED, "p0102a", "王桂芬", "+8613800010201", "+8613900010202")],
    ),
    (
        What.LANGUAGE_CHANGED,
        person("p0102a", language="en"),
        [Change(What.LANGUAGE_CHANGED, "p0102a", "王桂芬", None, "en")],
    ),
    (
        What.PREFERS_CHANGED,
        person("p0101a", prefers=Prefers.CALL),
        [Change(What.PREFERS_CHANGED, "p0101a", "李志强", "sms", "call")],
    ),
    (
        What.DEVICE_ADDED,
        adding("devices", "s-h0102", Device("s-h0102", "h0102", "zigbee-smoke", ringable=False)),
        [Change(What.DEVICE_ADDED, "s-h0102", after="zigbee-smoke", where=H0102)],
    ),
    (
        What.DEVICE_REMOVED,
        without("devices", "s-h0101"),
        [Change(What.DEVICE_REMOVED, "s-h0101", before="zigbee-smoke", where=H0101)],
    ),
    (What.DEVICE_MOVED, moving_t_h0102_to_h0101, [Change(What.DEVICE_MOVED, "t-h0102", "", H0102, H0101, H0101)]),
    (
        What.DEVICE_PROFILE_CHANGED,
        device("s-h0101", profile="zigbee-gas"),
        [Change(What.DEVICE_PROFILE_CHANGED, "s-h0101", "", "zigbee-smoke", "zigbee-gas", H0101)],
    ),
    (
        What.DEVICE_RINGABLE_CHANGED,
        device("t-h0102", ringable=False),
        [Change(What.DEVICE_RINGABLE_CHANGED, "t-h0102", "", True, False, H0102)],
    ),
    (
        What.DEVICE_ACCOUNT_CHANGED,
        device("t-h0201", zone=None),
        [Change(What.DEVICE_ACCOUNT_CHANGED, "t-h0201", "", "1234/3", "1234", H0201)],
    ),
    (
        What.PATROL_ADDED,
        adding("patrols", "patrol-2", NEW_TEAM),
        [Change(What.PATROL_ADDED, "patrol-2", "二队", after=(G2,))],
    ),
    (
        What.PATROL_REMOVED,
        roster(patrols={}),
        [Change(What.PATROL_REMOVED, "patrol", "河口护边巡逻队", before=(G1, G2))],
    ),
    (
        What.PATROL_RENAMED,
        patrol(name="河口巡逻队"),
        [Change(What.PATROL_RENAMED, "patrol", "河口巡逻队", "河口护边巡逻队", "河口巡逻队")],
    ),
    (
        What.PATROL_MEMBERS_CHANGED,
        patrol(members=("p-patrol", "p-grid")),
        [
            Change(
                What.PATROL_MEMBERS_CHANGED,
                "patrol",
                "河口护边巡逻队",
                (Ref("p-patrol", "护边员 姜海涛"),),
                (Ref("p-patrol", "护边员 姜海涛"), Ref("p-grid", "网格员 孟庆丰")),
            )
        ],
    ),
    (
        What.PATROL_GROUPS_CHANGED,
        patrol(groups=("g1",)),
        [Change(What.PATROL_GROUPS_CHANGED, "patrol", "河口护边巡逻队", (G1, G2), (G1,))],
    ),
    (
        What.DUTY_CHANGED,
        roster(duty=("p-duty", "p-grid")),
        [
            Change(
                What.DUTY_CHANGED,
                "",
                "",
                (Ref("p-duty", "值班室"),),
                (Ref("p-duty", "值班室"), Ref("p-grid", "网格员 孟庆丰")),
            )
        ],
    ),
    (
        What.POLICY_ADDED,
        adding("policies", "slow", SLOW),
        [Change(What.POLICY_ADDED, "slow", "slow", after="0s sms=leader")],
    ),
    (
        What.POLICY_REMOVED,
        without("policies", "fast"),  # fire alarms fall back to the default policy (Roster.policy_for)
        [
            Change(What.POLICY_REMOVED, "fast", "fast", before=FAST_TEXT),
            Change(What.KIND_POLICY_CHANGED, "fire", "fire", "fast", "default"),
        ],
    ),
    (
        What.POLICY_CHANGED,
        adding("policies", "fast", FASTER),
        [Change(What.POLICY_CHANGED, "fast", "fast", FAST_TEXT, "0s ring sms=leader,patrol quorum=3; 30s sms=duty")],
    ),
    (
        What.KIND_POLICY_CHANGED,
        roster(kind_policy={Kind.SMOKE: "fast"}),
        [
            Change(What.KIND_POLICY_CHANGED, "fire", "fire", "fast", "default"),
            Change(What.KIND_POLICY_CHANGED, "smoke", "smoke", "default", "fast"),
        ],
    ),
    (
        What.DRILL_ADDED,
        adding("drills", "drill-g2", NEW_DRILL),
        [Change(What.DRILL_ADDED, "drill-g2", after="h0201 smoke daily 08:00", where=H0201)],
    ),
    (
        What.DRILL_REMOVED,
        roster(drills={}),
        [Change(What.DRILL_REMOVED, "drill-g1", before="h0102 fire monthly first sunday 10:00", where=H0102)],
    ),
    (
        What.DRILL_CHANGED,
        adding("drills", "drill-g1", ScheduledDrill("drill-g1", "h0101", Kind.FIRE, MONTHLY)),
        [
            Change(
                What.DRILL_CHANGED,
                "drill-g1",
                "",
                "h0102 fire monthly first sunday 10:00",
                "h0101 fire monthly first sunday 10:00",
                H0101,
            )
        ],
    ),
]


@pytest.mark.parametrize(("what", "edit", "expected"), CASES, ids=[str(case[0]) for case in CASES])
def test_each_kind_of_change_is_found(what: What, edit: Callable[[Roster], Roster], expected: list[Change]) -> None:
    assert diff(OLD, edit(OLD)) == expected
    assert what in {c.what for c in expected}


def test_every_kind_of_change_has_a_case() -> None:
    assert {case[0] for case in CASES} == set(What)


def test_identical_rosters_have_no_changes() -> None:
    assert diff(OLD, OLD) == []
    assert diff(OLD, make_roster()) == []  # equal values, not the same objects
    assert render(diff(OLD, make_roster())) == "无变更"
    assert render([], language="en") == "No changes"


def test_reordering_the_entries_of_a_section_is_no_change() -> None:
    shuffled = replace(
        OLD, people=dict(reversed(list(OLD.people.items()))), devices=dict(reversed(list(OLD.devices.items())))
    )
    assert diff(OLD, shuffled) == []


def test_changes_come_by_kind_then_id_whatever_the_order_of_the_edits() -> None:
    edits = [
        person("p0102a", phone="+8613900010299"),
        person("p0101a", name="李志刚"),
        adding("people", "p0103a", Person("p0103a", "张德明", "+8613800010301")),
        group("g2", deputy="p0201a"),
        group("g1", leader="p0102b"),
        household("h0101", check_in=570),
        household("h0102", check_in=None, label="2号户 王家(新)"),
        adding("households", "h0103", NEW_HOUSEHOLD),
        device("s-h0101", profile="zigbee-gas"),
        without("devices", "t-h0201"),
        patrol(members=("p-patrol", "p-grid")),
        roster(duty=("p-grid",)),
        adding("policies", "slow", SLOW),
        roster(kind_policy={Kind.SMOKE: "slow", Kind.GAS: "fast"}),
        adding("drills", "drill-g2", NEW_DRILL),
        roster(drills={"drill-g2": NEW_DRILL}),
    ]
    forward, backward = OLD, OLD
    for edit in edits:
        forward = edit(forward)
    for edit in reversed(edits):
        backward = edit(backward)
    changes = diff(OLD, forward)
    assert changes == diff(OLD, backward)
    order = list(What)
    keys = [(order.index(c.what), c.id) for c in changes]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert len(changes) == 19
    assert [(c.what, c.id) for c in changes[:5]] == [
        (What.LEADER_CHANGED, "g1"),
        (What.DEPUTY_CHANGED, "g2"),
        (What.HOUSEHOLD_ADDED, "h0103"),
        (What.HOUSEHOLD_RELABELLED, "h0102"),
        (What.CHECK_IN_CHANGED, "h0101"),
    ]
    assert [c.id for c in changes if c.what == What.KIND_POLICY_CHANGED] == ["fire", "gas", "smoke"]


def test_the_same_id_changed_in_several_ways_gives_one_line_each_in_kind_order() -> None:
    new = person("p0102a", name="王桂兰", phone="+8613900010299", language="en")(OLD)
    assert [c.what for c in diff(OLD, new)] == [What.PERSON_RENAMED, What.PHONE_CHANGED, What.LANGUAGE_CHANGED]


def test_policy_text_writes_a_policy_as_in_the_roster_file() -> None:
    assert policy_text(DEFAULT_POLICY) == (
        "0s ring sms=leader,patrol; 120s sms=deputy,grid_worker,patrol; 300s sms=duty"
    )
    quiet = replace(SLOW, steps=(Step(0, call=(Role.LEADER,)),), call_retries=0, call_retry_s=30, ack_notice=False)
    assert policy_text(quiet) == "0s call=leader | call_retries=0 | call_retry_s=30 | ack_notice=false"


# ---------------------------------------------------------------------------------------------- in words


def line(edit: Callable[[Roster], Roster], language: str = "zh") -> str:
    return render(diff(OLD, edit(OLD)), language=language)


@pytest.mark.parametrize(
    ("edit", "zh", "en"),
    [
        (
            adding("households", "h0103", NEW_HOUSEHOLD),
            "住户 h0103 新增：3号户 张家（一组）",
            "household h0103 added: 3号户 张家 (一组)",
        ),
        (
            person("p0102a", phone="+8613900010202"),
            "电话 变更 p0102a 王桂芬：+86138****0201 → +86139****0202",
            "phone changed p0102a 王桂芬: +86138****0201 -> +86139****0202",
        ),
        (
            group("g1", leader="p0102b"),
            "一组 组长 变更：李志强 → 王永福",
            "一组 leader changed: 李志强 -> 王永福",
        ),
        (group("g2", deputy="p0201a"), "二组 副组长 变更：无 → 马玉珍", "二组 deputy changed: none -> 马玉珍"),
        (
            moving_h0102_to_g2,
            "住户 h0102 2号户 王家 换组：一组 → 二组",
            "household h0102 2号户 王家 moved: 一组 -> 二组",
        ),
        (
            household("h0102", check_in=None),
            "住户 h0102 2号户 王家 平安键时间 变更：10:00 → 无",
            "household h0102 2号户 王家 check-in time changed: 10:00 -> none",
        ),
        (
            device("t-h0102", ringable=False),
            "设备 t-h0102（2号户 王家）响铃 变更：是 → 否",
            "device t-h0102 (2号户 王家) ringable changed: yes -> no",
        ),
        (
            without("devices", "s-h0101"),
            "设备 s-h0101 删除：烟感（zigbee-smoke）（1号户 李家）",
            "device s-h0101 removed: zigbee-smoke (1号户 李家)",
        ),
        (
            patrol(groups=("g1",)),
            "巡逻队 河口护边巡逻队 负责组 变更：一组、二组 → 一组",
            "patrol 河口护边巡逻队 groups changed: 一组, 二组 -> 一组",
        ),
        (
            roster(kind_policy={}),
            "火警 所用策略 变更：fast → default",
            "FIRE alarms policy changed: fast -> default",
        ),
        (
            person("p0101a", prefers=Prefers.CALL),
            "人员 p0101a 李志强 提醒方式 变更：短信 → 短信+电话",
            "person p0101a 李志强 alerted by changed: text -> text and call",
        ),
    ],
)
def test_each_change_is_one_line_in_chinese_or_english(edit: Callable[[Roster], Roster], zh: str, en: str) -> None:
    assert line(edit) == zh
    assert line(edit, "en") == en


@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_kind_of_change_renders_as_one_line_without_a_whole_number(language: str) -> None:
    whole = re.compile(r"\+?\d{11,}")
    for what, edit, _ in CASES:
        changes = diff(OLD, edit(OLD))
        text = render(changes, language=language)
        assert len(text.splitlines()) == len(changes), what
        assert not whole.search(text), text


def test_added_and_removed_people_show_their_numbers_masked() -> None:
    added = line(adding("people", "p0103a", Person("p0103a", "张德明", "+8613800010301")))
    assert added == "人员 p0103a 新增：张德明 +86138****0301"
    removed = line(without("people", "p-duty"), "en")
    assert removed == "person p-duty removed: 值班室 +86138****0001"


# ---------------------------------------------------------------------------------------------- from files


def test_the_example_roster_and_an_edited_copy(tmp_path: Path) -> None:
    old_path = tmp_path / "old.toml"
    shutil.copyfile(ROSTER_TOML, old_path)
    text = ROSTER_TOML.read_text(encoding="utf-8")
    edited = (
        text.replace('phone = "138 0001 0201"', 'phone = "139 0001 0299"')  # 王桂芬's new number
        .replace('leader = "p0105a"', 'leader = "p0108a"\n# was p0105a', 1)  # 一组: 黄凤英 leads
        .replace('deputy = "p0108a"', 'deputy = "p0105a"', 1)
        .replace('check_in = "10:00"', 'check_in = "09:30"')
        .replace('{ id = "s-h0107", profile = "zigbee-smoke", ringable = false }', '{ id = "t2-h0107" }')
    )
    new_path = tmp_path / "new.toml"
    new_path.write_text(edited, encoding="utf-8")

    old, new = load_roster(old_path), load_roster(new_path)
    assert diff(old, load_roster(ROSTER_TOML)) == []
    changes = diff(old, new)
    assert [(c.what, c.id) for c in changes] == [
        (What.LEADER_CHANGED, "g1"),
        (What.DEPUTY_CHANGED, "g1"),
        (What.CHECK_IN_CHANGED, "h0104"),
        (What.PHONE_CHANGED, "p0102a"),
        (What.DEVICE_ADDED, "t2-h0107"),
        (What.DEVICE_REMOVED, "s-h0107"),
    ]
    assert render(changes).splitlines() == [
        "一组 组长 变更：陈国庆 → 黄凤英",
        "一组 副组长 变更：黄凤英 → 陈国庆",
        "住户 h0104 4号户 刘家 平安键时间 变更：10:00 → 09:30",
        "电话 变更 p0102a 王桂芬：+86138****0201 → +86139****0299",
        "设备 t2-h0107 新增：报警电话（alertd-terminal）（7号户 赵家）",
        "设备 s-h0107 删除：烟感（zigbee-smoke）（7号户 赵家）",
    ]
