"""The response desk: every decision alertd makes about incidents, in one place, with no I/O.

It holds what it needs to decide (the open incidents, the index of them by household, the escalation
deadlines, the next incident number, device upkeep) and turns each input into a typed Result plus the
changes to commit (a Batch). Time is an argument; what was seen before (duplicate alarms, replayed
messages) is looked up by the shell for the whole batch and passed in. The engine around it queues,
commits and acknowledges.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from alertd.core import reload, targeting
from alertd.core.digest import LAST_DAY_KEY, plan
from alertd.core.events import (
    Action,
    Alarm,
    CallReport,
    CallStatus,
    CheckIn,
    CheckInPause,
    Coming,
    DeliveryReport,
    DeviceStatus,
    Drill,
    Evaluation,
    Heartbeat,
    Input,
    MissedCall,
    OperatorCommand,
    Outcome,
    Rating,
    Reply,
    Restore,
    Satisfaction,
    SensorState,
    Supervision,
    SupervisionKind,
    TerminalAck,
    TestReport,
    Tick,
    Via,
)
from alertd.core.incidents import (
    SILENT_ROLES,
    STOP_STEP,
    TransitionError,
    apply_action,
    call_to,
    escalating,
    fire_due_steps,
    join_alarm,
    open_incident,
    open_maintenance,
    open_welfare,
    responding,
)
from alertd.core.messages import Texts, text_to
from alertd.core.model import Kind, Person, Policy, Role, Roster
from alertd.core.ports import Commands
from alertd.core.profile import DeviceProfile
from alertd.core.records import (
    Batch,
    Channel,
    DeviceUpdate,
    Effects,
    Incident,
    Notification,
    Purpose,
    State,
    TimelineEntry,
)
from alertd.core.results import OK, Result, Verdict
from alertd.core.storm import Storm
from alertd.core.supervision import Condition, Reported
from alertd.core.targeting import ReplyCommand
from alertd.core.upkeep import Upkeep, news_update

_LOGGER = logging.getLogger(__name__)

# Tolerance between the SMSC's timestamp on a modem reply and our clock when matching it to incidents.
REPLY_CLOCK_SKEW_S = 300.0
# Supervision news logged at INFO: a panel's everyday traffic, not something a person must look at.
_ROUTINE_NEWS = frozenset({SupervisionKind.TEST, SupervisionKind.OPEN_CLOSE, SupervisionKind.OTHER})
# 评单: a resolved alarm's household is asked how it went; its SMS answer counts for this long.
EVALUATION_WINDOW_S = 3 * 86400.0
FOLLOW_UP_STEP = STOP_STEP + 1  # the follow-up text's step: after every escalation step and the stop
CONFIRM_STEP = STOP_STEP + 2  # the text confirming a missed call's acknowledgement: one per person and incident
ACK_NOTICE_STEP = STOP_STEP + 3  # "陈国庆已确认 #17" to everyone already alerted: once per person and incident
SATISFACTION_ZH = {Satisfaction.SATISFIED: "满意", Satisfaction.FAIR: "基本满意", Satisfaction.DISSATISFIED: "不满意"}


@dataclass(frozen=True, slots=True)
class Seen:
    """What the store already holds, looked up for a whole batch before deciding."""

    alarms: frozenset[tuple[str, int]] = frozenset()  # (device, seq) within the deduplication window
    inbound: frozenset[str] = frozenset()  # inbound message ids handled before
    closed: Mapping[int, Incident] = field(default_factory=dict)  # closed incidents the batch's evaluations name
    calls: Mapping[int, PlacedCall] = field(default_factory=dict)  # the calls the batch's call reports are about


@dataclass(frozen=True, slots=True)
class PlacedCall:
    """The outbox row a call report is about, as the store holds it."""

    notification_id: int
    incident_id: int | None
    step: int
    recipient: str  # the person called
    spoken: str  # what the call says
    placed: int  # which call this was to that person for that step: 1 the first, 2 the first retry...


SIGN_KEY, PAUSE_KEY, JUDGED_KEY = "sign:", "pause:", "judged:"  # the store's meta keys, per household


@dataclass(frozen=True, slots=True)
class CheckIns:
    """What the store holds of the daily check-ins (its meta rows), for a desk resuming."""

    signs: Mapping[str, float] = field(default_factory=dict)
    paused: Mapping[str, float] = field(default_factory=dict)
    judged: Mapping[str, str] = field(default_factory=dict)


def handled_key(item: CallReport | MissedCall) -> str | None:
    """What a call report or a missed call is remembered by, so that a retried one is handled once (None:
    a missed call the modem gave no id, handled each time)."""
    if isinstance(item, CallReport):
        return report_key(item)
    return f"missed:{item.call_id}" if item.call_id is not None else None


def report_key(report: CallReport) -> str:
    return f"call:{report.token or f'{report.provider_id}:{report.status}:{report.digits}:{report.machine}'}"


@dataclass(frozen=True, slots=True)
class _Acknowledge:
    """A missed call means "收到" (targeting.ReplyCommand)."""

    action: Action = Action.ACKNOWLEDGE
    code: str | None = None
    outcome: Outcome | None = None


# Call outcomes after which nobody pressed a key: the call is placed again while the incident is unanswered.
_UNANSWERED = frozenset({CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.FAILED,
                         CallStatus.CANCELED})  # fmt: skip
_KEYS = {"1": Action.ACKNOWLEDGE, "2": Action.ON_SCENE}


@dataclass(slots=True)
class Desk:
    roster: Roster
    texts: Texts
    commands: Commands
    profiles: Mapping[str, DeviceProfile] = field(default_factory=dict)
    join_window_s: float = 600.0
    upkeep: Upkeep = field(default_factory=Upkeep)
    active: dict[int, Incident] = field(default_factory=dict)
    next_id: int = 1
    _by_household: dict[str, set[int]] = field(default_factory=dict)  # household -> its active alarms
    _deadlines: list[tuple[float, int]] = field(default_factory=list)  # heap (next_step_at, id), lazily pruned
    _rosters: dict[int, Roster] = field(default_factory=dict)  # incidents escalating with a pre-reload roster
    awaiting: dict[int, Incident] = field(default_factory=dict)  # resolved alarms asked for their 评单
    storm: Storm = field(default_factory=Storm)
    # Scheduled drills: when each is next due (None: not computed since the roster changed). A drill missed
    # while alertd was down is not caught up: a drill at the wrong hour only confuses people.
    _drills_due: dict[str, float] | None = None
    # 平安键: each watched household's last sign of life, pause, and the local day its check-in was judged
    # (kept in the store's meta as sign:/pause:/judged:<household>), and when the next check-in falls due.
    _signs: dict[str, float] = field(default_factory=dict)
    _paused: dict[str, float] = field(default_factory=dict)
    _judged: dict[str, str] = field(default_factory=dict)
    _check_in_due: float | None = None  # None: computed at the next tick

    # --- state ---------------------------------------------------------------------------------------

    def resume(
        self,
        incidents: Iterable[Incident],
        devices: Mapping[str, Reported],
        next_id: int,
        now: float,
        awaiting: Iterable[Incident] = (),
        check_ins: CheckIns | None = None,
    ) -> None:
        self.next_id = next_id
        self.awaiting = {i.id: i for i in awaiting}
        if check_ins is not None:
            self._signs, self._paused, self._judged = (
                dict(check_ins.signs),
                dict(check_ins.paused),
                dict(check_ins.judged),
            )
        for incident in incidents:
            self._track(incident)
        self.upkeep.resume(devices, self.active.values(), now)

    def next_wakeup(self) -> float:
        """The next escalation step, review, digest or drill, whichever comes first."""
        # Not computed yet: the next tick does (the supervision review ticks at least every interval_s).
        drills = min(self._drills_due.values(), default=math.inf) if self._drills_due is not None else math.inf
        check_in = self._check_in_due if self._check_in_due is not None else math.inf
        storm = self.storm.next_wakeup() or math.inf
        return min(self._next_deadline() or math.inf, self.upkeep.next_due, drills, check_in, storm)

    def replace_roster(self, roster: Roster, commands: Commands, profiles: Mapping[str, DeviceProfile]) -> None:
        """SIGHUP: new roster for new inputs. An open incident the new roster cannot escalate as before (its
        household removed or moved, its policy gone) keeps the roster it had, so the deputy and the duty
        room are still told; every such case is logged."""
        affected = {change.incident_id: change for change in reload.changes(self.active.values(), roster)}
        for incident_id, change in affected.items():
            _LOGGER.warning(
                "Roster reload: incident %d: %s; it keeps escalating to the people it had", incident_id, change.what
            )
            self._rosters.setdefault(incident_id, self.roster)
        for incident_id in [i for i in self._rosters if i not in affected]:
            del self._rosters[incident_id]  # the new roster serves it again (e.g. the household is back)
        self.roster, self.commands, self.profiles = roster, commands, profiles
        self._drills_due = None  # computed at the next tick, from then on
        self._check_in_due = None

    # --- decisions -----------------------------------------------------------------------------------

    def decide(self, item: Input, now: float, seen: Seen, batch: Batch) -> Result:
        match item:
            case Alarm():
                return self._on_alarm(item, now, seen, batch)
            case Restore(device_id=device_id, detail=detail):
                return self._on_restore(device_id, detail, now, batch)
            case Supervision():
                return self._on_device(news_update(item, now), batch, item)
            case TerminalAck(device_id=device_id, incident_id=incident_id):
                return self._on_button(device_id, incident_id, now, batch)
            case Coming(device_id=device_id, incident_id=incident_id):
                return self._on_coming(device_id, incident_id, now, batch)
            case CheckIn(device_id=device_id):
                return self._on_check_in(device_id, now, batch)
            case Drill():
                return self._on_drill(item, now, batch)
            case CheckInPause():
                return self._on_pause(item, now, batch)
            case Reply():
                raise TypeError("a Reply is decided by decide_reply(), with its parsed command")
            case OperatorCommand():
                return self._on_operator(item, now, batch)
            case Evaluation():
                incident = self.awaiting.get(item.incident_id) or seen.closed.get(item.incident_id)
                if incident is None:
                    return Result(Verdict.REFUSED, item.incident_id, "no such resolved incident")
                return self._evaluate(incident, item.satisfaction, item.by, item.via, now, batch)
            case Heartbeat(device_id=device_id, battery=battery):
                return self._on_device(DeviceUpdate(device_id, now, online=True, battery=battery), batch)
            case TestReport(device_id=device_id):
                return self._on_device(DeviceUpdate(device_id, now, online=True, test=True), batch)
            case DeviceStatus(device_id=device_id, online=online, source=source):
                if source == "zigbee2mqtt" and device_id not in self.roster.devices:
                    return Result(Verdict.NOT_WATCHED)  # a lamp or a plug on the same coordinator
                return self._on_device(DeviceUpdate(device_id, now, online=online), batch)
            case DeliveryReport():
                batch.deliveries.append(item)
                return OK
            case CallReport():
                return self._on_call_report(item, now, seen, batch)
            case MissedCall():
                return self._on_missed_call(item, now, seen, batch)
            case SensorState():
                raise TypeError("a SensorState is interpreted by its codec first; decide its events")
            case Tick():
                return OK

    def _on_alarm(self, alarm: Alarm, now: float, seen: Seen, batch: Batch) -> Result:
        household = self.roster.household_of_device(alarm.device_id)
        if household is None:
            return Result(Verdict.UNKNOWN_DEVICE)
        if alarm.seq is not None:
            key = (alarm.device_id, alarm.seq)
            if key in seen.alarms or key in batch.seen:
                _LOGGER.info("Duplicate alarm %s seq %d ignored", alarm.device_id, alarm.seq)
                return Result(Verdict.DUPLICATE)
            batch.seen.append(key)
        current = self._newest_active(household.id, drill=False)  # a real alarm never joins a drill
        if current is not None and now - current.last_alarm_at <= self.join_window_s:
            incident, effects = join_alarm(current, alarm.kind, now, alarm.source, household.label)
            self._apply(incident, effects, batch)
            return Result(Verdict.JOINED, incident.id)
        incident, effects = open_incident(
            self.next_id, household, alarm.kind, self.roster, now, alarm.source, alarm.silent
        )
        self.next_id += 1
        self.storm.opened(now, incident.id)
        _LOGGER.info("Incident %d opened: %s at %s (%s)", incident.id, alarm.kind, household.id, alarm.device_id)
        self._apply(incident, effects, batch)
        self._fire(incident.id, now, batch)
        return Result(Verdict.OPENED, incident.id)

    def _newest_active(self, household_id: str, drill: bool | None = None) -> Incident | None:
        """The household's newest open alarm (None for drill: drills or not alike)."""
        ids = [i for i in self._by_household.get(household_id, ()) if drill is None or self.active[i].drill == drill]
        return self.active[max(ids)] if ids else None

    def _on_drill(self, drill: Drill, now: float, batch: Batch) -> Result:
        """演练: a real alarm in every way, opened on purpose; never joined with anything."""
        household = self.roster.households.get(drill.household_id)
        if household is None:
            return Result(Verdict.REFUSED, detail=f"no household {drill.household_id}")
        incident, effects = open_incident(
            self.next_id, household, drill.kind, self.roster, now, f"drill by {drill.by} ({drill.via})", drill=True
        )
        self.next_id += 1
        self.storm.opened(now, incident.id)
        _LOGGER.info("Drill %d opened: %s at %s by %s", incident.id, drill.kind, household.id, drill.by)
        self._apply(incident, effects, batch)
        self._fire(incident.id, now, batch)
        return Result(Verdict.OPENED, incident.id)

    # --- 平安键: daily check-ins of people living alone ------------------------------------------------

    def _on_check_in(self, device_id: str, now: float, batch: Batch) -> Result:
        """A sign of life (the 平安键, or activity a device's profile counts): today is fine, and a welfare
        incident open for the household closes."""
        household = self.roster.household_of_device(device_id)
        if household is None:
            return Result(Verdict.UNKNOWN_DEVICE)
        self._signs[household.id] = now
        batch.meta[f"{SIGN_KEY}{household.id}"] = repr(now)
        batch.devices.append(DeviceUpdate(device_id, now, online=True))
        result = OK
        for incident in [i for i in self.active.values() if i.welfare and i.household_id == household.id]:
            result = self._act(incident, Action.RESOLVE, f"{household.label}: checked in", Via.SYSTEM, now, batch)
        return result

    def _on_pause(self, pause: CheckInPause, now: float, batch: Batch) -> Result:
        household = self.roster.households.get(pause.household_id)
        if household is None:
            return Result(Verdict.REFUSED, detail=f"no household {pause.household_id}")
        if household.check_in is None:
            return Result(Verdict.REFUSED, detail=f"household {pause.household_id} has no daily check-in")
        if pause.until is None:
            self._paused.pop(household.id, None)
        else:
            self._paused[household.id] = pause.until
        batch.meta[f"{PAUSE_KEY}{household.id}"] = "" if pause.until is None else repr(pause.until)
        _LOGGER.info("Check-in of %s %s by %s", household.id, "resumed" if pause.until is None else "paused", pause.by)
        return OK

    def _check_ins(self, now: float, batch: Batch) -> None:
        """Each watched household whose check-in time passed today is judged once: no sign of life since
        local midnight, not paused, opens a welfare incident for its leader and grid worker."""
        zone = self.texts.time_zone
        local = dt.datetime.fromtimestamp(now, dt.UTC).astimezone(zone)
        today = local.date()
        midnight = dt.datetime.combine(today, dt.time(0), zone).timestamp()
        upcoming = math.inf
        for household in self.roster.households.values():
            if household.check_in is None:
                continue
            if household.id not in self._signs:
                # Watched from now on: a household added (or alertd installed) after today's time is not
                # reported for a day it was not watched.
                self._signs[household.id] = now
                batch.meta[f"{SIGN_KEY}{household.id}"] = repr(now)
            hour, minute = divmod(household.check_in, 60)
            due = dt.datetime.combine(today, dt.time(hour, minute), zone).timestamp()
            if self._judged.get(household.id) == today.isoformat() or now < due:
                tomorrow = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(hour, minute), zone)
                upcoming = min(upcoming, due if now < due else tomorrow.timestamp())
                continue
            self._judged[household.id] = today.isoformat()
            batch.meta[f"{JUDGED_KEY}{household.id}"] = today.isoformat()
            tomorrow = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(hour, minute), zone)
            upcoming = min(upcoming, tomorrow.timestamp())
            quiet = self._signs[household.id] < midnight and self._paused.get(household.id, -math.inf) <= due
            if quiet and not any(i.welfare and i.household_id == household.id for i in self.active.values()):
                incident, effects = open_welfare(
                    self.next_id, household, self.roster, self.texts, f"{hour:02d}:{minute:02d}", now
                )
                self.next_id += 1
                _LOGGER.warning("Welfare incident %d: no check-in from %s by %02d:%02d", incident.id, household.id,
                                hour, minute)  # fmt: skip
                self._apply(incident, effects, batch)
        self._check_in_due = upcoming

    def _on_restore(self, device_id: str, detail: str, now: float, batch: Batch) -> Result:
        household = self.roster.household_of_device(device_id)
        if household is None:
            return Result(Verdict.UNKNOWN_DEVICE)
        incident = self._newest_active(household.id)
        if incident is None:
            _LOGGER.info("Restore from %s with no open incident: %s", device_id, detail)
            return Result(Verdict.NO_INCIDENT)
        batch.timeline.append(TimelineEntry(incident.id, now, "restore", household.label, detail))
        return Result(Verdict.RESTORE, incident.id)

    def _on_device(self, update: DeviceUpdate, batch: Batch, news: Supervision | None = None) -> Result:
        if update.device_id not in self.roster.devices:
            return Result(Verdict.UNKNOWN_DEVICE)
        if news is not None:
            # Conditions are recorded with the device; the next review opens or closes the maintenance
            # incident (after the grace period where one applies).
            level = logging.INFO if news.restore or news.event in _ROUTINE_NEWS else logging.WARNING
            armed = "" if news.armed is None else f" {news.armed}" + (f" by user {news.user}" if news.user else "")
            detail = f" ({news.detail})" if news.detail else ""
            restored = " restored" if news.restore else ""
            _LOGGER.log(level, "Device %s: %s%s%s%s", news.device_id, news.event, restored, armed, detail)
        batch.devices.append(update)
        return OK

    def _on_button(self, device_id: str, incident_id: int | None, now: float, batch: Batch) -> Result:
        household = self.roster.household_of_device(device_id)
        if household is None:
            return Result(Verdict.UNKNOWN_DEVICE)
        target = targeting.for_button(self.active.values(), household.group_id, device_id, incident_id)
        if target is None:
            _LOGGER.info("Acknowledge button on %s: no open incident to acknowledge", device_id)
            return Result(Verdict.NO_INCIDENT)
        return self._act(target, Action.ACKNOWLEDGE, household.label, Via.TERMINAL, now, batch, by=household.people)

    def decide_reply(
        self, reply: Reply, command: ReplyCommand | Rating | None, now: float, seen: Seen, batch: Batch
    ) -> Result:
        """An SMS reply, with the command the reply grammar read in it (None: not a command)."""
        if reply.message_id is not None:
            # Twilio's signature has no timestamp: a captured request stays valid forever. Each message is
            # handled once, recorded in the same transaction as what it did.
            if reply.message_id in seen.inbound or reply.message_id in batch.inbound:
                return Result(Verdict.REPLAY)
            batch.inbound.append(reply.message_id)
        person = self.roster.person_by_phone(reply.phone)
        if person is None:
            return Result(Verdict.UNKNOWN_SENDER)
        if command is None:
            return Result(Verdict.NOT_A_COMMAND)
        if isinstance(command, Rating):
            return self._on_rating(person.id, person.name, command, now, batch)
        # Only incidents already open when the provider received the message: a reply to an old alarm,
        # read late from the SIM, must not acknowledge one that opened since.
        received = now if reply.received_at is None else min(now, reply.received_at + REPLY_CLOCK_SKEW_S)
        groups = targeting.groups_of(self.roster, person.id)
        target = targeting.for_reply(self.active.values(), groups, command, received)
        if target is None:
            return Result(Verdict.NO_INCIDENT)
        result = self._act(target, command.action, person.name, Via.SMS, now, batch, command.outcome, by=(person.id,))
        if command.action == Action.ON_SCENE:  # "2" (到): one more coming, whoever acknowledged first
            self._person_coming(target.id, person.id, now, batch)
        return result

    def _on_call_report(self, report: CallReport, now: float, seen: Seen, batch: Batch) -> Result:
        """A call's outcome: a key acts for the person called; no key (busy, no answer, a machine, hung up)
        places the call again while the incident is unanswered, as often as its policy says. Escalation
        goes on regardless. Every outcome is in the timeline."""
        handled = report_key(report)
        if handled in seen.inbound or handled in batch.inbound:
            return Result(Verdict.REPLAY)
        placed = seen.calls.get(report.notification_id)
        if placed is None or placed.incident_id is None:
            return Result(Verdict.REFUSED, detail=f"no call {report.notification_id}")
        batch.inbound.append(handled)
        person = self.roster.people.get(placed.recipient)
        name = person.name if person is not None else placed.recipient
        incident = self.active.get(placed.incident_id)
        outcome = "answering machine" if report.machine else report.status.value
        if report.provider_id is not None:
            key = report.digits if report.digits in _KEYS and not report.machine else None
            batch.deliveries.append(DeliveryReport(report.provider_id, f"key {key}" if key else outcome))
        if report.digits in _KEYS and not report.machine:
            batch.timeline.append(TimelineEntry(placed.incident_id, now, "call", name, f"pressed {report.digits}"))
            if incident is None:
                return Result(Verdict.NOT_OPEN, placed.incident_id)
            result = self._act(incident, _KEYS[report.digits], name, Via.VOICE, now, batch, by=(placed.recipient,))
            if report.digits == "2":
                self._person_coming(incident.id, placed.recipient, now, batch)
            return result
        detail = outcome
        if report.status not in _UNANSWERED and not report.machine:
            # Answered: Twilio's keys are still to come; the modem's ring did its job (a person woke up).
            batch.timeline.append(TimelineEntry(placed.incident_id, now, "call", name, detail))
            return OK
        if incident is not None and incident.state == State.OPEN and person is not None:
            policy = self._policy(incident)
            if placed.placed <= policy.call_retries:
                at = now + policy.call_retry_s
                batch.notifications.append(
                    call_to(person, placed.spoken, incident.id, placed.step, attempt=placed.placed, at=at)
                )
                detail += (
                    f"; called again in {policy.call_retry_s:g} s ({placed.placed + 1} of {policy.call_retries + 1})"
                )
        batch.timeline.append(TimelineEntry(placed.incident_id, now, "call", name, detail))
        return OK

    def _on_missed_call(self, call: MissedCall, now: float, seen: Seen, batch: Batch) -> Result:
        """A registered phone rang the village modem: "收到" for the newest alarm that person answers for,
        confirmed by a text. Costs the caller nothing (the modem rejects the call unanswered)."""
        if (handled := handled_key(call)) is not None:
            if handled in seen.inbound or handled in batch.inbound:
                return Result(Verdict.REPLAY)
            batch.inbound.append(handled)
        person = self.roster.person_by_phone(call.phone)
        if person is None:
            return Result(Verdict.UNKNOWN_SENDER)
        received = now if call.received_at is None else min(now, call.received_at + REPLY_CLOCK_SKEW_S)
        groups = targeting.groups_of(self.roster, person.id)
        target = targeting.for_reply(self.active.values(), groups, _Acknowledge(), received)
        if target is None or not target.is_alarm:
            return Result(Verdict.NO_INCIDENT)
        result = self._act(target, Action.ACKNOWLEDGE, person.name, Via.MISSED_CALL, now, batch, by=(person.id,))
        if result.accepted or target.state != State.OPEN:
            # Acknowledged, now or by someone before: either way the caller learns it counted.
            text = self.texts.confirm(target, person.language)
            batch.notifications.append(text_to(person, text, target.id, CONFIRM_STEP, Purpose.NOTICE))
        return result

    def _policy(self, incident: Incident) -> Policy:
        roster = self._rosters.get(incident.id, self.roster)
        return roster.policies.get(incident.policy) or roster.policy_for(incident.kind)

    def _on_operator(self, command: OperatorCommand, now: float, batch: Batch) -> Result:
        incident = self.active.get(command.incident_id)
        if incident is None:
            return Result(Verdict.NOT_OPEN, command.incident_id)
        result = self._act(incident, command.action, command.by, command.via, now, batch, command.outcome)
        if command.note and result.accepted:
            batch.timeline.append(
                TimelineEntry(incident.id, now, "note", f"{command.by} ({command.via})", command.note)
            )
        return result

    def _on_rating(self, person_id: str, name: str, rating: Rating, now: float, batch: Batch) -> Result:
        """A household member answers the follow-up text: the newest of their households' resolved alarms
        still waiting for it (or the one whose code they give)."""
        homes = {h.id for h in self.roster.households.values() if person_id in h.people}
        waiting = [i for i in self.awaiting.values() if i.household_id in homes]
        if rating.code is not None:
            waiting = [i for i in waiting if i.code == rating.code]
        incident = max(waiting, key=lambda i: i.id, default=None)
        if incident is None:
            return Result(Verdict.NO_INCIDENT)
        return self._evaluate(incident, rating.satisfaction, name, Via.SMS, now, batch)

    def _evaluate(
        self, incident: Incident, satisfaction: Satisfaction, actor: str, via: Via, now: float, batch: Batch
    ) -> Result:
        if incident.state != State.RESOLVED:
            return Result(Verdict.REFUSED, incident.id, f"incident {incident.id} is {incident.state}, not resolved")
        if incident.satisfaction is not None:
            return Result(Verdict.REFUSED, incident.id, f"incident {incident.id} is evaluated already")
        updated = replace(incident, satisfaction=satisfaction, evaluated_by=f"{actor} ({via})")
        batch.incidents[incident.id] = updated
        batch.timeline.append(
            TimelineEntry(incident.id, now, "evaluated", f"{actor} ({via})", SATISFACTION_ZH[satisfaction])
        )
        self.awaiting.pop(incident.id, None)
        household = self.roster.households.get(incident.household_id)
        if satisfaction == Satisfaction.DISSATISFIED and household is not None:
            # 不满意 is followed up by a person: the grid worker calls the household back.
            for person in self.roster.people_for(incident.group_id, Role.GRID_WORKER):
                text = self.texts.dissatisfied(incident, household, person.language)
                batch.notifications.append(text_to(person, text, incident.id, FOLLOW_UP_STEP, Purpose.NOTICE))
        _LOGGER.info("Incident %d evaluated %s by %s via %s", incident.id, satisfaction, actor, via)
        return Result(Verdict.EVALUATED, incident.id, satisfaction.value)

    def _follow_up(self, incident: Incident, now: float, batch: Batch) -> None:
        """评单: a resolved real alarm's household is asked how the response went. Not after a silent alarm
        (whoever forced the silent panic may read the household's phone), a drill or a false alarm."""
        household = self.roster.households.get(incident.household_id)
        if household is None or incident.silent or not incident.is_alarm:
            return
        if incident.outcome != Outcome.REAL:
            return
        self.awaiting[incident.id] = incident
        for person_id in household.people:
            person = self.roster.people.get(person_id)
            if person is not None:
                text = self.texts.follow_up(incident, household, person.language)
                batch.notifications.append(text_to(person, text, incident.id, FOLLOW_UP_STEP, Purpose.NOTICE))

    def _act(
        self,
        incident: Incident,
        action: Action,
        actor: str,
        via: Via,
        now: float,
        batch: Batch,
        outcome: Outcome | None = None,
        *,
        by: Iterable[str] = (),  # the people who acted (not told that they did)
    ) -> Result:
        try:
            updated, effects = apply_action(incident, action, actor, via, now, outcome, commands=self.commands)
        except TransitionError as err:
            return Result(Verdict.REFUSED, incident.id, str(err))
        _LOGGER.info("Incident %d %s by %s via %s", incident.id, updated.state, actor, via)
        first_ack = incident.acknowledged_at is None and updated.acknowledged_at is not None
        self._apply(updated, effects, batch)
        if first_ack and incident.is_alarm:
            self._tell_acknowledged(incident, actor, frozenset(by), now, batch)
        if updated.state == State.RESOLVED:
            self._follow_up(updated, now, batch)
        took = updated.acknowledged_at - updated.opened_at if first_ack and updated.acknowledged_at else None
        return Result(Verdict.ACTED, incident.id, updated.state.value, took)

    def _tell_acknowledged(
        self, incident: Incident, actor: str, acted: frozenset[str], now: float, batch: Batch
    ) -> None:
        """Everyone texted about it so far hears who acknowledged it (one short text each, per policy)."""
        roster = self._rosters.get(incident.id, self.roster)
        policy = self._policy(incident)
        if not policy.ack_notice or incident.group_id not in roster.groups:
            return
        fired = policy.steps if incident.next_step is None else policy.steps[: incident.next_step]
        told: dict[str, Person] = {}
        for step in fired:
            for role in (*step.sms, *step.call):
                if incident.silent and role not in SILENT_ROLES:
                    continue
                for person in roster.people_for(incident.group_id, role):
                    if person.id not in acted and person.name != actor:  # who acknowledged knows it
                        told.setdefault(person.id, person)
        for person in told.values():
            text = self.texts.acknowledged(incident, actor, person.language)
            batch.notifications.append(text_to(person, text, incident.id, ACK_NOTICE_STEP, Purpose.NOTICE))

    def _on_coming(self, device_id: str, incident_id: int | None, now: float, batch: Batch) -> Result:
        """A neighbour's "I'm coming": that household counts toward the quorum, and a ringing alarm is
        acknowledged by it (its terminals stop)."""
        household = self.roster.household_of_device(device_id)
        if household is None:
            return Result(Verdict.UNKNOWN_DEVICE)
        target = targeting.for_coming(self.active.values(), household.group_id, device_id, incident_id)
        if target is None or target.household_id == household.id:
            return Result(Verdict.NO_INCIDENT)  # nothing of its group's, or the caller's own alarm
        result = OK
        if target.state == State.OPEN:
            result = self._act(
                target, Action.ACKNOWLEDGE, household.label, Via.TERMINAL, now, batch, by=household.people
            )
        self._coming(target.id, household.id, household.label, now, batch)
        coming = self.active.get(target.id, target)
        if result.verdict == Verdict.ACTED:
            return result
        return Result(Verdict.RESPONDING, target.id, f"{len(coming.responders)} coming")

    def _person_coming(self, incident_id: int, person_id: str, now: float, batch: Batch) -> None:
        """A person who said "到": their household in the alarm's group counts; someone from outside it
        (a patrol member) counts as themselves."""
        incident = self.active.get(incident_id)
        person = self.roster.people.get(person_id)
        if incident is None or person is None:
            return
        home = next(
            (h for h in self.roster.households.values() if person_id in h.people and h.group_id == incident.group_id),
            None,
        )
        if home is not None:
            self._coming(incident_id, home.id, home.label, now, batch)
        else:
            self._coming(incident_id, person.id, person.name, now, batch)

    def _coming(self, incident_id: int, who: str, label: str, now: float, batch: Batch) -> None:
        incident = self.active.get(incident_id)
        if incident is None:
            return
        roster = self._rosters.get(incident_id, self.roster)
        updated, effects = responding(incident, who, label, roster, self.texts, now)
        if updated is not incident:
            self._apply(updated, effects, batch)

    def screen(self, now: float, batch: Batch) -> None:
        """Last, over everything the batch decided: in a storm, alert texts are merged into summaries. Every
        batch, texts or not: a summary window that ended is closed here (next_wakeup must not stay behind)."""

        def group_of(incident_id: int) -> str | None:
            incident = batch.incidents.get(incident_id) or self.active.get(incident_id)
            return incident.group_id if incident is not None else None

        batch.notifications = self.storm.screen(batch.notifications, group_of, self.roster, self.texts, now)

    # --- time passing --------------------------------------------------------------------------------

    def tick(self, now: float, batch: Batch) -> None:
        """Escalation steps that are due, the supervision review and the daily digest when their time came."""
        for incident_id in [i.id for i in self.awaiting.values() if (i.resolved_at or 0) < now - EVALUATION_WINDOW_S]:
            del self.awaiting[incident_id]  # unanswered: the console can still record a rating for it
        while (deadline := self._next_deadline()) is not None and deadline <= now:
            _, incident_id = heapq.heappop(self._deadlines)
            self._fire(incident_id, now, batch)
        if (review := self.upkeep.review_due(now, self.roster, self.profiles)) is not None:
            self._review(review.to_open, review.to_close, now, batch)
        self._scheduled_drills(now, batch)
        if self._check_in_due is None or now >= self._check_in_due:
            self._check_ins(now, batch)
        if (day := self.upkeep.digest_due(now)) is not None:
            planned = plan(day.day, self.roster, self.profiles, self.upkeep.reported, self.texts, now)
            batch.notifications.extend(planned)
            batch.meta[LAST_DAY_KEY] = day.day
            _LOGGER.info("Daily readiness digest for %s planned to %d group leaders", day.day, len(planned))

    def _scheduled_drills(self, now: float, batch: Batch) -> None:
        zone = self.texts.time_zone
        if self._drills_due is None:
            self._drills_due = {d.id: d.schedule.next_after(now, zone) for d in self.roster.drills.values()}
            return
        for drill_id, due in list(self._drills_due.items()):
            if due > now:
                continue
            drill = self.roster.drills[drill_id]
            self._on_drill(Drill(drill.household_id, drill.kind, f"schedule {drill_id}", Via.SYSTEM), now, batch)
            self._drills_due[drill_id] = drill.schedule.next_after(now, zone)

    def _review(self, to_open: Iterable[tuple[str, Condition]], to_close: Iterable[int], now: float, b: Batch) -> None:
        for device_id, condition in to_open:
            device = self.roster.devices[device_id]
            household = self.roster.households[device.household_id]
            profile = self.profiles.get(device.profile)
            kind = profile.alarms[0].kind if profile is not None and profile.alarms else Kind.PANIC
            incident, effects = open_maintenance(
                self.next_id, device, household, condition, kind, self.roster, self.texts, now
            )
            self.next_id += 1
            _LOGGER.warning("Maintenance incident %d: device %s %s", incident.id, device_id, condition)
            self.upkeep.maintenance[(device_id, condition)] = incident.id
            self._apply(incident, effects, b)
        for incident_id in to_close:
            case = self.active.get(incident_id)
            if case is not None:  # None: someone resolved it by hand already
                _LOGGER.info("Maintenance incident %d closed: device %s healthy again", case.id, case.device_id)
                self._act(case, Action.RESOLVE, "alertd: device healthy again", Via.SYSTEM, now, b)

    def tell_duty_about_disk(self, full: bool, now: float, batch: Batch) -> None:
        """The server itself needs a person: the township duty room is told (once per event)."""
        scope = f"system:disk_{'full' if full else 'ok'}:{int(now)}"
        for person_id in self.roster.duty:
            person = self.roster.people.get(person_id)
            if person is not None:
                text = self.texts.disk(full, now, person.language)
                batch.notifications.append(text_to(person, text, None, 0, Purpose.NOTICE, scope=scope))

    # --- bookkeeping ---------------------------------------------------------------------------------

    def _apply(self, incident: Incident, effects: Effects, batch: Batch) -> None:
        batch.incidents[incident.id] = incident
        batch.timeline.extend(effects.timeline)
        batch.notifications.extend(effects.notifications)
        if incident.active:
            self._track(incident)
        else:
            self.active.pop(incident.id, None)
            self._rosters.pop(incident.id, None)
            self._by_household.get(incident.household_id, set()).discard(incident.id)

    def _track(self, incident: Incident) -> None:
        self.active[incident.id] = incident
        if incident.is_alarm:  # alarms join alarms, never a maintenance or welfare incident
            self._by_household.setdefault(incident.household_id, set()).add(incident.id)
        if incident.next_step_at is not None:
            heapq.heappush(self._deadlines, (incident.next_step_at, incident.id))

    def _next_deadline(self) -> float | None:
        while self._deadlines:
            at, incident_id = self._deadlines[0]
            incident = self.active.get(incident_id)
            if incident is not None and incident.next_step_at == at and escalating(incident):
                return at
            heapq.heappop(self._deadlines)  # stale: acknowledged, closed or rescheduled
        return None

    def _fire(self, incident_id: int, now: float, batch: Batch) -> None:
        incident = self.active[incident_id]
        roster = self._rosters.get(incident_id, self.roster)
        updated, effects = fire_due_steps(incident, roster, self.texts, now, self.commands)
        if updated != incident or effects.notifications:
            self._apply(updated, effects, batch)
        elif updated.next_step_at is not None and updated.next_step_at <= now:
            # The household was already gone from the roster when alertd started: nobody left to compute
            # recipients from. Stop escalating rather than spin, loudly (a reload keeps the old roster instead).
            _LOGGER.error(
                "Incident %d: household %s is not in the roster; escalation stopped", incident_id, incident.household_id
            )
            self._apply(replace(updated, next_step=None, next_step_at=None), Effects(), batch)


def _follow_up_text(incident: Incident, person_id: str, phone: str, body: str) -> Notification:
    return Notification(incident.id, FOLLOW_UP_STEP, Channel.SMS, Purpose.NOTICE, person_id, phone, body)
