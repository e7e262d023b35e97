"""The real TwilioSender (official twilio client, aiohttp) against the fake Twilio on loopback."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from alertd.channels.console import ConsoleSender
from alertd.channels.twilio_sms import TwilioSender
from alertd.core.ports import Outbound
from alertd.errors import PermanentError, TransientError
from tests.fakes.twilio_server import TwilioServer

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f" * 32
FROM = "+15005550006"
LEADER = "+8613800000001"
PATROL = "+8613900000002"
CALLBACK = "http://127.0.0.1:9/twilio/status"
BODY = "【联防】3号户 烟雾报警 14:02，请回复 1 确认"


AUTH = {"Authorization": "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()}


def outbound(address: str = LEADER, body: str = BODY, row: int = 1) -> Outbound:
    return Outbound(id=row, address=address, body=body, created_at=time.time())


@pytest.fixture
async def server() -> AsyncIterator[TwilioServer]:
    async with TwilioServer(SID, TOKEN) as srv:
        yield srv


@pytest.fixture
async def sender(server: TwilioServer) -> AsyncIterator[TwilioSender]:
    s = TwilioSender(SID, TOKEN, FROM, api_base_url=server.base_url, status_callback=CALLBACK, timeout_s=2.0)
    yield s
    await s.close()


async def test_send_returns_sid_and_server_saw_fields(server: TwilioServer, sender: TwilioSender) -> None:
    sid = await sender.send(outbound())

    assert sid.startswith("SM")
    assert len(sid) == 34
    [seen] = server.messages
    assert (seen.sid, seen.to, seen.from_, seen.body) == (sid, LEADER, FROM, BODY)
    assert seen.status_callback == CALLBACK
    assert sender.health().ok


async def test_status_callback_omitted_when_not_configured(server: TwilioServer) -> None:
    s = TwilioSender(SID, TOKEN, FROM, api_base_url=server.base_url)
    try:
        await s.send(outbound())
    finally:
        await s.close()
    assert server.messages[0].status_callback is None


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_server_errors_and_throttling_are_transient(
    server: TwilioServer, sender: TwilioSender, status: int
) -> None:
    server.fail_next(status)
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        await sender.send(outbound())
    assert server.messages == []
    # The script was one response long: the retry goes through.
    assert (await sender.send(outbound())).startswith("SM")


async def test_hang_beyond_timeout_is_transient_and_find_sent_reconciles(server: TwilioServer) -> None:
    s = TwilioSender(SID, TOKEN, FROM, api_base_url=server.base_url, timeout_s=0.2)
    try:
        server.hang_next(0.6)
        message = outbound()
        started = time.monotonic()
        with pytest.raises(TransientError, match="no answer"):
            await s.send(message)
        assert time.monotonic() - started < 0.5
        # Twilio took the message after we gave up: exactly the case find_sent exists for.
        await server.wait_for_messages(1, timeout=2.0)
        assert await s.find_sent(message) == server.messages[0].sid
    finally:
        await s.close()


async def test_invalid_number_is_permanent_with_code_and_masked(server: TwilioServer, sender: TwilioSender) -> None:
    bad = "+8613812345678"
    server.reject_number(bad, code=21211)
    with pytest.raises(PermanentError) as info:
        await sender.send(outbound(address=bad))
    assert info.value.code == "21211"
    assert "+86138****5678" in str(info.value)
    assert bad not in str(info.value)
    # One bad number says nothing about the carrier.
    assert sender.health().ok


async def test_unsubscribed_is_permanent(server: TwilioServer, sender: TwilioSender) -> None:
    server.reject_number(PATROL, code=21610)
    with pytest.raises(PermanentError) as info:
        await sender.send(outbound(address=PATROL))
    assert info.value.code == "21610"
    assert await sender.send(outbound(address=LEADER))


async def test_wrong_token_is_permanent_and_unhealthy(server: TwilioServer) -> None:
    s = TwilioSender(SID, "wrong-token", FROM, api_base_url=server.base_url)
    try:
        with pytest.raises(PermanentError) as info:
            await s.send(outbound())
    finally:
        await s.close()
    assert info.value.code == "20003"
    assert "401" in str(info.value)
    assert server.messages == []
    health = s.health()
    assert not health.ok
    assert "401" in health.detail
    assert "wrong-token" not in health.detail + repr(s)


async def test_connection_refused_is_transient() -> None:
    async with TwilioServer(SID, TOKEN) as gone:
        url = gone.base_url  # a port nobody listens on once the server is closed
    s = TwilioSender(SID, TOKEN, FROM, api_base_url=url)
    try:
        with pytest.raises(TransientError, match="cannot reach"):
            await s.send(outbound())
    finally:
        await s.close()


async def test_health_reports_consecutive_failures_then_recovery(
    server: TwilioServer, sender: TwilioSender, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="alertd")
    server.fail_all(500)
    for n in range(3):
        assert sender.health().ok, f"still ok after {n} failures"
        with pytest.raises(TransientError):
            await sender.send(outbound())
    health = sender.health()
    assert not health.ok
    assert health.detail == "3 consecutive failures: HTTP 500"

    server.recover()
    await sender.send(outbound())
    assert sender.health().ok

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one WARNING when it goes down, not one per failure"
    assert any("recovered" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


async def test_logs_never_hold_numbers_or_token(
    server: TwilioServer, sender: TwilioSender, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # including the twilio library's own loggers
    server.reject_number(PATROL)
    await sender.send(outbound())
    with pytest.raises(PermanentError):
        await sender.send(outbound(address=PATROL))
    await sender.find_sent(outbound())
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "+86138****0001" in text
    for secret in (LEADER, PATROL, TOKEN):
        assert secret not in text


async def test_find_sent_matches_body_and_recipient(server: TwilioServer, sender: TwilioSender) -> None:
    sent = outbound()
    sid = await sender.send(sent)
    await sender.send(outbound(address=PATROL, body="另一条"))

    assert await sender.find_sent(sent) == sid
    assert await sender.find_sent(outbound(body="从未发送")) is None
    assert await sender.find_sent(outbound(address=PATROL, body=BODY)) is None
    # Sent long before this outbox row existed: a different message with the same text.
    later = Outbound(id=9, address=LEADER, body=BODY, created_at=time.time() + 3600)
    assert await sender.find_sent(later) is None


async def test_find_sent_errors_are_translated(server: TwilioServer, sender: TwilioSender) -> None:
    server.fail_next(500)
    with pytest.raises(TransientError):
        await sender.find_sent(outbound())


async def test_find_sent_follows_pages(server: TwilioServer, sender: TwilioSender) -> None:
    first = outbound(body="第一条")
    sid = await sender.send(first)
    for n in range(30):
        await sender.send(outbound(body=f"后续 {n}"))
    # Newest first with a small page size: the first message is on the second page.
    url = f"{server.base_url}/2010-04-01/Accounts/{SID}/Messages.json"
    async with (
        aiohttp.ClientSession(headers=AUTH) as http,
        http.get(url, params={"To": LEADER, "PageSize": "20"}) as resp,
    ):
        page = await resp.json()
    assert len(page["messages"]) == 20
    assert page["next_page_uri"]
    assert await sender.find_sent(first) == sid


async def test_fake_list_filters_by_date_sent(server: TwilioServer, sender: TwilioSender) -> None:
    await sender.send(outbound())
    url = f"{server.base_url}/2010-04-01/Accounts/{SID}/Messages.json"
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.get(url, params={"DateSent>": "2000-01-01"}) as resp:
            assert len((await resp.json())["messages"]) == 1
        async with http.get(url, params={"DateSent>": "2999-01-01T00:00:00Z"}) as resp:
            assert (await resp.json())["messages"] == []
        async with http.get(url, params={"DateSent>": "yesterday"}) as resp:
            assert resp.status == 400
            assert (await resp.json())["code"] == 20001


async def test_fake_webhooks_are_signed_like_twilio(server: TwilioServer, sender: TwilioSender) -> None:
    seen: list[tuple[bool, dict[str, str], str]] = []
    validator = RequestValidator(TOKEN)

    async def hook(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        valid = validator.validate(str(request.url), form, request.headers.get("X-Twilio-Signature", ""))
        seen.append((bool(valid), form, request.headers.get("I-Twilio-Idempotency-Token", "")))
        return web.Response(status=204 if valid else 403)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        sid = await sender.send(outbound())
        assert await server.send_status_callback(sid, "delivered", url) == 204
        assert await server.send_inbound_sms(url, LEADER, "1") == 204
        assert await server.send_inbound_sms(url, LEADER, "1", forge=True) == 403
    finally:
        await runner.cleanup()

    (ok1, status_form, token1), (ok2, sms_form, token2), (ok3, _, _) = seen
    assert (ok1, ok2, ok3) == (True, True, False)
    assert status_form["MessageSid"] == sid
    assert status_form["MessageStatus"] == "delivered"
    assert status_form["To"] == LEADER
    assert sms_form["From"] == LEADER
    assert sms_form["Body"] == "1"
    assert sms_form["AccountSid"] == SID
    assert token1
    assert token2
    assert token1 != token2


async def test_wait_for_messages_times_out(server: TwilioServer) -> None:
    with pytest.raises(TimeoutError):
        await server.wait_for_messages(1, timeout=0.05)


async def test_concurrent_sends(server: TwilioServer, sender: TwilioSender) -> None:
    sids = await asyncio.gather(*(sender.send(outbound(body=f"m{n}", row=n)) for n in range(20)))
    assert len(set(sids)) == 20
    assert {m.body for m in await server.wait_for_messages(20)} == {f"m{n}" for n in range(20)}


async def test_console_sender_masks_and_numbers() -> None:
    out = io.StringIO()
    console = ConsoleSender(out)
    first = await console.send(outbound(body="【联防】烟雾报警\n请确认"))
    second = await console.send(outbound(address=PATROL))

    assert (first, second) == ("console-1", "console-2")
    lines = out.getvalue().splitlines()
    assert lines == [
        "SMS → +86138****0001: 【联防】烟雾报警 ⏎ 请确认",
        f"SMS → +86139****0002: {BODY}",
    ]
    assert LEADER not in out.getvalue()
    assert await console.find_sent(outbound()) is None
    assert console.health().ok


async def test_console_sender_defaults_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    await ConsoleSender().send(outbound(body="hi"))
    assert capsys.readouterr().out == "SMS → +86138****0001: hi\n"
