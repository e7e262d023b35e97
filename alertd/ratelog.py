"""Warnings sized for floods: the first of a kind is logged, repeats within a window are only counted.

2,000 malformed messages from one broken terminal must not bury the one line an operator needs. Each
warning names a key (its reason and the device or sender it is about); within WINDOW_S of the first line
for a key, repeats are counted silently, and the next line for that key says how many were left out.
The metrics count every one regardless.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

WINDOW_S = 60.0
MAX_KEYS = 10_000  # a flood of distinct keys (random device ids) must not grow memory without bound


class RateLimitedLog:
    def __init__(
        self, logger: logging.Logger, *, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.window_s = window_s
        self.clock = clock
        self._last: dict[str, float] = {}  # key -> when its last line was logged
        self._suppressed: dict[str, int] = {}

    def warning_for(self, key: str, message: str, *args: object) -> None:
        self.log_for(logging.WARNING, key, message, *args)

    def log_for(self, level: int, key: str, message: str, *args: object) -> None:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.window_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        if len(self._last) >= MAX_KEYS:
            self._forget(now)
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped and last is not None:
            message += " (%d more like this in the last %.0f s not logged)"
            args = (*args, skipped, now - last)
        self.logger.log(level, message, *args)

    def _forget(self, now: float) -> None:
        for key in [k for k, at in self._last.items() if now - at >= self.window_s]:
            del self._last[key]
            self._suppressed.pop(key, None)
        if len(self._last) >= MAX_KEYS:  # all recent: drop the oldest half rather than grow
            for key in sorted(self._last, key=self._last.__getitem__)[: MAX_KEYS // 2]:
                del self._last[key]
                self._suppressed.pop(key, None)
