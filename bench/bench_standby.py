"""Standby benchmark (issue 15): the pipeline on PostgreSQL beside SQLite, and takeover times after kill -9.

    .venv/bin/python -m bench.bench_standby [--quick] [--rounds N] [--kills N] [--takeover-s S] [--json out.json]
                                            [--keep]

Real parts throughout: a throwaway PostgreSQL cluster of the bench's own (tests/pg.py temporary_postgres, in
the system temporary directory; as root it runs as `postgres`), a Mosquitto of its own from the shipped
config/mosquitto.conf (tests.harness.private_broker), the Twilio-shaped server in the bench process
(tests/fakes/twilio_server.py), `alertd run` as real processes (tests.harness.DaemonProcess), and the
simulated terminals of tests.harness.terminals (one aiomqtt client, QoS 1 both ways; every ring command is
stamped with time.monotonic() as it arrives, every SMS with the server's received_monotonic: one clock).
Rosters come from tests.harness.write_village (10 households per group, house 5 leads, a 2-member patrol)
with storm control off (`storm_threshold=0`: every alert text is sent and counted by itself) and escalation
steps moved past the end of any run (0, 3600, 7200 s instead of 0, 120, 300), so that every text counted is
an alarm's step-0 alert and no escalation of the burst lands in the trickle. Each alarm is one household's
first alarm (`fire`, seq 1), so each opens its own incident (the join window is per household) and causes
9 rings (the group's other households) and 3 texts (the leader and both patrol members).

A. The pipeline, PostgreSQL against SQLite, in the same run (the SQLite daemon is the floor; the machine is
shared and noisy, so compare ratios). Each round measures both stores, SQLite first in odd rounds and
PostgreSQL first in even ones. Each measurement is one new daemon on a new village (its own MQTT prefix and
client id) with a new store: a new SQLite file, or a new database on the cluster (tests.pg.fresh_database,
given to the daemon as ALERTD_STORE__URL; it is the active on a lease nobody else wants). Measured:
* burst: B alarms, one per household, published at once (concurrent QoS 1 publishes); from the first
  publish until every ring (9 B distinct (terminal, incident)) and every text (3 B distinct (to, body)) has
  arrived -> alarms/s; also when the last ring and the last text came;
* daemon CPU per alarm over the burst: utime + stime of the daemon process (/proc/<pid>/stat) from just
  before the first publish to the moment everything had arrived; on PostgreSQL also the cluster's CPU
  (postmaster, its children, and the children it reaped) over the same span, and the bench process's own
  CPU (terminals and Twilio server: when it nears the burst's wall time, the bench is the bottleneck);
* trickle, after the burst has drained: T alarms from T other households, one every 100 ms; alarm publish ->
  its 9th ring (the last of the 9 terminals' first ring commands for that household), p50 / p99.
Per round the PostgreSQL / SQLite ratios, and the median of each ratio over the rounds.

B. Takeover after kill -9, K times: instances "a" and "b" of one village on one new database and the private
broker, each with its own name (ALERTD_STANDBY__INSTANCE), HTTP port and operator socket, and
ALERTD_STANDBY__TAKEOVER_S = --takeover-s (default: the shipped default, 5 s). Each kill: wait until one
says it is active and the other a healthy standby (GET /healthz: "role", "ok"); publish one alarm every
100 ms (a new household each time); 0.5 s later kill -9 the active; record (i) the kill -> the standby's
/healthz saying role "active" (polled every 20 ms), (ii) the kill -> the first ring of an alarm published
after the kill; stop publishing once (ii) is in, and start the killed instance again (it comes up as the
standby). At the end, a bounded wait and the check that no alarm was lost (every alarm published has its 9
rings; also each household's incident count from the database and its 3 texts), min / p50 / p90 / max of
(i) and (ii), and how many took over 5 s.

Every wait is bounded and the whole run has a time budget; every daemon is stopped (or killed), its MQTT
session forgotten, each database dropped and the cluster and the broker stopped on the way out, whatever
happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from alertd.config import StandbySettings
from alertd.protocols.terminal import RingCommand
from bench.bench_pipeline import cpu_s, fmt, pct
from tests.fakes.twilio_server import TwilioServer
from tests.harness import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PATROL_PHONES,
    DaemonProcess,
    PrivateBroker,
    Terminals,
    Village,
    forget_session,
    free_port,
    private_broker,
    terminals,
    write_village,
)
from tests.pg import fresh_database, temporary_postgres

RINGS = 9  # per alarm: the group's other 9 households
TEXTS = 3  # per alarm: the leader and the 2 patrol members
STEPS = (0.0, 3600.0, 7200.0)  # escalations after any run: only step-0 alerts are sent
TRICKLE_GAP_S = 0.1
KILL_GAP_S = 0.1  # between alarms around a kill
LEAD_S = 0.5  # alarms published before the kill
OVER_S = 5.0  # the issue's bound: the longest an alarm may wait for a standby
POLL_S = 0.02
STORES = ("sqlite", "postgres")
TAKEOVER_DEFAULT_S = float(StandbySettings.model_fields["takeover_s"].default)


@dataclass(frozen=True, slots=True)
class Sizes:
    burst: int  # alarms at once, one per household
    trickle: int  # alarms one every 100 ms, other households
    rounds: int  # default --rounds
    kills: int  # default --kills
    burst_wait_s: float  # the burst must have drained by then...
    stall_s: float  # ...and gives up sooner when nothing arrives for this long
    settle_s: float  # after the last trickle alarm / the last kill, at most this long for the stragglers

    @property
    def groups(self) -> int:
        """The burst's groups, then the trickle's."""
        return math.ceil(self.burst / 10) + math.ceil(self.trickle / 10)


FULL = Sizes(burst=500, trickle=100, rounds=3, kills=20, burst_wait_s=180, stall_s=30, settle_s=30)
QUICK = Sizes(burst=100, trickle=20, rounds=2, kills=3, burst_wait_s=60, stall_s=15, settle_s=15)


# --- small helpers --------------------------------------------------------------------------------------


def households(first_group: int, n: int) -> list[tuple[int, int]]:
    """n households (group, house) in order, from house 1 of first_group."""
    return [(first_group + i // 10, i % 10 + 1) for i in range(n)]


def household_id(g: int, h: int) -> str:
    return f"h{g}-{h}"


@dataclass(slots=True)
class RingLog:
    """Per calling household: each terminal's first ring command for it, when it arrived (monotonic). Read
    incrementally, so polling it costs the event loop (which stamps the arrivals) next to nothing."""

    sims: Terminals
    first: dict[str, dict[str, float]] = field(default_factory=dict)
    _pos: int = 0

    def update(self) -> dict[str, dict[str, float]]:
        commands = self.sims.commands
        end = len(commands)
        for c in commands[self._pos : end]:
            if isinstance(c.command, RingCommand):
                self.first.setdefault(c.command.household_id, {}).setdefault(c.device, c.at)
        self._pos = end
        return self.first

    def complete(self, hid: str) -> bool:
        return len(self.first.get(hid, {})) >= RINGS


def alert_texts(twilio: TwilioServer, since: int) -> dict[tuple[str, str], float]:
    """Distinct (to, body) texts to leaders and patrol members accepted since messages[since]: when first."""
    out: dict[tuple[str, str], float] = {}
    for m in twilio.messages[since:]:
        if m.to in PATROL_PHONES or m.to.startswith("+86138"):  # the patrol, the leaders (harness numbers)
            out.setdefault((m.to, m.body), m.received_monotonic)
    return out


def spread(values: list[float]) -> dict[str, float | int | None]:
    return {"n": len(values), "min": min(values, default=None), "p50": pct(values, 50), "p90": pct(values, 90),
            "max": max(values, default=None), "over_5s": sum(v > OVER_S for v in values)}  # fmt: skip


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def per_alarm_ms(before: float | None, after: float | None, n: int) -> float | None:
    return None if before is None or after is None else (after - before) * 1000 / n


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def fx(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


async def until(predicate: Callable[[], bool], timeout: float, progress: Callable[[], object] | None = None,
                stall_s: float | None = None) -> bool:  # fmt: skip
    """Poll until predicate(); False after timeout, or once progress() has not changed for stall_s."""
    deadline = time.monotonic() + timeout
    seen, changed = None, time.monotonic()
    while not predicate():
        now = time.monotonic()
        if now >= deadline:
            return False
        if progress is not None and stall_s is not None:
            value = progress()
            if value != seen:
                seen, changed = value, now
            elif now - changed > stall_s:
                return False
        await asyncio.sleep(POLL_S)
    return True


async def stop_daemon(daemon: DaemonProcess) -> None:
    if daemon.process is None or daemon.process.returncode is not None:
        return
    try:
        await daemon.terminate()
    except TimeoutError:
        await daemon.kill()


# --- the PostgreSQL cluster's CPU -----------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return None


def postmaster_pid(url: str) -> int | None:
    """The cluster's postmaster: the parent of a backend of ours."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
    fields = _stat(int(row[0])) if row else None
    return int(fields[1]) if fields else None


def cluster_cpu_s(postmaster: int | None) -> float | None:
    """CPU seconds of the postmaster, its live children, and the children it has reaped."""
    if postmaster is None or (own := _stat(postmaster)) is None:
        return None
    ticks = sum(int(own[i]) for i in (11, 12, 13, 14))  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None and fields[1] == str(postmaster):
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


def server_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


# --- A. the pipeline on each store ----------------------------------------------------------------------


@dataclass(slots=True)
class Env:
    """What every part shares: the work dir, the broker, Twilio, the cluster."""

    work: Path
    broker: PrivateBroker
    twilio: TwilioServer
    cluster: str
    postmaster: int | None
    runs: int = 0
    notes: list[str] = field(default_factory=list)

    def new_dir(self, name: str) -> Path:
        self.runs += 1
        path = self.work / f"{self.runs:02d}-{name}"
        path.mkdir()
        return path


async def burst(sims: Terminals, env: Env, pid: int, kind: str, sizes: Sizes) -> dict[str, Any]:
    alarms = households(1, sizes.burst)
    since = len(env.twilio.messages)
    want_rings, want_texts = RINGS * len(alarms), TEXTS * len(alarms)
    sims.client.pending_calls_threshold = len(alarms) + 10  # all at once on purpose: no warning per publish
    cpu0, pg0 = cpu_s(pid), cluster_cpu_s(env.postmaster) if kind == "postgres" else None
    own0 = time.process_time()
    t0 = time.monotonic()
    await asyncio.gather(*(sims.alarm(f"t{g}-{h}", "fire", seq=1) for g, h in alarms))
    published = time.monotonic()

    def counts() -> tuple[int, int]:
        return len(sims.rung), len(alert_texts(env.twilio, since))

    def arrived() -> bool:
        rings, texts = counts()
        return rings >= want_rings and texts >= want_texts

    done = await until(arrived, sizes.burst_wait_s, counts, sizes.stall_s)
    cpu1, pg1 = cpu_s(pid), cluster_cpu_s(env.postmaster) if kind == "postgres" else None
    own1 = time.process_time()
    rings, texts = counts()
    ring_times = [at for per in RingLog(sims).update().values() for at in per.values()]
    text_times = list(alert_texts(env.twilio, since).values())
    rings_s = max(ring_times) - t0 if ring_times else None
    texts_s = max(text_times) - t0 if text_times else None
    all_s = max(rings_s, texts_s) if done and rings_s is not None and texts_s is not None else None
    return {
        "alarms": len(alarms),
        "published_s": published - t0,
        "complete": done,
        "rings": f"{rings}/{want_rings}",
        "texts": f"{texts}/{want_texts}",
        "last_ring_s": rings_s,
        "last_text_s": texts_s,
        "all_s": all_s,
        "alarms_per_s": len(alarms) / all_s if all_s else None,
        "daemon_cpu_ms_per_alarm": per_alarm_ms(cpu0, cpu1, len(alarms)),
        "bench_cpu_s": own1 - own0,  # the bench process itself (terminals, Twilio server): is it the bottleneck?
        "pg_cpu_ms_per_alarm": per_alarm_ms(pg0, pg1, len(alarms)),
    }


async def trickle(sims: Terminals, sizes: Sizes) -> dict[str, Any]:
    alarms = households(math.ceil(sizes.burst / 10) + 1, sizes.trickle)
    sent: dict[str, float] = {}
    start = time.monotonic()
    for i, (g, h) in enumerate(alarms):
        delay = start + i * TRICKLE_GAP_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[household_id(g, h)] = time.monotonic()
        await sims.alarm(f"t{g}-{h}", "fire", seq=1)

    log = RingLog(sims)

    def complete() -> bool:
        log.update()
        return all(log.complete(hid) for hid in sent)

    await until(complete, sizes.settle_s)
    latencies = [sorted(log.first[hid].values())[RINGS - 1] - t for hid, t in sent.items() if log.complete(hid)]
    ms = [v * 1000 for v in latencies]
    return {"alarms": len(sent), "lost": len(sent) - len(ms), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99),
            "max_ms": max(ms, default=None)}  # fmt: skip


async def measure(env: Env, kind: str, sizes: Sizes) -> dict[str, Any]:
    """One daemon on one new village and a new store: the burst, then the trickle."""
    work = env.new_dir(kind)
    village = write_village(work, groups=sizes.groups, steps=STEPS, twilio=env.twilio,
                            broker_port=env.broker.port, storm_threshold=0)  # fmt: skip
    with contextlib.ExitStack() as stack:
        daemon_env = {}
        if kind == "postgres":
            daemon_env["ALERTD_STORE__URL"] = stack.enter_context(fresh_database(env.cluster))
        daemon = DaemonProcess(village, work / "alertd.log", env=daemon_env)
        try:
            async with terminals(village) as sims:
                t0 = time.monotonic()
                await daemon.start()
                assert daemon.process is not None
                if kind == "postgres":  # healthy first as a standby, then active once it has taken the lease
                    async with aiohttp.ClientSession() as session:
                        if await wait_active(session, daemon, 30) is None:
                            tail = daemon.log_path.read_text(encoding="utf-8", errors="replace")[-3000:]
                            body: object = "no answer"
                            with contextlib.suppress(aiohttp.ClientError, ValueError, TimeoutError):
                                body = await health(session, daemon)
                            raise RuntimeError(f"the PostgreSQL daemon did not become active in 30 s: /healthz "
                                               f"{body}; its log ends:\n{tail}")  # fmt: skip
                startup_s = time.monotonic() - t0
                result = {"store": kind, "startup_s": startup_s}
                result["burst"] = await burst(sims, env, daemon.process.pid, kind, sizes)
                result["trickle"] = await trickle(sims, sizes)
                if daemon.process.returncode is not None:
                    env.notes.append(f"{kind} daemon exited with {daemon.process.returncode}: {daemon.log_path}")
        finally:
            await stop_daemon(daemon)
            await asyncio.wait_for(forget_session(village), 15)
    return result


def round_ratios(sqlite: dict[str, Any], postgres: dict[str, Any]) -> dict[str, float | None]:
    """PostgreSQL / SQLite, per figure."""
    s, p = sqlite, postgres
    return {
        "burst_alarms_per_s": ratio(p["burst"]["alarms_per_s"], s["burst"]["alarms_per_s"]),
        "trickle_p50": ratio(p["trickle"]["p50_ms"], s["trickle"]["p50_ms"]),
        "trickle_p99": ratio(p["trickle"]["p99_ms"], s["trickle"]["p99_ms"]),
        "daemon_cpu_per_alarm": ratio(p["burst"]["daemon_cpu_ms_per_alarm"], s["burst"]["daemon_cpu_ms_per_alarm"]),
        "daemon_and_pg_cpu_per_alarm": ratio(
            (p["burst"]["daemon_cpu_ms_per_alarm"] or 0) + (p["burst"]["pg_cpu_ms_per_alarm"] or 0) or None,
            s["burst"]["daemon_cpu_ms_per_alarm"],
        ),
    }


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


async def pipeline(env: Env, sizes: Sizes, rounds: int) -> dict[str, Any]:
    per_round: list[dict[str, Any]] = []
    for r in range(1, rounds + 1):
        order = STORES if r % 2 else tuple(reversed(STORES))
        measured: dict[str, Any] = {"round": r, "order": list(order)}
        for kind in order:
            print(f"  round {r}: {kind} ({sizes.burst} at once, then {sizes.trickle} one every 100 ms)...", flush=True)
            measured[kind] = await measure(env, kind, sizes)
        measured["ratios"] = round_ratios(measured["sqlite"], measured["postgres"])
        per_round.append(measured)
    keys = per_round[0]["ratios"].keys()
    medians = {k: median([m["ratios"][k] for m in per_round]) for k in keys}

    def med(kind: str, part: str, key: str) -> float | None:
        return median([m[kind][part][key] for m in per_round])

    figures = {kind: {
        "burst_alarms_per_s": med(kind, "burst", "alarms_per_s"),
        "trickle_p50_ms": med(kind, "trickle", "p50_ms"),
        "trickle_p99_ms": med(kind, "trickle", "p99_ms"),
        "daemon_cpu_ms_per_alarm": med(kind, "burst", "daemon_cpu_ms_per_alarm"),
        "pg_cpu_ms_per_alarm": med(kind, "burst", "pg_cpu_ms_per_alarm"),
    } for kind in STORES}  # fmt: skip
    return {"rounds": per_round, "median_ratios": medians, "medians": figures}


# --- B. takeover after kill -9 --------------------------------------------------------------------------


def instance(
    village: Village, name: str, url: str, takeover_s: float, *, http_port: int | None = None
) -> DaemonProcess:
    """One alertd instance of the village, on the shared database under its own name, port and socket."""
    port = http_port or village.http_port
    env = {
        "ALERTD_STORE__URL": url,
        "ALERTD_STANDBY__INSTANCE": name,
        "ALERTD_STANDBY__TAKEOVER_S": str(takeover_s),
        "ALERTD_HTTP__LISTEN": f"127.0.0.1:{port}",
        "ALERTD_HTTP__SOCKET": str(village.settings_path.with_name(f"{name}.sock")),
    }
    return DaemonProcess(village, village.settings_path.with_name(f"{name}.log"), env=env, http_port=port)


async def health(session: aiohttp.ClientSession, daemon: DaemonProcess) -> dict[str, Any]:
    async with session.get(f"{daemon.base_url}/healthz") as response:
        body: dict[str, Any] = await response.json()
        return body


async def role_of(session: aiohttp.ClientSession, daemon: DaemonProcess) -> str | None:
    """The role /healthz reports ("active", "standby") when it also says ok; None otherwise, or without an answer."""
    with contextlib.suppress(aiohttp.ClientError, ValueError, TimeoutError):
        body = await health(session, daemon)
        if body.get("ok"):
            return str(body.get("role"))
    return None


async def wait_roles(session: aiohttp.ClientSession, pair: tuple[DaemonProcess, DaemonProcess],
                     timeout: float) -> tuple[DaemonProcess, DaemonProcess]:  # fmt: skip
    """Until one says active and the other a healthy standby: (active, standby)."""
    async with asyncio.timeout(timeout):
        while True:
            roles = [await role_of(session, d) for d in pair]
            if roles == ["active", "standby"]:
                return pair
            if roles == ["standby", "active"]:
                return pair[1], pair[0]
            await asyncio.sleep(POLL_S)


async def wait_active(session: aiohttp.ClientSession, daemon: DaemonProcess, timeout: float) -> float | None:
    """Poll /healthz until it says active and ok: when (monotonic), or None after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await role_of(session, daemon) == "active":
            return time.monotonic()
        await asyncio.sleep(POLL_S)
    return None


@dataclass(slots=True)
class Feed:
    """Alarms from households in order, one every KILL_GAP_S until stopped; when each was published.

    Stopped by a flag, not by cancelling: Python 3.11's asyncio.wait_for (inside aiomqtt's publish) can swallow
    a cancellation that arrives as the PUBACK does, and the feed would go on."""

    sims: Terminals
    left: list[tuple[int, int]]
    sent: dict[str, float] = field(default_factory=dict)
    ran_out: int = 0
    stopping: bool = False

    async def run(self) -> None:
        self.stopping = False
        start = time.monotonic()
        i = 0
        while True:
            delay = start + i * KILL_GAP_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.stopping:
                return
            if not self.left:
                self.ran_out += 1
                return
            g, h = self.left.pop(0)
            self.sent[household_id(g, h)] = time.monotonic()
            await self.sims.alarm(f"t{g}-{h}", "fire", seq=1)
            i += 1


def db_incidents(url: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, household_id, instance FROM incidents ORDER BY id").fetchall()
    return [(int(i), str(h), str(who)) for i, h, who in rows]


async def one_kill(
    session: aiohttp.ClientSession,
    log: RingLog,
    feed: Feed,
    pair: tuple[DaemonProcess, DaemonProcess],
    takeover_s: float,
) -> dict[str, Any]:
    active, standby = await wait_roles(session, pair, 60)
    before = len(feed.sent)
    publisher = asyncio.create_task(feed.run())
    try:
        await asyncio.sleep(LEAD_S)
        killed = time.monotonic()
        await active.kill()
        took = await wait_active(session, standby, 4 * takeover_s + 20)

        def first_after() -> float | None:
            first = log.update()
            times = [min(first[hid].values()) for hid, t in feed.sent.items() if t >= killed and hid in first]
            return min(times) if times else None

        await until(lambda: first_after() is not None, 4 * takeover_s + 20)
        ring_at = first_after()
    finally:
        feed.stopping = True
        try:
            await asyncio.wait_for(asyncio.shield(publisher), 15)
        except TimeoutError:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
    published = list(feed.sent.values())[before:]
    result = {
        "killed": active.env["ALERTD_STANDBY__INSTANCE"],
        "takeover_s": took - killed if took is not None else None,
        "first_ring_s": ring_at - killed if ring_at is not None else None,
        "alarms_before_kill": sum(t < killed for t in published),
        "alarms_after_kill": sum(t >= killed for t in published),
    }
    await active.start()  # comes up as the standby
    return result


async def takeover(env: Env, sizes: Sizes, kills: int, takeover_s: float) -> dict[str, Any]:
    # Per kill: the lead, up to the takeover and its first ring (about takeover_s), with room to spare.
    per_kill = math.ceil((LEAD_S + 2 * takeover_s + 5) / KILL_GAP_S)
    groups = math.ceil(kills * per_kill / 10) + 1
    work = env.new_dir("takeover")
    village = write_village(work, groups=groups, steps=STEPS, twilio=env.twilio, broker_port=env.broker.port,
                            storm_threshold=0)  # fmt: skip
    since = len(env.twilio.messages)
    results: list[dict[str, Any]] = []
    with fresh_database(env.cluster) as url:
        a = instance(village, "a", url, takeover_s)
        b = instance(village, "b", url, takeover_s, http_port=free_port())
        try:
            async with terminals(village) as sims, aiohttp.ClientSession() as session:
                feed, log = Feed(sims, households(1, groups * 10)), RingLog(sims)
                await a.start()
                await wait_active(session, a, 30)
                await b.start()
                for k in range(1, kills + 1):
                    results.append(await one_kill(session, log, feed, (a, b), takeover_s))
                    r = results[-1]
                    print(f"  kill {k}/{kills}: {r['killed']} killed; takeover {fmt(r['takeover_s'], '.2f')} s, "
                          f"first ring {fmt(r['first_ring_s'], '.2f')} s", flush=True)  # fmt: skip

                def all_rung() -> int:
                    log.update()
                    return sum(log.complete(hid) for hid in feed.sent)

                await until(lambda: all_rung() == len(feed.sent), sizes.settle_s)
                rung_ok = all_rung()
                await until(lambda: len(alert_texts(env.twilio, since)) >= TEXTS * len(feed.sent), sizes.settle_s)
                copies = Counter((c.device, c.command.incident_id) for c in sims.rings())
            for d in (a, b):
                await stop_daemon(d)
            incidents = db_incidents(url)
        finally:
            for d in (a, b):
                await d.kill()
            await asyncio.wait_for(forget_session(village), 15)
    per_household = Counter(h for _, h, _ in incidents)
    texts = alert_texts(env.twilio, since)
    texted = Counter(body.rsplit("#", 1)[-1] for _, body in texts)
    texts_missing = sum(max(0, TEXTS - texted.get(str(i), 0)) for i, _, _ in incidents)
    return {
        "kills": results,
        "takeover_s": spread([r["takeover_s"] for r in results if r["takeover_s"] is not None]),
        "first_ring_s": spread([r["first_ring_s"] for r in results if r["first_ring_s"] is not None]),
        "no_takeover_seen": sum(r["takeover_s"] is None for r in results),
        "no_ring_seen": sum(r["first_ring_s"] is None for r in results),
        "alarms": len(feed.sent),
        "alarms_lost": len(feed.sent) - rung_ok,
        "incidents": len(incidents),
        "households_without_incident": sum(hid not in per_household for hid in feed.sent),
        "households_with_2_or_more": sum(n > 1 for n in per_household.values()),
        "incidents_by_instance": dict(Counter(who for _, _, who in incidents)),
        "texts": f"{len(texts)}/{TEXTS * len(incidents)}",
        "texts_missing": texts_missing,
        "most_copies_of_one_ring": max(copies.values(), default=0),
        "ran_out_of_households": feed.ran_out,
        "groups": groups,
    }


# --- output ---------------------------------------------------------------------------------------------


def print_pipeline(a: dict[str, Any], sizes: dict[str, Any]) -> None:
    print()
    print(f"A. pipeline: burst of {sizes['burst']} at once, then {sizes['trickle']} one every 100 ms; "
          f"{plural(len(a['rounds']), 'round')}")  # fmt: skip
    print(
        f"{'round':5} {'store':8} {'start s':>7} | burst: {'alarms/s':>8} {'all in s':>8} {'ring s':>6} {'text s':>6} "
        f"{'rings':>9} {'texts':>9} {'CPU ms/al':>9} {'PG ms/al':>8} {'bench s':>7} | trickle: {'p50 ms':>6} "
        f"{'p99 ms':>6} {'lost':>4}"
    )
    for m in a["rounds"]:
        for kind in m["order"]:
            r = m[kind]
            b, t = r["burst"], r["trickle"]
            cpu, pg_cpu = fmt(b["daemon_cpu_ms_per_alarm"], ".2f"), fmt(b["pg_cpu_ms_per_alarm"], ".2f")
            print(f"{m['round']:<5} {kind:8} {r['startup_s']:7.2f} |        {fmt(b['alarms_per_s']):>8} "
                  f"{fmt(b['all_s'], '.2f'):>8} {fmt(b['last_ring_s'], '.2f'):>6} {fmt(b['last_text_s'], '.2f'):>6} "
                  f"{b['rings']:>9} {b['texts']:>9} {cpu:>9} {pg_cpu:>8} {b['bench_cpu_s']:7.2f} |          "
                  f"{fmt(t['p50_ms']):>6} {fmt(t['p99_ms']):>6} {t['lost']:>4}")  # fmt: skip
    print()
    print(f"{'PostgreSQL / SQLite':19} {'alarms/s':>9} {'p50':>7} {'p99':>7} {'CPU':>7} {'CPU+PG':>7}")
    rows = [(f"round {m['round']}", m["ratios"]) for m in a["rounds"]] + [("median", a["median_ratios"])]
    for label, q in rows:
        print(f"{label:19} {fx(q['burst_alarms_per_s']):>9} {fx(q['trickle_p50']):>7} {fx(q['trickle_p99']):>7} "
              f"{fx(q['daemon_cpu_per_alarm']):>7} {fx(q['daemon_and_pg_cpu_per_alarm']):>7}")  # fmt: skip


def print_takeover(b: dict[str, Any]) -> None:
    print()
    print(f"B. takeover after kill -9: {len(b['kills'])} kills, takeover_s = {b['takeover_s_setting']:g}")
    print(f"{'kill':>4} {'killed':6} {'takeover s':>10} {'1st ring s':>10} {'alarms before/after':>19}")
    for i, k in enumerate(b["kills"], 1):
        print(f"{i:>4} {k['killed']:6} {fmt(k['takeover_s'], '.2f'):>10} {fmt(k['first_ring_s'], '.2f'):>10} "
              f"{str(k['alarms_before_kill']) + ' / ' + str(k['alarms_after_kill']):>19}")  # fmt: skip
    for key, label in (("takeover_s", "kill -> standby active"), ("first_ring_s", "kill -> first ring")):
        s = b[key]
        print(f"{label:24} min {fmt(s['min'], '.2f')} / p50 {fmt(s['p50'], '.2f')} / p90 {fmt(s['p90'], '.2f')} / "
              f"max {fmt(s['max'], '.2f')} s; over {OVER_S:g} s: {s['over_5s']} of {s['n']}")  # fmt: skip
    print(f"alarms {b['alarms']}, lost (fewer than {RINGS} rings) {b['alarms_lost']}; incidents {b['incidents']} "
          f"(households without one {b['households_without_incident']}, with 2+ {b['households_with_2_or_more']}; "
          f"by instance {b['incidents_by_instance']}); texts {b['texts']}, missing {b['texts_missing']}; "
          f"most copies of one ring {b['most_copies_of_one_ring']}")  # fmt: skip


def summary(results: dict[str, Any]) -> str:
    """Markdown for docs/benchmarks.md."""
    s, a, b = results["sizes"], results["pipeline"], results["takeover"]
    q = a["median_ratios"]
    sq, pg = a["medians"]["sqlite"], a["medians"]["postgres"]
    n = len(a["rounds"])
    rows = [  # label, figure, format, ratio
        (f"burst of {s['burst']} → all rings and texts, alarms/s", "burst_alarms_per_s", ".1f", "burst_alarms_per_s"),
        (f"trickle ({s['trickle']}, one per 100 ms): alarm → 9th ring p50, ms", "trickle_p50_ms", ".1f", "trickle_p50"),
        ("trickle: alarm → 9th ring p99, ms", "trickle_p99_ms", ".1f", "trickle_p99"),
        ("daemon CPU per alarm (burst), ms", "daemon_cpu_ms_per_alarm", ".2f", "daemon_cpu_per_alarm"),
    ]
    lines = [
        f"### Results, {results['when']} UTC (`bench/bench_standby.py{' --quick' if results['quick'] else ''}`, "
        f"{plural(n, 'round')}, {plural(len(b['kills']), 'kill')})",
        "",
        f"{results['nproc']} cores, Python {results['python']}, PostgreSQL {results['postgres']} (throwaway cluster, "
        "fsync off), own mosquitto.",
        "",
        f"| pipeline, median of {plural(n, 'round')} | SQLite | PostgreSQL | PostgreSQL ÷ SQLite (median ratio) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, key, spec, ratio_key in rows:
        lines.append(f"| {label} | {fmt(sq[key], spec)} | {fmt(pg[key], spec)} | {fx(q[ratio_key])} |")
    lines += [
        f"| + PostgreSQL server CPU per alarm, ms | - | {fmt(pg['pg_cpu_ms_per_alarm'], '.2f')} | "
        f"{fx(q['daemon_and_pg_cpu_per_alarm'])} (daemon + server) |",
        "",
        f"| after kill -9 of the active ({len(b['kills'])} kills, takeover_s = {b['takeover_s_setting']:g}) "
        f"| min | p50 | p90 | max | over {OVER_S:g} s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for key, label in (("takeover_s", "kill → the standby's /healthz says active"),
                       ("first_ring_s", "kill → first ring of an alarm published after it")):  # fmt: skip
        d = b[key]
        lines.append(f"| {label} | {fmt(d['min'], '.2f')} s | {fmt(d['p50'], '.2f')} s | {fmt(d['p90'], '.2f')} s | "
                     f"{fmt(d['max'], '.2f')} s | {d['over_5s']} of {d['n']} |")  # fmt: skip
    lines += [
        "",
        f"Alarms published around the kills: {b['alarms']} (one every {KILL_GAP_S * 1000:.0f} ms); lost (fewer than "
        f"{RINGS} rings): {b['alarms_lost']}; incidents {b['incidents']}, households with 2 or more "
        f"{b['households_with_2_or_more']}; texts missing {b['texts_missing']}; most copies of one ring "
        f"{b['most_copies_of_one_ring']}.",
    ]
    lost_a = sum(m[k]["trickle"]["lost"] + (not m[k]["burst"]["complete"]) for m in a["rounds"] for k in STORES)
    lines.append(
        f"Pipeline: every burst complete and no trickle alarm without its 9 rings: {'yes' if not lost_a else 'NO'}."
    )
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    rounds = args.rounds or sizes.rounds
    kills = sizes.kills if args.kills is None else args.kills
    work = Path(tempfile.mkdtemp(prefix="alertd-bench-standby-"))
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "quick": args.quick,
        "sizes": {
            "burst": sizes.burst,
            "trickle": sizes.trickle,
            "groups": sizes.groups,
            "rounds": rounds,
            "kills": kills,
            "steps": list(STEPS),
        },
    }
    # Generous: the runs take seconds to minutes each; the budget only stops a hung run.
    budget_s = 120 + rounds * 2 * (sizes.burst_wait_s + sizes.settle_s + 60) + kills * (8 * args.takeover_s + 60)
    started = time.monotonic()
    try:
        async with (
            asyncio.timeout(budget_s),
            temporary_postgres(Path(tempfile.gettempdir())) as cluster,
            private_broker(work / "broker") as broker,
            TwilioServer(ACCOUNT_SID, AUTH_TOKEN) as twilio,
        ):
            env = Env(work, broker, twilio, cluster, postmaster_pid(cluster))
            results["postgres"] = server_version(cluster)
            print(f"work dir {work}; PostgreSQL {results['postgres']} at {cluster}; broker port {broker.port}",
                  flush=True)  # fmt: skip
            results["pipeline"] = await pipeline(env, sizes, rounds)
            print(f"  takeover: {kills} kills, takeover_s = {args.takeover_s:g}...", flush=True)
            results["takeover"] = await takeover(env, sizes, kills, args.takeover_s)
            results["takeover"]["takeover_s_setting"] = args.takeover_s
            results["notes"] = env.notes
    finally:
        results["elapsed_s"] = time.monotonic() - started
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="alertd on PostgreSQL beside SQLite, and takeover after kill -9")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK.burst} at once, {QUICK.trickle} trickled, {QUICK.rounds} rounds, {QUICK.kills} kills",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help=f"pipeline rounds, each store once a round (default {FULL.rounds}; quick {QUICK.rounds})",
    )
    parser.add_argument("--kills", type=int, help=f"kill -9 of the active (default {FULL.kills}; quick {QUICK.kills})")
    parser.add_argument(
        "--takeover-s",
        type=float,
        default=TAKEOVER_DEFAULT_S,
        help=f"[standby] takeover_s of both instances (default: the shipped {TAKEOVER_DEFAULT_S:g})",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (rosters, daemon logs, broker)")
    args = parser.parse_args()
    if (args.rounds is not None and args.rounds < 1) or (args.kills is not None and args.kills < 1):
        parser.error("--rounds and --kills must be at least 1")
    results = asyncio.run(main_async(args))
    print_pipeline(results["pipeline"], results["sizes"])
    print_takeover(results["takeover"])
    for note in results.get("notes", []):
        print(f"note: {note}")
    print(f"\nwhole run {results['elapsed_s']:.0f} s\n")
    print(summary(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
