"""SMS over several carriers (Twilio, the GSM modem): the preferred one first, the other when it fails.

A carrier that reports itself unhealthy (consecutive failures, modem not registered, line unplugged) is
tried last, except for one probe message every PROBE_INTERVAL_S so a recovered carrier is noticed.
When every carrier fails, the send fails transiently: the outbox keeps the row and retries with backoff,
and health turns red (/healthz 503) so an operator sees it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from alertd.channels.base import Health, Outbound, Receipt, Sender
from alertd.errors import PermanentError, TransientError

_LOGGER = logging.getLogger(__name__)

PROBE_INTERVAL_S = 30.0


class FailoverSender:
    name = "sms"

    def __init__(self, carriers: Sequence[Sender], *, clock: Callable[[], float] = time.monotonic) -> None:
        if not carriers:
            raise ValueError("at least one carrier")
        self.carriers = list(carriers)  # in order of preference
        self.clock = clock
        self._next_probe: dict[str, float] = {}
        self._all_down = False

    def _order(self) -> list[Sender]:
        now = self.clock()
        healthy, sick = [], []
        for carrier in self.carriers:
            if carrier.health().ok:
                healthy.append(carrier)
            elif now >= self._next_probe.get(carrier.name, 0.0):
                self._next_probe[carrier.name] = now + PROBE_INTERVAL_S
                healthy.append(carrier)  # a probe: it may have recovered
            else:
                sick.append(carrier)
        return healthy + sick

    async def send(self, message: Outbound) -> Receipt:
        failures: list[str] = []
        permanent = True
        for carrier in self._order():
            try:
                result = await carrier.send(message)
            except TransientError as err:
                permanent = False
                failures.append(f"{carrier.name}: {err}")
            except PermanentError as err:
                failures.append(f"{carrier.name}: {err.code + ' ' if err.code else ''}{err}")
            else:
                if failures:
                    _LOGGER.warning(
                        "Notification %d sent via %s after %s", message.id, carrier.name, "; ".join(failures)
                    )
                self._set_all_down(False)
                return result if isinstance(result, Receipt) else Receipt(carrier.name, result)
        summary = "; ".join(failures)
        if permanent:
            raise PermanentError(f"every carrier refused it: {summary}")
        self._set_all_down(True)
        raise TransientError(f"no SMS carrier could take it: {summary}")

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
        states = [(c.name, c.health()) for c in self.carriers]
        detail = "; ".join(f"{name}: {h.detail}" for name, h in states)
        return Health(any(h.ok for _, h in states), detail)

    def _set_all_down(self, down: bool) -> None:
        if down and not self._all_down:
            _LOGGER.error("Every SMS carrier is failing; messages wait in the outbox: %s", self.health().detail)
        elif not down and self._all_down:
            _LOGGER.info("SMS is flowing again")
        self._all_down = down

    async def close(self) -> None:
        for carrier in self.carriers:
            close = getattr(carrier, "close", None)
            if close is not None:
                await close()
