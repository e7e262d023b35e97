"""Drills (alertd drill) and check-in pauses (alertd pause) go through the daemon's Unix socket, with the
same guards as alertd ack: no proxy, no web page, JSON, SO_PEERCRED, a valid name of who acts.

The drill is played against the daemon in this process; the pause against the real operator app with a
recording engine in place of the daemon's, to see the exact moment the CLI sends (`--until` is read in the
daemon's time zone, never the machine's)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web

from alertd.core.events import CheckInPause, Input
from alertd.core.model import Kind
from alertd.core.results import Result, Verdict
from alertd.metrics import Metrics
from alertd.store import Store
from alertd.web.app import WebDeps, make_operator_app, open_operator_socket
from tests.harness import Village, forget_session, running_daemon, terminals, write_village

ROOT = Path(__file__).parent.parent
CLI_TIMEOUT_S = 30.0
DAEMON_ZONE = ZoneInfo("Asia/Shanghai")
MACHINE_ZONE = "America/New_York"  # the CLI's own: 13 hours off the daemon's in December

# SO_PEERCRED names the user; the tests run as root, as test_operator_socket.py's do.
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the recorded OS user is root's")


async def alertd(*args: str, tz: str | None = None) -> tuple[int, str, str]:
    """The real CLI in a subprocess (optionally in another time zone), without blocking this loop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTD_")}
    if tz is not None:
        env["TZ"] = tz
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd.cli", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def _daemon(village: Village) -> AsyncIterator[None]:
    try:
        async with running_daemon(village):
            yield
    finally:
        await forget_session(village)


async def test_the_cli_raises_a_drill_through_the_socket(tmp_path: Path) -> None:
    village = write_village(tmp_path)
    cfg = ("-c", str(village.settings_path))
    try:
        async with running_daemon(village), terminals(village) as sims:
            rc, out, err = await alertd("drill", "--household", "h1-2", "--by", "张三", *cfg)
            assert rc == 0, out + err
            assert "drill (fire at h1-2): opened 1 (recorded as 张三 (os:root))" in out
            await sims.wait_until(lambda: len(sims.rings(1)) == 9)  # a real alarm: the neighbours ring

            store = await Store.open(village.store_path, readonly=True)
            try:
                incident = await store.incident(1)
            finally:
                await store.close()
            assert incident is not None
            assert incident.drill
            assert (incident.household_id, incident.kind) == ("h1-2", Kind.FIRE)

            rc, out, err = await alertd("drill", "--household", "h9-9", "--kind", "gas", "--by", "张三", *cfg)
            assert rc == 1, out + err  # no such household: no drill, and the daemon's reason is shown
            assert "recorded as" not in out
            assert out.strip(), err
    finally:
        await forget_session(village)


async def test_bad_drills_and_pauses_are_refused_with_a_reason(tmp_path: Path) -> None:
    village = write_village(tmp_path)
    async with (
        _daemon(village),
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(village.socket_path))) as session,
    ):
        drills, pause = "http://localhost/api/drills", "http://localhost/api/checkins/h1-2/pause"
        refused: list[tuple[str, dict[str, str], str, int, str]] = [
            (drills, {}, '{"household": "h1-2", "kind": "flood", "by": "张三"}', 400,
             '"kind" must be panic, fire, smoke, gas, water, intrusion or medical'),
            (drills, {}, '{"household": "h1-2", "kind": "FIRE", "by": "张三"}', 400, '"kind" must be'),
            (drills, {}, '{"household": "h1-2", "kind": 1, "by": "张三"}', 400, '"kind" must be'),
            (drills, {}, '{"household": "h1-2", "by": "张三 (os:root)"}', 400,
             '"by" (who is acting): the OS user is added by alertd, not given'),
            (drills, {}, '{"household": "h1-2", "by": " "}', 400, '"by" (who is acting): required'),
            (drills, {}, '{"household": "h1-2"}', 400, '"by" (who is acting): required'),
            (drills, {}, '{"household": "h1-2", "by": "张三\\n李四"}', 400, "no control characters"),
            (drills, {}, '{"by": "张三"}', 400, '"household" must be a household id (1 to 64 characters)'),
            (drills, {}, '{"household": "", "by": "张三"}', 400, '"household" must be a household id'),
            (drills, {}, '{"household": "' + "h" * 65 + '", "by": "张三"}', 400, '"household" must be'),
            (drills, {}, "[1]", 400, '"by" (who is acting): required'),
            (drills, {}, "not json", 400, "body must be JSON"),
            (drills, {"Origin": "http://evil.example"}, '{"household": "h1-2", "by": "张三"}', 403,
             "not accepted from web pages"),
            (drills, {"X-Forwarded-For": "203.0.113.9"}, '{"household": "h1-2", "by": "张三"}', 403,
             "not accepted through a proxy"),
            (drills, {"Content-Type": "text/plain"}, '{"household": "h1-2", "by": "张三"}', 415,
             "take application/json"),
            (pause, {"Origin": "null"}, '{"until": null, "by": "张三"}', 403, "not accepted from web pages"),
            (pause, {}, '{"by": "张三"}', 400, '"until" is required'),
            (pause, {}, '{"until": "2026-12-10", "by": "张三"}', 400, '"until" must be a moment'),
            (pause, {}, '{"until": true, "by": "张三"}', 400, '"until" must be a moment'),
            (pause, {}, '{"until": -1, "by": "张三"}', 400, '"until" must be a moment'),
            (pause, {}, '{"until": NaN, "by": "张三"}', 400, '"until" must be a moment'),
            (pause, {}, '{"until": Infinity, "by": "张三"}', 400, '"until" must be a moment'),
            (pause, {}, '{"until": null, "by": "（ｏｓ：root）"}', 400, "the OS user is added by alertd"),
            ("http://localhost/api/checkins/" + "h" * 65 + "/pause", {}, '{"until": null, "by": "张三"}', 400,
             "the household must be a household id"),
        ]  # fmt: skip
        for url, extra, body, status, why in refused:
            headers = {"Content-Type": "application/json"} | extra
            async with session.post(url, data=body.encode(), headers=headers) as response:
                text = await response.text()
                assert response.status == status, (url, extra, body, text)
                assert why in text, (url, extra, body, text)

        store = await Store.open(village.store_path, readonly=True)
        try:
            assert await store.incidents() == []  # none of them reached the engine
        finally:
            await store.close()

    # On TCP, where nobody can tell who is calling, the same paths are refused outright.
    async with _daemon(village), aiohttp.ClientSession() as tcp:
        for url in ("/api/drills", "/api/checkins/h1-2/pause"):
            async with tcp.post(village.base_url + url, json={"household": "h1-2", "by": "张三"}) as response:
                assert response.status == 403
                assert "only on the daemon's Unix socket" in await response.text()


async def test_the_cli_refuses_a_bad_kind_before_asking_the_daemon(tmp_path: Path) -> None:
    village = write_village(tmp_path)  # no daemon: argparse answers
    cfg = ("-c", str(village.settings_path))
    rc, out, err = await alertd("drill", "--household", "h1-2", "--kind", "flood", "--by", "张三", *cfg)
    assert rc == 2, out
    assert "invalid choice: 'flood'" in err


@dataclass(slots=True)
class _Recorder:
    """The engine, as far as the operator app can tell: it records every input and answers as told."""

    calls: list[Input] = field(default_factory=list)

    async def call(self, item: Input) -> Result:
        self.calls.append(item)
        if isinstance(item, CheckInPause) and item.household_id == "h1-2":
            return Result(Verdict.RECORDED)
        return Result(Verdict.UNKNOWN_DEVICE)  # not a household: accepted as input, but nothing was paused


@contextlib.asynccontextmanager
async def _recording_operator_app(village: Village, tmp_path: Path) -> AsyncIterator[_Recorder]:
    """The real operator app on the village's socket, with a recorder in place of the daemon's engine."""
    recorder = _Recorder()
    store = await Store.open(tmp_path / "recorder.db")
    sock, access = open_operator_socket(village.socket_path, None)
    runner = web.AppRunner(make_operator_app(WebDeps(recorder.call, store, Metrics(), {}, None, None), access))
    try:
        await runner.setup()
        await web.SockSite(runner, sock).start()
        yield recorder
    finally:
        await runner.cleanup()
        sock.close()
        await store.close()


def _with_zone(village: Village, zone: ZoneInfo) -> Village:
    text = village.settings_path.read_text(encoding="utf-8")
    village.settings_path.write_text(text.replace("[daemon]\n", f'[daemon]\ntime_zone = "{zone.key}"\n'), "utf-8")
    return village


async def test_pause_until_a_date_lasts_to_the_end_of_that_day_in_the_daemons_zone(tmp_path: Path) -> None:
    village = _with_zone(write_village(tmp_path), DAEMON_ZONE)
    cfg = ("-c", str(village.settings_path))
    day = datetime.now(DAEMON_ZONE).date() + timedelta(days=7)
    async with _recording_operator_app(village, tmp_path) as recorder:
        rc, out, err = await alertd("pause", "h1-2", "--until", day.isoformat(), "--by", "张三", *cfg, tz=MACHINE_ZONE)
        assert rc == 0, out + err
        end_of_day = datetime(day.year, day.month, day.day, tzinfo=DAEMON_ZONE) + timedelta(days=1)
        assert recorder.calls == [CheckInPause("h1-2", end_of_day.timestamp(), "张三 (os:root)")]
        machine_end_of_day = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(MACHINE_ZONE)) + timedelta(days=1)
        assert end_of_day.timestamp() != machine_end_of_day.timestamp()  # the zones do tell apart
        assert f"daily check-in of h1-2 paused to the end of {day.isoformat()}" in out
        assert f"{end_of_day:%Y-%m-%d} 00:00 Asia/Shanghai" in out
        assert "(recorded as 张三 (os:root))" in out

        recorder.calls.clear()
        rc, out, err = await alertd("pause", "h1-2", "--until", f"{day}T07:30", "--by", "张三", *cfg, tz=MACHINE_ZONE)
        assert rc == 0, out + err
        at = datetime(day.year, day.month, day.day, 7, 30, tzinfo=DAEMON_ZONE).timestamp()
        assert recorder.calls == [CheckInPause("h1-2", at, "张三 (os:root)")]
        assert f"paused until {day} 07:30 Asia/Shanghai" in out

        recorder.calls.clear()
        rc, out, err = await alertd("pause", "h1-2", "--resume", "--by", "张三", *cfg, tz=MACHINE_ZONE)
        assert rc == 0, out + err
        assert recorder.calls == [CheckInPause("h1-2", None, "张三 (os:root)")]
        assert "daily check-in of h1-2 resumed (recorded as 张三 (os:root))" in out

        recorder.calls.clear()
        rc, out, err = await alertd("pause", "h9-9", "--resume", "--by", "张三", *cfg)
        assert rc == 1, out + err  # the engine did not pause anything: a refusal, whatever its verdict
        assert out.strip() == "unknown_device"

        recorder.calls.clear()

        # Refused before the daemon is asked: a day gone by, a date the CLI cannot read, neither or both.
        for args, why in (
            (("--until", (day - timedelta(days=30)).isoformat()), "already passed"),
            (("--until", "10.12.2026"), "give a date, YYYY-MM-DD, or a date and time, YYYY-MM-DDTHH:MM"),
            (("--until", f"{day}T25:00"), "give a date"),
            ((), "one of the arguments --until --resume is required"),
            (("--until", day.isoformat(), "--resume"), "not allowed with argument"),
        ):
            rc, out, err = await alertd("pause", "h1-2", *args, "--by", "张三", *cfg)
            assert rc != 0, out + err
            assert why in err, (args, err)
        assert recorder.calls == []
    assert not village.socket_path.exists()
