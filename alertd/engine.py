"""The single writer, the shell around the pure desk (alertd.core.desk): one queue, batches of inputs,
one lookup of what was seen before per batch, one commit per batch (retried while the disk is full), then
the rows claimed in that commit handed to their outbox workers, and each input's done-callback (an MQTT
PUBACK, a receiver ACK). It
decodes what the core may not (Zigbee2MQTT states, the SMS reply grammar) and decides nothing itself."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from alertd.commands import CommandBook
from alertd.core.desk import (
    EVALUATION_WINDOW_S,
    JUDGED_KEY,
    PAUSE_KEY,
    SIGN_KEY,
    CheckIns,
    Desk,
    PlacedCall,
    Seen,
    handled_key,
)
from alertd.core.digest import LAST_DAY_KEY
from alertd.core.events import Alarm, CallReport, Evaluation, Input, MissedCall, Reply, SensorState, Tick
from alertd.core.incidents import Channel
from alertd.core.messages import Texts
from alertd.core.model import Roster
from alertd.core.ports import Done
from alertd.core.profile import DeviceProfile
from alertd.core.records import Batch
from alertd.core.results import OK, Result, Verdict
from alertd.core.storm import Storm
from alertd.core.upkeep import Upkeep
from alertd.durable import DurableCommit
from alertd.errors import StoreFull
from alertd.failpoints import AFTER_COMMIT, Failpoints
from alertd.inbox import Envelope, Inbox
from alertd.metrics import Metrics
from alertd.observe import Observer
from alertd.protocols.replies import parse_reply
from alertd.reserve import Reserve
from alertd.sensors import SensorStates
from alertd.store import Claim, OutboxRow, Store

_LOGGER = logging.getLogger(__name__)

# Inputs committed together: one fsync for a burst instead of one per alarm.
MAX_BATCH = 256
# How often old deduplication entries are forgotten.
PRUNE_INTERVAL_S = 3600.0


class Outlet(Protocol):
    """An outbox worker as the engine sees it (alertd.outbox.OutboxWorker)."""

    channel: Channel

    def room(self) -> Claim:
        """How many due rows it can take from a commit now, and for which carrier (limit 0: none)."""
        ...

    def take(self, rows: list[OutboxRow]) -> None:
        """Rows claimed for it in a commit: send them now."""
        ...

    def wake(self) -> None:
        """New rows are committed: look now, not at the next timeout."""
        ...


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
        outlets: Sequence[Outlet] = (),
        watchers: Sequence[Callable[[Batch], None]] = (),  # told of each committed batch (the console)
        commands: CommandBook | None = None,
        grace_s: float = 600.0,
        supervision_interval_s: float = 60.0,
        digest_at: dt.time | None = None,
        digest_catch_up_s: float = 7200.0,
        reserve: Reserve | None = None,
        inbox: Inbox | None = None,
        storm: Storm | None = None,
    ) -> None:
        self.store = store
        self.commands = replace(commands or CommandBook(), devices=roster.devices)
        upkeep = Upkeep(grace_s, supervision_interval_s, digest_at, texts.time_zone)
        self.desk = Desk(
            roster, texts, self.commands, self.commands.profiles, join_window_s, upkeep, storm=storm or Storm()
        )
        self.metrics = metrics
        self.dedup_window_s = dedup_window_s
        self.digest_catch_up_s = digest_catch_up_s
        self.clock = clock
        self.failpoints = failpoints or Failpoints()
        self.outlets = outlets
        self.watchers = watchers
        self.inbox = inbox or Inbox()
        self.observer = Observer(metrics)
        self.durable = DurableCommit(store, metrics, reserve, self.desk.tell_duty_about_disk)
        self.sensors = SensorStates(self.observer)
        self._loaded = False
        self._last_prune = 0.0
        # The deduplication window's (device, seq) -> when, mirrored from the store: the engine is the only
        # writer of seen_alarms, so a batch's lookup needs no trip to the store's thread.
        self._seen_alarms: dict[tuple[str, int], float] = {}

    # --- the API for ingress, web and cli ----------------------------------------------------------

    def submit(self, item: Input, done: Done | None = None) -> None:
        self.inbox.submit(item, done)

    async def call(self, item: Input) -> Result:
        """Submit and wait until the input's effects are committed."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.submit(item, lambda result: None if future.done() else future.set_result(result))
        return await future

    def replace_roster(self, roster: Roster, profiles: Mapping[str, DeviceProfile] | None = None) -> None:
        """SIGHUP: new roster (and device profiles) for what comes next (see Desk.replace_roster)."""
        chosen = self.commands.profiles if profiles is None else profiles
        self.commands = replace(self.commands, devices=roster.devices, profiles=chosen)
        self.desk.replace_roster(roster, self.commands, chosen)

    # --- the loop -----------------------------------------------------------------------------------

    async def load(self) -> None:
        self._seen_alarms = await self.store.recent_alarms(self.clock() - self.dedup_window_s)
        records = await self.store.devices()
        self.sensors.load(records.values())
        now = self.clock()
        reported = {r.id: r.reported() for r in records.values()}
        incidents = await self.store.load_active_incidents()
        awaiting = await self.store.awaiting_evaluation(now - EVALUATION_WINDOW_S)
        check_ins = CheckIns(
            {h: float(v) for h, v in (await self.store.metas(SIGN_KEY)).items()},
            {h: float(v) for h, v in (await self.store.metas(PAUSE_KEY)).items() if v},
            await self.store.metas(JUDGED_KEY),
        )
        self.desk.resume(incidents, reported, await self.store.max_incident_id() + 1, now, awaiting, check_ins)
        self.desk.upkeep.schedule_digest(
            now,
            in_use_since=await self.store.in_use_since(now),  # None on a new store's first start
            last_day=await self.store.meta(LAST_DAY_KEY),
            catch_up_s=self.digest_catch_up_s,
        )
        self._loaded = True
        _LOGGER.info("Engine resumed %d open incidents", len(self.desk.active))
        self.metrics.set_active(self.desk.active.values())

    async def run(self) -> None:
        if not self._loaded:
            await self.load()
        await self._process([Envelope(Tick())])  # overdue escalation steps from before a restart fire now
        while True:
            await self._process(await self._next_inputs())

    async def _next_inputs(self) -> list[Envelope]:
        try:
            async with asyncio.timeout(max(0.0, self.desk.next_wakeup() - self.clock())):
                first = await self.inbox.get()
        except TimeoutError:
            return [Envelope(Tick())]
        return [first, *self.inbox.take(MAX_BATCH - 1)]

    async def _process(self, envelopes: list[Envelope]) -> None:
        now = self.clock()
        batch = Batch(now)
        seen = await self._seen([e.input for e in envelopes], now)
        results = [self._decide(envelope.input, now, seen, batch) for envelope in envelopes]
        self.desk.tick(now, batch)
        self.desk.screen(now, batch)
        await self.durable.relay_reserve(batch)
        claimed: dict[Channel, list[OutboxRow]] = {}
        if batch:
            # The new ring commands and texts are claimed in the commit itself: a worker with room gets
            # them straight from here, one transaction and two thread hops sooner than by claiming them.
            claimed = await self.durable.commit(batch, {o.channel: o.room() for o in self.outlets})
            self.desk.upkeep.remember(batch.devices)
            self._seen_alarms.update(dict.fromkeys(batch.seen, batch.now))
            self.failpoints.hit(AFTER_COMMIT)
            for watch in self.watchers:
                watch(batch)
        if batch.notifications:
            for outlet in self.outlets:  # the terminal worker first: its rings go out before the texts
                if rows := claimed.get(outlet.channel):
                    outlet.take(rows)
                outlet.wake()  # for what did not fit
            self.metrics.planned(batch.notifications)
        for envelope, result in zip(envelopes, results, strict=True):
            if envelope.done is not None:
                envelope.done(result)
        if batch.incidents:
            self.metrics.set_active(self.desk.active.values())
        if now - self._last_prune > PRUNE_INTERVAL_S:
            self._last_prune = now
            since = now - self.dedup_window_s
            self._seen_alarms = {key: at for key, at in self._seen_alarms.items() if at >= since}
            with contextlib.suppress(StoreFull):  # housekeeping waits for room like everything else
                await self.store.prune(now - self.dedup_window_s)

    async def _seen(self, inputs: list[Input], now: float) -> Seen:
        """What was handled before of this batch's alarms (from memory), replies and evaluations (from the store)."""
        since = now - self.dedup_window_s
        alarms = frozenset(
            key
            for i in inputs
            if isinstance(i, Alarm)
            and i.seq is not None
            and self._seen_alarms.get(key := (i.device_id, i.seq), since - 1.0) >= since
        )
        replies = [i.message_id for i in inputs if isinstance(i, Reply) and i.message_id is not None]
        # An evaluation may name an incident closed long ago: the desk keeps only the recent ones.
        closed = {
            i.incident_id: incident
            for i in inputs
            if isinstance(i, Evaluation)
            and i.incident_id not in self.desk.awaiting
            and (incident := await self.store.incident(i.incident_id)) is not None
        }
        calls = {
            i.notification_id: placed
            for i in inputs
            if isinstance(i, CallReport) and (placed := await self._placed_call(i.notification_id)) is not None
        }
        handled = replies + [
            mark for i in inputs if isinstance(i, CallReport | MissedCall) and (mark := handled_key(i)) is not None
        ]
        return Seen(
            alarms,
            frozenset(await self.store.inbound_seen_many(handled) if handled else ()),
            closed,
            calls,
        )

    async def _placed_call(self, notification_id: int) -> PlacedCall | None:
        row = await self.store.notification(notification_id)
        if row is None or row.channel != Channel.VOICE:
            return None
        placed = sum(
            1
            for other in await self.store.notifications(row.incident_id)
            if other.channel == Channel.VOICE
            and other.step == row.step
            and other.recipient == row.recipient
            and other.id <= row.id  # its place among them: every report on one call plans the same retry
        )
        return PlacedCall(row.id, row.incident_id, row.step, row.recipient, row.body, placed)

    def _decide(self, item: Input, now: float, seen: Seen, batch: Batch) -> Result:
        try:
            match item:
                case SensorState():
                    result = self._sensor_state(item, now, seen, batch)
                case Reply():
                    result = self.desk.decide_reply(item, parse_reply(item.text), now, seen, batch)
                case _:
                    result = self.desk.decide(item, now, seen, batch)
        except Exception:
            # A bug must not stop the alarms behind this input; it is loud in the log and the metrics.
            _LOGGER.exception("Internal error handling %r", item)
            result = Result(Verdict.INTERNAL_ERROR)
        self.observer.decided(item, result)
        return result

    def _sensor_state(self, message: SensorState, now: float, seen: Seen, batch: Batch) -> Result:
        decoded = self.sensors.decode(message, self.desk.roster, self.commands.profiles, now)
        if decoded.refused is not None:
            return decoded.refused
        if decoded.update is not None:
            batch.devices.append(decoded.update)
        results = [self._decide(event, now, seen, batch) for event in decoded.inputs]
        # The one that concerns an incident, if any, is what the sender is told.
        return next((r for r in results if r.incident_id is not None), results[-1] if results else OK)
