"""Active and standby on one PostgreSQL (issue 15), as real processes on a real broker and a real database:
the standby says who is active and takes over; a kill -9 during a burst loses nothing; an active cut off from
the database stops sending before the standby starts."""

from __future__ import annotations

import asyncio
import json
import os
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
    done = subprocess.run(  # noqa: S603 (our own CLI)
        [sys.executable, "-m", "alertd.cli", "status", "-c", str(village.settings_path)],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout


async def test_a_standby_says_who_is_active_and_takes_over_when_the_active_stops(
    tmp_path: Path, twilio: TwilioServer, database: str
) -> None:
    village = write_village(tmp_path, twilio=twilio)
    a, b = instance(village, "a", database), instance(village, "b", database, http_port=free_port())
    try:
        async with terminals(village) as sims:
            await a.start()
            await wait_role(a, "active")
            await b.start()
            await wait_role(b, "standby")
            standby = await health(b)
            assert (standby["role"], standby["instance"], standby["active"], standby["ok"]) == ("standby", "b", "a", True)
            code, out = status(village, b)
            assert (code, out.splitlines()[0]) == (0, "alertd b: standby (active: a)")
            async with aiohttp.ClientSession() as session, session.get(f"{b.base_url}/") as page:
                assert page.status == 503
                assert "主用机 a" in await page.text(), "the standby's console points at the active"

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
    finally:
        await a.kill()
        await b.kill()
        await forget_session(village)
    with psycopg.connect(database) as conn:
        owners = conn.execute("SELECT id, instance FROM incidents ORDER BY id").fetchall()
    assert owners == [(1, "a"), (2, "b")]
