"""A failing SMS provider: transient errors are retried until the messages arrive, permanent ones are
recorded (and shown in the incident) without a retry, and a timed-out send is not sent twice."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from alertd.store import OutboxRow, Status, Store
from tests.fakes.twilio_server import TwilioServer
from tests.harness import (
    PATROL_PHONES,
    WAIT_S,
    DaemonProcess,
    Village,
    forget_session,
    leader_phone,
    running_daemon,
    terminals,
    write_village,
)


def _with_timeout(settings: Path, seconds: float) -> None:
    text = settings.read_text(encoding="utf-8")
    settings.write_text(text.replace("[twilio]\n", f"[twilio]\ntimeout_s = {seconds}\n"), encoding="utf-8")


async def test_500_429_and_timeouts_are_retried_until_every_sms_arrives(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio)
    _with_timeout(village.settings_path, 0.5)
    twilio.fail_next(500)
    twilio.fail_next(429)
    twilio.hang_next(1.0)  # Twilio takes this one but answers after our timeout
    try:
        async with running_daemon(village), terminals(village) as sims:
            await sims.alarm("t1-3", "fire", seq=1)
            async with asyncio.timeout(30):
                while {m.to for m in twilio.messages} != {leader_phone(1), *PATROL_PHONES}:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(3)  # any wrong retry of the timed-out message would land by now
        store = await Store.open(village.store_path, readonly=True)
        try:
            notes = [n for n in await store.notifications(1) if n.channel == "sms"]
        finally:
            await store.close()
    finally:
        await forget_session(village)
    assert sorted(m.to for m in twilio.messages) == sorted([leader_phone(1), *PATROL_PHONES]), "each exactly once"
    assert all(n.status == Status.SENT for n in notes)
    assert sorted(n.attempts for n in notes) == [2, 2, 2]
    assert {n.provider_id for n in notes} == {m.sid for m in twilio.messages}


async def test_invalid_number_is_recorded_as_permanent_and_never_retried(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio)
    twilio.reject_number(leader_phone(1), code=21211)
    try:
        async with running_daemon(village), terminals(village) as sims:
            await sims.alarm("t1-3", "fire", seq=1)
            await twilio.wait_for_messages(2)
            await asyncio.sleep(3)  # longer than the first retry backoff
            requests = twilio.request_count
        store = await Store.open(village.store_path, readonly=True)
        try:
            leader = next(n for n in await store.notifications(1) if n.address == leader_phone(1))
        finally:
            await store.close()
        shown = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alertd.cli", "show", "1", "-c", str(village.settings_path),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await shown.communicate()
    finally:
        await forget_session(village)
    assert requests == 3, "the rejected number was tried once"
    assert leader.status == Status.FAILED
    assert leader.attempts == 1
    assert leader.error is not None
    assert leader.error.startswith("21211")
    assert "failed [21211" in out.decode()


async def _show(village: Village, incident: int) -> str:
    shown = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd.cli", "show", str(incident), "-c", str(village.settings_path),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await shown.communicate()
    return out.decode()


@pytest.mark.parametrize("status", [403, 404])
async def test_a_refused_lookup_after_kill9_mid_hang_still_sends_every_sms(
    tmp_path: Path, twilio: TwilioServer, status: int
) -> None:
    """Twilio hangs, the daemon is killed -9 with three sends in flight, and after the restart Twilio
    answers sends but refuses the message list (a send-only API key: 403; a POST-only proxy: 404)."""
    village = write_village(tmp_path, twilio=twilio)
    daemon = DaemonProcess(village, tmp_path / "daemon.log")
    first_step = {leader_phone(1), *PATROL_PHONES}
    try:
        async with terminals(village) as sims:
            await daemon.start()
            twilio.hang_next(120, times=3)  # still hanging when the test ends
            await sims.alarm("t1-4", "fire", seq=1)
            async with asyncio.timeout(WAIT_S):
                while twilio.request_count < 3:
                    await asyncio.sleep(0.05)
            await daemon.kill()
            twilio.refuse_lookups(status)
            await daemon.start()
            async with asyncio.timeout(WAIT_S):
                while {m.to for m in twilio.messages} != first_step:
                    await asyncio.sleep(0.05)
            async with asyncio.timeout(WAIT_S):
                while not all(n.status == Status.SENT for n in await _sms_rows(village)):
                    await asyncio.sleep(0.1)
            assert await daemon.terminate() == 0
    finally:
        await daemon.kill()
        await forget_session(village)
    assert sorted(m.to for m in twilio.messages) == sorted(first_step)
    shown = await _show(village, 1)
    assert shown.count(f"lookup failed (HTTP {status}") == 3, shown
    log = (tmp_path / "daemon.log").read_text(encoding="utf-8")
    assert log.count("Cannot ask twilio whether notification") == 1, "once per outage"
    assert "failed for good" not in log


async def test_a_refused_lookup_before_a_timeout_retry_still_sends(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio)
    _with_timeout(village.settings_path, 0.5)
    twilio.refuse_lookups(403)
    twilio.hang_next(60)  # the first send times out and is never accepted during the test
    first_step = {leader_phone(1), *PATROL_PHONES}
    try:
        async with running_daemon(village) as daemon, terminals(village) as sims:
            await sims.alarm("t1-3", "fire", seq=1)
            async with asyncio.timeout(30):
                while {m.to for m in twilio.messages} != first_step:
                    await asyncio.sleep(0.05)
            async with asyncio.timeout(WAIT_S):
                while not all(n.status == Status.SENT for n in await _sms_rows(village)):
                    await asyncio.sleep(0.1)
            refused = daemon.metrics.registry.get_sample_value(
                "alertd_outbox_lookup_failures_total", {"channel": "sms", "carrier": "twilio"}
            )
    finally:
        await forget_session(village)
    assert sorted(m.to for m in twilio.messages) == sorted(first_step)
    assert refused == 1
    retried = [n for n in await _sms_rows(village) if n.attempts == 2]
    assert len(retried) == 1
    assert retried[0].error is not None
    assert retried[0].error.startswith("lookup failed (HTTP 403")


async def _sms_rows(village: Village) -> list[OutboxRow]:
    store = await Store.open(village.store_path, readonly=True)
    try:
        return [n for n in await store.notifications() if n.channel == "sms"]
    finally:
        await store.close()
