"""The duty-room console's accounts: who may use it, in which role and over which groups; their passwords
(argon2id), their sessions and the audit of what they did outside incidents (an action on an incident goes
through the engine and is in that incident's timeline, like any other).

Kept in the store, written by the console and by `alertd users`. A session is a random token in an HttpOnly
cookie; the store keeps only its SHA-256, so a copy of the database opens no session. Sessions end after
`idle_timeout_s` without a request, when the user logs out, is disabled or gets a new password.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import sqlite3
import unicodedata
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from alertd.core.access import SCOPED, Role, User
from alertd.database import Connection
from alertd.errors import AlertdError
from alertd.store import Store

MAX_NAME = 64
MIN_PASSWORD = 8
TOUCH_EVERY_S = 60.0  # a session's last_seen is written at most this often: not one write per request
# Login throttling: failures remembered this long; past the limit, attempts are refused unchecked.
THROTTLE_WINDOW_S = 900.0
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_ADDRESS = 20


class AccountError(AlertdError):
    """A request about accounts that cannot be done as asked (a bad name, an unknown user)."""


@dataclass(frozen=True, slots=True)
class Session:
    user: User
    csrf: str  # the token every state-changing request of this session must carry


def name_problem(name: str) -> str | None:
    """Why `name` cannot be an account's (or an operator's) name, or None. It ends up in timelines."""
    if not name:
        return "required"
    if len(name) > MAX_NAME:
        return f"at most {MAX_NAME} characters"
    if any(unicodedata.category(c).startswith(("C", "Z")) and c != " " for c in name) or name != name.strip():
        return "no control characters, line breaks or surrounding spaces"  # a line break would forge a line
    folded = unicodedata.normalize("NFKC", name).casefold()  # NFKC: "（ｏｓ：" is "(os:" too
    if "(os:" in folded or "(web:" in folded:
        return "'(os:' and '(web:' are added by alertd, not given"
    return None


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"at least {MIN_PASSWORD} characters"
    if len(password) > 1024:
        return "at most 1024 characters"
    return None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Throttle:
    """Failed logins per account and per address within the window; pure (time is an argument)."""

    window_s: float = THROTTLE_WINDOW_S
    per_account: int = MAX_FAILURES_PER_ACCOUNT
    per_address: int = MAX_FAILURES_PER_ADDRESS
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def blocked(self, account: str, address: str, now: float) -> float | None:
        """Seconds until another attempt is taken, or None if it may be tried now."""
        waits = [
            times[0] + self.window_s - now
            for key, limit in ((f"u:{account}", self.per_account), (f"a:{address}", self.per_address))
            if len(times := self._recent(key, now)) >= limit
        ]
        return max(waits) if waits else None

    def failed(self, account: str, address: str, now: float) -> None:
        for key in (f"u:{account}", f"a:{address}"):
            self._recent(key, now).append(now)
        if len(self._failures) > 10_000:  # a sweep over many addresses: forget the ones gone quiet
            for key in [k for k, v in self._failures.items() if not v or v[-1] <= now - self.window_s]:
                del self._failures[key]

    def succeeded(self, account: str) -> None:
        self._failures.pop(f"u:{account}", None)


class Accounts:
    def __init__(self, store: Store, *, idle_timeout_s: float = 12 * 3600.0, hasher: PasswordHasher | None = None):
        self.store = store
        self.idle_timeout_s = idle_timeout_s
        self.hasher = hasher or PasswordHasher()
        self.throttle = Throttle()
        # Compared against when the account does not exist, so a wrong name costs what a wrong password
        # does; made at the first such login, not at start-up (a hash costs tens of milliseconds).
        self._decoy: str | None = None

    # --- the accounts ---------------------------------------------------------------------------------

    async def add(self, name: str, role: Role, groups: Iterable[str], password: str, now: float) -> User:
        if problem := name_problem(name):
            raise AccountError(f"user name {name!r}: {problem}")
        if problem := password_problem(password):
            raise AccountError(f"password for {name}: {problem}")
        covered = sorted(set(groups))
        if role in SCOPED and not covered:
            raise AccountError(f"user {name}: a {role} covers at least one group (--groups g1,g2)")
        if role not in SCOPED and covered:
            raise AccountError(f"user {name}: a {role} sees every group; --groups is for grid and leader")
        hashed = await asyncio.to_thread(self.hasher.hash, password)

        def add(db: Connection) -> int:
            try:
                # Asked first: PostgreSQL's unique-violation error is its driver's own (not imported here).
                if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone() is not None:
                    raise AccountError(f"user {name} exists already")
                row = db.execute(
                    "INSERT INTO users (name, role, groups, password, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                    (name, role.value, json.dumps(covered), hashed, now, now),
                ).fetchone()
            except sqlite3.IntegrityError as err:
                raise AccountError(f"user {name} exists already") from err
            return int(row[0])

        return User(await self.store.transaction(add), name, role, frozenset(covered))

    async def users(self) -> list[User]:
        rows = await self.store.query(
            lambda db: db.execute("SELECT id, name, role, groups, disabled FROM users ORDER BY name").fetchall()
        )
        return [_user(row) for row in rows]

    async def user(self, name: str) -> User:
        for user in await self.users():
            if user.name == name:
                return user
        raise AccountError(f"no user {name}")

    async def disable(self, name: str, now: float) -> None:
        user = await self.user(name)

        def disable(db: Connection) -> None:
            db.execute("UPDATE users SET disabled = 1, updated_at = ? WHERE id = ?", (now, user.id))
            db.execute("DELETE FROM sessions WHERE user_id = ?", (user.id,))
            db.execute("DELETE FROM api_tokens WHERE user_id = ?", (user.id,))

        await self.store.transaction(disable)

    async def set_password(self, name: str, password: str, now: float) -> None:
        if problem := password_problem(password):
            raise AccountError(f"password for {name}: {problem}")
        user = await self.user(name)
        hashed = await asyncio.to_thread(self.hasher.hash, password)

        def set_password(db: Connection) -> None:
            db.execute("UPDATE users SET password = ?, updated_at = ? WHERE id = ?", (hashed, now, user.id))
            db.execute("DELETE FROM sessions WHERE user_id = ?", (user.id,))  # every other browser logs in again

        await self.store.transaction(set_password)

    # --- logging in and out ---------------------------------------------------------------------------

    async def login(self, name: str, password: str, address: str, now: float) -> tuple[str, Session] | str:
        """(the session's cookie token, the session), or why not (for the page; it never says which of name
        and password was wrong)."""
        if (wait := self.throttle.blocked(name, address, now)) is not None:
            return f"too many failed logins; try again in {max(1, round(wait / 60))} min"
        row = await self.store.query(
            lambda db: db.execute(
                "SELECT id, name, role, groups, disabled, password FROM users WHERE name = ?", (name,)
            ).fetchone()
        )
        if row is None and self._decoy is None:
            self._decoy = await asyncio.to_thread(self.hasher.hash, secrets.token_urlsafe(16))
        hashed = str(row[5]) if row is not None else str(self._decoy)
        try:
            # argon2 costs tens of milliseconds by design: not on the event loop the alarms go through.
            await asyncio.to_thread(self.hasher.verify, hashed, password)
            verified = row is not None
        except (VerificationError, InvalidHashError):
            verified = False
        if not verified or row is None:
            self.throttle.failed(name, address, now)
            await self.audit(name, address, "login failed", "", now)
            return "wrong name or password"
        if row[4]:
            await self.audit(name, address, "login refused", "account disabled", now)
            return "this account is disabled"
        self.throttle.succeeded(name)
        user = _user(row[:5])
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        rehash = self.hasher.check_needs_rehash(hashed)
        new_hash = await asyncio.to_thread(self.hasher.hash, password) if rehash else None

        def open_session(db: Connection) -> None:
            db.execute(
                "INSERT INTO sessions (token_hash, user_id, csrf, address, created_at, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_token_hash(token), user.id, csrf, address, now, now),
            )
            db.execute("DELETE FROM sessions WHERE last_seen < ?", (now - self.idle_timeout_s,))
            if new_hash is not None:
                db.execute("UPDATE users SET password = ? WHERE id = ?", (new_hash, user.id))
            _audit(db, user.name, address, "login", "", now)

        await self.store.transaction(open_session)
        return token, Session(user, csrf)

    async def session(self, token: str, now: float) -> Session | None:
        """The live session this cookie token opens, or None (unknown, idle too long, user disabled)."""
        if not token or len(token) > 128:
            return None
        digest = _token_hash(token)
        row = await self._by_token("sessions", "t.csrf, t.last_seen", digest)
        if row is None or row[4] or row[6] < now - self.idle_timeout_s:
            return None
        if now - row[6] > TOUCH_EVERY_S:
            await self.store.transaction(
                lambda db: db.execute("UPDATE sessions SET last_seen = ? WHERE token_hash = ?", (now, digest)).close()
            )
        return Session(_user(row[:5]), row[5])

    async def _by_token(self, table: str, extra: str, digest: str) -> tuple[Any, ...] | None:
        """The user's columns and `extra` of the row of `table` (sessions, api_tokens) with this token hash."""
        sql = (
            f"SELECT u.id, u.name, u.role, u.groups, u.disabled, {extra} "  # noqa: S608 (constants, not input)
            f"FROM {table} t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?"
        )
        row: tuple[Any, ...] | None = await self.store.query(lambda db: db.execute(sql, (digest,)).fetchone())
        return row

    async def logout(self, token: str, address: str, now: float) -> None:
        digest = _token_hash(token)

        def logout(db: Connection) -> None:
            row = db.execute(
                "SELECT u.name FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?", (digest,)
            ).fetchone()
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (digest,))
            if row is not None:
                _audit(db, row[0], address, "logout", "", now)

        await self.store.transaction(logout)

    # --- bearer tokens for the JSON API ------------------------------------------------------------------

    async def create_token(self, name: str, label: str, now: float) -> str:
        """A new token that acts as `name` (its role, its groups); shown once, kept hashed."""
        user = await self.user(name)
        token = "alertd_" + secrets.token_urlsafe(32)
        await self.store.transaction(
            lambda db: db.execute(
                "INSERT INTO api_tokens (token_hash, user_id, label, created_at) VALUES (?, ?, ?, ?)",
                (_token_hash(token), user.id, label, now),
            ).close()
        )
        return token

    async def revoke_tokens(self, name: str) -> int:
        user = await self.user(name)
        return await self.store.transaction(
            lambda db: db.execute("DELETE FROM api_tokens WHERE user_id = ?", (user.id,)).rowcount
        )

    async def bearer(self, token: str, now: float) -> User | None:
        """The user a bearer token acts as, or None (unknown, or its user disabled)."""
        if not token.startswith("alertd_") or len(token) > 128:
            return None
        digest = _token_hash(token)
        row = await self._by_token("api_tokens", "t.last_used", digest)
        if row is None or row[4]:
            return None
        if row[5] is None or now - row[5] > TOUCH_EVERY_S:
            await self.store.transaction(
                lambda db: db.execute("UPDATE api_tokens SET last_used = ? WHERE token_hash = ?", (now, digest)).close()
            )
        return _user(row[:5])

    async def audit(self, actor: str, address: str, action: str, detail: str, now: float) -> None:
        await self.store.transaction(lambda db: _audit(db, actor, address, action, detail, now))

    async def audit_log(self, limit: int = 200) -> list[tuple[float, str, str, str, str]]:
        rows = await self.store.query(
            lambda db: db.execute(
                "SELECT at, actor, address, action, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        )
        return [(float(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows]


def _audit(db: Connection, actor: str, address: str, action: str, detail: str, now: float) -> None:
    db.execute(
        "INSERT INTO audit (at, actor, address, action, detail) VALUES (?, ?, ?, ?, ?)",
        (now, actor, address, action, detail),
    ).close()


def _user(row: tuple[object, ...]) -> User:
    user_id, name, role, groups, disabled = row
    return User(int(str(user_id)), str(name), Role(str(role)), frozenset(json.loads(str(groups))), bool(disabled))
