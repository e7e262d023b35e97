"""Where incoming SMS enter: the GSM modem's inbox, riding on its AT session (alertd.modem.session).

Replies (1 / 收到, 2 / 到, 3 / 解除) go to the engine like Twilio's, and are deleted from the SIM only
after the engine committed them. A message is read when the modem announces it (+CMTI) and by the sweep
of the SIM that is part of every poll (for an announcement missed while the line was down); the parts
of a long reply are joined first. Delivery reports (+CDS) update the notification they belong to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from alertd.core.events import DeliveryReport, Reply
from alertd.core.ports import Submit
from alertd.errors import PermanentError, TransientError
from alertd.metrics import Metrics
from alertd.modem.session import AtSession
from alertd.phones import mask, normalize
from alertd.protocols.at import Urc, parse_cmgl
from alertd.protocols.sms_pdu import Deliver, PduError, Reassembler, decode_deliver, decode_status_report

_LOGGER = logging.getLogger(__name__)

PART_EXPIRY_S = 3600.0  # parts of a long reply that never completed


class ModemInbox:
    """Replies and delivery reports from the modem, to the engine. Attach it to the session it reads."""

    def __init__(
        self,
        session: AtSession,
        submit: Submit,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.submit = submit
        self.metrics = metrics
        self.clock = clock
        self._reassembler = Reassembler()
        self._parts_at: dict[tuple[str, int], list[int]] = {}  # (sender, concat ref) -> SIM indices
        self._handling: set[int] = set()  # SIM indices read and not yet deleted
        self._tasks: asyncio.TaskGroup | None = None  # the open line's reads and deletes

    async def attend(self, urcs: asyncio.Queue[Urc]) -> None:
        """While a line is open: its reads and deletes are this group's tasks, cancelled with the line."""
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                while True:
                    self._on_urc(await urcs.get())
        finally:
            self._tasks = None
            self._handling.clear()  # the next line's sweep reads what is still on the SIM

    async def sweep(self) -> None:
        """The SIM's messages whose +CMTI was missed, and long replies whose parts never all came."""
        listing = await self.session.command("AT+CMGL=4")
        for index, pdu in parse_cmgl([i.line for i in listing]):
            if index not in self._handling:
                self._incoming(index, pdu)
        for stale in self._reassembler.expire(self.clock(), PART_EXPIRY_S):
            _LOGGER.warning("Part of a long SMS from %s never completed; handled alone", mask(stale.sender))
            self._deliver(stale, self._parts_at.pop((stale.sender, stale.part.ref if stale.part else -1), []))

    def _on_urc(self, urc: Urc) -> None:
        match urc.name:
            case "+CMTI" if len(urc.args) >= 2 and urc.args[1].isdigit():
                index = int(urc.args[1])
                self._spawn(self._read_message(index), f"read SMS {index}")
            case "+CDS" if urc.pdu:
                try:
                    report = decode_status_report(urc.pdu)
                except PduError as err:
                    _LOGGER.warning("Unreadable delivery report from the modem: %s", err)
                    return
                self.submit(DeliveryReport(f"modem:{report.mr}", report.status), None)
            case _:
                _LOGGER.debug("Modem says %s %s", urc.name, ",".join(urc.args))

    async def _read_message(self, index: int) -> None:
        if index in self._handling:
            return
        try:
            infos = await self.session.command(f"AT+CMGR={index}")
        except (TransientError, PermanentError) as err:
            _LOGGER.warning("Cannot read SMS %d from the modem: %s (the next sweep retries)", index, err)
            return
        lines = [i.line for i in infos]
        if len(lines) >= 2 and lines[0].startswith("+CMGR"):
            self._incoming(index, lines[1])

    def _incoming(self, index: int, pdu: str) -> None:
        self._handling.add(index)
        try:
            deliver = decode_deliver(pdu)
        except PduError as err:
            _LOGGER.warning("Unreadable SMS %d on the modem (%s); deleting it", index, err)
            self.metrics.invalid.labels(reason="bad_pdu").inc()
            self._spawn(self._delete([index]), f"delete SMS {index}")
            return
        key = (deliver.sender, deliver.part.ref if deliver.part else -1)
        self._parts_at.setdefault(key, []).append(index)
        complete = self._reassembler.add(deliver, self.clock())
        if complete is not None:
            self._deliver(complete, self._parts_at.pop(key, []))

    def _deliver(self, deliver: Deliver, indices: list[int]) -> None:
        try:
            phone = normalize(deliver.sender)
        except ValueError:
            phone = deliver.sender  # the engine logs and counts it as an unknown sender

        def committed(_result: object) -> None:
            self._spawn(self._delete(indices), f"delete SMS {','.join(map(str, indices))}")

        # The SIM slots, sender and SMSC timestamp name this message: read again from the SIM (a delete that
        # failed, a restart before it), it is recognised and not acted on twice.
        message_id = f"modem:{','.join(map(str, sorted(indices)))}:{deliver.sender}:{deliver.timestamp}"
        self.submit(Reply(phone, deliver.text, "modem", message_id, deliver.timestamp), committed)

    async def _delete(self, indices: list[int]) -> None:
        for index in indices:
            try:
                await self.session.command(f"AT+CMGD={index}")
            except (TransientError, PermanentError) as err:
                _LOGGER.warning("Cannot delete SMS %d from the modem: %s", index, err)
                continue
            self._handling.discard(index)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], what: str) -> None:
        if self._tasks is not None:
            with contextlib.suppress(RuntimeError):  # the group is shutting down with its line
                self._tasks.create_task(coroutine, name=f"modem: {what}")
                return
        # The line closed since the message was read (before the engine's commit came back, say): the
        # message stays on the SIM, and the next line's sweep reads it again under the same message id,
        # which the engine recognises; the delete is asked for then.
        coroutine.close()
        _LOGGER.warning("Cannot %s: the modem line is down (the next sweep reads it again)", what)
