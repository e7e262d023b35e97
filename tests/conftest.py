"""Shared fixtures: every test gets its own broker prefix, store file and Twilio-shaped server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.fakes.twilio_server import TwilioServer
from tests.harness import ACCOUNT_SID, AUTH_TOKEN


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
