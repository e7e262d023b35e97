"""The GSM modem channel driving the simulated modem on a real pty: init, PDU sending (Chinese,
multipart), +CMS errors, a wedged modem, replies by +CMTI and by sweep, delivery reports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from alertd.channels.gsm_modem import ModemSender
from alertd.core.events import DeliveryReport, Input, Reply
from alertd.core.ports import Outbound
from alertd.errors import PermanentError, TransientError
from alertd.ingress.modem_inbox import ModemInbox
from alertd.metrics import Metrics
from alertd.modem.session import AtSession
from alertd.serial_lines import LineSettings
from tests.fakes.gsm_modem import FakeModem

LEADER = "+8613800010005"


class Engine:
    """Stands in for the engine's submit(): records inputs and commits at once."""

    def __init__(self, *, commit: bool = True) -> None:
        self.inputs: list[Input] = []
        self.commit = commit  # False: a crash before the commit, so the modem never deletes the message

    def submit(self, item: Input, done: Callable[[str], None] | None) -> None:
        self.inputs.append(item)
        if done is not None and self.commit:
            done("ok")


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(fake: FakeModem, engine: Engine, **options: float) -> AsyncIterator[ModemSender]:
    metrics = Metrics()
    session = AtSession(LineSettings("modem", fake.path, 115200), metrics, **options)
    session.attach(ModemInbox(session, engine.submit, metrics))  # type: ignore[arg-type]
    modem = ModemSender(session)
    task = asyncio.create_task(session.run())
    try:
        await until(lambda: modem.health().ok)
        yield modem
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_initialises_the_modem_for_pdu_mode_and_reports_signal() -> None:
    async with FakeModem(rssi=23) as fake, running(fake, Engine()) as modem:
        assert fake.commands[-5:] != []
        for expected in ("ATE0", "AT+CMEE=1", "AT+CPIN?", "AT+CMGF=0", "AT+CNMI=2,1,0,1,0", "AT+CREG?", "AT+CSQ"):
            assert expected in fake.commands
        assert modem.health().detail == "registered, signal 23/31"


async def test_chinese_alert_goes_out_as_one_ucs2_part_and_long_text_as_concatenated_parts() -> None:
    short = "【联防】2号户 王家 火警！河口村一组 16:05 回1收到 2到场 3解除 #17"
    long = "河口村一组二号户王家发生火警请立即前往" * 8  # 152 characters: three UCS-2 parts
    async with FakeModem() as fake, running(fake, Engine()) as modem:
        first = await modem.send(Outbound(1, LEADER, short, 0.0))
        second = await modem.send(Outbound(2, LEADER, long, 0.0))
    assert [(m.to, m.text, m.parts, m.encoding) for m in fake.sent] == [
        (LEADER, short, 1, "ucs2"),
        (LEADER, long, 3, "ucs2"),
    ]
    assert first == f"modem:{fake.sent[0].mrs[-1]}"
    assert second == f"modem:{fake.sent[1].mrs[-1]}"


async def test_cms_errors_are_permanent_or_transient_by_code() -> None:
    async with FakeModem() as fake, running(fake, Engine()) as modem:
        fake.cms_error_next(1)  # unassigned number
        with pytest.raises(PermanentError) as refused:
            await modem.send(Outbound(1, LEADER, "测试", 0.0))
        assert refused.value.code == "CMS 1"
        fake.cms_error_next(42)  # congestion
        with pytest.raises(TransientError):
            await modem.send(Outbound(2, LEADER, "测试", 0.0))
        assert await modem.send(Outbound(3, LEADER, "测试", 0.0))
    assert len(fake.sent) == 1


async def test_a_silent_modem_times_out_per_command_is_reported_down_and_recovers() -> None:
    async with FakeModem() as fake, running(fake, Engine(), command_timeout_s=0.5, sweep_interval_s=0.5) as modem:
        fake.silence(True)
        with pytest.raises(TransientError, match="no answer"):
            await modem.send(Outbound(1, LEADER, "测试", 0.0))
        await until(lambda: not modem.health().ok)
        with pytest.raises(TransientError, match="modem down"):
            await modem.send(Outbound(2, LEADER, "测试", 0.0))
        fake.silence(False)
        await until(lambda: modem.health().ok, 20)
        assert await modem.send(Outbound(3, LEADER, "测试", 0.0))


PATROL = ("+8613900000021", "+8613900000022")


async def test_an_unplug_mid_send_fails_it_at_once_and_only_initialisation_reaches_the_new_line() -> None:
    """Slow sends queued, the modem pulled out mid-PDU and plugged back with a boot delay: the send in
    flight fails at once (not after its 30 s timeout), the new line hears the initialisation before any
    AT+CMGS, and the sends that waited go out after it in the order they came: the leader's first."""
    async with FakeModem(send_delay=1.5) as fake, running(fake, Engine(), command_timeout_s=30.0) as modem:
        recipients = [LEADER, *PATROL, LEADER]
        sends = [
            asyncio.create_task(modem.send(Outbound(n, to, f"【联防】测试{n}", 0.0)))
            for n, to in enumerate(recipients, start=1)
        ]
        await fake.wait_for_command("AT+CMGS")
        await asyncio.sleep(0.5)  # the first PDU is with the network
        await fake.unplug()
        with pytest.raises(TransientError, match="line closed"):
            await asyncio.wait_for(sends[0], 5.0)  # far below the command timeout
        await asyncio.sleep(1.0)
        await fake.replug()
        replugged = len(fake.commands)
        fake.silence(True)  # booting: deaf for a second
        await asyncio.sleep(1.0)
        fake.silence(False)
        outcomes = await asyncio.gather(*sends[1:], return_exceptions=True)
    on_new_line = [c.upper() for c in fake.commands[replugged:]]
    first_send = next(i for i, c in enumerate(on_new_line) if c.startswith("AT+CMGS"))
    before = on_new_line[:first_send]
    assert "AT+CNMI=2,1,0,1,0" in before, on_new_line
    setup = {"AT", "ATE0", "AT+CMEE=1", "AT+CPIN?", "AT+CMGF=0", "AT+CNMI=2,1,0,1,0", "AT+CREG?", "AT+CSQ", "AT+CMGL=4"}
    assert set(before) <= setup, on_new_line
    # Every send queued behind the unplug went out on the new line, in the order they came.
    assert all(isinstance(o, str) for o in outcomes), outcomes
    assert [m.to for m in fake.sent] == recipients[1:]


async def test_replies_arrive_by_cmti_and_by_sweep_and_are_deleted_after_commit() -> None:
    engine = Engine()
    async with FakeModem() as fake, running(fake, engine, sweep_interval_s=0.5):
        await fake.receive_sms(LEADER, "收到")
        await fake.receive_sms(LEADER, "3 误报", notify=False)  # no +CMTI: only the sweep finds it
        await fake.receive_sms(LEADER, "解除 #17 " + "谢谢大家" * 20)  # a multipart reply
        await until(lambda: len([i for i in engine.inputs if isinstance(i, Reply)]) == 3)
        await until(lambda: not fake.stored)
    replies = sorted((i.phone, i.text, i.carrier) for i in engine.inputs if isinstance(i, Reply))
    assert replies == sorted(
        [(LEADER, "收到", "modem"), (LEADER, "3 误报", "modem"), (LEADER, "解除 #17 " + "谢谢大家" * 20, "modem")]
    )


async def test_a_reply_read_again_from_the_sim_after_a_restart_carries_the_same_message_id() -> None:
    """The engine handles a message id once: the modem must name a message the same way every time."""
    engine = Engine(commit=False)
    async with FakeModem() as fake:
        async with running(fake, engine, sweep_interval_s=0.3):
            await fake.receive_sms(LEADER, "1")
            await until(lambda: len(engine.inputs) == 1)
        async with running(fake, engine, sweep_interval_s=0.3):  # a restart: the sweep finds it again
            await until(lambda: len(engine.inputs) == 2)
    first, again = engine.inputs
    assert isinstance(first, Reply)
    assert isinstance(again, Reply)
    assert first.message_id is not None
    assert first.message_id.startswith("modem:")
    assert again.message_id == first.message_id
    assert first.received_at is not None  # the SMSC's timestamp


async def test_delivery_reports_become_delivery_inputs_for_the_message_reference() -> None:
    engine = Engine()
    async with FakeModem(delivery_reports=True) as fake, running(fake, engine) as modem:
        provider_id = await modem.send(Outbound(1, LEADER, "测试", 0.0))
        await until(lambda: any(isinstance(i, DeliveryReport) for i in engine.inputs))
    report = next(i for i in engine.inputs if isinstance(i, DeliveryReport))
    assert report.provider_id == provider_id
    assert report.status == "delivered"


async def test_unplugged_modem_is_down_then_back_without_a_restart() -> None:
    async with FakeModem() as fake, running(fake, Engine()) as modem:
        await fake.unplug()
        await until(lambda: not modem.health().ok)
        with pytest.raises(TransientError):
            await modem.send(Outbound(1, LEADER, "测试", 0.0))
        await fake.replug()
        await until(lambda: modem.health().ok, 20)
        assert await modem.send(Outbound(2, LEADER, "测试", 0.0))
