"""Contact ID alarm receivers on serial lines: reports in, engine inputs out, the receiver acknowledged
only after the report's effects are committed (as MQTT alarms are PUBACKed only after commit)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from alertd.core.events import Alarm, Input, Restore, Supervision, SupervisionKind
from alertd.core.model import Roster
from alertd.core.ports import Submit
from alertd.metrics import Metrics
from alertd.protocols.contact_id import DecodeError, LineDecoder, LineFormat, ReceiverHeartbeat, Report, get_format
from alertd.serial_lines import LineSettings, SerialLine, read_chunks

_LOGGER = logging.getLogger(__name__)

SOURCE = "contact-id"


def to_input(report: Report, roster: Roster) -> Input | None:
    """What a report means to the engine; None when its account is not in the roster."""
    # The CCC field of an open/close or access report names a user, not a zone: such a report is the
    # panel's own news, never that of the detector that happens to have the same number.
    zone = report.zone if report.user is None else None
    device = roster.device_for_account(report.account, zone)
    if device is None:
        return None
    detail = f"event {report.event_code} {report.name}, {'user' if zone is None else 'zone'} {report.zone}"
    if report.kind is not None:
        if report.restore:
            return Restore(device.id, f"{report.kind} restored (event {report.event_code}, zone {report.zone})")
        return Alarm(device.id, report.kind, seq=None, source=SOURCE, silent=report.silent)
    if report.supervision is not None:
        return Supervision(device.id, report.supervision, restore=report.restore, detail=detail)
    if report.meaning == SupervisionKind.OPEN_CLOSE:
        return Supervision(device.id, SupervisionKind.OPEN_CLOSE, armed=report.arming, user=report.user, detail=detail)
    # A valid report alertd gives no meaning to: the device is heard from and the report is logged.
    return Supervision(device.id, SupervisionKind.OTHER, restore=report.restore, detail=detail)


class ContactIdReceiver:
    """One receiver on one line. The roster is read through a callable so SIGHUP reloads reach it."""

    def __init__(
        self,
        line: LineSettings,
        line_format: str,
        roster: Callable[[], Roster],
        submit: Submit,
        metrics: Metrics,
    ) -> None:
        self.format: LineFormat = get_format(line_format)
        self.name = line.name
        self.roster = roster
        self.submit = submit
        self.metrics = metrics
        self.line = SerialLine(line, self._session)

    async def run(self) -> None:
        await self.line.run()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = LineDecoder(self.format)
        while True:
            for decoded in decoder.feed(await read_chunks(reader)):
                self._handle(decoded, decoder.ack_for(decoded), writer)

    def _handle(
        self, decoded: Report | ReceiverHeartbeat | DecodeError, reply: bytes, writer: asyncio.StreamWriter
    ) -> None:
        match decoded:
            case ReceiverHeartbeat():
                self._reply(writer, reply)
            case DecodeError(reason=reason, message=message):
                self.metrics.contact_id.labels(receiver=self.name, outcome=reason).inc()
                self.metrics.invalid.labels(reason=f"contact_id_{reason}").inc()
                _LOGGER.warning("Receiver %s: rejected %r: %s", self.name, decoded.raw[:64], message)
                self._reply(writer, reply)
            case Report():
                item = to_input(decoded, self.roster())
                if item is None:
                    # Acknowledged all the same: a NAK would make the receiver hold back every other signal.
                    self.metrics.contact_id.labels(receiver=self.name, outcome="unknown_account").inc()
                    _LOGGER.error(
                        "Receiver %s: report from account %s zone %d (event %d) matches no device in the roster",
                        self.name, decoded.account, decoded.zone, decoded.event_code,
                    )  # fmt: skip
                    self._reply(writer, reply)
                    return
                self.metrics.contact_id.labels(receiver=self.name, outcome="ok").inc()
                self.submit(item, lambda _result: self._reply(writer, reply))

    def _reply(self, writer: asyncio.StreamWriter, reply: bytes) -> None:
        if reply and not writer.is_closing():
            writer.write(reply)
