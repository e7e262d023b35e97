"""Ring and stop commands to terminals and sirens, published over the broker link."""

from __future__ import annotations

from typing import Protocol

from alertd.core.ports import Health, Outbound


class Publisher(Protocol):
    async def publish(self, topic: str, payload: str) -> None: ...

    def health(self) -> Health: ...


class TerminalSender:
    """Ring and stop commands to terminals and sirens; the address is the MQTT topic (the core renders it
    from the device's profile). Sent means the broker took the command (PUBACK)."""

    name = "mqtt"

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    async def send(self, message: Outbound) -> str | None:
        await self._publisher.publish(message.address, message.body)
        return None

    async def find_sent(self, message: Outbound) -> str | None:
        # The broker keeps no record we can ask; a repeated ring or stop is harmless to a terminal.
        return None

    def health(self) -> Health:
        return self._publisher.health()
