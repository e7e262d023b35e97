"""The AT session with a GSM modem on a supervised serial line (3GPP TS 27.007 / 27.005, PDU mode).

The layer under the modem's two users, as bellows keeps ash under ezsp: the session opens the line
(alertd.serial_lines), initialises the modem, runs one AT command at a time under a timeout, polls
registration and signal, and streams what the modem says on its own (+CMTI, +CDS) to its listeners.
The SMS sender (alertd.channels.gsm_modem) sends through `command`; the inbox
(alertd.ingress.modem_inbox) listens. The bytes are read by the sans-I/O codec alertd.protocols.at.

A modem that stops answering is reopened and initialised again, and reported down until it answers.

Voice rides on the same session. The bedside ring (alertd.channels.modem_voice) holds the modem for a whole
call, dial to hang-up, through `exclusive` (the SMS wait: the modem does one thing at a time anyway);
incoming calls (alertd.ingress.modem_calls) are a listener like the inbox: RING, +CLIP and the NO CARRIER
of a call that ended reach every listener, and the holder of the modem as well. Either part, once built on
the session, asks for the voice set-up in every initialisation (`enable_voice`, VOICE_SETUP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from alertd.core.ports import Health
from alertd.errors import PermanentError, TransientError
from alertd.metrics import Metrics
from alertd.protocols.at import (
    REGISTERED,
    AtParser,
    Final,
    Info,
    Prompt,
    Urc,
    classify_cms,
    cms_code,
    parse_creg,
    parse_csq,
)
from alertd.serial_lines import LineSettings, SerialLine, read_chunks

_LOGGER = logging.getLogger(__name__)

INIT_ATTEMPTS = 3  # a modem that has just powered up ignores the first AT or two
PROBE_TIMEOUT_S = 2.0  # the first AT of an initialisation: a modem that is up answers it at once
WEDGED_AFTER_TIMEOUTS = 2  # consecutive command timeouts before the line is reopened
CTRL_Z, ESC = "\x1a", "\x1b"
# After aborting a dial: how long a second final result may trail the first. Modems differ: V.250 says the
# aborting character is discarded (one result, the dial's NO CARRIER); SIMCom documents ATH as aborting
# the dial, and some then also run it (NO CARRIER, then the ATH's own OK). What trails is read and dropped
# here, so the next command does not take it for its own answer.
ABORT_SETTLE_S = 0.3

# The initialisation for calls, when a voice part is built on the session (enable_voice). Each is best
# effort: a modem that refuses one still carries SMS, which matter more; the refusal is logged.
VOICE_SETUP = (
    "ATH",  # a call left up by a line that dropped (or a daemon killed) mid-ring ends now
    "ATX4",  # busy and no-dial-tone reported as BUSY / NO DIALTONE, not folded into NO CARRIER (V.250 X)
    # ATD answers OK as soon as it has dialled, on SIMCom as on Quectel: the ring is then followed on the
    # call list (AT+CLCC), which every voice module keeps alike, and the modem stays responsive during it.
    # A saved AT+COLP=1 would hold OK back until the far end answered (alertd.channels.modem_voice).
    "AT+COLP=0",
    "AT+CLIP=1",  # the caller's number after every RING: the missed-call acknowledgement
)


class ModemNotResponding(ConnectionError):
    """The modem stopped answering: reopen the line and initialise it again."""


class NotReady(TransientError):
    """The line is being (re)initialised: only the initialisation may talk to the modem now."""


class CommandRefused(TransientError):
    """The modem answered a command with an error that is not an SMS one (+CMS ERROR is classified):
    ``error`` is the final result as :class:`Final` spells it (``"ERROR"``, ``"CME 3"``)."""

    def __init__(self, message: str, error: str) -> None:
        super().__init__(message)
        self.error = error


class _LineGone:
    """Put on a session's response queue when its line closes: the command waiting on it fails at once."""


_LINE_GONE = _LineGone()

Response = Final | Info | Prompt | _LineGone


@dataclass(frozen=True, slots=True)
class DialResult:
    """How a dial (ATD) ended: its Info lines (``+COLP``) and final result (OK, BUSY, NO CARRIER, ERROR,
    ...); ``final`` None if it was still pending at its limit and was aborted."""

    infos: list[Info]
    final: Final | None


class Hold:
    """The modem held by one caller for a sequence of commands (a call: dial, ring, hang up): see
    :meth:`AtSession.exclusive`. Nothing else reaches the modem until the hold ends."""

    def __init__(self, session: AtSession, urcs: asyncio.Queue[Urc]) -> None:
        self._session = session
        # What the modem said on its own during the hold (the listeners hear it too): the BUSY or NO
        # CARRIER of a call whose dial has returned.
        self.urcs = urcs

    async def command(self, command: str, *, limit_s: float | None = None) -> list[Info]:
        """As :meth:`AtSession.command`, within the hold."""
        try:
            return await self._session._run(command, limit_s=limit_s)
        except NotReady as err:
            raise _lost(err) from err

    async def dial(self, command: str, *, limit_s: float) -> DialResult:
        """Write a dial command and wait up to `limit_s` for its final result, whatever it is (a call
        result is an answer here, not a failure). Still pending then, the dial is aborted (ATH: V.250 lets
        any character abort it) and its result is None. TransientError if the modem does not answer."""
        try:
            return await self._session._dial(command, limit_s)
        except NotReady as err:
            raise _lost(err) from err

    def abandon(self, command: str = "ATH") -> None:
        """Write `command` without waiting for its answer: the way out of a call that failed or was
        cancelled midway, when waiting is no longer possible. The answer is dropped as a late one."""
        writer = self._session._writer
        if writer is not None:
            writer.write((command + "\r").encode("ascii"))


def _lost(err: NotReady) -> TransientError:
    # Within a hold, the line was lost and reopened: what the held sequence did is unknown, so it fails
    # rather than start again on the new line (NotReady would make the caller wait and retry).
    return TransientError(f"modem line lost midway: {err}")


class Listener(Protocol):
    """What rides on the session besides the senders: the inbox, the incoming calls. The session never
    imports them."""

    async def attend(self, urcs: asyncio.Queue[Urc]) -> None:
        """Runs while a line is open, from before its initialisation, and is cancelled when it closes.
        What the modem says on its own (+CMTI, +CDS, RING, +CLIP, NO CARRIER, ...) arrives on `urcs` in
        the order it said it."""
        ...

    async def sweep(self) -> None:
        """Part of every poll, after registration and signal: the sends waiting for a new line go after
        the first one."""
        ...


class AtSession:
    """One modem on one supervised serial line: initialisation, one command at a time, the poll, health."""

    def __init__(
        self,
        line: LineSettings,
        metrics: Metrics,
        *,
        command_timeout_s: float = 10.0,
        sweep_interval_s: float = 60.0,
    ) -> None:
        self.line = SerialLine(line, self._session)
        self.metrics = metrics
        self.command_timeout_s = command_timeout_s
        self.sweep_interval_s = sweep_interval_s
        self._listeners: list[Listener] = []
        self._parser = AtParser()
        self._writer: asyncio.StreamWriter | None = None
        self._responses: asyncio.Queue[Response] = asyncio.Queue()
        self._lock = asyncio.Lock()  # one command at a time
        self._ready = False
        self._ready_event = asyncio.Event()  # set once the current line was initialised and polled
        self._down_since = -math.inf  # loop time the modem stopped being ready (never ready yet: long ago)
        self._registered = False
        self._signal: int | None = None
        self._last_error = "not initialised yet"
        self._timeouts = 0
        self._wedged = asyncio.Event()
        self._voice = False
        self._tap: asyncio.Queue[Urc] | None = None  # the URCs of the current hold

    def attach(self, listener: Listener) -> None:
        """Before `run`: the listener attends every line from then on."""
        self._listeners.append(listener)

    def enable_voice(self) -> None:
        """Before `run`: every initialisation also sets the modem up for calls (VOICE_SETUP). The voice
        parts ask for it when built on this session; without them the modem is left as it was."""
        self._voice = True

    @property
    def registered(self) -> bool:
        return self._registered

    def health(self) -> Health:
        # Up only once the first poll after the initialisation is done, when sends are let in
        # (until_ready): up after AT+CREG? alone, a send that trusted it could still be turned away.
        if not self._ready_event.is_set():
            return Health(False, f"modem down: {self._last_error}")
        if not self._registered:
            return Health(False, "modem not registered on the network")
        signal = "unknown" if self._signal is None else f"{self._signal}/31"
        return Health(True, f"registered, signal {signal}")

    async def run(self) -> None:
        await self.line.run()

    async def until_ready(self) -> None:
        """Wait for the line to be (re)initialised while that is still likely soon: within one command
        timeout of losing it (a replug, a modem reset). A modem down for longer fails the caller at once,
        so a send goes to the other carrier without a wait."""
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

    # --- the session on an open line ---------------------------------------------------------------

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The line's parts in one TaskGroup: the reader, the wedge watch, each listener, and the
        conversation (initialise, then poll). When one ends, the line ends for all: whichever part ends
        it first takes the line down (`_line_down`) before the group cancels the others."""
        self._parser.reset()
        self._writer = writer
        self._responses = asyncio.Queue()
        self._wedged.clear()
        self._timeouts = 0
        urcs: list[asyncio.Queue[Urc]] = [asyncio.Queue() for _ in self._listeners]
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read(reader, urcs), name="modem-reader")
                tasks.create_task(self._watch(), name="modem-watch")
                for listener, queue in zip(self._listeners, urcs, strict=True):
                    tasks.create_task(listener.attend(queue), name=f"modem-{type(listener).__name__}")
                await self._converse()
        except BaseExceptionGroup as group:
            # An outer cancellation that met a failing part comes back as the part's error (TaskGroup
            # gives errors priority): it is still a cancellation, or the supervisor would reopen the line.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from None
            # The supervisor (SerialLine) reopens on the error itself, not on a group of one.
            raise _first(group) from None
        finally:
            self._line_down()

    async def _converse(self) -> None:
        try:
            await self._initialise()
            while True:
                await self._poll()
                self._ready_event.set()  # initialised and registration known: the waiting sends go now
                await asyncio.sleep(self.sweep_interval_s)
        except TransientError as err:
            raise ModemNotResponding(str(err)) from err
        finally:
            self._line_down()

    async def _watch(self) -> None:
        await self._wedged.wait()
        self._line_down()
        raise ModemNotResponding(f"no answer to {WEDGED_AFTER_TIMEOUTS} commands in a row")

    def _line_down(self) -> None:
        """Nothing but a new initialisation reaches the modem from now on, and the command in flight fails
        now, not after its timeout: the sends behind it wait for the next line instead."""
        if self._writer is None:
            return
        self._set_ready(False)
        self._writer = None
        self._responses.put_nowait(_LINE_GONE)

    async def _initialise(self) -> None:
        for attempt in range(INIT_ATTEMPTS):
            try:
                await self.command("AT", limit_s=PROBE_TIMEOUT_S, init=True)
                break
            except TransientError:
                if attempt == INIT_ATTEMPTS - 1:
                    raise
        self._timeouts = 0
        for command in ("ATE0", "AT+CMEE=1"):
            await self.command(command, init=True)
        pin = await self.command("AT+CPIN?", init=True)
        if not any("READY" in i.line for i in pin):
            self._last_error = "SIM not ready: " + "; ".join(i.line for i in pin)
            raise TransientError(self._last_error)
        # PDU mode; new messages announced as +CMTI, delivery reports as +CDS.
        for command in ("AT+CMGF=0", "AT+CNMI=2,1,0,1,0"):
            await self.command(command, init=True)
        if self._voice:
            await self._voice_setup()
        self._set_ready(True)
        _LOGGER.info("GSM modem ready on %s", self.line.settings.url)

    async def _voice_setup(self) -> None:
        refused = []
        for command in VOICE_SETUP:
            try:
                await self.command(command, init=True)
            except (CommandRefused, PermanentError) as err:
                refused.append(f"{command}: {err}")
        if refused:
            _LOGGER.warning("GSM modem refused part of the voice set-up (%s): SMS go on, calls may not work",
                            "; ".join(refused))  # fmt: skip

    async def _poll(self) -> None:
        """Registration and signal, then each listener's sweep (the inbox's: replies whose +CMTI was missed)."""
        creg = await self.command("AT+CREG?")
        line = next((i.line for i in creg if i.line.startswith("+CREG")), None)
        registered = line is not None and parse_creg(line)[1] in REGISTERED
        if registered != self._registered:
            _LOGGER.log(logging.INFO if registered else logging.WARNING,
                        "GSM modem %s the network", "registered on" if registered else "lost")  # fmt: skip
        self._registered = registered
        csq = await self.command("AT+CSQ")
        line = next((i.line for i in csq if i.line.startswith("+CSQ")), None)
        self._signal = parse_csq(line) if line else None
        self.metrics.modem_registered.set(int(registered))
        self.metrics.modem_signal.set(-1 if self._signal is None else self._signal)
        for listener in self._listeners:
            await listener.sweep()

    def _set_ready(self, ready: bool) -> None:
        # Senders are let in (_ready_event) after the first poll, once registration is known (_converse).
        self._ready = ready
        if not ready:
            self._registered = False
            if self._ready_event.is_set():
                self._ready_event.clear()
                self._down_since = asyncio.get_running_loop().time()
        self.metrics.modem_up.set(int(ready))

    # --- commands -------------------------------------------------------------------------------------

    async def command(
        self, command: str, *, pdu: str | None = None, limit_s: float | None = None, init: bool = False
    ) -> list[Info]:
        """Run one AT command (and, for AT+CMGS, its PDU after the prompt); the Info lines it answered.

        Until the line has answered the initialisation (init=True), nothing else may reach it: a send
        queued before an unplug would otherwise land on a modem with echo on, or booted in text mode.
        An error result raises: PermanentError or TransientError for +CMS ERROR (classify_cms),
        CommandRefused for any other."""
        async with self._lock:
            return await self._run(command, pdu=pdu, limit_s=limit_s, init=init)

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[Hold]:
        """Hold the modem for a sequence of commands that must not be interleaved with others (a call:
        ATD, the ring, ATH): the commands of others wait until the hold ends, in the order they came.
        NotReady at once if the line is being initialised (the caller waits for it and tries again)."""
        async with self._lock:
            if not self._ready:
                raise NotReady(f"modem not initialised: {self._last_error}")
            if self._writer is None:
                raise TransientError("modem line down")
            self._tap = urcs = asyncio.Queue[Urc]()
            try:
                yield Hold(self, urcs)
            finally:
                self._tap = None

    async def _run(
        self, command: str, *, pdu: str | None = None, limit_s: float | None = None, init: bool = False
    ) -> list[Info]:
        """One command, the lock held by the caller."""
        writer, responses = self._take_line(init)
        infos: list[Info] = []
        try:
            async with asyncio.timeout(limit_s or self.command_timeout_s):
                self._write(writer, command + "\r")
                if pdu is not None:
                    await self._until_prompt(command, responses)
                    self._write(writer, pdu + CTRL_Z)
                final = await self._final(command, responses, infos)
        except TimeoutError:
            if pdu is not None:
                writer.write(ESC.encode())  # abandon the half-entered message
            raise self._timed_out(command, limit_s or self.command_timeout_s) from None
        self._timeouts = 0
        if not final.ok:
            raise self._refused(command, final.error)
        return infos

    async def _dial(self, command: str, limit_s: float) -> DialResult:
        """Hold.dial, the lock held by the caller."""
        writer, responses = self._take_line(init=False)
        infos: list[Info] = []
        self._write(writer, command + "\r")
        try:
            async with asyncio.timeout(limit_s):
                final = await self._final(command, responses, infos)
        except TimeoutError:
            pass
        else:
            self._timeouts = 0
            return DialResult(infos, final)
        if self._writer is not writer:
            raise self._line_gone(command)
        # Written past the parser, which still waits for the dial's result: that (NO CARRIER, mostly) is
        # what the abort brings, whether or not the modem also runs the ATH.
        writer.write(b"ATH\r")
        try:
            async with asyncio.timeout(self.command_timeout_s):
                await self._final(command, responses, [])
        except TimeoutError:
            raise self._timed_out(command, limit_s + self.command_timeout_s) from None
        self._timeouts = 0
        await self._settle(command, responses)
        return DialResult(infos, None)

    def _take_line(self, init: bool) -> tuple[asyncio.StreamWriter, asyncio.Queue[Response]]:
        """Until the line has answered the initialisation (init=True), nothing else may reach it."""
        writer, responses = self._writer, self._responses
        if not init and not self._ready:
            raise NotReady(f"modem not initialised: {self._last_error}")
        if writer is None:
            raise TransientError("modem line down")
        while not responses.empty():  # late answers to a command that timed out
            if isinstance(responses.get_nowait(), _LineGone):
                raise TransientError("modem line down")
        return writer, responses

    async def _final(self, command: str, responses: asyncio.Queue[Response], infos: list[Info]) -> Final:
        while True:
            match await responses.get():
                case _LineGone():
                    raise self._line_gone(command)
                case Info() as info:
                    infos.append(info)
                case Final() as final:
                    return final
                case Prompt():
                    continue

    async def _settle(self, command: str, responses: asyncio.Queue[Response]) -> None:
        while True:
            try:
                async with asyncio.timeout(ABORT_SETTLE_S):
                    late = await responses.get()
            except TimeoutError:
                return
            if isinstance(late, _LineGone):
                raise self._line_gone(command)

    def _timed_out(self, command: str, waited: float) -> TransientError:
        self._parser.reset()
        self._timeouts += 1
        if self._timeouts >= WEDGED_AFTER_TIMEOUTS:
            self._wedged.set()
        self._last_error = f"no answer to {_name(command)} within {waited:g} s"
        return TransientError(self._last_error)

    async def _until_prompt(self, command: str, responses: asyncio.Queue[Response]) -> None:
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
        self._last_error = f"line closed during {_name(command)}"
        return TransientError(f"modem {self._last_error}")

    def _write(self, writer: asyncio.StreamWriter, text: str) -> None:
        self._parser.sent(text.rstrip("\r" + CTRL_Z))
        writer.write(text.encode("ascii"))

    def _refused(self, command: str, error: str | None) -> TransientError | PermanentError:
        code = cms_code(error)
        detail = f"{_name(command)}: {error or 'ERROR'}"
        if code is None:
            return CommandRefused(detail, error or "ERROR")
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

    # --- what the modem says -------------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader, urcs: list[asyncio.Queue[Urc]]) -> None:
        try:
            while True:
                chunk = await read_chunks(reader)
                for event in self._parser.feed(chunk):
                    if isinstance(event, Urc):
                        for queue in urcs:
                            queue.put_nowait(event)
                        if self._tap is not None:
                            self._tap.put_nowait(event)
                    else:
                        self._responses.put_nowait(event)
        finally:
            self._line_down()  # EOF or a read error: before the TaskGroup cancels the line's other parts


def _name(command: str) -> str:
    """A command as errors and health name it: without its arguments, and a dial without its number
    (phone numbers reach logs only masked)."""
    return "ATD" if command[:3].upper() == "ATD" else command.split("=", maxsplit=1)[0]


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that ended the line: the first part to fail (the others failed because of it)."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
