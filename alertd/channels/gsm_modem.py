"""SMS through a GSM modem on a serial line (3GPP TS 27.005 PDU mode, UCS-2 for Chinese).

The bearer that still works when the internet does not. One AT command at a time, each under a timeout,
so one dead recipient never jams the queue; a modem that stops answering is reopened and initialised
again, and reported down until it answers. Incoming replies (1 / 收到, 2 / 到, 3 / 解除) go to the engine
like Twilio's, and are deleted from the SIM only after the engine committed them. Delivery reports
(+CDS) update the notification they belong to.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any

from alertd.core.events import DeliveryReport, Reply
from alertd.core.ports import Health, Outbound, Submit
from alertd.errors import PermanentError, TransientError
from alertd.metrics import Metrics
from alertd.phones import mask, normalize
from alertd.protocols.at import (
    REGISTERED,
    AtParser,
    Final,
    Info,
    Prompt,
    Urc,
    classify_cms,
    cms_code,
    parse_cmgl,
    parse_cmgs,
    parse_creg,
    parse_csq,
)
from alertd.protocols.sms_pdu import (
    Deliver,
    PduError,
    Reassembler,
    decode_deliver,
    decode_status_report,
    encode_submit,
)
from alertd.serial_lines import LineSettings, SerialLine, read_chunks

_LOGGER = logging.getLogger(__name__)

INIT_ATTEMPTS = 3  # a modem that has just powered up ignores the first AT or two
WEDGED_AFTER_TIMEOUTS = 2  # consecutive command timeouts before the line is reopened
PART_EXPIRY_S = 3600.0  # parts of a long reply that never completed
CTRL_Z, ESC = "\x1a", "\x1b"


class ModemNotResponding(ConnectionError):
    """The modem stopped answering: reopen the line and initialise it again."""


class _NotReady(TransientError):
    """The line is being (re)initialised: only the initialisation may talk to the modem now."""


class _LineGone:
    """Put on a session's response queue when its line closes: the command waiting on it fails at once."""


_LINE_GONE = _LineGone()


class GsmModem:
    """A Sender (name "modem") and the modem's inbox, on one supervised serial line."""

    name = "modem"

    def __init__(
        self,
        line: LineSettings,
        submit: Submit,
        metrics: Metrics,
        *,
        command_timeout_s: float = 10.0,
        sweep_interval_s: float = 60.0,
        smsc: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.line = SerialLine(line, self._session)
        self.submit = submit
        self.metrics = metrics
        self.command_timeout_s = command_timeout_s
        self.sweep_interval_s = sweep_interval_s
        self.smsc = smsc
        self.clock = clock
        self._parser = AtParser()
        self._writer: asyncio.StreamWriter | None = None
        self._responses: asyncio.Queue[Final | Info | Prompt | _LineGone] = asyncio.Queue()
        self._lock = asyncio.Lock()  # one command at a time
        self._ready = False
        self._ready_event = asyncio.Event()  # set once the current line was initialised and polled
        self._down_since = -math.inf  # loop time the modem stopped being ready (never ready yet: long ago)
        self._registered = False
        self._signal: int | None = None
        self._last_error = "not initialised yet"
        self._timeouts = 0
        self._wedged = asyncio.Event()
        self._reference = 0
        self._reassembler = Reassembler()
        self._parts_at: dict[tuple[str, int], list[int]] = {}  # (sender, concat ref) -> SIM indices
        self._handling: set[int] = set()  # SIM indices read and not yet deleted
        self._tasks: set[asyncio.Task[None]] = set()

    # --- Sender ----------------------------------------------------------------------------------------

    async def send(self, message: Outbound) -> str:
        while True:
            await self._until_ready()
            if not self._registered:
                raise TransientError("modem not registered on the network")
            try:
                return await self._submit(message)
            except _NotReady:
                # The line was reopened while this send waited its turn: it goes after the new line's
                # initialisation, in the order the sends came (the outbox claims the leader's first).
                continue

    async def _until_ready(self) -> None:
        """Wait for the line to be (re)initialised while that is still likely soon: within one command
        timeout of losing it (a replug, a modem reset). A modem down for longer fails the send at once,
        so the other carrier takes it without a wait."""
        if self._ready_event.is_set():
            return
        left = self._down_since + self.command_timeout_s - asyncio.get_running_loop().time()
        if left <= 0:
            raise TransientError(f"modem down: {self._last_error}")
        try:
            async with asyncio.timeout(left):
                await self._ready_event.wait()
        except TimeoutError:
            raise TransientError(f"modem down: {self._last_error}") from None

    async def _submit(self, message: Outbound) -> str:
        self._reference = (self._reference + 1) % 256
        try:
            parts = encode_submit(message.address, message.body, reference=self._reference, smsc=self.smsc)
        except PduError as err:
            raise PermanentError(f"cannot encode SMS: {err}", code="pdu") from err
        reference: int | None = None
        for part in parts:
            infos = await self._command(f"AT+CMGS={part.tpdu_length}", pdu=part.hex)
            line = next((i.line for i in infos if i.line.startswith("+CMGS")), None)
            if line is None:
                raise TransientError("modem accepted the SMS without a message reference")
            reference = parse_cmgs(line)
        return f"modem:{reference}"

    async def find_sent(self, message: Outbound) -> str | None:
        return None  # a modem keeps no record we can ask

    def health(self) -> Health:
        if not self._ready:
            return Health(False, f"modem down: {self._last_error}")
        if not self._registered:
            return Health(False, "modem not registered on the network")
        signal = "unknown" if self._signal is None else f"{self._signal}/31"
        return Health(True, f"registered, signal {signal}")

    async def run(self) -> None:
        await self.line.run()

    # --- the session on an open line ---------------------------------------------------------------

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._parser.reset()
        self._writer = writer
        self._responses = asyncio.Queue()
        self._wedged.clear()
        self._timeouts = 0
        reading = asyncio.create_task(self._read(reader), name="modem-reader")
        wedged = asyncio.create_task(self._wedged.wait(), name="modem-watch")
        try:
            await self._initialise()
            while True:
                await self._poll()
                self._ready_event.set()  # initialised and registration known: the waiting sends go now
                done, _ = await asyncio.wait({reading, wedged}, timeout=self.sweep_interval_s,
                                             return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
                if reading in done:
                    reading.result()  # the line closed: let the supervisor reopen it
                    return
                if wedged in done:
                    raise ModemNotResponding(f"no answer to {WEDGED_AFTER_TIMEOUTS} commands in a row")
        except TransientError as err:
            raise ModemNotResponding(str(err)) from err
        finally:
            self._set_ready(False)
            self._writer = None
            self._responses.put_nowait(_LINE_GONE)  # the command in flight on this line fails now
            for task in (reading, wedged, *self._tasks):
                task.cancel()
            await asyncio.gather(reading, wedged, *self._tasks, return_exceptions=True)
            self._handling.clear()

    async def _initialise(self) -> None:
        for attempt in range(INIT_ATTEMPTS):
            try:
                await self._command("AT", limit_s=2.0, init=True)
                break
            except TransientError:
                if attempt == INIT_ATTEMPTS - 1:
                    raise
        self._timeouts = 0
        for command in ("ATE0", "AT+CMEE=1"):
            await self._command(command, init=True)
        pin = await self._command("AT+CPIN?", init=True)
        if not any("READY" in i.line for i in pin):
            self._last_error = "SIM not ready: " + "; ".join(i.line for i in pin)
            raise TransientError(self._last_error)
        # PDU mode; new messages announced as +CMTI, delivery reports as +CDS.
        for command in ("AT+CMGF=0", "AT+CNMI=2,1,0,1,0"):
            await self._command(command, init=True)
        self._set_ready(True)
        _LOGGER.info("GSM modem ready on %s", self.line.settings.url)

    async def _poll(self) -> None:
        """Registration, signal, and a sweep of the SIM for replies whose +CMTI we missed."""
        creg = await self._command("AT+CREG?")
        line = next((i.line for i in creg if i.line.startswith("+CREG")), None)
        registered = line is not None and parse_creg(line)[1] in REGISTERED
        if registered != self._registered:
            _LOGGER.log(logging.INFO if registered else logging.WARNING,
                        "GSM modem %s the network", "registered on" if registered else "lost")  # fmt: skip
        self._registered = registered
        csq = await self._command("AT+CSQ")
        line = next((i.line for i in csq if i.line.startswith("+CSQ")), None)
        self._signal = parse_csq(line) if line else None
        self.metrics.modem_registered.set(int(registered))
        self.metrics.modem_signal.set(-1 if self._signal is None else self._signal)
        listing = await self._command("AT+CMGL=4")
        for index, pdu in parse_cmgl([i.line for i in listing]):
            if index not in self._handling:
                self._incoming(index, pdu)
        for stale in self._reassembler.expire(self.clock(), PART_EXPIRY_S):
            _LOGGER.warning("Part of a long SMS from %s never completed; handled alone", mask(stale.sender))
            self._deliver(stale, self._parts_at.pop((stale.sender, stale.part.ref if stale.part else -1), []))

    def _set_ready(self, ready: bool) -> None:
        # Senders are let in (_ready_event) after the first poll, once registration is known (_session).
        self._ready = ready
        if not ready:
            self._registered = False
            if self._ready_event.is_set():
                self._ready_event.clear()
                self._down_since = asyncio.get_running_loop().time()
        self.metrics.modem_up.set(int(ready))

    # --- commands -------------------------------------------------------------------------------------

    async def _command(
        self, command: str, *, pdu: str | None = None, limit_s: float | None = None, init: bool = False
    ) -> list[Info]:
        """Run one AT command (and, for AT+CMGS, its PDU after the prompt); the Info lines it answered.

        Until the line has answered the initialisation (init=True), nothing else may reach it: a send
        queued before an unplug would otherwise land on a modem with echo on, or booted in text mode."""
        async with self._lock:
            writer, responses = self._writer, self._responses
            if not init and not self._ready:
                raise _NotReady(f"modem not initialised: {self._last_error}")
            if writer is None:
                raise TransientError("modem line down")
            while not responses.empty():  # late answers to a command that timed out
                if isinstance(responses.get_nowait(), _LineGone):
                    raise TransientError("modem line down")
            infos: list[Info] = []
            try:
                async with asyncio.timeout(limit_s or self.command_timeout_s):
                    self._write(writer, command + "\r")
                    if pdu is not None:
                        await self._until_prompt(command, responses)
                        self._write(writer, pdu + CTRL_Z)
                    while True:
                        match await responses.get():
                            case _LineGone():
                                raise self._line_gone(command)
                            case Info() as info:
                                infos.append(info)
                            case Final(ok=True):
                                break
                            case Final(error=error):
                                raise self._refused(command, error)
                            case Prompt():
                                continue
            except TimeoutError:
                self._parser.reset()
                if pdu is not None:
                    writer.write(ESC.encode())  # abandon the half-entered message
                self._timeouts += 1
                if self._timeouts >= WEDGED_AFTER_TIMEOUTS:
                    self._wedged.set()
                waited = limit_s or self.command_timeout_s
                self._last_error = f"no answer to {command.split('=', maxsplit=1)[0]} within {waited:g} s"
                raise TransientError(self._last_error) from None
            self._timeouts = 0
            return infos

    async def _until_prompt(self, command: str, responses: asyncio.Queue[Final | Info | Prompt | _LineGone]) -> None:
        while True:
            match await responses.get():
                case _LineGone():
                    raise self._line_gone(command)
                case Prompt():
                    return
                case Final(error=error):
                    raise self._refused(command, error)
                case _:
                    continue

    def _line_gone(self, command: str) -> TransientError:
        # At once, not after the command's timeout: the sends behind it wait for the new line instead.
        self._last_error = f"line closed during {command.split('=', maxsplit=1)[0]}"
        return TransientError(f"modem {self._last_error}")

    def _write(self, writer: asyncio.StreamWriter, text: str) -> None:
        self._parser.sent(text.rstrip("\r" + CTRL_Z))
        writer.write(text.encode("ascii"))

    def _refused(self, command: str, error: str | None) -> TransientError | PermanentError:
        code = cms_code(error)
        detail = f"{command.split('=', maxsplit=1)[0]}: {error or 'ERROR'}"
        if code is None:
            return TransientError(detail)
        match classify_cms(code):
            case "permanent":
                return PermanentError(detail, code=f"CMS {code}")
            case "channel_down":
                self._last_error = detail
                self._set_ready(False)
                self._wedged.set()  # SIM or subscription trouble: reopen and keep reporting it
                return TransientError(detail)
            case _:
                return TransientError(detail)

    # --- what the modem tells us on its own ---------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            chunk = await read_chunks(reader)
            for event in self._parser.feed(chunk):
                if isinstance(event, Urc):
                    self._on_urc(event)
                else:
                    self._responses.put_nowait(event)

    def _on_urc(self, urc: Urc) -> None:
        match urc.name:
            case "+CMTI" if len(urc.args) >= 2 and urc.args[1].isdigit():
                self._spawn(self._read_message(int(urc.args[1])))
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
            infos = await self._command(f"AT+CMGR={index}")
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
            self._spawn(self._delete([index]))
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
            self._spawn(self._delete(indices))

        # The SIM slots, sender and SMSC timestamp name this message: read again from the SIM (a delete that
        # failed, a restart before it), it is recognised and not acted on twice.
        message_id = f"modem:{','.join(map(str, sorted(indices)))}:{deliver.sender}:{deliver.timestamp}"
        self.submit(Reply(phone, deliver.text, "modem", message_id, deliver.timestamp), committed)

    async def _delete(self, indices: list[int]) -> None:
        for index in indices:
            try:
                await self._command(f"AT+CMGD={index}")
            except (TransientError, PermanentError) as err:
                _LOGGER.warning("Cannot delete SMS %d from the modem: %s", index, err)
                continue
            self._handling.discard(index)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
