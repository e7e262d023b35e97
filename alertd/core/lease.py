"""Who is active: a lease in the shared database with a fencing token (issue 15), decided here, pure.

Two or more alertd instances share one PostgreSQL. Exactly one is active: the one holding the lease, a single
row (holder, token, expires_at). Why a lease and not an advisory lock: an advisory lock lives as long as a
database session, so a deposed active whose connection hangs half-open keeps it, and nothing in its own
transactions can prove it still holds it. A lease is data: every commit and every outbox claim of the active
checks, in the same transaction, that the row still holds its token (fencing), so a deposed active's write
fails even if it does not know yet that it was deposed; and its expiry is read on the database's clock, so the
instances' own clocks do not have to agree.

The timing, from `takeover_s` (the longest an alarm waits for a standby once the active dies, default 5 s).
A takeover is the lease running out, a standby's next look, and the standby's start as active (opening the
store, loading the open incidents, joining the broker's session: about half a second), so:
* the lease lasts `lease_s` = 60 % of `takeover_s` on the database's clock from each renewal (3 s);
* the active renews every `lease_s / 3` (1 s), so two renewals can fail before it is in danger;
* the active stops acting on its own when `lease_s - margin_s` have passed (2.25 s), by its monotonic clock,
  since it *asked* for its last successful renewal: it stops before any standby can start;
* a standby looks every `takeover_s / 10` (0.5 s) and takes the lease once it has expired: 3.5 s after the
  active's last renewal at the latest, which leaves 1.5 s of `takeover_s` for starting.

This module decides from what the row says and what time it is; reading and writing the row (one UPDATE ...
RETURNING each time) is the store's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

TAKEOVER_S = 5.0
LEASE_SHARE = 0.6  # of takeover_s: the rest is a standby's look and its start as active
MARGIN_SHARE = 0.25  # of the lease: the active stops acting this long before its lease can expire for the others


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """The lease as the database holds it, with the database's clock when it was read."""

    holder: str  # the active instance's name; "" when nobody ever held it
    token: int  # grows by one at every takeover: the fencing token
    expires_at: float  # on the database's clock
    db_now: float  # the database's clock when this was read


class Move(StrEnum):
    TAKE = "take"  # nobody holds it, or the holder's lease expired: take it with token + 1
    RENEW = "renew"  # ours and still valid: push expires_at on, same token
    WAIT = "wait"  # another instance holds a valid lease: stay standby


@dataclass(frozen=True, slots=True)
class Timing:
    takeover_s: float = TAKEOVER_S

    def __post_init__(self) -> None:
        if self.takeover_s <= 0:
            raise ValueError("takeover_s must be > 0")

    @property
    def lease_s(self) -> float:
        """How long a take or renewal holds the lease, on the database's clock."""
        return self.takeover_s * LEASE_SHARE

    @property
    def renew_every_s(self) -> float:
        return self.lease_s / 3

    @property
    def look_every_s(self) -> float:
        return self.takeover_s / 10

    @property
    def acts_for_s(self) -> float:
        """How long after asking for a renewal that succeeded the active may still act."""
        return self.lease_s * (1 - MARGIN_SHARE)


def move(row: LeaseRow, me: str) -> Move:
    """What to do with the lease row as just read."""
    if row.holder == me and row.expires_at > row.db_now:
        return Move.RENEW
    if row.holder == "" or row.expires_at <= row.db_now:
        return Move.TAKE
    return Move.WAIT


@dataclass(frozen=True, slots=True)
class Standing:
    """This instance's view of itself: active with a token until a moment of its own monotonic clock, or
    standby (token None)."""

    token: int | None = None
    acts_until: float = 0.0  # monotonic
    active_holder: str = ""  # who is active, as last read (for /healthz and alertd status)

    def may_act(self, monotonic_now: float) -> bool:
        """Commit, claim and send only while this is true; fencing in the database catches the rest."""
        return self.token is not None and monotonic_now < self.acts_until

    @property
    def active(self) -> bool:
        return self.token is not None


def after_write(standing: Standing, me: str, written: LeaseRow | None, asked_at: float, timing: Timing) -> Standing:
    """The standing after a TAKE or RENEW was attempted at monotonic `asked_at`: `written` is the row the
    conditional UPDATE returned (None: it matched nothing: another took it first, or it was not ours any
    more). The time is counted from when it was asked, not answered: a slow answer must not lengthen it."""
    if written is None or written.holder != me:
        return Standing(None, 0.0, written.holder if written is not None else standing.active_holder)
    return Standing(written.token, asked_at + timing.acts_for_s, me)


def after_read(standing: Standing, me: str, row: LeaseRow) -> Standing:
    """A standby's look: who is active now (a standby never becomes active by reading)."""
    if standing.token is not None and (row.holder != me or row.token != standing.token):
        return Standing(None, 0.0, row.holder)  # deposed: someone took over
    return Standing(standing.token, standing.acts_until, row.holder if row.expires_at > row.db_now else "")
