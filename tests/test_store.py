"""The SQLite store against a real file: schema, durability, the outbox lifecycle, refusing a bad file."""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alertd.core.events import DeliveryReport
from alertd.core.incidents import (
    Channel,
    Incident,
    Notification,
    Purpose,
    State,
    TimelineEntry,
)
from alertd.core.model import Kind
from alertd.core.records import Batch
from alertd.errors import StoreError
from alertd.store import MIGRATIONS, SendResult, Status, Store, read_migrations
from tests.pg import BOTH_STORES, StoreAt

T0 = 1_800_000_000.0


def incident(incident_id: int = 1, **changes: Any) -> Incident:
    base = Incident(
        incident_id, "h01", "g1", Kind.FIRE, "default", State.OPEN, T0, T0, next_step=1, next_step_at=T0 + 120,
        rung=("t02", "t03"),
    )  # fmt: skip
    return replace(base, **changes)


def sms(incident_id: int = 1, recipient: str = "p05", step: int = 0) -> Notification:
    return Notification(incident_id, step, Channel.SMS, Purpose.ALERT, recipient, "+8613800000005", "【联防】...")


def ring(incident_id: int = 1, device: str = "t02") -> Notification:
    return Notification(incident_id, 0, Channel.TERMINAL, Purpose.RING, device, device, '{"type":"ring"}')


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "alertd.db"


@pytest.fixture
async def store(store_at: StoreAt) -> AsyncIterator[Store]:
    opened = await store_at.open()
    yield opened
    await opened.close()


async def sent_row(store: Store, provider_id: str = "SM1") -> int:
    await store.commit(Batch(T0, incidents={1: incident()}, notifications=[sms()]))
    (row,) = await store.notifications(1)
    await store.claim([row.id], "twilio", T0 + 1)
    await store.record_results([SendResult(row.id, Status.SENT, "twilio", provider_id)], T0 + 2)
    return row.id


# --- schema and durability -----------------------------------------------------------------------------


async def test_new_file_gets_the_schema_and_reopening_is_idempotent(db_path: Path) -> None:
    first = await Store.open(db_path)
    await first.commit(Batch(T0, incidents={1: incident()}))
    await first.close()
    assert query(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    for _ in range(2):
        again = await Store.open(db_path)  # must not re-run CREATE TABLE
        assert await again.incident(1) == incident()
        await again.close()
    assert query(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]


async def test_wal_and_synchronous_full(store: Store, db_path: Path) -> None:
    # journal_mode=WAL is a property of the file: any connection sees it.
    assert query(db_path, "PRAGMA journal_mode") == [("wal",)]
    # synchronous is per connection: read it on the store's own connection (read only, nothing changed).
    assert await store._db.fetchone("PRAGMA synchronous") == (2,)  # FULL
    assert await store._db.fetchone("PRAGMA foreign_keys") == (1,)
    # The outbox's own connection moves statuses without the fsync: a crash can only repeat a message.
    assert store._outbox is not None
    assert await store._outbox.fetchone("PRAGMA synchronous") == (1,)  # NORMAL


async def test_schema_from_the_future_is_refused(db_path: Path) -> None:
    await (await Store.open(db_path)).close()
    with sqlite3.connect(db_path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer"):
        await Store.open(db_path)


# --- schema files and migrations ------------------------------------------------------------------------

SCHEMA = files("alertd.schema")
# sqlite_master of a version 9 store, frozen when the schema moved from a tuple in store.py to files.
FROZEN_V9 = Path(__file__).with_name("store_schema_v9.sql")
# Rows in version 1's columns, which every later version keeps.
V1_INCIDENT = (
    "INSERT INTO incidents (id, household_id, group_id, kind, policy, state, opened_at, last_alarm_at, next_step) "
    "VALUES (1, 'h01', 'g1', 'fire', 'default', 'open', :t, :t, NULL)"
)
V1_NOTIFICATION = (
    "INSERT INTO notifications (key, incident_id, step, channel, purpose, recipient, address, body, created_at, "
    "next_attempt_at, updated_at) VALUES ('k1', 1, 0, 'sms', 'alert', 'p05', '+8613800000005', 'b', :t, :t, :t)"
)
V1_DEVICE = "INSERT INTO devices (id, online, battery, last_seen) VALUES ('t01', 1, 80, :t)"
META_VERSION = 7  # the version that added the meta table and marked a store with history as in use


def schema_of(path: Path) -> str:
    """sqlite_master as text, in the format of store_schema_v9.sql: what a reviewer reads in a diff."""
    lines = []
    for kind, name, table, sql in query(
        path, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type DESC, tbl_name, name"
    ):
        lines.append(f"-- {kind} {name} on {table}" + (" (made by SQLite)" if sql is None else ""))
        if sql is not None:
            lines.append(f"{sql};")
    return "\n".join(lines) + "\n"


def build(path: Path, version: int) -> None:
    """A store at `version`, as an alertd that shipped only the first `version` schema files left it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path, isolation_level=None) as db:
        for number, sql in enumerate(MIGRATIONS[:version], start=1):
            db.executescript(f"BEGIN;\n{sql}\n;\nPRAGMA user_version = {number}; COMMIT;")
    db.close()


def test_schema_files_are_numbered_one_to_n_and_are_the_migrations() -> None:
    names = sorted(entry.name for entry in SCHEMA.iterdir() if entry.name.endswith(".sql"))
    numbers = [int(name[:4]) for name in names if re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", name)]
    assert len(numbers) == len(names)  # every .sql file is named NNNN_what.sql
    assert numbers == list(range(1, len(names) + 1))  # no gap, no duplicate
    assert len(MIGRATIONS) == len(names) >= 9
    for name, sql in zip(names, MIGRATIONS, strict=True):
        text = SCHEMA.joinpath(name).read_text(encoding="utf-8")
        assert sql == text
        assert text.startswith("-- "), f"{name}: starts with the comment that says what the version is for"


@pytest.mark.parametrize(
    ("names", "refusal"),
    [
        ((), "no schema files"),
        (("0001_a.sql", "0003_c.sql"), r"0003_c\.sql: version 3, but no file for version 2"),
        (("0002_b.sql", "0003_c.sql"), r"0002_b\.sql: version 2, but no file for version 1"),
        (("0001_a.sql", "0001_b.sql"), r"0001_a\.sql and 0001_b\.sql: two files for version 1"),
        (("0001_a.sql", "2_b.sql"), r"2_b\.sql: not named NNNN_what\.sql"),
        (("0001_a.sql", "0002 b.sql"), r"0002 b\.sql: not named NNNN_what\.sql"),
    ],
)
def test_schema_files_with_a_gap_a_duplicate_or_a_bad_name_are_refused(
    tmp_path: Path, names: tuple[str, ...], refusal: str
) -> None:
    for name in names:
        (tmp_path / name).write_text(f"-- {name}\n", encoding="utf-8")
    with pytest.raises(StoreError, match=refusal):
        read_migrations(tmp_path)


def test_schema_files_come_in_the_order_of_their_numbers(tmp_path: Path) -> None:
    for number in range(10, 0, -1):
        (tmp_path / f"{number:04d}_v{number}.sql").write_text(f"-- version {number}\n", encoding="utf-8")
    (tmp_path / "__init__.py").write_text("", encoding="utf-8")  # beside them in the package: not a schema file
    (tmp_path / "__pycache__").mkdir()
    assert read_migrations(tmp_path) == tuple(f"-- version {number}\n" for number in range(1, 11))


def test_the_first_nine_schema_files_build_the_schema_frozen_when_they_left_store_py(db_path: Path) -> None:
    build(db_path, 9)
    frozen = FROZEN_V9.read_text(encoding="utf-8").partition("\n\n")[2]  # after the header comment
    assert schema_of(db_path) == frozen
    assert query(db_path, "PRAGMA user_version") == [(9,)]


async def test_a_new_store_gets_every_schema_file(db_path: Path, tmp_path: Path) -> None:
    await (await Store.open(db_path)).close()
    by_hand = tmp_path / "by-hand.db"
    build(by_hand, len(MIGRATIONS))
    assert schema_of(db_path) == schema_of(by_hand)
    assert query(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]


@pytest.mark.parametrize("version", range(1, len(MIGRATIONS)))
async def test_an_older_store_migrates_to_the_newest_and_keeps_its_rows(
    db_path: Path, tmp_path: Path, version: int, caplog: pytest.LogCaptureFixture
) -> None:
    build(db_path, version)
    with sqlite3.connect(db_path) as db:
        for insert in (V1_INCIDENT, V1_NOTIFICATION, V1_DEVICE):
            db.execute(insert, {"t": T0})
    db.close()
    with caplog.at_level("INFO", logger="alertd.store"):
        store = await Store.open(db_path)
    try:
        assert await store.incident(1) == incident(next_step=None, next_step_at=None, rung=())
        assert [(n.key, n.recipient, n.status) for n in await store.notifications(1)] == [("k1", "p05", Status.PENDING)]
        assert (await store.devices())["t01"].battery == 80
        expected_meta = "0" if version < META_VERSION else None  # a store with history counts as in use
        assert await store.meta("first_started_at") == expected_meta
    finally:
        await store.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"Migrating store {db_path} to schema version {number}" for number in range(version + 1, len(MIGRATIONS) + 1)
    ]
    assert query(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    new = tmp_path / "new.db"
    await (await Store.open(new)).close()
    assert schema_of(db_path) == schema_of(new)


# --- the engine's batch ---------------------------------------------------------------------------------


@BOTH_STORES
async def test_batch_commit_persists_everything(store: Store, store_at: StoreAt) -> None:
    batch = Batch(
        T0,
        incidents={1: incident()},
        timeline=[TimelineEntry(1, T0, "opened", "1号户", "fire via mqtt"), TimelineEntry(1, T0, "step 0")],
        notifications=[ring(), ring(device="t03"), sms()],
        seen=[("t01", 41)],
    )
    await store.commit(batch)
    await store.close()
    reopened = await store_at.open()
    try:
        assert await reopened.incident(1) == incident()
        assert [i.id for i in await reopened.load_active_incidents()] == [1]
        assert [t.event for t in await reopened.timeline(1)] == ["opened", "step 0"]
        rows = await reopened.notifications(1)
        assert [(r.recipient, r.status, r.attempts) for r in rows] == [
            ("t02", Status.PENDING, 0), ("t03", Status.PENDING, 0), ("p05", Status.PENDING, 0),
        ]  # fmt: skip
        assert await reopened.seen_alarm("t01", 41, since=T0 - 1)
        assert not await reopened.seen_alarm("t01", 41, since=T0 + 1)  # outside the window
        assert not await reopened.seen_alarm("t01", 42, since=T0 - 1)
        assert await reopened.max_incident_id() == 1
    finally:
        await reopened.close()


@BOTH_STORES
async def test_same_notification_twice_is_one_row(store: Store) -> None:
    await store.commit(Batch(T0, incidents={1: incident()}, notifications=[sms()]))
    await store.commit(Batch(T0 + 5, notifications=[sms(), sms(recipient="pat1")]))
    await store.commit(Batch(T0 + 6, notifications=[sms(step=1)]))  # another step: a new message
    rows = await store.notifications(1)
    assert [(r.recipient, r.step) for r in rows] == [("p05", 0), ("pat1", 0), ("p05", 1)]
    assert rows[0].created_at == T0  # the first plan stands


@BOTH_STORES
async def test_failed_batch_commits_nothing(store: Store) -> None:
    await store.commit(Batch(T0, incidents={1: incident()}))
    # A timeline entry for an incident that does not exist violates the foreign key: the whole batch rolls back.
    bad = Batch(
        T0 + 1,
        incidents={2: incident(2)},
        timeline=[TimelineEntry(2, T0 + 1, "opened"), TimelineEntry(99, T0 + 1, "ghost")],
        notifications=[sms(2)],
    )
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        await store.commit(bad)
    assert await store.incident(2) is None
    assert await store.notifications(2) == []
    assert await store.timeline(2) == []
    # And the store still works afterwards.
    await store.commit(Batch(T0 + 2, incidents={2: incident(2)}))
    assert await store.incident(2) is not None


@BOTH_STORES
async def test_incident_update_replaces_the_row_and_keeps_its_timeline(store: Store) -> None:
    await store.commit(Batch(T0, incidents={1: incident()}, timeline=[TimelineEntry(1, T0, "opened")]))
    acked = incident(state=State.ACKNOWLEDGED, acknowledged_at=T0 + 9, acknowledged_by="住户5", next_step=None,
                     next_step_at=None)  # fmt: skip
    await store.commit(Batch(T0 + 9, incidents={1: acked}, timeline=[TimelineEntry(1, T0 + 9, "acknowledged")]))
    assert await store.incident(1) == acked
    assert [t.event for t in await store.timeline(1)] == ["opened", "acknowledged"]


# --- the outbox lifecycle ---------------------------------------------------------------------------------


@BOTH_STORES
async def test_claim_and_record_results(store: Store) -> None:
    planned = [sms(), sms(recipient="pat1"), sms(recipient="pat2"), ring()]
    await store.commit(Batch(T0, incidents={1: incident()}, notifications=planned))
    due = await store.due(Channel.SMS, T0, 10)
    assert [r.recipient for r in due] == ["p05", "pat1", "pat2"]
    assert await store.due(Channel.SMS, T0 - 1, 10) == []
    assert len(await store.due(Channel.SMS, T0, 2)) == 2
    ids = [r.id for r in due]
    await store.claim(ids, "twilio", T0 + 1)
    rows = {r.id: r for r in await store.notifications(1)}
    assert all(rows[i].status == Status.SENDING and rows[i].attempts == 1 for i in ids)
    assert all(rows[i].carrier == "twilio" for i in ids)
    assert await store.due(Channel.SMS, T0 + 100, 10) == []  # claimed rows are not due again
    assert [r.recipient for r in await store.due(Channel.TERMINAL, T0, 10)] == ["t02"]

    await store.record_results(
        [
            SendResult(ids[0], Status.SENT, "twilio", "SM1"),
            SendResult(ids[1], Status.PENDING, error="HTTP 503", next_attempt_at=T0 + 30),
            SendResult(ids[2], Status.FAILED, error="21211 invalid number"),
        ],
        T0 + 2,
    )
    rows = {r.id: r for r in await store.notifications(1)}
    assert (rows[ids[0]].status, rows[ids[0]].provider_id, rows[ids[0]].error) == (Status.SENT, "SM1", None)
    assert (rows[ids[1]].status, rows[ids[1]].next_attempt_at, rows[ids[1]].error) == (
        Status.PENDING, T0 + 30, "HTTP 503",
    )  # fmt: skip
    assert rows[ids[1]].carrier == "twilio"  # kept: the result had no carrier
    assert (rows[ids[2]].status, rows[ids[2]].error) == (Status.FAILED, "21211 invalid number")
    assert await store.due(Channel.SMS, T0 + 29, 10) == []
    assert [r.id for r in await store.due(Channel.SMS, T0 + 30, 10)] == [ids[1]]
    assert await store.next_due_at(Channel.SMS) == T0 + 30
    await store.claim([ids[1]], "modem", T0 + 31)
    (retried,) = [r for r in await store.notifications(1) if r.id == ids[1]]
    assert (retried.attempts, retried.carrier) == (2, "modem")


async def test_claimed_rows_survive_a_crash_as_sending(db_path: Path) -> None:
    store = await Store.open(db_path)
    await store.commit(Batch(T0, incidents={1: incident()}, notifications=[sms(), sms(recipient="pat1")]))
    first, second = await store.due(Channel.SMS, T0, 10)
    await store.claim([first.id], "twilio", T0 + 1)
    await store.close()  # crash: the send outcome was never recorded

    reopened = await Store.open(db_path)
    try:
        stuck = await reopened.in_sending(Channel.SMS)
        assert [(r.id, r.status, r.attempts) for r in stuck] == [(first.id, Status.SENDING, 1)]
        assert await reopened.in_sending(Channel.TERMINAL) == []
        assert [r.id for r in await reopened.due(Channel.SMS, T0, 10)] == [second.id]
    finally:
        await reopened.close()


@BOTH_STORES
async def test_late_sent_never_overwrites_delivered(store: Store) -> None:
    row_id = await sent_row(store)
    await store.commit(Batch(T0 + 3, deliveries=[DeliveryReport("SM1", "delivered")]))
    await store.commit(Batch(T0 + 4, deliveries=[DeliveryReport("SM1", "sent")]))
    await store.commit(Batch(T0 + 5, deliveries=[DeliveryReport("SM1", "queued")]))
    (row,) = [r for r in await store.notifications(1) if r.id == row_id]
    assert row.delivery == "delivered"


@BOTH_STORES
async def test_a_delivery_report_ahead_of_the_recorded_send_is_kept_until_it(store: Store) -> None:
    # Twilio may call back before the worker has recorded the message's sid: the report must wait for it,
    # not be dropped as "unknown message" (tests/test_scenario.py saw it now and then).
    await store.commit(Batch(T0, incidents={1: incident()}, notifications=[sms()]))
    (row,) = await store.notifications(1)
    await store.claim([row.id], "twilio", T0 + 1)
    await store.commit(Batch(T0 + 2, deliveries=[DeliveryReport("SM1", "delivered")]))
    await store.commit(Batch(T0 + 2, deliveries=[DeliveryReport("SM1", "sent")]))
    await store.record_results([SendResult(row.id, Status.SENT, "twilio", "SM1")], T0 + 3)
    (row,) = await store.notifications(1)
    assert row.delivery == "delivered"
    await store.commit(Batch(T0 + 4, deliveries=[DeliveryReport("SM1", "sent")]))
    assert (await store.notifications(1))[0].delivery == "delivered"


@BOTH_STORES
async def test_delivery_moves_forward(store: Store) -> None:
    await sent_row(store)
    await store.commit(Batch(T0 + 3, deliveries=[DeliveryReport("SM1", "sent")]))
    assert (await store.notifications(1))[0].delivery == "sent"
    await store.commit(Batch(T0 + 4, deliveries=[DeliveryReport("SM1", "delivered")]))
    assert (await store.notifications(1))[0].delivery == "delivered"


@BOTH_STORES
async def test_late_sent_never_overwrites_undelivered_with_error_code(store: Store) -> None:
    # Twilio reports undelivered/failed together with an error code; a retried earlier "sent" arrives after.
    await sent_row(store)
    await store.commit(Batch(T0 + 3, deliveries=[DeliveryReport("SM1", "undelivered", "30003")]))
    assert (await store.notifications(1))[0].delivery == "undelivered (30003)"
    await store.commit(Batch(T0 + 4, deliveries=[DeliveryReport("SM1", "sent")]))
    assert (await store.notifications(1))[0].delivery == "undelivered (30003)"


@BOTH_STORES
async def test_report_for_unknown_message_is_ignored(store: Store) -> None:
    await sent_row(store)
    await store.commit(Batch(T0 + 3, deliveries=[DeliveryReport("SM-unknown", "delivered")]))
    assert (await store.notifications(1))[0].delivery is None


async def test_duplicate_webhook_token_is_recorded_once(store: Store, db_path: Path) -> None:
    await sent_row(store)
    await store.commit(Batch(T0 + 3, deliveries=[DeliveryReport("SM1", "sent", token="tok-1")]))
    # The same callback retried (same token) must not be applied again, even if it would now rank higher.
    await store.commit(Batch(T0 + 4, deliveries=[DeliveryReport("SM1", "delivered", token="tok-1")]))
    assert (await store.notifications(1))[0].delivery == "sent"
    await store.commit(Batch(T0 + 5, deliveries=[DeliveryReport("SM1", "delivered", token="tok-2")]))
    assert (await store.notifications(1))[0].delivery == "delivered"
    assert query(db_path, "SELECT token FROM webhook_tokens ORDER BY token") == [("tok-1",), ("tok-2",)]
    await store.prune(T0 + 10)
    assert query(db_path, "SELECT count(*) FROM webhook_tokens") == [(0,)]


# --- refusing a bad file ----------------------------------------------------------------------------------


async def _filled_copy(db_path: Path, tmp_path: Path) -> Path:
    store = await Store.open(db_path)
    await store.commit(
        Batch(
            T0,
            incidents={i: incident(i) for i in range(1, 200)},
            timeline=[TimelineEntry(i, T0, "opened", "x" * 200) for i in range(1, 200)],
        )
    )
    await store.close()  # checkpoints the WAL into the main file
    copy = tmp_path / "copy.db"
    shutil.copyfile(db_path, copy)
    return copy


async def test_garbage_header_raises_store_error(db_path: Path, tmp_path: Path) -> None:
    copy = await _filled_copy(db_path, tmp_path)
    with copy.open("r+b") as f:
        f.write(b"this is not an sqlite database at all" * 4)
    with pytest.raises(StoreError):
        await Store.open(copy)


async def test_corrupted_pages_raise_store_error(db_path: Path, tmp_path: Path) -> None:
    copy = await _filled_copy(db_path, tmp_path)
    size = copy.stat().st_size
    assert size > 4 * 4096
    with copy.open("r+b") as f:
        f.seek(2 * 4096)  # a b-tree page, past the header and the schema
        f.write(b"\xde\xad\xbe\xef" * 1024)
    with pytest.raises(StoreError):
        await Store.open(copy)


async def test_readonly_open_of_missing_file_raises_store_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "alertd.db"
    with pytest.raises(StoreError):
        await Store.open(missing, readonly=True)
    assert not missing.parent.exists()  # and it created nothing


async def test_readonly_store_reads_and_refuses_writes(db_path: Path) -> None:
    writer = await Store.open(db_path)
    await writer.commit(Batch(T0, incidents={1: incident()}))
    reader = await Store.open(db_path, readonly=True)
    try:
        assert await reader.incident(1) == incident()
        with pytest.raises(sqlite3.OperationalError):
            await reader.commit(Batch(T0, incidents={2: incident(2)}))
    finally:
        await reader.close()
        await writer.close()


# --- new or not: decided before SQLite creates the file ---------------------------------------------------


def _beside(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.glob(path.name + "*"))


@pytest.mark.parametrize("readonly", [False, True])
async def test_an_empty_file_is_refused_not_taken_for_a_new_store(db_path: Path, readonly: bool) -> None:
    db_path.parent.mkdir()
    db_path.write_bytes(b"")
    with pytest.raises(StoreError, match=r"empty file \(0 bytes\), not a new store; restore it from a backup"):
        await Store.open(db_path, readonly=readonly)
    assert db_path.stat().st_size == 0
    assert _beside(db_path) == ["alertd.db"]


@pytest.mark.parametrize("user_version", [0, 4])
async def test_another_programs_database_is_refused_and_left_as_it_was(db_path: Path, user_version: int) -> None:
    db_path.parent.mkdir()
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
        db.execute(f"PRAGMA user_version = {user_version}")
    db.close()
    before = db_path.read_bytes()
    for readonly in (False, True):
        with pytest.raises(StoreError, match=rf"not an alertd store \(schema version {user_version}, no incidents"):
            await Store.open(db_path, readonly=readonly)
    assert db_path.read_bytes() == before  # not switched to WAL, not migrated
    assert _beside(db_path) == ["alertd.db"]


async def test_a_blank_sqlite_file_is_refused(db_path: Path) -> None:
    """What an interrupted first start used to leave behind: SQLite's header, schema version 0, no tables."""
    db_path.parent.mkdir()
    with sqlite3.connect(db_path) as db:
        db.execute("PRAGMA journal_mode = WAL")
    db.close()
    with pytest.raises(StoreError, match=r"not an alertd store \(schema version 0, no incidents table\)"):
        await Store.open(db_path)


async def test_a_missing_store_is_created_whole_and_logged(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db_path.parent.mkdir()
    draft = db_path.with_name("alertd.db.new")
    draft.write_bytes(b"left by a first start that was cut short")
    with caplog.at_level("INFO", logger="alertd.store"):
        store = await Store.open(db_path)
    await store.close()
    assert _beside(db_path) == ["alertd.db"]  # the draft moved into place; its WAL was checkpointed
    assert [r.getMessage() for r in caplog.records] == [
        f"No store at {db_path}: created a new, empty one (incident numbers start at 1); expected on a first start only"
    ]
    assert query(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
    caplog.clear()
    with caplog.at_level("INFO", logger="alertd.store"):
        await (await Store.open(db_path)).close()  # a store that never recorded anything is still ours
    assert caplog.records == []


async def test_a_store_removed_without_its_write_ahead_log_is_refused(db_path: Path) -> None:
    """SQLite would replay the orphaned log into a new store; the log may also hold the last alarms."""
    store = await Store.open(db_path)
    await store.commit(Batch(T0, incidents={1: incident()}))
    wal = db_path.with_name("alertd.db-wal")
    shutil.copyfile(wal, wal.with_name("saved-wal"))  # as a crash leaves it: the commit only in the log
    await store.close()
    db_path.unlink()
    wal.with_name("saved-wal").rename(wal)
    with pytest.raises(StoreError, match=r"missing, but its write-ahead log alertd\.db-wal is there"):
        await Store.open(db_path)
    assert _beside(db_path) == ["alertd.db-wal"]


@BOTH_STORES
async def test_a_report_kept_while_its_send_was_recorded_is_applied_at_the_next_report(store: Store) -> None:
    # What two connections at once can leave on PostgreSQL (alertd.store._apply_early_deliveries): the send's
    # provider id recorded, and its handset report kept as early, neither having seen the other.
    row_id = await sent_row(store, provider_id="SM7")
    await store.transaction(
        lambda db: db.execute(
            "INSERT INTO early_deliveries (provider_id, delivery, at) VALUES (?, ?, ?)", ("SM7", "delivered", T0 + 3)
        ).close()
    )
    before = await store.notification(row_id)
    assert before is not None
    assert before.delivery is None
    await store.commit(Batch(T0 + 4, deliveries=[DeliveryReport("SM-other", "sent")]))
    after = await store.notification(row_id)
    assert after is not None
    assert after.delivery == "delivered"
    assert await store.query(lambda db: db.execute("SELECT count(*) FROM early_deliveries").fetchone()[0]) == 1, (
        "only SM-other's own report is still kept"
    )
