"""Voice on the GSM modem, driving the simulated modem on a real pty: the bedside ring (ModemCaller: every
outcome, SMS waiting behind a ring, a modem that goes silent mid-ring) and missed-call acknowledgements
(ModemCalls: rejected at once, one MissedCall per call, withheld and national numbers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from alertd.channels.gsm_modem import ModemSender
from alertd.channels.modem_voice import ModemCaller, dial_string
from alertd.core.events import CallReport, CallStatus, Input, MissedCall
from alertd.core.ports import Done, Outbound
from alertd.errors import PermanentError, TransientError
from alertd.ingress.modem_calls import ModemCalls
from alertd.ingress.modem_inbox import ModemInbox
from alertd.metrics import Metrics
from alertd.modem.session import VOICE_SETUP, AtSession
from alertd.protocols.at import CALL_ALERTING
from alertd.serial_lines import LineSettings
from tests.fakes.gsm_modem import CallScript, DialStyle, FakeModem

LEADER = "+8613800010005"
LEADER_DIALLED = "13800010005"  # how a mainland SIM dials it
NEIGHBOUR = "+8613900000021"
NEIGHBOUR_DIALLED = "13900000021"
NOW = 1_750_000_000.0  # the injected wall clock: no test reads the real one
RING_S = 1.0
POLL_S = 0.05
SETTLE_S = 0.3
CLIP_WAIT_S = 0.3


@dataclass
class Village:
    """What a test drives and watches: the session's parts on the fake modem."""

    session: AtSession
    caller: ModemCaller
    sms: ModemSender
    reports: list[CallReport] = field(default_factory=list)
    inputs: list[Input] = field(default_factory=list)

    def submit(self, item: Input, done: Done | None) -> None:
        self.inputs.append(item)

    @property
    def missed(self) -> list[MissedCall]:
        return [i for i in self.inputs if isinstance(i, MissedCall)]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(
    fake: FakeModem, *, ring_s: float = RING_S, command_timeout_s: float = 2.0, sweep_interval_s: float = 60.0
) -> AsyncIterator[Village]:
    metrics = Metrics()
    session = AtSession(
        LineSettings("modem", fake.path, 115200),
        metrics,
        command_timeout_s=command_timeout_s,
        sweep_interval_s=sweep_interval_s,
    )
    reports: list[CallReport] = []
    village = Village(
        session, ModemCaller(session, reports.append, ring_s=ring_s, poll_s=POLL_S, clock=lambda: NOW),
        ModemSender(session), reports,
    )  # fmt: skip
    session.attach(ModemInbox(session, village.submit, metrics))
    session.attach(
        ModemCalls(
            session, village.submit, clock=lambda: NOW, ring_gap_s=1.0, settle_s=SETTLE_S, clip_wait_s=CLIP_WAIT_S
        )
    )
    task = asyncio.create_task(session.run())
    try:
        await until(lambda: session.health().ok)
        yield village
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def ring(n: int, to: str = LEADER) -> Outbound:
    return Outbound(n, to, "", 0.0)


# --- the bedside ring -----------------------------------------------------------------------------


async def test_the_initialisation_sets_the_modem_up_for_calls() -> None:
    async with FakeModem() as fake, running(fake):
        setup = fake.commands[fake.commands.index("AT+CNMI=2,1,0,1,0") + 1 :][: len(VOICE_SETUP)]
        assert setup == ["ATH", "ATX4", "AT+COLP=0", "AT+CLIP=1"]
        assert fake.clip


def test_numbers_are_dialled_as_a_mainland_sim_dials_them() -> None:
    assert dial_string("+8613800138000") == "13800138000"
    assert dial_string("+864152123456") == "04152123456"  # a Dandong fixed line: trunk 0 and area code
    assert dial_string("+861012345678") == "01012345678"
    assert dial_string("+12025550123") == "+12025550123"  # abroad: international form
    for bad in ("terminal-7", "13800138000", "+86138001380001;ATH", "+8610086", ""):
        with pytest.raises(PermanentError):
            dial_string(bad)


@pytest.mark.parametrize("style", ["immediate", "on_answer"])
async def test_a_ring_answered_is_reported_answered_and_hung_up_at_once(style: DialStyle) -> None:
    """Answered means reached: the modem plays nothing, so the call is hung up as soon as it is seen
    answered (one poll at most with a modem that answers the dial at once; at once with one that holds the
    dial's OK back until the answer)."""
    async with FakeModem(dial_style=style) as fake, running(fake) as village:
        fake.script_call(LEADER_DIALLED, CallScript("answer", after_s=0.3))
        call_id = await village.caller.send(ring(7))
    assert village.reports == [CallReport(7, CallStatus.ANSWERED, provider_id=call_id)]
    assert call_id == f"modem-call:{int(NOW * 1000)}"
    [call] = fake.dials
    assert call.number == LEADER_DIALLED
    assert "ATD13800010005;" in fake.commands
    assert call.ended_by == "ath"
    assert call.answered_at is not None
    assert call.ended_at is not None
    assert call.ended_at - call.answered_at < 0.3


@pytest.mark.parametrize(
    ("style", "script", "expected"),
    [
        ("immediate", CallScript("busy"), CallStatus.BUSY),
        ("immediate", CallScript("no_answer"), CallStatus.NO_ANSWER),
        ("immediate", CallScript("no_carrier"), CallStatus.NO_ANSWER),  # rang, then released: declined
        ("immediate", CallScript("no_carrier", alerts=False), CallStatus.FAILED),  # never rang: unreachable
        ("on_answer", CallScript("busy"), CallStatus.BUSY),
        ("on_answer", CallScript("no_answer"), CallStatus.NO_ANSWER),
        ("on_answer", CallScript("no_carrier"), CallStatus.FAILED),  # whether it rang is not known
    ],
)
async def test_a_ring_that_ends_unanswered_reports_how(
    style: DialStyle, script: CallScript, expected: CallStatus
) -> None:
    async with FakeModem(dial_style=style) as fake, running(fake) as village:
        fake.script_call(LEADER_DIALLED, script)
        call_id = await village.caller.send(ring(3))
        after_dial = fake.commands[fake.commands.index(f"ATD{LEADER_DIALLED};") :]
        # The modem is free again: the next ring goes out at once.
        fake.script_call(NEIGHBOUR_DIALLED, CallScript("answer", after_s=0.1))
        await village.caller.send(ring(4, NEIGHBOUR))
    assert village.reports[0] == CallReport(3, expected, provider_id=call_id)
    assert village.reports[1].status == CallStatus.ANSWERED
    assert fake.dials[0].ended_by == "network"
    assert "ATH" in after_dial, "hung up after every ring, even one the network ended"


@pytest.mark.parametrize(("style", "runs_command"), [("immediate", False), ("on_answer", False), ("on_answer", True)])
async def test_a_ring_nobody_answers_is_hung_up_after_ring_s(style: DialStyle, runs_command: bool) -> None:
    """Ringing on (the fake's default): hung up after ring_s. A modem holding the dial pending is aborted;
    whether it also runs the aborting ATH (a second final result) or not, the session stays in step."""
    async with FakeModem(dial_style=style, abort_runs_command=runs_command) as fake, running(fake) as village:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await village.caller.send(ring(1))
        took = loop.time() - started
        [call] = fake.dials
        assert call.ended_by == ("ath" if style == "immediate" else "abort")
        assert RING_S <= took < RING_S + 1.0
        assert call.ended_at is not None
        assert call.ended_at - call.dialled_at == pytest.approx(RING_S, abs=0.3)
        assert [r.status for r in village.reports] == [CallStatus.NO_ANSWER]
        assert fake.call is None
        # In step: the next command gets its own answer, not the abort's.
        assert await village.sms.send(Outbound(2, LEADER, "测试", 0.0)) == f"modem:{fake.sent[0].mrs[-1]}"
        fake.script_call(NEIGHBOUR_DIALLED, CallScript("answer", after_s=0.1))
        await village.caller.send(ring(3, NEIGHBOUR))
    assert [r.status for r in village.reports] == [CallStatus.NO_ANSWER, CallStatus.ANSWERED]


async def test_dials_the_modem_refuses() -> None:
    async with FakeModem() as fake, running(fake) as village:
        fake.script_call(LEADER_DIALLED, CallScript("error", error="+CME ERROR: 27"))
        with pytest.raises(PermanentError) as refused:
            await village.caller.send(ring(1))
        assert refused.value.code == "CME 27"
        for error in ("ERROR", "+CME ERROR: 3", "+CME ERROR: 30"):
            fake.script_call(LEADER_DIALLED, CallScript("error", error=error))
            with pytest.raises(TransientError):
                await village.caller.send(ring(1))
        fake.script_call(LEADER_DIALLED, CallScript("no_dialtone"))
        with pytest.raises(TransientError, match="dial tone"):
            await village.caller.send(ring(1))
        with pytest.raises(PermanentError):
            await village.caller.send(ring(1, "terminal-7"))
        assert len(fake.dials) == 5  # the address that is no number never reached the modem
    assert village.reports == [], "a ring that raised reported nothing"


async def test_no_ring_while_the_modem_is_not_registered() -> None:
    async with FakeModem() as fake, running(fake, sweep_interval_s=0.2) as village:
        fake.set_registration(2)
        await until(lambda: not village.session.registered)
        with pytest.raises(TransientError, match="not registered"):
            await village.caller.send(ring(1))
    assert fake.dials == []
    assert village.reports == []


async def test_sms_on_the_same_modem_wait_for_a_ring_and_then_go() -> None:
    async with FakeModem() as fake, running(fake) as village:
        calling = asyncio.create_task(village.caller.send(ring(1)))
        await until(lambda: fake.call is not None)
        texting = asyncio.create_task(village.sms.send(Outbound(2, LEADER, "【联防】2号户 王家 火警", 0.0)))
        await asyncio.sleep(RING_S / 2)
        assert not texting.done()
        assert fake.sent == [], "no SMS while the ring holds the modem"
        await calling
        await asyncio.wait_for(texting, 2.0)
    assert [m.to for m in fake.sent] == [LEADER]
    sequence = [c for c in fake.commands if c.startswith(("ATD", "ATH", "AT+CMGS"))]
    assert sequence[-3:] == ["ATD13800010005;", "ATH", sequence[-1]]
    assert sequence[-1].startswith("AT+CMGS")


async def test_a_modem_silent_mid_ring_fails_the_ring_and_the_session_recovers() -> None:
    async with FakeModem() as fake, running(fake, ring_s=5.0, command_timeout_s=0.4, sweep_interval_s=0.3) as village:
        calling = asyncio.create_task(village.caller.send(ring(1)))
        await until(lambda: bool(fake.dials) and fake.dials[0].state == CALL_ALERTING)  # it rings at the far end
        fake.silence(True)
        with pytest.raises(TransientError, match="no answer"):
            await asyncio.wait_for(calling, 3.0)
        assert village.reports == [], "the daemon does not think it placed a call it cannot vouch for"
        await until(lambda: not village.caller.health().ok)
        fake.silence(False)
        await until(lambda: village.caller.health().ok, 10.0)
        # The reopened line's initialisation hung up the call left ringing.
        assert fake.dials[0].ended_by == "ath"
        fake.script_call(NEIGHBOUR_DIALLED, CallScript("answer", after_s=0.1))
        await village.caller.send(ring(2, NEIGHBOUR))
    assert [r.status for r in village.reports] == [CallStatus.ANSWERED]


async def test_an_unplug_mid_ring_fails_it_at_once() -> None:
    async with FakeModem() as fake, running(fake, ring_s=5.0, command_timeout_s=3.0) as village:
        calling = asyncio.create_task(village.caller.send(ring(1)))
        await until(lambda: fake.call is not None)
        await fake.unplug()
        with pytest.raises(TransientError, match="line"):
            await asyncio.wait_for(calling, 1.0)
        await fake.replug()
        await until(lambda: village.caller.health().ok, 10.0)
        fake.script_call(LEADER_DIALLED, CallScript("busy", after_s=0.1))
        await village.caller.send(ring(2))
    assert [r.status for r in village.reports] == [CallStatus.BUSY]


# --- missed-call acknowledgements -----------------------------------------------------------------


async def test_an_incoming_call_is_rejected_at_once_and_submitted_once() -> None:
    async with FakeModem() as fake, running(fake) as village:
        first = fake.incoming_call(LEADER, ring_interval_s=0.1)
        await until(lambda: first.ended_by is not None)
        assert first.rejected, "rejected with ATH, never answered: the caller pays nothing"
        assert first.ended_at is not None
        assert first.ended_at - first.started_at < 0.5
        await until(lambda: len(village.missed) == 1)
        await asyncio.sleep(SETTLE_S + 0.1)  # the caller rings again later: a new call
        second = fake.incoming_call(LEADER, ring_interval_s=0.1)
        await until(lambda: second.rejected and len(village.missed) == 2)
        await asyncio.sleep(0.2)
    one, two = village.missed
    assert (one.phone, one.received_at) == (LEADER, NOW)
    assert two.phone == LEADER
    assert one.call_id != two.call_id
    assert one.call_id is not None
    assert one.call_id.startswith("modem-ring:")


async def test_another_caller_right_after_a_rejected_call_is_a_new_missed_call() -> None:
    # Within the settle time after our ATH, a RING alone is taken for the rejected call's last; a +CLIP with
    # another number is a new call, whatever the timing.
    async with FakeModem() as fake, running(fake) as village:
        first = fake.incoming_call(NEIGHBOUR, ring_interval_s=0.1)
        await until(lambda: first.rejected and len(village.missed) == 1)
        second = fake.incoming_call(LEADER, ring_interval_s=0.1)
        await until(lambda: second.rejected and len(village.missed) == 2)
    assert [m.phone for m in village.missed] == [NEIGHBOUR, LEADER]


async def test_a_burst_of_rings_while_the_modem_is_busy_is_one_missed_call() -> None:
    """RING and +CLIP every 0.1 s while an SMS holds the modem (the fake holds them until its answer, as a
    modem does): they arrive together, and are one call, rejected once."""
    async with FakeModem(send_delay=0.6) as fake, running(fake) as village:
        texting = asyncio.create_task(village.sms.send(Outbound(1, NEIGHBOUR, "测试", 0.0)))
        await fake.wait_for_command("AT+CMGS")
        hangups = len(fake.hangups)
        call = fake.incoming_call(LEADER, ring_interval_s=0.1)
        await texting
        await until(lambda: call.ended_by is not None)
        await asyncio.sleep(0.3)
    assert call.rejected
    assert call.rings >= 3
    assert len(fake.hangups) == hangups + 1
    assert [(m.phone, m.received_at) for m in village.missed] == [(LEADER, NOW)]


async def test_a_caller_who_gives_up_before_the_modem_is_free_is_still_one_missed_call() -> None:
    async with FakeModem(send_delay=0.6) as fake, running(fake) as village:
        texting = asyncio.create_task(village.sms.send(Outbound(1, NEIGHBOUR, "测试", 0.0)))
        await fake.wait_for_command("AT+CMGS")
        call = fake.incoming_call(LEADER, ring_interval_s=0.1, give_up_after_s=0.3)
        await texting
        await until(lambda: len(village.missed) == 1)
        await asyncio.sleep(0.3)
        assert call.ended_by == "gave up"
        again = fake.incoming_call(LEADER, ring_interval_s=0.1)  # at once: after NO CARRIER it is a new call
        await until(lambda: again.rejected and len(village.missed) == 2)
    assert len({m.call_id for m in village.missed}) == 2


@pytest.mark.parametrize(
    ("number", "type_", "validity"), [("", 128, 1), ("", 129, 2), ("anonymous", 128, 0), ("12", 129, 0)]
)
async def test_a_call_without_a_usable_caller_id_is_rejected_and_ignored(
    number: str, type_: int, validity: int
) -> None:
    async with FakeModem() as fake, running(fake) as village:
        call = fake.incoming_call(number, type_=type_, validity=validity, ring_interval_s=0.1)
        await until(lambda: call.ended_by is not None)
        await asyncio.sleep(0.3)
    assert call.rejected
    assert village.missed == []


@pytest.mark.parametrize(("number", "type_"), [("13800138000", 129), ("8613800138000", 145), ("+8613800138000", 145)])
async def test_caller_ids_in_national_or_bare_international_form_are_normalised(number: str, type_: int) -> None:
    async with FakeModem() as fake, running(fake) as village:
        fake.incoming_call(number, type_=type_)
        await until(lambda: len(village.missed) == 1)
    assert village.missed[0].phone == "+8613800138000"


async def test_a_silent_modem_holding_the_dial_fails_it_without_naming_the_number() -> None:
    """Phone numbers reach logs and /healthz only masked: the session names a dial "ATD"."""
    async with (
        FakeModem(dial_style="on_answer") as fake,
        running(fake, ring_s=0.3, command_timeout_s=0.3, sweep_interval_s=0.2) as village,
    ):
        calling = asyncio.create_task(village.caller.send(ring(1)))
        await until(lambda: bool(fake.dials))
        fake.silence(True)
        with pytest.raises(TransientError) as failed:
            await asyncio.wait_for(calling, 3.0)
        await until(lambda: not village.caller.health().ok)
        health = village.caller.health().detail
        fake.silence(False)
        await until(lambda: village.caller.health().ok, 10.0)
    assert "ATD" in str(failed.value)
    assert LEADER_DIALLED not in str(failed.value)
    assert LEADER_DIALLED not in health
    assert village.reports == []


async def test_a_ring_without_caller_id_is_rejected_after_a_moment_and_ignored() -> None:
    async with FakeModem() as fake, running(fake) as village:
        await village.session.command("AT+CLIP=0")  # a modem that forgot caller id: RING alone
        call = fake.incoming_call(LEADER, ring_interval_s=0.1)
        await until(lambda: call.ended_by is not None)
        await asyncio.sleep(0.2)
    assert call.rejected
    assert call.ended_at is not None
    assert CLIP_WAIT_S <= call.ended_at - call.started_at < CLIP_WAIT_S + 0.5
    assert village.missed == []
