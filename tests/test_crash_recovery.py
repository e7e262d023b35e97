"""kill -9 of a real daemon process at each dangerous point: nothing lost, at most one duplicate per step."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import pytest

from alertd.failpoints import AFTER_COMMIT, AFTER_RECEIVE, MID_FANOUT
from alertd.protocols.terminal import RingCommand, StopCommand
from alertd.store import Store
from tests.fakes.twilio_server import TwilioServer
from tests.harness import (
    DEPUTY,
    GRID_PHONE,
    PATROL_PHONES,
    Command,
    DaemonProcess,
    Terminals,
    Village,
    forget_session,
    leader_phone,
    private_broker,
    resident_phone,
    terminals,
    write_village,
)

STEP_1_AFTER_S = 4.0


async def _incidents(village: Village) -> list[tuple[int, str, float]]:
    store = await Store.open(village.store_path, readonly=True)
    try:
        return [(i.id, i.household_id, i.opened_at) for i in await store.incidents(limit=100_000)]
    finally:
        await store.close()


def _rings_per_device(sims: Terminals, incident_id: int) -> Counter[str]:
    return Counter(c.device for c in sims.rings(incident_id))


@pytest.mark.parametrize("failpoint", [AFTER_RECEIVE, AFTER_COMMIT, MID_FANOUT])
async def test_kill_at_failpoint_then_restart_loses_nothing(
    tmp_path: Path, twilio: TwilioServer, failpoint: str
) -> None:
    village = write_village(tmp_path, twilio=twilio, steps=(0, STEP_1_AFTER_S, 600))
    daemon = DaemonProcess(village, tmp_path / "daemon.log")
    neighbours = {f"t1-{h}" for h in range(1, 11)} - {"t1-2"}
    first_step = {leader_phone(1), *PATROL_PHONES}
    try:
        async with terminals(village) as sims:
            await daemon.start(failpoint=failpoint)
            await sims.alarm("t1-2", "fire", seq=42)
            assert await daemon.wait_exit() == 137, "the daemon should have died at the failpoint"
            await daemon.start()

            await sims.wait_until(lambda: set(_rings_per_device(sims, 1)) == neighbours)
            async with asyncio.timeout(20):
                while not first_step <= {m.to for m in twilio.messages}:
                    await asyncio.sleep(0.05)
            # Escalation continues on time after the restart: step 1 reaches the deputy and grid worker.
            async with asyncio.timeout(20):
                while not {resident_phone(1, DEPUTY), GRID_PHONE} <= {m.to for m in twilio.messages}:
                    await asyncio.sleep(0.05)
            assert await daemon.terminate() == 0
        incidents = await _incidents(village)
    finally:
        await daemon.kill()
        await forget_session(village)

    assert [(i, h) for i, h, _ in incidents] == [(1, "h1-2")], "one alarm, one incident"
    opened_at = incidents[0][2]
    step_1 = [m for m in twilio.messages if m.to == resident_phone(1, DEPUTY)]
    assert step_1[0].received_at >= opened_at + STEP_1_AFTER_S - 0.05
    assert step_1[0].received_at <= opened_at + STEP_1_AFTER_S + 3.0
    # At least once, and a crash repeats at most one message per recipient and step.
    assert max(_rings_per_device(sims, 1).values()) <= 2
    per_body = Counter((m.to, m.body) for m in twilio.messages)
    assert max(per_body.values()) <= 2
    assert {m.to for m in twilio.messages} >= first_step | {resident_phone(1, DEPUTY), GRID_PHONE}


async def test_alarm_published_while_daemon_is_down_is_handled_when_it_starts(
    tmp_path: Path, twilio: TwilioServer
) -> None:
    village = write_village(tmp_path, twilio=twilio)
    daemon = DaemonProcess(village, tmp_path / "daemon.log")
    try:
        async with terminals(village) as sims:
            await daemon.start()  # registers the persistent session and its subscriptions
            assert await daemon.terminate() == 0
            await sims.alarm("t1-7", "gas", seq=1)
            await asyncio.sleep(0.3)
            assert sims.rings() == []
            await daemon.start()
            await sims.wait_until(lambda: len(sims.rings()) == 9)
            assert sims.rings()[0].command.kind == "gas"
            await twilio.wait_for_messages(3)
            assert await daemon.terminate() == 0
    finally:
        await daemon.kill()
        await forget_session(village)


async def test_broker_kill9_and_restart_mid_run_loses_nothing(tmp_path: Path, twilio: TwilioServer) -> None:
    async with private_broker(tmp_path / "broker") as broker:
        village = write_village(tmp_path, twilio=twilio, groups=3, broker_port=broker.port)
        daemon = DaemonProcess(village, tmp_path / "daemon.log")
        heard: list[Command[RingCommand | StopCommand]] = []
        session = "sims-" + village.client_id
        try:
            await daemon.start()
            async with terminals(village, session, heard) as sims:
                await sims.alarm("t1-1", "fire", seq=1)
                await sims.wait_until(lambda: len(sims.rings(1)) == 9)
            # An alarm queued at the broker for the stopped daemon survives a broker crash.
            assert await daemon.terminate() == 0
            async with terminals(village, session, heard) as sims:
                await sims.alarm("t2-3", "panic", seq=1)
            await asyncio.sleep(1.5)  # the shipped config autosaves within a second of a change
            await broker.kill()
            await broker.start()
            await daemon.start()
            async with terminals(village, session, heard) as sims:
                await sims.wait_until(lambda: len(sims.rings(2)) == 9)
                assert {c.device for c in sims.rings(2)} == {f"t2-{h}" for h in range(1, 11)} - {"t2-3"}
            # The broker crashes under a running daemon: it reconnects, re-subscribes, carries on.
            await broker.kill()
            await broker.start()
            await daemon.wait_healthy()
            async with terminals(village, session, heard) as sims:
                await sims.alarm("t3-5", "medical", seq=1)
                await sims.wait_until(lambda: len(sims.rings(3)) == 9)
            async with asyncio.timeout(20):
                while len({(m.to, m.body) for m in twilio.messages}) < 9:
                    await asyncio.sleep(0.05)
            assert await daemon.terminate() == 0
        finally:
            await daemon.kill()
            await forget_session(village)
    assert sorted(h for _, h, _ in await _incidents(village)) == ["h1-1", "h2-3", "h3-5"]


@pytest.mark.timeout(300)
async def test_randomized_kills_during_a_thousand_alarms_lose_nothing(tmp_path: Path, twilio: TwilioServer) -> None:
    """1,000 alarms (one per household, 100 groups) while the daemon is killed -9 at random moments."""
    rng = random.Random(20261128)
    kills = 3
    async with private_broker(tmp_path / "broker") as broker:
        # Every alert text counted one by one: storm control (which merges them into summaries) is off here;
        # tests/test_storm.py has its own crash test.
        village = write_village(tmp_path, twilio=twilio, groups=100, broker_port=broker.port, storm_threshold=0)
        daemon = DaemonProcess(village, tmp_path / "daemon.log")
        households = [(g, h) for g in range(1, 101) for h in range(1, 11)]
        try:
            async with terminals(village) as sims:
                await daemon.start()
                publisher = asyncio.create_task(_publish_all(sims, households))
                for _ in range(kills):
                    await asyncio.sleep(rng.uniform(0.2, 1.5))
                    await daemon.kill()
                    await asyncio.sleep(rng.uniform(0.0, 0.5))
                    await daemon.start()
                await publisher
                started = time.monotonic()
                await sims.wait_until(lambda: len(sims.rung) >= 9000, 120)
                async with asyncio.timeout(120):
                    while len({(m.to, m.body) for m in twilio.messages}) < 3000:
                        await asyncio.sleep(0.1)
                drained_s = time.monotonic() - started
                assert await daemon.terminate() == 0
            incidents = await _incidents(village)
        finally:
            await daemon.kill()
            await forget_session(village)

    by_household = Counter(h for _, h, _ in incidents)
    assert len(by_household) == 1000, "every alarm an incident"
    assert max(by_household.values()) == 1, "no alarm two incidents"
    household_of = {i: h for i, h, _ in incidents}
    lost = 0
    ring_copies = Counter((c.device, c.command.incident_id) for c in sims.rings())
    sms_copies = Counter((m.to, m.body) for m in twilio.messages)
    for incident_id, household in household_of.items():
        g, h = (int(x) for x in household[1:].split("-"))
        expected = {f"t{g}-{n}" for n in range(1, 11)} - {f"t{g}-{h}"}
        lost += sum((device, incident_id) not in ring_copies for device in expected)
        texted = {to for (to, body) in sms_copies if body.endswith(f"#{incident_id}")}
        lost += len({leader_phone(g), *PATROL_PHONES} - texted)
    assert lost == 0
    # Each kill can repeat what was in flight at that moment, once.
    assert max(ring_copies.values()) <= 1 + kills
    assert max(sms_copies.values()) <= 1 + kills
    print(
        f"drained in {drained_s:.1f} s after the last kill; duplicates: "
        f"{sum(ring_copies.values()) - len(ring_copies)} rings, {sum(sms_copies.values()) - len(sms_copies)} SMS"
    )


async def _publish_all(sims: Terminals, households: list[tuple[int, int]]) -> None:
    for g, h in households:
        await sims.alarm(f"t{g}-{h}", "fire", seq=1)
        await asyncio.sleep(0.001)
