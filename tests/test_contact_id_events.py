"""Contact ID reports beyond alarms, through the ingress mapping and the real engine and store: arming
and disarming, test reports as check-ins, troubles that open and close maintenance incidents, and
valid reports with codes alertd does not know."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alertd.core.events import Arming, Input, Supervision, SupervisionKind
from alertd.core.incidents import Channel, State
from alertd.core.messages import Texts
from alertd.core.model import Device, Roster
from alertd.core.profile import DeviceProfile, Transport
from alertd.core.supervision import Condition, Reported, assess
from alertd.engine import Engine
from alertd.ingress.contact_id import to_input
from alertd.metrics import Metrics
from alertd.protocols.contact_id import build_message, parse_message
from alertd.store import Store
from tests.test_core_incidents import GRID, make_roster
from tests.test_supervision import GRACE, SMOKE, T0, TERMINAL, Clock, tick

ACCOUNT = "1234"
PANEL = "c03"  # the alarm panel of house 3: account 1234, every zone
DETECTOR = "c03z3"  # a smoke detector on zone 3 of the same panel, mapped on its own
PANEL_PROFILE = DeviceProfile("contact-id", "panel", Transport.CONTACT_ID, checkin_s=86400)


def panel_roster() -> Roster:
    roster = make_roster()
    panel = Device(PANEL, "h03", profile="contact-id", ringable=False, account=ACCOUNT)
    detector = Device(DETECTOR, "h03", profile="contact-id", ringable=False, account=ACCOUNT, zone=3)
    house = roster.households["h03"]
    return Roster(
        people=roster.people,
        households={**roster.households, "h03": dataclasses.replace(house, devices=(*house.devices, PANEL, DETECTOR))},
        groups=roster.groups,
        devices={**roster.devices, PANEL: panel, DETECTOR: detector},
        patrols=roster.patrols,
        duty=roster.duty,
    )


ROSTER = panel_roster()


def report(qualifier: int, code: int, zone: int = 0, group: int = 1) -> Input:
    item = to_input(parse_message(build_message(ACCOUNT, qualifier, code, group, zone)), ROSTER)
    assert item is not None
    return item


# --- what a report means to the engine (pure) -------------------------------------------------


def test_the_issue_vector_is_the_panel_disarmed_by_user_3() -> None:
    item = to_input(parse_message("1234181401020035"), ROSTER)
    assert item == Supervision(
        PANEL, SupervisionKind.OPEN_CLOSE, armed=Arming.DISARMED, user=3, detail="event 401 open/close by user, user 3"
    )


def test_a_user_number_never_picks_the_detector_with_that_zone_number() -> None:
    # User 3 arms the panel; zone 3 is the smoke detector, which must not be credited with it.
    assert isinstance(closing := report(3, 441, zone=3), Supervision)
    assert (closing.device_id, closing.armed, closing.user) == (PANEL, Arming.ARMED_STAY, 3)
    assert isinstance(tamper := report(1, 383, zone=3), Supervision)
    assert tamper.device_id == DETECTOR, "a zone number still picks the zone's device"


@pytest.mark.parametrize(
    ("qualifier", "code", "expected"),
    [
        (1, 999, Supervision(PANEL, SupervisionKind.OTHER, detail="event 999 unknown event code, zone 0")),
        (3, 305, Supervision(PANEL, SupervisionKind.OTHER, restore=True, detail="event 305 system reset, zone 0")),
        (1, 406, Supervision(PANEL, SupervisionKind.OTHER, detail="event 406 cancel, user 0")),
        (1, 601, Supervision(PANEL, SupervisionKind.TEST, detail="event 601 manual test, zone 0")),
        (1, 602, Supervision(PANEL, SupervisionKind.TEST, detail="event 602 periodic test report, zone 0")),
        (1, 603, Supervision(PANEL, SupervisionKind.TEST, detail="event 603 periodic RF transmission, zone 0")),
        (1, 301, Supervision(PANEL, SupervisionKind.AC_LOSS, detail="event 301 AC loss, zone 0")),
        (3, 301, Supervision(PANEL, SupervisionKind.AC_LOSS, restore=True, detail="event 301 AC loss, zone 0")),
        (6, 350, Supervision(PANEL, SupervisionKind.COMM_TROUBLE, detail="event 350 communication trouble, zone 0")),
        (6, 401, Supervision(PANEL, SupervisionKind.OPEN_CLOSE, user=0, detail="event 401 open/close by user, user 0")),
    ],
)
def test_reports_that_are_not_alarms(qualifier: int, code: int, expected: Supervision) -> None:
    assert report(qualifier, code) == expected


# --- through the engine and the store -----------------------------------------------------------


@contextlib.asynccontextmanager
async def engine(tmp_path: Path, clock: Clock) -> AsyncIterator[tuple[Engine, Store]]:
    store = await Store.open(tmp_path / "alertd.db")
    eng = Engine(
        store, ROSTER, Texts(ZoneInfo("Asia/Shanghai")), Metrics(), clock=clock, grace_s=GRACE,
        supervision_interval_s=60,
    )  # fmt: skip
    eng.replace_roster(ROSTER, {"alertd-terminal": TERMINAL, "zigbee-smoke": SMOKE, "contact-id": PANEL_PROFILE})
    task = asyncio.create_task(eng.run())
    try:
        yield eng, store
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.close()


async def test_opening_and_closing_set_the_armed_state_which_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    async with engine(tmp_path, clock) as (eng, store):
        assert str(await eng.call(report(3, 401, zone=3))) == "ok"  # closed (armed) by user 3
        armed = (await store.devices())[PANEL]
        assert (armed.armed, armed.armed_user, armed.armed_at) == (Arming.ARMED, 3, T0)
        clock.now += 3600
        await eng.call(report(1, 401, zone=5))  # opened (disarmed) by user 5
        await eng.call(report(6, 401, zone=7))  # a status report says nothing new
        await eng.call(report(1, 602))  # nor does any other report
    async with engine(tmp_path, clock) as (eng, store):
        await eng.call(report(3, 441))  # armed stay, no user given (000)
        record = (await store.devices())[PANEL]
        assert await store.incidents() == [], "arming is never an alarm"
    assert (record.armed, record.armed_user, record.armed_at) == (Arming.ARMED_STAY, 0, T0 + 3600)


async def test_disarmed_by_user_then_nothing_else_changes(tmp_path: Path) -> None:
    clock = Clock()
    async with engine(tmp_path, clock) as (eng, store):
        await eng.call(report(1, 401, zone=5))
        clock.now += 60
        await eng.call(report(6, 401, zone=7))
        await eng.call(report(1, 602))
        record = (await store.devices())[PANEL]
    assert (record.armed, record.armed_user, record.armed_at) == (Arming.DISARMED, 5, T0)
    assert record.last_seen == T0 + 60


async def test_a_code_alertd_does_not_know_is_recorded_and_never_an_alarm(tmp_path: Path) -> None:
    clock = Clock()
    async with engine(tmp_path, clock) as (eng, store):
        assert str(await eng.call(report(1, 999, zone=12))) == "ok"
        await tick(eng, clock, 61)
        record = (await store.devices())[PANEL]
        assert await store.incidents() == []
    assert (record.last_seen, record.online, record.armed) == (T0, True, None)


@pytest.mark.parametrize("code", [601, 602, 603])
async def test_test_reports_are_check_ins(tmp_path: Path, code: int) -> None:
    clock = Clock()
    panel = ROSTER.devices[PANEL]
    async with engine(tmp_path, clock) as (eng, store):
        clock.now += 86400
        await eng.call(report(1, code))
        record = (await store.devices())[PANEL]
    assert (record.last_seen, record.last_test) == (T0 + 86400, T0 + 86400)
    later = T0 + 86400 + 86400 * 2  # two days on: within 2.5 check-in intervals of the test
    assert assess(panel, PANEL_PROFILE, record.reported(), later).healthy
    assert assess(panel, PANEL_PROFILE, Reported(), later).conditions == (Condition.NEVER_SEEN,)


@pytest.mark.parametrize(("code", "condition", "text"), [(301, "ac_loss", "停电"), (350, "comm_trouble", "通信故障")])
async def test_a_trouble_opens_a_maintenance_incident_after_the_grace_period_and_its_restore_closes_it(
    tmp_path: Path, code: int, condition: str, text: str
) -> None:
    clock = Clock()
    async with engine(tmp_path, clock) as (eng, store):
        await eng.call(report(1, code))
        await tick(eng, clock, 61)
        assert await store.incidents() == [], "a short power cut or line fault wakes nobody"
    # The condition is in the device record, so a restart inside the grace period does not forget it.
    async with engine(tmp_path, clock) as (eng, store):
        await tick(eng, clock, 0)  # loaded: its first review is one interval away
        assert (await store.devices())[PANEL].reported() == Reported(
            online=True, last_seen=T0, **{condition: True}
        )  # fmt: skip
        await tick(eng, clock, 61)
        await tick(eng, clock, GRACE)
        [case] = await store.incidents()
        assert (case.device_id, case.maintenance, case.state) == (PANEL, condition, State.OPEN)
        notes = await store.notifications(case.id)
        assert [(n.channel, n.recipient) for n in notes] == [(Channel.SMS, GRID)]
        assert f"3号户 王家 报警器{text}" in notes[0].body
        assert len(notes[0].body) <= 70

        await tick(eng, clock, 61)
        assert len(await store.incidents()) == 1, "one incident for one trouble"
        await eng.call(report(3, code))  # the restore
        await tick(eng, clock, 61)
        closed = await store.incident(case.id)
    assert closed is not None
    assert closed.state == State.RESOLVED
