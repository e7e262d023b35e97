"""评单, the household's rating of a resolved alarm (the county's 点单 → 接单 → 派单 → 办单 → 评单 loop):
the follow-up text, its SMS answer read by the reply grammar, the rating entered on the console, what may not
be rated, and the store keeping who is still asked across a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.core.desk import EVALUATION_WINDOW_S, FOLLOW_UP_STEP, Desk, Seen
from alertd.core.events import Action, Alarm, Evaluation, OperatorCommand, Outcome, Rating, Reply, Satisfaction, Tick
from alertd.core.model import Kind
from alertd.core.records import Batch, Purpose, State
from alertd.core.results import Verdict
from alertd.protocols.replies import parse_reply
from alertd.store import Store
from tests.test_core_incidents import GRID
from tests.test_desk import ROSTER, T0, decide, desk_with

RESIDENT = ROSTER.people["p02"]  # lives in h02, whose terminal is t02


def resolved(outcome: Outcome = Outcome.REAL, *, silent: bool = False) -> tuple[Desk, Batch]:
    """A desk where h02's alarm (incident 1) was resolved at T0 + 600, and that resolution's batch."""
    desk = desk_with()
    desk.decide(Alarm("t02", Kind.FIRE, seq=None, silent=silent), T0, Seen(), Batch(T0))
    batch = Batch(T0 + 600)
    result = desk.decide(OperatorCommand(1, Action.RESOLVE, "值班员", outcome), T0 + 600, Seen(), batch)
    assert result.verdict == Verdict.ACTED
    return desk, batch


def test_a_resolved_alarm_asks_its_household_in_one_text() -> None:
    _, batch = resolved()
    follow_ups = [n for n in batch.notifications if n.step == FOLLOW_UP_STEP]
    assert [(n.recipient, n.address, n.purpose) for n in follow_ups] == [("p02", RESIDENT.phone, Purpose.NOTICE)]
    assert "满意、基本满意或不满意 #1" in follow_ups[0].body
    assert len(follow_ups[0].body) <= 70  # one UCS-2 segment


@pytest.mark.parametrize(
    ("outcome", "silent"), [(Outcome.FALSE_ALARM, False), (Outcome.DRILL, False), (Outcome.REAL, True)]
)
def test_false_alarms_drills_and_silent_alarms_are_not_followed_up(outcome: Outcome, silent: bool) -> None:
    # A silent panic: whoever forced it may be reading the household's phone.
    desk, batch = resolved(outcome, silent=silent)
    assert not [n for n in batch.notifications if n.step == FOLLOW_UP_STEP]
    assert desk.awaiting == {}


def test_the_households_answer_rates_the_incident_once() -> None:
    desk, _ = resolved()
    result, batch = decide(desk, Reply(RESIDENT.phone, "基本满意", "twilio", "twilio:SM9"), T0 + 900)
    assert (result.verdict, result.incident_id, result.detail) == (Verdict.EVALUATED, 1, "fair")
    incident = batch.incidents[1]
    assert incident.satisfaction == Satisfaction.FAIR
    assert incident.evaluated_by == "住户2 (sms)"
    assert [(t.event, t.detail) for t in batch.timeline] == [("evaluated", "基本满意")]
    again, _ = decide(desk, Reply(RESIDENT.phone, "不满意", "twilio", "twilio:SM10"), T0 + 950)
    assert again.verdict == Verdict.NO_INCIDENT  # rated already: a second answer changes nothing


def test_only_the_households_own_people_can_rate_it_and_only_in_time() -> None:
    desk, _ = resolved()
    neighbour = ROSTER.people["p03"]
    assert decide(desk, Reply(neighbour.phone, "满意", "twilio"), T0 + 900)[0].verdict == Verdict.NO_INCIDENT
    assert decide(desk, Reply(RESIDENT.phone, "满意 #7", "twilio"), T0 + 900)[0].verdict == Verdict.NO_INCIDENT
    later = T0 + 600 + EVALUATION_WINDOW_S + 1
    desk.tick(later, Batch(later))
    assert decide(desk, Reply(RESIDENT.phone, "满意", "twilio"), later)[0].verdict == Verdict.NO_INCIDENT


def test_dissatisfied_sends_the_grid_worker_to_call_back() -> None:
    desk, _ = resolved()
    result, batch = decide(desk, Reply(RESIDENT.phone, "不满意 #1", "twilio"), T0 + 900)
    assert result.verdict == Verdict.EVALUATED
    [call_back] = batch.notifications
    assert call_back.recipient == GRID
    assert "不满意" in call_back.body
    assert "回访" in call_back.body


def test_the_console_can_rate_a_resolved_incident_even_after_the_window_but_not_an_open_one() -> None:
    desk, resolution = resolved()
    record = resolution.incidents[1]
    later = T0 + 10 * 86400
    desk.tick(later, Batch(later))
    assert desk.awaiting == {}
    # The engine looked the closed incident up in the store for this batch.
    result, batch = decide(desk, Evaluation(1, Satisfaction.SATISFIED, "小李 (web:127.0.0.1)"), later,
                           Seen(closed={1: record}))  # fmt: skip
    assert result.verdict == Verdict.EVALUATED
    assert batch.incidents[1].evaluated_by == "小李 (web:127.0.0.1) (console)"
    rated = batch.incidents[1]
    again, _ = decide(desk, Evaluation(1, Satisfaction.FAIR, "小李"), later, Seen(closed={1: rated}))
    assert again.verdict == Verdict.REFUSED
    assert "evaluated already" in again.detail
    open_desk = desk_with(("t03", T0))
    refused, _ = decide(open_desk, Evaluation(1, Satisfaction.FAIR, "小李"), T0 + 5, Seen(closed={}))
    assert refused.verdict == Verdict.REFUSED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("满意", Rating(Satisfaction.SATISFIED)),
        ("基本满意", Rating(Satisfaction.FAIR)),
        ("不满意", Rating(Satisfaction.DISSATISFIED)),
        ("不满意 #17", Rating(Satisfaction.DISSATISFIED, "17")),
        ("#17 满意", Rating(Satisfaction.SATISFIED, "17")),
        ("满意。", Rating(Satisfaction.SATISFIED)),
        ("ｍ满意", None),  # anything else around it is chat
        ("很满意", None),
        ("不满意 #1 #2", None),
        ("满意 谢谢", None),
    ],
)
def test_the_reply_grammar_reads_ratings(text: str, expected: Rating | None) -> None:
    assert parse_reply(text) == expected


async def test_the_store_keeps_who_is_still_asked_and_the_rating(tmp_path: Path) -> None:
    desk, resolution = resolved()
    store = await Store.open(tmp_path / "alertd.db")
    try:
        opened = Batch(T0)
        desk2 = desk_with()
        desk2.decide(Alarm("t02", Kind.FIRE, seq=None), T0, Seen(), opened)
        await store.commit(opened)
        await store.commit(resolution)
        [waiting] = await store.awaiting_evaluation(T0)
        assert (waiting.id, waiting.state, waiting.satisfaction) == (1, State.RESOLVED, None)
        assert await store.awaiting_evaluation(T0 + 601) == []  # resolved before `since`
        _, rated = decide(desk, Reply(RESIDENT.phone, "满意", "twilio"), T0 + 900)
        await store.commit(rated)
        assert await store.awaiting_evaluation(T0) == []
        incident = await store.incident(1)
        assert incident is not None
        assert incident.satisfaction == Satisfaction.SATISFIED
        assert incident.evaluated_by == "住户2 (sms)"
    finally:
        await store.close()


def test_a_tick_keeps_an_answer_in_time() -> None:
    desk, _ = resolved()
    desk.tick(T0 + 600 + EVALUATION_WINDOW_S - 1, Batch(T0))
    assert list(desk.awaiting) == [1]
    assert decide(desk, Tick(), T0)[0].verdict == Verdict.RECORDED
