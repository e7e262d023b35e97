"""A failing SMS provider: transient errors are retried until the messages arrive, permanent ones are
recorded (and shown in the incident) without a retry, and a timed-out send is not sent twice."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from alertd.store import Status, Store
from tests.fakes.twilio_server import TwilioServer
from tests.harness import PATROL_PHONES, forget_session, leader_phone, running_daemon, terminals, write_village


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
