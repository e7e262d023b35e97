"""The response log as people read it: incident lists and one incident's timeline."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from alertd.core.incidents import STOP_STEP, Channel, Incident, TimelineEntry, metrics_times
from alertd.core.model import Device, Roster
from alertd.core.profile import DeviceProfile
from alertd.core.supervision import DeviceHealth, Reported, assess
from alertd.phones import mask
from alertd.store import DeviceRecord, OutboxRow, Status


def _clock(at: float | None, zone: ZoneInfo, *, date: bool = False) -> str:
    if at is None:
        return "-"
    moment = datetime.fromtimestamp(at, UTC).astimezone(zone)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _in_timeline(n: OutboxRow) -> bool:
    if n.status == Status.PENDING:
        return False
    return n.channel in (Channel.SMS, Channel.VOICE) or n.status in (Status.FAILED, Status.DEAD)


def _sent_line(n: OutboxRow, roster: Roster | None) -> str:
    """A notification's outcome as a timeline line: to whom, by which carrier, and how it went."""
    who = n.recipient
    if roster is not None and n.recipient in roster.people:
        who = roster.people[n.recipient].name
    verb = {Status.SENT: "sent", Status.FAILED: "FAILED", Status.DEAD: "GAVE UP", Status.SENDING: "sending"}
    if n.channel == Channel.VOICE:  # a call: placed, then how it went (answered, no-answer, key 1...)
        verb = verb | {Status.SENT: "placed" + (f", {n.delivery}" if n.delivery else "")}
    outcome = verb.get(n.status, n.status.value) + (f" [{n.error}]" if n.error and n.status != Status.SENT else "")
    what = "call" if n.channel == Channel.VOICE else n.purpose.value
    return f"{what} → {who} via {n.carrier or '-'}: {outcome}"


def incident_dict(incident: Incident, roster: Roster | None = None) -> dict[str, Any]:
    household = roster.households.get(incident.household_id) if roster else None
    return {
        "id": incident.id,
        "kind": incident.kind.value,
        "state": incident.state.value,
        "outcome": incident.outcome.value if incident.outcome else None,
        "household": incident.household_id,
        "label": household.label if household else None,
        "group": incident.group_id,
        "opened_at": incident.opened_at,
        "acknowledged_at": incident.acknowledged_at,
        "acknowledged_by": incident.acknowledged_by,
        "on_scene_at": incident.on_scene_at,
        "resolved_at": incident.resolved_at,
        "drill": incident.drill,
        "responders": [{"who": r.who, "label": r.label, "at": r.at} for r in incident.responders],
        "quorum": incident.quorum or None,
        "quorum_state": incident.quorum_state or None,
        **metrics_times(incident),
    }


def coming_line(incident: Incident, roster: Roster | None, zone: ZoneInfo) -> str | None:
    """ "3/9 households coming (3 needed, reached): 5号户 王家 10:02, ..." — None before anyone is."""
    group = roster.groups.get(incident.group_id) if roster else None
    if not incident.responders and not incident.quorum:
        return None
    total = f"/{len(group.households) - 1}" if group else ""
    need = f" ({incident.quorum} needed{', ' + incident.quorum_state if incident.quorum_state else ''})"
    names = ", ".join(f"{r.label} {_clock(r.at, zone)}" for r in incident.responders)
    return (
        f"{len(incident.responders)}{total} coming"
        + (need if incident.quorum else "")
        + (f": {names}" if names else "")
    )


def incidents_table(incidents: list[Incident], roster: Roster | None, zone: ZoneInfo) -> str:
    lines = [f"{'ID':>5}  {'OPENED':19}  {'KIND':9}  {'STATE':12}  {'ACK AFTER':9}  HOUSEHOLD"]
    for i in incidents:
        household = roster.households.get(i.household_id) if roster else None
        label = f"{i.household_id} {household.label}" if household else i.household_id
        ack = _duration(metrics_times(i)["time_to_acknowledge"])
        opened = _clock(i.opened_at, zone, date=True)
        lines.append(f"{i.id:>5}  {opened:19}  {i.kind.value:9}  {i.state.value:12}  {ack:9}  {label}")
    if not incidents:
        lines.append("(no incidents)")
    return "\n".join(lines)


def show(
    incident: Incident, timeline: list[TimelineEntry], notes: list[OutboxRow], roster: Roster | None, zone: ZoneInfo
) -> str:
    household = roster.households.get(incident.household_id) if roster else None
    times = metrics_times(incident)
    out = [
        f"Incident {incident.id}: {incident.kind.value} at {incident.household_id}"
        + (f" {household.label}" if household else "")
        + (f" ({household.address})" if household and household.address else ""),
        f"  state {incident.state.value}" + (f", outcome {incident.outcome.value}" if incident.outcome else ""),
        f"  opened {_clock(incident.opened_at, zone, date=True)}"
        f"  time to acknowledge {_duration(times['time_to_acknowledge'])}"
        f"  on scene {_duration(times['time_on_scene'])}"
        f"  resolve {_duration(times['time_to_resolve'])}",
    ]
    if incident.drill:
        out.insert(1, "  DRILL (演练): kept out of the real statistics")
    if (coming := coming_line(incident, roster, zone)) is not None:
        out.append(f"  {coming}")
    out += ["", "Timeline:"]
    for at, line in sorted(
        [(e.at, f"{e.event}" + (f" by {e.actor}" if e.actor else "") + (f": {e.detail}" if e.detail else ""))
         for e in timeline]
        # People told, by which carrier; ring commands only when they failed (the step line counts them).
        + [(n.updated_at, _sent_line(n, roster)) for n in notes if _in_timeline(n)],
        key=lambda item: item[0],
    ):  # fmt: skip
        out.append(f"  {_clock(at, zone)} (+{_duration(at - incident.opened_at):>6})  {line}")
    out += ["", "Notifications:"]
    for n in notes:
        name = n.recipient
        if roster and n.recipient in roster.people:
            name = f"{roster.people[n.recipient].name} {mask(n.address)}"
        via = n.carrier or "-"
        outcome = n.status.value + (f", {n.delivery}" if n.delivery else "") + (f" [{n.error}]" if n.error else "")
        out.append(f"  step {n.step if n.step < STOP_STEP else '-'}  {n.purpose.value:6}  {via:8}  {name}: {outcome}")
    if not notes:
        out.append("  (none)")
    return "\n".join(out)


def device_health(
    roster: Roster, records: Mapping[str, DeviceRecord], profiles: Mapping[str, DeviceProfile], now: float
) -> list[tuple[Device, DeviceHealth]]:
    """Every device of the roster with its health, in roster order."""
    out = []
    for device in roster.devices.values():
        record = records.get(device.id)
        reported = record.reported() if record is not None else Reported()
        out.append((device, assess(device, profiles.get(device.profile), reported, now)))
    return out


def devices_table(rows: list[tuple[Device, DeviceHealth]], roster: Roster, zone: ZoneInfo) -> str:
    lines = [f"{'DEVICE':14}  {'HOUSEHOLD':16}  {'PROFILE':18}  {'LAST SEEN':19}  {'BATT':>4}  STATE"]
    for device, health in rows:
        household = roster.households[device.household_id]
        battery = "-" if health.battery is None else f"{health.battery}%"
        state = ", ".join(c.value for c in health.conditions)
        lines.append(
            f"{device.id:14}  {household.label:16}  {device.profile:18}  "
            f"{_clock(health.last_seen, zone, date=True):19}  {battery:>4}  {state}"
        )
    unhealthy = sum(not h.healthy for _, h in rows)
    lines.append(f"{len(rows)} devices, {len(rows) - unhealthy} healthy, {unhealthy} need attention")
    return "\n".join(lines)


def device_dict(device: Device, health: DeviceHealth, roster: Roster) -> dict[str, Any]:
    return {
        "id": device.id,
        "household": device.household_id,
        "group": roster.households[device.household_id].group_id,
        "profile": device.profile,
        "ringable": device.ringable,
        "healthy": health.healthy,
        "conditions": [c.value for c in health.conditions],
        "last_seen": health.last_seen,
        "battery": health.battery,
    }
