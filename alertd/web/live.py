"""Committed incident changes, fanned out to the console's open boards (server-sent events).

The engine calls `publish` after each commit with the incidents it changed; every open board has a small
queue of its own. A board that falls behind (a full queue) is told to reload everything rather than make the
engine wait: the engine never blocks on a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator

from alertd.core.records import Batch

QUEUE_SIZE = 256
EVERYTHING = -1  # in a board's queue: it missed changes, reload the whole board


class Live:
    def __init__(self) -> None:
        self._boards: set[asyncio.Queue[tuple[int, str] | None]] = set()
        self.version = 0  # moves with every published change: what a board rendered before is stale

    def publish(self, changes: Iterable[tuple[int, str]]) -> None:
        """(incident id, group id) of each incident a commit changed."""
        changes = list(changes)
        if not changes:
            return
        self.version += 1
        for queue in self._boards:
            for change in changes:
                try:
                    queue.put_nowait(change)
                except asyncio.QueueFull:
                    _drain(queue)
                    queue.put_nowait((EVERYTHING, ""))
                    break

    def committed(self, batch: Batch) -> None:
        """The engine's hook: the incidents of a committed batch."""
        self.publish((i.id, i.group_id) for i in batch.incidents.values())

    @contextlib.contextmanager
    def board(self) -> Iterator[asyncio.Queue[tuple[int, str] | None]]:
        queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue(QUEUE_SIZE)
        self._boards.add(queue)
        try:
            yield queue
        finally:
            self._boards.discard(queue)

    @property
    def boards(self) -> int:
        return len(self._boards)

    def close(self) -> None:
        """Shutting down: every board's stream ends now (browsers reconnect to the next daemon)."""
        for queue in self._boards:
            _drain(queue)
            queue.put_nowait(None)


def _drain(queue: asyncio.Queue[tuple[int, str] | None]) -> None:
    while not queue.empty():
        queue.get_nowait()
