"""No replayed input acknowledges an alarm: an inbound SMS (by MessageSid, or by SIM slot for the modem)
is handled once, and a reply acts only on incidents that were open when it was received."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from zoneinfo import ZoneInfo

from alertd.core.events import Alarm, Reply
from alertd.core.incidents import State
from alertd.core.messages import Texts
from alertd.core.model import Kind
from alertd.engine import Engine
from alertd.metrics import Metrics
from alertd.store import Store
from tests.fakes.twilio_server import TwilioServer
from tests.harness import forget_session, leader_phone, running_daemon, terminals, write_village
from tests.test_core_incidents import LEADER, make_roster


async def test_a_replayed_inbound_sms_changes_nothing(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio)
    url = f"{village.base_url}/twilio/sms"
    try:
        async with running_daemon(village) as daemon, terminals(village) as sims:
            await sims.alarm("t1-2", "fire", seq=1)
            await sims.wait_until(lambda: len(sims.rings(1)) == 9)
            assert await twilio.send_inbound_sms(url, leader_phone(1), "1") == 200
            await sims.wait_until(lambda: len(sims.stops(1)) == 9)
            assert twilio.last_webhook is not None
            captured = twilio.last_webhook

            await sims.alarm("t1-7", "panic", seq=1)  # a new alarm elsewhere in the group
            await sims.wait_until(lambda: len(sims.rings(2)) == 9)
            assert await twilio.replay_webhook(*captured) == 200  # byte-identical, validly signed
            await asyncio.sleep(0.5)
            assert sims.stops(2) == [], "the replayed '1' must not acknowledge the new alarm"
            assert await twilio.send_inbound_sms(url, leader_phone(1), "3 误报 #1") == 200
            await sims.wait_until(lambda: len(sims.stops(1)) == 9)  # already stopped; nothing new for 2
            assert twilio.last_webhook is not None
            assert await twilio.replay_webhook(*twilio.last_webhook) == 200
            await asyncio.sleep(0.5)
            replays = daemon.metrics.registry.get_sample_value("alertd_inbound_replays_total", {"carrier": "twilio"})
        store = await Store.open(village.store_path, readonly=True)
        try:
            first, second = await store.incident(1), await store.incident(2)
        finally:
            await store.close()
    finally:
        await forget_session(village)
    assert replays == 2
    assert first is not None
    assert first.state == State.RESOLVED
    assert second is not None
    assert second.state == State.OPEN, "neither replay may move the new alarm"
    assert sims.stops(2) == []


class Clock:
    now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_reply_received_before_an_incident_opened_does_not_act_on_it(tmp_path: Path) -> None:
    """A leader's "1" that waited on the SIM (read late, after a restart) belongs to the alarm of its time."""
    clock = Clock()
    store = await Store.open(tmp_path / "alertd.db")
    eng = Engine(store, make_roster(), Texts(ZoneInfo("Asia/Shanghai")), Metrics(), clock=clock)
    task = asyncio.create_task(eng.run())
    try:
        sent_at = clock.now
        clock.now += 3600
        assert str(await eng.call(Alarm("t02", Kind.FIRE, seq=1))) == "opened 1"
        leader = make_roster().people[LEADER].phone
        late = Reply(leader, "1", "modem", message_id="modem:3:+86:1", received_at=sent_at)
        assert str(await eng.call(late)) == "no_incident"
        assert await eng.call(Reply(leader, "1", "modem", message_id="modem:4:+86:2", received_at=clock.now))
        again = Reply(leader, "1", "modem", message_id="modem:4:+86:2", received_at=clock.now)
        assert str(await eng.call(again)) == "replay"
        incident = await store.incident(1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()
    assert incident is not None
    assert incident.state == State.ACKNOWLEDGED


def test_a_reply_never_shows_the_whole_number_in_its_repr() -> None:
    """The engine logs repr(input) on an internal error."""
    shown = repr(Reply("+8613812345678", "1", "twilio", message_id="twilio:SM1"))
    assert "13812345678" not in shown
    assert "+86138****5678" in shown
