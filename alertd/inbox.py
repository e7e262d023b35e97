"""Where every input waits for the single writer: one queue, filled by the adapters (the broker link,
the serial receivers, the modem, the HTTP side) and emptied by the engine in batches.

It exists on its own so the parts can be built in a straight line: the adapters get `submit` before
the engine that drains it exists, and nothing is wired up afterwards.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from alertd.core.events import Input
from alertd.core.ports import Done


@dataclass(slots=True)
class Envelope:
    input: Input
    done: Done | None = None  # called once the input's effects are committed


class Inbox:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Envelope] = asyncio.Queue()

    def submit(self, item: Input, done: Done | None = None) -> None:
        self._queue.put_nowait(Envelope(item, done))

    async def get(self) -> Envelope:
        return await self._queue.get()

    def take(self, limit: int) -> list[Envelope]:
        """Up to `limit` inputs that are already waiting, without waiting for more."""
        taken: list[Envelope] = []
        while len(taken) < limit and not self._queue.empty():
            taken.append(self._queue.get_nowait())
        return taken
