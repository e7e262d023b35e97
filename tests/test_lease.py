"""Who is active (alertd/core/lease.py), as tables: the lease row as read, and what each instance does."""

from __future__ import annotations

import pytest

from alertd.core.lease import LeaseRow, Move, Standing, Timing, after_read, after_write, move

T = 1_800_000_000.0  # the database's clock
TIMING = Timing(takeover_s=5.0)  # a lease of 3 s, renewed every 1 s, acted on for 2.25 s


@pytest.mark.parametrize(
    ("row", "me", "expected"),
    [
        (LeaseRow("", 0, 0.0, T), "a", Move.TAKE),  # never held
        (LeaseRow("b", 7, T - 0.001, T), "a", Move.TAKE),  # b's lease expired
        (LeaseRow("b", 7, T, T), "a", Move.TAKE),  # expiring exactly now counts as expired
        (LeaseRow("b", 7, T + 3, T), "a", Move.WAIT),  # b is active
        (LeaseRow("a", 7, T + 3, T), "a", Move.RENEW),  # ours, valid
        (LeaseRow("a", 7, T - 1, T), "a", Move.TAKE),  # ours but expired: taken again, with a new token
    ],
)
def test_what_to_do_with_the_row(row: LeaseRow, me: str, expected: Move) -> None:
    assert move(row, me) == expected


def test_timing_follows_the_takeover_time() -> None:
    assert (TIMING.lease_s, TIMING.renew_every_s, TIMING.look_every_s, TIMING.acts_for_s) == (3.0, 1.0, 0.5, 2.25)
    # The lease's end plus a standby's look leaves time within takeover_s for the standby to start.
    assert TIMING.lease_s + TIMING.look_every_s <= TIMING.takeover_s - 1.0
    with pytest.raises(ValueError, match="takeover_s"):
        Timing(takeover_s=0.0)


def test_a_won_write_makes_active_for_the_time_counted_from_the_asking() -> None:
    standing = after_write(Standing(), "a", LeaseRow("a", 8, T + 3, T), asked_at=100.0, timing=TIMING)
    assert (standing.token, standing.acts_until, standing.active_holder) == (8, 102.25, "a")
    assert standing.may_act(102.2)
    assert not standing.may_act(102.25), "it stops before the lease can expire for a standby"


def test_a_lost_write_or_a_renewal_that_never_came_stops_the_active() -> None:
    active = Standing(8, 104.0, "a")
    assert after_write(active, "a", None, asked_at=102.0, timing=TIMING) == Standing(None, 0.0, "a")
    taken = after_write(active, "a", LeaseRow("b", 9, T + 5, T), asked_at=102.0, timing=TIMING)
    assert (taken.active, taken.active_holder) == (False, "b")
    # No answer at all: it keeps its last acts_until and stops acting at it by itself.
    assert not active.may_act(104.5)


def test_a_read_shows_who_is_active_and_deposes_an_active_whose_token_moved_on() -> None:
    standby = after_read(Standing(), "a", LeaseRow("b", 9, T + 2, T))
    assert (standby.active, standby.active_holder) == (False, "b")
    assert after_read(Standing(), "a", LeaseRow("b", 9, T - 2, T)).active_holder == "", "nobody is active"
    deposed = after_read(Standing(8, 104.0, "a"), "a", LeaseRow("b", 9, T + 5, T))
    assert (deposed.active, deposed.active_holder) == (False, "b")
    still = after_read(Standing(8, 104.0, "a"), "a", LeaseRow("a", 8, T + 5, T))
    assert still == Standing(8, 104.0, "a")


def test_two_instances_never_both_act() -> None:
    """A walk through a takeover on one database clock: a's renewals stop (it hangs); b takes over only after
    the lease expired; a, by its own clock, stopped acting before that."""
    a = after_write(Standing(), "a", LeaseRow("a", 1, T + 3, T), asked_at=0.0, timing=TIMING)  # monotonic 0
    # b looks every half second; the lease (database clock) expires at T + 3.
    for look in range(1, 6):
        assert move(LeaseRow("a", 1, T + 3, T + look * TIMING.look_every_s), "b") == Move.WAIT
    assert not a.may_act(2.25), "a stopped at 2.25 s, before b may take over at 3 s"
    assert move(LeaseRow("a", 1, T + 3, T + 3), "b") == Move.TAKE
    b = after_write(Standing(), "b", LeaseRow("b", 2, T + 6, T + 3), asked_at=50.0, timing=TIMING)
    assert b.may_act(50.1)
    # a wakes up and tries to renew: the conditional UPDATE (holder = a, token = 1) matches nothing.
    assert not after_write(a, "a", None, asked_at=6.0, timing=TIMING).active
