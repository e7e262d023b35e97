"""A carrier that prints SMS to a text stream: used when no Twilio account is configured (demos, dry runs)."""

from __future__ import annotations

import sys
from typing import TextIO

from alertd.core.ports import Health, Outbound
from alertd.phones import mask

__all__ = ["ConsoleSender"]


class ConsoleSender:
    """Writes `SMS → +86138****0001: body` per message; never fails."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        # Resolved now rather than as a default argument so a redirected sys.stdout is honoured.
        self._stream = stream if stream is not None else sys.stdout
        self._count = 0

    async def send(self, message: Outbound) -> str:
        self._count += 1
        # One line per message keeps the output greppable; templates may contain newlines.
        body = message.body.replace("\r\n", "\n").replace("\n", " ⏎ ")
        self._stream.write(f"SMS → {mask(message.address)}: {body}\n")
        self._stream.flush()
        return f"console-{self._count}"

    async def find_sent(self, message: Outbound) -> str | None:
        # Nothing is remembered across a restart, so resending is the honest answer.
        return None

    def health(self) -> Health:
        return Health(ok=True)
