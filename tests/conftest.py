"""Shared fixtures: every test gets its own broker prefix, store file and Twilio-shaped server."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from argon2 import PasswordHasher

from alertd.accounts import Accounts
from alertd.core.access import Role
from alertd.store import Store
from tests.console_client import PASSWORD
from tests.fakes.twilio_server import TwilioServer
from tests.harness import ACCOUNT_SID, AUTH_TOKEN, Village, forget_session, write_village
from tests.pg import StoreAt, fresh_database, temporary_postgres


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioServer]:
    async with TwilioServer(ACCOUNT_SID, AUTH_TOKEN) as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_url() -> AsyncIterator[str]:
    """One throwaway PostgreSQL for the whole session, started by the first test that asks for it (tests/pg.py).
    In the system temporary directory, not tmp_path: as root the cluster runs as `postgres`, which cannot reach
    pytest's directories under /tmp/pytest-of-root (mode 0700)."""
    async with temporary_postgres(Path(tempfile.gettempdir())) as url:
        yield url


@pytest.fixture
def store_at(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreAt]:
    """Where the test's store lives: an SQLite file, or (parametrized "postgres") a fresh database on the
    session's throwaway cluster. Synchronous: it asks for the session's cluster outside any event loop."""
    path = tmp_path / "state" / "alertd.db"
    if getattr(request, "param", "sqlite") == "sqlite":
        yield StoreAt(path)
        return
    with fresh_database(request.getfixturevalue("postgres_url")) as url:
        yield StoreAt(path, url)


@pytest.fixture(autouse=True)
async def no_lingering_tasks() -> AsyncIterator[None]:
    """A test that leaves tasks running has leaked a loop of ours: fail it."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    assert not leftover, f"lingering tasks: {leftover}"


@pytest.fixture
async def village(tmp_path: Path) -> AsyncIterator[Village]:
    """Two groups, and console accounts of every kind (tests/console_client.py)."""
    village = write_village(tmp_path, groups=2)
    # Made in this process with argon2 at its lowest cost (a login verifies with the parameters stored in the
    # hash): four `alertd users add` at full cost, for every console test, were minutes of the suite.
    # test_users_cli_refuses_what_cannot_be_an_account and the browser tests run the real command.
    store = await Store.open(village.store_path)
    try:
        accounts = Accounts(store, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        users = (("老周", Role.DUTY, ()), ("陈国庆", Role.LEADER, ("g1",)), ("观察员", Role.VIEWER, ()),
                 ("管理员", Role.ADMIN, ()))  # fmt: skip
        for name, role, groups in users:
            await accounts.add(name, role, groups, PASSWORD, 0.0)
    finally:
        await store.close()
    try:
        yield village
    finally:
        await forget_session(village)
