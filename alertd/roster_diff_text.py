"""`alertd roster diff` in words: one line per change for a cadre, Chinese by default, English on request.

Apart from alertd.core.roster_diff because phone numbers are masked with alertd.phones.mask (which reads the
country code with phonenumbers), and the core does no such thing. No number is ever shown whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from alertd.core.messages import DEVICE_ZH, KIND_EN, KIND_ZH
from alertd.core.model import Kind
from alertd.core.roster_diff import Change, Ref, Value, What
from alertd.phones import mask

__all__ = ["render"]


def render(changes: list[Change], *, language: str = "zh") -> str:
    """One line per change, in the order given; "无变更" ("No changes") alone when there are none.

    `language`: "zh" (or "zh-CN") for Chinese, "en" for English."""
    english = language.lower().startswith("en")
    if not changes:
        return "No changes" if english else "无变更"
    line = _en if english else _zh
    return "\n".join(line(change) for change in changes)


# ---------------------------------------------------------------------------------------------- Chinese


def _zh(c: Change) -> str:
    v = _Shown(c, none="无", yes="是", no="否", sep="、")
    match c.what:
        case What.GROUP_ADDED:
            return f"联防组 {c.id} 新增：{v.after} {c.name}"
        case What.GROUP_REMOVED:
            return f"联防组 {c.id} 删除：{v.before} {c.name}"
        case What.GROUP_RENAMED:
            return f"联防组 {c.id} 改名：{v.before} → {v.after}"
        case What.LEADER_CHANGED:
            return f"{c.name} 组长 变更：{v.before} → {v.after}"
        case What.DEPUTY_CHANGED:
            return f"{c.name} 副组长 变更：{v.before} → {v.after}"
        case What.GRID_WORKER_CHANGED:
            return f"{c.name} 网格员 变更：{v.before} → {v.after}"
        case What.HOUSEHOLD_ADDED:
            return f"住户 {c.id} 新增：{c.name}（{v.where}）"
        case What.HOUSEHOLD_REMOVED:
            return f"住户 {c.id} 删除：{c.name}（{v.where}）"
        case What.HOUSEHOLD_MOVED:
            return f"住户 {c.id} {c.name} 换组：{v.before} → {v.after}"
        case What.HOUSEHOLD_RELABELLED:
            return f"住户 {c.id} 名称 变更：{v.before} → {v.after}"
        case What.HOUSEHOLD_ADDRESS_CHANGED:
            return f"住户 {c.id} {c.name} 地址 变更：{v.before} → {v.after}"
        case What.HOUSEHOLD_PEOPLE_CHANGED:
            return f"住户 {c.id} {c.name} 家庭成员 变更：{v.before} → {v.after}"
        case What.CHECK_IN_CHANGED:
            return f"住户 {c.id} {c.name} 平安键时间 变更：{v.before} → {v.after}"
        case What.PERSON_ADDED:
            return f"人员 {c.id} 新增：{c.name} {v.after}"
        case What.PERSON_REMOVED:
            return f"人员 {c.id} 删除：{c.name} {v.before}"
        case What.PERSON_RENAMED:
            return f"人员 {c.id} 改名：{v.before} → {v.after}"
        case What.PHONE_CHANGED:
            return f"电话 变更 {c.id} {c.name}：{v.before} → {v.after}"
        case What.LANGUAGE_CHANGED:
            return f"人员 {c.id} {c.name} 语言 变更：{v.of(c.before, default='默认')} → {v.of(c.after, default='默认')}"
        case What.PREFERS_CHANGED:
            return f"人员 {c.id} {c.name} 提醒方式 变更：{_prefers_zh(c.before)} → {_prefers_zh(c.after)}"
        case What.DEVICE_ADDED:
            return f"设备 {c.id} 新增：{_device_zh(c.after)}（{v.where}）"
        case What.DEVICE_REMOVED:
            return f"设备 {c.id} 删除：{_device_zh(c.before)}（{v.where}）"
        case What.DEVICE_MOVED:
            return f"设备 {c.id} 换户：{v.before} → {v.after}"
        case What.DEVICE_PROFILE_CHANGED:
            return f"设备 {c.id}（{v.where}）类型 变更：{_device_zh(c.before)} → {_device_zh(c.after)}"
        case What.DEVICE_RINGABLE_CHANGED:
            return f"设备 {c.id}（{v.where}）响铃 变更：{v.before} → {v.after}"
        case What.DEVICE_ACCOUNT_CHANGED:
            return f"设备 {c.id}（{v.where}）报警主机账号 变更：{v.before} → {v.after}"
        case What.PATROL_ADDED:
            return f"巡逻队 {c.id} 新增：{c.name}（负责 {v.after}）"
        case What.PATROL_REMOVED:
            return f"巡逻队 {c.id} 删除：{c.name}（负责 {v.before}）"
        case What.PATROL_RENAMED:
            return f"巡逻队 {c.id} 改名：{v.before} → {v.after}"
        case What.PATROL_MEMBERS_CHANGED:
            return f"巡逻队 {c.name} 队员 变更：{v.before} → {v.after}"
        case What.PATROL_GROUPS_CHANGED:
            return f"巡逻队 {c.name} 负责组 变更：{v.before} → {v.after}"
        case What.DUTY_CHANGED:
            return f"值班 变更：{v.before} → {v.after}"
        case What.POLICY_ADDED:
            return f"策略 {c.id} 新增：{v.after}"
        case What.POLICY_REMOVED:
            return f"策略 {c.id} 删除：{v.before}"
        case What.POLICY_CHANGED:
            return f"策略 {c.id} 变更：{v.before} → {v.after}"
        case What.KIND_POLICY_CHANGED:
            return f"{_kind(c.id, KIND_ZH)} 所用策略 变更：{v.before} → {v.after}"
        case What.DRILL_ADDED:
            return f"演练 {c.id} 新增：{v.after}（{v.where}）"
        case What.DRILL_REMOVED:
            return f"演练 {c.id} 删除：{v.before}（{v.where}）"
        case What.DRILL_CHANGED:
            return f"演练 {c.id} 变更：{v.before} → {v.after}"
    return f"{c.what} {c.id}：{v.before} → {v.after}"  # pragma: no cover - every kind is listed above


def _prefers_zh(value: Value) -> str:
    return {"sms": "短信", "call": "短信+电话"}.get(str(value), str(value))


def _device_zh(value: Value) -> str:
    profile = str(value)
    return f"{DEVICE_ZH[profile]}（{profile}）" if profile in DEVICE_ZH else profile


# ---------------------------------------------------------------------------------------------- English


def _en(c: Change) -> str:
    v = _Shown(c, none="none", yes="yes", no="no", sep=", ")
    match c.what:
        case What.GROUP_ADDED:
            return f"group {c.id} added: {v.after} {c.name}"
        case What.GROUP_REMOVED:
            return f"group {c.id} removed: {v.before} {c.name}"
        case What.GROUP_RENAMED:
            return f"group {c.id} renamed: {v.before} -> {v.after}"
        case What.LEADER_CHANGED:
            return f"{c.name} leader changed: {v.before} -> {v.after}"
        case What.DEPUTY_CHANGED:
            return f"{c.name} deputy changed: {v.before} -> {v.after}"
        case What.GRID_WORKER_CHANGED:
            return f"{c.name} grid worker changed: {v.before} -> {v.after}"
        case What.HOUSEHOLD_ADDED:
            return f"household {c.id} added: {c.name} ({v.where})"
        case What.HOUSEHOLD_REMOVED:
            return f"household {c.id} removed: {c.name} ({v.where})"
        case What.HOUSEHOLD_MOVED:
            return f"household {c.id} {c.name} moved: {v.before} -> {v.after}"
        case What.HOUSEHOLD_RELABELLED:
            return f"household {c.id} relabelled: {v.before} -> {v.after}"
        case What.HOUSEHOLD_ADDRESS_CHANGED:
            return f"household {c.id} {c.name} address changed: {v.before} -> {v.after}"
        case What.HOUSEHOLD_PEOPLE_CHANGED:
            return f"household {c.id} {c.name} residents changed: {v.before} -> {v.after}"
        case What.CHECK_IN_CHANGED:
            return f"household {c.id} {c.name} check-in time changed: {v.before} -> {v.after}"
        case What.PERSON_ADDED:
            return f"person {c.id} added: {c.name} {v.after}"
        case What.PERSON_REMOVED:
            return f"person {c.id} removed: {c.name} {v.before}"
        case What.PERSON_RENAMED:
            return f"person {c.id} renamed: {v.before} -> {v.after}"
        case What.PHONE_CHANGED:
            return f"phone changed {c.id} {c.name}: {v.before} -> {v.after}"
        case What.LANGUAGE_CHANGED:
            before, after = v.of(c.before, default="default"), v.of(c.after, default="default")
            return f"person {c.id} {c.name} language changed: {before} -> {after}"
        case What.PREFERS_CHANGED:
            return f"person {c.id} {c.name} alerted by changed: {_prefers_en(c.before)} -> {_prefers_en(c.after)}"
        case What.DEVICE_ADDED:
            return f"device {c.id} added: {v.after} ({v.where})"
        case What.DEVICE_REMOVED:
            return f"device {c.id} removed: {v.before} ({v.where})"
        case What.DEVICE_MOVED:
            return f"device {c.id} moved: {v.before} -> {v.after}"
        case What.DEVICE_PROFILE_CHANGED:
            return f"device {c.id} ({v.where}) profile changed: {v.before} -> {v.after}"
        case What.DEVICE_RINGABLE_CHANGED:
            return f"device {c.id} ({v.where}) ringable changed: {v.before} -> {v.after}"
        case What.DEVICE_ACCOUNT_CHANGED:
            return f"device {c.id} ({v.where}) Contact ID account changed: {v.before} -> {v.after}"
        case What.PATROL_ADDED:
            return f"patrol {c.id} added: {c.name} (covers {v.after})"
        case What.PATROL_REMOVED:
            return f"patrol {c.id} removed: {c.name} (covered {v.before})"
        case What.PATROL_RENAMED:
            return f"patrol {c.id} renamed: {v.before} -> {v.after}"
        case What.PATROL_MEMBERS_CHANGED:
            return f"patrol {c.name} members changed: {v.before} -> {v.after}"
        case What.PATROL_GROUPS_CHANGED:
            return f"patrol {c.name} groups changed: {v.before} -> {v.after}"
        case What.DUTY_CHANGED:
            return f"duty changed: {v.before} -> {v.after}"
        case What.POLICY_ADDED:
            return f"policy {c.id} added: {v.after}"
        case What.POLICY_REMOVED:
            return f"policy {c.id} removed: {v.before}"
        case What.POLICY_CHANGED:
            return f"policy {c.id} changed: {v.before} -> {v.after}"
        case What.KIND_POLICY_CHANGED:
            return f"{_kind(c.id, KIND_EN)} alarms policy changed: {v.before} -> {v.after}"
        case What.DRILL_ADDED:
            return f"drill {c.id} added: {v.after} ({v.where})"
        case What.DRILL_REMOVED:
            return f"drill {c.id} removed: {v.before} ({v.where})"
        case What.DRILL_CHANGED:
            return f"drill {c.id} changed: {v.before} -> {v.after}"
    return f"{c.what} {c.id}: {v.before} -> {v.after}"  # pragma: no cover - every kind is listed above


def _prefers_en(value: Value) -> str:
    return {"sms": "text", "call": "text and call"}.get(str(value), str(value))


# ---------------------------------------------------------------------------------------------- values


def _kind(kind: str, names: Mapping[Kind, str]) -> str:
    return names[Kind(kind)] if kind in set(Kind) else kind


class _Shown:
    """A change's values as words: names for ids, masked numbers for phones."""

    def __init__(self, change: Change, *, none: str, yes: str, no: str, sep: str) -> None:
        self._none, self._yes, self._no, self._sep = none, yes, no, sep
        phone = change.what in (What.PHONE_CHANGED, What.PERSON_ADDED, What.PERSON_REMOVED)
        self._text: Callable[[str], str] = mask if phone else str
        self.before = self.of(change.before)
        self.after = self.of(change.after)
        self.where = self.of(change.where)

    def of(self, value: Value, *, default: str | None = None) -> str:
        match value:
            case None:
                return self._none if default is None else default
            case bool():
                return self._yes if value else self._no
            case Ref():
                return value.name
            case tuple():
                return self._sep.join(ref.name for ref in value) if value else self._none
            case str():
                return self._text(value) if value else self._none
        return str(value)  # pragma: no cover - Value has no other form
