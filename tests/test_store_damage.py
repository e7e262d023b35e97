"""A store file that cannot be alertd's stops the daemon at start with one line naming the file and what to do,
exit 2 (which the shipped unit does not restart), and is left as it was; `alertd incidents`, `show` and `devices`
say the same line. Only a missing store is a first start: it is created, and the log says so.

The real daemon and the real CLI, as processes, on real files."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from alertd.core.incidents import Incident, State, TimelineEntry
from alertd.core.model import Kind
from alertd.core.records import Batch
from alertd.store import Store
from tests.harness import WAIT_S, DaemonProcess, Village, forget_session, write_village
from tests.test_disk_full import fill, tiny_disk

ROOT = Path(__file__).parent.parent
T0 = 1_800_000_000.0
# Root reads any file: drop the capabilities that let it, so "permission denied" is real for root too.
NO_DAC_OVERRIDE = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


async def alertd(*args: str, prefix: Sequence[str] = ()) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTD_")}
    process = await asyncio.create_subprocess_exec(
        *prefix, sys.executable, "-m", "alertd.cli", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), WAIT_S)
    except TimeoutError:  # before the fix, `run` took the damaged file for a new store and kept running
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def refusal(stderr: str) -> str:
    """The one line alertd printed about the store. Log lines (INFO, e.g. the device profiles read) may come
    before it; a traceback may not."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("alertd: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def foreign_database(path: Path, user_version: int) -> None:
    """Another program's SQLite file (a wrong [store] path)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("INSERT INTO photos (name) VALUES ('河口村.jpg')")
        db.execute(f"PRAGMA user_version = {user_version}")
    db.close()


def damage(path: Path, kind: str) -> str:
    """Make `path` a damaged store of this kind; return what the refusal must say."""
    match kind:
        case "empty":  # `: > alertd.db`
            path.write_bytes(b"")
            return "empty file (0 bytes)"
        case "garbage":
            path.write_bytes(b"\x7fELF this was never a database\n" * 200)
            return "not an SQLite database"
        case "foreign":
            foreign_database(path, 0)
            return "not an alertd store (schema version 0, no incidents table)"
        case "foreign-versioned":
            foreign_database(path, 3)
            return "not an alertd store (schema version 3, no incidents table)"
    raise AssertionError(kind)


def beside(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.glob(path.name + "*"))


KINDS = ("empty", "garbage", "foreign", "foreign-versioned")


@pytest.mark.parametrize("kind", KINDS)
async def test_run_refuses_a_damaged_store_and_leaves_it_untouched(tmp_path: Path, kind: str) -> None:
    village = write_village(tmp_path)
    expected = damage(village.store_path, kind)
    before = village.store_path.read_bytes()
    mtime = village.store_path.stat().st_mtime_ns
    try:
        rc, _, err = await alertd("run", "-c", str(village.settings_path))
    finally:
        await forget_session(village)
    assert rc == 2, err  # RestartPreventExitStatus=2: systemd does not restart it
    line = refusal(err)
    assert line.startswith(f"alertd: {village.store_path}: "), line
    assert expected in line
    assert "restore it from a backup" in line or "check [store] path" in line
    assert "move it aside to start a new store" in line
    assert village.store_path.read_bytes() == before
    assert village.store_path.stat().st_mtime_ns == mtime
    # No WAL, no reserve, no draft. The roster, checked before the store was opened, is cached (alertd.roster_cache).
    assert beside(village.store_path) == ["alertd.db", "alertd.db.roster-cache"]


@pytest.mark.parametrize("kind", KINDS)
async def test_read_commands_on_a_damaged_store_print_the_same_line(tmp_path: Path, kind: str) -> None:
    village = write_village(tmp_path)
    damage(village.store_path, kind)
    before = village.store_path.read_bytes()
    cfg = ("-c", str(village.settings_path))
    try:
        rc, _, err = await alertd("run", *cfg)
    finally:
        await forget_session(village)
    assert rc == 2
    daemon_says = refusal(err)
    for command in (("incidents",), ("incidents", "--open", "--json"), ("show", "1"), ("devices",)):
        rc, out, err = await alertd(*command, *cfg)
        assert (rc, out) == (2, ""), (command, err)
        assert refusal(err) == daemon_says, command
    assert village.store_path.read_bytes() == before


async def filled_store(path: Path) -> None:
    store = await Store.open(path)
    try:
        await store.commit(
            Batch(
                T0,
                incidents={
                    i: Incident(i, "h1-1", "g1", Kind.FIRE, "default", State.RESOLVED, T0, T0) for i in range(1, 300)
                },
                timeline=[TimelineEntry(i, T0, "opened", "x" * 200) for i in range(1, 300)],
            )
        )
    finally:
        await store.close()  # checkpoints the WAL into the file


async def test_read_commands_on_damaged_pages_print_one_line(tmp_path: Path) -> None:
    village = write_village(tmp_path)
    await filled_store(village.store_path)
    with village.store_path.open("r+b") as file:
        file.seek(4096)  # every page past the first: the tables, wherever SQLite put them
        file.write(b"\xde\xad\xbe\xef" * (village.store_path.stat().st_size // 4 - 1024))
    cfg = ("-c", str(village.settings_path))
    for command in (("incidents",), ("show", "1"), ("devices",)):
        rc, out, err = await alertd(*command, *cfg)
        assert (rc, out) == (2, ""), (command, err)
        line = refusal(err)
        assert line.startswith(f"alertd: {village.store_path}: "), line
        assert "restore it from a backup" in line
    try:
        rc, _, err = await alertd("run", *cfg)  # integrity_check refuses it, as before
    finally:
        await forget_session(village)
    assert rc == 2, err
    assert refusal(err).startswith(f"alertd: {village.store_path}: ")


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None, reason="as root, needs setpriv to drop DAC override"
)
async def test_a_store_alertd_may_not_open_is_refused_with_whose_access(tmp_path: Path) -> None:
    village = write_village(tmp_path)
    await filled_store(village.store_path)
    village.store_path.chmod(0)
    prefix = NO_DAC_OVERRIDE if os.geteuid() == 0 else ()
    cfg = ("-c", str(village.settings_path))
    try:
        rc, _, err = await alertd("run", *cfg, prefix=prefix)
    finally:
        await forget_session(village)
    assert rc == 2, err
    line = refusal(err)
    assert line.startswith(f"alertd: {village.store_path}: permission denied: user "), line
    assert "read and write access" in line
    rc, out, err = await alertd("incidents", *cfg, prefix=prefix)
    assert (rc, out) == (2, ""), err
    line = refusal(err)
    assert line.startswith(f"alertd: {village.store_path}: permission denied: user "), line
    assert "read access" in line


def created_lines(log: Path) -> list[str]:
    return [line for line in log.read_text(encoding="utf-8").splitlines() if "created a new, empty one" in line]


async def test_a_missing_store_is_created_once_and_the_log_says_so(tmp_path: Path) -> None:
    village = write_village(tmp_path)
    assert not village.store_path.exists()
    log = tmp_path / "daemon.log"
    daemon = DaemonProcess(village, log)
    try:
        await daemon.start()
        assert await daemon.terminate() == 0
        [line] = created_lines(log)
        assert f"No store at {village.store_path}: created a new, empty one" in line
        assert line.startswith("WARNING ")
        assert "alertd.db.new" not in beside(village.store_path)

        await daemon.start()  # the store it made is its own store from now on
        assert await daemon.terminate() == 0
        assert len(created_lines(log)) == 1
    finally:
        await daemon.kill()
        await forget_session(village)
    rc, _, err = await alertd("incidents", "-c", str(village.settings_path))
    assert rc == 0, err


async def test_a_full_disk_at_the_first_start_is_retried_and_leaves_no_store(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk") as disk:
        village = on_disk(write_village(tmp_path), disk / "alertd.db")
        filler = fill(disk, "filler")
        try:
            rc, _, err = await alertd("run", "-c", str(village.settings_path))
        finally:
            await forget_session(village)
        assert rc == 1, err  # not 2: systemd starts it again, and once there is room it runs
        line = refusal(err)
        assert "cannot open the store just now" in line, line
        assert beside(village.store_path) == []  # no half-made store to refuse next time, no draft

        filler.unlink()
        daemon = DaemonProcess(village, tmp_path / "daemon.log")
        try:
            await daemon.start()
            assert await daemon.terminate() == 0
        finally:
            await daemon.kill()
            await forget_session(village)
        assert len(created_lines(tmp_path / "daemon.log")) == 1


def on_disk(village: Village, store_path: Path) -> Village:
    settings = village.settings_path.read_text(encoding="utf-8").replace(
        f'path = "{village.store_path}"', f'path = "{store_path}"\nreserve_mb = 0'
    )
    village.settings_path.write_text(settings, encoding="utf-8")
    village.store_path = store_path
    return village
