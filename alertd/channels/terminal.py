"""Ring and stop commands to terminals and sirens, published over the broker link."""

from __future__ import annotations

from typing import Protocol

from alertd.channels.base import Health, Outbound
from alertd.protocols.terminal import Topics


class Publisher(Protocol):
    async def publish(self, topic: str, payload: str) -> None: ...

    def health(self) -> Health: ...


class TerminalSender:
    """A carrier whose address is a device id; sent means the broker took the command (PUBACK)."""

    name = "mqtt"

    def __init__(self, publisher: Publisher, topics: Topics) -> None:
        self._publisher = publisher
        self._topics = topics

    async def send(self, message: Outbound) -> str | None:
        await self._publisher.publish(self._topics.cmd(message.address), message.body)
        return None

    async def find_sent(self, message: Outbound) -> str | None:
        # The broker keeps no record we can ask; a repeated ring or stop is harmless to a terminal.
        return None

    def health(self) -> Health:
        return self._publisher.health()
