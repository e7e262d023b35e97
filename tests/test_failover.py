"""Failover between SMS carriers, with fake carriers implementing the Sender interface and a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from alertd.channels.base import Health, Outbound, Receipt
from alertd.channels.failover import PROBE_INTERVAL_S, FailoverSender
from alertd.core.incidents import Channel, Notification, Purpose
from alertd.errors import PermanentError, TransientError
from alertd.metrics import Metrics
from alertd.outbox import OutboxWorker
from alertd.store import Batch, Status, Store

MESSAGE = Outbound(1, "+8613800010001", "【联防】测试", 0.0)


@dataclass
class Carrier:
    name: str
    fail: type[Exception] | None = None
    healthy: bool = True
    lookup: type[Exception] | None = None  # find_sent raises this: the carrier will not say
    sent: list[int] = field(default_factory=list)

    async def send(self, message: Outbound) -> str | None:
        if self.fail is not None:
            raise self.fail(f"{self.name} says no")
        self.sent.append(message.id)
        return f"{self.name}-{len(self.sent)}"

    async def find_sent(self, message: Outbound) -> str | None:
        if self.lookup is not None:
            raise self.lookup(f"{self.name} will not say")
        return f"{self.name}-found" if message.id in self.sent else None

    def health(self) -> Health:
        return Health(self.healthy, "ok" if self.healthy else "down")


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_preferred_carrier_first_and_the_receipt_names_it() -> None:
    twilio, modem = Carrier("twilio"), Carrier("modem")
    receipt = await FailoverSender([twilio, modem]).send(MESSAGE)
    assert receipt == Receipt("twilio", "twilio-1")
    assert modem.sent == []


@pytest.mark.parametrize("error", [TransientError, PermanentError])
async def test_a_failing_carrier_hands_the_message_to_the_other(error: type[Exception]) -> None:
    twilio, modem = Carrier("twilio", fail=error), Carrier("modem")
    assert await FailoverSender([twilio, modem]).send(MESSAGE) == Receipt("modem", "modem-1")


async def test_both_failing_transiently_is_transient_so_the_outbox_keeps_it() -> None:
    sender = FailoverSender([Carrier("twilio", fail=TransientError), Carrier("modem", fail=PermanentError)])
    with pytest.raises(TransientError, match="twilio: twilio says no; modem: modem says no"):
        await sender.send(MESSAGE)


async def test_both_refusing_for_good_is_permanent() -> None:
    sender = FailoverSender([Carrier("twilio", fail=PermanentError), Carrier("modem", fail=PermanentError)])
    with pytest.raises(PermanentError):
        await sender.send(MESSAGE)


async def test_an_unhealthy_carrier_goes_last_but_is_probed_now_and_then() -> None:
    clock = Clock()
    twilio, modem = Carrier("twilio", healthy=False), Carrier("modem")
    sender = FailoverSender([twilio, modem], clock=clock)
    assert (await sender.send(MESSAGE)).carrier == "twilio", "the first message probes the sick carrier"
    assert (await sender.send(MESSAGE)).carrier == "modem"
    clock.now += PROBE_INTERVAL_S
    assert (await sender.send(MESSAGE)).carrier == "twilio"


async def test_health_is_ok_while_any_carrier_is_and_says_which_is_not() -> None:
    twilio, modem = Carrier("twilio", healthy=False), Carrier("modem")
    sender = FailoverSender([twilio, modem])
    assert sender.health() == Health(True, "twilio: down; modem: ok")
    modem.healthy = False
    assert not sender.health().ok


async def test_find_sent_asks_every_carrier() -> None:
    twilio, modem = Carrier("twilio"), Carrier("modem")
    modem.sent.append(MESSAGE.id)
    assert await FailoverSender([twilio, modem]).find_sent(MESSAGE) == Receipt("modem", "modem-found")


async def test_find_sent_is_unknown_when_none_has_it_and_a_lookup_was_refused() -> None:
    twilio, modem = Carrier("twilio", lookup=PermanentError), Carrier("modem")
    with pytest.raises(TransientError, match="twilio"):
        await FailoverSender([twilio, modem]).find_sent(MESSAGE)
    modem.sent.append(MESSAGE.id)  # another carrier that has it still answers for it
    assert await FailoverSender([twilio, modem]).find_sent(MESSAGE) == Receipt("modem", "modem-found")


async def test_a_carrier_whose_lookups_fail_hands_an_interrupted_send_to_the_other(tmp_path: Path) -> None:
    """A row left in 'sending' by a crash, Twilio refusing both the lookup (403) and the send (down): the
    message goes out through the modem, with the refused lookup noted on the row."""
    store = await Store.open(tmp_path / "alertd.db")
    try:
        batch = Batch(1000.0)
        batch.notifications.append(
            Notification(None, 0, Channel.SMS, Purpose.ALERT, "leader", MESSAGE.address, "【联防】", scope="test")
        )
        await store.commit(batch)
        [row] = await store.due(Channel.SMS, 1000.0, limit=10)
        await store.claim([row.id], "sms", 1000.0)  # then kill -9
        twilio, modem = Carrier("twilio", fail=TransientError, lookup=PermanentError), Carrier("modem")
        worker = OutboxWorker(store, Channel.SMS, FailoverSender([twilio, modem]), Metrics())
        task = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(5):
                while (done := (await store.notifications())[0]).status != Status.SENT:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await store.close()
    assert modem.sent == [row.id]
    assert done.carrier == "modem"
    assert done.error is not None
    assert done.error == "lookup failed (twilio: twilio will not say); sent again"
