"""`alertd migrate` (alertd/store_copy.py): an SQLite store copied into an empty PostgreSQL, every id kept, the
identity counters moved past them; a target in use refused, untouched. The real file, the real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from argon2 import PasswordHasher
from psycopg import sql

from alertd.accounts import Accounts
from alertd.core.access import Role, User
from alertd.core.events import DeliveryReport, Outcome
from alertd.core.incidents import State, TimelineEntry
from alertd.core.records import Batch, DeviceUpdate
from alertd.errors import StoreError
from alertd.lease_table import LeaseTable
from alertd.postgres_thread import VERSION_TABLE
from alertd.store import SendResult, Status, Store
from alertd.store_copy import Copied, copy_store
from tests.harness import write_village
from tests.pg import fresh_database
from tests.test_store import T0, incident, ring, sms

ROOT = Path(__file__).parent.parent
CLI_TIMEOUT_S = 60.0
PASSWORD = "correct horse"
# argon2 at its lowest cost: a login verifies with the parameters kept in the hash, so the copy logs in alike.
HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
NOT_COPIED = {VERSION_TABLE, LeaseTable().table}  # PostgreSQL's own: the schema version, the lease


@pytest.fixture
def target(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's cluster: where the copy goes."""
    with fresh_database(postgres_url) as url:
        yield url


@dataclass(frozen=True)
class Seeded:
    """What went into the SQLite store besides its tables' rows: what the copy must still open."""

    user: User
    token: str  # a bearer token of the user's (kept hashed)


def accounts(store: Store) -> Accounts:
    return Accounts(store, idle_timeout_s=3600.0, hasher=HASHER)


async def seed(path: Path) -> Seeded:
    """An SQLite store with a row in every table: incidents open, acknowledged and resolved, their timelines,
    notifications pending, sent (with a provider id and a delivery report), failed and being sent, alarms seen,
    devices, meta, a console user with a session, a token and audit rows."""
    store = await Store.open(path)
    try:
        resolved = incident(
            3, household_id="h03", state=State.RESOLVED, next_step=None, next_step_at=None, resolved_at=T0 + 900,
            outcome=Outcome.FALSE_ALARM, acknowledged_at=T0 + 60, acknowledged_by="p05",
        )  # fmt: skip
        await store.commit(
            Batch(
                T0,
                incidents={1: incident(1), 2: incident(2, household_id="h02", silent=True), 3: resolved},
                timeline=[
                    TimelineEntry(1, T0, "opened", "t01", "fire"),
                    TimelineEntry(2, T0, "opened", "t02", "panic"),
                    TimelineEntry(3, T0, "opened", "t03"),
                    TimelineEntry(3, T0 + 60, "acknowledged", "p05", "SMS reply 3 1"),
                    TimelineEntry(3, T0 + 900, "resolved", "p05", "false alarm"),
                ],
                notifications=[sms(1, "p05"), sms(1, "p06"), ring(1, "t02"), sms(2, "p07"), sms(3, "p08")],
                seen=[("t01", 17), ("t02", 4)],
                devices=[
                    DeviceUpdate("t01", T0, online=True, battery=80, test=True),
                    DeviceUpdate("t02", T0 + 5, online=False, battery_low=True, tampered=False, state='{"a": 1}'),
                ],
                meta={"digest:g1": "2027-01-15", "first_started_at": repr(T0 - 86_400)},
                inbound=["SMinbound1"],
            )
        )
        rows = {(n.incident_id, n.recipient): n.id for n in await store.notifications()}
        sent, failed, sending = rows[1, "p05"], rows[1, "p06"], rows[3, "p08"]
        await store.claim([sent, failed, sending], "twilio", T0 + 1)
        await store.record_results(
            [
                SendResult(sent, Status.SENT, "twilio", "SM1"),
                SendResult(failed, Status.FAILED, "twilio", None, "21211 invalid number"),
            ],
            T0 + 2,
        )
        await store.commit(
            Batch(
                T0 + 3,
                deliveries=[
                    DeliveryReport("SM1", "delivered", token="tok-1"),
                    DeliveryReport("SM-early", "sent"),  # no row holds it yet: kept in early_deliveries
                ],
                timeline=[TimelineEntry(1, T0 + 3, "delivered", "p05")],
            )
        )
        console = accounts(store)
        user = await console.add("老周", Role.DUTY, [], PASSWORD, T0)
        login = await console.login("老周", PASSWORD, "10.0.0.7", T0 + 10)  # a session, and an audit row
        assert not isinstance(login, str), login
        await console.audit("老周", "10.0.0.7", "drill", "g1", T0 + 20)
        token = await console.create_token("老周", "12345", T0 + 30)
        return Seeded(user, token)
    finally:
        await store.close()


def sqlite_counts(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        names = [
            str(r[0])
            for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'")
        ]
        return {name: int(db.execute(f"SELECT count(*) FROM {name}").fetchone()[0]) for name in names}  # noqa: S608


def postgres_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as pg:
        names = [
            str(r[0])
            for r in pg.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            ).fetchall()
        ]
        return {
            name: int(row[0])
            for name in names
            if name not in NOT_COPIED
            and (row := pg.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone())
        }


def ids(where: str | Path, table: str) -> list[int]:
    """A table's ids, in order: in the SQLite file (a Path) or the PostgreSQL database (a URL)."""
    if isinstance(where, Path):
        with contextlib.closing(sqlite3.connect(where)) as db:
            return [int(r[0]) for r in db.execute(f"SELECT id FROM {table} ORDER BY id")]  # noqa: S608 (ours)
    with psycopg.connect(where, autocommit=True) as pg:
        query = sql.SQL("SELECT id FROM {} ORDER BY id").format(sql.Identifier(table))
        return [int(r[0]) for r in pg.execute(query).fetchall()]


async def snapshot(store: Store) -> dict[str, Any]:
    """Everything the daemon, the console and the reports read back from a store."""
    incidents = await store.incidents(limit=1000)
    return {
        "incidents": incidents,
        "timelines": {i.id: await store.timeline(i.id) for i in incidents},
        "notifications": await store.notifications(),
        "seen": await store.recent_alarms(0),
        "devices": await store.devices(),
        "meta": await store.metas(""),
        "users": await accounts(store).users(),
        "audit": await accounts(store).audit_log(),
        "max_incident": await store.max_incident_id(),
    }


async def test_the_copy_reads_back_as_the_sqlite_store_did(tmp_path: Path, target: str) -> None:
    source = tmp_path / "alertd.db"
    seeded = await seed(source)
    before = sqlite_counts(source)
    assert all(before.values()), f"the seed fills every table: {before}"
    lite = await Store.open(source, readonly=True)
    try:
        expected = await snapshot(lite)
    finally:
        await lite.close()
    statuses = {n.status for n in expected["notifications"]}
    assert statuses == {Status.PENDING, Status.SENT, Status.FAILED, Status.SENDING}
    assert {i.state for i in expected["incidents"]} == {State.OPEN, State.RESOLVED}

    copied = await copy_store(source, target, tmp_path / "cache")

    assert isinstance(copied, Copied)
    assert copied.tables == before, "every table, every row"
    assert postgres_counts(target) == before
    assert copied.summary().startswith("3 incidents, 1 users, ")
    for table in ("incidents", "timeline", "notifications", "users", "audit"):
        assert ids(target, table) == ids(source, table), f"{table}: the ids kept"
    pg = await Store.open_postgres(target, cache=tmp_path / "cache")
    try:
        assert await snapshot(pg) == expected
        sent = next(n for n in await pg.notifications() if n.status is Status.SENT)
        assert (sent.provider_id, sent.delivery, sent.carrier) == ("SM1", "delivered", "twilio")
        assert await pg.inbound_seen("SMinbound1")
        console = accounts(pg)
        assert await console.bearer(seeded.token, T0 + 40) == seeded.user, "the token's hash and its user, kept"
        assert not isinstance(await console.login("老周", PASSWORD, "10.0.0.7", T0 + 50), str), "the password too"
    finally:
        await pg.close()


async def test_after_the_copy_new_rows_get_ids_past_every_copied_one(tmp_path: Path, target: str) -> None:
    source = tmp_path / "alertd.db"
    await seed(source)
    await copy_store(source, target, tmp_path / "cache")
    copied = {table: max(ids(target, table)) for table in ("notifications", "timeline", "users", "audit")}
    pg = await Store.open_postgres(target, cache=tmp_path / "cache")
    try:
        new_id = await pg.max_incident_id() + 1
        assert new_id == 4
        await pg.commit(
            Batch(
                T0 + 1000,
                incidents={new_id: incident(new_id, opened_at=T0 + 1000, last_alarm_at=T0 + 1000)},
                timeline=[TimelineEntry(new_id, T0 + 1000, "opened", "t04")],
                notifications=[sms(new_id, "p09")],
            )
        )
        (note,) = await pg.notifications(new_id)
        assert note.id > copied["notifications"]
        assert note.status is Status.PENDING
        assert await pg.timeline(new_id) == [TimelineEntry(new_id, T0 + 1000, "opened", "t04")]
        console = accounts(pg)
        user = await console.add("陈国庆", Role.VIEWER, [], PASSWORD, T0 + 1000)
        assert user.id > copied["users"]
        await console.audit("陈国庆", "10.0.0.8", "login", "", T0 + 1001)
    finally:
        await pg.close()
    assert max(ids(target, "timeline")) > copied["timeline"]
    assert max(ids(target, "audit")) > copied["audit"]


async def test_a_second_copy_is_refused_and_changes_nothing(tmp_path: Path, target: str) -> None:
    source = tmp_path / "alertd.db"
    await seed(source)
    await copy_store(source, target, tmp_path / "cache")
    before = postgres_counts(target)
    notifications = ids(target, "notifications")
    with pytest.raises(StoreError, match=r"already holds an alertd store \(3 rows in incidents\)"):
        await copy_store(source, target, tmp_path / "cache")
    assert postgres_counts(target) == before
    assert ids(target, "notifications") == notifications


async def test_a_target_a_daemon_has_started_on_is_refused(tmp_path: Path, target: str) -> None:
    """Its first start writes when the store came into use (meta), before any incident: not a history, but not
    an empty store either; the copy refuses it by name, not with a duplicate key halfway through."""
    source = tmp_path / "alertd.db"
    await seed(source)
    pg = await Store.open_postgres(target, cache=tmp_path / "cache")
    try:
        assert await pg.in_use_since(T0) is None
    finally:
        await pg.close()
    with pytest.raises(StoreError, match=r"1 rows in meta"):
        await copy_store(source, target, tmp_path / "cache")
    assert postgres_counts(target)["meta"] == 1
    assert sum(postgres_counts(target).values()) == 1


async def test_a_write_under_way_in_the_target_is_waited_for_then_refused(tmp_path: Path, target: str) -> None:
    """No write slips in between the check for an empty target and the copy: the copy waits for a transaction
    in flight, then finds its row (without the lock it found nothing yet, and both histories were kept)."""
    source = tmp_path / "alertd.db"
    await seed(source)
    await (await Store.open_postgres(target, cache=tmp_path / "cache")).close()  # the schema, before the insert
    async with (
        await psycopg.AsyncConnection.connect(target, autocommit=True) as writer,
        await psycopg.AsyncConnection.connect(target, autocommit=True) as watcher,
    ):
        async with writer.transaction():
            await writer.execute("INSERT INTO meta (key, value) VALUES ('first_started_at', '0')")
            copying = asyncio.create_task(copy_store(source, target, tmp_path / "cache"))
            async with asyncio.timeout(CLI_TIMEOUT_S):
                while not copying.done():
                    cur = await watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'"
                    )
                    if (found := await cur.fetchone()) and found[0]:
                        break  # the copy waits for this transaction: commit it
                    await asyncio.sleep(0.01)
        with pytest.raises(StoreError, match=r"\(1 rows in meta\)"):
            await copying
    assert sum(postgres_counts(target).values()) == 1, "only the writer's row"


async def test_a_target_whose_lease_is_held_is_refused(tmp_path: Path, target: str) -> None:
    source = tmp_path / "alertd.db"
    await seed(source)
    table = LeaseTable()
    async with await psycopg.AsyncConnection.connect(target, autocommit=True) as conn:
        await table.setup(conn)
        held = await table.take(conn, "node-a", 60.0)
        assert held is not None
        with pytest.raises(StoreError, match="instance node-a is running on this database"):
            await copy_store(source, target, tmp_path / "cache")
        assert not any(postgres_counts(target).values()), "nothing copied"
        assert await table.release(conn, "node-a", held.token)  # a clean stop: the copy may go ahead
    copied = await copy_store(source, target, tmp_path / "cache")
    assert copied.tables["incidents"] == 3


async def test_a_password_in_the_url_is_not_shown(tmp_path: Path, target: str) -> None:
    source = tmp_path / "alertd.db"
    await seed(source)
    await copy_store(source, target, tmp_path / "cache")
    parts = urlsplit(target)
    password = parts.password or "s3cret"  # the throwaway cluster trusts every connection: any password will do
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    with pytest.raises(StoreError, match="rows in incidents") as refused:
        await copy_store(source, urlunsplit(parts._replace(netloc=netloc)), tmp_path / "cache")
    assert password not in str(refused.value)
    assert f"{parts.username}:***@" in str(refused.value)


async def test_a_source_path_with_uri_characters_is_copied(tmp_path: Path, target: str) -> None:
    """`--from` is a file name, not an SQLite URI: '?' and '#' in it are part of the name."""
    source = tmp_path / "old store #2?" / "alertd.db"
    source.parent.mkdir()
    await seed(source)
    copied = await copy_store(source, target, tmp_path / "cache")
    assert copied.tables == sqlite_counts(source)


async def test_a_row_postgresql_refuses_stops_the_copy_whole(tmp_path: Path, target: str) -> None:
    """A battery of 87.5 % (SQLite keeps a REAL in an INTEGER column; PostgreSQL's BIGINT will not): the copy
    stops with the table named, and the tables copied before it are rolled back too."""
    source = tmp_path / "alertd.db"
    await seed(source)
    with contextlib.closing(sqlite3.connect(source)) as db, db:
        db.execute("UPDATE devices SET battery = 87.5 WHERE id = 't01'")
    with pytest.raises(StoreError, match="copying devices, nothing copied"):
        await copy_store(source, target, tmp_path / "cache")
    assert not any(postgres_counts(target).values()), "the incidents, copied before the devices, rolled back"
    with contextlib.closing(sqlite3.connect(source)) as db, db:
        db.execute("UPDATE devices SET battery = 88 WHERE id = 't01'")
    copied = await copy_store(source, target, tmp_path / "cache")  # mended, it goes through: nothing was left
    assert copied.tables == sqlite_counts(source)


# --- the command ---------------------------------------------------------------------------------------------


def migrate(*args: str, url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTD_")}
    if url is not None:
        env["ALERTD_STORE__URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "alertd.cli", "migrate", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip


async def test_the_command_copies_and_says_how_many_rows(tmp_path: Path, target: str) -> None:
    village = write_village(tmp_path)
    source = tmp_path / "old" / "alertd.db"
    source.parent.mkdir()
    await seed(source)
    counts = sqlite_counts(source)
    done = migrate("-c", str(village.settings_path), "--from", str(source), url=target)
    assert done.returncode == 0, done.stderr
    said, _, summary = done.stdout.strip().rpartition(": ")
    assert said == f"copied {source} into the PostgreSQL store"
    assert summary.split(", ") == [
        "3 incidents",
        "1 users",
        *(f"{n} {t}" for t, n in sorted(counts.items()) if t not in {"incidents", "users"}),
    ]
    assert postgres_counts(target) == counts
    again = migrate("-c", str(village.settings_path), "--from", str(source), url=target)
    assert again.returncode == 2
    assert "rows in incidents" in again.stderr
    assert "Traceback" not in again.stderr


async def test_the_command_refuses_a_missing_source_and_a_missing_url(tmp_path: Path, target: str) -> None:
    village = write_village(tmp_path)
    missing = tmp_path / "nowhere" / "alertd.db"
    done = migrate("-c", str(village.settings_path), "--from", str(missing), url=target)
    assert done.returncode == 2
    assert str(missing) in done.stderr
    assert "Traceback" not in done.stderr
    assert not missing.exists(), "no store made where there was none"
    assert postgres_counts(target) == {}, "the target not even given the schema"

    source = tmp_path / "alertd.db"
    await seed(source)
    no_url = migrate("-c", str(village.settings_path), "--from", str(source), url=None)
    assert no_url.returncode == 2
    assert "[store] url" in no_url.stderr
    assert postgres_counts(target) == {}


def test_summary_names_only_tables_with_rows() -> None:
    copied = Copied({"incidents": 2, "users": 0, "timeline": 5})
    assert copied.summary() == "2 incidents, 5 timeline"
    assert Copied({}).summary() == ""
