"""Device supervision: health from reports (pure), maintenance incidents with a grace period for flaps,
routed to the grid worker (and the leader for tamper), closed when the device is healthy again."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alertd.core.events import Alarm, DeviceStatus, Heartbeat, Supervision, SupervisionKind, Tick
from alertd.core.incidents import Channel, State
from alertd.core.messages import Texts
from alertd.core.model import Device, Kind
from alertd.core.profile import DeviceProfile, Transport
from alertd.core.supervision import MAINTENANCE_CONDITIONS, Condition, DeviceHealth, Reported, assess, review
from alertd.core.upkeep import news_update
from alertd.engine import Engine
from alertd.metrics import Metrics
from alertd.store import Store
from tests.test_core_incidents import GRID, LEADER, SENSOR, make_roster

T0 = 1_800_000_000.0
GRACE = 600.0
TERMINAL = DeviceProfile("alertd-terminal", "terminal", Transport.ALERTD, checkin_s=300)
SMOKE = DeviceProfile("zigbee-smoke", "smoke", Transport.ZIGBEE2MQTT, checkin_s=90000, battery_low=20)
DEVICE = Device("t03", "h03")


def health(device_id: str, *conditions: Condition) -> DeviceHealth:
    return DeviceHealth(device_id, conditions or (Condition.OK,), None, None)


@pytest.mark.parametrize(
    ("reported", "now", "expected"),
    [
        (Reported(), T0, (Condition.NEVER_SEEN,)),
        (Reported(online=True, last_seen=T0), T0 + 60, (Condition.OK,)),
        (Reported(online=True, last_seen=T0), T0 + 300 * 2.5 + 1, (Condition.SILENT,)),
        (Reported(online=False, last_seen=T0), T0 + 1, (Condition.OFFLINE,)),
        (Reported(online=True, last_seen=T0, battery=15), T0, (Condition.BATTERY_LOW,)),
        (Reported(online=True, last_seen=T0, battery=80, battery_low=True, tampered=True), T0,
         (Condition.BATTERY_LOW, Condition.TAMPERED)),
        (Reported(online=True, last_seen=T0, ac_loss=True), T0, (Condition.AC_LOSS,)),
        (Reported(online=True, last_seen=T0, comm_trouble=True), T0, (Condition.COMM_TROUBLE,)),
        (Reported(online=True, last_seen=T0, ac_loss=False, comm_trouble=False), T0, (Condition.OK,)),
        (Reported(online=True, last_seen=T0, tampered=True, ac_loss=True, comm_trouble=True), T0,
         (Condition.TAMPERED, Condition.AC_LOSS, Condition.COMM_TROUBLE)),
    ],
)  # fmt: skip
def test_assess(reported: Reported, now: float, expected: tuple[Condition, ...]) -> None:
    assert assess(DEVICE, TERMINAL, reported, now).conditions == expected


def test_a_device_without_check_in_is_never_silent() -> None:
    button = DeviceProfile("zigbee-sos-button", "button", Transport.ZIGBEE2MQTT)
    assert assess(DEVICE, button, Reported(online=True, last_seen=T0), T0 + 10**7).healthy


def test_offline_waits_out_the_grace_period_tamper_does_not() -> None:
    first = review([health("a", Condition.OFFLINE), health("b", Condition.TAMPERED)], set(), {}, T0, GRACE)
    assert first.to_open == (("b", Condition.TAMPERED),)
    assert first.pending == {("a", Condition.OFFLINE): T0}
    later = review([health("a", Condition.OFFLINE)], {("b", Condition.TAMPERED)}, first.pending, T0 + GRACE, GRACE)
    assert later.to_open == (("a", Condition.OFFLINE),)
    assert later.to_close == (("b", Condition.TAMPERED),)
    assert later.pending == {}


@pytest.mark.parametrize("condition", [Condition.AC_LOSS, Condition.COMM_TROUBLE])
def test_power_cut_and_line_fault_wait_out_the_grace_period_and_close_when_restored(condition: Condition) -> None:
    first = review([health("panel", condition)], set(), {}, T0, GRACE)
    assert (first.to_open, first.pending) == ((), {("panel", condition): T0}), "a short power cut wakes nobody"
    opened = review([health("panel", condition)], set(), first.pending, T0 + GRACE, GRACE)
    assert opened.to_open == (("panel", condition),)
    restored = review([health("panel")], {("panel", condition)}, opened.pending, T0 + GRACE + 60, GRACE)
    assert (restored.to_open, restored.to_close) == ((), (("panel", condition),))


# Device news that is no condition of the device: a check-in, the panel's arming, a report of no meaning.
NOT_CONDITIONS = frozenset({SupervisionKind.TEST, SupervisionKind.OPEN_CLOSE, SupervisionKind.OTHER})


@pytest.mark.parametrize("news", sorted(set(SupervisionKind) - NOT_CONDITIONS))
def test_condition_news_is_spelled_as_the_condition_and_the_device_field(news: SupervisionKind) -> None:
    # One spelling per condition: the news, the condition supervision judges and the devices table's column.
    assert news.value in {condition.value for condition in Condition}
    assert Condition(news.value) in MAINTENANCE_CONDITIONS
    assert getattr(news_update(Supervision("t05", news), T0), news.value) is True
    assert getattr(news_update(Supervision("t05", news, restore=True), T0), news.value) is False
    assert news.value in {f.name for f in dataclasses.fields(Reported)}


def test_a_flap_shorter_than_the_grace_period_creates_nothing() -> None:
    first = review([health("a", Condition.OFFLINE)], set(), {}, T0, GRACE)
    back = review([health("a")], set(), first.pending, T0 + 120, GRACE)
    again = review([health("a", Condition.OFFLINE)], set(), back.pending, T0 + 300, GRACE)
    assert (first.to_open, back.to_open, again.to_open) == ((), (), ())
    assert again.pending == {("a", Condition.OFFLINE): T0 + 300}, "the grace period starts over"


class Clock:
    now = T0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def engine(tmp_path: Path, clock: Clock) -> AsyncIterator[tuple[Engine, Store]]:
    store = await Store.open(tmp_path / "alertd.db")
    eng = Engine(
        store, make_roster(), Texts(ZoneInfo("Asia/Shanghai")), Metrics(), clock=clock, grace_s=GRACE,
        supervision_interval_s=60,
    )  # fmt: skip
    eng.replace_roster(eng.desk.roster, {"alertd-terminal": TERMINAL, "zigbee-smoke": SMOKE})
    task = asyncio.create_task(eng.run())
    try:
        yield eng, store
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()


async def tick(eng: Engine, clock: Clock, seconds: float) -> None:
    clock.now += seconds
    await asyncio.wait_for(eng.call(Tick()), 5)


async def test_offline_terminal_opens_a_maintenance_incident_for_the_grid_worker_then_closes(tmp_path: Path) -> None:
    clock = Clock()
    async with engine(tmp_path, clock) as (eng, store):
        await eng.call(Heartbeat("t03", 90))
        await eng.call(DeviceStatus("t03", online=False))  # its Last Will
        await tick(eng, clock, 61)
        assert await store.incidents() == [], "within the grace period nothing happens"
        await tick(eng, clock, GRACE)
        [case] = await store.incidents()
        assert (case.device_id, case.maintenance, case.state) == ("t03", "offline", State.OPEN)
        notes = await store.notifications(case.id)
        assert [(n.channel, n.recipient) for n in notes] == [(Channel.SMS, GRID)], "never the neighbours"
        assert "报警电话离线" in notes[0].body

        # An alarm from that household is an alarm of its own, not part of the maintenance incident.
        assert str(await eng.call(Alarm("t03", Kind.FIRE, seq=1))).startswith("opened")

        await eng.call(DeviceStatus("t03", online=True))
        await tick(eng, clock, 61)
        closed = await store.incident(case.id)
        timeline = await store.timeline(case.id)
    assert closed is not None
    assert closed.state == State.RESOLVED
    assert timeline[-1].actor.startswith("alertd: device healthy again")


async def test_tamper_tells_the_grid_worker_and_the_leader_at_once(tmp_path: Path) -> None:
    clock = Clock()
    async with engine(tmp_path, clock) as (eng, store):
        await eng.call(Supervision("t05", SupervisionKind.TAMPERED))
        await tick(eng, clock, 61)
        [case] = await store.incidents()
        recipients = {n.recipient for n in await store.notifications(case.id)}
    assert case.maintenance is Condition.TAMPERED
    assert recipients == {GRID, LEADER}


async def test_open_maintenance_incidents_survive_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    async with engine(tmp_path, clock) as (eng, store):
        await eng.call(Supervision("t05", SupervisionKind.BATTERY_LOW))
        await tick(eng, clock, 61)
    async with engine(tmp_path, clock) as (eng, store):
        await tick(eng, clock, 61)  # the condition is still there: no second incident
        assert len(await store.incidents()) == 1
        await eng.call(Supervision("t05", SupervisionKind.BATTERY_LOW, restore=True))
        await tick(eng, clock, 61)
        [case] = await store.incidents()
    assert case.state == State.RESOLVED


async def test_daily_digest_tells_each_leader_what_needs_a_visit_once_a_day(tmp_path: Path) -> None:
    clock = Clock()  # 2027-01-15 16:00 in Dandong
    store = await Store.open(tmp_path / "alertd.db")
    try:
        for attempt in range(2):  # a restart the same day does not send it again
            eng = Engine(
                store, make_roster(), Texts(ZoneInfo("Asia/Shanghai")), Metrics(), clock=clock,
                supervision_interval_s=60, digest_at=dt.time(16, 30),
            )  # fmt: skip
            eng.replace_roster(eng.desk.roster, {"alertd-terminal": TERMINAL, "zigbee-smoke": SMOKE})
            task = asyncio.create_task(eng.run())
            try:
                if attempt == 0:
                    await tick(eng, clock, 29 * 60)
                    assert [n for n in await store.notifications() if n.incident_id is None] == []
                for n in range(1, 11):
                    await eng.call(Heartbeat(f"t{n:02d}", 90))
                await eng.call(Supervision(SENSOR, SupervisionKind.BATTERY_LOW))
                await eng.call(DeviceStatus("t07", online=False))
                await tick(eng, clock, 61)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        digests = [n for n in await store.notifications() if n.incident_id is None]
    finally:
        await store.close()
    assert len(digests) == 1
    [digest] = digests
    assert digest.recipient == LEADER
    assert digest.key.startswith("digest:g1:2027-01-15:")
    assert digest.body.startswith("【联防日报】东村一组 设备11个，正常9个；需检修：")
    assert "7号户 王家报警电话离线" in digest.body
    assert "烟感电量低" in digest.body
    assert len(digest.body) <= 70


def test_digest_shortens_a_long_list_to_one_segment() -> None:
    roster = make_roster()
    group = roster.groups["g1"]
    problems = [(roster.households[d.household_id], d, Condition.OFFLINE) for d in roster.devices.values()]
    text = Texts(ZoneInfo("Asia/Shanghai")).digest(group, 11, problems).body
    assert len(text) <= 70
    assert text.endswith(f"等{len(problems)}处")
