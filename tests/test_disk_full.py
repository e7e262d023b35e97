"""A full disk: alertd stays up, gives up its reserve to keep recording alarms and tells the duty room,
then holds alarms unacknowledged at the broker (healthz 503) until there is room, and loses none.

The store lives on a real tmpfs of a few MB (mounting needs root, or passwordless sudo: scripts/test.sh
is run as root or with sudo, as the README says)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from alertd.store import Store
from tests.fakes.twilio_server import TwilioServer
from tests.harness import DUTY_PHONE, WAIT_S, DaemonProcess, Village, forget_session, terminals, write_village

DISK_KB = 4096
RESERVE_MB = 0.5


def _as_root(*command: str) -> list[str]:
    return list(command) if os.geteuid() == 0 else ["sudo", "-n", *command]


@contextlib.contextmanager
def tiny_disk(where: Path) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        _as_root("mount", "-t", "tmpfs", "-o", f"size={DISK_KB}k,mode=0777", "tmpfs", str(where)),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert mounted.returncode == 0, f"this test mounts a tmpfs: run it as root or with sudo ({mounted.stderr})"
    try:
        yield where
    finally:
        subprocess.run(_as_root("umount", "-l", str(where)), check=False)


def fill(disk: Path, name: str) -> Path:
    """Write until the disk says no more (ENOSPC)."""
    path = disk / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    written = 1
    try:
        while written:
            try:
                written = os.write(fd, b"\0" * 4096)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                written = 0
    finally:
        os.close(fd)
    assert shutil.disk_usage(disk).free < 8192
    return path


async def healthz(village: Village) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(f"{village.base_url}/healthz") as response:
        body = await response.json()
        return response.status, body["checks"]["disk"]


async def test_a_full_disk_keeps_the_daemon_up_and_loses_no_alarm(tmp_path: Path, twilio: TwilioServer) -> None:
    with tiny_disk(tmp_path / "disk") as disk:
        village = write_village(tmp_path, twilio=twilio)
        store_path = disk / "alertd.db"
        settings = village.settings_path.read_text(encoding="utf-8").replace(
            f'path = "{village.store_path}"', f'path = "{store_path}"\nreserve_mb = {RESERVE_MB}'
        )
        village.settings_path.write_text(settings + "[supervision]\ninterval_s = 1\n", encoding="utf-8")
        daemon = DaemonProcess(village, tmp_path / "daemon.log")
        try:
            async with terminals(village) as sims:
                await daemon.start()
                assert (disk / "alertd.db.reserve").stat().st_size == RESERVE_MB * 1024 * 1024
                filler = fill(disk, "filler")

                # 1. The disk is full: the reserve is given up, the alarm rings, the duty room is told.
                await sims.alarm("t1-2", "fire", seq=1)
                await sims.wait_until(lambda: len(sims.rings(1)) == 9)
                async with asyncio.timeout(WAIT_S):
                    while not any(m.to == DUTY_PHONE and "磁盘已满" in m.body for m in twilio.messages):
                        await asyncio.sleep(0.05)
                assert not (disk / "alertd.db.reserve").exists()
                status, check = await healthz(village)
                assert status == 503
                assert "reserve" in str(check["detail"])

                # 2. Full again, no reserve left: the alarm waits at the broker, the daemon stays up.
                more = fill(disk, "more")
                await sims.alarm("t1-7", "panic", seq=1)
                await asyncio.sleep(3.0)
                assert sims.rings(2) == []
                assert daemon.process is not None
                assert daemon.process.returncode is None, "alertd must not exit on a full disk"
                status, check = await healthz(village)
                assert status == 503
                assert "commits failing" in str(check["detail"])

                # 3. Room again: the held alarm rings, the reserve is laid again, the duty room hears of it.
                more.unlink()
                filler.unlink()
                await sims.wait_until(lambda: len(sims.rings(2)) == 9, timeout=WAIT_S + 30)
                async with asyncio.timeout(WAIT_S):
                    while not any(m.to == DUTY_PHONE and "恢复" in m.body for m in twilio.messages):
                        await asyncio.sleep(0.05)
                assert (disk / "alertd.db.reserve").exists()
                async with asyncio.timeout(WAIT_S):
                    while (await healthz(village))[0] != 200:
                        await asyncio.sleep(0.2)
                assert await daemon.terminate() == 0
        finally:
            await daemon.kill()
            await forget_session(village)
        store = await Store.open(store_path, readonly=True)
        try:
            incidents = await store.incidents()
        finally:
            await store.close()
    assert sorted(i.household_id for i in incidents) == ["h1-2", "h1-7"]
    log = (tmp_path / "daemon.log").read_text(encoding="utf-8")
    assert log.count("Cannot commit") == 1, "logged once, not per retry"
    assert "Traceback" not in log
