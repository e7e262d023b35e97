"""Loaded only by scripts/test-any-hour.sh (PYTHONPATH), never by alertd or its tests.

libfaketime 0.9.10 with the monotonic clock left alone makes clock_nanosleep fail with EINVAL, which
breaks time.sleep (and subprocess waits, paho's reconnect). A select() timeout is relative and untouched,
so sleep through it for the faked-hour run.
"""

import select
import time


def _sleep(seconds: float) -> None:
    select.select([], [], [], max(0.0, seconds))


time.sleep = _sleep
