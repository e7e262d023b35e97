"""alertd/mqtt_acl.py: the rendered ACL, and a real Mosquitto enforcing it.

The broker tests run the generated ACL and a password file made by the generated shell steps
(mosquitto_passwd -b) on a free loopback port, and check what a terminal can and cannot do.
With MQTT 3.1.1 Mosquitto drops an unauthorized publish silently (the publisher still gets its
PUBACK), so non-delivery is asserted with a positive control: a permitted message sent after the
forbidden one arrives, and nothing arrived before or after it.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import queue
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alertd.config import Config, load_config
from alertd.core.model import Device
from alertd.mqtt_acl import password_steps, render_acl, terminal_ids, write_file
from tests.harness import real_clock_env

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
TIMEOUT_S = 10.0  # anything that should happen
QUIET_S = 0.3  # extra wait for something that must not happen, after the positive control arrived

PREFIX = "hekou/v1"
DAEMON = "alertd"
T1, T2 = "t-h0101", "t-h0102"

ROSTER = """\
people = [
    { id = "p1", name = "李志强", phone = "+8613800010101" },
    { id = "p2", name = "王桂芬", phone = "+8613800010201" },
]

[[groups]]
id = "g1"
name = "一组"
village = "河口村"
leader = "p1"

[[households]]
id = "h0101"
group = "g1"
label = "1号户 李家"
people = ["p1"]
devices = [
    { id = "t-h0101" },
    { id = "cid-h0101", profile = "contact-id", ringable = false, account = "1011" },
]

[[households]]
id = "h0102"
group = "g1"
label = "2号户 王家"
people = ["p2"]
devices = [
    { id = "t-h0102", profile = "alertd-terminal" },
    { id = "smoke-h0102", profile = "zigbee-smoke", ringable = false },
]
"""


def make_config(tmp_path: Path, *, username: str | None = DAEMON, prefix: str = PREFIX, extra: str = "") -> Config:
    # client_id = username: the broker keeps the session under the username (alertd check warns otherwise).
    account = f'username = "{username}"\nclient_id = "{username}"\n' if username else ""
    mqtt_section = f'[mqtt]\nprefix = "{prefix}"\n' + account
    text = '[daemon]\nroster = "roster.toml"\n' + mqtt_section + extra
    (tmp_path / "alertd.toml").write_text(text, encoding="utf-8")
    (tmp_path / "roster.toml").write_text(ROSTER, encoding="utf-8")
    return load_config(tmp_path / "alertd.toml", environ={})


def with_devices(config: Config, *devices: Device) -> Config:
    """The same config with extra devices (ids the TOML reader would also accept, or not)."""
    roster = dataclasses.replace(config.roster, devices={**config.roster.devices, **{d.id: d for d in devices}})
    return dataclasses.replace(config, roster=roster)


def parse_acl(text: str) -> dict[str, list[tuple[str, str]]]:
    """{username: [(access, topic), ...]} as Mosquitto reads the file; fails on anything unexpected."""
    users: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match line.split(" "):
            case ["user", name]:
                assert name not in users, f"user {name} twice"
                current = users[name] = []
            case ["topic", "read" | "write" | "readwrite" as access, topic]:
                assert current is not None, f"topic line before any user: {line!r}"
                current.append((access, topic))
            case _:
                pytest.fail(f"unexpected ACL line {line!r}")
    return users


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


# ------------------------------------------------------------------------------------------ the text


def test_acl_grants_exactly_the_protocol_topics(config: Config) -> None:
    assert parse_acl(render_acl(config)) == {
        DAEMON: [
            ("read", f"{PREFIX}/dev/+/event"),
            ("read", f"{PREFIX}/dev/+/status"),
            ("write", f"{PREFIX}/dev/+/cmd"),
            ("readwrite", "zigbee2mqtt/#"),
        ],
        "zigbee2mqtt": [("readwrite", "zigbee2mqtt/#")],
        # Contact ID dialers and Zigbee sensors never log in to the broker themselves: no user.
        T1: [
            ("write", f"{PREFIX}/dev/{T1}/event"),
            ("write", f"{PREFIX}/dev/{T1}/status"),
            ("read", f"{PREFIX}/dev/{T1}/cmd"),
        ],
        T2: [
            ("write", f"{PREFIX}/dev/{T2}/event"),
            ("write", f"{PREFIX}/dev/{T2}/status"),
            ("read", f"{PREFIX}/dev/{T2}/cmd"),
        ],
    }


def test_acl_has_no_patterns_or_anonymous_rules(config: Config) -> None:
    text = render_acl(config)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines[0].startswith("user "), "a topic line before the first user would apply to anonymous clients"
    assert not any(line.startswith("pattern") for line in lines)


def test_header_says_generated_and_how_to_regenerate(config: Config) -> None:
    header = render_acl(config).split("\nuser ")[0]
    assert "generated by alertd" in header
    assert "Do not edit by hand" in header
    assert f"alertd mqtt-acl -c {config.settings_path} -o /etc/mosquitto/acl" in header
    assert "kill -HUP" in header
    assert all(line.startswith("#") or not line for line in header.splitlines())


def test_output_is_stable_and_sorted(config: Config) -> None:
    extra = with_devices(config, Device("t-a-first", "h0101"))
    text = render_acl(extra)
    assert text == render_acl(extra)
    assert list(parse_acl(text))[2:] == ["t-a-first", T1, T2]


def test_daemon_username(tmp_path: Path) -> None:
    assert "\nuser alertd\n" in render_acl(make_config(tmp_path, username=None))  # the default
    assert "\nuser alertd-hekou\n" in render_acl(make_config(tmp_path, username="alertd-hekou"))
    assert "\nuser svc\n" in render_acl(make_config(tmp_path, username="alertd-hekou"), daemon_user="svc")


def test_zigbee_base_and_user(config: Config) -> None:
    users = parse_acl(render_acl(config, zigbee_base="z2m/hekou", zigbee_user="z2m"))
    assert users["z2m"] == [("readwrite", "z2m/hekou/#")]
    assert ("readwrite", "z2m/hekou/#") in users[DAEMON]
    assert "zigbee2mqtt" not in users


def test_zigbee_base_comes_from_the_settings(tmp_path: Path) -> None:
    # `alertd mqtt-acl` granted zigbee2mqtt/# whatever [zigbee2mqtt] base said: the broker then denied the
    # daemon the sensors' topics, and a smoke alarm under another base topic never reached it.
    config = make_config(tmp_path, extra='[zigbee2mqtt]\nenabled = true\nbase = "z2m/hekou"\n')
    users = parse_acl(render_acl(config))
    assert ("readwrite", "z2m/hekou/#") in users[DAEMON]
    assert users["zigbee2mqtt"] == [("readwrite", "z2m/hekou/#")]
    assert all(not topic.startswith("zigbee2mqtt/") for rules in users.values() for _, topic in rules)


def test_terminal_predicate(config: Config) -> None:
    users = parse_acl(render_acl(config, is_terminal=lambda d: d.profile != "contact-id"))
    assert set(users) == {DAEMON, "zigbee2mqtt", T1, T2, "smoke-h0102"}
    assert terminal_ids(config, is_terminal=lambda d: d.household_id == "h0101") == ["cid-h0101", T1]


@pytest.mark.parametrize(
    "bad_id",
    ["t/h0103", "t+h0103", "t#h0103", "+", "#", "t h0103", "t\th0103", "t\nh0103", "t\x00h0103", "t:h0103",
     "t\u3000h0103", "t\x7fh0103", "t\ufffeh0103", "t\ud800h0103", "", "x" * 65536],
)  # fmt: skip
def test_bad_device_ids_are_rejected_by_name(config: Config, bad_id: str) -> None:
    bad = with_devices(config, Device(bad_id, "h0103"))
    with pytest.raises(ValueError, match=re.escape(f"device {bad_id!r} (household 'h0103')")):
        render_acl(bad)
    with pytest.raises(ValueError, match=re.escape(f"device {bad_id!r}")):
        password_steps(bad)


def test_bad_ids_of_non_terminals_do_not_matter(config: Config) -> None:
    odd = with_devices(config, Device("dialer #3", "h0101", profile="contact-id"))
    assert "dialer" not in render_acl(odd)


def test_non_ascii_device_id_is_fine(config: Config) -> None:
    users = parse_acl(render_acl(with_devices(config, Device("终端-王家", "h0102"))))
    assert users["终端-王家"][0] == ("write", f"{PREFIX}/dev/终端-王家/event")


@pytest.mark.parametrize("name", [DAEMON, "zigbee2mqtt"])
def test_device_named_like_a_service_user_is_rejected(config: Config, name: str) -> None:
    with pytest.raises(ValueError, match=f"device '{name}'.*broker username"):
        render_acl(with_devices(config, Device(name, "h0101")))


def test_service_users_must_differ_and_be_valid(config: Config) -> None:
    with pytest.raises(ValueError, match="different broker usernames"):
        render_acl(config, zigbee_user=DAEMON)
    with pytest.raises(ValueError, match="Zigbee2MQTT username"):
        render_acl(config, zigbee_user="zig bee")
    with pytest.raises(ValueError, match="daemon username"):
        render_acl(config, daemon_user="a:b")


@pytest.mark.parametrize("base", ["", "zigbee2mqtt/#", "zigbee2mqtt/+/x", "a//b", "/zigbee2mqtt", "zig bee"])
def test_bad_zigbee_base_is_rejected(config: Config, base: str) -> None:
    with pytest.raises(ValueError, match="Zigbee2MQTT base topic"):
        render_acl(config, zigbee_base=base)


def test_bad_prefix_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\[mqtt\] prefix"):
        render_acl(make_config(tmp_path, prefix="hekou v1"))


def test_password_steps(config: Config) -> None:
    steps = password_steps(config)
    commands = [line for line in steps.splitlines() if "mosquitto_passwd" in line and not line.startswith("#")]
    assert len(commands) == 4
    assert commands[0].count(" -c ") == 1
    assert f" {DAEMON} " in commands[0]
    assert all(" -c " not in c and " -b " in c for c in commands[1:])
    for user in ("zigbee2mqtt", T1, T2):
        assert sum(f" {user} " in c for c in commands) == 1
    assert "cid-h0101" not in steps
    assert "smoke-h0102" not in steps
    assert "random password" in steps
    subprocess.run(["bash", "-n"], input=steps.encode(), check=True, timeout=TIMEOUT_S)


def test_password_steps_quote_for_the_shell(config: Config) -> None:
    steps = password_steps(with_devices(config, Device("t-$(reboot)", "h0101")), password_file="/etc/my passwd")
    assert "'t-$(reboot)'" in steps
    assert "'/etc/my passwd'" in steps


def test_write_file_replaces_and_keeps_mode(tmp_path: Path) -> None:
    target = tmp_path / "acl"
    write_file(target, "one\n", group=None)
    assert target.read_text() == "one\n"
    assert target.stat().st_mode & 0o777 == 0o640
    target.chmod(0o604)
    write_file(target, "two\n")
    assert target.read_text() == "two\n"
    assert target.stat().st_mode & 0o777 == 0o604
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acl"]  # no temporary file left behind


# ------------------------------------------------------------------------------------------ the broker


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Session:
    """A paho-mqtt 2 client (MQTT 3.1.1) driven synchronously, its callbacks feeding queues."""

    client: mqtt.Client
    connacks: queue.Queue[int] = field(default_factory=queue.Queue)
    subacks: queue.Queue[list[int]] = field(default_factory=queue.Queue)
    messages: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)

    def subscribe(self, topic: str) -> int:
        self.client.subscribe(topic, qos=1)
        (code,) = self.subacks.get(timeout=TIMEOUT_S)
        return code

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=TIMEOUT_S)
        assert info.is_published()  # PUBACK: also for a publish the ACL refused

    def expect(self, topic: str, payload: bytes) -> None:
        """The next message is this one, and nothing follows it."""
        assert self.messages.get(timeout=TIMEOUT_S) == (topic, payload)
        self.expect_nothing()

    def expect_nothing(self) -> None:
        with pytest.raises(queue.Empty):
            self.messages.get(timeout=QUIET_S)


@dataclass
class Broker:
    port: int
    passwords: dict[str, str]
    log: Path
    sessions: list[Session] = field(default_factory=list)

    def connect(
        self, user: str, password: str | None = None, *, will: tuple[str, bytes] | None = None
    ) -> tuple[Session, int]:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{user}-{len(self.sessions)}",
                             protocol=mqtt.MQTTv311)  # fmt: skip
        session = Session(client)
        client.username_pw_set(user, self.passwords[user] if password is None else password)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=True)

        def on_connect(_c: mqtt.Client, _u: Any, _flags: Any, rc: Any, _p: Any) -> None:
            session.connacks.put(int(rc.value))

        def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, rcs: list[Any], _p: Any) -> None:
            session.subacks.put([int(rc.value) for rc in rcs])

        def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            session.messages.put((msg.topic, bytes(msg.payload)))

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.connect("127.0.0.1", self.port, keepalive=30)
        client.loop_start()
        self.sessions.append(session)
        rc = session.connacks.get(timeout=TIMEOUT_S)
        return session, rc

    def login(self, user: str, *, will: tuple[str, bytes] | None = None) -> Session:
        session, rc = self.connect(user, will=will)
        assert rc == 0, f"{user} refused with {rc}:\n{self.log.read_text()}"
        return session


def read_sheet(sheet: Path) -> dict[str, str]:
    return dict(line.split("\t") for line in sheet.read_text().splitlines())


def generated_accounts(tmp_path: Path, config: Config) -> tuple[Path, Path, dict[str, str]]:
    """The password file made by the generated steps, the generated ACL, and the passwords from the sheet."""
    passwd, sheet, acl = tmp_path / "passwd", tmp_path / "sheet.txt", tmp_path / "acl"
    # The generated steps, minus the chown to the mosquitto group (not there on every test host).
    steps = password_steps(config, password_file=str(passwd))
    steps = "\n".join(line for line in steps.splitlines() if not line.startswith("chown "))
    env = {"PATH": f"{Path(MOSQUITTO_PASSWD).parent}:/usr/bin:/bin", "SHEET": str(sheet)}
    subprocess.run(["bash", "-c", steps], env=env, check=True, timeout=TIMEOUT_S, capture_output=True)
    passwords = read_sheet(sheet)
    assert set(passwords) == {DAEMON, "zigbee2mqtt", T1, T2}
    assert len(set(passwords.values())) == 4, "one password per user"
    write_file(acl, render_acl(config), group=None)
    return passwd, acl, passwords


@pytest.fixture
def broker(tmp_path: Path, config: Config) -> Iterator[Broker]:
    passwd, acl, passwords = generated_accounts(tmp_path, config)

    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        "per_listener_settings false\n"
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous false\n"
        f"password_file {passwd}\n"
        f"acl_file {acl}\n"
        "persistence false\n"
        "log_dest stderr\n"
        "log_type all\n"
        # As root, mosquitto would switch to the "mosquitto" user, which cannot enter tmp_path.
        f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
    )
    log = tmp_path / "mosquitto.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=out, stderr=out, env=real_clock_env())
    b = Broker(port, passwords, log)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mosquitto exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"mosquitto did not listen on {port}:\n{log.read_text()}")
                time.sleep(0.05)
        yield b
    finally:
        for session in b.sessions:
            session.client.disconnect()
            session.client.loop_stop()
        proc.kill()
        proc.wait(TIMEOUT_S)


def event(device: str) -> str:
    return f"{PREFIX}/dev/{device}/event"


def status(device: str) -> str:
    return f"{PREFIX}/dev/{device}/status"


def cmd(device: str) -> str:
    return f"{PREFIX}/dev/{device}/cmd"


ALARM = b'{"type":"alarm","kind":"fire","seq":1}'
FORGED = b'{"type":"alarm","kind":"intrusion","seq":666}'


def test_terminal_cannot_raise_an_alarm_for_another_device(broker: Broker) -> None:
    daemon = broker.login(DAEMON)
    assert daemon.subscribe(f"{PREFIX}/dev/+/event") == 1
    assert daemon.subscribe(f"{PREFIX}/dev/+/status") == 1
    terminal = broker.login(T1)

    terminal.publish(event(T2), FORGED)  # acknowledged, and dropped
    terminal.publish(event(T1), ALARM)  # positive control: its own alarm goes through
    daemon.expect(event(T1), ALARM)

    terminal.publish(status(T2), b"offline", retain=True)
    terminal.publish(status(T1), b"online", retain=True)
    daemon.expect(status(T1), b"online")


def test_terminal_cannot_send_commands(broker: Broker) -> None:
    t2 = broker.login(T2)
    assert t2.subscribe(cmd(T2)) == 1
    t1 = broker.login(T1)
    t1.publish(cmd(T2), b'{"type":"stop","incident":"17"}')  # a neighbour silencing a ringing terminal
    t1.publish(cmd(T1), b'{"type":"stop","incident":"17"}')  # not even to itself
    ring = b'{"type":"ring","incident":"17","kind":"fire","from":{"household":"h0101","label":"1"}}'
    broker.login(DAEMON).publish(cmd(T2), ring)
    t2.expect(cmd(T2), ring)


def test_terminal_reads_only_its_own_commands(broker: Broker) -> None:
    terminal = broker.login(T1)
    assert terminal.subscribe(cmd(T1)) == 1
    # Mosquitto 2.0 (3.1.1) grants these subscriptions (SUBACK 1) and then checks every message
    # against the reader's ACL before delivering it: only the delivery is worth asserting.
    for topic in (cmd(T2), f"{PREFIX}/dev/+/cmd", f"{PREFIX}/#", "#"):
        terminal.subscribe(topic)
    daemon = broker.login(DAEMON)
    daemon.publish(cmd(T2), b'{"type":"stop","incident":"1"}')
    daemon.publish(cmd(T1), b'{"type":"stop","incident":"2"}')
    terminal.expect(cmd(T1), b'{"type":"stop","incident":"2"}')


def test_terminal_cannot_read_other_devices_events(broker: Broker) -> None:
    snoop = broker.login(T1)
    snoop.subscribe(f"{PREFIX}/dev/+/event")
    snoop.subscribe(event(T2))
    daemon = broker.login(DAEMON)
    assert daemon.subscribe(f"{PREFIX}/dev/+/event") == 1
    broker.login(T2).publish(event(T2), ALARM)
    daemon.expect(event(T2), ALARM)
    snoop.expect_nothing()


def test_last_will_only_on_own_status(broker: Broker) -> None:
    daemon = broker.login(DAEMON)
    assert daemon.subscribe(f"{PREFIX}/dev/+/status") == 1
    # A Will naming another device's status is dropped (or the connection refused) like a publish.
    forger, rc = broker.connect(T1, will=(status(T2), b"forged"))
    if rc == 0:
        vanish(forger)
    vanish(broker.login(T1, will=(status(T1), b"offline")))
    daemon.expect(status(T1), b"offline")


def vanish(session: Session) -> None:
    """Drop the connection without DISCONNECT, as a terminal losing power does: the broker sends its Will."""
    session.client.loop_stop()
    sock = session.client.socket()
    assert sock is not None
    sock.close()


def test_wrong_password_and_unknown_users_are_refused(broker: Broker) -> None:
    _session, rc = broker.connect(T1, broker.passwords[T2])
    assert rc in (134, 135)  # 3.1.1 codes 4 "bad user name or password" / 5 "not authorized"
    broker.passwords["cid-h0101"] = broker.passwords[T1]
    _session, rc = broker.connect("cid-h0101")  # a dialer, not a terminal: no broker account
    assert rc in (134, 135)
    assert broker.connect(T1)[1] == 0


def test_zigbee2mqtt_stays_in_its_base_topic(broker: Broker) -> None:
    daemon = broker.login(DAEMON)
    assert daemon.subscribe(f"{PREFIX}/dev/+/event") == 1
    assert daemon.subscribe("zigbee2mqtt/#") == 1
    z2m = broker.login("zigbee2mqtt")
    z2m.subscribe(f"{PREFIX}/#")
    z2m.publish(event(T1), FORGED)
    z2m.publish("zigbee2mqtt/smoke-h0102", b'{"smoke":true}')
    daemon.expect("zigbee2mqtt/smoke-h0102", b'{"smoke":true}')
    broker.login(T1).publish(event(T1), ALARM)
    daemon.expect(event(T1), ALARM)
    z2m.expect_nothing()
