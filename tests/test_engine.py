"""The engine with a real store and a fake clock, driven only through its public API (run, call, load)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alertd.core.events import Action, Alarm, Input, OperatorCommand, Reply, TerminalAck, Tick
from alertd.core.incidents import STOP_STEP, Channel, Outcome, Purpose, State
from alertd.core.messages import Texts
from alertd.core.model import Kind
from alertd.engine import Engine
from alertd.metrics import Metrics
from alertd.store import Store
from tests.pg import BOTH_STORES, StoreAt
from tests.test_core_incidents import DUTY, LEADER, make_roster

T0 = 1_800_000_000.0
JOIN_WINDOW = 600.0
LEADER_PHONE = "+8613800000005"
PATROL_PHONE = "+8613900090021"
DUTY_PHONE = "+8613900090001"
STRANGER = "+8613700000000"

# Every test here on the SQLite file and on PostgreSQL: the engine needs the same of both.
pytestmark = BOTH_STORES


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    store: Store
    clock: FakeClock
    engine: Engine
    path: Path

    async def call(self, item: Input) -> str:
        return str(await asyncio.wait_for(self.engine.call(item), 5))  # the result in words

    async def alarm(self, device: str, seq: int | None, kind: Kind = Kind.PANIC) -> str:
        return await self.call(Alarm(device, kind, seq))

    async def sms(self, incident_id: int, step: int | None = None) -> list[str]:
        rows = await self.store.notifications(incident_id)
        return [r.recipient for r in rows if r.channel == Channel.SMS and (step is None or r.step == step)]


def new_engine(store: Store, clock: Callable[[], float]) -> Engine:
    return Engine(
        store, make_roster(), Texts(ZoneInfo("Asia/Shanghai")), Metrics(), join_window_s=JOIN_WINDOW, clock=clock
    )


@contextlib.asynccontextmanager
async def running(engine: Engine) -> AsyncIterator[None]:
    task = asyncio.create_task(engine.run(), name="engine")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def rig(store_at: StoreAt) -> AsyncIterator[Rig]:
    path = store_at.path
    store = await store_at.open()
    clock = FakeClock(T0)
    engine = new_engine(store, clock)
    try:
        async with running(engine):
            yield Rig(store, clock, engine, path)
    finally:
        await store.close()


# --- alarms -------------------------------------------------------------------------------------------


async def test_alarm_from_unknown_device_stores_nothing(rig: Rig) -> None:
    assert await rig.alarm("no-such-device", 1) == "unknown_device"
    assert await rig.store.incidents() == []
    assert await rig.store.notifications() == []
    assert await rig.store.recent_alarms(since=0) == {}


async def test_alarm_opens_incident_and_fires_step_zero(rig: Rig) -> None:
    assert await rig.alarm("t01", 1, Kind.FIRE) == "opened 1"
    incident = await rig.store.incident(1)
    assert incident is not None
    assert (incident.state, incident.kind, incident.household_id) == (State.OPEN, Kind.FIRE, "h01")
    assert (incident.next_step, incident.next_step_at) == (1, T0 + 120)
    rows = await rig.store.notifications(1)
    assert sorted(r.recipient for r in rows if r.channel == Channel.TERMINAL) == [f"t{n:02d}" for n in range(2, 11)]
    assert await rig.sms(1) == [LEADER, "pat1", "pat2"]
    assert [t.event for t in await rig.store.timeline(1)] == ["opened", "step 0"]


async def test_duplicate_device_seq_is_ignored(rig: Rig) -> None:
    assert await rig.alarm("t01", 7) == "opened 1"
    rig.clock.now += 5
    assert await rig.alarm("t01", 7) == "duplicate"
    assert [i.id for i in await rig.store.incidents()] == [1]
    assert len(await rig.store.timeline(1)) == 2  # opened, step 0: the redelivery left no trace


async def test_duplicate_is_recognised_by_a_restarted_engine_within_the_window_only(rig: Rig) -> None:
    # The engine keeps the window's (device, seq) in memory: a new engine on the same store (a restart)
    # must load them, and forget them when the window has passed.
    assert await rig.alarm("t01", 7) == "opened 1"
    assert await rig.alarm("t03", 9) == "opened 2"
    clock = FakeClock(rig.clock.now + 3000)
    restarted = new_engine(rig.store, clock)
    async with running(restarted):
        assert str(await asyncio.wait_for(restarted.call(Alarm("t01", Kind.PANIC, 7)), 5)) == "duplicate"
        clock.now += 601  # 3601 s after the first: outside the hour's window
        assert str(await asyncio.wait_for(restarted.call(Alarm("t03", Kind.PANIC, 9)), 5)) == "opened 3"
    assert sorted(i.id for i in await rig.store.incidents()) == [1, 2, 3]


async def test_duplicate_in_the_same_batch_is_ignored(rig: Rig) -> None:
    results = await asyncio.gather(rig.alarm("t04", 3), rig.alarm("t04", 3))
    assert sorted(results) == ["duplicate", "opened 1"]
    assert [i.id for i in await rig.store.incidents()] == [1]


async def test_alarms_from_one_household_join_within_the_window(rig: Rig) -> None:
    assert await rig.alarm("t02", 1, Kind.WATER) == "opened 1"
    rig.clock.now += 60
    assert await rig.alarm("s02", 1, Kind.SMOKE) == "joined 1"  # the sensor of the same house, another seq space
    joined = await rig.store.incident(1)
    assert joined is not None
    assert (joined.kind, joined.last_alarm_at, joined.opened_at) == (Kind.SMOKE, T0 + 60, T0)
    rig.clock.now += JOIN_WINDOW  # exactly at the window's edge, counted from the last alarm
    assert await rig.alarm("t02", 2) == "joined 1"
    rig.clock.now += JOIN_WINDOW + 1
    assert await rig.alarm("t02", 3) == "opened 2"
    # A neighbour's alarm in the meantime is its own incident.
    assert await rig.alarm("t05", 1) == "opened 3"


async def test_escalation_fires_on_tick_as_the_clock_moves(rig: Rig) -> None:
    await rig.alarm("t01", 1)
    rig.clock.now = T0 + 119
    assert await rig.call(Tick()) == "ok"
    assert await rig.sms(1, step=1) == []
    rig.clock.now = T0 + 120
    await rig.call(Tick())
    assert await rig.sms(1, step=1) == ["p08", "grid", "pat1", "pat2"]
    rig.clock.now = T0 + 300
    await rig.call(Tick())
    assert await rig.sms(1, step=2) == [DUTY]
    incident = await rig.store.incident(1)
    assert incident is not None
    assert (incident.next_step, incident.next_step_at) == (None, None)


# --- acknowledgements --------------------------------------------------------------------------------


async def test_reply_from_unknown_number(rig: Rig) -> None:
    await rig.alarm("t01", 1)
    assert await rig.call(Reply(STRANGER, "1", "twilio")) == "unknown_sender"
    incident = await rig.store.incident(1)
    assert incident is not None
    assert incident.state == State.OPEN


async def test_chat_from_a_known_number_is_not_a_command(rig: Rig) -> None:
    await rig.alarm("t01", 1)
    assert await rig.call(Reply(LEADER_PHONE, "好的我马上过去看看", "twilio")) == "not_a_command"
    incident = await rig.store.incident(1)
    assert incident is not None
    assert incident.state == State.OPEN


async def test_leader_replies_1_and_escalation_stops(rig: Rig) -> None:
    await rig.alarm("t01", 1)
    rig.clock.now = T0 + 42
    assert await rig.call(Reply(LEADER_PHONE, "1", "twilio")) == "acknowledged 1"
    incident = await rig.store.incident(1)
    assert incident is not None
    assert (incident.state, incident.acknowledged_at, incident.acknowledged_by) == (
        State.ACKNOWLEDGED, T0 + 42, "住户5",
    )  # fmt: skip
    stops = [r for r in await rig.store.notifications(1) if r.purpose == Purpose.STOP]
    assert len(stops) == 9
    assert {r.step for r in stops} == {STOP_STEP}
    rig.clock.now = T0 + 1000
    await rig.call(Tick())
    assert await rig.sms(1, step=0) == [LEADER, "pat1", "pat2"]
    assert await rig.sms(1) == [LEADER, "pat1", "pat2", "pat1", "pat2"]  # then who acknowledged; no step 1
    assert await rig.call(Reply(LEADER_PHONE, "1", "twilio")) == "incident 1 is already acknowledged"


async def test_reply_with_code_picks_that_incident(rig: Rig) -> None:
    assert await rig.alarm("t01", 1) == "opened 1"
    assert await rig.alarm("t03", 1) == "opened 2"
    assert await rig.call(Reply(PATROL_PHONE, "1 #1", "twilio")) == "acknowledged 1"
    first, second = await rig.store.incident(1), await rig.store.incident(2)
    assert first is not None
    assert second is not None
    assert (first.state, second.state) == (State.ACKNOWLEDGED, State.OPEN)


async def test_reply_without_code_acknowledges_newest_open_incident(rig: Rig) -> None:
    await rig.alarm("t01", 1)
    await rig.alarm("t03", 1)
    assert await rig.call(Reply(LEADER_PHONE, "1", "twilio")) == "acknowledged 2"
    # Incident 2 is acknowledged now; incident 1 is still open and escalating. A plain "1" means it.
    assert await rig.call(Reply(DUTY_PHONE, "1", "twilio")) == "acknowledged 1"


async def test_reply_3_false_alarm_resolves(rig: Rig) -> None:
    await rig.alarm("t01", 1)
    rig.clock.now = T0 + 90
    assert await rig.call(Reply(LEADER_PHONE, "3 误报", "modem")) == "resolved 1"
    incident = await rig.store.incident(1)
    assert incident is not None
    assert (incident.state, incident.outcome, incident.resolved_at) == (State.RESOLVED, Outcome.FALSE_ALARM, T0 + 90)
    assert incident.acknowledged_at == T0 + 90
    assert rig.engine.desk.active == {}
    assert await rig.call(Reply(LEADER_PHONE, "1", "modem")) == "no_incident"


async def test_terminal_ack_silences_the_incident(rig: Rig) -> None:
    await rig.alarm("t01", 1)
    assert await rig.call(TerminalAck("t04", None)) == "acknowledged 1"
    incident = await rig.store.incident(1)
    assert incident is not None
    assert incident.acknowledged_by == "4号户 王家"
    assert await rig.call(TerminalAck("t04", None)) == "no_incident"
    assert await rig.call(TerminalAck("unknown", None)) == "unknown_device"


async def test_operator_commands(rig: Rig) -> None:
    await rig.alarm("t01", 1)
    assert await rig.call(OperatorCommand(99, Action.ACKNOWLEDGE, "op")) == "incident 99 is not open"
    rig.clock.now = T0 + 30
    assert await rig.call(OperatorCommand(1, Action.ON_SCENE, "op")) == "on_scene 1"
    rig.clock.now = T0 + 600
    assert await rig.call(OperatorCommand(1, Action.RESOLVE, "op", outcome=Outcome.DRILL)) == "resolved 1"
    incident = await rig.store.incident(1)
    assert incident is not None
    assert (incident.acknowledged_at, incident.on_scene_at, incident.resolved_at, incident.outcome) == (
        T0 + 30, T0 + 30, T0 + 600, Outcome.DRILL,
    )  # fmt: skip
    events = [(t.event, t.actor) for t in await rig.store.timeline(1)]
    assert events[-2:] == [("on_scene", "op (operator)"), ("resolved", "op (operator)")]
    assert await rig.call(OperatorCommand(1, Action.CANCEL, "op")) == "incident 1 is not open"


# --- restart ---------------------------------------------------------------------------------------------


async def test_restart_resumes_open_incidents_and_fires_overdue_steps(store_at: StoreAt) -> None:
    clock = FakeClock(T0)
    store = await store_at.open()
    try:
        first = new_engine(store, clock)
        async with running(first):
            assert str(await asyncio.wait_for(first.call(Alarm("t01", Kind.FIRE, 1)), 5)) == "opened 1"
            assert str(await asyncio.wait_for(first.call(Alarm("t06", Kind.GAS, 1)), 5)) == "opened 2"
            assert str(await asyncio.wait_for(first.call(TerminalAck("t02", 2)), 5)) == "acknowledged 2"
    finally:
        await store.close()

    clock.now = T0 + 400  # down for almost seven minutes
    store = await store_at.open()
    try:
        second = new_engine(store, clock)
        await second.load()
        assert sorted(second.desk.active) == [1, 2]
        async with running(second):
            assert str(await asyncio.wait_for(second.call(Tick()), 5)) == "ok"
            rows = await store.notifications(1)
            assert sorted({r.step for r in rows}) == [0, 1, 2]
            assert [r.recipient for r in rows if r.step == 2] == [DUTY]
            assert {r.step for r in await store.notifications(2) if r.purpose == Purpose.ALERT} == {0}
            resumed = await store.incident(1)
            assert resumed is not None
            assert (resumed.next_step, resumed.next_step_at) == (None, None)
            # The redelivered alarm is still recognised, and new incidents continue the numbering.
            assert str(await asyncio.wait_for(second.call(Alarm("t01", Kind.FIRE, 1)), 5)) == "duplicate"
            clock.now += JOIN_WINDOW + 1
            assert str(await asyncio.wait_for(second.call(Alarm("t09", Kind.PANIC, 1)), 5)) == "opened 3"
    finally:
        await store.close()
