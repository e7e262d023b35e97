"""Issue 16: a carrier that takes the request and never answers must not hold an alarm SMS for its whole
timeout. The real daemon, the Twilio-shaped server hanging every request, the simulated modem on a pty."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from alertd.commands import CommandBook
from alertd.config import load_config
from alertd.core import digest
from alertd.core.incidents import Purpose, fire_due_steps, open_incident, open_maintenance
from alertd.core.messages import Texts
from alertd.core.model import Kind
from alertd.core.supervision import Condition
from alertd.store import OutboxRow, Status, Store
from tests.fakes.gsm_modem import FakeModem
from tests.fakes.twilio_server import TwilioServer
from tests.harness import PATROL_PHONES, forget_session, leader_phone, running_daemon, terminals, write_village

HEDGE_S = 0.5
T0 = 1_800_000_000.0


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def _settings(path: Path, section: str, line: str) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1), encoding="utf-8")


async def sms_rows(store_path: Path, incident_id: int) -> list[OutboxRow]:
    store = await Store.open(store_path, readonly=True)
    try:
        return [n for n in await store.notifications(incident_id) if n.channel == "sms"]
    finally:
        await store.close()


async def test_a_hanging_twilio_does_not_hold_the_alarm_sms_the_modem_carries_it(
    tmp_path: Path, twilio: TwilioServer
) -> None:
    twilio.hang_all(120)  # takes every request and says nothing
    async with FakeModem() as modem:
        village = write_village(tmp_path, twilio=twilio, modem=modem.path)
        _settings(village.settings_path, "sms", f"hedge_after_s = {HEDGE_S}")
        _settings(village.settings_path, "twilio", "timeout_s = 60")  # Twilio's attempts outlive the test
        try:
            async with running_daemon(village) as daemon, terminals(village) as sims:
                await until(lambda: daemon.health_of("modem").ok)
                await sims.alarm("t1-2", "fire", seq=1)
                await until(lambda: leader_phone(1) in {m.to for m in modem.sent})
                assert twilio.hanging >= 1, "the leader's SMS went out while Twilio's request still hangs"
                assert twilio.messages == []
                await until(lambda: {m.to for m in modem.sent} == {leader_phone(1), *PATROL_PHONES})
                assert daemon.health_of("sms:sms").ok
                assert "twilio: no answer within 0.5 s 3 times in a row" in daemon.health_of("sms:sms").detail
            notes = await sms_rows(village.store_path, 1)
        finally:
            await forget_session(village)
    metrics = daemon.metrics.registry
    assert metrics.get_sample_value("alertd_sms_hedged_total", {"carrier": "twilio"}) == 3
    assert metrics.get_sample_value(
        "alertd_sms_hedge_leftovers_total", {"carrier": "twilio", "outcome": "cancelled"}
    ) == 3, "the attempts still hanging at Twilio were tracked, and cancelled when the daemon stopped"  # fmt: skip
    assert len(notes) == 3
    for note in notes:
        assert (note.status, note.carrier) == (Status.SENT, "modem")
        assert note.provider_id is not None
        assert note.provider_id.startswith("modem:")
        assert note.error == (
            "hedged after 0.5 s: twilio had not answered; accepted by modem; twilio still trying (may arrive twice)"
        )
    shown = subprocess.run(
        [sys.executable, "-m", "alertd.cli", "show", "1", "-c", str(village.settings_path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    listed = shown.stdout.split("Notifications:")[1]
    leader = next(line for line in listed.splitlines() if "1组5号户主" in line)
    assert "modem" in leader
    assert "sent" in leader
    assert "[hedged after 0.5 s: twilio had not answered; accepted by modem" in leader


def test_only_alarm_texts_are_urgent_maintenance_and_the_digest_are_notices(tmp_path: Path) -> None:
    """What decides whether an SMS is hedged is its purpose: alarms are, the texts that can wait are not."""
    config = load_config(write_village(tmp_path).settings_path, environ={})
    roster, texts = config.roster, Texts(ZoneInfo("Asia/Shanghai"))
    household = roster.households["h1-2"]
    incident, _ = open_incident(1, household, Kind.FIRE, roster, T0, "test")
    _, alarm = fire_due_steps(incident, roster, texts, T0, CommandBook())
    _, maintenance = open_maintenance(
        2, roster.devices["t1-2"], household, Condition.TAMPERED, Kind.PANIC, roster, texts, T0
    )
    planned = digest.plan("2027-01-15", roster, config.profiles, {}, texts, T0)
    assert {n.purpose for n in alarm.notifications if n.channel == "sms"} == {Purpose.ALERT}
    assert {n.purpose for n in maintenance.notifications} == {Purpose.NOTICE}
    assert {n.purpose for n in planned} == {Purpose.NOTICE}
