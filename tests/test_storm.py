"""Storm control: when alarms come faster than a threshold, rings and each group leader's first text are
never held; every other alert text is kept in the outbox, marked merged, and its recipient gets one
summary per window. Through the engine and a real store (fake clock)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

from alertd.core.events import Alarm, Tick
from alertd.core.incidents import Channel, Purpose
from alertd.core.model import Kind
from alertd.core.storm import Storm
from alertd.store import OutboxRow, Status
from tests.engine_rig import T0, Clock, Rig, rig_for
from tests.fakes.twilio_server import TwilioServer
from tests.harness import PATROL_PHONES, forget_session, leader_phone, running_daemon, terminals, write_village
from tests.test_core_incidents import LEADER, make_roster


def storm_rig(path: Path, clock: Clock | None = None) -> contextlib.AbstractAsyncContextManager[Rig]:
    return rig_for(path, make_roster(), clock, storm=Storm(threshold=3, window_s=60))


async def texts(rig: Rig) -> list[OutboxRow]:
    return [r for r in await rig.store.notifications() if r.channel == Channel.SMS]


async def test_below_the_threshold_every_text_goes_out(tmp_path: Path) -> None:
    async with storm_rig(tmp_path / "a.db") as rig:
        for n, device in enumerate(("t01", "t02"), 1):
            rig.clock.now = T0 + n
            await rig.call(Alarm(device, Kind.FIRE, 1))
        assert {r.status for r in await texts(rig)} == {Status.PENDING}
        assert len(await texts(rig)) == 6


async def test_in_a_storm_texts_are_merged_into_one_summary_per_window_and_rings_never(tmp_path: Path) -> None:
    async with storm_rig(tmp_path / "a.db") as rig:
        for n, device in enumerate(("t01", "t02", "t03", "t04"), 1):
            rig.clock.now = T0 + n
            await rig.call(Alarm(device, Kind.FIRE, 1))
        rows = await rig.store.notifications()
        rings = [r for r in rows if r.purpose == Purpose.RING]
        assert len(rings) == 4 * 9
        assert {r.status for r in rings} == {Status.PENDING}, "rings are never held"
        alerts = [r for r in rows if r.channel == Channel.SMS and r.incident_id is not None]
        sent = [(r.incident_id, r.recipient) for r in alerts if r.status == Status.PENDING]
        # Alarms 1 and 2 came before the storm; alarm 3 made it: its leader's text is the storm's first to him.
        assert sent == [(1, LEADER), (1, "pat1"), (1, "pat2"), (2, LEADER), (2, "pat1"), (2, "pat2"), (3, LEADER)]
        merged = [r for r in alerts if r.status == Status.MERGED]
        assert sorted((r.incident_id, r.recipient) for r in merged) == [
            (3, "pat1"), (3, "pat2"), (4, LEADER), (4, "pat1"), (4, "pat2"),
        ]  # fmt: skip
        assert {r.error for r in merged} == {f"in summary storm:{int(T0 + 3)}"}
        summaries = {r.recipient: r for r in rows if r.incident_id is None and r.template == "storm"}
        assert set(summaries) == {LEADER, "pat1", "pat2"}
        assert summaries["pat1"].body == "【联防】1分钟内2起报警：一组2起，详情见值班台"
        assert summaries[LEADER].body == "【联防】1分钟内1起报警：一组1起，详情见值班台"
        assert {r.next_attempt_at for r in summaries.values()} == {T0 + 3 + 60}, "sent at the window's end"
        assert {r.status for r in summaries.values()} == {Status.PENDING}


async def test_a_restart_keeps_the_summary_and_a_new_window_gets_a_new_one(tmp_path: Path) -> None:
    clock = Clock()
    async with storm_rig(tmp_path / "a.db", clock) as rig:
        for n, device in enumerate(("t01", "t02", "t03", "t04"), 1):
            rig.clock.now = T0 + n
            await rig.call(Alarm(device, Kind.FIRE, 1))
    async with storm_rig(tmp_path / "a.db", clock) as rig:  # what was merged is carried by the summary
        summaries = [r for r in await rig.store.notifications() if r.template == "storm"]
        assert len(summaries) == 3
        assert all(r.status == Status.PENDING for r in summaries)
        rig.clock.now = T0 + 120
        await rig.call(Tick())
        for n, device in enumerate(("t05", "t06", "t07", "t08"), 1):  # a second storm later
            rig.clock.now = T0 + 120 + n
            await rig.call(Alarm(device, Kind.GAS, 1))
        storms = {r.key.split(":")[1] for r in await rig.store.notifications() if r.template == "storm"}
        assert storms == {str(int(T0 + 3)), str(int(T0 + 123))}


async def test_a_storm_end_to_end_the_patrol_gets_a_summary_and_every_leader_their_alert(
    tmp_path: Path, twilio: TwilioServer
) -> None:
    village = write_village(tmp_path, twilio=twilio, groups=5, storm_threshold=3)
    try:
        async with running_daemon(village), terminals(village) as sims:
            for g in range(1, 6):
                await sims.alarm(f"t{g}-2", "water", seq=1)
            await sims.wait_until(lambda: len(sims.rings()) == 5 * 9)  # every ring, at once
            async with asyncio.timeout(30):  # the 10 s window's summary
                while len([m for m in twilio.messages if "起报警" in m.body]) < 2:
                    await asyncio.sleep(0.1)
    finally:
        await forget_session(village)
    for phone in PATROL_PHONES:
        mine = [m.body for m in twilio.messages if m.to == phone]
        # The alarms before the storm one by one (those decided in the batch that started it are merged
        # too), then one summary that counts the rest: five alarms, each told once.
        alerts = [b for b in mine if "回1收到" in b]
        [summary] = [b for b in mine if "起报警" in b]
        counted = re.search(r"(\d+)起报警", summary)
        assert counted is not None
        assert len(alerts) + int(counted.group(1)) == 5, mine
        assert len(mine) <= 3, mine
    for g in range(1, 6):
        assert [m for m in twilio.messages if m.to == leader_phone(g) and "回1收到" in m.body], f"leader of group {g}"


async def test_a_storms_alarms_are_summarised_when_they_escalate_after_the_rate_dropped(
    tmp_path: Path,
) -> None:
    async with storm_rig(tmp_path / "a.db") as rig:
        for n, device in enumerate(("t01", "t02", "t03", "t04"), 1):
            rig.clock.now = T0 + n
            await rig.call(Alarm(device, Kind.FIRE, 1))
        rig.clock.now = T0 + 130  # step 1 (deputy, grid worker, patrol) of all four, long after the last alarm
        await rig.call(Tick())
        step_1 = [r for r in await rig.store.notifications() if r.step == 1 and r.channel == Channel.SMS]
        # All four belong to the storm (1 and 2 helped make it: their first texts went one by one).
        assert {r.status for r in step_1} == {Status.MERGED}
        assert len(step_1) == 4 * 4  # deputy, grid worker, two patrol members
        summaries = {r.recipient: r.body for r in await rig.store.notifications() if r.key.startswith("storm:")
                     and r.key.split(":")[1] == str(int(T0 + 130))}  # fmt: skip
        assert summaries["pat1"] == "【联防】1分钟内4起报警：一组4起，详情见值班台", "alarms counted, not texts"


async def test_a_window_that_ended_with_nothing_to_send_does_not_keep_waking_the_engine(tmp_path: Path) -> None:
    # A storm's summary window ends at a tick with no texts: its end must not stay the next wakeup (the
    # engine spun on it, a core busy, until the next text).
    async with storm_rig(tmp_path / "a.db") as rig:
        for n, device in enumerate(("t01", "t02", "t03"), 1):
            rig.clock.now = T0 + n
            await rig.call(Alarm(device, Kind.FIRE, 1))
        assert rig.engine.desk.storm.next_wakeup() == T0 + 3 + 60  # the summaries' window
        rig.clock.now = T0 + 70
        await rig.call(Tick())
        assert rig.engine.desk.next_wakeup() > rig.clock.now
