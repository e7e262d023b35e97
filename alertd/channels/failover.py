"""SMS over several carriers (Twilio, the GSM modem): the preferred one first, the other when it fails.

A carrier that reports itself unhealthy (consecutive failures, modem not registered, line unplugged) is
tried last, except for one probe message every PROBE_INTERVAL_S so a recovered carrier is noticed.
When every carrier fails, the send fails transiently: the outbox keeps the row and retries with backoff,
and health turns red (/healthz 503) so an operator sees it.

Alarm texts (Outbound.urgent) are hedged, because a carrier can also fail by saying nothing (a Twilio that
takes the connection and never answers holds the SMS for its whole timeout): when a carrier has not
answered within hedge_after_s, the next carrier is tried as well, without cancelling the first. A
duplicate beats a delay. The first carrier to accept is the delivery; an attempt still running then is
left to finish in a tracked background task, its outcome logged and counted, and cancelled by close().
An alarm never waits on a probe either: a probe goes out alongside the next carrier's attempt.

A carrier that left SICK_AFTER_HEDGES alarm SMS in a row without an answer within hedge_after_s counts as
unhealthy in the ordering above (tried last, probed) until it answers one within hedge_after_s again: a
hung carrier reports nothing wrong until its own timeout, so its own health() cannot tell.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from alertd.core.ports import Health, Outbound, Receipt, Sender
from alertd.errors import PermanentError, TransientError
from alertd.metrics import Metrics

_LOGGER = logging.getLogger(__name__)

PROBE_INTERVAL_S = 30.0
SICK_AFTER_HEDGES = 3  # alarm SMS in a row a carrier left unanswered within the hedge delay

_Result = str | Receipt | None


@dataclass(frozen=True, slots=True)
class _Turn:
    carrier: Sender
    probe: bool  # an unhealthy carrier's periodic try: an alarm does not wait for it


@dataclass(eq=False, slots=True)
class _Attempt:
    """One carrier's try at one message."""

    turn: _Turn
    task: asyncio.Task[_Result]
    deadline: float | None  # loop time: an answer after it is late (None: hedging is off)
    late: bool = False
    hedged: bool = False  # another carrier was started because of this one

    @property
    def name(self) -> str:
        return self.turn.carrier.name

    def in_time(self, now: float) -> bool:
        """Answered (or still waiting) within the hedge delay; always false with hedging off."""
        return self.deadline is not None and now < self.deadline


class FailoverSender:
    def __init__(
        self,
        carriers: Sequence[Sender],
        *,
        name: str = "sms",  # what it carries: "sms", or "voice" (alert calls; never hedged: a second call)
        clock: Callable[[], float] = time.monotonic,
        hedge_after_s: float = 0.0,
        sick_after_hedges: int = SICK_AFTER_HEDGES,
        metrics: Metrics | None = None,
    ) -> None:
        if not carriers:
            raise ValueError("at least one carrier")
        if hedge_after_s < 0:
            raise ValueError("hedge_after_s must be >= 0 (0: never hedge)")
        if sick_after_hedges < 1:
            raise ValueError("sick_after_hedges must be >= 1")
        self.name = name
        self.carriers = list(carriers)  # in order of preference
        self.clock = clock
        self.hedge_after_s = hedge_after_s
        self.sick_after_hedges = sick_after_hedges
        self.metrics = metrics or Metrics()
        self._next_probe: dict[str, float] = {}
        self._all_down = False
        self._hangs: dict[str, int] = {}  # carrier -> alarm SMS in a row it left unanswered in time
        self._leftovers: set[asyncio.Task[_Result]] = set()

    @property
    def hedging(self) -> int:
        """Attempts still running after another carrier accepted their message."""
        return len(self._leftovers)

    def _carrier_health(self, carrier: Sender) -> Health:
        health = carrier.health()
        hangs = self._hangs.get(carrier.name, 0)
        if health.ok and hangs >= self.sick_after_hedges:
            return Health(False, f"no answer within {self.hedge_after_s:g} s {hangs} times in a row")
        return health

    def _order(self) -> list[_Turn]:
        now = self.clock()
        healthy, sick = [], []
        for carrier in self.carriers:
            if self._carrier_health(carrier).ok:
                healthy.append(_Turn(carrier, probe=False))
            elif now >= self._next_probe.get(carrier.name, 0.0):
                self._next_probe[carrier.name] = now + PROBE_INTERVAL_S
                healthy.append(_Turn(carrier, probe=True))  # it may have recovered
            else:
                sick.append(_Turn(carrier, probe=False))
        return healthy + sick

    async def send(self, message: Outbound) -> Receipt:
        loop = asyncio.get_running_loop()
        waiting = deque(self._order())
        running: list[_Attempt] = []
        hedged_for: list[_Attempt] = []  # the attempts another carrier was started for, in order
        failures: list[str] = []
        permanent = True

        def start() -> None:
            turn = waiting.popleft()
            # Every attempt is timed, alarm or not: an answer in time is what clears a carrier's hangs.
            deadline = loop.time() + self.hedge_after_s if self.hedge_after_s > 0 else None
            task = asyncio.create_task(turn.carrier.send(message), name=f"sms-{message.id}-{turn.carrier.name}")
            running.append(_Attempt(turn, task, deadline))

        def hedge_due() -> bool:
            # Alarms only: the next carrier starts while every attempt in flight is late or a probe.
            return (
                message.urgent
                and self.hedge_after_s > 0
                and bool(waiting)
                and bool(running)
                and all(a.late or a.turn.probe for a in running)
            )

        try:
            while running or waiting:
                if not running:
                    start()
                while hedge_due():
                    for attempt in running:
                        if not attempt.hedged:
                            attempt.hedged = True
                            hedged_for.append(attempt)
                            self.metrics.sms_hedged.labels(carrier=attempt.name).inc()
                    start()
                deadlines = [a.deadline for a in running if a.deadline is not None and not a.late]
                timeout = max(0.0, min(deadlines) - loop.time()) if deadlines else None
                tasks: list[asyncio.Future[Any]] = [a.task for a in running]
                done, _ = await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                now = loop.time()
                for attempt in running:
                    if attempt.task not in done and not attempt.late and not attempt.in_time(now):
                        self._overdue(attempt, message)
                for attempt in [a for a in running if a.task in done]:
                    running.remove(attempt)
                    try:
                        result = attempt.task.result()
                    except TransientError as err:
                        permanent = False
                        failures.append(f"{attempt.name}: {err}")
                    except PermanentError as err:
                        failures.append(f"{attempt.name}: {err.code + ' ' if err.code else ''}{err}")
                    else:
                        if attempt.in_time(now):
                            self._answered_in_time(attempt.turn.carrier)
                        return self._delivered(message, attempt, result, failures, hedged_for, running)
        finally:
            for attempt in running:  # cancelled, or a carrier bug: no attempt of this send may linger
                attempt.task.cancel()
        summary = "; ".join(failures)
        if permanent:
            raise PermanentError(f"every carrier refused it: {summary}")
        self._set_all_down(True)
        raise TransientError(f"no {self.name} carrier could take it: {summary}")

    def _delivered(
        self,
        message: Outbound,
        winner: _Attempt,
        result: _Result,
        failures: list[str],
        hedged_for: list[_Attempt],
        running: list[_Attempt],
    ) -> Receipt:
        if failures:
            _LOGGER.warning("Notification %d sent via %s after %s", message.id, winner.name, "; ".join(failures))
        self._set_all_down(False)
        receipt = result if isinstance(result, Receipt) else Receipt(winner.name, result)
        others = [(a.name, _state(a.task)) for a in running]
        for attempt in running:
            self._leave_running(attempt, message)
        running.clear()  # handed over: the caller's cleanup must not cancel them
        if not hedged_for:
            return receipt
        notes = []
        if slow := [a.name for a in hedged_for if not a.turn.probe]:
            notes.append(f"hedged after {self.hedge_after_s:g} s: {', '.join(slow)} had not answered")
        if probes := [a.name for a in hedged_for if a.turn.probe]:
            notes.append(f"sent alongside a probe of {', '.join(probes)} (down)")
        notes.append(f"accepted by {winner.name}")
        notes += [f"also accepted by {name} (arrives twice)" for name, state in others if state == "accepted"]
        notes += [f"{name} still trying (may arrive twice)" for name, state in others if state == "running"]
        note = "; ".join(notes)
        return Receipt(receipt.carrier, receipt.provider_id, f"{receipt.note}; {note}" if receipt.note else note)

    def _overdue(self, attempt: _Attempt, message: Outbound) -> None:
        """No answer within the hedge delay: the attempt is late, and for an alarm the carrier hung."""
        if attempt.deadline is None or attempt.late:
            return
        attempt.late = True
        if message.urgent:
            self._hung(attempt.turn.carrier, message)

    def _hung(self, carrier: Sender, message: Outbound) -> None:
        """An alarm's attempt at `carrier` had no answer within the hedge delay."""
        count = self._hangs[carrier.name] = self._hangs.get(carrier.name, 0) + 1
        if count == 1:
            # Sized for long outages: the first of a streak at WARNING, the rest at DEBUG.
            _LOGGER.warning(
                "No answer from %s within %g s to notification %d: alarm SMS go through another carrier as well",
                carrier.name, self.hedge_after_s, message.id,
            )  # fmt: skip
        else:
            _LOGGER.debug("%s still not answering in time (%d alarm SMS in a row)", carrier.name, count)
        if count == self.sick_after_hedges:
            # It was just tried: the next probe is one interval away, not the next message.
            self._next_probe[carrier.name] = self.clock() + PROBE_INTERVAL_S
            _LOGGER.warning(
                "%s gave no answer within %g s to %d alarm SMS in a row: SMS go to the other carriers first "
                "until it answers in time again (one probe every %.0f s)",
                carrier.name, self.hedge_after_s, count, PROBE_INTERVAL_S,
            )  # fmt: skip

    def _answered_in_time(self, carrier: Sender) -> None:
        count = self._hangs.pop(carrier.name, 0)
        if count >= self.sick_after_hedges:
            _LOGGER.info("%s answers within %g s again", carrier.name, self.hedge_after_s)

    def _leave_running(self, attempt: _Attempt, message: Outbound) -> None:
        """Another carrier took the message: this attempt finishes on its own, tracked and counted."""
        name, task, loop = attempt.name, attempt.task, asyncio.get_running_loop()
        self._leftovers.add(task)
        # Its hedge delay still runs: a probe that outlives it has hung again, one answered within it has not.
        timer = None
        if attempt.deadline is not None and not attempt.late:
            timer = loop.call_at(attempt.deadline, lambda: None if task.done() else self._overdue(attempt, message))

        def finished(task: asyncio.Task[_Result]) -> None:
            self._leftovers.discard(task)
            if timer is not None:
                timer.cancel()
            outcome = _state(task)
            if outcome == "cancelled":
                _LOGGER.debug("Notification %d: the attempt at %s was cancelled", message.id, name)
            elif outcome == "failed":
                _LOGGER.debug(
                    "Notification %d: the attempt at %s left running failed: %s", message.id, name, task.exception()
                )
            else:
                _LOGGER.info(
                    "Notification %d was also accepted by %s, after another carrier: the recipient may have it twice",
                    message.id, name,
                )  # fmt: skip
                if not attempt.late and attempt.in_time(loop.time()):
                    self._answered_in_time(attempt.turn.carrier)  # a probe that lost the race still counts
            self.metrics.sms_hedge_leftovers.labels(carrier=name, outcome=outcome).inc()

        task.add_done_callback(finished)

    async def find_sent(self, message: Outbound) -> Receipt | None:
        """The carrier that has the message, None when every carrier says it has not, TransientError when
        none has it and some would not say (the outbox then sends again: a lookup never fails a message)."""
        refused = []
        for carrier in self.carriers:
            try:
                found = await carrier.find_sent(message)
            except (TransientError, PermanentError) as err:
                refused.append(f"{carrier.name}: {err}")
                continue  # another carrier may still know it
            if found is not None:
                return found if isinstance(found, Receipt) else Receipt(carrier.name, found)
        if refused:
            raise TransientError("; ".join(refused))
        return None

    def health(self) -> Health:
        states = [(c.name, self._carrier_health(c)) for c in self.carriers]
        detail = "; ".join(f"{name}: {h.detail}" for name, h in states)
        return Health(any(h.ok for _, h in states), detail)

    def _set_all_down(self, down: bool) -> None:
        if down and not self._all_down:
            _LOGGER.error(
                "Every %s carrier is failing; messages wait in the outbox: %s", self.name, self.health().detail
            )
        elif not down and self._all_down:
            _LOGGER.info("SMS is flowing again")
        self._all_down = down

    async def close(self) -> None:
        leftovers = list(self._leftovers)
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers)
        # The carriers are closed by whoever made them (alertd.assembly), after this.


def _state(task: asyncio.Task[_Result]) -> str:
    """running, cancelled, failed or accepted: how an attempt stands (the exception is read, so never logged
    by asyncio as unretrieved)."""
    if not task.done():
        return "running"
    if task.cancelled():
        return "cancelled"
    return "failed" if task.exception() is not None else "accepted"
