"""Real parts for end-to-end tests: a generated village roster, the daemon (in-process or as a real
process), simulated terminals on the real broker, and the Twilio-shaped server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import glob
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import aiohttp
import aiomqtt

from alertd.config import load_config
from alertd.daemon import Daemon
from alertd.protocols.terminal import RingCommand, StopCommand, decode_command
from tests.fakes.aliyun_server import AliyunServer
from tests.fakes.twilio_server import TwilioServer

BROKER_HOST = "127.0.0.1"
BROKER_PORT = 1883
ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
FROM_NUMBER = "+8613900000000"
ALIYUN_KEY_ID = "LTAI5tTestKeyId0123"
ALIYUN_SECRET = "aliyun-test-secret-0123456789"
ALIYUN_SIGN = "河口村联防"
ALIYUN_TEMPLATES = {"alert": "SMS_100001", "alert_escalated": "SMS_100002", "confirm": "SMS_100003"}
WAIT_S = 20.0
C = TypeVar("C", RingCommand, StopCommand, RingCommand | StopCommand)
# Debian's libfaketime (scripts/test.sh installs it): a daemon process started at a chosen time.
LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), "libfaketime missing")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def zigbee_devices(group: int, house: int) -> str:
    """A Zigbee smoke sensor in every household, and a siren in house 1 of each group."""
    smoke = f', {{ id = "z{group}-{house}", profile = "zigbee-smoke", ringable = false }}'
    siren = f', {{ id = "s{group}-{house}", profile = "zigbee-siren" }}' if house == 1 else ""
    return smoke + siren


def zigbee_base(prefix: str) -> str:
    """Each test its own Zigbee2MQTT base topic on the shared broker."""
    return "z2m-" + prefix.split("/", maxsplit=1)[0]


def contact_id_account(group: int, house: int) -> str:
    """The Contact ID account of a household's alarm dialer: group digit and house number."""
    return f"{group}{house:03d}"


def leader_phone(group: int) -> str:
    return f"+86138{group:04d}0005"


def resident_phone(group: int, house: int) -> str:
    return f"+86138{group:04d}{house:04d}"


DEPUTY = 8
LEADER = 5
PATROL_PHONES = ("+8613900090021", "+8613900090022")
GRID_PHONE = "+8613900090011"
DUTY_PHONE = "+8613900090001"


@dataclass(slots=True)
class Village:
    """Where a test's config lives and what it is called on the broker."""

    settings_path: Path
    prefix: str
    client_id: str
    http_port: int
    store_path: Path
    groups: int
    broker_port: int = BROKER_PORT

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def socket_path(self) -> Path:
        """The operator socket (alertd ack ...): `socket = "alertd.sock"`, beside the settings file."""
        return self.settings_path.with_name("alertd.sock")


def _toml_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def write_village(
    tmp_path: Path,
    *,
    groups: int = 1,
    steps: tuple[float, float, float] = (0, 120, 300),
    twilio: TwilioServer | None = None,
    join_window_s: float = 600,
    max_attempts: int = 8,
    broker_port: int = BROKER_PORT,
    modem: str | None = None,
    receiver: tuple[str, str] | None = None,
    prefer: str = "twilio",
    zigbee: bool = False,
    aliyun: AliyunServer | None = None,
    call: tuple[str, ...] = (),  # roles called at step 0 (alert calls)
    quorum: int = 0,  # households step 0 asks to be coming
    storm_threshold: int | None = None,  # [storm] threshold; None: the default (0: never merge texts)
    voice_prefer: tuple[str, ...] = ("twilio", "modem"),
) -> Village:
    """A roster of `groups` groups of 10 households (one terminal each), a 2-member patrol, a grid worker,
    a duty contact; house 5 leads, house 8 deputises. Unique prefix and client id per test."""
    tag = uuid.uuid4().hex[:8]
    prefix, client_id, http_port = f"test-{tag}/v1", f"alertd-test-{tag}", free_port()
    people = [
        f'{{ id = "duty", name = "值班室", phone = "{DUTY_PHONE}" }}',
        f'{{ id = "grid", name = "网格员", phone = "{GRID_PHONE}" }}',
        f'{{ id = "patrol1", name = "护边员甲", phone = "{PATROL_PHONES[0]}" }}',
        f'{{ id = "patrol2", name = "护边员乙", phone = "{PATROL_PHONES[1]}" }}',
    ]
    group_tables, households = [], []
    for g in range(1, groups + 1):
        group_tables.append(
            f'[[groups]]\nid = "g{g}"\nname = "{g}组"\nvillage = "河口村"\n'
            f'leader = "p{g}-{LEADER}"\ndeputy = "p{g}-{DEPUTY}"\ngrid_worker = "grid"\n'
        )
        for h in range(1, 11):
            people.append(f'{{ id = "p{g}-{h}", name = "{g}组{h}号户主", phone = "{resident_phone(g, h)}" }}')
            dialer = (
                f', {{ id = "c{g}-{h}", profile = "contact-id", ringable = false, '
                f'account = "{contact_id_account(g, h)}" }}'
                if g <= 9  # Contact ID accounts have four digits
                else ""
            )
            households.append(
                f'[[households]]\nid = "h{g}-{h}"\ngroup = "g{g}"\nlabel = "{h}号户 {g}组"\n'
                f'address = "{g}组{h}号"\npeople = ["p{g}-{h}"]\ndevices = [{{ id = "t{g}-{h}" }}{dialer}'
                f"{zigbee_devices(g, h) if zigbee else ''}]\n"
            )
    group_ids = ", ".join(f'"g{g}"' for g in range(1, groups + 1))
    roster = (
        'duty = ["duty"]\n'
        "people = [\n    " + ",\n    ".join(people) + ",\n]\n\n"
        + "\n".join(group_tables) + "\n" + "\n".join(households) + "\n"
        f'[[patrols]]\nid = "patrol"\nname = "巡逻队"\nmembers = ["patrol1", "patrol2"]\ngroups = [{group_ids}]\n\n'
        "[policies.default]\nsteps = [\n"
        f'  {{ after = {steps[0]}, ring = true, sms = ["leader", "patrol"], call = {_toml_list(call)}, '
        f"quorum = {quorum} }},\n"
        f'  {{ after = {steps[1]}, sms = ["deputy", "grid_worker", "patrol"] }},\n'
        f'  {{ after = {steps[2]}, sms = ["duty"] }},\n]\n'
    )  # fmt: skip
    (tmp_path / "roster.toml").write_text(roster, encoding="utf-8")
    twilio_section = ""
    if twilio is not None:
        twilio_section = (
            f'[twilio]\naccount_sid = "{ACCOUNT_SID}"\nauth_token = "{AUTH_TOKEN}"\n'
            f'from_number = "{FROM_NUMBER}"\napi_base_url = "{twilio.base_url}"\n'
        )
    store_path = tmp_path / "alertd.db"
    settings = (
        '[daemon]\nroster = "roster.toml"\n'
        f'[mqtt]\nurl = "mqtt://{BROKER_HOST}:{broker_port}"\nclient_id = "{client_id}"\nprefix = "{prefix}"\n'
        f'[store]\npath = "{store_path}"\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\npublic_url = "http://127.0.0.1:{http_port}"\n'
        'socket = "alertd.sock"\n'  # relative: resolved beside this file, as every path in it
        f"[incidents]\njoin_window_s = {join_window_s}\n"
        f'[sms]\nmax_attempts = {max_attempts}\nprefer = "{prefer}"\n'
        + twilio_section
        + f"[voice]\nprefer = {_toml_list(voice_prefer)}\nring_s = 10\n"
    )
    if storm_threshold is not None:
        settings += f"[storm]\nthreshold = {storm_threshold}\nwindow_s = 10\n"  # the shortest window: fast tests
    if aliyun is not None:
        settings += (
            f'[aliyun]\naccess_key_id = "{ALIYUN_KEY_ID}"\naccess_key_secret = "{ALIYUN_SECRET}"\n'
            f'sign_name = "{ALIYUN_SIGN}"\nendpoint = "{aliyun.base_url}"\ntimeout_s = 5\nreceipts_interval_s = 0.2\n'
            "templates = { " + ", ".join(f'{k} = "{v}"' for k, v in ALIYUN_TEMPLATES.items()) + " }\n"
        )
    if zigbee:
        settings += f'[zigbee2mqtt]\nbase = "{zigbee_base(prefix)}"\n'
    if modem is not None:
        settings += f'[modem]\nurl = "{modem}"\ncommand_timeout_s = 1.0\nsweep_interval_s = 1.0\n'
    if receiver is not None:
        settings += f'[[receivers]]\nname = "rx"\nurl = "{receiver[0]}"\nformat = "{receiver[1]}"\n'
    settings_path = tmp_path / "alertd.toml"
    settings_path.write_text(settings, encoding="utf-8")
    return Village(settings_path, prefix, client_id, http_port, store_path, groups, broker_port)


@dataclass(slots=True)
class Command(Generic[C]):
    """A command a terminal heard: RingCommand or StopCommand."""

    device: str
    command: C
    at: float


@dataclass(slots=True)
class Terminals:
    """Every terminal of the village at once: one MQTT client that presses buttons and hears commands."""

    village: Village
    client: aiomqtt.Client
    commands: list[Command[RingCommand | StopCommand]] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    rung: set[tuple[str, int]] = field(default_factory=set)  # (device, incident), kept as commands arrive

    def rings(self, incident_id: int | None = None) -> list[Command[RingCommand]]:
        return [
            Command(c.device, c.command, c.at) for c in self.commands
            if isinstance(c.command, RingCommand) and incident_id in (None, c.command.incident_id)
        ]  # fmt: skip

    def stops(self, incident_id: int | None = None) -> list[Command[StopCommand]]:
        return [
            Command(c.device, c.command, c.at) for c in self.commands
            if isinstance(c.command, StopCommand) and incident_id in (None, c.command.incident_id)
        ]  # fmt: skip

    async def wait_until(self, predicate: object, timeout: float = WAIT_S) -> None:
        assert callable(predicate)
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(predicate)

    async def publish(self, device: str, payload: Mapping[str, object] | bytes | str) -> None:
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        await self.client.publish(f"{self.village.prefix}/dev/{device}/event", body, qos=1)

    async def alarm(self, device: str, kind: str = "panic", seq: int | None = None) -> None:
        message: dict[str, object] = {"type": "alarm", "kind": kind}
        if seq is not None:
            message["seq"] = seq
        await self.publish(device, message)

    async def ack(self, device: str, incident: int | None = None) -> None:
        await self.publish(device, {"type": "ack"} | ({"incident": str(incident)} if incident else {}))

    async def coming(self, device: str, incident: int | None = None) -> None:
        """我来了: the household on `device` is responding (to `incident`, or the newest ringing it)."""
        await self.publish(device, {"type": "coming"} | ({"incident": str(incident)} if incident is not None else {}))

    async def checkin(self, device: str) -> None:
        """平安键: the household's daily sign of life."""
        await self.publish(device, {"type": "checkin"})

    async def _listen(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):  # the broker went away: the test reconnects if it wants
            await self._listen_until_disconnected()

    async def _listen_until_disconnected(self) -> None:
        async for message in self.client.messages:
            device = message.topic.value.split("/")[-2]
            command = decode_command(bytes(message.payload))  # type: ignore[arg-type,unused-ignore]
            async with self._changed:
                self.commands.append(Command(device, command, time.monotonic()))
                if isinstance(command, RingCommand):
                    self.rung.add((device, command.incident_id))
                self._changed.notify_all()


@contextlib.asynccontextmanager
async def terminals(
    village: Village, session: str | None = None, commands: list[Command[RingCommand | StopCommand]] | None = None
) -> AsyncIterator[Terminals]:
    """Simulated terminals; with `session`, a persistent session that survives reconnects and broker restarts."""
    async with aiomqtt.Client(
        BROKER_HOST,
        village.broker_port,
        identifier=session or f"sim-{uuid.uuid4().hex[:8]}",
        clean_session=session is None,
    ) as client:
        await client.subscribe(f"{village.prefix}/dev/+/cmd", qos=1)
        sims = Terminals(village, client, commands if commands is not None else [])
        listener = asyncio.create_task(sims._listen())
        try:
            yield sims
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener


async def forget_session(village: Village) -> None:
    """Drop the daemon's persistent session at the broker so tests leave nothing queued behind."""
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client(BROKER_HOST, village.broker_port, identifier=village.client_id, clean_session=True):
            pass


@contextlib.asynccontextmanager
async def running_daemon(village: Village, environ: dict[str, str] | None = None) -> AsyncIterator[Daemon]:
    """The daemon in this process and loop, connected to the broker."""
    daemon = Daemon(load_config(village.settings_path, environ={}), environ=environ or {})
    task = asyncio.create_task(daemon.run())
    try:
        async with asyncio.timeout(WAIT_S):
            try:
                parts = await daemon.started()
            except RuntimeError:
                task.result()  # why it stopped
                raise
            await parts.link.up.wait()
        yield daemon
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 30)


def real_clock_env() -> dict[str, str]:
    """This environment without libfaketime: a broker is the world, and runs on real time even when the
    whole suite is run at a faked hour (a faked Mosquitto stalls its autosave)."""
    return {
        k: v for k, v in os.environ.items()
        if not k.startswith("FAKETIME") and not (k == "LD_PRELOAD" and "faketime" in v)
    }  # fmt: skip


class DaemonProcess:
    """`alertd run` as a real process, for kill -9."""

    def __init__(
        self,
        village: Village,
        log_path: Path,
        *,
        start_at: dt.datetime | None = None,
        clock_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        http_port: int | None = None,
    ) -> None:
        self.village = village
        self.log_path = log_path
        self.env = dict(env or {})  # ALERTD_... overrides of this instance's own (a second instance's port, name)
        self.http_port = http_port or village.http_port
        self.start_at = start_at
        self.clock_file = clock_file  # holds the wall clock's offset ("+3600", "-1h"); rewrite it to step
        self.process: asyncio.subprocess.Process | None = None

    def base_env(self) -> dict[str, str]:
        """The environment to start from: this one, less a suite-wide libfaketime when this process gets
        a clock of its own (libfaketime's FAKETIME would override the timestamp file)."""
        return real_clock_env() if self.start_at is not None or self.clock_file is not None else dict(os.environ)

    def faked_clock(self) -> dict[str, str]:
        """The environment that starts this process's wall clock at start_at (libfaketime, this process
        only: the broker and the tests keep the real time). The monotonic clock stays real."""
        if self.start_at is None and self.clock_file is None:
            return {}
        env = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_NO_CACHE": "1"}
        if self.start_at is not None:
            at = self.start_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            env["FAKETIME"] = f"@{at}"  # starts there and runs on
            env["TZ"] = "UTC"  # "@..." is read in the process's zone; alertd's own zone comes from its config
        if self.clock_file is not None:
            env["FAKETIME_TIMESTAMP_FILE"] = str(self.clock_file)  # re-read at every clock reading
        return env

    async def start(self, failpoint: str | None = None) -> None:
        env = {k: v for k, v in self.base_env().items() if not k.startswith("ALERTD_")} | self.faked_clock() | self.env
        if failpoint:
            env["ALERTD_FAILPOINT"] = failpoint
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alertd.cli", "run", "-c", str(self.village.settings_path),
            stdout=log, stderr=log, env=env,
        )  # fmt: skip
        log.close()
        await self.wait_healthy()
        if self.process.returncode is not None and not failpoint:
            tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"alertd exited with {self.process.returncode} at start:\n{tail}")

    async def wait_healthy(self) -> None:
        async with aiohttp.ClientSession() as session, asyncio.timeout(WAIT_S):
            while True:
                assert self.process is not None
                if self.process.returncode is not None:
                    return  # died already (a failpoint may fire at once on redelivery)
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{self.base_url}/healthz") as response:
                        body = await response.json()
                        if body["checks"]["mqtt"]["ok"]:
                            return
                await asyncio.sleep(0.05)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    async def wait_exit(self, timeout: float = WAIT_S) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def terminate(self) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await self.wait_exit(30)


class PrivateBroker:
    """A Mosquitto of the test's own, started from the shipped config/mosquitto.conf (its persistence and
    queue settings are what is tested) on a free port, so it can be killed and restarted."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        shipped = (Path(__file__).parent.parent / "config" / "mosquitto.conf").read_text(encoding="utf-8")
        lines = []
        replaced = {
            "listener": f"listener {self.port} 127.0.0.1",
            "persistence_location": f"persistence_location {workdir}/",
            "allow_anonymous": "allow_anonymous true",
            "password_file": None,
            "acl_file": None,
            # Anonymous test clients have no username to bind their client id to (the shipped file binds
            # them so no account can take over another's session: tests/test_mqtt_takeover.py).
            "use_username_as_clientid": None,
        }
        for line in shipped.splitlines():
            key = line.split(" ", 1)[0]
            if key not in replaced:
                lines.append(line)
            elif (substitute := replaced[key]) is not None:
                lines.append(substitute)
        if os.geteuid() == 0:
            lines.append("user root")  # mosquitto drops root to "mosquitto", who may not write our tmp dir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")

    async def start(self) -> None:
        log = (self.workdir / "mosquitto.log").open("ab")
        self.process = await asyncio.create_subprocess_exec(
            "mosquitto", "-c", str(self.conf), stdout=log, stderr=log, env=real_clock_env()
        )
        log.close()
        async with asyncio.timeout(WAIT_S):
            while True:
                try:
                    _, writer = await asyncio.open_connection(BROKER_HOST, self.port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                await writer.wait_closed()
                return

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()


@contextlib.asynccontextmanager
async def private_broker(workdir: Path) -> AsyncIterator[PrivateBroker]:
    workdir.mkdir(parents=True, exist_ok=True)
    broker = PrivateBroker(workdir)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.kill()
