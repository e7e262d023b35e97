"""config/mosquitto.conf, run by a real mosquitto: a queued alarm survives kill -9 of the broker.

The production file is used as is, except for the lines that name a port or a
path (listener, persistence_location, password_file, acl_file), which are swapped
by text substitution; persistence, autosave, queue and auth settings are the real
ones.
"""

from __future__ import annotations

import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.harness import real_clock_env

CONF = Path(__file__).resolve().parent.parent / "config" / "mosquitto.conf"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
TIMEOUT_S = 10.0

PREFIX = "alertd/v1"
DEVICE = "dev-001"
EVENT_TOPIC = f"{PREFIX}/dev/{DEVICE}/event"
# alertd's client id is its username (alertd check warns otherwise): the broker keys the session on the
# username anyway (use_username_as_clientid).
ALERTD_ID = "alertd"
PASSWORDS = {"alertd": "alertd-secret", DEVICE: "device-secret"}
ACL = f"""\
user alertd
topic readwrite {PREFIX}/#

pattern write {PREFIX}/dev/%u/event
pattern write {PREFIX}/dev/%u/status
pattern read {PREFIX}/dev/%u/cmd
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def substitute(text: str, old: str, new: str) -> str:
    assert text.count(old + "\n") == 1, f"expected exactly one line {old!r} in {CONF}"
    return text.replace(old + "\n", new + "\n")


@dataclass
class Broker:
    conf: Path
    port: int
    db: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log, env=real_clock_env()
            )
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"mosquitto exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"mosquitto did not listen on {self.port}:\n{self.log.read_text()}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(TIMEOUT_S) == -signal.SIGKILL
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(TIMEOUT_S)
            self.proc = None


def shipped_broker(tmp_path: Path, passwd: Path, acl: Path) -> Broker:
    """A broker (not started yet) running config/mosquitto.conf with its port and paths in tmp_path."""
    port = free_port()
    state = tmp_path / "state"
    state.mkdir()
    text = CONF.read_text()
    # The settings under test must really be in the file.
    for line in (
        "persistence true",
        "autosave_interval 1",
        "autosave_on_changes true",
        "queue_qos0_messages false",
        "allow_anonymous false",
    ):
        assert f"\n{line}\n" in text, f"{line!r} missing from {CONF}"
    text = substitute(text, "listener 1883 127.0.0.1", f"listener {port} 127.0.0.1")
    text = substitute(text, "persistence_location /var/lib/mosquitto/", f"persistence_location {state}/")
    text = substitute(text, "password_file /etc/mosquitto/passwd", f"password_file {passwd}")
    text = substitute(text, "acl_file /etc/mosquitto/acl", f"acl_file {acl}")
    # Run as whoever runs the tests (as root, mosquitto would otherwise switch to
    # the "mosquitto" user, which cannot enter tmp_path).
    text += f"\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    return Broker(conf=conf, port=port, db=state / "mosquitto.db", log=tmp_path / "mosquitto.log")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user, password in PASSWORDS.items():
        subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwd), user, password], check=True)
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    b = shipped_broker(tmp_path, passwd, acl)
    b.start()
    yield b
    b.stop()


@dataclass
class Session:
    """A paho-mqtt 2 client driven synchronously, its callbacks feeding queues."""

    client: mqtt.Client
    connacks: queue.Queue[tuple[bool, int]] = field(default_factory=queue.Queue)
    subacks: queue.Queue[list[int]] = field(default_factory=queue.Queue)
    messages: queue.Queue[tuple[str, bytes, int]] = field(default_factory=queue.Queue)

    @classmethod
    def connect(
        cls, port: int, client_id: str, user: str | None, *, clean_session: bool = False
    ) -> tuple[Session, bool, int]:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        session = cls(client)
        if user is not None:
            client.username_pw_set(user, PASSWORDS[user])

        def on_connect(_c: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
            session.connacks.put((bool(flags.session_present), int(rc.value)))

        def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, rcs: list[Any], _p: Any) -> None:
            session.subacks.put([int(rc.value) for rc in rcs])

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            session.messages.put((msg.topic, bytes(msg.payload), msg.qos))

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.connect("127.0.0.1", port, keepalive=30)
        client.loop_start()
        session_present, rc = session.connacks.get(timeout=TIMEOUT_S)
        return session, session_present, rc

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)
        assert self.subacks.get(timeout=TIMEOUT_S) == [1]

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=TIMEOUT_S)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until_persisted(db: Path, payload: bytes) -> None:
    """autosave_on_changes writes right after the change; wait for that snapshot."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if db.exists() and payload in db.read_bytes():
            return
        time.sleep(0.02)
    pytest.fail(f"{payload!r} never reached {db}: autosave settings not effective")


def test_anonymous_clients_are_refused(broker: Broker) -> None:
    session, _present, rc = Session.connect(broker.port, "anon", None, clean_session=True)
    session.client.loop_stop()
    assert rc == 135  # MQTT 3.1.1 code 5 "not authorized", as paho's v5-style reason code


def test_queued_alarm_survives_broker_kill9(broker: Broker) -> None:
    nonce = uuid.uuid4().hex
    online = f'{{"type":"alarm","seq":1,"nonce":"{nonce}"}}'.encode()
    offline = f'{{"type":"alarm","seq":2,"nonce":"{nonce}"}}'.encode()
    telemetry = f'{{"type":"heartbeat","seq":3,"nonce":"{nonce}"}}'.encode()

    # alertd's persistent session: fixed client id, clean session off.
    alertd, present, rc = Session.connect(broker.port, ALERTD_ID, "alertd")
    assert (present, rc) == (False, 0)
    alertd.subscribe(f"{PREFIX}/dev/+/event")

    device, _present, rc = Session.connect(broker.port, DEVICE, DEVICE, clean_session=True)
    assert rc == 0
    device.publish(EVENT_TOPIC, online, qos=1)
    assert alertd.messages.get(timeout=TIMEOUT_S) == (EVENT_TOPIC, online, 1)
    alertd.close()

    # alertd is down: one alarm (QoS 1) and one heartbeat (QoS 0) arrive.
    device.publish(EVENT_TOPIC, telemetry, qos=0)
    device.publish(EVENT_TOPIC, offline, qos=1)  # returns once the broker sent PUBACK
    device.close()
    wait_until_persisted(broker.db, offline)

    broker.kill9()
    broker.start()

    alertd, present, rc = Session.connect(broker.port, ALERTD_ID, "alertd")
    try:
        assert (present, rc) == (True, 0), "the persistent session did not survive the crash"
        assert alertd.messages.get(timeout=TIMEOUT_S) == (EVENT_TOPIC, offline, 1)
        # Nothing else: the QoS 0 heartbeat was not queued, the online alarm not repeated.
        with pytest.raises(queue.Empty):
            alertd.messages.get(timeout=1.0)
    finally:
        alertd.close()
