"""`alertd demo`: the whole job end to end against the local broker, in well under a minute.

A household presses its button; the neighbours' terminals ring; the leader and the patrol get an SMS
(printed by the console channel); the leader presses acknowledge on their terminal; the terminals are
told to stop; escalation stops; the response log is printed.

Without a settings file it runs the example village shipped inside the package (alertd.examples, the
repository's config/), so an installed alertd can show itself from any folder.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import aiomqtt

from alertd.config import Config, load_config
from alertd.daemon import Daemon
from alertd.protocols.terminal import RingCommand, StopCommand, Topics, decode_command
from alertd.report import show
from alertd.scaffold import VILLAGE, write_examples
from alertd.store import open_store

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
            # No account either: where the broker binds client ids to usernames, the demo logging in as
            # alertd would be handed production's session and its queued alarms.
            "mqtt": s.mqtt.model_copy(
                update={"client_id": DEMO_CLIENT_ID, "prefix": DEMO_PREFIX, "username": None, "password": None}
            ),
            "store": s.store.model_copy(update={"path": workdir / "alertd-demo.db"}),
            # Its own operator socket, never the production daemon's (/run/alertd/alertd.sock).
            "http": s.http.model_copy(
                update={"listen": f"127.0.0.1:{_free_port()}", "socket": workdir / "alertd-demo.sock"}
            ),
            "twilio": s.twilio.model_copy(update={"account_sid": None, "auth_token": None, "from_number": None}),
        }
    )
    return Config(settings, config.roster, config.settings_path, config.roster_path)


@dataclass(slots=True)
class _Terminals:
    """The village's terminals as the demo shows them: every command heard, printed as it arrives."""

    client: aiomqtt.Client
    topics: Topics
    say: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    rings: dict[str, RingCommand] = field(default_factory=dict)
    stops: set[str] = field(default_factory=set)

    async def hear(self, want_rings: int, want_stops: int) -> None:
        async for message in self.client.messages:
            device = self.topics.commanded(message.topic.value)
            command = decode_command(bytes(message.payload))  # type: ignore[arg-type,unused-ignore]
            if isinstance(command, RingCommand) and device not in self.rings:
                self.rings[device] = command
                ms = (time.monotonic() - self.started) * 1000
                self.say(f"    🔔 {device} rings: {command.label} 求救  (incident {command.incident_id}, {ms:.0f} ms)")
            elif isinstance(command, StopCommand):
                self.stops.add(device)
                self.say(f"    🔕 {device} stops ringing")
            if len(self.rings) >= want_rings and len(self.stops) >= want_stops:
                return


async def run_demo(config_path: Path | None = None, out: TextIO = sys.stdout) -> int:
    """Run the demo on config_path's village, or on the shipped example village when it is None."""
    with tempfile.TemporaryDirectory(prefix="alertd-demo-") as workdir:
        if config_path is None:
            # load_config wants real files (the roster is found beside the settings), so copy them out.
            config_path = write_examples(Path(workdir) / "example", VILLAGE)[0]
        return await _run(load_config(config_path), Path(workdir), out)


async def _run(config: Config, workdir: Path, out: TextIO) -> int:
    roster = config.roster
    group = roster.groups[next(iter(roster.groups))]
    caller = roster.households[group.households[1]]  # "2号户 王家" in the shipped roster
    leader_home = next(h for h in roster.households.values() if group.leader in h.people)
    leader = roster.people[group.leader]
    topics = Topics(DEMO_PREFIX)
    expected = len(roster.ring_targets(caller.id))

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    demo = _demo_config(config, workdir)
    mqtt = demo.settings.mqtt
    daemon = Daemon(demo, environ={}, sms_stream=out)
    daemon_task = asyncio.create_task(daemon.run(), name="daemon")
    try:
        async with aiomqtt.Client(mqtt.host, mqtt.port, identifier="alertd-demo-terminals") as client:
            await client.subscribe(topics.every("cmd"), qos=1)
            sims = _Terminals(client, topics, say)
            parts = await asyncio.wait_for(daemon.started(), STEP_TIMEOUT_S)
            await asyncio.wait_for(parts.link.up.wait(), STEP_TIMEOUT_S)

            say(f"alertd demo: {group.village}{group.name}, {len(group.households)} households")
            say(f"\n[1] {caller.label} presses the alarm button ({caller.devices[0]})")
            sims.started = time.monotonic()
            alarm = {"type": "alarm", "kind": "panic", "seq": int(time.time())}
            await client.publish(topics.event(caller.devices[0]), json.dumps(alarm), qos=1)
            await asyncio.wait_for(sims.hear(expected, 0), STEP_TIMEOUT_S)
            say(f"    → {len(sims.rings)} neighbours' terminals ring; SMS to the leader and the patrol above")

            await asyncio.sleep(1.5)
            say(f"\n[2] Leader {leader.name} ({leader_home.label}) presses acknowledge on {leader_home.devices[0]}")
            await client.publish(topics.event(leader_home.devices[0]), json.dumps({"type": "ack"}), qos=1)
            await asyncio.wait_for(sims.hear(expected, expected), STEP_TIMEOUT_S)
            say(f"    → all {len(sims.stops)} terminals stopped; escalation to the deputy and grid worker cancelled")
    finally:
        daemon.stop()
        await asyncio.wait_for(daemon_task, STEP_TIMEOUT_S + 15)
        await _forget_session(demo)
    incident_id = next(iter(sims.rings.values())).incident_id
    say(f"\n[3] alertd show {incident_id}\n")
    say(await _show(demo, incident_id))
    ok = len(sims.rings) == expected and len(sims.stops) == expected
    say("\ndemo " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


async def _show(config: Config, incident_id: int) -> str:
    store = await open_store(config.settings.store, readonly=True)
    try:
        incident = await store.incident(incident_id)
        if incident is None:
            return f"incident {incident_id} was not recorded"
        timeline, notes = await store.timeline(incident_id), await store.notifications(incident_id)
        return show(incident, timeline, notes, config.roster, config.settings.daemon.zone)
    finally:
        await store.close()


async def _forget_session(config: Config) -> None:
    """Drop the demo's persistent session so the broker does not queue messages for it forever."""
    try:
        async with aiomqtt.Client(
            config.settings.mqtt.host, config.settings.mqtt.port, identifier=DEMO_CLIENT_ID, clean_session=True
        ):
            pass
    except aiomqtt.MqttError:
        pass
