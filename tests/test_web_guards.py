"""The HTTP side's guards that do not need a peer: operator actions from this machine only."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from alertd.web.app import _is_loopback
from tests.harness import forget_session, running_daemon, write_village


@pytest.mark.parametrize(
    ("remote", "allowed"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("192.0.2.7", False), ("2001:db8::1", False),
     (None, False), ("not-an-address", False)],
)  # fmt: skip
def test_operator_actions_only_from_loopback(remote: str | None, allowed: bool) -> None:
    assert _is_loopback(remote) is allowed


async def test_operator_actions_through_a_proxy_are_refused(tmp_path: Path) -> None:
    village = write_village(tmp_path)
    try:
        async with running_daemon(village), aiohttp.ClientSession() as session:
            url = f"{village.base_url}/api/incidents/1/ack"
            async with session.post(url, json={"by": "x"}, headers={"X-Forwarded-For": "203.0.113.9"}) as response:
                assert response.status == 403
            async with session.post(url, json={"by": "x"}) as response:
                assert response.status == 409  # allowed through, and there is no incident 1
    finally:
        await forget_session(village)
