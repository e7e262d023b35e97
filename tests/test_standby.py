"""Active and standby on one PostgreSQL (issue 15), as real processes on a real broker and a real database:
the standby says who is active and takes over; a kill -9 during a burst loses nothing; an active cut off from
the database stops sending before the standby starts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import psycopg
import pytest

from alertd.store import Store
from tests.fakes.tcp_proxy import TcpProxy
from tests.fakes.twilio_server import TwilioServer
from tests.harness import (
    PATROL_PHONES,
    WAIT_S,
    DaemonProcess,
    Terminals,
    Village,
    forget_session,
    free_port,
    leader_phone,
    private_broker,
    terminals,
    write_village,
)
from tests.pg import fresh_database

TAKEOVER_S = 3.0  # shorter than the shipped 5 s: the same mechanism, a faster suite
SENDER = {"a": "+8613900000001", "b": "+8613900000002"}  # each instance's Twilio number: who sent what


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url) as url:
        yield url


def instance(village: Village, name: str, url: str, *, http_port: int | None = None) -> DaemonProcess:
    """One alertd instance of the village, on the shared database under its own name, port and socket."""
    port = http_port or village.http_port
    env = {
        "ALERTD_STORE__URL": url,
        "ALERTD_STANDBY__INSTANCE": name,
        "ALERTD_STANDBY__TAKEOVER_S": str(TAKEOVER_S),
        "ALERTD_HTTP__LISTEN": f"127.0.0.1:{port}",
        "ALERTD_HTTP__SOCKET": str(village.settings_path.with_name(f"{name}.sock")),
        "ALERTD_TWILIO__FROM_NUMBER": SENDER[name],
    }
    log = village.settings_path.with_name(f"{name}.log")
    return DaemonProcess(village, log, env=env, http_port=port)


async def health(daemon: DaemonProcess) -> dict[str, object]:
    async with aiohttp.ClientSession() as session, session.get(f"{daemon.base_url}/healthz") as response:
        body: dict[str, object] = await response.json()
        return body


async def wait_role(daemon: DaemonProcess, role: str, timeout: float = WAIT_S) -> float:
    """Poll /healthz until it says `role`, healthy; when it did, by the monotonic clock."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                body = await health(daemon)
                if body.get("role") == role and body.get("ok"):
                    return time.monotonic()
            except (aiohttp.ClientError, ValueError):
                pass  # between the standby's HTTP side and the active's
            await asyncio.sleep(0.02)


def status(village: Village, daemon: DaemonProcess) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTD_")} | daemon.env
    done = subprocess.run(
        [sys.executable, "-m", "alertd.cli", "status", "-c", str(village.settings_path)],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout


@contextlib.asynccontextmanager
async def active_and_standby(
    village: Village, database: str, *, a_url: str | None = None
) -> AsyncIterator[tuple[DaemonProcess, DaemonProcess, Terminals]]:
    """Instance a active (on `a_url`, the database's by default), b its standby, and the village's terminals;
    both killed and the alarms' session dropped on the way out, whatever happened."""
    a, b = instance(village, "a", a_url or database), instance(village, "b", database, http_port=free_port())
    try:
        async with terminals(village) as sims:
            await a.start()
            await wait_role(a, "active")
            await b.start()
            await wait_role(b, "standby")
            yield a, b, sims
    finally:
        await a.kill()
        await b.kill()
        await forget_session(village)


async def test_a_standby_says_who_is_active_and_takes_over_when_the_active_stops(
    tmp_path: Path, twilio: TwilioServer, database: str
) -> None:
    village = write_village(tmp_path, twilio=twilio)
    async with active_and_standby(village, database) as (a, b, sims):
        standby = await health(b)
        assert (standby["role"], standby["instance"], standby["active"], standby["ok"]) == (
            "standby",
            "b",
            "a",
            True,
        )
        code, out = status(village, b)
        assert (code, out.splitlines()[0]) == (0, "alertd b: standby (active: a)")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{b.base_url}/") as page:
                assert page.status == 503
                assert "主用机 a" in await page.text(), "the standby's console points at the active"
            for daemon, active in ((a, 1), (b, 0)):
                async with session.get(f"{daemon.base_url}/metrics") as metrics:
                    assert f"alertd_active {active}.0" in await metrics.text()

        await sims.alarm("t1-2", "fire", seq=1)
        await twilio.wait_for_messages(3)
        assert {m.from_ for m in twilio.messages} == {SENDER["a"]}

        assert await a.terminate() == 0
        await wait_role(b, "active")  # the lease was released: no wait for it to run out
        assert status(village, b) == (0, "alertd b: active\n")
        await sims.alarm("t1-3", "fire", seq=1)
        async with asyncio.timeout(WAIT_S):
            while not any(m.from_ == SENDER["b"] for m in twilio.messages):
                await asyncio.sleep(0.05)
        assert await b.terminate() == 0
    with psycopg.connect(database) as conn:
        owners = conn.execute("SELECT id, instance FROM incidents ORDER BY id").fetchall()
    assert owners == [(1, "a"), (2, "b")]


def db_incidents(url: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, household_id, instance FROM incidents ORDER BY id").fetchall()
    return [(int(i), str(h), str(who)) for i, h, who in rows]


def losses(incidents: list[tuple[int, str, str]], sims: Terminals, twilio: TwilioServer) -> tuple[int, int, int]:
    """Alerts that never went out (rings and texts), and the most copies of one ring and of one text."""
    rings = Counter((c.device, c.command.incident_id) for c in sims.rings())
    texts = Counter((m.to, m.body) for m in twilio.messages)
    lost = 0
    for incident_id, household, _ in incidents:
        g, h = (int(x) for x in household[1:].split("-"))
        lost += sum((f"t{g}-{n}", incident_id) not in rings for n in range(1, 11) if n != h)
        texted = {to for (to, body) in texts if body.endswith(f"#{incident_id}")}
        lost += len({leader_phone(g), *PATROL_PHONES} - texted)
    return lost, max(rings.values(), default=0), max(texts.values(), default=0)


async def publish(sims: Terminals, households: list[tuple[int, int]], gap_s: float) -> None:
    for g, h in households:
        await sims.alarm(f"t{g}-{h}", "fire", seq=1)
        await asyncio.sleep(gap_s)


async def test_kill_9_of_the_active_during_a_burst_of_500_alarms_loses_nothing(
    tmp_path: Path, twilio: TwilioServer, database: str
) -> None:
    """The issue's scenario: 500 alarms (one per household, 50 groups); the active is killed -9 mid-burst."""
    households = [(g, h) for g in range(1, 51) for h in range(1, 11)]
    async with private_broker(tmp_path / "broker") as broker:
        # Every alert text counted one by one: storm control (merging texts into summaries) is off here.
        village = write_village(tmp_path, twilio=twilio, groups=50, broker_port=broker.port, storm_threshold=0)
        async with active_and_standby(village, database) as (a, b, sims):
            publisher = asyncio.create_task(publish(sims, households, 0.002))
            await sims.wait_until(lambda: len(sims.rung) >= 90)  # the active is busy: ten alarms have rung
            assert not publisher.done(), "the kill lands mid-burst"
            killed = time.monotonic()
            await a.kill()
            takeover_s = await wait_role(b, "active") - killed
            await publisher
            await sims.wait_until(lambda: len(sims.rung) >= 4500, 120)
            async with asyncio.timeout(120):
                while len({(m.to, m.body) for m in twilio.messages}) < 1500:
                    await asyncio.sleep(0.1)
            assert await b.terminate() == 0
        incidents = db_incidents(database)

    assert sorted(h for _, h, _ in incidents) == sorted(f"h{g}-{h}" for g, h in households), "each alarm, 1 incident"
    by_a = [i for i, _, who in incidents if who == "a"]
    by_b = [i for i, _, who in incidents if who == "b"]
    assert len(by_a) + len(by_b) == 500, "each incident opened by exactly one instance"
    assert by_a, "the kill came after the active had opened some"
    assert by_b, "and before it had opened all"
    assert max(by_a) < min(by_b), "the new active opened nothing before the old one had stopped"
    lost, most_rings, most_texts = losses(incidents, sims, twilio)
    assert lost == 0
    assert (most_rings, most_texts) <= (2, 2), "at most one duplicate per recipient for the one kill"
    print(
        f"takeover {takeover_s:.2f} s after the kill (takeover_s = {TAKEOVER_S}); a opened {len(by_a)}, b {len(by_b)}"
    )


def via(proxy: TcpProxy, url: str) -> str:
    """The database's URL through the proxy."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))


@pytest.mark.parametrize(
    "cut",
    [
        "all",  # the active's every connection to the database hangs (a dead link)
        "lease",  # only its lease's: its store still commits, until the fence refuses (a stuck connection)
    ],
)
async def test_an_active_cut_off_from_the_database_stops_sending_before_the_standby_starts(
    tmp_path: Path, twilio: TwilioServer, database: str, cut: str
) -> None:
    households = [(g, h) for g in range(1, 6) for h in range(1, 11)]
    target = urlsplit(database)
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        village = write_village(tmp_path, twilio=twilio, groups=5, storm_threshold=0)
        async with active_and_standby(village, database, a_url=via(proxy, database)) as (a, b, sims):
            publisher = asyncio.create_task(publish(sims, households, 0.1))  # 5 s of alarms
            await asyncio.sleep(1.5)
            # The lease keeper's connection is the first the active makes; its store's, the next two.
            proxy.cut(spare=frozenset({2, 3}) if cut == "lease" else frozenset())
            cut_at = time.monotonic()
            assert await a.wait_exit() == 1, "deposed, it exits for systemd to start it again as a standby"
            exited_at = time.monotonic()
            took_at = await wait_role(b, "active")
            await publisher
            await sims.wait_until(lambda: len(sims.rung) >= 9 * len(households), 60)
            async with asyncio.timeout(60):
                while len({(m.to, m.body) for m in twilio.messages}) < 3 * len(households):
                    await asyncio.sleep(0.1)
            assert await b.terminate() == 0
        incidents = db_incidents(database)

    sent_by = {name: [m.received_monotonic for m in twilio.messages if m.from_ == SENDER[name]] for name in "ab"}
    assert sent_by["a"], "a was sending when it was cut off"
    assert sent_by["b"], "b sent the rest"
    assert max(sent_by["a"]) < min(sent_by["b"]), "a's last text reached the carrier before b's first"
    assert max(sent_by["a"]) < took_at
    assert exited_at <= took_at, "a stopped on its own, before b took over"
    print(f"a exited {exited_at - cut_at:.2f} s after the cut; b active {took_at - cut_at:.2f} s after it")
    assert sorted(h for _, h, _ in incidents) == sorted(f"h{g}-{h}" for g, h in households)
    lost, most_rings, most_texts = losses(incidents, sims, twilio)
    assert lost == 0
    assert (most_rings, most_texts) <= (2, 2)


async def test_a_standby_takes_over_with_the_roster_reloaded_while_it_waited(
    tmp_path: Path, twilio: TwilioServer, database: str
) -> None:
    """systemctl reload on both nodes after a roster edit: the standby must not take over with the old roster."""
    village = write_village(tmp_path, twilio=twilio)
    async with active_and_standby(village, database) as (a, b, sims):
        roster = village.settings_path.with_name("roster.toml")
        roster.write_text(
            roster.read_text(encoding="utf-8")
            + '\n[[households]]\nid = "h1-11"\ngroup = "g1"\nlabel = "11号户 新搬来"\naddress = "1组11号"\n'
            'people = ["p1-5"]\ndevices = [{ id = "t1-11" }]\n',
            encoding="utf-8",
        )
        assert b.process is not None
        b.process.send_signal(signal.SIGHUP)
        log = village.settings_path.with_name("b.log")
        async with asyncio.timeout(WAIT_S):
            while "Roster reloaded (standby" not in log.read_text(encoding="utf-8", errors="replace"):
                await asyncio.sleep(0.05)
        assert await a.terminate() == 0
        await wait_role(b, "active")
        await sims.alarm("t1-11", "fire", seq=1)
        async with asyncio.timeout(WAIT_S):
            while not db_incidents(database):
                await asyncio.sleep(0.05)
        assert await b.terminate() == 0
    assert db_incidents(database) == [(1, "h1-11", "b")]


async def test_alarms_published_while_no_instance_is_active_wait_at_the_broker(
    tmp_path: Path, twilio: TwilioServer, database: str
) -> None:
    """Between the active's death and the standby's takeover nobody holds the alarms' session: the broker keeps
    what is published meanwhile, and the new active gets it all."""
    village = write_village(tmp_path, twilio=twilio, groups=2, storm_threshold=0)
    households = [(g, h) for g in (1, 2) for h in range(1, 11)]
    async with active_and_standby(village, database) as (a, b, sims):
        await a.kill()
        await publish(sims, households, 0.0)
        published_at = time.monotonic()
        took_at = await wait_role(b, "active")
        assert published_at < took_at, "every alarm was published while no instance was active"
        await sims.wait_until(lambda: len(sims.rung) >= 9 * len(households))
        await twilio.wait_for_messages(3 * len(households), timeout=WAIT_S)
        assert await b.terminate() == 0
    incidents = db_incidents(database)
    assert sorted(h for _, h, _ in incidents) == sorted(f"h{g}-{h}" for g, h in households)
    assert {who for _, _, who in incidents} == {"b"}
    assert losses(incidents, sims, twilio) == (0, 1, 1), "nothing lost, nothing twice"


async def test_a_node_on_an_older_alertd_refuses_a_newer_store_with_exit_2_not_a_restart_loop(
    tmp_path: Path, twilio: TwilioServer, database: str
) -> None:
    """An upgrade half done: the other node migrated the shared store past what this one knows. It must say
    so in one line and exit 2 (the unit does not restart that), not crash with a traceback (exit 1, restarted
    every 2 s for ever)."""
    await (await Store.open_postgres(database, cache=tmp_path / "c.db")).close()
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO alertd_schema (version) VALUES (999)")
    village = write_village(tmp_path, twilio=twilio)
    a = instance(village, "a", database)
    try:
        # It may exit before start() sees it healthy (as a standby, just before it takes the lease) or after.
        with contextlib.suppress(RuntimeError):
            await a.start()
        assert await a.wait_exit() == 2
    finally:
        await a.kill()
        await forget_session(village)
    log = village.settings_path.with_name("a.log").read_text(encoding="utf-8", errors="replace")
    assert "schema version 999 is newer than this alertd knows" in log
    assert "Traceback" not in log


async def test_a_standby_cut_off_from_the_database_says_so(tmp_path: Path, twilio: TwilioServer, database: str) -> None:
    """A standby that cannot read the lease could not take over: its /healthz and `alertd status` say so."""
    target = urlsplit(database)
    village = write_village(tmp_path, twilio=twilio)
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        b = instance(village, "b", via(proxy, database), http_port=free_port())
        try:
            await b.start()
            await wait_role(b, "active")  # alone: it takes the lease; then it is cut off, exits, comes back
            proxy.cut()
            assert await b.wait_exit() == 1
            await b.start()  # systemd's restart: a standby now, and the database does not answer
            async with asyncio.timeout(WAIT_S):
                while "database unreachable" not in str((body := await health(b))["checks"]):
                    await asyncio.sleep(0.1)
            assert (body["role"], body["ok"]) == ("standby", False)
            code, out = status(village, b)
            assert code == 1
            assert out.startswith("alertd b: standby (active: none yet), NOT healthy\n  database: database unreachable")
        finally:
            await b.kill()
            await forget_session(village)
