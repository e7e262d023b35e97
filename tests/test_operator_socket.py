"""Operator actions (alertd ack/on-scene/resolve/cancel) go only through the daemon's Unix socket.

Who may act is what the socket file allows (mode 0660, the alertd group) and, behind it, what the daemon
checks from the connection itself (SO_PEERCRED); who acted is recorded as the name given plus the OS
user the kernel names. Another user is played by `nobody`: the tests run as root and drop to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from alertd.config import Settings
from alertd.core.incidents import State
from alertd.store import Store
from tests.harness import Terminals, Village, forget_session, running_daemon, terminals, write_village

ROOT = Path(__file__).parent.parent
CLI_TIMEOUT_S = 30.0
NOBODY = pwd.getpwnam("nobody")

# The CLI as another user. Not subprocess's user=: the interpreter's own files may be readable by root
# only, so it starts as root, loads alertd (and the codec host name lookups load lazily), then drops to
# the user for good before doing anything.
AS_USER = """\
import encodings.idna, os, sys
from alertd.cli import main
os.setgroups([])
os.setgid(int(sys.argv[2]))
os.setuid(int(sys.argv[1]))
sys.exit(main(sys.argv[3:]))
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")


async def alertd(*args: str, as_nobody: bool = False) -> tuple[int, str, str]:
    """The real CLI in a subprocess, as root or as nobody, without blocking the daemon in this loop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTD_")}
    prefix = ["-c", AS_USER, str(NOBODY.pw_uid), str(NOBODY.pw_gid)] if as_nobody else ["-m", "alertd.cli"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *prefix, *args,
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


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder nobody can read (pytest's tmp_path is root's alone): only the socket's mode keeps it out."""
    folder = Path(tempfile.mkdtemp(prefix="alertd-op-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def _readable(village: Village) -> Village:
    for path in (village.settings_path, village.settings_path.with_name("roster.toml")):
        path.chmod(0o644)
    return village


def _with_group(village: Village, group: str) -> Village:
    text = village.settings_path.read_text(encoding="utf-8")
    village.settings_path.write_text(text.replace("[http]\n", f'[http]\nsocket_group = "{group}"\n'), encoding="utf-8")
    return village


async def _open_incident(sims: Terminals) -> int:
    await sims.alarm("t1-2", "fire", seq=1)
    await sims.wait_until(lambda: len(sims.rings()) == 9)
    return sims.rings()[0].command.incident_id


async def _record(village: Village, incident_id: int) -> tuple[State, list[tuple[str, str]]]:
    store = await Store.open(village.store_path, readonly=True)
    try:
        incident = await store.incident(incident_id)
        timeline = await store.timeline(incident_id)
    finally:
        await store.close()
    assert incident is not None
    return incident.state, [(entry.event, entry.actor) for entry in timeline]


async def _unchanged(village: Village, incident_id: int) -> None:
    state, timeline = await _record(village, incident_id)
    assert state is State.OPEN
    assert [event for event, _ in timeline] == ["opened", "step 0"]


@contextlib.asynccontextmanager
async def _incident(village: Village) -> AsyncIterator[int]:
    """The daemon running, with one open incident (a fire at h1-2)."""
    try:
        async with running_daemon(village), terminals(village) as sims:
            yield await _open_incident(sims)
    finally:
        await forget_session(village)


async def test_the_cli_acts_through_the_socket_and_the_timeline_names_the_os_user(tmp_path: Path) -> None:
    village = write_village(tmp_path)
    cfg = ("-c", str(village.settings_path))
    async with _incident(village) as incident_id:
        made = os.stat(village.socket_path)
        assert stat.S_ISSOCK(made.st_mode)
        assert stat.S_IMODE(made.st_mode) == 0o660
        assert made.st_gid == os.getegid()  # no socket_group: the daemon's own group

        rc, out, err = await alertd("ack", str(incident_id), "--by", "张三", *cfg)
        assert rc == 0, out + err
        assert f"acknowledged {incident_id} (recorded as 张三 (os:root))" in out

        state, timeline = await _record(village, incident_id)
        assert state is State.ACKNOWLEDGED
        assert ("acknowledged", "张三 (os:root) (operator)") in timeline
        rc, out, err = await alertd("show", str(incident_id), *cfg)
        assert rc == 0, err
        assert "acknowledged by 张三 (os:root)" in out
    assert not village.socket_path.exists()  # removed at exit


async def test_another_user_is_kept_out_by_the_mode_and_then_by_the_daemon(shared_dir: Path) -> None:
    village = _readable(write_village(shared_dir))
    cfg = ("-c", str(village.settings_path))
    async with _incident(village) as incident_id:
        # The socket is root's group's, 0660: nobody cannot even connect.
        rc, out, err = await alertd("ack", str(incident_id), "--by", "张三", *cfg, as_nobody=True)
        assert rc == 1, out + err
        assert "Permission denied" in err
        assert "socket's group" in err

        # Loosened by mistake, the daemon still asks the kernel who is connecting, and refuses.
        village.socket_path.chmod(0o666)
        rc, out, err = await alertd("cancel", str(incident_id), "--by", "张三", *cfg, as_nobody=True)
        assert rc == 1, out + err
        assert "refused (403)" in out
        assert "may act" in out

        await _unchanged(village, incident_id)


async def test_a_member_of_the_socket_group_acts_as_itself(shared_dir: Path) -> None:
    village = _readable(_with_group(write_village(shared_dir), "nogroup"))
    async with _incident(village) as incident_id:
        made = os.stat(village.socket_path)
        assert stat.S_IMODE(made.st_mode) == 0o660
        assert made.st_gid == NOBODY.pw_gid  # nogroup, nobody's own

        rc, out, err = await alertd(
            "ack", str(incident_id), "--by", "值班员", "-c", str(village.settings_path), as_nobody=True
        )
        assert rc == 0, out + err
        state, timeline = await _record(village, incident_id)
        assert state is State.ACKNOWLEDGED
        assert ("acknowledged", "值班员 (os:nobody) (operator)") in timeline


async def test_the_socket_refuses_browsers_proxies_and_made_up_identities(tmp_path: Path) -> None:
    village = write_village(tmp_path)
    async with (
        _incident(village) as incident_id,
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(village.socket_path))) as session,
    ):
        url = f"http://localhost/api/incidents/{incident_id}/ack"
        refused = [
            ({"Content-Type": "text/plain"}, '{"by": "张三"}', 415),
            ({"Content-Type": "application/json", "Origin": "http://evil.example"}, '{"by": "张三"}', 403),
            ({"Content-Type": "application/json", "X-Real-IP": "203.0.113.9"}, '{"by": "张三"}', 403),
            ({"Content-Type": "application/json", "X-Forwarded-For": "203.0.113.9"}, '{"by": "张三"}', 403),
            ({"Content-Type": "application/json", "Forwarded": "for=203.0.113.9"}, '{"by": "张三"}', 403),
            ({"Content-Type": "application/json"}, '{"by": "张三 (os:root)"}', 400),
            ({"Content-Type": "application/json"}, '{"by": "张三 （ｏｓ：root）"}', 400),
            ({"Content-Type": "application/json"}, '{"by": "张三\\n  10:00:00 resolved by 李四"}', 400),
            ({"Content-Type": "application/json"}, '{"by": " "}', 400),
            ({"Content-Type": "application/json"}, '{"by": "' + "名" * 65 + '"}', 400),
            ({"Content-Type": "application/json"}, '{"by": "张三", "outcome": "maybe"}', 400),
            ({"Content-Type": "application/json"}, '{"by": "张三", "outcome": ""}', 400),
            ({"Content-Type": "application/json"}, '{"by": "张三", "outcome": 1}', 400),
            ({"Content-Type": "application/json"}, '{"by": "张三", "outcome": ["drill"]}', 400),
        ]
        for headers, body, status in refused:
            async with session.post(url, data=body.encode(), headers=headers) as response:
                assert response.status == status, (headers, body, await response.text())
        async with session.post(url, json={"by": "张三", "outcome": "REAL"}) as response:
            assert response.status == 400
            assert await response.text() == '"outcome" must be real, false_alarm or drill'
        await _unchanged(village, incident_id)

        async with session.post(url, json={"by": "张三"}) as response:  # the guards do let an operator in
            assert response.status == 200, await response.text()
            assert (await response.json())["actor"] == "张三 (os:root)"


async def test_a_stale_socket_is_replaced_and_a_live_one_left_alone(tmp_path: Path) -> None:
    village = write_village(tmp_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(village.socket_path))  # what kill -9 leaves behind: the file, nobody listening
    try:
        async with running_daemon(village) as daemon:
            assert daemon.health_of("operator").ok
            rc, out, err = await alertd("ack", "999", "--by", "张三", "-c", str(village.settings_path))
            assert rc == 1
            assert "incident 999 is not open" in out, out + err

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
            live.bind(str(village.socket_path))
            live.listen()
            inode = os.stat(village.socket_path).st_ino
            async with running_daemon(village) as daemon:  # alarms still run without the operator socket
                health = daemon.health_of("operator")
                assert not health.ok
                assert "in use by another process" in health.detail
            assert os.stat(village.socket_path).st_ino == inode  # neither taken over nor removed
    finally:
        await forget_session(village)


def test_the_socket_path_is_beside_the_settings_and_short_enough() -> None:
    base = Path("/etc/alertd")
    assert Settings.model_validate({}, context={"base_dir": base}).http.socket == Path("/run/alertd/alertd.sock")
    relative = Settings.model_validate({"http": {"socket": "run/op.sock"}}, context={"base_dir": base})
    assert relative.http.socket == base / "run" / "op.sock"
    with pytest.raises(ValueError, match="at most 107 bytes"):
        Settings.model_validate({"http": {"socket": "s" * 96}}, context={"base_dir": base})
