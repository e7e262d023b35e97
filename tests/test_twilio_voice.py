"""Alert calls: the real TwilioCaller (official client) against the fake Twilio, and the signed voice webhooks
(alertd.web.voice) on a real aiohttp server over a real store, with the fake playing each call end to end."""

from __future__ import annotations

import logging
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from alertd.channels.twilio_voice import Owners, TwilioCaller
from alertd.core.events import CallReport, CallStatus, Input
from alertd.core.model import Kind
from alertd.core.ports import Outbound
from alertd.core.records import Batch, Channel, Incident, Notification, Purpose, State
from alertd.core.results import Result, Verdict
from alertd.errors import PermanentError, StoreFull, TransientError
from alertd.metrics import Metrics
from alertd.store import OutboxRow, Store
from alertd.web.app import DEPS, MAX_BODY, WebDeps
from alertd.web.voice import (
    ACKNOWLEDGED,
    ALREADY_ACKNOWLEDGED,
    INVALID_KEY,
    LANGUAGE,
    NO_KEY,
    ON_SCENE,
    OVER,
    PROMPT,
    VOICE,
    add_voice_routes,
)
from tests.fakes.twilio_server import PlacedCall, TwilioServer

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f" * 32
FROM = "+15005550006"
LEADER = "+8613800000001"
PATROL = "+8613900000002"
PUBLIC = "http://127.0.0.1:9"  # nothing listens: for the carrier's own tests the calls stay queued
BODY = "紧急情况：河口村一组二号户王家，火警"
AUTH = {"Authorization": aiohttp.encode_basic_auth(SID, TOKEN)}


def outbound(row: int = 7, address: str = LEADER, created_at: float | None = None) -> Outbound:
    return Outbound(id=row, address=address, body=BODY, created_at=time.time() if created_at is None else created_at)


@pytest.fixture
async def server() -> AsyncIterator[TwilioServer]:
    async with TwilioServer(SID, TOKEN) as srv:
        yield srv


@pytest.fixture
async def caller(server: TwilioServer) -> AsyncIterator[TwilioCaller]:
    for number in (LEADER, PATROL):
        server.script_call(number, "queued")
    c = TwilioCaller(SID, TOKEN, FROM, PUBLIC + "/", api_base_url=server.base_url, timeout_s=2.0)
    yield c
    await c.close()


# --- the carrier ---------------------------------------------------------------------------------------


async def test_a_call_is_placed_with_its_webhooks_and_machine_detection(
    server: TwilioServer, caller: TwilioCaller
) -> None:
    sid = await caller.send(outbound(row=7))

    assert sid.startswith("CA")
    assert len(sid) == 34
    [call] = server.calls
    assert (call.sid, call.to, call.from_) == (sid, LEADER, FROM)
    assert (call.url, call.method) == (f"{PUBLIC}/twilio/voice?n=7", "POST")
    assert (call.status_callback, call.status_callback_method) == (f"{PUBLIC}/twilio/voice/status?n=7", "POST")
    assert call.status_events == ("answered", "completed")
    assert call.machine_detection == "Enable"
    assert call.timeout == 30
    assert call.status == "queued"
    assert caller.health().ok


async def test_ring_time_is_configurable(server: TwilioServer) -> None:
    server.script_call(LEADER, "queued")
    c = TwilioCaller(SID, TOKEN, FROM, PUBLIC, api_base_url=server.base_url, ring_s=20)
    try:
        await c.send(outbound())
    finally:
        await c.close()
    assert server.calls[0].timeout == 20


async def test_invalid_number_is_permanent_with_code_and_masked(server: TwilioServer, caller: TwilioCaller) -> None:
    bad = "+8613812345678"
    server.reject_number(bad, code=21211)
    with pytest.raises(PermanentError) as info:
        await caller.send(outbound(address=bad))
    assert info.value.code == "21211"
    assert "+86138****5678" in str(info.value)
    assert bad not in str(info.value)
    assert server.calls == []
    assert caller.health().ok, "one bad number says nothing about the carrier"


async def test_wrong_token_is_permanent_and_unhealthy(server: TwilioServer) -> None:
    c = TwilioCaller(SID, "wrong-token", FROM, PUBLIC, api_base_url=server.base_url)
    try:
        with pytest.raises(PermanentError) as info:
            await c.send(outbound())
    finally:
        await c.close()
    assert info.value.code == "20003"
    assert server.calls == []
    assert not c.health().ok
    assert "wrong-token" not in c.health().detail + repr(c)


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_server_errors_and_throttling_are_transient(
    server: TwilioServer, caller: TwilioCaller, status: int
) -> None:
    server.fail_next(status)
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        await caller.send(outbound())
    assert server.calls == []
    assert (await caller.send(outbound())).startswith("CA")


async def test_connection_refused_is_transient() -> None:
    async with TwilioServer(SID, TOKEN) as gone:
        url = gone.base_url
    c = TwilioCaller(SID, TOKEN, FROM, PUBLIC, api_base_url=url)
    try:
        with pytest.raises(TransientError, match="cannot reach"):
            await c.send(outbound())
    finally:
        await c.close()


async def test_a_timed_out_call_that_twilio_placed_is_found_not_placed_again(server: TwilioServer) -> None:
    server.script_call(LEADER, "queued")  # still in Twilio's queue: no start time yet, found all the same
    c = TwilioCaller(SID, TOKEN, FROM, PUBLIC, api_base_url=server.base_url, timeout_s=0.2)
    try:
        server.hang_next(0.6)
        message = outbound()
        with pytest.raises(TransientError, match="no answer"):
            await c.send(message)
        [call] = await server.wait_for_calls(1, timeout=2.0)
        assert call.start_time is None
        assert await c.find_sent(message) == call.sid
    finally:
        await c.close()


async def test_find_sent_finds_this_rows_call_and_no_other(server: TwilioServer, caller: TwilioCaller) -> None:
    first, second = outbound(row=1), outbound(row=2)
    sid1 = await caller.send(first)
    sid2 = await caller.send(second)
    await caller.send(outbound(row=3, address=PATROL))

    assert await caller.find_sent(first) == sid1
    assert await caller.find_sent(second) == sid2
    # Never placed: both calls to that number belong to other rows, so neither may be taken for it.
    assert await caller.find_sent(outbound(row=4)) is None
    # Planned after every call there was (beyond the clock skew allowed): none can be its.
    assert await caller.find_sent(outbound(row=5, created_at=time.time() + 3600)) is None
    assert await caller.find_sent(outbound(row=6, address="+8613700000003")) is None


async def test_after_a_restart_one_unclaimed_call_is_taken_two_are_not(server: TwilioServer) -> None:
    server.script_call(LEADER, "queued")
    before = TwilioCaller(SID, TOKEN, FROM, PUBLIC, api_base_url=server.base_url)

    async def restarted(row: int, owners: Owners | None = None) -> str | None:
        """find_sent in a new process: nothing remembered of the calls placed before."""
        after = TwilioCaller(SID, TOKEN, FROM, PUBLIC, api_base_url=server.base_url, owners=owners)
        try:
            return await after.find_sent(outbound(row=row))
        finally:
            await after.close()

    try:
        sid1 = await before.send(outbound(row=1))
        assert await restarted(1) == sid1
        sid2 = await before.send(outbound(row=2))
    finally:
        await before.close()
    # Two calls to the number, neither known to be row 2's: unknown, so row 2 is called again.
    assert await restarted(2) is None

    async def store_says(sids: Sequence[str]) -> Mapping[str, int]:
        held = {sid1: 1}  # the store: row 1 holds the first call (row 2's answer was lost in the crash)
        return {sid: held[sid] for sid in sids if sid in held}

    assert await restarted(2, store_says) == sid2
    assert await restarted(1, store_says) == sid1


async def test_find_sent_errors_are_transient(server: TwilioServer, caller: TwilioCaller) -> None:
    server.fail_next(500)
    with pytest.raises(TransientError):
        await caller.find_sent(outbound())
    server.refuse_lookups(403)
    with pytest.raises(PermanentError):  # the outbox treats any lookup failure as "unknown": sent again
        await caller.find_sent(outbound())


async def test_logs_never_hold_numbers_or_token(
    server: TwilioServer, caller: TwilioCaller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # including the twilio library's own loggers
    server.reject_number(PATROL)
    message = outbound()
    await caller.send(message)
    with pytest.raises(PermanentError):
        await caller.send(outbound(address=PATROL))
    restarted = TwilioCaller(SID, TOKEN, FROM, PUBLIC, api_base_url=server.base_url)
    try:
        assert await restarted.find_sent(message) is not None
    finally:
        await restarted.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "+86138****0001" in text
    for secret in (LEADER, PATROL, TOKEN):
        assert secret not in text


async def test_fake_lists_calls_like_twilio(server: TwilioServer, caller: TwilioCaller) -> None:
    for n in range(25):
        await caller.send(outbound(row=n))
    await caller.send(outbound(row=99, address=PATROL))
    url = f"{server.base_url}/2010-04-01/Accounts/{SID}/Calls.json"
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.get(url, params={"To": LEADER, "PageSize": "20"}) as resp:
            page = await resp.json()
        assert len(page["calls"]) == 20
        assert page["next_page_uri"]
        newest = page["calls"][0]
        assert newest["sid"] == server.calls[24].sid, "newest first"
        assert {"sid", "to", "from", "status", "start_time", "date_created", "answered_by", "uri"} <= set(newest)
        assert newest["status"] == "queued"
        async with http.get(url, params={"StartTime>": "2000-01-01"}) as resp:
            assert (await resp.json())["calls"] == [], "a queued call has not started"
        async with http.get(url, params={"From": FROM, "To": PATROL}) as resp:
            assert [c["to"] for c in (await resp.json())["calls"]] == [PATROL]
        async with http.get(url, params={"StartTime>": "soon"}) as resp:
            assert resp.status == 400
        async with http.post(url, data={"To": LEADER, "From": FROM}) as resp:
            assert resp.status == 400, "a call needs a Url"
        async with http.post(
            url, data={"To": LEADER, "From": FROM, "Url": PUBLIC, "StatusCallbackEvent": "hungup"}
        ) as resp:
            assert (resp.status, (await resp.json())["code"]) == (400, 21626)


# --- the webhooks, with the fake playing calls end to end ----------------------------------------------


@dataclass
class Engine:
    """Stands in for the engine: records what it is given and answers `result` (or raises `error`)."""

    result: Result = field(default_factory=lambda: Result(Verdict.ACTED, 1, "acknowledged", 12.0))
    error: Exception | None = None
    reports: list[CallReport] = field(default_factory=list)

    async def call(self, event: Input) -> Result:
        assert isinstance(event, CallReport)
        self.reports.append(event)
        if self.error is not None:
            raise self.error
        return self.result


@dataclass
class Hooks:
    url: str
    engine: Engine
    store: Store
    row: OutboxRow
    incident: Incident
    metrics: Metrics


@pytest.fixture
async def hooks(tmp_path: Path) -> AsyncIterator[Hooks]:
    store = await Store.open(tmp_path / "alertd.db")
    now = time.time()
    incident = Incident(1, "h02", "g1", Kind.FIRE, "default", State.OPEN, now, now)
    # No voice channel in the outbox yet: the row is what the call speaks (its body), whatever its channel.
    note = Notification(1, 0, Channel.SMS, Purpose.ALERT, "p01", LEADER, BODY)
    await store.commit(Batch(now, incidents={1: incident}, notifications=[note]))
    (row,) = await store.notifications(1)
    # Bound first: the app's public URL (which Twilio signs) must be known before the app is frozen.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    engine, metrics = Engine(), Metrics()
    app = web.Application(client_max_size=MAX_BODY)
    app[DEPS] = WebDeps(engine.call, store, metrics, {}, auth_token=TOKEN, public_url=url)
    add_voice_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield Hooks(url, engine, store, row, incident, metrics)
    finally:
        await runner.cleanup()
        await store.close()


async def play(server: TwilioServer, hooks: Hooks) -> PlacedCall:
    """Place the alert call for the fixture's row and wait until the fake has played it to the end."""
    caller = TwilioCaller(SID, TOKEN, FROM, hooks.url, api_base_url=server.base_url)
    try:
        row = hooks.row
        sid = await caller.send(Outbound(row.id, row.address, row.body, row.created_at))
    finally:
        await caller.close()
    call = await server.call_ended(sid)
    assert call.errors == []
    assert all(w.status in (200, 204) for w in call.webhooks), [(w.kind, w.status) for w in call.webhooks]
    assert all(s.language == LANGUAGE and s.voice == VOICE for s in call.said)
    return call


def report(
    hooks: Hooks,
    call: PlacedCall,
    status: CallStatus,
    *,
    digits: str | None = None,
    machine: bool = False,
    token: str | None = None,
) -> CallReport:
    return CallReport(hooks.row.id, status, digits, machine, provider_id=call.sid, token=token)


def tokens(call: PlacedCall) -> list[str]:
    return [w.headers["I-Twilio-Idempotency-Token"] for w in call.callbacks]


async def signed_post(server: TwilioServer, url: str, params: dict[str, str]) -> tuple[int, str]:
    headers = {"X-Twilio-Signature": server.sign(url, params)}
    async with aiohttp.ClientSession() as http, http.post(url, data=params, headers=headers) as resp:
        return resp.status, await resp.text()


async def test_key_1_acknowledges(server: TwilioServer, hooks: Hooks) -> None:
    server.script_call(LEADER, "human", press="1")
    call = await play(server, hooks)

    assert call.texts == [BODY, BODY, PROMPT, ACKNOWLEDGED]
    assert call.digits == ["1"]
    answered, completed = tokens(call)
    assert hooks.engine.reports == [
        report(hooks, call, CallStatus.ANSWERED, token=answered),
        report(hooks, call, CallStatus.ANSWERED, digits="1", token=f"{call.sid}:key:1"),
        report(hooks, call, CallStatus.COMPLETED, token=completed),
    ]
    assert [w.kind for w in call.documents] == ["twiml", "gather"]
    assert all(w.content_type == "application/xml" for w in call.documents)


async def test_the_twiml_asks_for_one_key_in_mandarin(server: TwilioServer, hooks: Hooks) -> None:
    call = await play(server, hooks)  # unscripted: a person answers and presses nothing

    root = ET.fromstring(call.documents[0].body)  # noqa: S314 (our own TwiML)
    gather, after, hangup = list(root)
    assert gather.tag == "Gather"
    n = hooks.row.id
    assert gather.attrib == {
        "input": "dtmf",
        "numDigits": "1",
        "action": f"{hooks.url}/twilio/voice/gather?n={n}",
        "method": "POST",
        "timeout": "8",
    }
    assert [v.tag for v in gather] == ["Say", "Pause", "Say", "Say"]
    assert (after.tag, after.text, hangup.tag) == ("Say", NO_KEY, "Hangup")
    assert call.texts == [BODY, BODY, PROMPT, NO_KEY]
    assert call.digits == []
    assert [r.status for r in hooks.engine.reports] == [CallStatus.ANSWERED, CallStatus.COMPLETED]
    assert all(r.digits is None for r in hooks.engine.reports)


async def test_key_2_records_on_scene(server: TwilioServer, hooks: Hooks) -> None:
    server.script_call(LEADER, "human", press="2")
    hooks.engine.result = Result(Verdict.ACTED, 1, "on_scene")
    call = await play(server, hooks)

    assert call.texts[-1] == ON_SCENE
    assert [r.digits for r in hooks.engine.reports] == [None, "2", None]
    assert hooks.engine.reports[1] == report(hooks, call, CallStatus.ANSWERED, digits="2", token=f"{call.sid}:key:2")


async def test_key_9_repeats_the_alert_then_1(server: TwilioServer, hooks: Hooks) -> None:
    server.script_call(LEADER, "human", press=["9", "1"])
    call = await play(server, hooks)

    assert call.texts == [BODY, BODY, PROMPT, BODY, BODY, PROMPT, ACKNOWLEDGED]
    assert call.digits == ["9", "1"]
    assert [w.kind for w in call.documents] == ["twiml", "gather", "redirect", "gather"]
    assert [r.digits for r in hooks.engine.reports] == [None, "1", None], "9 is no report"


async def test_another_key_is_invalid_and_the_alert_is_repeated(server: TwilioServer, hooks: Hooks) -> None:
    server.script_call(LEADER, "human", press="5")
    call = await play(server, hooks)

    assert call.texts == [BODY, BODY, PROMPT, INVALID_KEY, BODY, BODY, PROMPT, NO_KEY]
    assert all(r.digits is None for r in hooks.engine.reports)


async def test_a_machine_hears_the_alert_once_and_never_acknowledges(server: TwilioServer, hooks: Hooks) -> None:
    server.script_call(LEADER, "machine", press="1")  # a voicemail menu's tone must not count either
    call = await play(server, hooks)

    assert call.answered_by == "machine_start"
    assert call.texts == [BODY]
    assert call.digits == []
    answered, completed = tokens(call)
    assert hooks.engine.reports == [
        report(hooks, call, CallStatus.ANSWERED, machine=True, token=answered),
        report(hooks, call, CallStatus.ANSWERED, machine=True, token=f"{call.sid}:machine"),
        report(hooks, call, CallStatus.COMPLETED, machine=True, token=completed),
    ]


async def test_keys_from_a_machine_are_never_reported(server: TwilioServer, hooks: Hooks) -> None:
    url = f"{hooks.url}/twilio/voice/gather?n={hooks.row.id}"
    params = {"CallSid": "CA" + "1" * 32, "Digits": "1", "AnsweredBy": "machine_end_beep", "To": LEADER}
    status, body = await signed_post(server, url, params)
    assert status == 200
    assert [v.tag for v in ET.fromstring(body)] == ["Hangup"]  # noqa: S314
    assert hooks.engine.reports == []


@pytest.mark.parametrize(("answer", "status"), [("busy", CallStatus.BUSY), ("no-answer", CallStatus.NO_ANSWER)])
async def test_busy_and_no_answer_are_reported(
    server: TwilioServer, hooks: Hooks, answer: str, status: CallStatus
) -> None:
    server.script_call(LEADER, answer)
    call = await play(server, hooks)

    assert call.documents == [], "no TwiML for a call nobody answered"
    assert call.statuses == [answer]
    assert hooks.engine.reports == [report(hooks, call, status, token=tokens(call)[0])]


async def test_progress_that_is_no_outcome_is_not_reported(server: TwilioServer, hooks: Hooks) -> None:
    url = f"{hooks.url}/twilio/voice/status?n={hooks.row.id}"
    for progress in ("queued", "initiated", "ringing"):
        assert await signed_post(server, url, {"CallSid": "CA" + "2" * 32, "CallStatus": progress}) == (204, "")
    assert hooks.engine.reports == []


async def test_a_forged_or_altered_request_is_refused(server: TwilioServer, hooks: Hooks) -> None:
    server.script_call(LEADER, "busy")
    call = await play(server, hooks)
    [captured] = call.callbacks
    hooks.engine.reports.clear()

    altered = {**captured.params, "CallStatus": "completed"}
    assert await server.replay_webhook(captured.url, altered, captured.headers) == 403
    other_row = captured.url.replace(f"n={hooks.row.id}", f"n={hooks.row.id + 1}")
    assert await server.replay_webhook(other_row, captured.params, captured.headers) == 403
    forged = {**captured.headers, "X-Twilio-Signature": server.sign(captured.url, altered)[::-1]}
    assert await server.replay_webhook(captured.url, captured.params, forged) == 403
    twiml = f"{hooks.url}/twilio/voice?n={hooks.row.id}"
    assert await server.replay_webhook(twiml, {"CallSid": call.sid}, {"X-Twilio-Signature": "x"}) == 403
    assert hooks.engine.reports == []
    assert hooks.metrics.registry.get_sample_value("alertd_invalid_messages_total", {"reason": "bad_signature"}) == 4


async def test_a_replayed_status_callback_is_reported_with_the_same_token(server: TwilioServer, hooks: Hooks) -> None:
    server.script_call(LEADER, "no-answer")
    call = await play(server, hooks)
    [captured] = call.callbacks

    assert await server.replay_webhook(captured.url, captured.params, captured.headers) == 204
    first, again = hooks.engine.reports
    assert first == again, "the same report, token and all: the engine records it once"
    assert first.token == captured.headers["I-Twilio-Idempotency-Token"]


async def test_an_unknown_notification_hangs_up(server: TwilioServer, hooks: Hooks) -> None:
    for path in ("/twilio/voice", "/twilio/voice/gather"):
        status, body = await signed_post(server, f"{hooks.url}{path}?n=999", {"CallSid": "CA1", "Digits": "1"})
        assert status == 200
        assert [v.tag for v in ET.fromstring(body)] == ["Hangup"]  # noqa: S314
    assert hooks.engine.reports == []


async def test_someone_else_acknowledged_first(server: TwilioServer, hooks: Hooks) -> None:
    acknowledged = replace(hooks.incident, state=State.ACKNOWLEDGED, acknowledged_at=hooks.incident.opened_at + 5)
    await hooks.store.commit(Batch(time.time(), incidents={1: acknowledged}))
    hooks.engine.result = Result(Verdict.REFUSED, 1, "incident 1 is already acknowledged")
    server.script_call(LEADER, "human", press="1")
    call = await play(server, hooks)

    assert call.texts[-1] == ALREADY_ACKNOWLEDGED
    assert [r.digits for r in hooks.engine.reports] == [None, "1", None]


async def test_a_key_for_an_incident_that_is_over(server: TwilioServer, hooks: Hooks) -> None:
    resolved = replace(hooks.incident, state=State.RESOLVED, resolved_at=hooks.incident.opened_at + 60)
    await hooks.store.commit(Batch(time.time(), incidents={1: resolved}))
    hooks.engine.result = Result(Verdict.REFUSED, 1, "incident 1 is already resolved")
    server.script_call(LEADER, "human", press="2")
    call = await play(server, hooks)

    assert call.texts[-1] == OVER


async def test_a_key_the_engine_could_not_record_is_said_so(server: TwilioServer, hooks: Hooks) -> None:
    hooks.engine.error = StoreFull("disk full")
    server.script_call(LEADER, "human", press="1")
    caller = TwilioCaller(SID, TOKEN, FROM, hooks.url, api_base_url=server.base_url)
    try:
        sid = await caller.send(Outbound(hooks.row.id, LEADER, BODY, hooks.row.created_at))
    finally:
        await caller.close()
    call = await server.call_ended(sid)

    # The key press is answered all the same (the person hears to reply by SMS); the status callbacks get
    # 500, which Twilio may retry.
    assert [w.status for w in call.webhooks] == [500, 200, 200, 500]
    assert call.texts[-1] == "未能记录您的按键，请回复短信1"
