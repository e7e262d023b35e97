"""The real AliyunSender (the official Dysmsapi SDK) against the fake Aliyun on loopback, which checks the
SDK's ACS3-HMAC-SHA256 signatures. Times are fixed epochs around midnight China time, never the wall clock."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import pytest

from alertd.channels.aliyun_sms import FOUND_BY_OUT_ID, AliyunSender, aliyun_number, send_date
from alertd.core.ports import Outbound
from alertd.errors import PermanentError, TransientError
from alertd.phones import mask
from tests.fakes.aliyun_server import AliyunServer

KEY_ID = "LTAI5tFakeKeyId7Qm2Xw9Zp"
SECRET = "FakeSecret-Zq8Vn3Lr6Tk1Wy4Hb7Jd0"
SIGN = "联防"
ALERT_TEXT = "${household}${kind}！${time} 回1收到 2到场 3解除 #${code}"
REGISTERED = {"SMS_4658001": ALERT_TEXT, "SMS_4658002": "${household}${device}${condition}，请上门检查 ${time}"}
TEMPLATES = {"alert": "SMS_4658001", "maintenance": "SMS_4658002"}
LEADER = "+8613800138000"
PATROL = "+8613900139000"
HONG_KONG = "+85291234567"
PARAMS = (("household", "2号户 王家"), ("kind", "求救"), ("time", "00:00"), ("code", "17"))

# 2024-06-01 00:00:00 in China (UTC+8), which is still 2024-05-31 in UTC.
MIDNIGHT = 1717171200.0
BIZ_ID = re.compile(r"[0-9]{18}\^0")


def outbound(row: int = 1, address: str = LEADER, *, created_at: float = MIDNIGHT + 5, kind: str = "alert") -> Outbound:
    return Outbound(
        id=row,
        address=address,
        body="2号户 王家 求救",
        created_at=created_at,
        urgent=True,
        template=kind,
        params=PARAMS,
    )


@pytest.fixture
async def server() -> AsyncIterator[AliyunServer]:
    async with AliyunServer(KEY_ID, SECRET, sign_names={SIGN}, templates=REGISTERED, clock=lambda: MIDNIGHT + 6) as s:
        yield s


@pytest.fixture
async def sender(server: AliyunServer) -> AsyncIterator[AliyunSender]:
    s = AliyunSender(KEY_ID, SECRET, SIGN, TEMPLATES, server.base_url, timeout_s=2.0, clock=lambda: MIDNIGHT + 60)
    yield s
    await s.close()


def queried_dates(server: AliyunServer) -> list[str]:
    return [params["SendDate"] for action, params in server.calls if action == "QuerySendDetails"]


async def test_send_carries_sign_template_params_number_and_out_id(server: AliyunServer, sender: AliyunSender) -> None:
    biz_id = await sender.send(outbound(row=41))

    assert BIZ_ID.fullmatch(biz_id)
    [seen] = server.messages
    assert seen.biz_id == biz_id
    assert seen.phone == "13800138000"  # a mainland number goes without +86
    assert (seen.sign_name, seen.template_code, seen.out_id) == (SIGN, "SMS_4658001", "41")
    assert seen.template_param == dict(PARAMS)
    assert sender.health().ok


async def test_number_outside_the_mainland_keeps_its_country_code(server: AliyunServer, sender: AliyunSender) -> None:
    await sender.send(outbound(address=HONG_KONG))

    assert server.messages[0].phone == "85291234567"
    assert aliyun_number("+8613800138000") == "13800138000"


async def test_message_without_params_sends_no_template_param() -> None:
    bare = Outbound(id=3, address=LEADER, body="x", created_at=MIDNIGHT, template="alert")
    registered = AliyunServer(KEY_ID, SECRET)  # accepts any template, so a parameterless one too
    async with registered:
        s = AliyunSender(KEY_ID, SECRET, SIGN, TEMPLATES, registered.base_url, timeout_s=2.0)
        try:
            await s.send(bare)
        finally:
            await s.close()
    assert "TemplateParam" not in registered.calls[0][1]
    assert registered.messages[0].template_param == {}


@pytest.mark.parametrize(
    ("key_id", "secret", "code"),
    [
        (KEY_ID, SECRET + "x", "SignatureDoesNotMatch"),
        ("LTAI5tSomebodyElse000000", SECRET, "InvalidAccessKeyId.NotFound"),
    ],
)
async def test_wrong_credentials_are_refused_and_make_the_carrier_unhealthy(
    server: AliyunServer, key_id: str, secret: str, code: str
) -> None:
    s = AliyunSender(key_id, secret, SIGN, TEMPLATES, server.base_url, timeout_s=2.0)
    try:
        with pytest.raises(TransientError, match=re.escape(code)):
            await s.send(outbound())
        health = s.health()
    finally:
        await s.close()

    assert server.messages == []
    # At once, not after several failures: failover must move the traffic to another carrier.
    assert not health.ok
    assert code in health.detail


@pytest.mark.parametrize("code", ["isv.AMOUNT_NOT_ENOUGH", "isv.SMS_SIGNATURE_ILLEGAL", "isv.OUT_OF_SERVICE"])
async def test_account_problems_are_transient_and_unhealthy_until_a_send_works(
    server: AliyunServer, sender: AliyunSender, code: str
) -> None:
    server.fail_next(code)  # a business error: HTTP 200 with this Code

    with pytest.raises(TransientError, match=re.escape(code)):
        await sender.send(outbound())
    assert not sender.health().ok
    assert code in sender.health().detail

    await sender.send(outbound())
    assert sender.health().ok


async def test_refused_account_stays_unhealthy_through_a_bad_number(server: AliyunServer, sender: AliyunSender) -> None:
    server.fail_next("isv.AMOUNT_NOT_ENOUGH")
    with pytest.raises(TransientError):
        await sender.send(outbound(row=1))
    server.reject_number(PATROL)
    with pytest.raises(PermanentError):
        await sender.send(outbound(row=2, address=PATROL))  # Aliyun answers, but that pays no bill

    assert not sender.health().ok
    assert "isv.AMOUNT_NOT_ENOUGH" in sender.health().detail


async def test_unregistered_template_makes_the_carrier_unhealthy(server: AliyunServer) -> None:
    s = AliyunSender(KEY_ID, SECRET, SIGN, {"alert": "SMS_0000000"}, server.base_url, timeout_s=2.0)
    try:
        with pytest.raises(TransientError, match=r"isv\.SMS_TEMPLATE_ILLEGAL"):
            await s.send(outbound())
        assert not s.health().ok
    finally:
        await s.close()


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("isv.BUSINESS_LIMIT_CONTROL", None),
        ("Throttling.User", None),
        ("isp.SYSTEM_ERROR", None),
        ("ServiceUnavailable", None),
        (None, 500),
        ("SomethingAliyunAddsLater", None),
    ],
)
async def test_throttling_and_server_errors_are_transient_and_recovery_heals(
    server: AliyunServer, sender: AliyunSender, code: str | None, status: int | None
) -> None:
    server.fail_next(code, status=status, times=3)

    for attempt in range(1, 4):
        with pytest.raises(TransientError):
            await sender.send(outbound())
        # Unhealthy only after three in a row (unhealthy_after), not at the first throttled message.
        assert sender.health().ok == (attempt < 3)
    assert server.messages == []

    await sender.send(outbound())
    assert sender.health().ok
    assert len(server.messages) == 1


async def test_bad_number_is_permanent_with_the_number_masked(server: AliyunServer, sender: AliyunSender) -> None:
    server.reject_number(LEADER)  # the fake's message quotes the number, bare

    with pytest.raises(PermanentError) as caught:
        await sender.send(outbound())

    assert caught.value.code == "isv.MOBILE_NUMBER_ILLEGAL"
    text = str(caught.value)
    assert "13800138000" not in text
    assert mask(LEADER) in text
    assert sender.health().ok  # Aliyun answered: the carrier works


async def test_kind_without_template_is_permanent_and_never_sent(server: AliyunServer, sender: AliyunSender) -> None:
    with pytest.raises(PermanentError, match="'digest'") as caught:
        await sender.send(outbound(kind="digest"))

    assert caught.value.code == "no_template"
    assert server.request_count == 0
    assert sender.health().ok


async def test_hang_beyond_timeout_is_transient_within_bounded_time(server: AliyunServer) -> None:
    s = AliyunSender(KEY_ID, SECRET, SIGN, TEMPLATES, server.base_url, timeout_s=0.5)
    try:
        await s.send(outbound(row=1))  # the SDK is imported and the client built before the clock runs
        server.hang_next(30)
        started = time.monotonic()
        with pytest.raises(TransientError, match=r"no answer from Aliyun within 0\.5 s"):
            await s.send(outbound(row=2))
        assert time.monotonic() - started < 1.5
        assert server.hanging == 1
        # The stuck call holds one thread; the next message still goes out.
        await s.send(outbound(row=3))
    finally:
        await s.close()
    assert [m.out_id for m in server.messages] == ["1", "3"]


async def test_find_sent_after_a_crash_by_out_id(server: AliyunServer, sender: AliyunSender) -> None:
    sent = outbound(row=41, created_at=MIDNIGHT + 5)
    await sender.send(outbound(row=40))
    await sender.send(sent)
    await sender.send(outbound(row=41, address=PATROL))  # the same row id to another number is not it
    restarted = AliyunSender(
        KEY_ID, SECRET, SIGN, TEMPLATES, server.base_url, timeout_s=2.0, clock=lambda: MIDNIGHT + 60
    )
    try:
        found = await restarted.find_sent(sent)
        never_sent = await restarted.find_sent(outbound(row=42))
        to_nobody = await restarted.find_sent(outbound(row=41, address=HONG_KONG))
    finally:
        await restarted.close()

    assert found == f"{FOUND_BY_OUT_ID}41"
    assert never_sent is None
    assert to_nobody is None
    # Filed under 1 June, China time: the UTC date (31 May) alone would have missed it.
    assert server.messages[1].send_date == "20240601"
    assert "20240601" in queried_dates(server)


@pytest.mark.parametrize(
    ("created_at", "accepted_at", "queried"),
    [
        # Created and taken on 31 May; the restart asks on 1 June: today first, then the day before.
        (MIDNIGHT - 2, MIDNIGHT - 1, ["20240601", "20240531"]),
        # Created at 23:59:59 on 31 May, taken by Aliyun at 00:00:01 on 1 June: filed under 1 June.
        (MIDNIGHT - 1, MIDNIGHT + 1, ["20240601"]),
    ],
)
async def test_find_sent_across_midnight(
    server: AliyunServer, created_at: float, accepted_at: float, queried: list[str]
) -> None:
    server.clock = lambda: accepted_at
    message = outbound(row=7, created_at=created_at)
    first = AliyunSender(KEY_ID, SECRET, SIGN, TEMPLATES, server.base_url, timeout_s=2.0)
    later = AliyunSender(KEY_ID, SECRET, SIGN, TEMPLATES, server.base_url, timeout_s=2.0, clock=lambda: MIDNIGHT + 30)
    try:
        await first.send(message)
        found = await later.find_sent(message)
    finally:
        await first.close()
        await later.close()

    assert found == f"{FOUND_BY_OUT_ID}7"
    assert queried_dates(server) == queried


@pytest.fixture
def machine_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Sets the process's local time zone (TZ) for a test; the machine's own is back afterwards."""

    def use(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


def test_send_date_is_china_time_whatever_the_machine_zone(machine_zone: Callable[[str], None]) -> None:
    for zone in ("UTC", "America/Los_Angeles", "Pacific/Kiritimati"):
        machine_zone(zone)
        assert send_date(MIDNIGHT - 1) == "20240531"
        assert send_date(MIDNIGHT) == "20240601"
        assert send_date(MIDNIGHT + 86399) == "20240601"


async def test_delivery_reports_waiting_delivered_and_failed(server: AliyunServer, sender: AliyunSender) -> None:
    delivered = await sender.send(outbound(row=1))
    failed = await sender.send(outbound(row=2))
    sent_at = MIDNIGHT + 6

    assert await sender.delivery(LEADER, delivered, sent_at) is None  # waiting for the handset

    server.set_delivery(delivered, "delivered")
    server.set_delivery(failed, "failed", "MK:0001")
    assert await sender.delivery(LEADER, delivered, sent_at) == ("delivered", None)
    assert await sender.delivery(LEADER, failed, sent_at) == ("undelivered", "MK:0001")
    # Asked by BizId, on the day Aliyun filed the message under.
    query = [params for action, params in server.calls if action == "QuerySendDetails"][-1]
    assert (query["BizId"], query["SendDate"], query["PhoneNumber"]) == (failed, "20240601", "13800138000")


async def test_delivery_of_a_message_found_after_a_crash(server: AliyunServer, sender: AliyunSender) -> None:
    message = outbound(row=9)
    biz_id = await sender.send(message)
    found = await sender.find_sent(message)
    assert found is not None

    assert await sender.delivery(LEADER, found, MIDNIGHT + 6) is None
    server.set_delivery(biz_id, "delivered")
    assert await sender.delivery(LEADER, found, MIDNIGHT + 6) == ("delivered", None)


async def test_logs_hold_no_secret_and_no_unmasked_number(
    server: AliyunServer, sender: AliyunSender, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's and urllib3's included
    wrong = AliyunSender(KEY_ID, "not-" + SECRET, SIGN, TEMPLATES, server.base_url, timeout_s=2.0)
    try:
        biz_id = await sender.send(outbound(row=1))
        await sender.find_sent(outbound(row=1))
        await sender.delivery(LEADER, biz_id, MIDNIGHT + 6)
        server.fail_next("isv.BUSINESS_LIMIT_CONTROL")
        with pytest.raises(TransientError):
            await sender.send(outbound(row=2))
        await sender.send(outbound(row=2))
        server.reject_number(PATROL)
        with pytest.raises(PermanentError):
            await sender.send(outbound(row=3, address=PATROL))
        with pytest.raises(PermanentError):
            await sender.send(outbound(row=4, kind="digest"))
        with pytest.raises(TransientError):
            await wrong.send(outbound(row=5))
    finally:
        await wrong.close()

    assert caplog.records, "the scenario logs something"
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (SECRET, "not-" + SECRET):
        assert secret not in logged
        assert secret not in repr(sender)
        assert secret not in repr(wrong)
    for number in (LEADER, PATROL):
        assert number.removeprefix("+86") not in logged
    assert mask(PATROL) in caplog.text


async def test_fake_refuses_unsigned_requests(server: AliyunServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.base_url}/?PhoneNumbers=13800138000&SignName=x&TemplateCode=SMS_4658001",
            headers={"x-acs-action": "SendSms", "x-acs-version": "2017-05-25"},
        ) as response,
    ):
        body = await response.json()
    assert response.status == 400
    assert body["Code"] == "IncompleteSignature"
    assert server.messages == []
