"""The single writer: inputs in, incident state and outbox rows committed, then acknowledged and dispatched."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import heapq
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from alertd.commands import CommandBook
from alertd.core import digest, reload
from alertd.core.events import (
    Action,
    Alarm,
    DeliveryReport,
    DeviceStatus,
    Heartbeat,
    Input,
    OperatorCommand,
    Reply,
    Restore,
    SensorState,
    Supervision,
    TerminalAck,
    TestReport,
    Tick,
    Via,
)
from alertd.core.incidents import (
    ACTION_TARGET as _TARGET,
)
from alertd.core.incidents import (
    STATE_ORDER as _ORDER,
)
from alertd.core.incidents import (
    Channel,
    Effects,
    Incident,
    Notification,
    Outcome,
    Purpose,
    State,
    TimelineEntry,
    TransitionError,
    apply_action,
    fire_due_steps,
    join_alarm,
    open_incident,
    open_maintenance,
)
from alertd.core.messages import Texts
from alertd.core.model import Kind, Role, Roster
from alertd.core.profile import DeviceProfile, Transport
from alertd.core.supervision import Condition, Reported, assess, review
from alertd.errors import StoreFull
from alertd.failpoints import AFTER_COMMIT, Failpoints
from alertd.metrics import Metrics
from alertd.phones import mask
from alertd.protocols import zigbee2mqtt
from alertd.protocols.replies import parse_reply
from alertd.ratelog import RateLimitedLog
from alertd.reserve import Reserve
from alertd.store import Batch, DeviceUpdate, Store

_LOGGER = logging.getLogger(__name__)

# Inputs committed together: one fsync for a burst instead of one per alarm.
MAX_BATCH = 256
# The store's record of its first start: a digest is never caught up for a time before it.
IN_USE_SINCE_KEY = "first_started_at"
# Tolerance between the SMSC's timestamp on a modem reply and our clock when matching it to incidents.
REPLY_CLOCK_SKEW_S = 300.0
# A commit that failed (disk full) is retried with backoff between these bounds.
COMMIT_RETRY_MIN_S = 0.5
COMMIT_RETRY_MAX_S = 30.0
# How often old deduplication entries are forgotten.
PRUNE_INTERVAL_S = 3600.0
# Supervision news logged at INFO: a panel's everyday traffic, not something a person must look at.
_ROUTINE_NEWS = frozenset({"test", "open_close", "other"})


@dataclass(slots=True)
class Envelope:
    input: Input
    done: Callable[[str], None] | None = None  # called once the input's effects are committed


class Engine:
    def __init__(
        self,
        store: Store,
        roster: Roster,
        texts: Texts,
        metrics: Metrics,
        *,
        join_window_s: float = 600.0,
        dedup_window_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
        failpoints: Failpoints | None = None,
        on_commit: Callable[[], None] = lambda: None,
        commands: CommandBook | None = None,
        grace_s: float = 600.0,
        supervision_interval_s: float = 60.0,
        digest_at: dt.time | None = None,
        digest_catch_up_s: float = 7200.0,
        reserve: Reserve | None = None,
    ) -> None:
        self.store = store
        self.roster = roster
        self.commands = replace(commands or CommandBook(), devices=roster.devices)
        self.texts = texts
        self.metrics = metrics
        self.join_window_s = join_window_s
        self.dedup_window_s = dedup_window_s
        self.clock = clock
        self.failpoints = failpoints or Failpoints()
        self.on_commit = on_commit
        self.queue: asyncio.Queue[Envelope] = asyncio.Queue()
        self.active: dict[int, Incident] = {}
        self._by_household: dict[str, set[int]] = {}  # household id -> its active incidents
        self._sensor_states: dict[str, zigbee2mqtt.DeviceState] = {}  # last state of each Zigbee sensor
        self.grace_s = grace_s
        self.supervision_interval_s = supervision_interval_s
        self._reported: dict[str, Reported] = {}  # what each device last told us
        self._maintenance: dict[tuple[str, Condition], int] = {}  # open maintenance incidents
        self._pending: dict[tuple[str, Condition], float] = {}  # conditions in their grace period
        self._next_review = 0.0
        self.digest_at = digest_at  # local time of the daily readiness digest; None: no digest
        self.digest_catch_up_s = digest_catch_up_s
        self._next_digest: digest.Occurrence | None = None
        self.reserve = reserve  # disk space given up when the disk fills (alertd.reserve)
        self._reserve_released = False
        self._commit_failure: str | None = None
        self._rosters: dict[int, Roster] = {}  # open incidents escalating with a roster from before a reload
        self._deadlines: list[tuple[float, int]] = []  # heap of (next_step_at, incident id), lazily pruned
        self._next_id = 1
        self._loaded = False
        self._last_prune = 0.0
        self._log = RateLimitedLog(_LOGGER)  # one line per kind of bad input and device, not per message

    # --- the API for ingress, web and cli ----------------------------------------------------------

    def submit(self, item: Input, done: Callable[[str], None] | None = None) -> None:
        self.queue.put_nowait(Envelope(item, done))

    async def call(self, item: Input) -> str:
        """Submit and wait until the input's effects are committed; returns the outcome in words."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def done(result: str) -> None:
            if not future.done():
                future.set_result(result)

        self.submit(item, done)
        return await future

    def replace_roster(self, roster: Roster, profiles: Mapping[str, DeviceProfile] | None = None) -> None:
        """SIGHUP: new roster (and device profiles) for new inputs. An open incident the new roster cannot
        escalate as before (its household removed or moved, its policy gone) keeps the roster it had, so
        the deputy and the duty room are still told; every such case is logged."""
        affected = {change.incident_id: change for change in reload.changes(self.active.values(), roster)}
        for incident_id, change in affected.items():
            _LOGGER.warning(
                "Roster reload: incident %d: %s; it keeps escalating to the people it had", incident_id, change.what
            )
            self._rosters.setdefault(incident_id, self.roster)
        for incident_id in [i for i in self._rosters if i not in affected]:
            del self._rosters[incident_id]  # the new roster serves it again (e.g. the household is back)
        self.roster = roster
        self.commands = replace(
            self.commands, devices=roster.devices, profiles=self.commands.profiles if profiles is None else profiles
        )

    # --- the loop -----------------------------------------------------------------------------------

    async def load(self) -> None:
        self._next_id = await self.store.max_incident_id() + 1
        for record in (await self.store.devices()).values():
            self._reported[record.id] = record.reported()
            if record.state is not None:
                self._sensor_states[record.id] = zigbee2mqtt.DeviceState.from_json(record.state)
        for incident in await self.store.load_active_incidents():
            self._track(incident)
        for incident in self.active.values():
            if incident.device_id is not None and incident.maintenance is not None:
                self._maintenance[(incident.device_id, Condition(incident.maintenance))] = incident.id
        # Devices get a full interval to report in before the first review judges them.
        self._next_review = self.clock() + self.supervision_interval_s
        now = self.clock()
        in_use_since = await self.store.meta(IN_USE_SINCE_KEY)
        if in_use_since is None:
            _LOGGER.info("First start with store %s", self.store.path)
            await self.store.set_meta(IN_USE_SINCE_KEY, repr(now))
        if self.digest_at is not None:
            self._next_digest = digest.first_due(
                now,
                self.digest_at,
                self.texts.time_zone,
                in_use_since=None if in_use_since is None else float(in_use_since),
                last_day=await self.store.meta(digest.LAST_DAY_KEY),
                catch_up_s=self.digest_catch_up_s,
            )
        self._loaded = True
        _LOGGER.info("Engine resumed %d open incidents", len(self.active))
        self.metrics.set_active(self.active.values())

    async def run(self) -> None:
        if not self._loaded:
            await self.load()
        # Overdue escalation steps from before a restart fire at once.
        await self._process([Envelope(Tick())])
        while True:
            envelopes = await self._next_inputs()
            await self._process(envelopes)

    async def _next_inputs(self) -> list[Envelope]:
        # The next escalation step, supervision review or digest, whichever comes first (the review always
        # comes, so this is finite).
        next_digest = self._next_digest.at if self._next_digest is not None else math.inf
        deadline = min(self._next_deadline() or math.inf, self._next_review, next_digest)
        try:
            async with asyncio.timeout(max(0.0, deadline - self.clock())):
                first = await self.queue.get()
        except TimeoutError:
            return [Envelope(Tick())]
        envelopes = [first]
        while len(envelopes) < MAX_BATCH and not self.queue.empty():
            envelopes.append(self.queue.get_nowait())
        return envelopes

    async def _process(self, envelopes: list[Envelope]) -> None:
        now = self.clock()
        batch = Batch(now)
        results: list[str] = []
        for envelope in envelopes:
            try:
                results.append(await self._handle(envelope.input, now, batch))
            except Exception:
                # A bug must not stop the alarms behind this input; it is loud in the log and the metrics.
                _LOGGER.exception("Internal error handling %r", envelope.input)
                self.metrics.invalid.labels(reason="internal_error").inc()
                results.append("internal_error")
        self._fire_due(now, batch)
        if now >= self._next_review:
            self._next_review = now + self.supervision_interval_s
            self._review(now, batch)
        if self._next_digest is not None and now >= self._next_digest.at and self.digest_at is not None:
            self._digest(self._next_digest.day, now, batch)
            # From the calendar, not +24 h: after a clock step or a long stall, the next one is still at
            # digest_at local time, and days skipped are not sent in a burst.
            self._next_digest = digest.following(now, self.digest_at, self.texts.time_zone)
        if self._reserve_released and now >= self._next_review - self.supervision_interval_s:
            await self._relay_reserve(now, batch)
        if batch:
            await self._commit(batch, now)
            self._remember_reports(batch.devices)
            self.failpoints.hit(AFTER_COMMIT)
        for envelope, result in zip(envelopes, results, strict=True):
            if envelope.done is not None:
                envelope.done(result)
        if batch.notifications:
            self.metrics.planned(batch.notifications)
            self.on_commit()
        if batch.incidents:
            self.metrics.set_active(self.active.values())
        if now - self._last_prune > PRUNE_INTERVAL_S:
            self._last_prune = now
            with contextlib.suppress(StoreFull):  # housekeeping waits for room like everything else
                await self.store.prune(now - self.dedup_window_s)

    async def _commit(self, batch: Batch, now: float) -> None:
        """Commit, however long it takes. Until the batch is on disk nothing in it is acknowledged to the
        broker or the receivers, so alarms wait there, safe, while the disk is full; the loop must not die."""
        delay = COMMIT_RETRY_MIN_S
        while True:
            try:
                await self.store.commit(batch)
            except StoreFull as err:
                self.metrics.store_writable.set(0)
                if self.reserve is not None and await self.reserve.release():
                    self._reserve_released = True
                    _LOGGER.error(
                        "Disk full (%s): gave up the %d-byte reserve to keep recording alarms; telling the duty room",
                        err, self.reserve.size,
                    )  # fmt: skip
                    self._tell_duty(full=True, now=now, batch=batch)
                    continue
                if self._commit_failure is None:
                    _LOGGER.error(
                        "Cannot commit (%s): alarms stay unacknowledged at the broker; retrying until there is room",
                        err,
                    )
                self._commit_failure = str(err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, COMMIT_RETRY_MAX_S)
            else:
                break
        if self._commit_failure is not None:
            _LOGGER.info("Commits go through again")
            self._commit_failure = None
        self.metrics.store_writable.set(1)

    async def _relay_reserve(self, now: float, batch: Batch) -> None:
        if self.reserve is not None and await self.reserve.lay():
            _LOGGER.info("Disk has room again: the %d-byte reserve is back in place", self.reserve.size)
            self._reserve_released = False
            self._tell_duty(full=False, now=now, batch=batch)

    def _tell_duty(self, *, full: bool, now: float, batch: Batch) -> None:
        """The server itself needs a person: the township duty room is told (once per event)."""
        scope = f"system:disk_{'full' if full else 'ok'}:{int(now)}"
        for person_id in self.roster.duty:
            person = self.roster.people.get(person_id)
            if person is not None:
                body = self.texts.disk(full, now, person.language)
                batch.notifications.append(
                    Notification(None, 0, Channel.SMS, Purpose.NOTICE, person.id, person.phone, body, scope=scope)
                )

    @property
    def commit_failure(self) -> str | None:
        """Why commits are failing right now (None: they go through)."""
        return self._commit_failure

    @property
    def on_reserve(self) -> bool:
        """The disk filled and alertd is running on its reserve until there is room again."""
        return self._reserve_released

    # --- decisions ------------------------------------------------------------------------------------

    async def _handle(self, item: Input, now: float, batch: Batch) -> str:
        match item:
            case Alarm():
                return await self._on_alarm(item, now, batch)
            case Restore(device_id=device_id, detail=detail):
                return self._on_restore(device_id, detail, now, batch)
            case Supervision():
                return self._on_supervision(item, now, batch)
            case TerminalAck(device_id=device_id, incident_id=incident_id):
                return self._on_terminal_ack(device_id, incident_id, now, batch)
            case Reply():
                return await self._on_reply(item, now, batch)
            case OperatorCommand():
                return self._on_operator(item, now, batch)
            case SensorState():
                return await self._on_sensor_state(item, now, batch)
            case Heartbeat(device_id=device_id, battery=battery):
                return self._on_device(DeviceUpdate(device_id, now, online=True, battery=battery), batch)
            case TestReport(device_id=device_id):
                return self._on_device(DeviceUpdate(device_id, now, online=True, test=True), batch)
            case DeviceStatus(device_id=device_id, online=online, source=source):
                if source == "zigbee2mqtt" and device_id not in self.roster.devices:
                    return "not_watched"  # a lamp or a plug on the same coordinator
                return self._on_device(DeviceUpdate(device_id, now, online=online), batch)
            case DeliveryReport():
                batch.deliveries.append(item)
                return "ok"
            case Tick():
                return "ok"

    async def _on_alarm(self, alarm: Alarm, now: float, batch: Batch) -> str:
        household = self.roster.household_of_device(alarm.device_id)
        if household is None:
            self._log.warning_for(f"unknown:{alarm.device_id}", "Alarm from unknown device %s ignored", alarm.device_id)
            self.metrics.invalid.labels(reason="unknown_device").inc()
            return "unknown_device"
        if alarm.seq is not None:
            key = (alarm.device_id, alarm.seq)
            if key in batch.seen or await self.store.seen_alarm(*key, since=now - self.dedup_window_s):
                _LOGGER.info("Duplicate alarm %s seq %d ignored", alarm.device_id, alarm.seq)
                self.metrics.duplicates.inc()
                return "duplicate"
            batch.seen.append(key)
        self.metrics.alarms.labels(source=alarm.source, kind=alarm.kind.value).inc()
        current = self._joinable(household.id, now)
        if current is not None:
            incident, effects = join_alarm(current, alarm.kind, now, alarm.source, household.label)
            self._apply(incident, effects, batch)
            return f"joined {incident.id}"
        incident, effects = open_incident(
            self._next_id, household, alarm.kind, self.roster, now, alarm.source, alarm.silent
        )
        self._next_id += 1
        _LOGGER.info("Incident %d opened: %s at %s (%s)", incident.id, alarm.kind, household.id, alarm.device_id)
        self.metrics.opened.labels(kind=alarm.kind.value).inc()
        self._apply(incident, effects, batch)
        self._fire(incident.id, now, batch)
        return f"opened {incident.id}"

    def _joinable(self, household_id: str, now: float) -> Incident | None:
        incident = self._newest_active(household_id)
        return incident if incident is not None and now - incident.last_alarm_at <= self.join_window_s else None

    def _newest_active(self, household_id: str) -> Incident | None:
        ids = self._by_household.get(household_id)
        return self.active[max(ids)] if ids else None

    async def _on_sensor_state(self, message: SensorState, now: float, batch: Batch) -> str:
        device = self.roster.devices.get(message.device_id)
        profile = self.commands.profiles.get(device.profile) if device is not None else None
        if device is None or profile is None or profile.transport != Transport.ZIGBEE2MQTT:
            # Zigbee2MQTT also publishes devices alertd does not watch (lights, plugs): not an error.
            _LOGGER.debug("Zigbee2MQTT state of %s ignored: not a watched device", message.device_id)
            return "not_watched"
        previous = self._sensor_states.get(device.id)
        try:
            state, events = zigbee2mqtt.interpret(
                device.id, profile, previous, message.payload, retained=message.retained
            )
        except zigbee2mqtt.Z2mError as err:
            self.metrics.invalid.labels(reason=f"zigbee2mqtt_{err.reason}").inc()
            _LOGGER.warning("Zigbee2MQTT state of %s rejected: %s", device.id, err)
            return f"invalid: {err.reason}"
        if state != previous:
            self._sensor_states[device.id] = state
            batch.devices.append(DeviceUpdate(device.id, now, state=state.to_json()))
        results = [await self._handle(event, now, batch) for event in events]
        return "; ".join(results) or "ok"

    def _on_restore(self, device_id: str, detail: str, now: float, batch: Batch) -> str:
        household = self.roster.household_of_device(device_id)
        if household is None:
            self.metrics.invalid.labels(reason="unknown_device").inc()
            return "unknown_device"
        incident = self._newest_active(household.id)
        if incident is None:
            _LOGGER.info("Restore from %s with no open incident: %s", device_id, detail)
            return "no_incident"
        batch.timeline.append(TimelineEntry(incident.id, now, "restore", household.label, detail))
        return f"restore {incident.id}"

    def _on_supervision(self, news: Supervision, now: float, batch: Batch) -> str:
        device_id, event, restore = news.device_id, news.event, news.restore
        if device_id not in self.roster.devices:
            self.metrics.invalid.labels(reason="unknown_device").inc()
            return "unknown_device"
        # Conditions are recorded with the device; the next supervision review opens or closes the
        # maintenance incident (after the grace period where one applies). Every report is a check-in.
        self.metrics.supervision.labels(event=event, restore=str(restore).lower()).inc()
        level = logging.INFO if restore or event in _ROUTINE_NEWS else logging.WARNING
        armed = "" if news.armed is None else f" {news.armed}" + ("" if news.user is None else f" by user {news.user}")
        detail = f" ({news.detail})" if news.detail else ""
        _LOGGER.log(level, "Device %s: %s%s%s%s", device_id, event, " restored" if restore else "", armed, detail)
        update = DeviceUpdate(device_id, now, online=True, test=event == "test")
        match event:
            case "low_battery":
                update = replace(update, battery_low=not restore)
            case "tamper":
                update = replace(update, tampered=not restore)
            case "ac_loss":
                update = replace(update, ac_loss=not restore)
            case "comm_trouble":
                update = replace(update, comm_trouble=not restore)
            case "open_close" if news.armed is not None:
                update = replace(update, armed=news.armed, armed_user=news.user)
        batch.devices.append(update)
        return "ok"

    def _on_terminal_ack(self, device_id: str, incident_id: int | None, now: float, batch: Batch) -> str:
        household = self.roster.household_of_device(device_id)
        if household is None:
            self.metrics.invalid.labels(reason="unknown_device").inc()
            return "unknown_device"
        in_group = [i for i in self.active.values() if i.group_id == household.group_id and i.maintenance is None]
        if incident_id is not None:
            target = next((i for i in in_group if i.id == incident_id), None)
        else:
            ringing = [i for i in in_group if device_id in i.rung and i.state == State.OPEN]
            target = max(ringing or [i for i in in_group if i.state == State.OPEN], key=lambda i: i.id, default=None)
        if target is None:
            _LOGGER.info("Acknowledge button on %s: no open incident to acknowledge", device_id)
            return "no_incident"
        return self._act(target, Action.ACKNOWLEDGE, household.label, Via.TERMINAL, now, batch)

    async def _on_reply(self, reply: Reply, now: float, batch: Batch) -> str:
        if reply.message_id is not None:
            # Twilio's signature has no timestamp: a captured request stays valid forever. Each message is
            # handled once, recorded in the same transaction as what it did.
            if reply.message_id in batch.inbound or await self.store.inbound_seen(reply.message_id):
                self.metrics.replays.labels(carrier=reply.carrier).inc()
                self._log.warning_for(
                    f"replay:{reply.carrier}",
                    "Inbound %s message %s was handled already: ignored (a replay or a redelivery)",
                    reply.carrier, reply.message_id,
                )  # fmt: skip
                return "replay"
            batch.inbound.append(reply.message_id)
        person = self.roster.person_by_phone(reply.phone)
        if person is None:
            self._log.warning_for(f"sender:{reply.phone}", "SMS from unknown number %s ignored", mask(reply.phone))
            self.metrics.invalid.labels(reason="unknown_sender").inc()
            return "unknown_sender"
        parsed = parse_reply(reply.text)
        if parsed is None:
            _LOGGER.info("SMS from %s is not a command", mask(reply.phone))
            self.metrics.invalid.labels(reason="not_a_command").inc()
            return "not_a_command"
        groups = self._groups_of(person.id)
        # Only incidents already open when the provider received the message: a reply to an old alarm,
        # read late from the SIM, must not acknowledge one that opened since.
        received = now if reply.received_at is None else min(now, reply.received_at + REPLY_CLOCK_SKEW_S)
        relevant = [
            i for i in self.active.values() if (groups is None or i.group_id in groups) and i.opened_at <= received
        ]
        if parsed.code is not None:
            target = next((i for i in relevant if i.code == parsed.code), None)
        else:
            # The newest incident the reply can still move forward: "1" skips ones already acknowledged.
            # The newest alarm the reply can still move forward; maintenance incidents only when no alarm is.
            movable = [i for i in relevant if _ORDER[i.state] < _ORDER[_TARGET[parsed.action]]]
            alarms = [i for i in movable if i.maintenance is None]
            target = max(alarms or movable or relevant, key=lambda i: i.id, default=None)
        if target is None:
            _LOGGER.info("SMS reply from %s matches no open incident", mask(reply.phone))
            return "no_incident"
        return self._act(target, parsed.action, person.name, Via.SMS, now, batch, parsed.outcome)

    def _groups_of(self, person_id: str) -> set[str] | None:
        """Groups a person answers for; None means all (the township duty room)."""
        if person_id in self.roster.duty:
            return None
        groups = {h.group_id for h in self.roster.households.values() if person_id in h.people}
        for group in self.roster.groups.values():
            for role in (Role.LEADER, Role.DEPUTY, Role.GRID_WORKER, Role.PATROL):
                if any(p.id == person_id for p in self.roster.people_for(group.id, role)):
                    groups.add(group.id)
        return groups

    def _on_operator(self, command: OperatorCommand, now: float, batch: Batch) -> str:
        incident = self.active.get(command.incident_id)
        if incident is None:
            return f"incident {command.incident_id} is not open"
        outcome = Outcome(command.outcome) if command.outcome else None
        return self._act(incident, command.action, command.by, Via.OPERATOR, now, batch, outcome)

    def _on_device(self, update: DeviceUpdate, batch: Batch) -> str:
        if update.device_id not in self.roster.devices:
            self._log.warning_for(
                f"unknown:{update.device_id}", "Report from unknown device %s ignored", update.device_id
            )
            self.metrics.invalid.labels(reason="unknown_device").inc()
            return "unknown_device"
        batch.devices.append(update)
        return "ok"

    def _act(
        self,
        incident: Incident,
        action: Action,
        actor: str,
        via: Via,
        now: float,
        batch: Batch,
        outcome: Outcome | None = None,
    ) -> str:
        try:
            updated, effects = apply_action(incident, action, actor, via, now, outcome, commands=self.commands)
        except TransitionError as err:
            return str(err)
        _LOGGER.info("Incident %d %s by %s via %s", incident.id, updated.state, actor, via)
        if incident.acknowledged_at is None and updated.acknowledged_at is not None:
            self.metrics.time_to_ack.observe(updated.acknowledged_at - updated.opened_at)
        self._apply(updated, effects, batch)
        return f"{updated.state} {incident.id}"

    # --- device supervision -------------------------------------------------------------------------

    def _review(self, now: float, batch: Batch) -> None:
        profiles = self.commands.profiles
        healths = [
            assess(device, profiles.get(device.profile), self._reported.get(device.id, Reported()), now)
            for device in self.roster.devices.values()
        ]
        decided = review(healths, set(self._maintenance), self._pending, now, self.grace_s)
        self._pending = decided.pending
        for device_id, condition in decided.to_open:
            device = self.roster.devices[device_id]
            household = self.roster.households[device.household_id]
            profile = profiles.get(device.profile)
            kind = profile.alarms[0].kind if profile is not None and profile.alarms else Kind.PANIC
            incident, effects = open_maintenance(
                self._next_id, device, household, condition.value, kind, self.roster, self.texts, now
            )
            self._next_id += 1
            _LOGGER.warning("Maintenance incident %d: device %s %s", incident.id, device_id, condition)
            self._maintenance[(device_id, condition)] = incident.id
            self._apply(incident, effects, batch)
        for key in decided.to_close:
            case = self.active.get(self._maintenance.pop(key))
            if case is not None:  # None: someone resolved it by hand already
                _LOGGER.info("Maintenance incident %d closed: device %s healthy again", case.id, key[0])
                self._act(case, Action.RESOLVE, "alertd: device healthy again", Via.SYSTEM, now, batch)

    def _digest(self, day: str, now: float, batch: Batch) -> None:
        """The daily readiness digest: every group's leader learns which devices need a visit."""
        planned = digest.plan(day, self.roster, self.commands.profiles, self._reported, self.texts, now)
        batch.notifications.extend(planned)
        batch.meta[digest.LAST_DAY_KEY] = day
        _LOGGER.info("Daily readiness digest for %s planned to %d group leaders", day, len(planned))

    def _remember_reports(self, updates: list[DeviceUpdate]) -> None:
        for u in updates:
            r = self._reported.get(u.device_id, Reported())
            self._reported[u.device_id] = Reported(
                online=r.online if u.online is None else u.online,
                last_seen=u.at,
                battery=r.battery if u.battery is None else u.battery,
                battery_low=r.battery_low if u.battery_low is None else u.battery_low,
                tampered=r.tampered if u.tampered is None else u.tampered,
                ac_loss=r.ac_loss if u.ac_loss is None else u.ac_loss,
                comm_trouble=r.comm_trouble if u.comm_trouble is None else u.comm_trouble,
            )

    # --- bookkeeping ------------------------------------------------------------------------------------

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
        if incident.maintenance is None:  # alarms join alarms, never a maintenance incident
            self._by_household.setdefault(incident.household_id, set()).add(incident.id)
        if incident.next_step_at is not None:
            heapq.heappush(self._deadlines, (incident.next_step_at, incident.id))

    def _next_deadline(self) -> float | None:
        while self._deadlines:
            at, incident_id = self._deadlines[0]
            incident = self.active.get(incident_id)
            if incident is not None and incident.next_step_at == at and incident.state == State.OPEN:
                return at
            heapq.heappop(self._deadlines)  # stale: acknowledged, closed or rescheduled
        return None

    def _fire_due(self, now: float, batch: Batch) -> None:
        while (deadline := self._next_deadline()) is not None and deadline <= now:
            _, incident_id = heapq.heappop(self._deadlines)
            self._fire(incident_id, now, batch)

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
