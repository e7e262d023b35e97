"""The interfaces the edges implement, in one place, imported by the core and the adapters alike.

Carriers (Twilio, the modem, the console, the MQTT terminal link) offer the outbox workers a `Sender`;
ingress adapters hand inputs to the engine through `Submit`; the command renderer (`alertd.commands`)
tells the core which devices can sound and what to send them. No logic here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from alertd.core.events import Input
    from alertd.core.model import Device, Household, Kind
    from alertd.core.results import Result

# How an adapter hands the engine an input: done(result) is called once the input's effects are committed
# (an MQTT PUBACK, a receiver ACK, deleting an SMS from the SIM wait for it).
Done = Callable[["Result"], None]
Submit = Callable[["Input", Done | None], None]


@dataclass(frozen=True, slots=True)
class Outbound:
    """One outbox row as a carrier sees it."""

    id: int
    address: str  # E.164 phone or device id
    body: str
    created_at: float  # epoch; reconciliation looks for messages sent after this
    # An alarm text: a carrier that has not answered within [sms] hedge_after_s is hedged with the next
    # one (a duplicate beats a delay). Maintenance, digest and disk notices wait for the carrier's answer.
    urgent: bool = False
    # What the text says as a template carrier needs it (Aliyun SMS): the message's kind ("alert",
    # "maintenance", ...; alertd.core.messages) and its parameters. Empty for rings and stops.
    template: str = ""
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a composite sender (failover) returns: which carrier took the message, and its id there."""

    carrier: str
    provider_id: str | None = None
    note: str | None = None  # kept on the outbox row and shown by `alertd show` (e.g. "hedged after 3 s: ...")


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str = "ok"


class Sender(Protocol):
    """A carrier. send() raises TransientError (retry later) or PermanentError (record, never retry)."""

    name: str

    async def send(self, message: Outbound) -> str | Receipt | None:
        """Send once; return the provider's id for the message if it has one (a Receipt when the
        sender chooses among carriers)."""
        ...

    async def find_sent(self, message: Outbound) -> str | Receipt | None:
        """After a crash mid-send: the provider id if the provider already has this message, else None."""
        ...

    def health(self) -> Health: ...


@runtime_checkable
class BatchSender(Sender, Protocol):
    """A carrier that takes many messages at once: the broker link publishes a claimed batch of ring and
    stop commands back to back and waits for their PUBACKs together, not one awaited call per command."""

    async def send_all(self, messages: Sequence[Outbound]) -> Sequence[Exception | None]:
        """Send each once; for each, in order, None (sent; no provider id) or the error send() would raise."""
        ...


class Commands(Protocol):
    """Which devices sound for an incident, and the (topic, payload) that makes them sound or stop."""

    def is_terminal(self, device: Device) -> bool:
        """One of our alarm terminals (it shows the caller; the caller's own is never rung)."""
        ...

    def ring(self, device: Device, incident_id: int, kind: Kind, caller: Household) -> tuple[str, str] | None:
        """The command that makes `device` sound for an incident at `caller`; None if it cannot sound."""
        ...

    def stop(self, device_id: str, incident_id: int, kind: Kind) -> tuple[str, str] | None: ...
