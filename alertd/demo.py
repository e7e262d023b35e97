"""`alertd demo`: the whole job end to end against the local broker, in well under a minute.

A household presses its button; the neighbours' terminals ring; the leader and the patrol get an SMS
(printed by the console channel); the leader presses acknowledge on their terminal; the terminals are
told to stop; escalation stops; the response log is printed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

import aiomqtt

from alertd.config import Config, load_config
from alertd.daemon import Daemon
from alertd.protocols.terminal import RingCommand, StopCommand, Topics, decode_command
from alertd.report import show
from alertd.store import Store

# The demo talks on its own prefix and client id, so it never disturbs a production daemon on the broker.
DEMO_PREFIX = "alertd-demo/v1"
DEMO_CLIENT_ID = "alertd-demo"
STEP_TIMEOUT_S = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _demo_config(config: Config, workdir: Path) -> Config:
    s = config.settings
    settings = s.model_copy(
        update={
            "mqtt": s.mqtt.model_copy(update={"client_id": DEMO_CLIENT_ID, "prefix": DEMO_PREFIX}),
            "store": s.store.model_copy(update={"path": workdir / "alertd-demo.db"}),
            "http": s.http.model_copy(update={"listen": f"127.0.0.1:{_free_port()}"}),
            "twilio": s.twilio.model_copy(update={"account_sid": None, "auth_token": None, "from_number": None}),
        }
    )
    return Config(settings, config.roster, config.settings_path, config.roster_path)


async def run_demo(config_path: Path, out: TextIO = sys.stdout) -> int:
    config = load_config(config_path)
    roster = config.roster
    group = roster.groups[next(iter(roster.groups))]
    caller = roster.households[group.households[1]]  # "2号户 王家" in the shipped roster
    caller_device = caller.devices[0]
    leader_home = next(h for h in roster.households.values() if group.leader in h.people)
    leader = roster.people[group.leader]
    topics = Topics(DEMO_PREFIX)

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    with tempfile.TemporaryDirectory(prefix="alertd-demo-") as workdir:
        demo = _demo_config(config, Path(workdir))
        daemon = Daemon(demo, environ={}, sms_stream=out)
        daemon_task = asyncio.create_task(daemon.run(), name="daemon")
        rings: dict[str, RingCommand] = {}
        stops: set[str] = set()
        try:
            async with aiomqtt.Client(demo.settings.mqtt.host, demo.settings.mqtt.port, identifier="alertd-demo-terminals") as sim:
                await sim.subscribe(f"{DEMO_PREFIX}/dev/+/cmd", qos=1)
                await asyncio.wait_for(daemon.ready.wait(), STEP_TIMEOUT_S)
                while daemon.link is None or not daemon.link.connected:
                    await asyncio.sleep(0.05)
                say(f"alertd demo: {group.village}{group.name}, {len(group.households)} households, leader {leader.name}")
                say(f"\n[1] {caller.label} presses the alarm button ({caller_device})")
                started = time.monotonic()
                await sim.publish(
                    topics.event(caller_device),
                    json.dumps({"type": "alarm", "kind": "panic", "seq": int(time.time())}),
                    qos=1,
                )
                expected = len(roster.ring_targets(caller.id))
                incident_id = 0

                async def collect(want_rings: int, want_stops: int) -> None:
                    async for message in sim.messages:
                        device = message.topic.value.split("/")[-2]
                        command = decode_command(bytes(message.payload))  # type: ignore[arg-type,unused-ignore]
                        if isinstance(command, RingCommand) and device not in rings:
                            rings[device] = command
                            ms = (time.monotonic() - started) * 1000
                            say(f"    🔔 {device} rings: {command.label} 求救  (incident {command.incident_id}, {ms:.0f} ms)")
                        elif isinstance(command, StopCommand):
                            stops.add(device)
                            say(f"    🔕 {device} stops ringing")
                        if len(rings) >= want_rings and len(stops) >= want_stops:
                            return

                await asyncio.wait_for(collect(expected, 0), STEP_TIMEOUT_S)
                incident_id = next(iter(rings.values())).incident_id
                say(f"    → {len(rings)} neighbours' terminals ring; SMS to the leader and the patrol above")
                await asyncio.sleep(1.5)
                leader_device = leader_home.devices[0]
                say(f"\n[2] Leader {leader.name} ({leader_home.label}) presses acknowledge on {leader_device}")
                await sim.publish(topics.event(leader_device), json.dumps({"type": "ack"}), qos=1)
                await asyncio.wait_for(collect(expected, expected), STEP_TIMEOUT_S)
                say(f"    → all {len(stops)} terminals stopped; escalation to the deputy and grid worker cancelled")
        finally:
            daemon.stop()
            await asyncio.wait_for(daemon_task, STEP_TIMEOUT_S + 15)
            await _forget_session(demo)
        store = await Store.open(demo.settings.store.path, readonly=True)
        try:
            incident = await store.incident(incident_id)
            if incident is None:
                say("demo failed: the incident was not recorded")
                return 1
            say(f"\n[3] alertd show {incident_id}\n")
            zone = demo.settings.daemon.zone
            say(show(incident, await store.timeline(incident_id), await store.notifications(incident_id), roster, zone))
        finally:
            await store.close()
    ok = len(rings) == expected and len(stops) == expected
    say("\ndemo " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


async def _forget_session(config: Config) -> None:
    """Drop the demo's persistent session so the broker does not queue messages for it forever."""
    try:
        async with aiomqtt.Client(
            config.settings.mqtt.host, config.settings.mqtt.port, identifier=DEMO_CLIENT_ID, clean_session=True
        ):
            pass
    except aiomqtt.MqttError:
        pass
