"""A throwaway PostgreSQL for tests: its own cluster in a temporary directory, started with Debian's
initdb/pg_ctl (scripts/test.sh installs the `postgresql` package), or the database that
ALERTD_TEST_POSTGRES_URL names. Never the PostgreSQL a machine may already run on 5432."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shlex
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from alertd.store import Store
from tests.harness import free_port

URL_ENV = "ALERTD_TEST_POSTGRES_URL"
DATABASE = "alertd_test"
SUPERUSER = "postgres"
# initdb refuses to run as root; then the cluster belongs to Debian's `postgres` system user.
SYSTEM_USER = "postgres"
START_ATTEMPTS = 3  # a fresh port each time: another process may take the free one before the server binds it
READY_S = 20.0


def _bin_dir() -> Path:
    """The newest PostgreSQL under /usr/lib/postgresql/<version>/bin, else whatever initdb is on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("no initdb: install Debian's postgresql package (scripts/test.sh does), or set " + URL_ENV)
    return Path(initdb).parent


async def _run(argv: Sequence[str], cwd: Path, *, check: bool = True) -> tuple[int, str]:
    """Run a command, as the `postgres` system user when we are root: its exit status and output (stdout and
    stderr together); with check, an error carrying the output when it fails."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", SYSTEM_USER, "--", *argv]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out = (await proc.communicate())[0].decode(errors="replace")
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited with {proc.returncode}:\n{out}")
    return int(proc.returncode or 0), out


def _log_tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    except OSError:
        return "(no server log)"


async def _create_database(port: int) -> None:
    """Wait until the server accepts connections, then create the test database."""
    deadline = time.monotonic() + READY_S
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(
                host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres", autocommit=True, connect_timeout=5
            )
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        async with conn:
            await conn.execute(f"CREATE DATABASE {DATABASE}")
        return


@contextlib.asynccontextmanager
async def temporary_postgres(workdir: Path) -> AsyncIterator[str]:
    """Yield the URL of an empty database on a cluster of its own, in a directory made under workdir; stop the
    cluster and remove the directory on exit, whatever happened. With ALERTD_TEST_POSTGRES_URL set, yield that.

    As root the cluster runs as the `postgres` system user, which must be able to reach workdir (the system
    temporary directory can be reached; pytest's tmp_path, under a 0700 directory of root's, cannot)."""
    given = os.environ.get(URL_ENV)
    if given:
        yield given
        return
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="alertd-pg-", dir=workdir))  # also the socket dir: keep the path short
    data, log = root / "data", root / "server.log"
    started = False
    try:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(SYSTEM_USER)
            os.chown(root, owner.pw_uid, owner.pw_gid)
            if (await _run(["test", "-w", str(root)], root, check=False))[0] != 0:
                raise RuntimeError(f"the {SYSTEM_USER} user cannot reach {root}: give temporary_postgres another dir")
        await _run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
             "--locale=C", "--no-sync"],
            root,
        )  # fmt: skip
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            options = f"-p {port} -k {shlex.quote(str(root))} -c listen_addresses=127.0.0.1 -c fsync=off"
            started = True  # from here on, stop it on the way out, even if pg_ctl gave up waiting
            status, out = await _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "30",
                              "-o", options, "start"], root, check=False)  # fmt: skip
            if status == 0:
                break
            if attempt == START_ATTEMPTS:
                raise RuntimeError(f"pg_ctl could not start a cluster in {data}:\n{out}\n{_log_tail(log)}")
        await _create_database(port)
        yield f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        try:
            if started:
                await _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], root,
                           check=False)  # fmt: skip
        finally:
            shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """The URL of a new, empty database beside the one `url` names, dropped on exit (with any connection
    a test left open): each test's store starts empty, as a new SQLite file does. Synchronous, for
    fixtures that run outside the test's event loop."""
    name = f"alertd_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass(frozen=True)
class StoreAt:
    """Where a test's store lives: an SQLite file, or a fresh PostgreSQL database (url)."""

    path: Path
    url: str | None = None

    async def open(self, *, readonly: bool = False, instance: str = "") -> Store:
        if self.url is None:
            return await Store.open(self.path, readonly=readonly)
        return await Store.open_postgres(self.url, cache=self.path, readonly=readonly, instance=instance)


# The same test on both stores (the SQLite file and the shared PostgreSQL keep the same guarantees):
# @BOTH_STORES on a test whose store comes from store_at.
BOTH_STORES = pytest.mark.parametrize("store_at", ["sqlite", "postgres"], indirect=True)
