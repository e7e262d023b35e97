"""Outbox worker: moves one channel's notification rows from pending to sent, failed or dead.

The store is the queue. A row is claimed ('sending') before the carrier is called and its outcome is
recorded after, so a crash in between leaves a 'sending' row that is reconciled with the carrier before
anything is sent again: at least once, and a duplicate only when the carrier cannot tell us.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client import Counter

from alertd.core.incidents import Channel, Purpose
from alertd.core.ports import BatchSender, Health, Outbound, Receipt, Sender
from alertd.errors import Deposed, PermanentError, StoreFull, TransientError
from alertd.failpoints import AFTER_CALL, MID_FANOUT, Failpoints
from alertd.metrics import Metrics
from alertd.phones import mask
from alertd.store import Claim, OutboxRow, SendResult, Status, Store

_LOGGER = logging.getLogger(__name__)

BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 300.0
DEFAULT_CONCURRENCY = 16
RECORD_GATHER_S = 0.01
STORE_RETRY_S = 1.0  # while the disk is full, how often a claim or a record is tried again


def backoff_s(attempts: int, rng: random.Random) -> float:
    """Capped exponential backoff with +-20 % jitter so retries from a burst do not arrive together."""
    return float(min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** max(0, attempts - 1)) * rng.uniform(0.8, 1.2))


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        channel: Channel,
        sender: Sender,
        metrics: Metrics,
        *,
        max_attempts: int = 8,
        concurrency: int = DEFAULT_CONCURRENCY,
        clock: Callable[[], float] = time.time,
        failpoints: Failpoints | None = None,
        rng: random.Random | None = None,
        gate: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        # Asked right before each call to a carrier: an instance that stopped being the active one
        # (alertd.lease_keeper) sends nothing more, even rows it had already claimed; the new active
        # reconciles them as it does after a crash.
        self.gate = gate
        self.channel = channel
        self.sender = sender
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.clock = clock
        self.failpoints = failpoints or Failpoints()
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not security)
        self.concurrency = concurrency  # messages in flight at most
        # A batch sender gets each claim whole (one task, one call); any other sender a task per message.
        self._batch_sender = sender if isinstance(sender, BatchSender) else None
        self._wake = asyncio.Event()
        self._results: list[SendResult] = []
        self._results_ready = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._dispatch_lock = asyncio.Lock()  # drain's flush must wait for the recorder's, not skip it
        self._in_flight: set[asyncio.Task[None]] = set()
        self._busy = 0  # messages in flight (a batch task carries many)
        self._room = asyncio.Event()  # set whenever a send task finishes
        self._tasks: asyncio.TaskGroup | None = None  # the recorder and the sends in flight, while running
        self._draining = False
        self._taking = False  # rows may be handed over from the engine's commits (reconciled, not draining)
        self._lookup_failing = False  # logged once per outage of the carrier's lookups
        self._counters: dict[Status, Counter] = {}

    def _counter(self, status: Status) -> Counter:
        # labels() looks the child up under a lock on every call; a burst counts 18,000 ring commands.
        counter = self._counters.get(status)
        if counter is None:
            counter = self._counters[status] = self.metrics.notifications.labels(
                channel=self.channel.value, carrier=self.sender.name, status=status.value
            )
        return counter

    def wake(self) -> None:
        self._wake.set()

    def room(self) -> Claim:
        """What the engine may claim for this worker in its commit: none before the rows a crash left in
        'sending' are reconciled (they must not be taken for new ones), none while draining."""
        taking = self._taking and not self._draining
        return Claim(max(0, self.concurrency - self._busy) if taking else 0, self.sender.name)

    def take(self, rows: list[OutboxRow]) -> None:
        """Rows the engine claimed for this worker in its commit: sent now, as if this worker had claimed
        them (a drain that began during that commit waits for them too)."""
        if not self._taking:  # only if the worker stopped during that commit: like a crash's, reconciled
            _LOGGER.info("%d %s rows claimed as the worker stopped: sent after the restart", len(rows), self.channel)
            return
        self._launch(rows)

    def _launch(self, rows: list[OutboxRow]) -> None:
        if self._batch_sender is not None:
            self._start(self._send_all(self._batch_sender, rows), len(rows), f"send-{rows[0].id}+")
        else:
            for row in rows:
                self._start(self._send(row), 1, f"send-{row.id}")

    def health(self) -> Health:
        return self.sender.health()

    @property
    def in_flight(self) -> int:
        return self._busy

    async def run(self) -> None:
        await self._reconcile()
        # The recorder and every send are children of this task: cancelling the worker cancels them and
        # waits until they are gone, and a failure in any (a store that cannot record) stops the worker
        # loudly instead of dying unseen in a stray task. Once draining, the dispatcher returns and the
        # sends in flight finish in the group while drain() waits for them and records them; the daemon
        # then cancels the worker, the recorder with it.
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                tasks.create_task(self._record_loop(), name=f"outbox-{self.channel}-recorder")
                self._taking = True  # until the group is gone: a drain still takes what a commit claimed
                await self._dispatch_loop()
        finally:
            self._taking = False

    async def drain(self, timeout_s: float) -> None:
        """SIGTERM: take no new rows, let sends in flight finish and be recorded, within timeout_s."""
        self._draining = True
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with self._dispatch_lock:  # a claim under way becomes tasks first
            if self._in_flight:
                _LOGGER.info("Draining %d %s sends", self._busy, self.channel)
        # Until none is left: a commit that was under way may still hand over rows it claimed.
        while self._in_flight and (left := deadline - asyncio.get_running_loop().time()) > 0:
            await asyncio.wait(set(self._in_flight), timeout=left)
        await self._flush_results()

    async def _reconcile(self) -> None:
        rows = await self.store.in_sending(self.channel)
        if not rows:
            return
        results = []
        for row in rows:
            found, refused = await self._lookup(row)
            if found is not None:
                results.append(self._sent(row, found))
            else:
                results.append(SendResult(row.id, Status.PENDING, error=refused, next_attempt_at=self.clock()))
        delivered = sum(r.status == Status.SENT for r in results)
        _LOGGER.info(
            "Reconciled %d interrupted %s sends: %d already delivered, %d to resend",
            len(rows), self.channel, delivered, len(rows) - delivered,
        )  # fmt: skip
        while True:
            try:
                await self.store.record_results(results, self.clock())
            except StoreFull:
                await asyncio.sleep(STORE_RETRY_S)  # the engine logs and reports a full disk
            else:
                return

    async def _dispatch_loop(self) -> None:
        while not self._draining:
            free = self.concurrency - self._busy
            # Refill in chunks: claiming one row per finished send would cost a transaction per message.
            if self._busy and free < max(1, self.concurrency // 4):
                self._room.clear()
                await self._room.wait()
                continue
            self._wake.clear()
            async with self._dispatch_lock:  # drain waits for a claim to become tasks it can wait for
                if self._draining:
                    return
                try:
                    rows = await self.store.claim_due(self.channel, self.clock(), free, self.sender.name)
                except StoreFull:
                    # Not claimed, not sent: sending first would risk a message the store cannot record.
                    await asyncio.sleep(STORE_RETRY_S)
                    continue
                if rows:
                    self._launch(rows)
            if rows:
                continue
            next_at = await self.store.next_due_at(self.channel)
            timeout = None if next_at is None else max(0.05, next_at - self.clock())
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _start(self, send: Coroutine[Any, Any, None], messages: int, name: str) -> None:
        assert self._tasks is not None  # noqa: S101 (dispatch runs only inside run's TaskGroup)
        task = self._tasks.create_task(send, name=name)
        self._in_flight.add(task)
        self._busy += messages

        def finished(task: asyncio.Task[None]) -> None:
            self._in_flight.discard(task)
            self._busy -= messages
            self._room.set()

        task.add_done_callback(finished)

    async def _send_all(self, sender: BatchSender, rows: list[OutboxRow]) -> None:
        results: list[SendResult] = []
        fresh: list[OutboxRow] = []
        notes: list[str | None] = []
        for row in rows:
            refused: str | None = None
            if row.attempts > 0:  # as in _attempt: ask before sending again
                found, refused = await self._lookup(row)
                if found is not None:
                    results.append(self._sent(row, found))
                    continue
            fresh.append(row)
            notes.append(refused)
        if fresh:
            self._may_send()
            try:
                outcomes = await sender.send_all([_outbound(row) for row in fresh])
            except Exception as err:  # a carrier bug must not strand the rows in 'sending'
                _LOGGER.exception("Notifications from %d: unexpected error from %s", fresh[0].id, sender.name)
                outcomes = [err] * len(fresh)
            for row, note, error in zip(fresh, notes, outcomes, strict=True):
                results.append(self._sent(row, None, note=note) if error is None else self._failed(row, error))
        for result in results:
            self._done(result)

    async def _send(self, row: OutboxRow) -> None:
        self._done(await self._attempt(row))

    def _done(self, result: SendResult) -> None:
        self._results.append(result)
        self._results_ready.set()
        self._counter(result.status).inc()
        if result.status == Status.SENT:
            if self.channel == Channel.VOICE:
                self.failpoints.hit(AFTER_CALL)
            self.failpoints.hit(MID_FANOUT)

    async def _attempt(self, row: OutboxRow) -> SendResult:
        refused: str | None = None
        if row.attempts > 0:
            # A timed-out attempt may have reached the carrier after all: ask before sending again.
            found, refused = await self._lookup(row)
            if found is not None:
                _LOGGER.info("Notification %d was delivered by an earlier attempt", row.id)
                return self._sent(row, found)
        self._may_send()
        try:
            # The note stays on the row, so `alertd show` tells why the message may have gone out twice.
            return self._sent(row, await self.sender.send(_outbound(row)), note=refused)
        except Exception as err:  # noqa: BLE001 (every failure is classified; none may strand the row)
            return self._failed(row, err)

    def _may_send(self) -> None:
        if self.gate is not None and not self.gate():
            # Raised through the worker's TaskGroup to the daemon, which stops at once.
            raise Deposed(f"{self.channel}: this instance is not active any more: nothing more is sent")

    def _failed(self, row: OutboxRow, err: Exception) -> SendResult:
        attempts = row.attempts + 1
        if isinstance(err, PermanentError):
            _LOGGER.error("Notification %d to %s failed for good via %s: %s", row.id, _who(row), self.sender.name, err)
            return SendResult(row.id, Status.FAILED, self.sender.name, error=_describe(err))
        if isinstance(err, TransientError):
            if attempts >= self.max_attempts:
                _LOGGER.error("Notification %d to %s dead after %d attempts: %s", row.id, _who(row), attempts, err)
                return SendResult(row.id, Status.DEAD, self.sender.name, error=_describe(err))
            delay = backoff_s(attempts, self._rng)
            _LOGGER.warning("Notification %d to %s: %s; retry %d in %.0f s", row.id, _who(row), err, attempts, delay)
            return SendResult(
                row.id, Status.PENDING, self.sender.name, error=_describe(err), next_attempt_at=self.clock() + delay
            )
        # A carrier bug must not strand the row in 'sending': retried, with its traceback logged.
        _LOGGER.error("Notification %d: unexpected error from %s", row.id, self.sender.name, exc_info=err)
        return SendResult(
            row.id, Status.PENDING, self.sender.name, error=repr(err),
            next_attempt_at=self.clock() + backoff_s(attempts, self._rng),
        )  # fmt: skip

    async def _lookup(self, row: OutboxRow) -> tuple[str | Receipt | None, str | None]:
        """Did an earlier attempt reach the carrier? (receipt, None) when it did, (None, None) when the
        carrier says it did not, (None, why) when the carrier would not say.

        A lookup can never fail a message: only the carrier's refusal of the send itself is permanent.
        A key that may send but not read (HTTP 403), a proxy that forwards only POST (404), a timeout:
        all mean "unknown", and the message is sent again (at least once beats never)."""
        try:
            found = await self.sender.find_sent(_outbound(row))
        except Exception as err:  # noqa: BLE001 (any failure to look up is "unknown", by design)
            self.metrics.lookup_failures.labels(channel=self.channel.value, carrier=self.sender.name).inc()
            why = f"lookup failed ({err}); sent again"
            if not self._lookup_failing:
                # Once per outage, like a carrier going down; the count is in the metrics.
                _LOGGER.warning(
                    "Cannot ask %s whether notification %d already went out (%s); sending it again, and so "
                    "for every such message until lookups work",
                    self.sender.name, row.id, err,
                )  # fmt: skip
            else:
                _LOGGER.debug("Lookup for notification %d still failing: %s", row.id, err)
            self._lookup_failing = True
            return None, why
        if self._lookup_failing:
            _LOGGER.info("Lookups at %s work again", self.sender.name)
            self._lookup_failing = False
        return found, None

    def _retry_flush(self) -> None:
        def later() -> None:
            self._results_ready.set()

        asyncio.get_running_loop().call_later(STORE_RETRY_S, later)

    def _sent(self, row: OutboxRow, receipt: str | Receipt | None, note: str | None = None) -> SendResult:
        if isinstance(receipt, Receipt):
            # The carrier's own note (a hedge) goes beside ours (a failed lookup): both may mean a duplicate.
            notes = "; ".join(n for n in (note, receipt.note) if n) or None
            return SendResult(row.id, Status.SENT, receipt.carrier, receipt.provider_id, error=notes)
        return SendResult(row.id, Status.SENT, self.sender.name, receipt, error=note)

    async def _record_loop(self) -> None:
        while True:
            await self._results_ready.wait()
            if self.channel == Channel.TERMINAL:
                # Let a burst's ring outcomes gather: one transaction for many, not one per loop turn. The
                # commands are out already; only their 'sent' mark waits (a crash now repeats them, at
                # most). Not for SMS: a carrier's delivery report must find the provider id recorded.
                await asyncio.sleep(RECORD_GATHER_S)
            await self._flush_results()

    async def _flush_results(self) -> None:
        async with self._flush_lock:
            self._results_ready.clear()
            results, self._results = self._results, []
            if not results:
                return
            try:
                await self.store.record_results(results, self.clock())
            except StoreFull:
                # Sent but not recorded: keep the outcomes and record them when there is room.
                self._results[:0] = results
                self._retry_flush()
                return
        if any(r.status == Status.PENDING for r in results):
            self.wake()  # a retry may be due before the dispatcher's current timeout


def _outbound(row: OutboxRow) -> Outbound:
    # Alarm texts are urgent (hedged across carriers); maintenance, digest and disk notices are not.
    return Outbound(
        row.id, row.address, row.body, row.created_at, urgent=row.purpose == Purpose.ALERT, template=row.template,
        params=row.params,
    )  # fmt: skip


def _who(row: OutboxRow) -> str:
    return mask(row.address) if row.address.startswith("+") else row.address


def _describe(err: Exception) -> str:
    code = getattr(err, "code", None)
    return f"{code}: {err}" if code else str(err)
