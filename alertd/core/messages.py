"""Message templates for residents and patrols: short, zh-CN by default, one SMS segment where possible."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from alertd.core.model import Device, Group, Household, Kind
from alertd.core.supervision import Condition

if TYPE_CHECKING:
    from alertd.core.records import Incident

# One UCS-2 SMS segment holds 70 characters; GSM 7-bit holds 160.
UCS2_SEGMENT = 70
GSM7_SEGMENT = 160

KIND_ZH: Mapping[Kind, str] = {
    Kind.PANIC: "求救",
    Kind.FIRE: "火警",
    Kind.SMOKE: "烟雾报警",
    Kind.GAS: "燃气泄漏",
    Kind.WATER: "漏水",
    Kind.INTRUSION: "有人闯入",
    Kind.MEDICAL: "急病求助",
}

CONDITION_ZH: Mapping[Condition, str] = {
    Condition.OFFLINE: "离线",
    Condition.SILENT: "长时间无信号",
    Condition.BATTERY_LOW: "电量低",
    Condition.TAMPERED: "被拆动",
    Condition.AC_LOSS: "停电",  # mains gone, the panel runs on its battery
    Condition.COMM_TROUBLE: "通信故障",
}

DEVICE_ZH: Mapping[str, str] = {
    "alertd-terminal": "报警电话",
    "contact-id": "报警器",
    "zigbee-smoke": "烟感",
    "zigbee-gas": "燃气报警器",
    "zigbee-water": "水浸",
    "zigbee-door": "门磁",
    "zigbee-siren": "声光报警器",
    "zigbee-sos-button": "紧急按钮",
}

KIND_EN: Mapping[Kind, str] = {
    Kind.PANIC: "PANIC",
    Kind.FIRE: "FIRE",
    Kind.SMOKE: "SMOKE",
    Kind.GAS: "GAS LEAK",
    Kind.WATER: "WATER LEAK",
    Kind.INTRUSION: "INTRUDER",
    Kind.MEDICAL: "MEDICAL",
}


@dataclass(frozen=True, slots=True)
class Texts:
    time_zone: ZoneInfo
    language: str = "zh-CN"

    def clock(self, at: float) -> str:
        return datetime.fromtimestamp(at, UTC).astimezone(self.time_zone).strftime("%H:%M")

    def alert(
        self, incident: Incident, household: Household, group: Group, language: str | None = None, step: int = 0
    ) -> str:
        """The alert SMS: who, where, what, when, and how to reply, longest variant that fits one segment.

        Later escalation steps say so ("升级1": nobody has answered yet); it also keeps each step's text
        distinct, which reconciling an interrupted send with the carrier relies on.
        """
        when = self.clock(incident.opened_at)
        if (language or self.language).lower().startswith("en"):
            kind = KIND_EN[incident.kind]
            tag = "[Alert]" if step == 0 else f"[Alert, no answer {step}]"
            variants = [
                f"{tag} {kind}: {household.label}, {household.address}, {group.village} {group.name} {when}. "
                f"Reply 1 ack, 2 on scene, 3 resolved #{incident.code}",
                f"{tag} {kind}: {household.label}, {group.village} {when}. "
                f"Reply 1 ack, 2 on scene, 3 resolved #{incident.code}",
            ]
            limit = GSM7_SEGMENT
        else:
            kind = KIND_ZH[incident.kind]
            tag = "【联防】" if step == 0 else f"【联防升级{step}】"
            where = household.address or f"{group.village}{group.name}"
            variants = [
                f"{tag}{household.label} {kind}！{where} {when} 回1收到 2到场 3解除 #{incident.code}",
                f"{tag}{household.label} {kind}！{group.village}{group.name} {when} "
                f"回1收到 2到场 3解除 #{incident.code}",
                f"{tag}{household.label} {kind}！{when} 回1收到 2到场 3解除 #{incident.code}",
            ]
            limit = UCS2_SEGMENT
        variants = [" ".join(v.split()) for v in variants]
        return next((v for v in variants if len(v) <= limit), variants[-1])

    def maintenance(
        self,
        incident: Incident,
        household: Household,
        device: Device,
        condition: Condition,
        language: str | None = None,
    ) -> str:
        """To the grid worker: which device of which household needs a visit, and why."""
        when = self.clock(incident.opened_at)
        if (language or self.language).lower().startswith("en"):
            why = condition.replace("_", " ")
            return (
                f"[Device] {household.label}: {device.id} ({device.profile}) {why} since {when}. "
                f"Please check #{incident.code}"
            )
        why = CONDITION_ZH.get(condition, condition)
        what = DEVICE_ZH.get(device.profile, device.id)
        return f"【联防设备】{household.label} {what}{why}，请上门检查 {when} #{incident.code}"

    def digest(
        self,
        group: Group,
        total: int,
        problems: Sequence[tuple[Household, Device, Condition]],
        language: str | None = None,
    ) -> str:
        """The daily readiness digest for a group's leader: how many devices are fine, which are not."""
        english = (language or self.language).lower().startswith("en")
        healthy = total - len({d.id for _, d, _ in problems})
        if english:
            head = f"[Daily] {group.village} {group.name}: {healthy}/{total} devices OK"
            items = [f"{h.label} {d.id} {c.replace('_', ' ')}" for h, d, c in problems]
            limit, sep, more = GSM7_SEGMENT, "; ", " and {n} more"
        else:
            head = f"【联防日报】{group.village}{group.name} 设备{total}个，正常{healthy}个"
            items = [f"{h.label}{DEVICE_ZH.get(d.profile, d.id)}{CONDITION_ZH.get(c, c)}" for h, d, c in problems]
            limit, sep, more = UCS2_SEGMENT, "、", "等{n}处"
        if not items:
            return head + (" — all ready." if english else "，全部正常。")
        lead = ": " if english else "；需检修："
        for shown in range(len(items), 0, -1):
            rest = len(items) - shown
            text = head + lead + sep.join(items[:shown]) + (more.format(n=len(items)) if rest else "")
            if len(text) <= limit:
                return text
        return head + (f", {len(items)} need attention" if english else f"；{len(items)}处需检修")

    def disk(self, full: bool, at: float, language: str | None = None) -> str:
        """To the duty room: the server's disk is full (alarms run on the reserve), or has room again."""
        when = self.clock(at)
        if (language or self.language).lower().startswith("en"):
            if full:
                return f"[Server] alertd disk full at {when}: alarms still handled on the reserve. Free space now."
            return f"[Server] alertd disk has room again ({when})."
        if full:
            return f"【联防系统】服务器磁盘已满 {when}，报警暂用备用空间处理，请立即清理磁盘"
        return f"【联防系统】服务器磁盘空间已恢复 {when}"

    def follow_up(self, incident: Incident, household: Household, language: str | None = None) -> str:
        """To the household, once its alarm is resolved: how did it go? (评单; one SMS segment)."""
        if (language or self.language).lower().startswith("en"):
            return (
                f"[Joint defence] {household.label}: your alarm at {self.clock(incident.opened_at)} is resolved. "
                f"Reply 满意 (satisfied), 基本满意 (fair) or 不满意 (not) #{incident.code}"
            )
        kind = KIND_ZH.get(incident.kind, "报警")
        when = self.clock(incident.opened_at)
        return f"【联防】{household.label}，您{when}的{kind}已处置完毕。请回复：满意、基本满意或不满意 #{incident.code}"

    def dissatisfied(self, incident: Incident, household: Household, language: str | None = None) -> str:
        """To the grid worker: a household is not satisfied with how its alarm was handled; call them back."""
        if (language or self.language).lower().startswith("en"):
            return (
                f"[Joint defence] {household.label} is not satisfied with the response to #{incident.code}. Call back."
            )
        return f"【联防回访】{household.label}对#{incident.code}的处置不满意，请尽快回访"

    def ring_caption(self, household: Household, kind: Kind) -> str:
        """What a neighbour's terminal shows, e.g. "2号户 王家 求救"."""
        return f"{household.label} {KIND_ZH[kind]}"
