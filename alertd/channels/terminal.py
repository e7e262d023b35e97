"""Ring and stop commands to terminals and sirens, published over the broker link."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from alertd.core.ports import Health, Outbound


class Publisher(Protocol):
    async def publish_all(self, commands: Sequence[tuple[str, str]]) -> list[Exception | None]: ...

    def health(self) -> Health: ...


class TerminalSender:
    """Ring and stop commands to terminals and sirens; the address is the MQTT topic (the core renders it
    from the device's profile). Sent means the broker took the command (PUBACK).

    A `BatchSender`: the outbox hands it every command it claimed at once. In a burst that is most of the
    daemon's messages (9 rings an alarm), and publishing them back to back with one wait for all their
    PUBACKs costs a fraction of an awaited publish each."""

    name = "mqtt"

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    async def send(self, message: Outbound) -> str | None:
        [error] = await self.send_all([message])
        if error is not None:
            raise error
        return None

    async def send_all(self, messages: Sequence[Outbound]) -> list[Exception | None]:
        return await self._publisher.publish_all([(m.address, m.body) for m in messages])

    async def find_sent(self, message: Outbound) -> str | None:
        # The broker keeps no record we can ask; a repeated ring or stop is harmless to a terminal.
        return None

    def health(self) -> Health:
        return self._publisher.health()
