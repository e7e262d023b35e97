"""Message templates for residents and patrols: short, zh-CN by default, one SMS segment where possible."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from alertd.core.model import Device, Group, Household, Kind, Person
from alertd.core.records import Channel, Incident, Notification, Purpose
from alertd.core.supervision import Condition

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
class Text:
    """A message as written (`body`, for Twilio, the modem and calls) and as a template carrier needs it:
    Aliyun SMS sends only texts registered beforehand, a template per kind with these parameters (the
    templates to register are in docs/carriers.md)."""

    body: str
    template: str = ""
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Texts:
    time_zone: ZoneInfo
    language: str = "zh-CN"

    def clock(self, at: float) -> str:
        return datetime.fromtimestamp(at, UTC).astimezone(self.time_zone).strftime("%H:%M")

    def alert(
        self, incident: Incident, household: Household, group: Group, language: str | None = None, step: int = 0
    ) -> Text:
        """The alert SMS: who, where, what, when, and how to reply, longest variant that fits one segment.

        Later escalation steps say so ("升级1": nobody has answered yet); it also keeps each step's text
        distinct, which reconciling an interrupted send with the carrier relies on.
        """
        when = self.clock(incident.opened_at)
        if (language or self.language).lower().startswith("en"):
            kind = KIND_EN[incident.kind]
            what = "Drill" if incident.drill else "Alert"
            tag = f"[{what}]" if step == 0 else f"[{what}, no answer {step}]"
            variants = [
                f"{tag} {kind}: {household.label}, {household.address}, {group.village} {group.name} {when}. "
                f"Reply 1 ack, 2 on scene, 3 resolved #{incident.code}",
                f"{tag} {kind}: {household.label}, {group.village} {when}. "
                f"Reply 1 ack, 2 on scene, 3 resolved #{incident.code}",
            ]
            limit = GSM7_SEGMENT
        else:
            kind = KIND_ZH[incident.kind]
            what = "联防演练" if incident.drill else "联防"  # every text of a drill says 演练
            tag = f"【{what}】" if step == 0 else f"【{what}升级{step}】"
            where = household.address or f"{group.village}{group.name}"
            variants = [
                f"{tag}{household.label} {kind}！{where} {when} 回1收到 2到场 3解除 #{incident.code}",
                f"{tag}{household.label} {kind}！{group.village}{group.name} {when} "
                f"回1收到 2到场 3解除 #{incident.code}",
                f"{tag}{household.label} {kind}！{when} 回1收到 2到场 3解除 #{incident.code}",
            ]
            limit = UCS2_SEGMENT
        variants = [" ".join(v.split()) for v in variants]
        body = next((v for v in variants if len(v) <= limit), variants[-1])
        params = (
            ("household", household.label),
            ("kind", KIND_ZH[incident.kind]),
            ("place", household.address or f"{group.village}{group.name}"),
            ("time", when),
            ("code", incident.code),
        )
        template = "drill" if incident.drill else "alert"
        if step == 0:
            return Text(body, template, params)
        return Text(body, f"{template}_escalated", (*params, ("step", str(step))))

    def spoken_alert(self, incident: Incident, household: Household, group: Group, language: str | None = None) -> Text:
        """What an alert call says (twice, then the keys): who and what, in words a listener takes in at once;
        no symbols, the incident's number spoken."""
        if (language or self.language).lower().startswith("en"):
            kind = KIND_EN[incident.kind].lower()
            drill = "This is a drill. " if incident.drill else ""
            return Text(
                f"{drill}Emergency: {group.village} {group.name}, {household.label}, {kind}. Alarm {incident.code}."
            )
        kind = KIND_ZH[incident.kind]
        drill = "演练。" if incident.drill else ""
        return Text(f"{drill}紧急情况：{group.village}{group.name}{household.label}，{kind}。报警编号{incident.code}。")

    def quorum(self, incident: Incident, total: int, language: str | None = None) -> Text:
        """To the leader: enough households are coming (the names that fit), or too few at the deadline."""
        count, need = len(incident.responders), incident.quorum
        names = [r.label for r in incident.responders]
        english = (language or self.language).lower().startswith("en")
        reached = incident.quorum_state == "reached"
        params = (("code", incident.code), ("count", str(count)), ("total", str(total)), ("need", str(need)))
        if english:
            if reached:
                body = f"{_en_tag(incident)} #{incident.code}: {count}/{total} households coming: {', '.join(names)}"
                return Text(_fit(body, GSM7_SEGMENT), "quorum_reached", params)
            body = f"{_en_tag(incident)} #{incident.code}: only {count}/{total} coming, {need} needed. Send people."
            return Text(body, "quorum_missed", params)
        if reached:
            body = f"{_zh_tag(incident)}#{incident.code} 已有{count}/{total}户响应：{'、'.join(names)}"
            return Text(_fit(body, UCS2_SEGMENT), "quorum_reached", params)
        body = f"{_zh_tag(incident)}#{incident.code} 仅{count}/{total}户响应（需{need}户），请组织人员前往"
        return Text(body, "quorum_missed", params)

    def acknowledged(self, incident: Incident, actor: str, language: str | None = None) -> Text:
        """To everyone already alerted: who acknowledged, so that nobody assumes someone else went."""
        params = (("who", actor), ("code", incident.code))
        if (language or self.language).lower().startswith("en"):
            return Text(f"{_en_tag(incident)} {actor} acknowledged #{incident.code}", "ack_notice", params)
        return Text(f"{_zh_tag(incident)}{actor}已确认 #{incident.code}", "ack_notice", params)

    def welfare(self, incident: Incident, household: Household, due: str, language: str | None = None) -> Text:
        """To the leader and the grid worker: someone living alone has not checked in today by their time."""
        params = (("household", household.label), ("time", due), ("code", incident.code))
        if (language or self.language).lower().startswith("en"):
            body = f"[Welfare] {household.label}: no check-in by {due} today. Please visit #{incident.code}"
            return Text(body, "welfare", params)
        return Text(
            f"【联防关爱】{household.label} 今天{due}前未报平安，请尽快上门看看 #{incident.code}", "welfare", params
        )

    def storm(
        self, merged: Mapping[str, int], groups: Mapping[str, Group], window_s: float, language: str | None = None
    ) -> Text:
        """In a storm: one text per window instead of one per alarm, by group, most alarms first."""
        total = sum(merged.values())
        minutes = max(1, round(window_s / 60))
        span_zh = f"{minutes}分钟内" if window_s >= 60 else f"{round(window_s)}秒内"
        order = sorted(merged.items(), key=lambda item: (-item[1], item[0]))
        params = (("minutes", str(minutes)), ("count", str(total)), ("groups", str(len(merged))))
        if (language or self.language).lower().startswith("en"):
            parts = ", ".join(f"{groups[g].name if g in groups else g} {n}" for g, n in order)
            body = f"[Joint defence] {total} alarms in {minutes} min: {parts}. See the duty console."
            return Text(_fit(body, GSM7_SEGMENT), "storm", params)
        parts = "、".join(f"{groups[g].name if g in groups else g}{n}起" for g, n in order)
        body = f"【联防】{span_zh}{total}起报警：{parts}，详情见值班台"
        if len(body) > UCS2_SEGMENT:  # the groups that fit, then how many more
            head, tail = f"【联防】{span_zh}{total}起报警：", "等，详情见值班台"
            room = UCS2_SEGMENT - len(head) - len(tail)
            shown = ""
            for g, n in order:
                item = f"{'、' if shown else ''}{groups[g].name if g in groups else g}{n}起"
                if len(shown) + len(item) > room:
                    break
                shown += item
            body = head + shown + tail
        return Text(body, "storm", params)

    def confirm(self, incident: Incident, language: str | None = None) -> Text:
        """To someone whose missed call acknowledged an alarm: it counted (one short segment)."""
        params = (("code", incident.code),)
        if (language or self.language).lower().startswith("en"):
            return Text(f"{_en_tag(incident)} Acknowledged #{incident.code}. Thank you.", "confirm", params)
        return Text(f"{_zh_tag(incident)}已确认 #{incident.code}，谢谢", "confirm", params)

    def maintenance(
        self,
        incident: Incident,
        household: Household,
        device: Device,
        condition: Condition,
        language: str | None = None,
    ) -> Text:
        """To the grid worker: which device of which household needs a visit, and why."""
        when = self.clock(incident.opened_at)
        why = CONDITION_ZH.get(condition, condition)
        what = DEVICE_ZH.get(device.profile, device.id)
        params = (("household", household.label), ("device", what), ("condition", why), ("time", when),
                  ("code", incident.code))  # fmt: skip
        if (language or self.language).lower().startswith("en"):
            english = condition.replace("_", " ")
            body = (
                f"[Device] {household.label}: {device.id} ({device.profile}) {english} since {when}. "
                f"Please check #{incident.code}"
            )
            return Text(body, "maintenance", params)
        return Text(
            f"【联防设备】{household.label} {what}{why}，请上门检查 {when} #{incident.code}", "maintenance", params
        )

    def digest(
        self,
        group: Group,
        total: int,
        problems: Sequence[tuple[Household, Device, Condition]],
        language: str | None = None,
    ) -> Text:
        """The daily readiness digest for a group's leader: how many devices are fine, which are not."""
        body = self._digest_body(group, total, problems, language)
        healthy = total - len({d.id for _, d, _ in problems})
        params = (("group", f"{group.village}{group.name}"), ("total", str(total)), ("healthy", str(healthy)),
                  ("problems", str(total - healthy)))  # fmt: skip
        return Text(body, "digest", params)

    def _digest_body(
        self,
        group: Group,
        total: int,
        problems: Sequence[tuple[Household, Device, Condition]],
        language: str | None,
    ) -> str:
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

    def disk(self, full: bool, at: float, language: str | None = None) -> Text:
        """To the duty room: the server's disk is full (alarms run on the reserve), or has room again."""
        when = self.clock(at)
        template, params = ("disk_full" if full else "disk_ok"), (("time", when),)
        if (language or self.language).lower().startswith("en"):
            if full:
                body = f"[Server] alertd disk full at {when}: alarms still handled on the reserve. Free space now."
                return Text(body, template, params)
            return Text(f"[Server] alertd disk has room again ({when}).", template, params)
        if full:
            return Text(f"【联防系统】服务器磁盘已满 {when}，报警暂用备用空间处理，请立即清理磁盘", template, params)
        return Text(f"【联防系统】服务器磁盘空间已恢复 {when}", template, params)

    def follow_up(self, incident: Incident, household: Household, language: str | None = None) -> Text:
        """To the household, once its alarm is resolved: how did it go? (评单; one SMS segment)."""
        kind = KIND_ZH.get(incident.kind, "报警")
        when = self.clock(incident.opened_at)
        params = (("household", household.label), ("time", when), ("kind", kind), ("code", incident.code))
        if (language or self.language).lower().startswith("en"):
            body = (
                f"[Joint defence] {household.label}: your alarm at {when} is resolved. "
                f"Reply 满意 (satisfied), 基本满意 (fair) or 不满意 (not) #{incident.code}"
            )
            return Text(body, "follow_up", params)
        body = f"【联防】{household.label}，您{when}的{kind}已处置完毕。请回复：满意、基本满意或不满意 #{incident.code}"
        return Text(body, "follow_up", params)

    def dissatisfied(self, incident: Incident, household: Household, language: str | None = None) -> Text:
        """To the grid worker: a household is not satisfied with how its alarm was handled; call them back."""
        params = (("household", household.label), ("code", incident.code))
        if (language or self.language).lower().startswith("en"):
            body = (
                f"[Joint defence] {household.label} is not satisfied with the response to #{incident.code}. Call back."
            )
            return Text(body, "dissatisfied", params)
        return Text(f"【联防回访】{household.label}对#{incident.code}的处置不满意，请尽快回访", "dissatisfied", params)

    def ring_caption(self, household: Household, kind: Kind) -> str:
        """What a neighbour's terminal shows, e.g. "2号户 王家 求救"."""
        return f"{household.label} {KIND_ZH[kind]}"


def text_to(
    person: Person, text: Text, incident_id: int | None, step: int, purpose: Purpose, *, scope: str | None = None
) -> Notification:
    """A text message to one person, as written and as a template carrier needs it."""
    return Notification(
        incident_id, step, Channel.SMS, purpose, person.id, person.phone, text.body, scope,
        template=text.template, params=text.params,
    )  # fmt: skip


def _zh_tag(incident: Incident) -> str:
    return "【联防演练】" if incident.drill else "【联防】"


def _en_tag(incident: Incident) -> str:
    return "[Drill]" if incident.drill else "[Joint defence]"


def _fit(text: str, limit: int) -> str:
    """Cut a list that runs past one segment, marked with an ellipsis (the console has the whole list)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
