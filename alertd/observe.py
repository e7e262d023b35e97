"""What the metrics and the log say about each decision: the desk decides, this counts.

Kept apart from the engine so the shell stays a loop, and from the core so the core stays free of
prometheus. Rejections are logged through a rate limiter (one line per device and reason a minute);
the metrics count every one.
"""

from __future__ import annotations

import logging

from alertd.core.events import Alarm, CallReport, Input, MissedCall, Reply, Supervision
from alertd.core.results import Result, Verdict
from alertd.metrics import Metrics
from alertd.phones import mask
from alertd.ratelog import RateLimitedLog

_LOGGER = logging.getLogger("alertd.engine")  # operators grep one logger for what the engine did

# Verdicts that are a rejected input, counted in alertd_invalid_messages_total by this reason.
_REJECTED = frozenset({Verdict.UNKNOWN_DEVICE, Verdict.UNKNOWN_SENDER, Verdict.NOT_A_COMMAND})


class Observer:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._log = RateLimitedLog(_LOGGER)

    def decided(self, item: Input, result: Result) -> None:
        m = self.metrics
        match result.verdict:
            case Verdict.OPENED | Verdict.JOINED if isinstance(item, Alarm):
                m.alarms.labels(source=item.source, kind=item.kind.value).inc()
                if result.verdict == Verdict.OPENED:
                    m.opened.labels(kind=item.kind.value).inc()
            case Verdict.DUPLICATE:
                m.duplicates.inc()
            case Verdict.REPLAY if isinstance(item, Reply):
                m.replays.labels(carrier=item.carrier).inc()
                self._log.warning_for(
                    f"replay:{item.carrier}",
                    "Inbound %s message %s was handled already: ignored (a replay or a redelivery)",
                    item.carrier, item.message_id,
                )  # fmt: skip
            case Verdict.RECORDED if isinstance(item, Supervision):
                m.supervision.labels(event=item.event, restore=str(item.restore).lower()).inc()
            case Verdict.INTERNAL_ERROR:
                m.invalid.labels(reason="internal_error").inc()
            case verdict if verdict in _REJECTED:
                m.invalid.labels(reason=verdict.value).inc()
                self._rejected(item, verdict)
        if isinstance(item, CallReport) and result.verdict != Verdict.REPLAY:
            key = item.digits if item.digits in ("1", "2") and not item.machine else None
            m.calls.labels(outcome=f"key {key}" if key else "machine" if item.machine else item.status.value).inc()
        elif isinstance(item, MissedCall):
            m.missed_calls.labels(result=result.verdict.value).inc()
        if result.acknowledged_after_s is not None:
            m.time_to_ack.observe(result.acknowledged_after_s)

    def _rejected(self, item: Input, verdict: Verdict) -> None:
        if isinstance(item, MissedCall):
            self._log.warning_for(
                f"caller:{item.phone}", "Missed call from unknown number %s ignored", mask(item.phone)
            )
            return
        if isinstance(item, Reply):
            if verdict == Verdict.UNKNOWN_SENDER:
                self._log.warning_for(f"sender:{item.phone}", "SMS from unknown number %s ignored", mask(item.phone))
            else:
                _LOGGER.info("SMS from %s is not a command", mask(item.phone))
            return
        device = getattr(item, "device_id", "?")
        what = "Alarm" if isinstance(item, Alarm) else "Report"
        self._log.warning_for(f"unknown:{device}", "%s from unknown device %s ignored", what, device)

    def invalid(self, reason: str, what: str, *args: object) -> None:
        """A payload a codec refused on the engine's side (a Zigbee2MQTT state)."""
        self.metrics.invalid.labels(reason=reason).inc()
        self._log.warning_for(f"{reason}:{args[0] if args else ''}", what, *args)
