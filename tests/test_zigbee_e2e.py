"""Zigbee2MQTT sensors and sirens through the real broker: alarms on transitions only, the group's siren
sounds and stops, restores and battery news are recorded, a retained state never re-raises after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from alertd.core.supervision import Condition
from alertd.report import device_health
from alertd.store import Store
from tests.fakes.twilio_server import TwilioServer
from tests.harness import (
    BROKER_HOST,
    Village,
    forget_session,
    running_daemon,
    terminals,
    write_village,
    zigbee_base,
)

SMOKE = {"battery": 100, "battery_low": False, "smoke": False, "tamper": False, "linkquality": 87, "voltage": 3000}


@dataclass
class Coordinator:
    """Zigbee2MQTT as seen on the broker: publishes device states, hears the commands sent to devices."""

    client: aiomqtt.Client
    base: str
    commands: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    async def state(self, name: str, retain: bool = False, **changes: object) -> None:
        await self.client.publish(f"{self.base}/{name}", json.dumps(SMOKE | changes), qos=1, retain=retain)

    async def availability(self, name: str, payload: str) -> None:
        await self.client.publish(f"{self.base}/{name}/availability", payload, qos=1, retain=True)

    async def listen(self) -> None:
        async for message in self.client.messages:
            name = message.topic.value.split("/")[-2]
            self.commands.append((name, json.loads(bytes(message.payload))))  # type: ignore[arg-type,unused-ignore]


@contextlib.asynccontextmanager
async def coordinator(village: Village) -> AsyncIterator[Coordinator]:
    base = zigbee_base(village.prefix)
    async with aiomqtt.Client(BROKER_HOST, village.broker_port, identifier=f"z2m-{uuid.uuid4().hex[:8]}") as client:
        await client.subscribe(f"{base}/+/set", qos=1)
        z2m = Coordinator(client, base)
        listener = asyncio.create_task(z2m.listen())
        try:
            yield z2m
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            # Leave no retained state behind on the shared broker.
            for name in ("z1-3", "z1-5"):
                await client.publish(f"{base}/{name}", b"", qos=1, retain=True)
                await client.publish(f"{base}/{name}/availability", b"", qos=1, retain=True)


async def until(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_smoke_transition_rings_the_group_and_its_siren_which_stops_on_ack(
    tmp_path: Path, twilio: TwilioServer
) -> None:
    village = write_village(tmp_path, twilio=twilio, zigbee=True)
    try:
        async with running_daemon(village), terminals(village) as sims, coordinator(village) as z2m:
            await z2m.state("z1-3", smoke=False)
            await asyncio.sleep(0.3)
            assert sims.rings() == []
            await z2m.state("z1-3", smoke=True)
            await sims.wait_until(lambda: len(sims.rings()) == 9)
            assert {c.device for c in sims.rings()} == {f"t1-{h}" for h in range(1, 11)} - {"t1-3"}
            assert sims.rings()[0].command.kind == "smoke"
            await until(lambda: any(name == "s1-1" for name, _ in z2m.commands))
            assert z2m.commands[0] == (
                "s1-1",
                {"warning": {"mode": "emergency", "level": "very_high", "strobe": True, "duration": 600}},
            )
            await z2m.state("z1-3", smoke=True, linkquality=90)  # the whole state again: no new alarm
            await asyncio.sleep(0.3)
            await sims.ack("t1-5")
            await sims.wait_until(lambda: len(sims.stops()) == 9)
            await until(lambda: ("s1-1", {"warning": {"mode": "stop"}}) in z2m.commands)
            await z2m.state("z1-3", smoke=False)
            await asyncio.sleep(0.3)
        store = await Store.open(village.store_path, readonly=True)
        try:
            incidents = await store.incidents()
            timeline = await store.timeline(1)
        finally:
            await store.close()
    finally:
        await forget_session(village)
    assert [(i.household_id, i.kind) for i in incidents] == [("h1-3", "smoke")]
    assert [t.event for t in timeline] == ["opened", "step 0", "acknowledged", "restore"]


async def test_a_retained_alarm_state_does_not_re_raise_after_a_restart(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio, zigbee=True)
    try:
        async with terminals(village) as sims, coordinator(village) as z2m:
            async with running_daemon(village):
                await z2m.state("z1-5", retain=True, smoke=True)
                await sims.wait_until(lambda: len(sims.rings()) == 9)
                await sims.ack("t1-1")
                await sims.wait_until(lambda: len(sims.stops()) == 9)
            async with running_daemon(village):  # the broker hands the retained smoke: true over again
                await asyncio.sleep(1.0)
            assert len(sims.rings()) == 9
        store = await Store.open(village.store_path, readonly=True)
        try:
            assert len(await store.incidents()) == 1
        finally:
            await store.close()
    finally:
        await forget_session(village)


async def test_battery_low_and_availability_show_in_device_health(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio, zigbee=True)
    try:
        async with running_daemon(village) as daemon, coordinator(village) as z2m:
            await z2m.state("z1-3")
            await z2m.state("z1-3", battery=9, battery_low=True)
            await z2m.availability("z1-5", json.dumps({"state": "offline"}))
            await asyncio.sleep(0.5)
            engine = (await daemon.started()).engine
            roster, profiles = engine.desk.roster, engine.commands.profiles
        store = await Store.open(village.store_path, readonly=True)
        try:
            records = await store.devices()
        finally:
            await store.close()
    finally:
        await forget_session(village)
    health = {d.id: h for d, h in device_health(roster, records, profiles, records["z1-3"].last_seen or 0)}
    assert Condition.BATTERY_LOW in health["z1-3"].conditions
    assert health["z1-3"].battery == 9
    assert health["z1-5"].conditions == (Condition.OFFLINE,)


async def test_alertd_devices_lists_health_per_group(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio, zigbee=True, groups=2)
    try:
        async with running_daemon(village), coordinator(village) as z2m:
            await z2m.state("z1-3")
            await z2m.state("z1-3", tamper=True)
            await asyncio.sleep(0.5)
    finally:
        await forget_session(village)
    listed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd.cli", "devices", "--group", "g1", "--json", "-c", str(village.settings_path),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await listed.communicate()
    assert listed.returncode == 0
    devices = {d["id"]: d for d in json.loads(out)}
    assert {d["group"] for d in devices.values()} == {"g1"}
    assert devices["z1-3"]["conditions"] == ["tampered"]
    assert devices["t1-1"]["conditions"] == ["never_seen"], "a terminal that never checked in cannot be trusted"
    missing = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd.cli", "devices", "--group", "g9", "-c", str(village.settings_path),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await missing.communicate()
    assert missing.returncode == 1
    assert b"no group g9" in err
