"""The monthly report's figures, per group or per village: how many alarms of which kind, how they ended,
how fast someone acknowledged and reached the scene, how many texts were delivered, how many devices are
ready, how households rated the response. Pure: incidents, text counts and device health are arguments."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from alertd.core.events import Outcome, Satisfaction
from alertd.core.model import Kind, Roster
from alertd.core.records import Incident, State


@dataclass(frozen=True, slots=True)
class Figures:
    key: str  # the group's id, or the village's name
    label: str
    alarms: int = 0
    kinds: Mapping[Kind, int] = field(default_factory=dict)
    real: int = 0
    false_alarms: int = 0
    drills: int = 0
    still_open: int = 0
    maintenance: int = 0
    welfare: int = 0  # 平安键: days a household living alone showed no sign of life in time
    ack_p50_s: float | None = None
    ack_p90_s: float | None = None
    scene_p50_s: float | None = None
    scene_p90_s: float | None = None
    texts_sent: int = 0
    texts_delivered: int = 0
    devices: int = 0
    devices_ready: int = 0
    ratings: Mapping[Satisfaction, int] = field(default_factory=dict)

    @property
    def false_alarm_rate(self) -> float | None:
        """False alarms among the alarms that ended as real or false (drills are neither)."""
        judged = self.real + self.false_alarms
        return self.false_alarms / judged if judged else None

    @property
    def availability(self) -> float | None:
        return self.devices_ready / self.devices if self.devices else None


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def figures(
    incidents: Iterable[Incident],
    texts: Mapping[int, tuple[int, int]],  # incident id -> (texts sent, of which delivered)
    ready: Mapping[str, bool],  # device id -> ready now
    roster: Roster,
    *,
    by_village: bool = False,
    groups: Iterable[str] | None = None,  # only these (a user's scope); None: every group
) -> list[Figures]:
    """One row per group (or village) of the roster within `groups`, in roster order, and a total last."""
    wanted = set(roster.groups) if groups is None else set(groups) & set(roster.groups)

    def key_of(group_id: str) -> str:
        return roster.groups[group_id].village if by_village else group_id

    keys = list(dict.fromkeys(key_of(g) for g in roster.groups if g in wanted))
    labels = {key_of(g): (roster.groups[g].village if by_village else roster.groups[g].name) for g in wanted}
    buckets: dict[str, list[Incident]] = {k: [] for k in keys}
    for incident in incidents:
        if incident.group_id in wanted:
            buckets[key_of(incident.group_id)].append(incident)
    devices: dict[str, list[bool]] = {k: [] for k in keys}
    for device in roster.devices.values():
        household = roster.households.get(device.household_id)
        if household is not None and household.group_id in wanted:
            devices[key_of(household.group_id)].append(ready.get(device.id, False))
    rows = [_row(k, labels[k], buckets[k], texts, devices[k]) for k in keys]
    every = [i for k in keys for i in buckets[k]]
    rows.append(_row("total", "合计", every, texts, [r for k in keys for r in devices[k]]))
    return rows


def _row(
    key: str, label: str, incidents: list[Incident], texts: Mapping[int, tuple[int, int]], ready: list[bool]
) -> Figures:
    # Drills are reported on their own (drill_figures): their times are not the village's response times.
    drills = [i for i in incidents if i.drill]
    alarms = [i for i in incidents if i.is_alarm and not i.drill]
    outcomes = Counter(i.outcome for i in alarms if i.state in (State.RESOLVED, State.CANCELLED))
    acks = [i.acknowledged_at - i.opened_at for i in alarms if i.acknowledged_at is not None]
    scenes = [i.on_scene_at - i.opened_at for i in alarms if i.on_scene_at is not None]
    sent = sum(texts.get(i.id, (0, 0))[0] for i in incidents)
    delivered = sum(texts.get(i.id, (0, 0))[1] for i in incidents)
    return Figures(
        key=key,
        label=label,
        alarms=len(alarms),
        kinds=dict(Counter(i.kind for i in alarms)),
        real=outcomes[Outcome.REAL],
        false_alarms=outcomes[Outcome.FALSE_ALARM],
        drills=len(drills) + outcomes[Outcome.DRILL],
        still_open=sum(i.active for i in alarms),
        maintenance=sum(i.maintenance is not None for i in incidents),
        welfare=sum(i.welfare for i in incidents),
        ack_p50_s=percentile(acks, 50),
        ack_p90_s=percentile(acks, 90),
        scene_p50_s=percentile(scenes, 50),
        scene_p90_s=percentile(scenes, 90),
        texts_sent=sent,
        texts_delivered=delivered,
        devices=len(ready),
        devices_ready=sum(ready),
        ratings=dict(Counter(i.satisfaction for i in alarms if i.satisfaction is not None)),
    )


@dataclass(frozen=True, slots=True)
class DrillFigures:
    """演练, reported on their own: who answered, and how fast, per group."""

    key: str
    label: str
    drills: int = 0
    answered: int = 0  # acknowledged by someone
    ack_p50_s: float | None = None
    ack_p90_s: float | None = None
    coming_mean: float | None = None  # households (and others) who said they were coming, per drill
    coming_p50_s: float | None = None  # from the drill's start to each one coming


def drill_figures(
    incidents: Iterable[Incident], roster: Roster, groups: Iterable[str] | None = None
) -> list[DrillFigures]:
    """One row per group (roster order, within `groups`) that held drills, and a total last."""
    wanted = set(roster.groups) if groups is None else set(groups) & set(roster.groups)
    drills = [i for i in incidents if i.drill and i.group_id in wanted]
    rows = [
        _drill_row(g, roster.groups[g].name, [i for i in drills if i.group_id == g])
        for g in roster.groups
        if g in wanted and any(i.group_id == g for i in drills)
    ]
    rows.append(_drill_row("total", "合计", drills))
    return rows


def _drill_row(key: str, label: str, drills: list[Incident]) -> DrillFigures:
    acks = [i.acknowledged_at - i.opened_at for i in drills if i.acknowledged_at is not None]
    coming = [r.at - i.opened_at for i in drills for r in i.responders]
    return DrillFigures(
        key=key,
        label=label,
        drills=len(drills),
        answered=len(acks),
        ack_p50_s=percentile(acks, 50),
        ack_p90_s=percentile(acks, 90),
        coming_mean=sum(len(i.responders) for i in drills) / len(drills) if drills else None,
        coming_p50_s=percentile(coming, 50),
    )
