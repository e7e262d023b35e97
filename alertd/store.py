"""SQLite store: incidents, timeline, the notification outbox and device state.

One connection, WAL, synchronous=FULL: a committed alarm survives a power cut. The engine is the only
writer of incidents; outbox workers only move notification rows through their statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import pwd
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from alertd.core.events import Arming, DeliveryReport, Satisfaction
from alertd.core.incidents import Channel, Incident, Outcome, Purpose, State, TimelineEntry
from alertd.core.model import Kind
from alertd.core.records import Batch, Responder
from alertd.core.supervision import Condition, Reported
from alertd.database import Connection, Database, Row
from alertd.errors import AlertdError, StoreError, StoreFull, StoreUnavailable
from alertd.sqlite_thread import SqliteThread

if TYPE_CHECKING:
    from alertd.config import StoreSettings
    from alertd.postgres_thread import Fence

# alertd.postgres_thread (psycopg) is imported only for a PostgreSQL store: psycopg's import alone costs
# 0.2 s, half of an SQLite start-up.
# ruff: noqa: PLC0415

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
IN_USE_SINCE_KEY = "first_started_at"  # written at the first start (migration 7 backdates older stores)
_LOOKUP_CHUNK = 400  # keys per query: well under SQLite's limit on bound variables

SQLITE_HEADER = b"SQLite format 3\x00"
# Tables every alertd store has had since schema version 1: a database without them is not ours.
_OWN_TABLES = ("incidents", "timeline", "notifications", "devices")
# Failures at open that a later start may not meet (a full disk, a lock held for a moment): worth a
# restart by systemd, where a damaged or foreign file needs a person.
_RETRY_LATER = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_OS_RETRY_LATER = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})
_NO_ACCESS = frozenset({sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_READONLY})
_START_AGAIN = "move it aside to start a new store (incident numbers then restart at 1)"
_RESTORE = f"restore it from a backup (docs/deploy.md, Backups), or {_START_AGAIN}"


class Status(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"  # the carrier refused it for good (invalid number...)
    DEAD = "dead"  # gave up after max attempts
    MERGED = "merged"  # an alert text in a storm: never sent, carried by its recipient's summary


_STATUSES = {s.value: s for s in Status}

# Schema version N is alertd/schema/NNNN_what.sql: the version is the number in the name, never a place
# in a listing (alertd/schema/__init__.py says why a shipped file is never edited).
_SCHEMA_FILE = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


def read_migrations(folder: Traversable) -> tuple[str, ...]:
    """The SQL of schema versions 1..N in `folder`, version 1 first.

    Refuses a gap, two files for one version and a misnamed .sql file: migrating past a missing or
    ambiguous step would leave a store whose user_version names a schema it does not have."""
    texts: dict[int, str] = {}
    names: dict[int, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue  # __init__.py, __pycache__
        match = _SCHEMA_FILE.fullmatch(entry.name)
        if match is None:
            raise StoreError(f"schema file {entry.name}: not named NNNN_what.sql (NNNN: its version)")
        version = int(match[1])
        if version in names:
            raise StoreError(f"schema files {names[version]} and {entry.name}: two files for version {version}")
        names[version] = entry.name
        texts[version] = entry.read_text(encoding="utf-8")
    if not texts:
        raise StoreError(f"no schema files in {folder}")
    for expected, version in enumerate(sorted(texts), start=1):
        if version != expected:
            raise StoreError(f"schema file {names[version]}: version {version}, but no file for version {expected}")
    return tuple(texts[version] for version in sorted(texts))


# Read once, at import: an install with a schema file missing fails at start, before it touches a store.
MIGRATIONS: Sequence[str] = read_migrations(files("alertd.schema"))


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    key: str
    incident_id: int | None
    step: int
    channel: Channel
    purpose: Purpose
    recipient: str
    address: str
    body: str
    status: Status
    attempts: int
    carrier: str | None
    provider_id: str | None
    error: str | None
    delivery: str | None
    created_at: float
    next_attempt_at: float
    updated_at: float = 0.0  # when its status last moved: the response log shows sends in time order
    template: str = ""  # a text's kind and parameters, for a template carrier (Aliyun SMS)
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    id: str
    online: bool | None
    battery: int | None
    last_seen: float | None
    last_test: float | None
    battery_low: bool | None
    tampered: bool | None
    state: str | None
    ac_loss: bool | None = None
    comm_trouble: bool | None = None
    armed: Arming | None = None  # None: the device never reported arming (not a panel, or never armed)
    armed_user: int | None = None
    armed_at: float | None = None

    def reported(self) -> Reported:
        """What supervision judges the device by."""
        return Reported(
            online=self.online,
            last_seen=self.last_seen,
            battery=self.battery,
            battery_low=self.battery_low,
            tampered=self.tampered,
            ac_loss=self.ac_loss,
            comm_trouble=self.comm_trouble,
        )


_INCIDENT_COLUMNS = (
    "id, household_id, group_id, kind, policy, state, opened_at, last_alarm_at, next_step, next_step_at, "
    "acknowledged_at, acknowledged_by, on_scene_at, resolved_at, outcome, rung, silent, device_id, maintenance, "
    "satisfaction, evaluated_by, responders, quorum, quorum_state, drill, welfare"
)
_INCIDENT_MARKS = ", ".join("?" for _ in _INCIDENT_COLUMNS.split(","))
# Every column but the instance that opened it, which an incident keeps (alertd/schema/0017_instance.sql).
_UPSERT_INCIDENT = (
    f"INSERT INTO incidents ({_INCIDENT_COLUMNS}, instance) VALUES ({_INCIDENT_MARKS}, ?) ON CONFLICT (id) DO UPDATE "
    "SET " + ", ".join(f"{c} = excluded.{c}" for c in (c.strip() for c in _INCIDENT_COLUMNS.split(",")) if c != "id")
)
_ACTIVE = "state IN ('open', 'acknowledged', 'on_scene')"
_DEVICE_COLUMNS = (
    "id, online, battery, last_seen, last_test, battery_low, tampered, state, ac_loss, comm_trouble, "
    "armed, armed_user, armed_at"
)
_OUTBOX_COLUMNS = (
    "id, key, incident_id, step, channel, purpose, recipient, address, body, status, attempts, carrier, "
    "provider_id, error, delivery, created_at, next_attempt_at, updated_at, template, params"
)
_DUE = (
    f"SELECT {_OUTBOX_COLUMNS} FROM notifications WHERE channel = ? AND status = 'pending' AND next_attempt_at <= ? "
    "ORDER BY next_attempt_at, id LIMIT ?"
)
# A text delivered counts 1 (PostgreSQL sums no booleans; SQLite's `delivery = 'delivered'` is 0 or 1).
_DELIVERED = "CASE WHEN delivery = 'delivered' THEN 1 ELSE 0 END"
_DELIVERY_RANK = {
    "queued": 0, "accepted": 0, "sending": 1, "sent": 2, "undelivered": 3, "failed": 3, "delivered": 4,
    # a call's outcomes: answered, then how it ended; a key pressed is never overwritten
    "answered": 2, "completed": 3, "busy": 3, "no-answer": 3, "canceled": 3, "answering": 3, "key": 5,
}  # fmt: skip


def _incident_params(i: Incident) -> tuple[Any, ...]:
    return (
        i.id, i.household_id, i.group_id, i.kind.value, i.policy, i.state.value, i.opened_at, i.last_alarm_at,
        i.next_step, i.next_step_at, i.acknowledged_at, i.acknowledged_by, i.on_scene_at, i.resolved_at,
        i.outcome.value if i.outcome else None, json.dumps(list(i.rung)), int(i.silent), i.device_id,
        i.maintenance.value if i.maintenance else None, i.satisfaction.value if i.satisfaction else None,
        i.evaluated_by, json.dumps([[r.who, r.label, r.at] for r in i.responders], ensure_ascii=False), i.quorum,
        i.quorum_state, int(i.drill), int(i.welfare),
    )  # fmt: skip


def _incident_from_row(r: Sequence[Any]) -> Incident:
    return Incident(
        id=r[0], household_id=r[1], group_id=r[2], kind=Kind(r[3]), policy=r[4], state=State(r[5]),
        opened_at=r[6], last_alarm_at=r[7], next_step=r[8], next_step_at=r[9], acknowledged_at=r[10],
        acknowledged_by=r[11], on_scene_at=r[12], resolved_at=r[13],
        outcome=Outcome(r[14]) if r[14] else None, rung=tuple(json.loads(r[15])), silent=bool(r[16]),
        device_id=r[17], maintenance=Condition(r[18]) if r[18] else None,
        satisfaction=Satisfaction(r[19]) if r[19] else None, evaluated_by=r[20],
        responders=tuple(Responder(str(w), str(label), float(at)) for w, label, at in json.loads(r[21])),
        quorum=r[22], quorum_state=r[23], drill=bool(r[24]), welfare=bool(r[25]),
    )  # fmt: skip


# Enum members by value: Enum(value) is the slowest part of reading an outbox row, and a burst reads 18,000.
_CHANNELS = {c.value: c for c in Channel}
_PURPOSES = {p.value: p for p in Purpose}


def _outbox_from_row(r: Sequence[Any]) -> OutboxRow:
    # Positional, in OutboxRow's field order (id, key, incident_id, step, channel, purpose, recipient,
    # address, body, status, attempts, carrier, provider_id, error, delivery, created_at, next_attempt_at,
    # updated_at, template, params), like _OUTBOX_COLUMNS.
    return OutboxRow(
        r[0], r[1], r[2], r[3], _CHANNELS[r[4]], _PURPOSES[r[5]], r[6], r[7], r[8], _STATUSES[r[9]], r[10],
        r[11], r[12], r[13], r[14], r[15], r[16], r[17], r[18], _params(r[19]),
    )  # fmt: skip


def _params(raw: str) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in json.loads(raw).items()) if raw != "{}" else ()


def _device_from_row(r: Sequence[Any]) -> DeviceRecord:
    return DeviceRecord(
        r[0], _bool(r[1]), r[2], r[3], r[4], _bool(r[5]), _bool(r[6]), r[7], _bool(r[8]), _bool(r[9]),
        None if r[10] is None else Arming(r[10]), r[11], r[12],
    )  # fmt: skip


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _check_postgres(name: str, version: int, tables: set[str], *, readonly: bool) -> None:
    """Refuses a database alertd cannot use: a newer schema, or a versioned one without alertd's tables."""
    if version > len(MIGRATIONS):
        raise StoreError(f"{name}: schema version {version} is newer than this alertd knows")
    if version and (missing := [t for t in _OWN_TABLES if t not in tables]):
        raise StoreError(f"{name}: schema version {version} but no {missing[0]} table: not an alertd store")
    if readonly and version == 0:
        raise StoreError(f"{name}: no alertd store in this database (has the daemon ever run on it?)")


def _store_file_there(path: Path, *, readonly: bool) -> bool:
    """Whether a store file is at `path`; refuses one that cannot be a store before SQLite opens it."""
    try:
        with path.open("rb" if readonly else "r+b") as file:  # r+b: the daemon must be able to write it too
            header = file.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        wal = path.with_name(path.name + "-wal")
        with contextlib.suppress(OSError):
            if wal.stat().st_size > 0:
                # SQLite would replay this log into a new store (nothing ties a log to its database file).
                raise StoreError(
                    f"{path}: missing, but its write-ahead log {wal.name} is there (removed without it?); "
                    f"restore the store from a backup, or move {wal.name} aside too to start a new store"
                ) from None
        return False
    except OSError as err:
        raise _os_refusal(path, err, readonly=readonly) from err
    if not header:
        raise StoreError(f"{path}: the store is an empty file (0 bytes), not a new store; {_RESTORE}")
    if header != SQLITE_HEADER:
        raise StoreError(f"{path}: not an SQLite database; {_RESTORE}")
    return True


def _access(path: Path, *, readonly: bool) -> str:
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a passwd entry (a container)
        user = f"uid {os.geteuid()}"
    need = "read" if readonly else "read and write"
    return f"user {user} needs {need} access to it and its folder (for the service: chown alertd: {path.parent} {path})"


def _os_refusal(path: Path, err: OSError, *, readonly: bool = False) -> AlertdError:
    if err.errno in _OS_RETRY_LATER:
        return StoreUnavailable(f"{path}: cannot open the store just now: {err.strerror}")
    if isinstance(err, PermissionError):
        return StoreError(f"{path}: permission denied: {_access(path, readonly=readonly)}")
    return StoreError(f"{path}: cannot open the store: {err.strerror or err}")


def _refusal(path: Path, err: sqlite3.DatabaseError, *, readonly: bool = False) -> AlertdError:
    code = err.sqlite_errorcode & 0xFF  # the primary code, without the extended bits
    if code in _RETRY_LATER:
        return StoreUnavailable(f"{path}: cannot open the store just now: {err}")
    if code in _NO_ACCESS:
        return StoreError(f"{path}: {err}: {_access(path, readonly=readonly)}")
    return StoreError(f"{path}: unusable database: {err}; {_RESTORE}")


class Store:
    def __init__(self, db: Database, path: Path, *, name: str = "", instance: str = "") -> None:
        self._db = db  # the engine's: on SQLite synchronous=FULL, a committed alarm survives a power cut
        self.path = path  # SQLite's file (on PostgreSQL: where this instance keeps its roster cache)
        self.name = name or str(path)  # in messages: the file, or the database's address without a password
        self.instance = instance  # this instance's name, recorded in the incidents it opens
        self._write_failure: str | None = None
        # The outbox workers' connection (None when read-only). On SQLite synchronous=NORMAL, one statement
        # per transaction: a status move lost to a power cut can only repeat a message (reconciled or
        # resent), never lose one. The database serialises the two connections' writes; each connection
        # has its own thread, so an engine commit's fsync does not hold up a claim's read.
        self._outbox: Database | None = None

    async def _write(self, fn: Callable[[Connection], T], *, outbox: bool = False) -> T:
        """fn in one transaction, in one trip to the connection's thread. A full disk (or an I/O error)
        is StoreFull, remembered in `write_failure`; anything else is raised as it is."""
        db = self._outbox if outbox else self._db
        assert db is not None, "a read-only store writes nothing"  # noqa: S101
        try:
            result = await db.transact(fn)
        except Exception as err:
            if not db.out_of_room(err):
                raise
            self._write_failure = str(err)
            raise StoreFull(f"{self.name}: {err}") from err
        self._write_failure = None
        return result

    async def _outbox_read(self, sql: str, params: Sequence[Any]) -> list[Row]:
        return await (self._outbox or self._db).fetchall(sql, params)

    @property
    def write_failure(self) -> str | None:
        """Why the last write failed, None when it went through (a full disk stops writes, not reads)."""
        return self._write_failure

    @classmethod
    async def open(cls, path: Path, *, readonly: bool = False) -> Store:
        """Open the store at `path`; create it only when no file is there (never for `readonly`).

        Raises StoreError when the file cannot be alertd's store or cannot be used (a person must act),
        StoreUnavailable when it cannot be opened just now (full disk, I/O error, locked)."""
        # Blocking file calls are fine here: once, at start, before anything else runs. Whether the store
        # is new is decided before SQLite touches the path: SQLite creates a missing file and takes an
        # empty one for a new database, so an emptied store would start again at incident 1 and old SMS
        # codes (#17) would point at new incidents.
        if not _store_file_there(path, readonly=readonly):
            if readonly:
                raise StoreError(f"{path}: no store here (has the daemon ever run with this config?)")
            # Two first starts at once (the daemon and `alertd users add`, or several of those) would build
            # over each other's draft: one builds, the others wait and open what it built. The lock is the
            # folder's own (flock on its descriptor): no lock file is left beside the store.
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                lock = os.open(path.parent, os.O_RDONLY)
            except OSError as err:
                raise _os_refusal(path, err) from err
            try:
                await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
                if not _store_file_there(path, readonly=False):
                    await cls._create(path)
            finally:
                os.close(lock)  # releases the lock
        return await cls._connect(path, readonly=readonly, new=False)

    @classmethod
    async def open_postgres(
        cls, url: str, *, cache: Path, readonly: bool = False, instance: str = "", fence: Fence | None = None
    ) -> Store:
        """The store in the PostgreSQL at `url`, its schema brought up to date (made on first use).

        `fence` begins every write transaction of an active instance (alertd.lease_table): a deposed
        instance's commit or claim fails there. Raises StoreUnavailable when the database cannot be
        reached, StoreError when it holds something alertd cannot use."""
        from alertd.postgres_thread import PostgresThread, safe_url

        name = safe_url(url)
        role = f"alertd {instance}".strip()
        db = await PostgresThread.connect(url, name=role, readonly=readonly, fence=fence)
        store = cls(db, cache, name=name, instance=instance)
        try:
            version = await db.version()
            _check_postgres(name, version, await db.tables(), readonly=readonly)
            if readonly:
                return store
            await db.migrate(MIGRATIONS, lambda n: _LOGGER.info("Migrating store %s to schema version %d", name, n))
            store._outbox = await PostgresThread.connect(url, name=f"{role} outbox", fence=fence)
        except BaseException:
            await store.close()
            raise
        return store

    @classmethod
    async def _connect(cls, path: Path, *, readonly: bool, new: bool) -> Store:
        db = await SqliteThread.connect(path)
        store = cls(db, path)
        try:
            await store._prepare(db, readonly=readonly, new=new)
            if not readonly:
                store._outbox = outbox = await SqliteThread.connect(path)
                await outbox.execute("PRAGMA busy_timeout = 5000")
                await outbox.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.DatabaseError as err:
            await store.close()
            raise _refusal(path, err, readonly=readonly) from err
        except BaseException:
            await store.close()
            raise
        return store

    @classmethod
    async def _create(cls, path: Path) -> None:
        """Build a new store beside `path` and move it into place whole, so that a first start cut short
        leaves either no store or a complete one, never a file the next start must refuse."""
        draft = path.with_name(path.name + ".new")
        drafts = (draft, *(draft.with_name(draft.name + suffix) for suffix in ("-wal", "-shm", "-journal")))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            for leftover in drafts:
                leftover.unlink(missing_ok=True)  # an earlier first start that was cut short
            store = await cls._connect(draft, readonly=False, new=True)
            await store.close()  # the last connection checkpoints the WAL into the file and removes it
            draft.replace(path)
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)  # the rename itself survives a power cut
            finally:
                os.close(directory)
        except BaseException as err:
            for leftover in drafts:  # a full disk gets its space back
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)
            if isinstance(err, OSError):
                raise _os_refusal(path, err) from err
            raise
        _LOGGER.warning(
            "No store at %s: created a new, empty one (incident numbers start at 1); expected on a first start only",
            path,
        )

    async def _prepare(self, db: SqliteThread, *, readonly: bool, new: bool) -> None:
        await db.execute("PRAGMA busy_timeout = 5000")
        if readonly:
            await self._db.execute("PRAGMA query_only = ON")
            await self._check_ours(await self._version())
            return
        version = await self._version()
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path}: schema version {version} is newer than this alertd knows")
        if not new:
            await self._check_ours(version)  # before anything writes: a file that is not ours stays as it was
        rows = [r[0] for r in await self._db.fetchall("PRAGMA integrity_check")]
        if rows != ["ok"]:
            raise StoreError(f"{self.path}: integrity check failed: {'; '.join(rows[:5])}; {_RESTORE}")
        await self._db.execute("PRAGMA journal_mode = WAL")
        # FULL: the WAL is fsynced at every commit, so a power cut cannot lose a committed alarm.
        await self._db.execute("PRAGMA synchronous = FULL")
        await self._db.execute("PRAGMA foreign_keys = ON")
        for number in range(version, len(MIGRATIONS)):
            _LOGGER.log(
                logging.DEBUG if new else logging.INFO,
                "Migrating store %s to schema version %d",
                self.path,
                number + 1,
            )
            # The file's SQL on lines of its own: a last line that is a comment must not swallow the COMMIT.
            await db.executescript(f"BEGIN;\n{MIGRATIONS[number]}\n;\nPRAGMA user_version = {number + 1}; COMMIT;")

    async def _version(self) -> int:
        row = await self._db.fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

    async def _check_ours(self, version: int) -> None:
        """An existing file must be an alertd store: version 0 is what a database nobody migrated looks
        like (another program's, or an empty one), and a version without our tables is another program's."""
        tables = {str(r[0]) for r in await self._db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [name for name in _OWN_TABLES if name not in tables]
        if version == 0 or missing:
            lacking = f", no {missing[0]} table" if missing else ""
            raise StoreError(
                f"{self.path}: an SQLite database, but not an alertd store (schema version {version}{lacking}); "
                f"check [store] path in the settings, or {_START_AGAIN}"
            )

    async def close(self) -> None:
        if self._outbox is not None:
            await self._outbox.close()
        await self._db.close()  # the last connection checkpoints the WAL into the file

    async def transaction(self, fn: Callable[[Connection], T]) -> T:
        """fn in one write transaction on the main connection, for the store's other keepers (the console's
        accounts, alertd.accounts): a full disk is StoreFull, as for the engine's commits."""
        return await self._write(fn)

    async def query(self, fn: Callable[[Connection], T]) -> T:
        """fn on the main connection, reading only."""
        return await self._db.run(fn)

    async def ping(self) -> None:
        await self._db.fetchone("SELECT 1")

    # --- the engine's side -------------------------------------------------------------------

    async def commit(
        self, batch: Batch, claims: Mapping[Channel, Claim] | None = None
    ) -> dict[Channel, list[OutboxRow]]:
        """The batch in one transaction, fsynced (synchronous=FULL), in one trip to the store's thread.

        `claims`: for a channel of the batch's notifications, up to `limit` of its due rows (the new ones
        among them) are claimed for `carrier` in the same transaction and returned, so the engine can hand
        them to their outbox worker at once, without another transaction and another trip first."""

        def commit(db: Connection) -> dict[Channel, list[OutboxRow]]:
            _commit(db, batch, self.instance)
            channels = {n.channel for n in batch.notifications}
            return {
                channel: [_outbox_from_row(r) for r in _claim_due(db, channel, batch.now, claim.limit, claim.carrier)]
                for channel, claim in (claims or {}).items()
                if channel in channels and claim.limit > 0
            }

        return await self._write(commit)

    async def inbound_seen_many(self, message_ids: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(message_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), _LOOKUP_CHUNK):
            chunk = wanted[start : start + _LOOKUP_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            found.update(
                str(r[0])
                for r in await self._db.fetchall(f"SELECT id FROM inbound_messages WHERE id IN ({marks})", chunk)
            )
        return found

    async def inbound_seen(self, message_id: str) -> bool:
        return await self._db.fetchone("SELECT 1 FROM inbound_messages WHERE id = ?", (message_id,)) is not None

    async def in_use_since(self, now: float) -> float | None:
        """When the store was first used by the daemon; None (and from now on `now`) on its first start.
        A digest is never caught up for a time before it."""
        since = await self.meta(IN_USE_SINCE_KEY)
        if since is not None:
            return float(since)
        _LOGGER.info("First start with store %s", self.path)
        await self.set_meta(IN_USE_SINCE_KEY, repr(now))
        return None

    async def meta(self, key: str) -> str | None:
        row = await self._db.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    async def metas(self, prefix: str) -> dict[str, str]:
        """Every meta value whose key starts with prefix, by the rest of the key."""
        rows = await self._db.fetchall(
            # substr, not a range: PostgreSQL's collation may not order "\uffff" after every key
            "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ?",
            (len(prefix), prefix),
        )
        return {str(r[0])[len(prefix) :]: str(r[1]) for r in rows}

    async def set_meta(self, key: str, value: str) -> None:
        await self._write(
            lambda db: db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            ).close()
        )

    async def load_active_incidents(self) -> list[Incident]:
        rows = await self._db.fetchall(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE {_ACTIVE} ORDER BY id")
        return [_incident_from_row(r) for r in rows]

    async def board_counts(self, ids: Sequence[int]) -> dict[int, tuple[int, int, int]]:
        """Per incident: people texted (taken by a carrier), texts delivered, people who answered: two queries
        for a whole board, not two per row."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))

        def counts(db: Connection) -> dict[int, tuple[int, int, int]]:
            texts = db.execute(
                "SELECT incident_id, count(DISTINCT recipient), "
                f"sum({_DELIVERED}) FROM notifications "
                f"WHERE incident_id IN ({marks}) AND channel = 'sms' AND status = 'sent' GROUP BY incident_id",
                ids,
            ).fetchall()
            answers = db.execute(
                "SELECT incident_id, count(DISTINCT actor) FROM timeline "
                f"WHERE incident_id IN ({marks}) AND event IN ('acknowledged', 'on_scene', 'responded') "
                "AND actor != '' GROUP BY incident_id",
                ids,
            ).fetchall()
            told = {int(r[0]): (int(r[1]), int(r[2] or 0)) for r in texts}
            answered = {int(r[0]): int(r[1]) for r in answers}
            return {i: (*told.get(i, (0, 0)), answered.get(i, 0)) for i in ids}

        return await self._db.run(counts)

    async def incidents_between(self, start: float, end: float) -> list[Incident]:
        """Incidents opened in [start, end), for the monthly report."""
        rows = await self._db.fetchall(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE opened_at >= ? AND opened_at < ? ORDER BY id",
            (start, end),
        )
        return [_incident_from_row(r) for r in rows]

    async def texts_between(self, start: float, end: float) -> dict[int, tuple[int, int]]:
        """Per incident opened in [start, end): texts the carrier took, and of those, delivered."""
        rows = await self._db.fetchall(
            f"SELECT n.incident_id, count(*), sum({_DELIVERED}) FROM notifications n "
            "JOIN incidents i ON i.id = n.incident_id "
            "WHERE i.opened_at >= ? AND i.opened_at < ? AND n.channel = 'sms' AND n.status = 'sent' "
            "GROUP BY n.incident_id",
            (start, end),
        )
        return {int(r[0]): (int(r[1]), int(r[2] or 0)) for r in rows}

    async def awaiting_evaluation(self, since: float) -> list[Incident]:
        """Real alarms resolved since `since` whose household has not rated the response yet (评单)."""
        rows = await self._db.fetchall(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE state = 'resolved' AND outcome = 'real' "
            "AND satisfaction IS NULL AND maintenance IS NULL AND silent = 0 AND resolved_at >= ? ORDER BY id",
            (since,),
        )
        return [_incident_from_row(r) for r in rows]

    async def max_incident_id(self) -> int:
        row = await self._db.fetchone("SELECT coalesce(max(id), 0) FROM incidents")
        return int(row[0]) if row else 0

    async def recent_alarms(self, since: float) -> dict[tuple[str, int], float]:
        """Every (device, seq) handled since then, with when: the engine keeps them in memory."""
        rows = await self._db.fetchall("SELECT device_id, seq, at FROM seen_alarms WHERE at >= ?", (since,))
        return {(str(r[0]), int(r[1])): float(r[2]) for r in rows}

    async def seen_alarm(self, device_id: str, seq: int, since: float) -> bool:
        return (
            await self._db.fetchone(
                "SELECT 1 FROM seen_alarms WHERE device_id = ? AND seq = ? AND at >= ?", (device_id, seq, since)
            )
            is not None
        )

    async def prune(self, before: float) -> None:
        """Forget deduplication and webhook tokens older than their windows."""

        def prune(db: Connection) -> None:
            _apply_early_deliveries(db)
            db.execute("DELETE FROM seen_alarms WHERE at < ?", (before,))
            db.execute("DELETE FROM webhook_tokens WHERE at < ?", (before,))
            db.execute("DELETE FROM early_deliveries WHERE at < ?", (before,))

        await self._write(prune)

    async def devices(self) -> dict[str, DeviceRecord]:
        return {r[0]: _device_from_row(r) for r in await self._db.fetchall(f"SELECT {_DEVICE_COLUMNS} FROM devices")}

    # --- the outbox workers' side ----------------------------------------------------------------

    async def due(self, channel: Channel, now: float, limit: int) -> list[OutboxRow]:
        return [_outbox_from_row(r) for r in await self._outbox_read(_DUE, (channel.value, now, limit))]

    async def next_due_at(self, channel: Channel) -> float | None:
        rows = list(
            await self._outbox_read(
                "SELECT min(next_attempt_at) FROM notifications WHERE channel = ? AND status = 'pending'",
                (channel.value,),
            )
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def in_sending(self, channel: Channel) -> list[OutboxRow]:
        """Rows a crash left between 'about to send' and 'recorded the outcome'."""
        rows = await self._outbox_read(
            f"SELECT {_OUTBOX_COLUMNS} FROM notifications WHERE channel = ? AND status = 'sending' ORDER BY id",
            (channel.value,),
        )
        return [_outbox_from_row(r) for r in rows]

    async def claim(self, ids: Iterable[int], carrier: str, now: float) -> None:
        """Mark rows as being sent: a crash from here on is reconciled before any resend."""
        await self._write(lambda db: _claim(db, list(ids), carrier, now), outbox=True)

    async def claim_due(self, channel: Channel, now: float, limit: int, carrier: str) -> list[OutboxRow]:
        """The rows due now (as they were), claimed for `carrier` in the same transaction: one trip."""

        rows = await self._write(lambda db: _claim_due(db, channel, now, limit, carrier), outbox=True)
        return [_outbox_from_row(r) for r in rows]

    async def record_results(self, results: Iterable[SendResult], now: float) -> None:
        params = [
            (r.status.value, r.carrier, r.provider_id, r.error, r.next_attempt_at or now, now, r.id) for r in results
        ]
        await self._write(lambda db: _record_results(db, params), outbox=True)

    # --- reports -----------------------------------------------------------------------------------

    async def incident(self, incident_id: int) -> Incident | None:
        row = await self._db.fetchone(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = ?", (incident_id,))
        return _incident_from_row(row) if row else None

    async def incidents(self, *, active_only: bool = False, limit: int = 200) -> list[Incident]:
        where = f"WHERE {_ACTIVE}" if active_only else ""
        return [
            _incident_from_row(r)
            for r in await self._db.fetchall(
                f"SELECT {_INCIDENT_COLUMNS} FROM incidents {where} ORDER BY id DESC LIMIT ?", (limit,)
            )
        ]

    async def timeline(self, incident_id: int) -> list[TimelineEntry]:
        return [
            TimelineEntry(*r)
            for r in await self._db.fetchall(
                "SELECT incident_id, at, event, actor, detail FROM timeline WHERE incident_id = ? ORDER BY id",
                (incident_id,),
            )
        ]

    async def notifications(self, incident_id: int | None = None) -> list[OutboxRow]:
        where, params = ("WHERE incident_id = ?", (incident_id,)) if incident_id is not None else ("", ())
        return [
            _outbox_from_row(r)
            for r in await self._db.fetchall(f"SELECT {_OUTBOX_COLUMNS} FROM notifications {where} ORDER BY id", params)
        ]

    async def notification(self, notification_id: int) -> OutboxRow | None:
        row = await self._db.fetchone(f"SELECT {_OUTBOX_COLUMNS} FROM notifications WHERE id = ?", (notification_id,))
        return _outbox_from_row(row) if row is not None else None

    async def awaiting_delivery(self, carrier: str, since: float, limit: int) -> list[OutboxRow]:
        """Texts a carrier took since then with no handset report yet (delivered or not), oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {_OUTBOX_COLUMNS} FROM notifications WHERE status = 'sent' AND channel = 'sms' "
            "AND carrier = ? AND provider_id IS NOT NULL AND updated_at >= ? "
            "AND (delivery IS NULL OR delivery IN ('queued', 'accepted', 'sending', 'sent')) "
            "ORDER BY updated_at LIMIT ?",
            (carrier, since, limit),
        )
        return [_outbox_from_row(r) for r in rows]

    async def holders(self, provider_ids: Sequence[str]) -> dict[str, int]:
        """Which outbox rows hold these provider ids (a carrier telling its own calls from another row's)."""
        if not provider_ids:
            return {}
        marks = ", ".join("?" for _ in provider_ids)
        rows = await self._db.fetchall(
            f"SELECT provider_id, id FROM notifications WHERE provider_id IN ({marks})", list(provider_ids)
        )
        return {str(r[0]): int(r[1]) for r in rows}

    async def outbox_counts(self) -> dict[tuple[str, str], int]:
        return {
            (r[0], r[1]): r[2]
            for r in await self._db.fetchall(
                "SELECT channel, status, count(*) FROM notifications GROUP BY channel, status"
            )
        }


def _commit(db: Connection, batch: Batch, instance: str) -> None:
    if batch.incidents:
        db.executemany(_UPSERT_INCIDENT, [(*_incident_params(i), instance) for i in batch.incidents.values()])
    if batch.timeline:
        db.executemany(
            "INSERT INTO timeline (incident_id, at, event, actor, detail) VALUES (?, ?, ?, ?, ?)",
            [(t.incident_id, t.at, t.event, t.actor, t.detail) for t in batch.timeline],
        )
    if batch.notifications:
        _insert_notifications(db, batch)
    if batch.seen:
        db.executemany(
            "INSERT INTO seen_alarms (device_id, seq, at) VALUES (?, ?, ?) "
            "ON CONFLICT (device_id, seq) DO UPDATE SET at = excluded.at",
            [(d, s, batch.now) for d, s in batch.seen],
        )
    for update in batch.devices:
        armed = update.armed is not None
        db.execute(
            "INSERT INTO devices (id, online, battery, last_seen, last_test, battery_low, tampered, state, "
            "ac_loss, comm_trouble, armed, armed_user, armed_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET online = coalesce(excluded.online, online), "
            "battery = coalesce(excluded.battery, battery), last_seen = excluded.last_seen, "
            "last_test = coalesce(excluded.last_test, last_test), "
            "battery_low = coalesce(excluded.battery_low, battery_low), "
            "tampered = coalesce(excluded.tampered, tampered), state = coalesce(excluded.state, state), "
            "ac_loss = coalesce(excluded.ac_loss, ac_loss), "
            "comm_trouble = coalesce(excluded.comm_trouble, comm_trouble), "
            # An arming replaces who and when too: a user unknown now must not keep the last one's number.
            "armed_user = CASE WHEN excluded.armed IS NULL THEN armed_user ELSE excluded.armed_user END, "
            "armed_at = CASE WHEN excluded.armed IS NULL THEN armed_at ELSE excluded.armed_at END, "
            "armed = coalesce(excluded.armed, armed)",
            (
                update.device_id,
                _flag(update.online),
                update.battery,
                update.at,
                update.at if update.test else None,
                _flag(update.battery_low),
                _flag(update.tampered),
                update.state,
                _flag(update.ac_loss),
                _flag(update.comm_trouble),
                None if update.armed is None else update.armed.value,
                update.armed_user if armed else None,
                update.at if armed else None,
            ),
        )
    for report in batch.deliveries:
        _record_delivery(db, report, batch.now)
    if batch.deliveries:
        _apply_early_deliveries(db)
    if batch.inbound:
        db.executemany(
            "INSERT INTO inbound_messages (id, first_seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(message_id, batch.now) for message_id in batch.inbound],
        )
    if batch.meta:
        db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            list(batch.meta.items()),
        )


def _record_delivery(db: Connection, report: DeliveryReport, now: float) -> None:
    if report.token is not None:
        cursor = db.execute(
            "INSERT INTO webhook_tokens (token, at) VALUES (?, ?) ON CONFLICT DO NOTHING", (report.token, now)
        )
        if cursor.rowcount == 0:
            return  # a retried callback we already recorded
    provider_id, status, error = report.provider_id, report.status, report.error_code
    row = db.execute(
        # Newest first: a modem's message reference wraps at 256, so old rows may share it.
        "SELECT id, delivery FROM notifications WHERE provider_id = ? ORDER BY id DESC LIMIT 1",
        (provider_id,),
    ).fetchone()
    detail = f"{status} ({error})" if error else status
    if row is None:
        # The carrier may call back before the outbox has recorded its answer (the provider id): keep the
        # report until it is (record_results applies it), the most advanced one if several come.
        early = db.execute("SELECT delivery FROM early_deliveries WHERE provider_id = ?", (provider_id,)).fetchone()
        if early is None or _outranks(status, early[0]):
            _LOGGER.info("Delivery report for a message not recorded yet %s (%s): kept for it", provider_id, status)
            db.execute(
                "INSERT INTO early_deliveries (provider_id, delivery, at) VALUES (?, ?, ?) "
                "ON CONFLICT (provider_id) DO UPDATE SET delivery = excluded.delivery, at = excluded.at",
                (provider_id, detail, now),
            )
        return
    if _outranks(status, row[1]):
        db.execute("UPDATE notifications SET delivery = ?, updated_at = ? WHERE id = ?", (detail, now, row[0]))


def _apply_early_deliveries(db: Connection) -> None:
    """Kept reports whose send has been recorded since, applied. record_results applies them as it records
    the provider id; but on PostgreSQL it runs beside the engine's commit, and a report kept by one while
    the other records the id is seen by neither: this catches it, at the next commit of any report (and at
    every prune). On SQLite the two run one after the other and this finds nothing."""
    # Driven from early_deliveries (a handful of rows, nearly always none) through the provider-id index: a
    # commit of delivery reports must not scan the notifications.
    db.execute(
        "UPDATE notifications SET delivery = (SELECT delivery FROM early_deliveries e "
        "WHERE e.provider_id = notifications.provider_id) "
        "WHERE provider_id IN (SELECT provider_id FROM early_deliveries) AND delivery IS NULL"
    ).close()
    db.execute(
        "DELETE FROM early_deliveries WHERE EXISTS "
        "(SELECT 1 FROM notifications n WHERE n.provider_id = early_deliveries.provider_id)"
    ).close()


def _insert_notifications(db: Connection, batch: Batch) -> None:
    # The unique key makes a replanned notification a no-op rather than a second message. A storm's summary
    # is rewritten while it waits (each alert merged into it after the first), never once it is being sent.
    # An alert merged in a storm is kept, marked, never sent: the summary named in its error carries it.
    rows = [
        (n.key, n.incident_id, n.step, n.channel.value, n.purpose.value, n.recipient, n.address, n.body,
         batch.now, batch.now if n.not_before is None else n.not_before, batch.now, n.template,
         json.dumps(dict(n.params), ensure_ascii=False) if n.params else "{}",
         "merged" if n.merged_into else "pending", f"in summary {n.merged_into}" if n.merged_into else None)
        for n in batch.notifications
    ]  # fmt: skip
    insert = (
        "INSERT INTO notifications (key, incident_id, step, channel, purpose, recipient, address, body, created_at, "
        "next_attempt_at, updated_at, template, params, status, error) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    plain = [row for row, n in zip(rows, batch.notifications, strict=True) if not n.rewrite]
    rewritten = [row for row, n in zip(rows, batch.notifications, strict=True) if n.rewrite]
    if plain:
        db.executemany(insert + " ON CONFLICT (key) DO NOTHING", plain)
    if rewritten:
        db.executemany(
            insert + " ON CONFLICT (key) DO UPDATE SET body = excluded.body, params = excluded.params, "
            "updated_at = excluded.updated_at WHERE notifications.status = 'pending'",
            rewritten,
        )


def _outranks(status: str, recorded: str | None) -> bool:
    """Callbacks can arrive out of order: never let "sent" overwrite "delivered"."""
    # "undelivered (30003)" ranks as "undelivered", "key 1" as "key"
    before, now = (recorded or "").split(" ", 1)[0], status.split(" ", 1)[0]
    return _DELIVERY_RANK.get(now, 0) >= _DELIVERY_RANK.get(before, -1)


def _record_results(db: Connection, params: list[tuple[Any, ...]]) -> None:
    db.executemany(
        "UPDATE notifications SET status = ?, carrier = coalesce(?, carrier), provider_id = coalesce(?, provider_id), "
        "error = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?",
        params,
    ).close()
    for provider_id in {p[2] for p in params if p[2] is not None}:
        early = db.execute(
            "DELETE FROM early_deliveries WHERE provider_id = ? RETURNING delivery", (provider_id,)
        ).fetchone()
        if early is not None:
            db.execute(
                "UPDATE notifications SET delivery = ? WHERE provider_id = ? AND delivery IS NULL",
                (early[0], provider_id),
            )


def _claim_due(db: Connection, channel: Channel, now: float, limit: int, carrier: str) -> list[Row]:
    rows: list[Row] = db.execute(_DUE, (channel.value, now, limit)).fetchall()
    claimed = _claim(db, [r[0] for r in rows], carrier, now)
    return rows if len(claimed) == len(rows) else [r for r in rows if r[0] in claimed]


def _claim(db: Connection, ids: list[int], carrier: str, now: float) -> set[int]:
    """Claim the rows among `ids` that are still pending; the ids claimed. On PostgreSQL the engine's commit
    and an outbox worker claim at the same moment on two connections, and both may have read a row as
    pending: the second UPDATE waits for the first to commit, then finds the row 'sending' and leaves it,
    so each row is claimed, and sent, once. (SQLite runs the two one after the other.)"""
    if not ids:
        return set()
    marks = ", ".join("?" for _ in ids)
    claimed = db.execute(
        "UPDATE notifications SET status = 'sending', attempts = attempts + 1, carrier = ?, updated_at = ? "
        f"WHERE id IN ({marks}) AND status = 'pending' RETURNING id",
        (carrier, now, *ids),
    ).fetchall()
    return {int(r[0]) for r in claimed}


@dataclass(frozen=True, slots=True)
class Claim:
    """Rows an outbox worker can take from a commit: how many at most, claimed in whose name."""

    limit: int
    carrier: str


@dataclass(frozen=True, slots=True)
class SendResult:
    id: int
    status: Status
    carrier: str | None = None
    provider_id: str | None = None
    error: str | None = None
    next_attempt_at: float | None = None


async def open_store(
    settings: StoreSettings, *, readonly: bool = False, instance: str = "", fence: Fence | None = None
) -> Store:
    """The store the settings name: the shared PostgreSQL at [store] url, else the SQLite file at path."""
    if settings.url:
        return await Store.open_postgres(settings.url, cache=settings.path, readonly=readonly, instance=instance,
                                         fence=fence)  # fmt: skip
    return await Store.open(settings.path, readonly=readonly)


@asynccontextmanager
async def reading(where: StoreSettings | Path) -> AsyncIterator[Store]:
    """The store, read-only, for a command that reports (`where`: the settings, or an SQLite file). A
    damaged page met while reading is refused like one met at open (a read-only open does not read every
    page): one StoreError naming the file."""
    store = await (Store.open(where, readonly=True) if isinstance(where, Path) else open_store(where, readonly=True))
    try:
        yield store
    except sqlite3.DatabaseError as err:
        raise _refusal(store.path, err, readonly=True) from err
    finally:
        await store.close()
