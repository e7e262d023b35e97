"""Test-only crash points: ALERTD_FAILPOINT=<name> makes the process die there, as a kill -9 would."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Where a crash hurts most; tests kill the daemon at each of these.
AFTER_RECEIVE = "after_receive"  # alarm read from the broker, not yet committed
AFTER_COMMIT = "after_commit"  # incident and outbox committed, nothing sent, broker not yet acknowledged
MID_FANOUT = "mid_fanout"  # some notifications of a batch sent, the rest not
AFTER_CALL = "after_call"  # an alert call placed with the carrier, not yet recorded as placed
KNOWN = frozenset({AFTER_RECEIVE, AFTER_COMMIT, MID_FANOUT, AFTER_CALL})


@dataclass(frozen=True, slots=True)
class Failpoints:
    armed: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Failpoints:
        name = environ.get("ALERTD_FAILPOINT") or None
        return cls(name if name in KNOWN else None)

    def hit(self, name: str) -> None:
        if self.armed == name:
            os._exit(137)  # no cleanup, no flush: exactly what a kill -9 leaves behind
