"""The daemon with its carriers, end to end (issue 12): the daemon as `alertd run` assembles it (in this
process), the real broker, and the Twilio- and Aliyun-shaped servers on loopback driven by the real SDKs.
An alert call is placed, speaks the alert in Mandarin and its key acknowledges; Aliyun sends the alert as
its registered template; when Aliyun fails, Twilio takes the text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alertd.config import load_config
from alertd.core.incidents import Channel, State
from alertd.failpoints import AFTER_CALL
from alertd.report import show
from alertd.store import Status, Store
from tests.fakes.aliyun_server import AliyunServer
from tests.fakes.twilio_server import TwilioServer
from tests.harness import (
    ALIYUN_KEY_ID,
    ALIYUN_SECRET,
    ALIYUN_SIGN,
    ALIYUN_TEMPLATES,
    DaemonProcess,
    forget_session,
    leader_phone,
    running_daemon,
    terminals,
    write_village,
)


@pytest.fixture
async def aliyun() -> AsyncIterator[AliyunServer]:
    async with AliyunServer(ALIYUN_KEY_ID, ALIYUN_SECRET) as server:
        yield server


async def _store_view(path: Path) -> Store:
    return await Store.open(path, readonly=True)


async def test_an_alert_call_speaks_mandarin_and_its_key_1_acknowledges(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio, call=("leader",))
    twilio.script_call(leader_phone(1), answer="human", press="1")
    try:
        async with running_daemon(village) as daemon, terminals(village) as sims:
            await sims.alarm("t1-2", "fire", seq=1)
            await sims.wait_until(lambda: len(sims.rings(1)) == 9)
            [call] = await twilio.wait_for_calls(1)
            assert (call.to, call.machine_detection) == (leader_phone(1), "Enable")
            await twilio.call_ended(call.sid)
            await sims.wait_until(lambda: len(sims.stops(1)) == 9)  # the key silenced the terminals
            spoken = [said.text for said in call.said]
            assert spoken[0] == "紧急情况：河口村1组2号户 1组，火警。报警编号1。"
            assert spoken.count(spoken[0]) == 2  # said twice before the keys
            assert {said.language for said in call.said} == {"cmn-CN"}
            assert call.digits == ["1"]
            keys = daemon.metrics.registry.get_sample_value("alertd_call_outcomes_total", {"outcome": "key 1"})
            assert keys == 1
        store = await _store_view(village.store_path)
        try:
            incident = await store.incident(1)
            notes = await store.notifications(1)
            rows = [r for r in notes if r.channel == Channel.VOICE]
            timeline = await store.timeline(1)
        finally:
            await store.close()
    finally:
        await forget_session(village)
    assert incident is not None
    assert (incident.state, incident.acknowledged_by) == (State.ACKNOWLEDGED, "1组5号户主")
    # `alertd show` and the console's incident page list the call with its outcome.
    record = show(incident, timeline, notes, load_config(village.settings_path, {}).roster, ZoneInfo("Asia/Shanghai"))
    assert "call → 1组5号户主 via twilio: placed, key 1" in record
    assert [(r.carrier, r.provider_id, r.delivery) for r in rows] == [("twilio", call.sid, "key 1")]
    assert ("call", "1组5号户主", "pressed 1") in [(t.event, t.actor, t.detail) for t in timeline]
    assert ("acknowledged", "1组5号户主 (voice)") in [(t.event, t.actor) for t in timeline]


async def test_a_busy_call_is_recorded_and_placed_again_later(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio, call=("leader",))
    twilio.script_call(leader_phone(1), answer="busy")
    try:
        async with running_daemon(village), terminals(village) as sims:
            await sims.alarm("t1-3", "panic", seq=1)
            await sims.wait_until(lambda: len(sims.rings(1)) == 9)
            [call] = await twilio.wait_for_calls(1)
            await twilio.call_ended(call.sid)
            store = await _store_view(village.store_path)
            try:
                async with asyncio.timeout(10):
                    while len(rows := [r for r in await store.notifications(1) if r.channel == Channel.VOICE]) < 2:
                        await asyncio.sleep(0.05)
                first, again = rows
            finally:
                await store.close()
    finally:
        await forget_session(village)
    assert first.delivery == "busy"
    assert again.next_attempt_at - first.created_at >= 60  # the policy's call_retry_s, not at once
    assert len(twilio.calls) == 1


async def test_aliyun_sends_the_alert_as_its_template_with_the_sign(
    tmp_path: Path, twilio: TwilioServer, aliyun: AliyunServer
) -> None:
    village = write_village(tmp_path, twilio=twilio, aliyun=aliyun, prefer="aliyun")
    try:
        async with running_daemon(village), terminals(village) as sims:
            await sims.alarm("t1-2", "fire", seq=1)
            sent = await aliyun.wait_for_messages(3, timeout=15)
    finally:
        await forget_session(village)
    leader = next(m for m in sent if m.phone == leader_phone(1).removeprefix("+86"))
    assert (leader.sign_name, leader.template_code) == (ALIYUN_SIGN, ALIYUN_TEMPLATES["alert"])
    assert leader.template_param == {
        "household": "2号户 1组", "kind": "火警", "place": "1组2号", "time": leader.template_param["time"], "code": "1",
    }  # fmt: skip
    assert twilio.messages == []  # Aliyun took them all


async def test_when_aliyun_fails_twilio_takes_the_text(
    tmp_path: Path, twilio: TwilioServer, aliyun: AliyunServer
) -> None:
    aliyun.fail_all("isp.SYSTEM_ERROR", status=500)
    village = write_village(tmp_path, twilio=twilio, aliyun=aliyun, prefer="aliyun")
    try:
        async with running_daemon(village), terminals(village) as sims:
            await sims.alarm("t1-2", "fire", seq=1)
            texts = await twilio.wait_for_messages(3, timeout=20)
    finally:
        await forget_session(village)
    assert leader_phone(1) in {m.to for m in texts}
    assert aliyun.messages == []


async def test_a_crash_right_after_placing_a_call_does_not_call_again(tmp_path: Path, twilio: TwilioServer) -> None:
    # kill -9 between Twilio accepting the call and the outbox recording it: the restart asks Twilio, finds
    # the call, and records it; the leader's phone rings once.
    village = write_village(tmp_path, twilio=twilio, call=("leader",))
    twilio.script_call(leader_phone(1), answer="queued")  # placed, never dialed: nothing calls us back
    daemon = DaemonProcess(village, tmp_path / "daemon.log")
    try:
        async with terminals(village) as sims:
            await daemon.start(failpoint=AFTER_CALL)
            await sims.alarm("t1-2", "fire", seq=1)
            assert await daemon.wait_exit() == 137, "the daemon should have died once the call was placed"
            [call] = await twilio.wait_for_calls(1)
            await daemon.start()
            store = await _store_view(village.store_path)
            try:
                async with asyncio.timeout(15):
                    while not (rows := [r for r in await store.notifications(1) if r.channel == Channel.VOICE]) or (
                        rows[0].status != Status.SENT
                    ):
                        await asyncio.sleep(0.05)
            finally:
                await store.close()
            await asyncio.sleep(1.0)  # time for a wrong second call to show
            assert await daemon.terminate() == 0
    finally:
        await daemon.kill()
        await forget_session(village)
    assert [(r.provider_id, r.attempts) for r in rows] == [(call.sid, 1)]
    assert len(twilio.calls) == 1


async def test_aliyun_handset_reports_are_asked_for_and_recorded(
    tmp_path: Path, twilio: TwilioServer, aliyun: AliyunServer
) -> None:
    village = write_village(tmp_path, twilio=twilio, aliyun=aliyun, prefer="aliyun")
    leader = leader_phone(1).removeprefix("+86")
    try:
        async with running_daemon(village), terminals(village) as sims:
            await sims.alarm("t1-2", "fire", seq=1)
            sent = await aliyun.wait_for_messages(3, timeout=15)
            for message in sent:
                if message.phone == leader:
                    aliyun.set_delivery(message.biz_id, "delivered")
                else:
                    aliyun.set_delivery(message.biz_id, "failed", "MK:0001")
            store = await _store_view(village.store_path)
            try:
                async with asyncio.timeout(15):
                    while True:
                        rows = await store.notifications(1)
                        if all(r.delivery is not None for r in rows if r.carrier == "aliyun"):
                            break
                        await asyncio.sleep(0.1)
            finally:
                await store.close()
    finally:
        await forget_session(village)
    texts = {r.address: r.delivery for r in rows if r.channel == Channel.SMS}
    assert texts.pop(leader_phone(1)) == "delivered"
    assert set(texts.values()) == {"undelivered (MK:0001)"}
