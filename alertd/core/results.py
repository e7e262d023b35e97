"""What the desk made of one input: a verdict, the incident it concerns, a detail. Typed all the way to
the CLI and the HTTP status, so nothing downstream has to read the words."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    OPENED = "opened"  # a new incident
    JOINED = "joined"  # a further alarm from a household with an open incident
    ACTED = "acted"  # an action moved an incident (detail: its new state)
    RESTORE = "restore"  # a restore noted in an incident's timeline
    RECORDED = "ok"  # device news, a delivery report, a tick: recorded, nothing to decide
    DUPLICATE = "duplicate"  # an alarm already handled (QoS 1 redelivery)
    REPLAY = "replay"  # an inbound message already handled
    UNKNOWN_DEVICE = "unknown_device"
    NOT_WATCHED = "not_watched"  # Zigbee2MQTT news of a device alertd does not watch
    UNKNOWN_SENDER = "unknown_sender"
    NOT_A_COMMAND = "not_a_command"
    NO_INCIDENT = "no_incident"  # nothing open for it to act on
    INVALID = "invalid"  # a payload the codec refused (detail: the reason)
    NOT_OPEN = "not_open"  # an operator named an incident that is not open
    REFUSED = "refused"  # the action does not apply in the incident's state (detail: why)
    EVALUATED = "evaluated"  # the household's rating of a resolved incident is recorded
    RESPONDING = "responding"  # one more household (or person) is coming (detail: how many now)
    INTERNAL_ERROR = "internal_error"


# Verdicts that tell the one who asked that nothing happened because of what they asked (HTTP 409).
_REFUSALS = frozenset({Verdict.NOT_OPEN, Verdict.REFUSED, Verdict.INTERNAL_ERROR})


@dataclass(frozen=True, slots=True)
class Result:
    verdict: Verdict
    incident_id: int | None = None
    detail: str = ""
    acknowledged_after_s: float | None = None  # the first acknowledgement: time from opening

    @property
    def accepted(self) -> bool:
        return self.verdict not in _REFUSALS

    def __str__(self) -> str:
        """In words, as the log and the CLI show it ("opened 17", "acknowledged 17")."""
        match self.verdict:
            case Verdict.OPENED | Verdict.JOINED | Verdict.RESTORE:
                return f"{self.verdict} {self.incident_id}"
            case Verdict.ACTED:
                return f"{self.detail} {self.incident_id}"
            case Verdict.RESPONDING:
                return f"{self.detail} to {self.incident_id}"
            case Verdict.EVALUATED:
                return f"incident {self.incident_id} rated {self.detail}"
            case Verdict.NOT_OPEN:
                return f"incident {self.incident_id} is not open"
            case Verdict.REFUSED:
                return self.detail
            case Verdict.INVALID:
                return f"invalid: {self.detail}"
            case _:
                return self.verdict.value


OK = Result(Verdict.RECORDED)
