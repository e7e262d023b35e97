"""The TCP listener's guards: it takes webhooks, /healthz and /metrics, never an operator action.

TCP cannot tell which local user is calling, and any web page open in a browser on this machine can
post to it; operator actions are taken on the Unix socket only (tests/test_operator_socket.py).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from alertd.core.incidents import State
from alertd.store import Store
from tests.harness import Village, forget_session, running_daemon, terminals, write_village


async def _state_and_events(village: Village, incident_id: int) -> tuple[State, list[str]]:
    store = await Store.open(village.store_path, readonly=True)
    try:
        incident = await store.incident(incident_id)
        timeline = await store.timeline(incident_id)
    finally:
        await store.close()
    assert incident is not None
    return incident.state, [entry.event for entry in timeline]


async def test_operator_actions_over_tcp_are_refused_and_change_nothing(tmp_path: Path) -> None:
    village = write_village(tmp_path)
    try:
        async with running_daemon(village), terminals(village) as sims, aiohttp.ClientSession() as session:
            await sims.alarm("t1-2", "fire", seq=1)
            await sims.wait_until(lambda: len(sims.rings()) == 9)
            incident_id = sims.rings()[0].command.incident_id
            url = f"{village.base_url}/api/incidents/{incident_id}/ack"

            # What a web page can send without a CORS preflight: a "simple" text/plain POST (CSRF).
            page = {"Content-Type": "text/plain", "Origin": "http://evil.example"}
            async with session.post(url, data='{"by": "张三"}', headers=page) as response:
                assert response.status == 403
            # A proxy that says where the request came from only in X-Real-IP.
            async with session.post(url, json={"by": "张三"}, headers={"X-Real-IP": "203.0.113.9"}) as response:
                assert response.status == 403
            # Not even a well-formed request from this machine: TCP does not say who is asking.
            async with session.post(url, json={"by": "张三"}) as response:
                assert response.status == 403
                assert "Unix socket" in await response.text()

            async with session.get(f"{village.base_url}/healthz") as response:
                assert response.status == 200  # the listener itself still serves what it is for
            assert await _state_and_events(village, incident_id) == (State.OPEN, ["opened", "step 0"])
            assert sims.stops(incident_id) == []
    finally:
        await forget_session(village)
