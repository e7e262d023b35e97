"""The whole job on real parts: broker, SQLite file, Twilio-shaped server driven by the real client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from alertd.store import Status, Store
from tests.fakes.twilio_server import TwilioServer
from tests.harness import (
    LEADER,
    PATROL_PHONES,
    Village,
    forget_session,
    leader_phone,
    running_daemon,
    terminals,
    write_village,
)


async def _incident(village: Village, incident_id: int):  # type: ignore[no-untyped-def]
    store = await Store.open(village.store_path, readonly=True)
    try:
        return (
            await store.incident(incident_id),
            await store.timeline(incident_id),
            await store.notifications(incident_id),
        )
    finally:
        await store.close()


async def test_alarm_rings_neighbours_texts_leader_and_patrol_then_sms_ack_stops_everything(
    tmp_path: Path, twilio: TwilioServer
) -> None:
    village = write_village(tmp_path, twilio=twilio)
    try:
        async with running_daemon(village), terminals(village) as sims:
            await sims.alarm("t1-2", "fire", seq=1)
            await sims.wait_until(lambda: len(sims.rings()) == 9)
            rung = {c.device for c in sims.rings()}
            assert rung == {f"t1-{h}" for h in range(1, 11)} - {"t1-2"}
            ring = sims.rings()[0].command
            assert ring.kind == "fire"
            assert ring.household_id == "h1-2"
            assert ring.label == "2号户 1组"
            incident_id = ring.incident_id

            sms = await twilio.wait_for_messages(3)
            assert {m.to for m in sms} == {leader_phone(1), *PATROL_PHONES}
            assert all(len(m.body) <= 70 and "火警" in m.body and f"#{incident_id}" in m.body for m in sms)

            # A forged reply is refused and changes nothing.
            url = f"{village.base_url}/twilio/sms"
            assert await twilio.send_inbound_sms(url, leader_phone(1), "1", forge=True) == 403
            await asyncio.sleep(0.3)
            assert sims.stops() == []

            assert await twilio.send_inbound_sms(url, leader_phone(1), "1") == 200
            await sims.wait_until(lambda: len(sims.stops(incident_id)) == 9)
            assert {c.device for c in sims.stops(incident_id)} == rung
        incident, timeline, notes = await _incident(village, incident_id)
    finally:
        await forget_session(village)
    assert incident is not None
    assert incident.state == "acknowledged"
    assert incident.acknowledged_by == f"1组{LEADER}号户主"
    assert incident.acknowledged_at is not None
    assert incident.acknowledged_at >= incident.opened_at
    events = [t.event for t in timeline]
    assert events == ["opened", "step 0", "acknowledged"]
    assert "(sms)" in timeline[-1].actor
    # Escalation stopped: no step 1 row exists, every row of step 0, the stops and the notices of who
    # acknowledged (to the patrol: the leader acknowledged himself) went out.
    assert {n.step for n in notes} == {0, 1000, 1003}
    assert sorted(n.address for n in notes if n.step == 1003) == sorted(PATROL_PHONES)
    assert all(n.status == Status.SENT for n in notes)
    assert {n.carrier for n in notes if n.channel == "sms"} == {"twilio"}


async def test_status_callbacks_are_verified_and_recorded_once(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio)
    try:
        async with running_daemon(village), terminals(village) as sims:
            await sims.alarm("t1-3", "medical", seq=7)
            sms = await twilio.wait_for_messages(3)
            leader_sms = next(m for m in sms if m.to == leader_phone(1))
            assert leader_sms.status_callback == f"{village.base_url}/twilio/status"
            url = leader_sms.status_callback
            assert await twilio.send_status_callback(leader_sms.sid, "delivered", url, forge=True) == 403
            assert await twilio.send_status_callback(leader_sms.sid, "delivered", url) == 204
            # Late, out of order "sent" must not overwrite "delivered".
            assert await twilio.send_status_callback(leader_sms.sid, "sent", url) == 204
            async with aiohttp.ClientSession() as session, session.get(f"{village.base_url}/metrics") as response:
                metrics = await response.text()
            assert 'alertd_invalid_messages_total{reason="bad_signature"} 1.0' in metrics
        _, _, notes = await _incident(village, 1)
    finally:
        await forget_session(village)
    deliveries = {n.address: n.delivery for n in notes if n.channel == "sms"}
    assert deliveries[leader_phone(1)] == "delivered"
