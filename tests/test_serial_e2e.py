"""Serial lines end to end on real ptys: a Contact ID receiver in, a GSM modem out and in, failover with
the Twilio-shaped server, and a line unplugged and plugged back while the daemon runs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from alertd.core.events import Arming
from alertd.core.incidents import Channel
from alertd.protocols.contact_id import ACK, build_message
from alertd.store import Status, Store
from tests.fakes.contact_id_receiver import FakeReceiver
from tests.fakes.gsm_modem import CallScript, FakeModem
from tests.fakes.twilio_server import TwilioServer
from tests.harness import (
    PATROL_PHONES,
    Village,
    contact_id_account,
    forget_session,
    leader_phone,
    running_daemon,
    terminals,
    write_village,
)

FIRE, DURESS = 110, 121


def mlr2(account: str, event_code: int, qualifier: str = "E", zone: int = 1) -> str:
    """A report as a Sur-Gard MLR2 prints it: receiver 01, line 1."""
    return f"5011 18{account}{qualifier}{event_code:03d}01{zone:03d}"


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def notifications(village: Village, incident_id: int):  # type: ignore[no-untyped-def]
    store = await Store.open(village.store_path, readonly=True)
    try:
        return (
            await store.incident(incident_id),
            await store.timeline(incident_id),
            await store.notifications(incident_id),
        )
    finally:
        await store.close()


async def test_contact_id_fire_rings_neighbours_texts_via_modem_and_an_sms_reply_acknowledges(tmp_path: Path) -> None:
    async with FakeModem() as modem, FakeReceiver() as receiver:
        village = write_village(tmp_path, modem=modem.path, receiver=(receiver.path, "mlr2"))
        try:
            async with running_daemon(village), terminals(village) as sims:
                await receiver.send_line(mlr2(contact_id_account(1, 2), FIRE), terminator="\x14")
                await sims.wait_until(lambda: len(sims.rings()) == 9)
                assert sims.rings()[0].command.kind == "fire"
                await receiver.wait_for_acks(1)
                assert receiver.acks == [ACK], "the receiver is acknowledged once the report is committed"

                await until(lambda: {m.to for m in modem.sent} >= {leader_phone(1), *PATROL_PHONES})
                leader_sms = next(m for m in modem.sent if m.to == leader_phone(1))
                assert "火警" in leader_sms.text
                assert leader_sms.encoding == "ucs2"

                await modem.receive_sms(leader_phone(1), "1")
                await sims.wait_until(lambda: len(sims.stops(1)) == 9)
                await until(lambda: not modem.stored)  # deleted from the SIM once committed
            incident, timeline, notes = await notifications(village, 1)
        finally:
            await forget_session(village)
    assert incident is not None
    assert incident.state == "acknowledged"
    assert "(sms)" in next(t.actor for t in timeline if t.event == "acknowledged")
    assert {n.carrier for n in notes if n.channel == "sms"} == {"modem"}
    assert all(n.provider_id and n.provider_id.startswith("modem:") for n in notes if n.channel == "sms")


async def test_duress_rings_nothing_and_tells_only_the_leader_and_patrol(tmp_path: Path) -> None:
    async with FakeModem() as modem, FakeReceiver() as receiver:
        village = write_village(tmp_path, modem=modem.path, receiver=(receiver.path, "mlr2"), steps=(0, 1, 2))
        try:
            async with running_daemon(village), terminals(village) as sims:
                await receiver.send_line(mlr2(contact_id_account(1, 3), DURESS), terminator="\x14")
                await until(lambda: len(modem.sent) >= 3)
                await asyncio.sleep(3)  # past every escalation step of this policy
                assert sims.rings() == []
            incident, _, notes = await notifications(village, 1)
        finally:
            await forget_session(village)
    assert incident is not None
    assert incident.silent
    assert {m.to for m in modem.sent} == {leader_phone(1), *PATROL_PHONES}
    assert all(n.channel == "sms" for n in notes)


async def test_a_restore_is_a_timeline_entry_not_a_new_incident(tmp_path: Path) -> None:
    async with FakeReceiver() as receiver:
        village = write_village(tmp_path, receiver=(receiver.path, "mlr2"))
        try:
            async with running_daemon(village), terminals(village) as sims:
                await receiver.send_line(mlr2(contact_id_account(1, 4), 111), terminator="\x14")
                await sims.wait_until(lambda: len(sims.rings()) == 9)
                await receiver.send_line(mlr2(contact_id_account(1, 4), 111, qualifier="R"), terminator="\x14")
                await receiver.wait_for_acks(2)
                await asyncio.sleep(0.2)
            incident, timeline, _ = await notifications(village, 1)
            second, _, _ = await notifications(village, 2)
        finally:
            await forget_session(village)
    assert incident is not None
    assert second is None
    assert [t.event for t in timeline] == ["opened", "step 0", "restore"]


async def test_bad_checksum_and_unknown_account_are_counted_and_never_guessed(tmp_path: Path) -> None:
    async with FakeReceiver() as receiver:
        village = write_village(tmp_path, receiver=(receiver.path, "plain"))
        good = build_message(contact_id_account(1, 6), 1, FIRE)
        bad = good[:-1] + ("1" if good[-1] != "1" else "2")
        stranger = build_message("9999", 1, FIRE)
        try:
            async with running_daemon(village), terminals(village) as sims:
                for line in (bad, stranger, good):
                    await receiver.send_line(line)
                await sims.wait_until(lambda: len(sims.rings()) == 9)
                assert {c.command.household_id for c in sims.rings()} == {"h1-6"}
        finally:
            await forget_session(village)


async def test_receiver_unplugged_and_plugged_back_recovers_without_a_restart(tmp_path: Path) -> None:
    async with FakeReceiver() as receiver:
        village = write_village(tmp_path, receiver=(receiver.path, "mlr2"))
        try:
            async with running_daemon(village) as daemon, terminals(village) as sims:
                await receiver.unplug()
                await until(lambda: not daemon.health_of("receiver:rx").ok)
                assert "line down" in daemon.health_of("receiver:rx").detail
                await receiver.replug()
                await until(lambda: daemon.health_of("receiver:rx").ok)
                await receiver.send_line(mlr2(contact_id_account(1, 8), FIRE), terminator="\x14")
                await sims.wait_until(lambda: len(sims.rings()) == 9)
        finally:
            await forget_session(village)


async def test_twilio_failing_sends_through_the_modem(tmp_path: Path, twilio: TwilioServer) -> None:
    twilio.fail_all(500)
    async with FakeModem() as modem:
        village = write_village(tmp_path, twilio=twilio, modem=modem.path)
        try:
            async with running_daemon(village) as daemon, terminals(village) as sims:
                await until(lambda: daemon.health_of("modem").ok)
                await sims.alarm("t1-2", "fire", seq=1)
                await until(lambda: {m.to for m in modem.sent} == {leader_phone(1), *PATROL_PHONES})
            _, _, notes = await notifications(village, 1)
        finally:
            await forget_session(village)
    assert twilio.messages == []
    assert {n.carrier for n in notes if n.channel == "sms"} == {"modem"}
    shown = subprocess.run(
        [sys.executable, "-m", "alertd.cli", "show", "1", "-c", str(village.settings_path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    timeline = shown.stdout.split("Notifications:")[0]
    assert timeline.count("via modem: sent") == 3, "the response log says which carrier carried each SMS"


async def test_modem_silent_sends_through_twilio(tmp_path: Path, twilio: TwilioServer) -> None:
    async with FakeModem() as modem:
        village = write_village(tmp_path, twilio=twilio, modem=modem.path, prefer="modem")
        try:
            async with running_daemon(village) as daemon, terminals(village) as sims:
                await until(lambda: daemon.health_of("modem").ok)
                modem.silence(True)
                await sims.alarm("t1-2", "fire", seq=1)
                await until(lambda: {m.to for m in twilio.messages} == {leader_phone(1), *PATROL_PHONES})
            _, _, notes = await notifications(village, 1)
        finally:
            await forget_session(village)
    assert modem.sent == []
    assert {n.carrier for n in notes if n.channel == "sms"} == {"twilio"}


async def test_both_carriers_down_then_one_back_loses_nothing(tmp_path: Path, twilio: TwilioServer) -> None:
    twilio.fail_all(503)
    async with FakeModem() as modem:
        village = write_village(tmp_path, twilio=twilio, modem=modem.path)
        try:
            async with running_daemon(village) as daemon, terminals(village) as sims:
                await until(lambda: daemon.health_of("modem").ok)
                modem.silence(True)
                await sims.alarm("t1-2", "fire", seq=1)
                await until(lambda: not daemon.health_of("sms:sms").ok)
                _, _, notes = await notifications(village, 1)
                waiting = [n for n in notes if n.channel == "sms"]
                assert len(waiting) == 3
                assert all(n.status in (Status.PENDING, Status.SENDING) for n in waiting)
                modem.silence(False)  # the modem comes back first
                await until(lambda: {m.to for m in modem.sent} == {leader_phone(1), *PATROL_PHONES}, 60)
            _, _, notes = await notifications(village, 1)
        finally:
            await forget_session(village)
    assert all(n.status == Status.SENT for n in notes if n.channel == "sms")
    assert twilio.messages == []


async def test_arming_a_test_report_and_an_unknown_code_are_acked_recorded_and_shown_never_rung(
    tmp_path: Path,
) -> None:
    # Issue 7: a closing by user (401) or any code outside the old table was refused as unknown_code, so a
    # line carrying a panel's arming and disarming filled the log with errors and lost every report.
    account = contact_id_account(1, 2)
    async with FakeReceiver() as receiver:
        village = write_village(tmp_path, receiver=(receiver.path, "mlr2"))
        try:
            async with running_daemon(village), terminals(village) as sims:
                await receiver.send_line(mlr2(account, 401, qualifier="R", zone=3), terminator="\x14")  # armed
                await receiver.send_line(mlr2(account, 999), terminator="\x14")  # a code alertd does not know
                await receiver.send_line(mlr2(account, 603), terminator="\x14")  # periodic RF test: a check-in
                assert await receiver.wait_for_acks(3) == [ACK, ACK, ACK]
                await asyncio.sleep(0.5)
                assert sims.rings() == []
            store = await Store.open(village.store_path, readonly=True)
            try:
                incidents, record = await store.incidents(), (await store.devices())["c1-2"]
            finally:
                await store.close()
        finally:
            await forget_session(village)
    assert incidents == []
    assert (record.armed, record.armed_user) == (Arming.ARMED, 3)
    assert record.last_test is not None

    def devices(*extra: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "alertd.cli", "devices", "-c", str(village.settings_path), "--group", "g1", *extra],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip

    listed = {d["id"]: d for d in json.loads(devices("--json"))}
    assert (listed["c1-2"]["armed"], listed["c1-2"]["armed_user"]) == ("armed", 3)
    assert listed["c1-2"]["healthy"] is True
    assert listed["c1-3"]["armed"] is None
    table = devices().splitlines()
    assert next(line for line in table if line.startswith("c1-2 ") and "armed" in line).split()[-4:-2] == [
        "armed", "3"
    ]  # fmt: skip


async def test_the_modem_rings_the_leader_when_the_internet_is_down(tmp_path: Path) -> None:
    # No Twilio: the alert call is the modem ringing the leader's phone (响铃提醒); its outcome is recorded.
    async with FakeModem() as modem:
        leader = leader_phone(1).removeprefix("+86")
        modem.script_call(leader, CallScript(outcome="answer", after_s=0.3))
        village = write_village(tmp_path, modem=modem.path, call=("leader",))
        try:
            async with running_daemon(village), terminals(village) as sims:
                await sims.alarm("t1-2", "fire", seq=1)
                await sims.wait_until(lambda: len(sims.rings()) == 9)
                await until(lambda: any(d.number == leader and d.ended_at is not None for d in modem.dials))
                await until(lambda: {m.to for m in modem.sent} >= {leader_phone(1), *PATROL_PHONES})
                async with asyncio.timeout(10):
                    while not [t for t in (await notifications(village, 1))[1] if t.event == "call"]:
                        await asyncio.sleep(0.05)
            incident, timeline, notes = await notifications(village, 1)
        finally:
            await forget_session(village)
    [dial] = modem.dials
    assert dial.ended_by == "ath"  # answered, then hung up by alertd: the ring did its job
    [call] = [n for n in notes if n.channel == Channel.VOICE]
    assert (call.carrier, call.status, call.delivery) == ("modem", Status.SENT, "answered")
    assert [(t.actor, t.detail) for t in timeline if t.event == "call"] == [("1组5号户主", "answered")]
    assert incident is not None
    assert incident.state == "open"  # a ring answered is no acknowledgement: nobody said they are coming


async def test_a_missed_call_from_the_leader_acknowledges_for_free_and_is_confirmed(tmp_path: Path) -> None:
    async with FakeModem() as modem:
        village = write_village(tmp_path, modem=modem.path)
        try:
            async with running_daemon(village), terminals(village) as sims:
                await sims.alarm("t1-2", "fire", seq=1)
                await sims.wait_until(lambda: len(sims.rings()) == 9)
                stranger = modem.incoming_call("+8613712345678", ring_interval_s=0.5)
                await until(lambda: stranger.ended_at is not None)
                call = modem.incoming_call(leader_phone(1), ring_interval_s=0.5)
                await sims.wait_until(lambda: len(sims.stops(1)) == 9)
                await until(lambda: any("已确认 #1" in m.text for m in modem.sent if m.to == leader_phone(1)))
            incident, timeline, _ = await notifications(village, 1)
        finally:
            await forget_session(village)
    assert stranger.rejected  # never answered: costs the caller nothing
    assert call.rejected
    assert incident is not None
    assert incident.state == "acknowledged"
    assert ("acknowledged", "1组5号户主 (missed_call)") in [(t.event, t.actor) for t in timeline]
    assert not [t for t in timeline if "13712345678" in t.actor + t.detail], "the stranger changed nothing"


async def test_when_twilio_cannot_place_a_call_the_modem_rings_instead(tmp_path: Path, twilio: TwilioServer) -> None:
    twilio.fail_all(503)  # Twilio down: texts and calls both go through the modem
    async with FakeModem() as modem:
        leader = leader_phone(1).removeprefix("+86")
        modem.script_call(leader, CallScript(outcome="no_answer", after_s=0.2))
        village = write_village(tmp_path, modem=modem.path, twilio=twilio, call=("leader",))
        try:
            async with running_daemon(village), terminals(village) as sims:
                await sims.alarm("t1-2", "fire", seq=1)
                await until(lambda: any(d.number == leader and d.ended_at is not None for d in modem.dials))
                async with asyncio.timeout(10):
                    while not [t for t in (await notifications(village, 1))[1] if t.event == "call"]:
                        await asyncio.sleep(0.05)
            _, timeline, notes = await notifications(village, 1)
        finally:
            await forget_session(village)
    [call, *_] = [n for n in notes if n.channel == Channel.VOICE]
    assert (call.carrier, call.delivery) == ("modem", "no-answer")
    assert [(t.actor, t.detail) for t in timeline if t.event == "call"] == [
        ("1组5号户主", "no-answer; called again in 60 s (2 of 3)")
    ]
