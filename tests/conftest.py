"""Shared fixtures: every test gets its own broker prefix, store file and Twilio-shaped server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.console_client import add_user
from tests.fakes.twilio_server import TwilioServer
from tests.harness import ACCOUNT_SID, AUTH_TOKEN, Village, forget_session, write_village


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioServer]:
    async with TwilioServer(ACCOUNT_SID, AUTH_TOKEN) as server:
        yield server


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
    users = (("老周", "duty", ""), ("陈国庆", "leader", "g1"), ("观察员", "viewer", ""), ("管理员", "admin", ""))
    for name, role, groups in users:
        done = await asyncio.to_thread(add_user, village, name, role, groups)
        assert done.returncode == 0, done.stderr
    try:
        yield village
    finally:
        await forget_session(village)
