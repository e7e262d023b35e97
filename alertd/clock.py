"""The daemon's clock: wall time as it was at start, carried forward by the monotonic clock.

Border servers without an uplink drift, then step when NTP comes back. If escalation, retries, windows
and supervision followed the wall clock, a step back of an hour would hold the deputy's SMS for an hour,
and a step forward would fire every remaining step at once and let a redelivered alarm ring again. So
within a process every timer runs on this clock, which never steps: it is the wall time read once at
start plus the monotonic time elapsed since.

Wall time is kept for the record and for restarts: timestamps are stored as epoch seconds, and a new
process anchors on the wall clock again. A step while running is detected (`check`), logged once and
exposed as the offset between the wall clock and this one; the record keeps the daemon's steady time
until the next restart takes the corrected time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)

# A disagreement between the wall clock and the steady one larger than this is a step, not jitter or
# NTP's gradual slewing (at most 0.5 ms/s, i.e. 1.8 s an hour).
STEP_THRESHOLD_S = 2.0
CHECK_INTERVAL_S = 1.0  # a subtraction a second: cheap, and the log line comes while it matters


class SteadyClock:
    """A callable returning epoch seconds that never jump (see the module doc)."""

    def __init__(
        self,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        step_threshold_s: float = STEP_THRESHOLD_S,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self.step_threshold_s = step_threshold_s
        self._anchor = wall() - monotonic()
        self.offset = 0.0  # the wall clock minus this one, as of the last check

    def __call__(self) -> float:
        return self._anchor + self._monotonic()

    def check(self) -> float | None:
        """Compare with the wall clock: the size of a step since the last check (logged once), or None."""
        offset = self._wall() - self()
        step = offset - self.offset
        self.offset = offset
        if abs(step) < self.step_threshold_s:
            return None
        _LOGGER.warning(
            "Wall clock stepped by %+.1f s (now %+.1f s from the clock alertd started with); escalation, "
            "retries and windows are not affected; new records keep alertd's time until it is restarted",
            step, offset,
        )  # fmt: skip
        return step
