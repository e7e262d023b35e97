"""What a carrier (Twilio, console, MQTT terminal link, GSM modem) must offer the outbox workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
