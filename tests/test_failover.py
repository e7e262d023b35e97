"""Failover between SMS carriers, with fake carriers implementing the Sender interface and a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from alertd.channels.failover import PROBE_INTERVAL_S, SICK_AFTER_HEDGES, FailoverSender
from alertd.core.incidents import Channel, Notification, Purpose
from alertd.core.ports import Health, Outbound, Receipt
from alertd.core.records import Batch
from alertd.errors import PermanentError, TransientError
from alertd.metrics import Metrics
from alertd.outbox import OutboxWorker
from alertd.store import Status, Store

MESSAGE = Outbound(1, "+8613800010001", "【联防】测试", 0.0)
ALARM = replace(MESSAGE, urgent=True)
HEDGE_S = 0.05  # short, so the tests are quick; a hung carrier below never answers before its event is set


@dataclass
class Carrier:
    name: str
    fail: type[Exception] | None = None
    healthy: bool = True
    lookup: type[Exception] | None = None  # find_sent raises this: the carrier will not say
    hang: asyncio.Event | None = None  # send waits for it: a carrier that takes the request and says nothing
    sent: list[int] = field(default_factory=list)
    tried: list[int] = field(default_factory=list)  # every send begun, answered or not

    async def send(self, message: Outbound) -> str | None:
        self.tried.append(message.id)
        if self.hang is not None:
            await self.hang.wait()
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


# --- hedging: issue 16 -----------------------------------------------------------------------------


def counted(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def until(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_an_alarm_sms_goes_through_the_next_carrier_too_when_the_first_does_not_answer() -> None:
    twilio, modem, metrics = Carrier("twilio", hang=asyncio.Event()), Carrier("modem"), Metrics()
    sender = FailoverSender([twilio, modem], hedge_after_s=HEDGE_S, metrics=metrics)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        receipt = await sender.send(ALARM)
        waited = loop.time() - started
        assert (receipt.carrier, receipt.provider_id) == ("modem", "modem-1"), "the first acceptance is the delivery"
        assert waited >= HEDGE_S - 0.001, "the preferred carrier had its hedge delay first"
        assert twilio.tried == [ALARM.id]
        assert receipt.note is not None
        assert receipt.note.startswith("hedged after 0.05 s: twilio had not answered")
        assert counted(metrics, "alertd_sms_hedged_total", carrier="twilio") == 1

        # The hung attempt is not dropped: it keeps running, tracked, and its late outcome is counted.
        assert sender.hedging == 1
        assert twilio.sent == []
        assert twilio.hang is not None
        twilio.hang.set()
        await until(lambda: sender.hedging == 0)
        assert twilio.sent == [ALARM.id], "Twilio took it after all: the recipient has it twice"
        assert counted(metrics, "alertd_sms_hedge_leftovers_total", carrier="twilio", outcome="accepted") == 1
    finally:
        await sender.close()


async def test_an_attempt_left_running_is_cancelled_and_counted_on_close() -> None:
    twilio, modem, metrics = Carrier("twilio", hang=asyncio.Event()), Carrier("modem"), Metrics()
    sender = FailoverSender([twilio, modem], hedge_after_s=HEDGE_S, metrics=metrics)
    assert (await sender.send(ALARM)).carrier == "modem"
    assert sender.hedging == 1
    await sender.close()
    assert sender.hedging == 0
    assert twilio.sent == []
    assert counted(metrics, "alertd_sms_hedge_leftovers_total", carrier="twilio", outcome="cancelled") == 1


async def test_a_slow_carrier_that_still_answers_first_wins_and_the_hedge_is_left_running() -> None:
    twilio, modem = Carrier("twilio", hang=asyncio.Event()), Carrier("modem", hang=asyncio.Event())
    sender = FailoverSender([twilio, modem], hedge_after_s=HEDGE_S)
    try:
        sending = asyncio.create_task(sender.send(ALARM))
        await until(lambda: modem.tried == [ALARM.id])  # hedged: both are trying now
        assert twilio.hang is not None
        twilio.hang.set()
        receipt = await sending
        assert (receipt.carrier, receipt.provider_id) == ("twilio", "twilio-1")
        assert receipt.note is not None
        assert "modem still trying" in receipt.note
        assert sender.hedging == 1
    finally:
        await sender.close()


@pytest.mark.parametrize(
    ("message", "hedge_after_s"), [(MESSAGE, HEDGE_S), (ALARM, 0.0)], ids=["notice", "alarm, hedging off"]
)
async def test_a_notice_or_hedging_off_waits_for_the_first_carriers_answer(
    message: Outbound, hedge_after_s: float
) -> None:
    twilio, modem, metrics = Carrier("twilio", hang=asyncio.Event()), Carrier("modem"), Metrics()
    sender = FailoverSender([twilio, modem], hedge_after_s=hedge_after_s, metrics=metrics)
    try:
        sending = asyncio.create_task(sender.send(message))
        await until(lambda: twilio.tried == [message.id])
        await asyncio.sleep(10 * HEDGE_S)  # whatever the time, the modem is not asked while Twilio may answer
        assert not sending.done()
        assert modem.tried == []
        twilio.fail = TransientError  # Twilio answers at last, with a failure: now the modem carries it
        assert twilio.hang is not None
        twilio.hang.set()
        receipt = await sending
        assert receipt == Receipt("modem", "modem-1")
        assert sender.hedging == 0
        assert counted(metrics, "alertd_sms_hedged_total", carrier="twilio") == 0
    finally:
        await sender.close()


async def test_a_carrier_that_keeps_hanging_is_skipped_for_alarms_until_a_probe_answers_in_time() -> None:
    clock, metrics = Clock(), Metrics()
    twilio, modem = Carrier("twilio", hang=asyncio.Event()), Carrier("modem")
    sender = FailoverSender([twilio, modem], clock=clock, hedge_after_s=HEDGE_S, metrics=metrics)
    ids = iter(range(1, 100))

    async def alarm() -> Receipt:
        return await sender.send(replace(ALARM, id=next(ids)))

    try:
        for _ in range(SICK_AFTER_HEDGES):
            receipt = await alarm()
            assert receipt.carrier == "modem"
            assert receipt.note is not None
        assert twilio.tried == list(range(1, SICK_AFTER_HEDGES + 1))
        assert sender.health().ok
        assert f"twilio: no answer within 0.05 s {SICK_AFTER_HEDGES} times in a row" in sender.health().detail

        # Twilio's own health still says ok (no request has failed yet), but alarms no longer wait for it.
        assert twilio.health().ok
        receipt = await alarm()
        assert (receipt.carrier, receipt.note) == ("modem", None), "straight to the healthy carrier, no hedge"
        assert len(twilio.tried) == SICK_AFTER_HEDGES

        # The probe goes alongside the modem's attempt: the alarm does not wait for it.
        clock.now += PROBE_INTERVAL_S
        receipt = await alarm()
        assert receipt.carrier == "modem"
        assert (
            receipt.note
            == "sent alongside a probe of twilio (down); accepted by modem; twilio still trying (may arrive twice)"
        )
        assert len(twilio.tried) == SICK_AFTER_HEDGES + 1
        # Unanswered past its hedge delay, the probe is one more hang: Twilio stays skipped.
        await until(lambda: f"no answer within 0.05 s {SICK_AFTER_HEDGES + 1} times" in sender.health().detail)
        assert (await alarm()).note is None
        assert len(twilio.tried) == SICK_AFTER_HEDGES + 1

        assert twilio.hang is not None
        twilio.hang.set()  # Twilio answers again; the attempts left running finish late
        await until(lambda: sender.hedging == 0)
        assert counted(metrics, "alertd_sms_hedge_leftovers_total", carrier="twilio", outcome="accepted") == (
            SICK_AFTER_HEDGES + 1
        )
        assert (await alarm()).carrier == "modem", "late answers do not restore it; the next probe is not due"

        clock.now += PROBE_INTERVAL_S
        probe = await alarm()
        assert probe.note is not None
        assert probe.note.startswith("sent alongside a probe of twilio (down)")
        await until(lambda: sender.hedging == 0)
        assert sender.health() == Health(True, "twilio: ok; modem: ok"), "the probe answered in time"
        tried = len(modem.tried)
        assert await alarm() == Receipt("twilio", f"twilio-{SICK_AFTER_HEDGES + 3}"), "Twilio is preferred again"
        assert len(modem.tried) == tried
    finally:
        await sender.close()


async def test_the_outbox_hedges_alarm_rows_notes_it_on_the_row_and_lets_notices_wait(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "alertd.db")
    twilio, modem = Carrier("twilio", hang=asyncio.Event()), Carrier("modem")
    sender = FailoverSender([twilio, modem], hedge_after_s=HEDGE_S)
    try:
        batch = Batch(1000.0)
        for purpose in (Purpose.ALERT, Purpose.NOTICE):
            batch.notifications.append(
                Notification(None, 0, Channel.SMS, purpose, "leader", MESSAGE.address, "【联防】", scope="test")
            )
        await store.commit(batch)
        worker = OutboxWorker(store, Channel.SMS, sender, Metrics())
        task = asyncio.create_task(worker.run())
        try:
            async with asyncio.timeout(5):
                while not any(n.status == Status.SENT for n in await store.notifications()):
                    await asyncio.sleep(0.01)
            rows = {n.purpose: n for n in await store.notifications()}
            assert rows[Purpose.ALERT].status == Status.SENT
            assert rows[Purpose.ALERT].carrier == "modem"
            note = rows[Purpose.ALERT].error
            assert note is not None
            assert note.startswith("hedged after 0.05 s: twilio had not answered")
            assert rows[Purpose.NOTICE].status == Status.SENDING, "the notice waits for Twilio's answer"
            assert modem.sent == [rows[Purpose.ALERT].id]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await sender.close()
        await store.close()
