"""The duty-room console under load: 20 live boards open while alarms trickle in (issue 11).

    .venv/bin/python -m bench.bench_console [--quick] [--boards 20] [--rounds 4] [--per-phase 50]
        [--interval-ms 100] [--broker-port 1883] [--json out.json] [--keep]

One run measures two things:

1. **How soon an alarm is on an open board**, with `--boards` boards open. A board is what the page's script
   (alertd/web/static/console.js) does in a browser: one logged-in HTTP client (its own cookies) that holds
   `GET /events` (server-sent events) open, and on `hello` and on every `event: changed` fetches
   `GET /board/rows`, one fetch per event, concurrently, as the script does (no coalescing), plus the
   script's refresh every 30 s. Each board may have 6 connections to the daemon, like a browser over
   HTTP/1.1 (the event stream takes one). A row is **visible** on a board when a `/board/rows` response
   that contains `data-id="<incident id>"` has been read in full.
   The daemon does not export the moment of its commit, so the bench uses the earliest outside sign of it,
   commit*: the earlier of (a) the alarm's first ring command at the simulated terminals' subscriber
   (the commit claims the rings and hands them to the terminal outbox) and (b) the first `changed` event
   for the incident read by any board (the engine tells the live boards right after the commit, before it
   hands over the rings; under load (b) comes first, by 10-25 ms). Both follow the commit by at least a
   trip through the broker or an SSE write, so "commit* -> row visible" understates "commit -> row
   visible" by a few ms. Also reported: "first ring -> row visible" (the ring alone as the proxy),
   "alarm published -> row visible" (no proxy at all), "commit* -> `changed` read" (the push alone,
   before the fetch), and one `GET /board/rows` alone on the idle daemon after each phase (wall time and
   the daemon's CPU per request), so the cost of a request is seen apart from the queueing.
2. **What open boards cost the alarm path**: alarm published -> all 9 ring commands received by the
   simulated terminals, p50/p95/p99, with no board open and with the boards open, in the same run:
   `--rounds` rounds of two phases, `--per-phase` alarms each, without boards first in odd rounds and
   with boards first in even ones. Reported per phase and as a ratio (with / without). Also the daemon's
   CPU time per alarm in each phase (user + system, from /proc/<pid>/stat, from the first alarm until the
   phase is done: all rings in, every board has every row, every request the boards made has been answered
   and read, and 0.5 s more).

Alarms: one every `--interval-ms` (100 ms), each from another household in another group (groups 1..N, the
house rotating), so each opens its own incident. After each phase, with no board open, the bench cancels the
phase's incidents through the console (POST /incidents/<id>/act, action cancel, as the first account) and
waits for their stop commands, so every phase starts on an empty board that grows by one row per alarm, to
`--per-phase` rows (the boards' median rows per fetch is reported per phase). Escalation steps after the first are
moved to 1 h and 2 h so that no escalation SMS (and no commit of its own) falls inside the run. SMS go to
alertd's console channel (no Twilio configured): they are not measured here (bench/bench_pipeline.py is).

Processes (all on loopback): `alertd run` as a real process (tests.harness.DaemonProcess, a roster from
tests.harness.write_village); the boards in a child process of their own (this module with
`--boards-child`; one asyncio loop, one aiohttp ClientSession per board), so that parsing 20 boards' rows
never delays the ring timestamps; the bench process publishes alarms (paho, QoS 1) and receives ring commands
with a paho subscriber on `{prefix}/dev/+/cmd`, stamped in paho's receive callback. All clocks are
time.time() on one machine. The accounts are made with the real CLI (`alertd users add NAME --role duty
--password-stdin -c SETTINGS`), one per board.

Every wait is bounded, and the whole run has a time budget. On the way out the bench logs the boards out,
stops the child and the daemon, forgets the daemon's MQTT persistent session and removes the work dir
(unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.bench_pipeline import PahoClient, cpu_s, fmt, pct, rss_mb, stop_process
from tests.harness import DaemonProcess, Village, forget_session, write_village

HOST = "127.0.0.1"
RINGS = 9
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
DATA_ID = re.compile(r'data-id="(\d+)"')
PAGE_REFRESH_S = 30.0  # console.js: setInterval(refresh, 30000)
BROWSER_CONNECTIONS = 6  # per host, HTTP/1.1, as a browser allows
FETCH_TIMEOUT_S = 120.0  # a browser's fetch has none; ours must end
SETTLE_S = 0.5  # after a phase's last ring, row and fetch, before the daemon's CPU is read
WARMUP = 3  # alarms, not measured, with and without boards, before the first round


@dataclass(frozen=True, slots=True)
class Sizes:
    boards: int
    rounds: int
    per_phase: int  # alarms per phase; each round has one phase without boards and one with
    interval_s: float
    settle_s: float  # after a phase's last alarm, wait at most this long for its rings and rows
    stall_s: float  # ...or less, when nothing has progressed for this long
    budget_s: float

    @property
    def alarms(self) -> int:
        return self.rounds * 2 * self.per_phase


FULL = Sizes(boards=20, rounds=4, per_phase=50, interval_s=0.100, settle_s=60, stall_s=20, budget_s=420)
QUICK = Sizes(boards=20, rounds=2, per_phase=10, interval_s=0.100, settle_s=30, stall_s=10, budget_s=150)


def summary_ms(values: Iterable[float]) -> dict[str, float | int | None]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50": pct(ms, 50),
        "p95": pct(ms, 95),
        "p99": pct(ms, 99),
        "max": max(ms, default=None),
    }


# --- the boards, in a child process ----------------------------------------------------------------------


async def console_login(http: aiohttp.ClientSession, base: str, name: str, password: str) -> str:
    """As tests/test_console.py's Console.login: the login page's CSRF field, then the form. The session's
    CSRF token (the board's logout form carries it)."""
    async with http.get(f"{base}/login", timeout=aiohttp.ClientTimeout(total=30)) as page:
        match = CSRF.search(await page.text())
    if match is None:
        raise RuntimeError("no csrf field on /login")
    async with http.post(
        f"{base}/login",
        data={"csrf": match.group(1), "name": name, "password": password},
        timeout=aiohttp.ClientTimeout(total=30),
    ) as response:
        text = await response.text()
        if response.status != 200 or (session_csrf := CSRF.search(text)) is None:
            raise RuntimeError(f"login as {name} answered {response.status}")
    return session_csrf.group(1)


@dataclass(slots=True)
class InFlight:
    """`GET /board/rows` requests made and not yet read in full, over all boards."""

    now: int = 0
    peak: int = 0

    def more(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)


class Board:
    """One browser tab with the live board open: its own cookies, its event stream, its fetches."""

    def __init__(self, index: int, base: str, emit: Callable[[dict[str, Any]], None], inflight: InFlight) -> None:
        self.index, self.base, self.emit, self.inflight = index, base, emit, inflight
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies from 127.0.0.1
            connector=aiohttp.TCPConnector(limit=BROWSER_CONNECTIONS, limit_per_host=BROWSER_CONNECTIONS),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        self.csrf = ""
        self.seen: set[int] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()  # hello read and its refresh done

    async def login(self, name: str, password: str) -> None:
        self.csrf = await console_login(self.http, self.base, name, password)

    def open(self) -> None:
        self.ready.clear()
        self._spawn(self._stream())
        self._spawn(self._every_30_s())

    async def close(self) -> None:
        """The tab is closed: the stream and any fetch in flight are dropped."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()

    async def logout(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self.http.post(
                f"{self.base}/logout", data={"csrf": self.csrf}, timeout=aiohttp.ClientTimeout(total=10)
            ):
                pass
        await self.http.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _every_30_s(self) -> None:
        while True:
            await asyncio.sleep(PAGE_REFRESH_S)
            self._spawn(self._refresh("timer"))

    async def _stream(self) -> None:
        try:
            async with self.http.get(f"{self.base}/events", headers={"Accept": "text/event-stream"}) as response:
                if response.status != 200:
                    self.emit({"ev": "error", "b": self.index, "where": "events", "msg": f"HTTP {response.status}"})
                    return
                event, data = "", ""
                async for raw in response.content:
                    line = raw.decode().rstrip("\r\n")
                    if line.startswith(":"):
                        continue  # a comment (aiohttp_sse's ping)
                    if line:
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if name == "event":
                            event = value
                        elif name == "data":
                            data = value
                        continue
                    at = time.time()
                    if event == "hello":
                        self._spawn(self._refresh("hello"))
                    elif event == "changed":
                        incident = json.loads(data).get("id")
                        self.emit({"ev": "changed", "b": self.index, "t": at, "id": incident})
                        self._spawn(self._refresh("changed"))
                    event, data = "", ""
            self.emit({"ev": "stream_end", "b": self.index, "t": time.time()})
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - reported to the bench, which counts it
            self.emit({"ev": "error", "b": self.index, "where": "events", "msg": repr(err)})

    async def _refresh(self, why: str) -> None:
        t0 = time.time()
        self.inflight.more()
        try:
            async with self.http.get(
                f"{self.base}/board/rows", timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
            ) as response:
                text = await response.text()
                status = response.status
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001
            self.emit({"ev": "error", "b": self.index, "where": "board/rows", "msg": repr(err)})
            return
        finally:
            self.inflight.now -= 1
        t1 = time.time()
        ids = [int(i) for i in DATA_ID.findall(text)] if status == 200 else []
        new = [i for i in ids if i not in self.seen]
        self.seen.update(new)
        self.emit({"ev": "fetch", "b": self.index, "t0": t0, "t1": t1, "status": status, "rows": len(ids),
                   "bytes": len(text), "new": new, "why": why})  # fmt: skip
        if why == "hello":
            self.ready.set()


async def boards_child() -> None:
    """The child's side: a JSON config line on stdin, then commands (open, drain, close, quit), one per line.
    Everything it sees goes to stdout as JSON lines."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    def emit(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    config = json.loads(await stdin.readline())
    inflight = InFlight()
    boards = [Board(i, config["base"], emit, inflight) for i in range(len(config["names"]))]
    try:
        await asyncio.gather(*(b.login(n, config["password"]) for b, n in zip(boards, config["names"], strict=True)))
        emit({"ev": "ready", "t": time.time()})
        while line := (await stdin.readline()).decode().strip():
            if line == "open":
                inflight.peak = 0
                for board in boards:
                    board.open()
                try:
                    async with asyncio.timeout(60):
                        await asyncio.gather(*(b.ready.wait() for b in boards))
                    emit({"ev": "opened", "t": time.time()})
                except TimeoutError:
                    emit({"ev": "error", "where": "open", "msg": f"{sum(b.ready.is_set() for b in boards)} ready"})
                    emit({"ev": "opened", "t": time.time()})
            elif line.startswith("drain "):  # until no request is in flight, at most this many seconds
                deadline = time.monotonic() + float(line.split()[1])
                while inflight.now and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                emit({"ev": "drained", "t": time.time(), "left": inflight.now, "peak": inflight.peak})
            elif line == "close":
                await asyncio.gather(*(b.close() for b in boards))
                emit({"ev": "closed", "t": time.time()})
            elif line == "quit":
                break
    finally:
        await asyncio.gather(*(b.close() for b in boards), return_exceptions=True)
        await asyncio.gather(*(b.logout() for b in boards), return_exceptions=True)
        emit({"ev": "bye", "t": time.time()})


class BoardsProcess:
    """The parent's handle on the child: commands in, what the boards saw out."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.control: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.fetches: list[dict[str, Any]] = []
        self.changed: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, base: str, names: list[str], password: str) -> None:
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.bench_console", "--boards-child",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
            limit=2**24,
        )  # fmt: skip
        log.close()
        self._reader = asyncio.create_task(self._read())
        await self._send(json.dumps({"base": base, "names": names, "password": password}))
        await self._expect("ready", 120)

    async def _send(self, line: str) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def _expect(self, event: str, timeout: float) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = await self.control.get()
                if message["ev"] == event:
                    return message
                if message["ev"] == "eof":
                    raise RuntimeError(f"the boards' process ended; see {self.log_path}")

    async def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            message = json.loads(line)
            match message["ev"]:
                case "fetch":
                    self.fetches.append(message)
                case "changed":
                    self.changed.append(message)
                case "error" | "stream_end":
                    self.errors.append(message)
                case _:
                    await self.control.put(message)
        await self.control.put({"ev": "eof"})

    async def open(self) -> float:
        await self._send("open")
        return float((await self._expect("opened", 90))["t"])

    async def drain(self, timeout: float) -> dict[str, Any]:
        """Wait until every request the boards made has been answered and read."""
        await self._send(f"drain {timeout}")
        return await self._expect("drained", timeout + 30)

    async def close(self) -> None:
        await self._send("close")
        await self._expect("closed", 30)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self._send("quit")
                await self._expect("bye", 30)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 10)
        await stop_process(self.process)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


# --- accounts, alarms, rings ---------------------------------------------------------------------------


async def add_accounts(village: Village, names: list[str], password: str) -> None:
    """`alertd users add NAME --role duty --password-stdin -c SETTINGS`: the first alone (it creates the
    store; creators running at once trip over each other), then the others 4 at a time."""
    limit = asyncio.Semaphore(4)

    async def add(name: str) -> None:
        async with limit:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "alertd.cli", "users", "add", name, "--role", "duty", "--password-stdin",
                "-c", str(village.settings_path),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            try:
                out, _ = await asyncio.wait_for(process.communicate(password.encode() + b"\n"), 60)
            finally:
                await stop_process(process)  # a no-op once it has exited
            if process.returncode != 0:
                raise RuntimeError(f"alertd users add {name}: {out.decode(errors='replace')}")

    await add(names[0])
    async with asyncio.TaskGroup() as group:
        for name in names[1:]:
            group.create_task(add(name))


@dataclass(slots=True)
class Alarm:
    group: int
    house: int
    phase: str = ""  # "without" or "with" (boards)
    round: int = 0
    t0: float = 0.0  # published
    incident: int | None = None
    rings: dict[str, float] = field(default_factory=dict)  # device -> first receipt

    @property
    def household(self) -> str:
        return f"h{self.group}-{self.house}"

    @property
    def device(self) -> str:
        return f"t{self.group}-{self.house}"

    def first_ring(self) -> float | None:
        return min(self.rings.values()) if self.rings else None

    def all_rings(self) -> float | None:
        return sorted(self.rings.values())[RINGS - 1] if len(self.rings) >= RINGS else None


class Rings:
    """Ring commands from the bench's subscriber, matched to alarms by the calling household."""

    def __init__(self, receiver: PahoClient) -> None:
        self.receiver = receiver
        self.alarms: dict[str, Alarm] = {}
        self.stops: dict[int, int] = defaultdict(int)  # incident -> stop commands received
        self._pos = 0
        self.stray = 0

    def expect(self, alarms: Iterable[Alarm]) -> None:
        self.alarms.update((a.household, a) for a in alarms)

    def update(self) -> None:
        received = self.receiver.received
        end = len(received)
        for at, topic, payload in received[self._pos : end]:
            try:
                data = json.loads(payload)
                if data.get("type") == "stop":
                    self.stops[int(data["incident"])] += 1
                    continue
                household, incident = data["from"]["household"], int(data["incident"])
            except (ValueError, KeyError, TypeError, AttributeError):
                self.stray += 1
                continue
            alarm = self.alarms.get(household)
            if alarm is None:
                self.stray += 1
                continue
            alarm.incident = incident
            alarm.rings.setdefault(topic.split("/")[-2], at)
        self._pos = end


class Sightings:
    """When each board first had each incident's row, and first heard `changed` for it."""

    def __init__(self, boards: BoardsProcess) -> None:
        self.boards = boards
        self.row: dict[int, dict[int, float]] = defaultdict(dict)  # incident -> board -> time visible
        self.changed: dict[int, dict[int, float]] = defaultdict(dict)
        self._fetch_pos = self._changed_pos = 0

    def update(self) -> None:
        fetches, changed = self.boards.fetches, self.boards.changed
        for f in fetches[self._fetch_pos :]:
            for incident in f["new"]:
                self.row[incident].setdefault(f["b"], f["t1"])
        self._fetch_pos = len(fetches)
        for c in changed[self._changed_pos :]:
            if c["id"] is not None:
                self.changed[c["id"]].setdefault(c["b"], c["t"])
        self._changed_pos = len(changed)


class Clerk:
    """The bench's own console session (the first account, logged in once more). Between phases, with no
    board open, it times `GET /board/rows` on the otherwise idle daemon, then cancels the phase's incidents
    (POST /incidents/<id>/act, action cancel) so that every phase starts with an empty board."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=60)
        )
        self.csrf = ""

    async def login(self, name: str, password: str) -> None:
        self.csrf = await console_login(self.http, self.base, name, password)

    async def probe(self, n: int, pid: int) -> dict[str, Any]:
        """n fetches of /board/rows one after another: wall time each, the daemon's CPU per fetch."""
        walls, rows = [], 0
        cpu0 = cpu_s(pid)
        for _ in range(n):
            t0 = time.perf_counter()
            async with self.http.get(f"{self.base}/board/rows") as response:
                text = await response.text()
            walls.append(time.perf_counter() - t0)
            rows = len(DATA_ID.findall(text))
        cpu1 = cpu_s(pid)
        cpu = None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) * 1000 / n
        return {"rows": rows, "ms": statistics.median(walls) * 1000, "cpu_ms": cpu}

    async def cancel(self, incidents: Iterable[int]) -> int:
        """Cancel each incident, 4 at a time; how many the daemon refused."""
        limit, refused = asyncio.Semaphore(4), 0

        async def one(incident: int) -> None:
            nonlocal refused
            async with (
                limit,
                self.http.post(
                    f"{self.base}/incidents/{incident}/act",
                    data={"action": "cancel", "csrf": self.csrf, "note": "bench"},
                    allow_redirects=False,
                ) as response,
            ):
                if response.status != 303 or "m=%E5%B7%B2" not in response.headers.get("Location", ""):  # 已记录
                    refused += 1

        await asyncio.gather(*(one(i) for i in incidents))
        return refused

    async def close(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self.http.post(f"{self.base}/logout", data={"csrf": self.csrf}):
                pass
        await self.http.close()


async def wait_until(predicate: Callable[[], bool], progress: Callable[[], Any], timeout: float, stall: float) -> bool:
    """Poll every 20 ms until predicate(); give up at timeout, or when progress() has not changed for stall s."""
    deadline = time.monotonic() + timeout
    last, changed_at = progress(), time.monotonic()
    while time.monotonic() < deadline:
        if predicate():
            return True
        now_value = progress()
        if now_value != last:
            last, changed_at = now_value, time.monotonic()
        elif time.monotonic() - changed_at > stall:
            break
        await asyncio.sleep(0.02)
    return predicate()


def alarm_payload(seq: int) -> str:
    return json.dumps({"type": "alarm", "kind": "panic", "seq": seq})


# --- one phase -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Bench:
    village: Village
    daemon: DaemonProcess
    publisher: PahoClient
    rings: Rings
    boards: BoardsProcess
    sightings: Sightings
    clerk: Clerk
    sizes: Sizes
    seq: int = 0
    fetches: list[dict[str, Any]] = field(default_factory=list)  # the measured phases' (not on hello)
    changed: int = 0  # `changed` events the boards read in the measured phases

    async def publish(self, alarms: list[Alarm]) -> None:
        self.rings.expect(alarms)
        start = time.monotonic()
        for i, alarm in enumerate(alarms):
            delay = start + i * self.sizes.interval_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.seq += 1
            topic = f"{self.village.prefix}/dev/{alarm.device}/event"
            alarm.t0 = self.publisher.publish(topic, alarm_payload(self.seq))

    def rung(self, alarms: list[Alarm]) -> bool:
        self.rings.update()
        return all(len(a.rings) >= RINGS for a in alarms)

    def on_every_board(self, alarms: list[Alarm]) -> bool:
        self.sightings.update()
        n = self.sizes.boards
        return all(a.incident is not None and len(self.sightings.row.get(a.incident, ())) >= n for a in alarms)

    async def reset(self, alarms: list[Alarm]) -> None:
        """Cancel the alarms' incidents and wait (bounded) until their terminals were told to stop."""
        incidents = [a.incident for a in alarms if a.incident is not None]
        refused = await self.clerk.cancel(incidents)
        if refused:
            print(f"  (the daemon refused to cancel {refused} of {len(incidents)} incidents)", flush=True)

        def stopped() -> bool:
            self.rings.update()
            return all(self.rings.stops[i] >= RINGS for i in incidents)

        await wait_until(stopped, lambda: len(self.rings.receiver.received), 30, 10)

    def progress(self) -> tuple[int, int]:
        return len(self.rings.receiver.received), len(self.boards.fetches)

    async def phase(self, alarms: list[Alarm], with_boards: bool, measured: bool = True) -> dict[str, Any]:
        """Publish the alarms (boards open or not), wait for their rings (and rows), the daemon's CPU."""
        pid = self.daemon.process.pid if self.daemon.process is not None else 0
        if with_boards:
            await self.boards.open()
            await asyncio.sleep(1.0)  # the boards' first fetches (on hello) are not this phase's work
        await asyncio.sleep(0.5)
        cpu0, child0 = cpu_s(pid), cpu_s(self.boards.pid)
        fetch0, changed0 = len(self.boards.fetches), len(self.boards.changed)
        t_start = time.time()
        await self.publish(alarms)

        def done() -> bool:
            return self.rung(alarms) and (not with_boards or self.on_every_board(alarms))

        complete = await wait_until(done, self.progress, self.sizes.settle_s, self.sizes.stall_s)
        drained: dict[str, Any] = {}
        if with_boards:  # the boards still read the rows of the later `changed` events, one fetch each
            drained = await self.boards.drain(self.sizes.settle_s)
        await asyncio.sleep(SETTLE_S)
        cpu1, child1 = cpu_s(pid), cpu_s(self.boards.pid)
        t_end = time.time()
        if with_boards:
            await self.boards.close()
        self.rings.update()
        self.sightings.update()
        await asyncio.sleep(0.5)
        idle = await self.clerk.probe(5, pid)
        await self.reset(alarms)
        fetches = [f for f in self.boards.fetches[fetch0:] if f["why"] != "hello"]
        if measured:
            self.fetches += fetches
            self.changed += len(self.boards.changed) - changed0
        out: dict[str, Any] = {
            "alarms": len(alarms),
            "complete": complete,
            "seconds": t_end - t_start,
            "cpu_ms_per_alarm": None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) * 1000 / len(alarms),
            "idle_board_rows": idle,
        }
        if with_boards:
            out["boards_process_cpu_ms_per_alarm"] = (
                None if child0 is None or child1 is None else (child1 - child0) * 1000 / len(alarms)
            )
            out["fetches"] = len(fetches)
            out["fetches_in_flight_peak"] = drained.get("peak")
            out["fetches_left_undrained"] = drained.get("left")
            out["rows_per_fetch_median"] = statistics.median([f["rows"] for f in fetches]) if fetches else None
        return out


# --- the run ---------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, sizes: Sizes, work: Path) -> dict[str, Any]:
    warm = 2 * WARMUP
    village = write_village(
        work, groups=sizes.alarms + warm, steps=(0, 3600, 7200), broker_port=args.broker_port
    )  # one household of each group alarms; escalation after the first step falls outside the run
    names = [f"duty{i + 1:02d}" for i in range(sizes.boards)]
    password = secrets.token_urlsafe(12)
    print(f"work dir {work}; {sizes.alarms + warm} groups; adding {sizes.boards} accounts...", flush=True)
    await add_accounts(village, names, password)
    daemon = DaemonProcess(village, work / "alertd.log")
    receiver = publisher = None
    boards = BoardsProcess(work / "boards.log")
    clerk = Clerk(village.base_url)
    try:
        t0 = time.monotonic()
        await daemon.start()
        assert daemon.process is not None
        pid = daemon.process.pid
        print(f"alertd up in {time.monotonic() - t0:.2f} s (pid {pid}); logging in {sizes.boards} boards...",
              flush=True)  # fmt: skip
        receiver = PahoClient(args.broker_port, subscribe=f"{village.prefix}/dev/+/cmd")
        publisher = PahoClient(args.broker_port)
        await boards.start(village.base_url, names, password)
        await clerk.login(names[0], password)
        rings = Rings(receiver)
        bench = Bench(village, daemon, publisher, rings, boards, Sightings(boards), clerk, sizes)
        # Warm-up, not measured: the first alarm and the first board requests pay for imports and templates.
        groups = iter(range(1, sizes.alarms + warm + 1))
        for with_boards in (True, False):
            warmup = [Alarm(g, g % 10 + 1) for g in (next(groups) for _ in range(WARMUP))]
            await bench.phase(warmup, with_boards, measured=False)
        all_alarms: list[Alarm] = []
        phases: list[dict[str, Any]] = []
        for r in range(1, sizes.rounds + 1):
            order = ("without", "with") if r % 2 else ("with", "without")
            for kind in order:
                alarms = [Alarm(g, g % 10 + 1, kind, r) for g in (next(groups) for _ in range(sizes.per_phase))]
                what = f"{sizes.boards} boards open" if kind == "with" else "no board open"
                print(f"round {r}/{sizes.rounds}: {sizes.per_phase} alarms, {what}...", flush=True)
                measured = await bench.phase(alarms, kind == "with")
                phases.append({"round": r, "phase": kind} | measured | phase_latency(alarms, bench.sightings, sizes))
                all_alarms += alarms
        rss = rss_mb(pid)
        return report(all_alarms, phases, bench, sizes) | {"rss_end_mb": rss, "stray_commands": rings.stray}
    finally:
        if publisher is not None:
            publisher.close()
        if receiver is not None:
            receiver.close()
        await clerk.close()
        await boards.stop()
        if daemon.process is not None:
            try:
                await daemon.terminate()
            except TimeoutError:
                await daemon.kill()
        await forget_session(village)


def ring_ms(alarms: list[Alarm]) -> dict[str, Any]:
    return summary_ms(t - a.t0 for a in alarms if (t := a.all_rings()) is not None)


def board_figures(alarms: list[Alarm], sightings: Sightings, boards: int) -> dict[str, Any]:
    """Per (alarm, board) and per alarm (the last of the boards) how long until the row was visible.

    The commit is not visible from outside. Two stand-ins, both sent after it: the first ring command at the
    subscriber, and the earliest `changed` event of the incident read by any board. "commit" below is the
    earlier of the two (alertd tells the boards before it hands the rings to the terminal outbox)."""
    commit_row, ring_row, pub_row, commit_changed, ring_after_changed, commit_last, pub_last = ([] for _ in range(7))
    missing = 0
    for a in alarms:
        first = a.first_ring()
        seen = sightings.row.get(a.incident, {}) if a.incident is not None else {}
        changed = sightings.changed.get(a.incident, {}) if a.incident is not None else {}
        missing += boards - len(seen)
        if first is None:
            continue
        commit = min(first, *changed.values()) if changed else first
        commit_row += [t - commit for t in seen.values()]
        ring_row += [t - first for t in seen.values()]
        pub_row += [t - a.t0 for t in seen.values()]
        commit_changed += [t - commit for t in changed.values()]
        if changed:
            ring_after_changed.append(first - min(changed.values()))
        if len(seen) >= boards:
            commit_last.append(max(seen.values()) - commit)
            pub_last.append(max(seen.values()) - a.t0)
    return {
        "commit_to_row_ms": summary_ms(commit_row),
        "commit_to_row_last_board_ms": summary_ms(commit_last),
        "ring_to_row_ms": summary_ms(ring_row),
        "published_to_row_ms": summary_ms(pub_row),
        "published_to_row_last_board_ms": summary_ms(pub_last),
        "commit_to_changed_ms": summary_ms(commit_changed),
        "first_ring_after_first_changed_ms": summary_ms(ring_after_changed),
        "rows_missing": missing,
    }


def phase_latency(alarms: list[Alarm], sightings: Sightings, sizes: Sizes) -> dict[str, Any]:
    out: dict[str, Any] = {
        "all_rings_ms": ring_ms(alarms),
        "rings_lost": sum(len(a.rings) < RINGS for a in alarms),
    }
    if alarms and alarms[0].phase == "with":
        figures = board_figures(alarms, sightings, sizes.boards)
        out["commit_to_row_ms"] = figures["commit_to_row_ms"]
        out["rows_missing"] = figures["rows_missing"]
    return out


def report(alarms: list[Alarm], phases: list[dict[str, Any]], bench: Bench, sizes: Sizes) -> dict[str, Any]:
    without = [a for a in alarms if a.phase == "without"]
    with_ = [a for a in alarms if a.phase == "with"]
    sightings = bench.sightings
    sightings.update()
    every_row = sum(
        all(a.incident is not None and b in sightings.row.get(a.incident, {}) for a in with_)
        for b in range(sizes.boards)
    )
    cpu = {}
    for kind in ("without", "with"):
        values = [p["cpu_ms_per_alarm"] for p in phases if p["phase"] == kind and p["cpu_ms_per_alarm"] is not None]
        cpu[kind] = statistics.median(values) if values else None
    pairs = len(with_) * sizes.boards
    return {
        "board": board_figures(with_, sightings, sizes.boards),
        "boards_with_every_row": every_row,
        "rings": {
            "without": ring_ms(without) | {"lost": sum(len(a.rings) < RINGS for a in without)},
            "with": ring_ms(with_) | {"lost": sum(len(a.rings) < RINGS for a in with_)},
        },
        "cpu_ms_per_alarm": cpu,  # the median over the phases of each kind
        "fetches": {  # GET /board/rows in the measured phases, but those on `hello`
            "n": len(bench.fetches),
            "per_alarm_per_board": len(bench.fetches) / pairs if pairs else None,
            "duration_ms": summary_ms(f["t1"] - f["t0"] for f in bench.fetches),
            "rows_max": max((f["rows"] for f in bench.fetches), default=None),
            "bytes_max": max((f["bytes"] for f in bench.fetches), default=None),
            "non_200": sum(f["status"] != 200 for f in bench.fetches),
        },
        "changed_events_per_alarm_per_board": bench.changed / pairs if pairs else None,
        "board_errors": bench.boards.errors,
        "phases": phases,
    }


# --- output ---------------------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def print_results(results: dict[str, Any]) -> None:
    sizes, board, rings = results["sizes"], results["board"], results["rings"]
    n_with = sizes["rounds"] * sizes["per_phase"]
    print()
    print(f"{results['date']}; broker {results['broker']}; nproc {results['nproc']}; {sizes['boards']} boards; "
          f"{sizes['rounds']} rounds x ({sizes['per_phase']} alarms without boards + {sizes['per_phase']} with), "
          f"one every {sizes['interval_s'] * 1000:.0f} ms; each phase starts on an empty board")  # fmt: skip
    print()
    print(f"1. the live board, {n_with} alarms x {sizes['boards']} boards. commit* = the earlier of the first ring")
    print("   command at the subscriber and the first `changed` event read by any board (both follow the commit)")
    head = f"{'':58}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}{'n':>7}"
    print(head)
    n = sizes["boards"]
    for key, label in (
        ("commit_to_row_ms", "commit* -> row visible, each board, ms"),
        ("commit_to_row_last_board_ms", f"commit* -> row visible on all {n} boards, ms"),
        ("ring_to_row_ms", "first ring -> row visible, each board, ms"),
        ("published_to_row_ms", "alarm published -> row visible, each board, ms"),
        ("published_to_row_last_board_ms", f"alarm published -> row visible on all {n}, ms"),
        ("commit_to_changed_ms", "commit* -> `changed` event read, each board, ms"),
        ("first_ring_after_first_changed_ms", "first ring, after the first `changed`, ms"),
    ):
        s = board[key]
        print(f"{label:58}{fmt(s['p50']):>9}{fmt(s['p95']):>9}{fmt(s['p99']):>9}{fmt(s['max']):>9}{s['n']:>7}")
    f = results["fetches"]
    d = f["duration_ms"]
    label = "GET /board/rows under load, made -> read in full, ms"
    print(f"{label:58}{fmt(d['p50']):>9}{fmt(d['p95']):>9}{fmt(d['p99']):>9}{fmt(d['max']):>9}{d['n']:>7}")
    print(f"boards that had every alarm's row: {results['boards_with_every_row']} of {sizes['boards']}; "
          f"(alarm, board) rows never seen: {board['rows_missing']}; "
          f"requests per alarm per board: {fmt(f['per_alarm_per_board'], '.2f')} /board/rows, "
          f"{fmt(results['changed_events_per_alarm_per_board'], '.2f')} `changed` events; "
          f"largest board {f['rows_max']} rows, {fmt((f['bytes_max'] or 0) / 1024, '.0f')} KiB; "
          f"non-200 {f['non_200']}; stream errors {len(results['board_errors'])}")  # fmt: skip
    print()
    print("2. alarm published -> all 9 ring commands at the simulated terminals, ms")
    w, b = rings["without"], rings["with"]
    print(f"{'':34}{'no board open':>15}{str(sizes['boards']) + ' boards open':>16}{'ratio':>9}")
    for p in ("p50", "p95", "p99", "max"):
        print(f"{p:34}{fmt(w[p]):>15}{fmt(b[p]):>16}{ratio(b[p], w[p]):>9}")
    cpu = results["cpu_ms_per_alarm"]
    print(f"{'daemon CPU per alarm (median), ms':34}{fmt(cpu['without'], '.2f'):>15}{fmt(cpu['with'], '.2f'):>16}"
          f"{ratio(cpu['with'], cpu['without']):>9}")  # fmt: skip
    counts = [f"{s['n']} ({s['lost']})" for s in (w, b)]
    print(f"{'alarms (rings lost)':34}{counts[0]:>15}{counts[1]:>16}")
    print()
    print("per phase, ms (row = commit* -> row visible; rows = the boards' median rows per fetch; in flight = most")
    print("/board/rows requests made and not yet read, all boards; idle = GET /board/rows alone after the phase, its")
    print("incidents still open, median of 5: wall ms / daemon CPU ms per request / rows):")
    print(f"{'round':>5} {'boards':>7} {'9 rings p50/p99':>16} {'row p50/p99':>16} {'CPU/alarm':>10} "
          f"{'rows':>5} {'fetches':>8} {'in flight':>10} {'took, s':>8} {'idle /board/rows':>19}")  # fmt: skip
    for p in results["phases"]:
        r9, idle = p["all_rings_ms"], p["idle_board_rows"]
        row = p.get("commit_to_row_ms")
        row_text = f"{fmt(row['p50'])}/{fmt(row['p99'])}" if row else ""
        idle_text = f"{fmt(idle['ms'])} / {fmt(idle['cpu_ms'], '.0f')} / {idle['rows']}"
        print(f"{p['round']:>5} {('open' if p['phase'] == 'with' else '-'):>7} "
              f"{fmt(r9['p50']) + '/' + fmt(r9['p99']):>16} {row_text:>16} {fmt(p['cpu_ms_per_alarm'], '.2f'):>10} "
              f"{fmt(p.get('rows_per_fetch_median'), '.0f') if p['phase'] == 'with' else '':>5} "
              f"{p.get('fetches', ''):>8} {p.get('fetches_in_flight_peak', ''):>10} {p['seconds']:>8.1f} "
              f"{idle_text:>19}")  # fmt: skip
    child = [p["boards_process_cpu_ms_per_alarm"] for p in results["phases"] if p["phase"] == "with"]
    child_text = fmt(statistics.median(child), ".0f") if None not in child and child else "-"
    print(f"\ndaemon RSS at the end {fmt(results['rss_end_mb'], '.0f')} MB; the boards' own process (the client "
          f"side, on the same cores) {child_text} ms CPU per alarm")  # fmt: skip


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    base = QUICK if args.quick else FULL
    sizes = Sizes(
        boards=args.boards or base.boards,
        rounds=args.rounds or base.rounds,
        per_phase=args.per_phase or base.per_phase,
        interval_s=(args.interval_ms / 1000) if args.interval_ms else base.interval_s,
        settle_s=base.settle_s,
        stall_s=base.stall_s,
        budget_s=base.budget_s,
    )
    work = Path(tempfile.mkdtemp(prefix="alertd-bench-console-"))
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "quick": args.quick,
        "broker": f"127.0.0.1:{args.broker_port}",
        "sizes": {
            "boards": sizes.boards,
            "rounds": sizes.rounds,
            "per_phase": sizes.per_phase,
            "interval_s": sizes.interval_s,
        },
    }
    try:
        async with asyncio.timeout(sizes.budget_s):
            results |= await run(args, sizes, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="alertd duty-room console: live boards under load (loopback)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 10 + 10 alarms, ~1 min")
    parser.add_argument("--boards", type=int, help="boards open in the phases with boards (default 20)")
    parser.add_argument("--rounds", type=int, help="rounds of (no boards, boards) phases (default 4; quick 2)")
    parser.add_argument("--per-phase", type=int, help="alarms per phase (default 50; quick 10)")
    parser.add_argument("--interval-ms", type=float, help="between alarms (default 100)")
    parser.add_argument("--broker-port", type=int, default=1883, help="the broker on 127.0.0.1 (default 1883)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (roster, store, logs)")
    parser.add_argument("--boards-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.boards_child:
        asyncio.run(boards_child())
        return
    results = asyncio.run(main_async(args))
    print_results(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
