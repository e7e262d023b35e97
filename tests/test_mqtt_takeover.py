"""No broker account can take over another's MQTT session by using its client id (docs/security.md).

Mosquitto keys a session on the client id alone. Unless the broker replaces every client id by the
username (use_username_as_clientid), a terminal that logs in with its own password, client id
"alertd" and a clean session makes the broker throw away alertd's persistent session and every
alarm queued in it, and while alertd runs the two connections push each other off in a loop; the
same goes for another terminal's session and the ring commands queued for it.

Each scenario runs a real Mosquitto on the shipped config/mosquitto.conf (ports and paths swapped)
with two sets of accounts: the example ACL of its comments ("example"), and the ACL and password
file that `alertd mqtt-acl` and `alertd mqtt-passwords` generate ("generated").
"""

from __future__ import annotations

import logging
import queue
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alertd.cli import EXIT_OK, main
from alertd.config import load_config
from alertd.mqtt_acl import BROKER_SETTINGS, render_acl
from tests import test_mosquitto_conf as shipped
from tests import test_mqtt_acl as generated

TIMEOUT_S = 10.0  # anything that should happen
QUIET_S = 0.3  # extra wait for something that must not happen, after the positive control arrived

# One connection's story, in the order the network delivered it.
Connected = tuple[str, bool, int]  # ("connected", session present, return code)
Message = tuple[str, str, bytes]  # ("message", topic, payload)
Disconnected = tuple[str]  # ("disconnected",)
Event = Connected | Message | Disconnected


@dataclass
class Client:
    """A paho-mqtt 2 client (MQTT 3.1.1): connections, disconnections and messages in one queue, in order."""

    client: mqtt.Client
    events: queue.Queue[Event] = field(default_factory=queue.Queue)
    subacks: queue.Queue[list[int]] = field(default_factory=queue.Queue)

    def next_event(self) -> Event:
        try:
            return self.events.get(timeout=TIMEOUT_S)
        except queue.Empty:
            pytest.fail("nothing happened on this connection")

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        assert self.subacks.get(timeout=TIMEOUT_S) == [1]

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=TIMEOUT_S)
        assert info.is_published()  # the broker's PUBACK: from here on the broker owns the message

    def expect(self, topic: str, payload: bytes) -> None:
        """The next thing on this connection is this message (not a disconnection), and nothing follows."""
        assert self.next_event() == ("message", topic, payload)
        with pytest.raises(queue.Empty):
            self.events.get(timeout=QUIET_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Village:
    """A broker on the shipped config and its accounts: the daemon and two terminals A and B."""

    broker: shipped.Broker
    passwords: dict[str, str]
    prefix: str
    daemon: str
    terminal_a: str
    terminal_b: str
    clients: list[Client] = field(default_factory=list)

    def connect(self, user: str, client_id: str, *, clean_session: bool) -> tuple[Client, bool]:
        """Log in as `user` (with its password) under `client_id`; (client, session present)."""
        paho = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session, protocol=mqtt.MQTTv311
        )
        client = Client(paho)
        paho.username_pw_set(user, self.passwords[user])

        def on_connect(_c: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
            client.events.put(("connected", bool(flags.session_present), int(rc.value)))

        def on_disconnect(_c: mqtt.Client, _u: Any, _flags: Any, _rc: Any, _p: Any) -> None:
            client.events.put(("disconnected",))

        def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, rcs: list[Any], _p: Any) -> None:
            client.subacks.put([int(rc.value) for rc in rcs])

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            client.events.put(("message", msg.topic, bytes(msg.payload)))

        paho.on_connect = on_connect
        paho.on_disconnect = on_disconnect
        paho.on_subscribe = on_subscribe
        paho.on_message = on_message
        self.clients.append(client)
        paho.connect("127.0.0.1", self.broker.port, keepalive=30)
        paho.loop_start()
        match client.next_event():
            case ("connected", present, 0):
                return client, bool(present)
            case other:
                pytest.fail(f"{user} as {client_id!r}: {other}\n{self.broker.log.read_text()}")

    def event(self, device: str) -> str:
        return f"{self.prefix}/dev/{device}/event"

    def cmd(self, device: str) -> str:
        return f"{self.prefix}/dev/{device}/cmd"


EXAMPLE_PASSWORDS = {"alertd": "alertd-secret", "dev-001": "device-secret-1", "dev-002": "device-secret-2"}


def example_accounts(tmp_path: Path, passwords: dict[str, str]) -> tuple[Path, Path]:
    """A password file with these accounts, and the example ACL of the shipped config's comments."""
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user, password in passwords.items():
        subprocess.run([shipped.MOSQUITTO_PASSWD, "-b", str(passwd), user, password], check=True)
    acl = tmp_path / "acl"
    acl.write_text(shipped.ACL)
    return passwd, acl


@pytest.fixture(params=["example", "generated"])
def village(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Village]:
    if request.param == "example":
        passwords = dict(EXAMPLE_PASSWORDS)
        passwd, acl = example_accounts(tmp_path, passwords)
        names = (shipped.PREFIX, "alertd", "dev-001", "dev-002")
    else:
        passwd, acl, passwords = generated.generated_accounts(tmp_path, generated.make_config(tmp_path))
        names = (generated.PREFIX, generated.DAEMON, generated.T1, generated.T2)
    broker = shipped.shipped_broker(tmp_path, passwd, acl)
    broker.start()
    v = Village(broker, passwords, *names)
    try:
        yield v
    finally:
        for client in v.clients:
            client.close()
        broker.stop()


@dataclass(frozen=True)
class Victim:
    """Whose session terminal B goes after, what that session reads, and who writes to it."""

    user: str  # also its client id: alertd's client_id is its username (alertd check warns otherwise)
    subscription: str
    writer: str
    topic: str


def victim_of(v: Village, which: str) -> Victim:
    if which == "daemon":  # alertd's session, fed by terminal A's alarms
        return Victim(v.daemon, f"{v.prefix}/dev/+/event", v.terminal_a, v.event(v.terminal_a))
    return Victim(v.terminal_a, v.cmd(v.terminal_a), v.daemon, v.cmd(v.terminal_a))  # A's, fed by ring commands


PAYLOAD = b'{"type":"alarm","kind":"fire","seq":41}'


@pytest.mark.parametrize("which", ["daemon", "device"])
def test_an_offline_session_and_its_queue_survive_a_terminal_using_its_client_id(village: Village, which: str) -> None:
    victim = victim_of(village, which)
    owner, present = village.connect(victim.user, victim.user, clean_session=False)
    owner.subscribe(victim.subscription)
    owner.close()

    # While the owner is away, a message it must get is accepted by the broker (PUBACK) ...
    writer, _present = village.connect(victim.writer, f"{victim.writer}-writer", clean_session=True)
    writer.publish(victim.topic, PAYLOAD)
    writer.close()
    # ... and survives a broker crash: the session is keyed on the username now, and still persistent.
    shipped.wait_until_persisted(village.broker.db, PAYLOAD)
    village.broker.kill9()
    village.broker.start()

    # Terminal B logs in with its own password, the owner's client id and a clean session: on a
    # broker that trusts client ids this discards the owner's session and its queue.
    attacker, _present = village.connect(village.terminal_b, victim.user, clean_session=True)
    attacker.close()

    owner, present = village.connect(victim.user, victim.user, clean_session=False)
    assert present, f"{victim.user}'s persistent session is gone:\n{village.broker.log.read_text()}"
    owner.expect(victim.topic, PAYLOAD)


@pytest.mark.parametrize("which", ["daemon", "device"])
def test_a_connected_client_is_not_pushed_off_by_a_terminal_using_its_client_id(village: Village, which: str) -> None:
    victim = victim_of(village, which)
    owner, _present = village.connect(victim.user, victim.user, clean_session=False)
    owner.subscribe(victim.subscription)

    # Mosquitto deals with a client id already in use before it answers the newcomer's CONNECT: once
    # the attacker is in, the owner has either been disconnected already or never will be.
    attacker, _present = village.connect(village.terminal_b, victim.user, clean_session=True)

    # Positive control on the owner's one connection: the next thing on it is the message, not a
    # disconnection (paho would reconnect on its own, so a later message alone would prove nothing).
    writer, _present = village.connect(victim.writer, f"{victim.writer}-writer", clean_session=True)
    writer.publish(victim.topic, PAYLOAD)
    owner.expect(victim.topic, PAYLOAD)
    # The attacker is still connected too: its login is its own session, which nobody else uses.
    assert attacker.events.empty()


# ------------------------------------------------------------------------------------------ the texts


def test_every_listener_binds_client_ids_to_usernames() -> None:
    """use_username_as_clientid is a per-listener option: each listener block needs it, the TLS one too."""
    text = shipped.CONF.read_text()
    before, *blocks = re.split(r"\n(?=#?listener )", text.split("\n# --- persistence")[0])
    assert [b.splitlines()[0] for b in blocks] == ["listener 1883 127.0.0.1", "#listener 8883 0.0.0.0"]
    # Before the first listener line it would configure (and open) a default listener on 0.0.0.0:1883.
    assert not re.search(r"^#?use_username_as_clientid", before, re.MULTILINE)
    for block in blocks:
        comment = "#" if block.startswith("#") else ""
        assert f"\n{comment}use_username_as_clientid true\n" in block, block
    for setting in BROKER_SETTINGS:
        assert f"\n{setting}\n" in text, f"{setting!r} (alertd.mqtt_acl.BROKER_SETTINGS) missing from {shipped.CONF}"


def test_the_generated_acl_names_the_broker_settings_it_relies_on(tmp_path: Path) -> None:
    header = render_acl(generated.make_config(tmp_path)).split("\nuser ")[0]
    for setting in BROKER_SETTINGS:
        assert f"#   {setting}\n" in header
    assert "use_username_as_clientid true" in BROKER_SETTINGS


# ------------------------------------------------------------------------------------------ alertd check


def settings_with(tmp_path: Path, mqtt: str) -> Path:
    generated.make_config(tmp_path)  # the roster
    path = tmp_path / "alertd.toml"
    path.write_text(f'[daemon]\nroster = "roster.toml"\n[mqtt]\n{mqtt}', encoding="utf-8")
    return path


def session_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "alertd.config" and r.levelno == logging.WARNING]


@pytest.mark.parametrize(
    "mqtt",
    ['username = "alertd"\n', 'username = "alertd"\nclient_id = "alertd"\n', 'client_id = "alertd-dev"\n', ""],
)
def test_check_is_quiet_when_client_id_is_the_username_or_there_is_no_username(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mqtt: str
) -> None:
    assert main(["check", "-c", str(settings_with(tmp_path, mqtt))]) == EXIT_OK
    assert session_warnings(caplog) == []


def test_check_warns_when_client_id_is_not_the_username(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = settings_with(tmp_path, 'username = "alertd-hekou"\nclient_id = "alertd"\n')
    # A warning, not a problem: alertd keeps working (its session is the username's), so it still starts.
    assert main(["check", "-c", str(path)]) == EXIT_OK
    assert session_warnings(caplog) == [
        f'{path}: mqtt.client_id "alertd" is not mqtt.username "alertd-hekou": the broker keeps alertd\'s session '
        "under the username (use_username_as_clientid in mosquitto.conf), and alarms queued under the other id "
        'are stranded when that changes; set client_id = "alertd-hekou"'
    ]
    # A username from the environment (alertd.env) is held to the same rule.
    caplog.clear()
    path = settings_with(tmp_path, "")
    load_config(path, environ={"ALERTD_MQTT__USERNAME": "alertd"})
    assert session_warnings(caplog) == []
    load_config(path, environ={"ALERTD_MQTT__USERNAME": "svc"})
    assert len(session_warnings(caplog)) == 1
