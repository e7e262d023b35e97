"""`alertd run` as a real process: systemd notify and watchdog, SIGHUP reload, health and metrics, SIGTERM drain."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import re
import signal
import socket
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from alertd.store import Status, Store
from tests.fakes.twilio_server import TwilioServer
from tests.harness import (
    DUTY_PHONE,
    GRID_PHONE,
    PATROL_PHONES,
    WAIT_S,
    DaemonProcess,
    Village,
    forget_session,
    leader_phone,
    resident_phone,
    terminals,
    write_village,
)

EXIT_WITHIN_S = 12.0


class EnvDaemonProcess(DaemonProcess):
    """DaemonProcess with extra environment variables (and systemd's own removed from what is inherited)."""

    def __init__(self, village: Village, log_path: Path, extra_env: dict[str, str]) -> None:
        super().__init__(village, log_path)
        self.extra_env = extra_env

    async def start(self, failpoint: str | None = None) -> None:
        inherited = {
            k: v for k, v in self.base_env().items()
            if not k.startswith("ALERTD_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
        }  # fmt: skip
        env = inherited | self.extra_env | self.faked_clock()
        if failpoint:
            env["ALERTD_FAILPOINT"] = failpoint
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alertd.cli", "run", "-c", str(self.village.settings_path),
            stdout=log, stderr=log, env=env,
        )  # fmt: skip
        log.close()
        await self.wait_healthy()


async def _wait_for_log(path: Path, text: str, timeout: float = WAIT_S) -> str:
    async with asyncio.timeout(timeout):
        while True:
            log = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
            if text in log:
                return log
            await asyncio.sleep(0.05)


async def _api(village: Village, method: str, path: str, body: dict[str, str] | None = None) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=WAIT_S)
    # Operator actions are taken only on the daemon's Unix socket; webhooks, /healthz, /metrics on TCP.
    operator = path.startswith("/api/")
    connector = aiohttp.UnixConnector(path=str(village.socket_path)) if operator else None
    base = "http://localhost" if operator else village.base_url
    async with (
        aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
        session.request(method, base + path, json=body) as response,
    ):
        return response.status, await response.text()


# ---------------------------------------------------------------------------------------------- sd_notify


async def test_sd_notify_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    village = write_village(tmp_path)
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    received: list[tuple[float, str]] = []
    loop = asyncio.get_running_loop()

    async def collect_until(predicate: object, timeout: float = WAIT_S) -> None:
        assert callable(predicate)
        async with asyncio.timeout(timeout):
            while not predicate():
                data = await loop.sock_recv(sock, 4096)
                received.append((time.monotonic(), data.decode()))

    def states() -> list[str]:
        return [line for _, payload in received for line in payload.splitlines()]

    # WATCHDOG_PID is left unset: the daemon cannot know its pid in advance, and unset means "this process".
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"}
    daemon = EnvDaemonProcess(village, tmp_path / "daemon.log", env)
    try:
        await daemon.start()
        await collect_until(lambda: "READY=1" in states())
        ready_index = states().index("READY=1")
        # Half of WatchdogSec (0.2 s): a ping every 0.1 s, so five arrive well within 3 s.
        await collect_until(lambda: states()[ready_index:].count("WATCHDOG=1") >= 5, timeout=3.0)
        pings = [at for at, payload in received if payload == "WATCHDOG=1"]
        gaps = [b - a for a, b in itertools.pairwise(pings)]
        assert max(gaps[-4:]) < 0.2, f"watchdog pings too far apart: {gaps}"

        # SIGHUP: RELOADING=1 (with MONOTONIC_USEC, for Type=notify-reload), then READY=1 again.
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)
        await collect_until(lambda: "RELOADING=1" in states(), timeout=5.0)
        reload_index = states().index("RELOADING=1")
        await collect_until(lambda: "READY=1" in states()[reload_index:], timeout=5.0)
        assert any(line.startswith("MONOTONIC_USEC=") for line in states()[reload_index:])

        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        await collect_until(lambda: "STOPPING=1" in states(), timeout=EXIT_WITHIN_S)
        assert await daemon.wait_exit(EXIT_WITHIN_S) == 0
        assert time.monotonic() - started < EXIT_WITHIN_S
        assert states().index("STOPPING=1") > ready_index
    finally:
        await daemon.kill()
        sock.close()
        await forget_session(village)


# ---------------------------------------------------------------------------------------------- SIGHUP


def _add_household(roster_path: Path) -> None:
    """House 11 of group 1, written the way tests/harness.py writes the others."""
    text = roster_path.read_text(encoding="utf-8")
    person = f'{{ id = "p1-11", name = "1组11号户主", phone = "{resident_phone(1, 11)}" }}'
    household = (
        '[[households]]\nid = "h1-11"\ngroup = "g1"\nlabel = "11号户 1组"\n'
        'address = "1组11号"\npeople = ["p1-11"]\ndevices = [{ id = "t1-11" }]\n\n'
    )
    assert "people = [\n" in text
    assert "[[patrols]]" in text
    text = text.replace("people = [\n", f"people = [\n    {person},\n", 1)
    text = text.replace("[[patrols]]", household + "[[patrols]]", 1)
    roster_path.write_text(text, encoding="utf-8")


async def test_sighup_reloads_the_roster_and_keeps_open_incidents(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio)
    log_path = tmp_path / "daemon.log"
    daemon = DaemonProcess(village, log_path)
    try:
        async with terminals(village) as sims:
            await daemon.start()
            await sims.alarm("t1-2", "fire", seq=1)
            await sims.wait_until(lambda: len(sims.rings()) == 9)
            before = sims.rings()[0].command.incident_id

            # Unknown before the reload: an alarm from it opens nothing.
            await sims.alarm("t1-11", "panic", seq=1)
            await asyncio.sleep(0.5)
            assert {c.command.incident_id for c in sims.rings()} == {before}

            _add_household(tmp_path / "roster.toml")
            assert daemon.process is not None
            daemon.process.send_signal(signal.SIGHUP)
            await _wait_for_log(log_path, "Roster reloaded: 1 groups, 11 households")

            await sims.alarm("t1-11", "panic", seq=2)
            await sims.wait_until(lambda: any(c.command.incident_id != before for c in sims.rings()))
            after = next(c.command.incident_id for c in sims.rings() if c.command.incident_id != before)
            await sims.wait_until(lambda: len(sims.rings(after)) == 10)
            assert {c.device for c in sims.rings(after)} == {f"t1-{h}" for h in range(1, 11)}
            assert sims.rings(after)[0].command.household_id == "h1-11"

            # The incident opened before the reload is still open and can be acknowledged.
            status, body = await _api(village, "POST", f"/api/incidents/{before}/ack", {"by": "张三"})
            assert status == 200, body
            assert f"acknowledged {before}" in body
            await sims.wait_until(lambda: len(sims.stops(before)) == 9)
            assert await daemon.terminate() == 0
    finally:
        await daemon.kill()
        await forget_session(village)


def _remove_household(roster_path: Path, household: str) -> None:
    text = roster_path.read_text(encoding="utf-8")
    start = text.index(f'[[households]]\nid = "{household}"\n')
    end = text.index("[[", start + 2)
    roster_path.write_text(text[:start] + text[end:], encoding="utf-8")


async def test_a_reload_that_removes_the_calling_household_keeps_its_incident_escalating(
    tmp_path: Path, twilio: TwilioServer
) -> None:
    village = write_village(tmp_path, twilio=twilio, steps=(0, 3, 5))
    log_path = tmp_path / "daemon.log"
    daemon = DaemonProcess(village, log_path)
    try:
        async with terminals(village) as sims:
            await daemon.start()
            await sims.alarm("t1-2", "fire", seq=1)
            await sims.wait_until(lambda: len(sims.rings()) == 9)
            _remove_household(tmp_path / "roster.toml", "h1-2")
            checked = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "alertd.cli", "check", "-c", str(village.settings_path),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, warnings = await checked.communicate()
            assert checked.returncode == 0
            assert "warning: open incident 1: household h1-2 is no longer in the roster" in warnings.decode()
            assert daemon.process is not None
            daemon.process.send_signal(signal.SIGHUP)
            log = await _wait_for_log(log_path, "Roster reloaded: 1 groups, 9 households")
            assert "incident 1: household h1-2 is no longer in the roster" in log
            # The deputy and grid worker (step 1) and the duty room (step 2) are still told.
            async with asyncio.timeout(WAIT_S):
                while not {DUTY_PHONE, GRID_PHONE, resident_phone(1, 8)} <= {m.to for m in twilio.messages}:
                    await asyncio.sleep(0.05)
            assert await daemon.terminate() == 0
    finally:
        await daemon.kill()
        await forget_session(village)


async def test_sighup_with_a_broken_roster_keeps_the_old_one(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio)
    log_path = tmp_path / "daemon.log"
    daemon = DaemonProcess(village, log_path)
    roster_path = tmp_path / "roster.toml"
    try:
        async with terminals(village) as sims:
            await daemon.start()
            broken = roster_path.read_text(encoding="utf-8").replace('group = "g1"', 'group = "g9"', 1)
            roster_path.write_text(broken, encoding="utf-8")
            assert daemon.process is not None
            daemon.process.send_signal(signal.SIGHUP)
            log = await _wait_for_log(log_path, "Roster reload refused")
            assert 'households[1] (id "h1-1"): group "g9": unknown group' in log
            assert "Roster reloaded" not in log

            # Still running, still on the old roster: h1-1 is in g1 and its neighbours ring.
            await asyncio.sleep(0.2)
            assert daemon.process.returncode is None
            await sims.alarm("t1-1", "smoke", seq=1)
            await sims.wait_until(lambda: len(sims.rings()) == 9)
            assert {c.device for c in sims.rings()} == {f"t1-{h}" for h in range(2, 11)}
            assert sims.rings()[0].command.household_id == "h1-1"
            assert await daemon.terminate() == 0
    finally:
        await daemon.kill()
        await forget_session(village)


# ---------------------------------------------------------------------------------------------- health, metrics


async def test_healthz_and_metrics(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio)
    daemon = DaemonProcess(village, tmp_path / "daemon.log")
    try:
        async with terminals(village) as sims:
            await daemon.start()
            status, body = await _api(village, "GET", "/healthz")
            assert status == 200, body
            health = json.loads(body)
            assert health["ok"] is True
            checks = health["checks"]
            assert checks["mqtt"]["ok"] is True
            assert checks["store"]["ok"] is True
            sms = [v for k, v in checks.items() if k.startswith("sms")]
            assert sms, checks
            assert all(v["ok"] is True for v in sms)
            assert "sms:twilio" in checks

            status, text = await _api(village, "GET", "/metrics")
            assert status == 200
            assert not re.search(r'^alertd_alarms_received_total\{.*kind="water".*\} [1-9]', text, re.M)

            await sims.alarm("t1-4", "water", seq=1)
            await sims.wait_until(lambda: len(sims.rings()) == 9)
            status, text = await _api(village, "GET", "/metrics")
            assert status == 200
            assert re.search(r'^alertd_alarms_received_total\{.*kind="water".*\} 1\.0$', text, re.M), text
            assert await daemon.terminate() == 0
    finally:
        await daemon.kill()
        await forget_session(village)


# ---------------------------------------------------------------------------------------------- SIGTERM drain


async def _sms_rows(village: Village) -> list[tuple[str, Status]]:
    store = await Store.open(village.store_path, readonly=True)
    try:
        return [(n.address, n.status) for n in await store.notifications() if n.channel == "sms"]
    finally:
        await store.close()


async def test_sigterm_with_sends_in_flight_exits_cleanly_and_loses_no_sms(
    tmp_path: Path, twilio: TwilioServer
) -> None:
    village = write_village(tmp_path, twilio=twilio)
    daemon = DaemonProcess(village, tmp_path / "daemon.log")
    first_step = {leader_phone(1), *PATROL_PHONES}
    try:
        async with terminals(village) as sims:
            await daemon.start()
            twilio.hang_next(2.0, times=3)
            await sims.alarm("t1-6", "intrusion", seq=1)
            await sims.wait_until(lambda: len(sims.rings()) == 9)
            assert daemon.process is not None
            started = time.monotonic()
            daemon.process.send_signal(signal.SIGTERM)
            assert await daemon.wait_exit(EXIT_WITHIN_S) == 0
            assert time.monotonic() - started < EXIT_WITHIN_S

            rows = await _sms_rows(village)
            assert {address for address, _ in rows} == first_step
            assert all(status in (Status.SENT, Status.PENDING, Status.SENDING) for _, status in rows), rows

            await daemon.start()
            async with asyncio.timeout(WAIT_S):
                while not first_step <= {m.to for m in twilio.messages}:
                    await asyncio.sleep(0.05)
            async with asyncio.timeout(WAIT_S):
                while not all(status == Status.SENT for _, status in await _sms_rows(village)):
                    await asyncio.sleep(0.1)
            assert await daemon.terminate() == 0
    finally:
        await daemon.kill()
        await forget_session(village)
    assert len(await _sms_rows(village)) == 3


# ------------------------------------------------------------------------------------- any hour of the day


def _dandong(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, minute, second, tzinfo=ZoneInfo("Asia/Shanghai"))


@pytest.mark.parametrize("hour", [3, 15])
async def test_an_alarm_texts_the_same_people_at_any_hour(tmp_path: Path, twilio: TwilioServer, hour: int) -> None:
    """The real daemon started at 03:00 and at 15:00 in Dandong (its wall clock alone is faked): an alarm
    texts the leader and the patrol, and nothing else goes out (no digest on a new store's first start)."""
    village = write_village(tmp_path, twilio=twilio)
    daemon = DaemonProcess(village, tmp_path / "daemon.log", start_at=_dandong(3, hour))
    try:
        async with terminals(village) as sims:
            await daemon.start()
            await sims.alarm("t1-2", "panic", seq=1)
            async with asyncio.timeout(WAIT_S):
                while len(twilio.messages) < 3:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # room for anything extra to show up
            assert await daemon.terminate() == 0
    finally:
        await daemon.kill()
        await forget_session(village)
    assert sorted(m.to for m in twilio.messages) == sorted([leader_phone(1), *PATROL_PHONES])
    assert all("联防日报" not in m.body for m in twilio.messages)
    assert len(await _sms_rows(village)) == 3


async def test_the_digest_goes_out_at_digest_time_once_and_is_caught_up_after_downtime(
    tmp_path: Path, twilio: TwilioServer
) -> None:
    village = write_village(tmp_path, twilio=twilio)
    log = tmp_path / "daemon.log"

    async def digests_after(start_at: dt.datetime, wait_for: int) -> list[str]:
        daemon = DaemonProcess(village, log, start_at=start_at)
        try:
            await daemon.start()
            async with asyncio.timeout(WAIT_S):
                while sum("联防日报" in m.body for m in twilio.messages) < wait_for:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # room for a wrong extra one to show up
            await daemon.kill()  # kill -9: the plan must already be on disk
        finally:
            await daemon.kill()
        return [m.to for m in twilio.messages if "联防日报" in m.body]

    try:
        # A new store at 07:59:50: nothing at start, the leader's digest at 08:00 (10 s: room for a slow start).
        assert await digests_after(_dandong(3, 7, 59, 50), 1) == [leader_phone(1)]
        # Restarted at 09:30 the same day: not again.
        assert await digests_after(_dandong(3, 9, 30), 1) == [leader_phone(1)]
        # Down across the next 08:00, back at 09:00: caught up, once.
        assert await digests_after(_dandong(4, 9, 0), 2) == [leader_phone(1)] * 2
        # Down across the next one too, back at 10:30: outside the 2 h window, skipped.
        assert await digests_after(_dandong(5, 10, 30), 2) == [leader_phone(1)] * 2
    finally:
        await forget_session(village)
