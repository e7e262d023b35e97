"""A GSM modem on a real pty, playing the world for the SMS channel (3GPP TS 27.005 / 27.007, PDU mode).

The daemon opens :attr:`FakeModem.path` with pyserial like any serial device; the fake drives the pty
master on the event loop. It answers the AT subset alertd uses, accepts SMS-SUBMITs after the ``> ``
prompt, hands out ``+CMGS: <mr>``, stores incoming SMS-DELIVERs on a simulated SIM and announces them
with ``+CMTI``, and sends ``+CDS`` delivery reports. Faults are scripted through public methods:
``+CMS ERROR`` on the next sends, a silent (wedged) modem, lost registration, weak signal, unplug and
replug on the same path.

The PDUs the network sends (SMS-DELIVER, SMS-STATUS-REPORT) are encoded here, independently of
alertd's codec; what alertd sends is read back with :func:`alertd.protocols.sms_pdu.decode_submit`.

Behaviour worth knowing when writing a test:

* Echo is on after plug and replug (``ATE0`` turns it off), as on a real modem. The command line is
  echoed whole with its CR when the CR arrives; after the prompt the PDU hex is echoed (not Ctrl-Z).
* Volatile settings (echo, CMEE, CNMI, CMGF, CREG URC mode) reset on replug; the SIM storage, the
  sent log and the message reference counter survive.
* URCs (``+CMTI``, ``+CDS``, ``+CREG``) are emitted whatever ``+CNMI`` says (it is only recorded in
  :attr:`FakeModem.cnmi`). They are held while a command runs (the PDU after ``> `` included) and
  written after its final result; between commands they come at once. URCs due while the modem is
  unplugged or silenced are lost (listed in :attr:`FakeModem.lost_urcs`); stored messages stay on the
  SIM for an ``AT+CMGL`` sweep, and a delivery report due then is lost too.
* ``+CMS ERROR`` is used for SMS commands whatever ``+CMEE`` says; an unknown command answers
  ``ERROR``, or ``+CME ERROR: 4`` after ``AT+CMEE=1`` (``+CME ERROR: operation not supported`` after
  ``AT+CMEE=2``).
* ``AT+CMGS`` while not registered (stat other than 1 or 5) takes the PDU and answers
  ``+CMS ERROR: 331``; a PDU whose length disagrees with ``<length>`` or that does not decode answers
  ``+CMS ERROR: 304`` and lands in :attr:`FakeModem.rejected`. ESC after the prompt answers ``OK``.
* The SIM holds ``capacity`` messages (indices from 1). A message arriving at a full SIM waits in the
  network and is stored (with ``+CMTI``) as soon as ``AT+CMGD`` frees a slot.

Voice calls (3GPP TS 27.007), one at a time (call waiting is not simulated):

* ``ATD<number>;`` dials; what the network then does is scripted per dialled number with
  :meth:`FakeModem.script_call` (:class:`CallScript`: answered, busy, no answer, no carrier after some
  seconds, or ringing until hung up, the default; refused at once with an error or ``NO DIALTONE``). The
  call is listed by ``AT+CLCC`` as dialling (stat 2), alerting (3) once the far end rings, active (0) once
  answered. ``dial_style`` picks the emulated modem: "immediate" (SIMCom, Quectel) answers ``OK`` as soon
  as it has dialled when ``AT+COLP=0`` (the default), and reports the end later as an unsolicited ``BUSY``
  / ``NO ANSWER`` / ``NO CARRIER``; with ``AT+COLP=1``, and always in "on_answer" style (a V.250 modem),
  the dial stays pending until answered (``+COLP: <number>,<type>`` first if ``AT+COLP=1``, then ``OK``)
  or failed (the call result is its final result). Any character received while a dial is pending aborts
  it with ``NO CARRIER`` (V.250); the aborting character is discarded, unless ``abort_runs_command`` is set,
  when the line it starts (``ATH``) is run as well and answers its own ``OK``.
* ``ATH`` hangs up whatever call is up (an outgoing one, or an incoming one: rejected, never answered)
  and answers ``OK`` even when there is none. ``ATX``, ``AT+CLIP`` and ``AT+COLP`` are accepted (the latter
  two reset on replug; ``+CLIP`` lines are only sent after ``AT+CLIP=1``).
* :meth:`FakeModem.incoming_call` rings the modem: ``RING`` and ``+CLIP`` at once and every
  ``ring_interval_s`` until ``ATH`` or until the caller gives up (then an unsolicited ``NO CARRIER``).
* Every dial, incoming call and hang-up is recorded (:attr:`FakeModem.dials`, :attr:`FakeModem.incoming`,
  :attr:`FakeModem.hangups`), with loop times. An unplug drops the call that is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import tempfile
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Literal, Self

from alertd.protocols.sms_pdu import PduError, Submit, decode_submit

__all__ = [
    "CallScript",
    "DialledCall",
    "FakeModem",
    "IncomingCall",
    "PtyPort",
    "SentPart",
    "SentSms",
    "StoredSms",
    "deliver_pdus",
    "status_report_pdu",
]

CHINA_TZ = timezone(timedelta(hours=8))
DEFAULT_SMSC = "+8613800100500"  # China Mobile Beijing, as real captures show
CTRL_Z = 0x1A
ESC = 0x1B
READ_CHUNK = 4096

REC_UNREAD = 0
REC_READ = 1
CMS_INVALID_PDU = 304  # invalid PDU mode parameter
CMS_NO_NETWORK = 331  # no network service
CMS_INVALID_INDEX = 321  # invalid memory index
CMS_NOT_ALLOWED = 302  # operation not allowed
CME_NOT_ALLOWED = 3  # operation not allowed (a call is already up)
CME_BAD_DIAL_STRING = 27  # invalid characters in dial string
# +CLCC <stat>
CALL_ACTIVE, CALL_DIALING, CALL_ALERTING, CALL_INCOMING = 0, 2, 3, 4


# --- the pty --------------------------------------------------------------------------------------


class PtyPort:
    """A pty whose slave is reached through a stable symlink; subclasses handle the bytes.

    ``unplug()`` closes the master (the peer's reads fail with EIO) and removes the symlink, as a USB
    device node disappears; ``replug()`` makes a new pty and points the same path at it.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._dir: str | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._out = bytearray()
        self._writing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def path(self) -> str:
        """The device path to open (a symlink to the current pty slave)."""
        if self._dir is None:
            raise RuntimeError("enter the context manager first")
        return os.path.join(self._dir, self._name)

    @property
    def connected(self) -> bool:
        """True while plugged in."""
        return self._master is not None

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._dir = tempfile.mkdtemp(prefix="alertd-pty-")
        self._plug()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._disconnect()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    async def unplug(self) -> None:
        """Pull the cable: the peer's reads and writes fail, the path disappears."""
        await self._disconnect()

    async def replug(self) -> None:
        """Plug a fresh device in at the same path (a new pty: the peer must reopen)."""
        await self._disconnect()
        self._plug()

    # subclass hooks
    def _on_data(self, data: bytes) -> None:
        raise NotImplementedError

    def _on_plug(self) -> None:
        """Called after a new pty is up."""

    async def _on_unplug(self) -> None:
        """Called before the pty goes away: stop tasks."""

    # internals
    def _plug(self) -> None:
        assert self._loop is not None
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation, 8 bits, byte by byte
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._loop.add_reader(master, self._read_ready)
        link = self.path
        tmp = link + ".new"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, link)
        self._on_plug()

    async def _disconnect(self) -> None:
        if self._master is None:
            return
        await self._on_unplug()
        assert self._loop is not None
        master, slave = self._master, self._slave
        self._master = self._slave = None
        self._loop.remove_reader(master)
        if self._writing:
            self._loop.remove_writer(master)
            self._writing = False
        self._out.clear()
        os.close(master)
        if slave is not None:
            os.close(slave)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _read_ready(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            return  # nothing to read from a pty whose slave side is gone; the next open brings it back
        if data:
            self._on_data(data)

    def _write(self, data: bytes) -> None:
        if self._master is None:
            return
        self._out += data
        self._flush()

    def _flush(self) -> None:
        if self._master is None:
            return
        while self._out:
            try:
                count = os.write(self._master, self._out)
            except BlockingIOError:
                break
            except OSError:
                self._out.clear()
                break
            del self._out[:count]
        assert self._loop is not None
        if self._out and not self._writing:
            self._loop.add_writer(self._master, self._flush)
            self._writing = True
        elif not self._out and self._writing:
            self._loop.remove_writer(self._master)
            self._writing = False


# --- PDUs the network sends (encoded here, independent of alertd's codec) --------------------------

# fmt: off
_GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# fmt: on
_GSM7_EXT = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40}
_GSM7_EXT["€"] = 0x65
_GSM7: dict[str, tuple[int, ...]] = {ch: (code,) for code, ch in enumerate(_GSM7_BASIC) if code != ESC}
_GSM7.update({ch: (ESC, code) for ch, code in _GSM7_EXT.items()})

SmsEncoding = Literal["auto", "gsm7", "ucs2"]


def _bcd_swapped(value: int) -> int:
    return (value % 10) << 4 | (value // 10) % 10


def _timestamp(when: datetime) -> bytes:
    offset = when.utcoffset() or timedelta(0)
    quarters = int(offset.total_seconds() // 900)
    tz = _bcd_swapped(abs(quarters)) | (0x08 if quarters < 0 else 0)
    fields = (when.year % 100, when.month, when.day, when.hour, when.minute, when.second)
    return bytes(_bcd_swapped(v) for v in fields) + bytes([tz])


def _pack_septets(septets: Sequence[int], fill_bits: int = 0) -> bytes:
    out = bytearray()
    acc, bits = 0, fill_bits
    for septet in septets:
        acc |= septet << bits
        bits += 7
        while bits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            bits -= 8
    if bits:
        out.append(acc & 0xFF)
    return bytes(out)


def _semi_octets(digits: str) -> bytes:
    if len(digits) % 2:
        digits += "F"
    return bytes(int(digits[i + 1] + digits[i], 16) for i in range(0, len(digits), 2))


def _address(number: str) -> bytes:
    """TP-OA / TP-RA: length in semi-octets, type of address, value."""
    if number.startswith("+") and number[1:].isdigit():
        digits = number[1:]
        return bytes([len(digits), 0x91]) + _semi_octets(digits)
    if number.isdigit():
        return bytes([len(number), 0x81]) + _semi_octets(number)
    septets = [code for ch in number for code in _GSM7[ch]]  # alphanumeric sender, e.g. a bank
    packed = _pack_septets(septets)
    return bytes([-(-len(septets) * 7 // 4), 0xD0]) + packed


def _smsc_part(smsc: str | None) -> bytes:
    if smsc is None:
        return b"\x00"
    digits = smsc.lstrip("+")
    body = bytes([0x91 if smsc.startswith("+") else 0x81]) + _semi_octets(digits)
    return bytes([len(body)]) + body


def _units(text: str, gsm7: bool) -> list[list[int]]:
    if gsm7:
        return [list(_GSM7[ch]) for ch in text]
    out = []
    for ch in text:
        data = ch.encode("utf-16-be", "surrogatepass")
        out.append([int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)])
    return out


def _capacity(gsm7: bool, udh_len: int) -> int:
    """Septets (7-bit) or UTF-16 code units (UCS-2) one part holds with a UDH of ``udh_len`` octets."""
    if gsm7:
        return 160 - -(-udh_len * 8 // 7)
    return (140 - udh_len) // 2


def _split(units: list[list[int]], gsm7: bool, parts: int | None, udh_len: int) -> list[list[list[int]]]:
    if parts is None:
        if sum(map(len, units)) <= _capacity(gsm7, 0):
            return [units]
        cap = _capacity(gsm7, udh_len)
        chunks: list[list[list[int]]] = [[]]
        used = 0
        for unit in units:
            if used + len(unit) > cap:
                chunks.append([])
                used = 0
            chunks[-1].append(unit)
            used += len(unit)
        return chunks
    if not 1 <= parts <= len(units):
        raise ValueError(f"cannot split {len(units)} characters into {parts} parts")
    size, extra = divmod(len(units), parts)
    chunks, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        chunks.append(units[start:end])
        start = end
    cap = _capacity(gsm7, 0 if parts == 1 else udh_len)
    if any(sum(map(len, chunk)) > cap for chunk in chunks):
        raise ValueError(f"{parts} parts are too few for {len(units)} characters")
    return chunks


def deliver_pdus(
    sender: str,
    text: str,
    *,
    parts: int | None = None,
    ref: int = 0,
    encoding: SmsEncoding = "auto",
    concat_16bit: bool = False,
    when: datetime | None = None,
    smsc: str | None = DEFAULT_SMSC,
) -> list[tuple[str, int]]:
    """SMS-DELIVER PDUs as a modem lists them: ``(hex with SMSC part, TPDU length)`` per part.

    GSM 7-bit when ``text`` fits the default alphabet (and ``encoding`` is "auto"), else UCS-2;
    concatenated with an IEI 0x00 (or 0x08) header when long or when ``parts`` > 1 is asked for.
    """
    if not text:
        raise ValueError("empty text")
    fits = all(ch in _GSM7 for ch in text)
    if encoding == "gsm7" and not fits:
        raise ValueError("text does not fit the GSM 7-bit default alphabet")
    gsm7 = fits if encoding == "auto" else encoding == "gsm7"
    udh_len = 7 if concat_16bit else 6  # UDHL octet included
    chunks = _split(_units(text, gsm7), gsm7, parts, udh_len)
    when = when or datetime.now(CHINA_TZ)
    total = len(chunks)
    out = []
    for seq, chunk in enumerate(chunks, start=1):
        codes = [code for unit in chunk for code in unit]
        if total == 1:
            udh = b""
        elif concat_16bit:
            udh = bytes([6, 0x08, 4, (ref >> 8) & 0xFF, ref & 0xFF, total, seq])
        else:
            udh = bytes([5, 0x00, 3, ref & 0xFF, total, seq])
        first = 0x04 | (0x40 if udh else 0)  # SMS-DELIVER, TP-MMS (no more messages), TP-UDHI
        head = bytes([first]) + _address(sender) + bytes([0x00, 0x00 if gsm7 else 0x08]) + _timestamp(when)
        if gsm7:
            skip = -(-len(udh) * 8 // 7)
            user_data = udh + _pack_septets(codes, skip * 7 - len(udh) * 8)
            udl = skip + len(codes)
        else:
            user_data = udh + b"".join(code.to_bytes(2, "big") for code in codes)
            udl = len(user_data)
        tpdu = head + bytes([udl]) + user_data
        out.append(((_smsc_part(smsc) + tpdu).hex().upper(), len(tpdu)))
    return out


def status_report_pdu(
    mr: int,
    recipient: str,
    *,
    status: int = 0x00,
    submitted: datetime | None = None,
    discharged: datetime | None = None,
    smsc: str | None = DEFAULT_SMSC,
) -> tuple[str, int]:
    """An SMS-STATUS-REPORT for message reference ``mr``: ``(hex with SMSC part, TPDU length)``.

    ``status`` is TP-ST: 0x00 delivered, 0x20..0x3F still trying, 0x40.. failed (TS 23.040 9.2.3.15).
    """
    now = datetime.now(CHINA_TZ)
    tpdu = (
        bytes([0x06, mr & 0xFF])  # SMS-STATUS-REPORT, TP-MMS
        + _address(recipient)
        + _timestamp(submitted or now)
        + _timestamp(discharged or now)
        + bytes([status & 0xFF])
    )
    return (_smsc_part(smsc) + tpdu).hex().upper(), len(tpdu)


# --- what the fake records ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SentPart:
    """One SMS-SUBMIT the fake accepted with ``+CMGS: <mr>``."""

    mr: int
    pdu: str
    submit: Submit


@dataclass(frozen=True, slots=True)
class SentSms:
    """A whole message alertd sent (concatenated parts joined, keyed by destination and UDH ref)."""

    to: str
    text: str
    parts: int
    pdus: tuple[str, ...]
    mrs: tuple[int, ...]
    status_report: bool
    encoding: str


@dataclass(slots=True)
class StoredSms:
    """One message on the simulated SIM."""

    stat: int  # 0 REC UNREAD, 1 REC READ
    pdu: str
    length: int  # TPDU length, as in +CMGL / +CMGR


CallOutcome = Literal["answer", "busy", "no_answer", "no_carrier", "ring", "no_dialtone", "error"]
DialStyle = Literal["immediate", "on_answer"]
_CALL_RESULT = {"busy": "BUSY", "no_answer": "NO ANSWER", "no_carrier": "NO CARRIER"}


@dataclass(frozen=True, slots=True)
class CallScript:
    """What the network does with a call to one number (:meth:`FakeModem.script_call`)."""

    outcome: CallOutcome = "ring"  # "ring": it rings until hung up
    after_s: float = 0.3  # from the dial to the outcome (answer, busy, no answer, no carrier)
    alerts: bool = True  # the far end rings before the outcome (+CLCC stat 3); False: stays dialling (2)
    alert_after_s: float = 0.05
    error: str = "+CME ERROR: 3"  # the final result of an "error" dial, at once
    hang_up_after_s: float | None = None  # answered: the far end hangs up this long after (NO CARRIER)


@dataclass(slots=True)
class DialledCall:
    """One ``ATD`` the fake received. Times are loop times."""

    number: str  # as dialled, without the ";"
    dialled_at: float
    outcome: CallOutcome
    state: int = CALL_DIALING  # its +CLCC stat while it is up
    answered_at: float | None = None
    ended_at: float | None = None
    # "ath" (hung up by alertd), "abort" (a character aborted the pending dial), "network" (busy, no
    # answer, no carrier), "far end" (hung up after answering), "refused" (never placed), "unplugged"
    ended_by: str | None = None


@dataclass(slots=True)
class IncomingCall:
    """One call to the modem (:meth:`FakeModem.incoming_call`). Times are loop times."""

    number: str  # as +CLIP shows it ("" withheld)
    type: int
    validity: int  # +CLIP <CLI validity>: 0 valid, 1 withheld, 2 not available
    started_at: float
    rings: int = 0
    ended_at: float | None = None
    ended_by: str | None = None  # "ath" (rejected by alertd, never answered), "gave up" (the caller), "unplugged"

    @property
    def rejected(self) -> bool:
        return self.ended_by == "ath"


@dataclass(slots=True)
class _Settings:
    """What a power cycle resets."""

    echo: bool = True
    cmee: int = 0
    clip: int = 0
    colp: int = 0
    cmgf: int = 0
    creg_n: int = 0
    cscs: str = "IRA"
    cnmi: tuple[str, ...] = ("0", "0", "0", "0", "0")
    csms: int = 0


@dataclass(slots=True)
class _Pending:
    parts: dict[int, SentPart] = field(default_factory=dict)


class _CommandError(Exception):
    """Answer this command with ERROR / +CME ERROR."""


class _CmsError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


_EXTENDED = re.compile(r"\+(?P<name>[A-Z]+)(?:(?P<test>=\?)|(?P<read>\?)|=(?P<args>.*))?\Z", re.IGNORECASE)
_BASIC = re.compile(r"(&?[A-Z])(\d*)", re.IGNORECASE)


# --- the modem ------------------------------------------------------------------------------------


class FakeModem(PtyPort):
    """A GSM modem with a SIM, on a pty. See the module docstring for its behaviour."""

    def __init__(
        self,
        *,
        name: str = "ttyUSB2",
        registration: int = 1,
        rssi: int = 20,
        delivery_reports: bool = False,
        delivery_report_delay: float = 0.2,
        delivery_status: int = 0x00,
        capacity: int = 30,
        smsc: str = DEFAULT_SMSC,
        response_delay: float = 0.0,
        send_delay: float = 0.0,
        dial_style: DialStyle = "immediate",
        abort_runs_command: bool = False,
    ) -> None:
        super().__init__(name)
        self.registration = registration
        self.rssi = rssi
        self.delivery_reports = delivery_reports
        self.delivery_report_delay = delivery_report_delay
        self.delivery_status = delivery_status  # TP-ST of the +CDS reports
        self.capacity = capacity
        self.smsc = smsc
        self.response_delay = response_delay  # before every answer
        self.send_delay = send_delay  # extra, between Ctrl-Z and +CMGS (the network round trip)
        self.next_mr = 0  # TP-MR the next accepted SUBMIT gets; wraps at 256
        self.dial_style = dial_style  # when ATD answers OK: see the module docstring
        self.abort_runs_command = abort_runs_command  # the line that aborts a pending dial is run as well

        self.commands: list[str] = []  # every AT command line, as received (CR stripped)
        self.sent: list[SentSms] = []
        self.sent_parts: list[SentPart] = []
        self.rejected: list[tuple[str, str]] = []  # (pdu hex, why) for +CMS ERROR: 304
        self.lost_urcs: list[str] = []
        self.dials: list[DialledCall] = []
        self.incoming: list[IncomingCall] = []
        self.hangups: list[float] = []  # loop time of every ATH, with a call up or not

        self._settings = _Settings()
        self._silent = False
        self._cms_errors: list[int] = []
        self._sim: dict[int, StoredSms] = {}
        self._network_queue: list[tuple[str, int]] = []  # arrived while the SIM was full
        self._pending_sent: dict[tuple[str, int, int], _Pending] = {}
        self._concat_ref = 0
        self._inbuf = bytearray()
        self._data = asyncio.Event()
        self._changed = asyncio.Event()
        self._busy = False
        self._held_urcs: list[bytes] = []
        self._serve_task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._scripts: dict[str, CallScript] = {}
        self._call: DialledCall | IncomingCall | None = None
        self._dial_pending: asyncio.Future[tuple[list[str], str]] | None = None

    # --- public: introspection -----------------------------------------------------------------

    @property
    def echo(self) -> bool:
        return self._settings.echo

    @property
    def cnmi(self) -> tuple[str, ...]:
        return self._settings.cnmi

    @property
    def clip(self) -> bool:
        """AT+CLIP=1 is in effect: every RING is followed by +CLIP."""
        return self._settings.clip == 1

    @property
    def call(self) -> DialledCall | IncomingCall | None:
        """The call that is up, if any."""
        return self._call

    @property
    def stored(self) -> dict[int, StoredSms]:
        """The SIM: index → message (a copy)."""
        return dict(self._sim)

    async def wait_for_sent(self, n: int, timeout: float = 5.0) -> list[SentSms]:
        """Wait until ``n`` whole messages were sent; TimeoutError naming the recent commands otherwise."""
        await self._wait(lambda: len(self.sent) >= n, timeout, f"{n} sent messages (have {len(self.sent)})")
        return self.sent[:n]

    async def wait_for_command(self, prefix: str, timeout: float = 5.0, *, count: int = 1) -> None:
        """Wait until ``count`` command lines starting with ``prefix`` (case-insensitive) were received."""
        want = prefix.upper()

        def seen() -> bool:
            return sum(c.upper().startswith(want) for c in self.commands) >= count

        await self._wait(seen, timeout, f"{count} x {prefix!r}")

    # --- public: the world -----------------------------------------------------------------------

    async def receive_sms(
        self,
        sender: str,
        text: str,
        *,
        parts: int | None = None,
        notify: bool = True,
        encoding: SmsEncoding = "auto",
        order: Sequence[int] | None = None,
        ref: int | None = None,
        concat_16bit: bool = False,
        when: datetime | None = None,
    ) -> list[int]:
        """An SMS arrives from ``sender``: store its part(s) on the SIM, ``+CMTI`` each unless ``notify`` is False.

        ``parts`` forces the number of concatenated parts (text split evenly); ``order`` lists the
        1-based part numbers in arrival order (a subset drops parts). Returns the SIM indices used
        (a part waiting for a free slot is not listed).
        """
        if ref is None:
            ref = self._concat_ref
            self._concat_ref = (self._concat_ref + 1) % (65536 if concat_16bit else 256)
        pdus = deliver_pdus(
            sender,
            text,
            parts=parts,
            ref=ref,
            encoding=encoding,
            concat_16bit=concat_16bit,
            when=when,
            smsc=self.smsc,
        )
        indices = []
        for seq in order or range(1, len(pdus) + 1):
            index = self._store(*pdus[seq - 1], notify=notify)
            if index is not None:
                indices.append(index)
        await asyncio.sleep(0)
        return indices

    def script_call(self, number: str, script: CallScript) -> None:
        """What happens to calls dialled to ``number`` (as dialled, e.g. "13800138000"); unscripted
        numbers ring until hung up."""
        self._scripts[number] = script

    def incoming_call(
        self,
        number: str,
        *,
        type_: int | None = None,
        validity: int = 0,
        ring_interval_s: float = 3.0,
        give_up_after_s: float = 30.0,
    ) -> IncomingCall:
        """A phone rings the modem: RING (and +CLIP after AT+CLIP=1) at once and every ``ring_interval_s``
        until ATH rejects it or the caller gives up after ``give_up_after_s`` (unsolicited NO CARRIER).
        ``type_`` defaults to 145 for "+..." numbers, 128 for "" (withheld), else 129."""
        if self._call is not None:
            raise RuntimeError("a call is up already (call waiting is not simulated)")
        if type_ is None:
            type_ = 145 if number.startswith("+") else 128 if not number else 129
        call = IncomingCall(number, type_, validity, self._now())
        self.incoming.append(call)
        self._call = call
        self._ring(call, ring_interval_s, give_up_after_s)
        return call

    def cms_error_next(self, code: int, times: int = 1) -> None:
        """The next ``times`` AT+CMGS answer ``+CMS ERROR: <code>`` (after taking the PDU)."""
        self._cms_errors.extend([code] * times)

    def silence(self, silent: bool = True) -> None:
        """A wedged modem: read everything, answer nothing, emit no URC."""
        self._silent = silent

    def set_registration(self, stat: int) -> None:
        """+CREG stat: 0 not searching, 1 home, 2 searching, 3 denied, 5 roaming. URC if AT+CREG=1/2."""
        changed = stat != self.registration
        self.registration = stat
        if changed and self._settings.creg_n:
            self._urc(f"+CREG: {stat}")

    def set_signal(self, rssi: int) -> None:
        """+CSQ rssi: 0..31, 99 unknown."""
        self.rssi = rssi

    # --- pty hooks -------------------------------------------------------------------------------

    def _on_plug(self) -> None:
        self._settings = _Settings()
        self._inbuf.clear()
        self._busy = False
        self._held_urcs.clear()
        self._serve_task = asyncio.get_running_loop().create_task(self._serve(), name=f"fake-modem-{self._name}")

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        await super().__aexit__(exc_type, exc, tb)

    def _later(self, delay: float, callback: Callable[..., None], *args: object) -> None:
        """A timer that outlives unplug (the network keeps going) and is cancelled on exit."""

        def fire() -> None:
            self._timers.discard(handle)
            callback(*args)

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(handle)

    async def _on_unplug(self) -> None:
        if self._call is not None:
            self._end(self._call, "unplugged")  # the modem loses power: its call drops
        task, self._serve_task = self._serve_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _on_data(self, data: bytes) -> None:
        self._inbuf += data
        self._data.set()

    # --- the command interpreter -----------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            line = await self._read_line()
            if self._settings.echo and not self._silent:
                self._write(line + b"\r")
            text = line.decode("latin-1")
            start = text.upper().find("AT")
            if start < 0:
                continue  # a real modem ignores what does not start with AT
            command = text[start:]
            self.commands.append(command)
            self._changed.set()
            if self._silent:
                continue
            if self.response_delay:
                await asyncio.sleep(self.response_delay)
            await self._execute(command)

    async def _read_line(self) -> bytes:
        while True:
            end = self._inbuf.find(b"\r")
            if end >= 0:
                line = bytes(self._inbuf[:end]).lstrip(b"\n")
                del self._inbuf[: end + 1]
                return line
            self._data.clear()
            await self._data.wait()

    async def _read_pdu(self) -> tuple[bytes, bool]:
        """The PDU hex after the prompt, and True if Ctrl-Z ended it (False: ESC cancelled)."""
        while True:
            for pos, byte in enumerate(self._inbuf):
                if byte in (CTRL_Z, ESC):
                    data = bytes(self._inbuf[:pos])
                    del self._inbuf[: pos + 1]
                    if self._settings.echo:
                        self._write(data)
                    return data, byte == CTRL_Z
            self._data.clear()
            await self._data.wait()

    async def _execute(self, command: str) -> None:
        lines: list[str] = []
        self._busy = True  # URCs wait for the final result
        if command[2:3].upper() == "D":  # a dial string is not a command list: read it whole
            await self._atd(command[3:].strip())
            return
        try:
            for name, kind, args in self._split(command[2:]):
                if name == "+CMGS":
                    await self._cmgs(kind, args)
                    return
                lines += self._run(name, kind, args)
        except _CmsError as err:
            self._final(lines, f"+CMS ERROR: {err.code}")
        except _CommandError:
            self._final(lines, self._error())
        else:
            self._final(lines, "OK")

    def _split(self, body: str) -> list[tuple[str, str, list[str]]]:
        """``E0V1`` / ``+CMGF=0;+CNMI=2,1`` → [(name, kind, args)], kind one of "", "?", "=?", "="."""
        out: list[tuple[str, str, list[str]]] = []
        basic, _, extended = body.partition("+")
        pos = 0
        while pos < len(basic):
            match = _BASIC.match(basic, pos)
            if match is None:
                raise _CommandError(body)
            out.append((match[1].upper(), "=", [match[2]] if match[2] else []))
            pos = match.end()
        if extended:
            for item in ("+" + extended).split(";"):
                piece = item if item.startswith("+") else "+" + item
                match = _EXTENDED.match(piece.strip())
                if match is None:
                    raise _CommandError(item)
                name = "+" + match["name"].upper()
                if match["test"]:
                    out.append((name, "=?", []))
                elif match["read"]:
                    out.append((name, "?", []))
                elif match["args"] is not None:
                    out.append((name, "=", [a.strip() for a in match["args"].split(",")]))
                else:
                    out.append((name, "", []))
        return out

    def _error(self) -> str:
        match self._settings.cmee:
            case 1:
                return "+CME ERROR: 4"
            case 2:
                return "+CME ERROR: operation not supported"
        return "ERROR"

    def _final(self, lines: list[str], result: str) -> None:
        body = "".join(f"\r\n{line}" for line in lines)
        if lines:
            body += "\r\n"
        self._write(f"{body}\r\n{result}\r\n".encode("latin-1"))
        self._busy = False
        held, self._held_urcs = self._held_urcs, []
        for urc in held:
            self._write(urc)

    def _run(self, name: str, kind: str, args: list[str]) -> list[str]:
        s = self._settings
        arg0 = args[0].strip('"') if args else ""
        match name, kind:
            case "E", "=":
                if arg0 not in ("", "0", "1"):
                    raise _CommandError(name)
                s.echo = arg0 == "1"
            case "H", "=":
                self._hang_up()
            case "+CLIP" | "+COLP", "=":
                if arg0 not in ("0", "1"):
                    raise _CommandError(name)
                setattr(s, name[1:].lower(), int(arg0))
            case "+CLIP" | "+COLP", "?":
                return [f"{name}: {getattr(s, name[1:].lower())},1"]
            case "+CLCC", "":
                return self._clcc()
            case ("V", "=") | ("Q", "=") | ("&C", "=") | ("&D", "=") | ("&W", "=") | ("X", "="):
                if name == "V" and arg0 == "0":
                    raise _CommandError("numeric result codes are not simulated")
            case ("Z", "=") | ("&F", "="):
                self._settings = _Settings()
            case "I", "=":
                return ["SIMCOM_Ltd", "SIMCOM_SIM800L", "Revision:1418B05SIM800L24"]
            case "+CGMI", _:
                return ["SIMCOM_Ltd"]
            case "+CGMM", _:
                return ["SIMCOM_SIM800L"]
            case "+CGMR", _:
                return ["Revision:1418B05SIM800L24"]
            case "+CGSN", _:
                return ["866782040000000"]
            case "+CIMI", _:
                return ["460001234567890"]
            case "+CMEE", "=":
                if arg0 not in ("0", "1", "2"):
                    raise _CommandError(name)
                s.cmee = int(arg0)
            case "+CMEE", "?":
                return [f"+CMEE: {s.cmee}"]
            case "+CPIN", "?":
                return ["+CPIN: READY"]
            case "+CFUN", "?":
                return ["+CFUN: 1"]
            case "+CFUN", "=":
                pass
            case "+CREG" | "+CGREG" | "+CEREG", "?":
                extra = ',"1A2B","00C3D4"' if s.creg_n == 2 and self.registration in (1, 5) else ""
                return [f"{name}: {s.creg_n if name == '+CREG' else 0},{self.registration}{extra}"]
            case "+CREG", "=":
                if arg0 not in ("0", "1", "2"):
                    raise _CommandError(name)
                s.creg_n = int(arg0)
            case "+CGREG" | "+CEREG", "=":
                pass
            case "+COPS", "?":
                return ['+COPS: 0,0,"CHINA MOBILE"'] if self.registration in (1, 5) else ["+COPS: 0"]
            case "+CSQ", "":
                return [f"+CSQ: {self.rssi},99"]
            case "+CMGF", "=":
                if arg0 not in ("0", "1"):
                    raise _CommandError(name)
                s.cmgf = int(arg0)
            case "+CMGF", "?":
                return [f"+CMGF: {s.cmgf}"]
            case "+CSCS", "=":
                s.cscs = arg0
            case "+CSCS", "?":
                return [f'+CSCS: "{s.cscs}"']
            case "+CSCS", "=?":
                return ['+CSCS: ("IRA","GSM","UCS2","HEX","PCCP","PCDN","8859-1")']
            case "+CNMI", "=":
                s.cnmi = tuple(args)
            case "+CNMI", "?":
                return ["+CNMI: " + ",".join(s.cnmi)]
            case "+CNMI", "=?":
                return ["+CNMI: (0-3),(0-3),(0,2),(0-2),(0,1)"]
            case "+CSMS", "=":
                s.csms = int(arg0 or "0")
                return ["+CSMS: 1,1,1"]
            case "+CSMS", "?":
                return [f"+CSMS: {s.csms},1,1,1"]
            case "+CNMA", _:
                pass
            case "+CSCA", "?":
                return [f'+CSCA: "{self.smsc}",{145 if self.smsc.startswith("+") else 129}']
            case "+CSCA", "=":
                self.smsc = arg0
            case "+CPMS", "?":
                used, total = len(self._sim), self.capacity
                return [f'+CPMS: "SM",{used},{total},"SM",{used},{total},"SM",{used},{total}']
            case "+CPMS", "=":
                if any(a.strip('"').upper() not in ("SM", "ME", "MT") for a in args):
                    raise _CmsError(CMS_NOT_ALLOWED)
                used, total = len(self._sim), self.capacity
                return [f"+CPMS: {','.join([f'{used},{total}'] * 3)}"]
            case "+CPMS", "=?":
                return ['+CPMS: ("SM","ME","MT"),("SM","ME","MT"),("SM","ME","MT")']
            case "+CMGL", "=" | "":
                return self._cmgl(arg0 or "0")
            case "+CMGR", "=":
                return self._cmgr(arg0)
            case "+CMGD", "=":
                self._cmgd(arg0, args[1].strip() if len(args) > 1 else "0")
            case _:
                raise _CommandError(name)
        return []

    # --- calls ---------------------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _atd(self, dial: str) -> None:
        number = dial.removesuffix(";")
        script = self._scripts.get(number, CallScript())
        call = DialledCall(number, self._now(), script.outcome)
        self.dials.append(call)
        self._changed.set()
        refusal: str | None = None
        if not dial.endswith(";"):
            refusal = "NO CARRIER"  # a data call: not simulated
        elif not re.fullmatch(r"\+?[0-9*#]+", number):
            refusal = self._cme(CME_BAD_DIAL_STRING, "invalid characters in dial string")
        elif self._call is not None:
            refusal = self._cme(CME_NOT_ALLOWED, "operation not allowed")
        elif self.registration not in (1, 5) or script.outcome == "no_dialtone":
            refusal = "NO DIALTONE"
        elif script.outcome == "error":
            refusal = script.error
        if refusal is not None:
            self._end(call, "refused")
            self._final([], refusal)
            return
        self._call = call
        if script.alerts:
            self._later(script.alert_after_s, self._alert, call)
        if script.outcome != "ring":
            self._later(script.after_s, self._outcome, call, script)
        if self.dial_style == "immediate" and not self._settings.colp:
            self._final([], "OK")
            return
        lines, result = await self._pending_dial(call)
        if self._silent:
            self._busy = False
        else:
            self._final(lines, result)

    async def _pending_dial(self, call: DialledCall) -> tuple[list[str], str]:
        """Until the dial's outcome, or any character from the DTE, which aborts it (V.250)."""
        pending = asyncio.get_running_loop().create_future()
        self._dial_pending = pending
        try:
            while not pending.done():
                if self._inbuf:
                    self._end(call, "abort")
                    if not self.abort_runs_command:
                        del self._inbuf[:1]  # the aborting character is discarded
                    return [], "NO CARRIER"
                self._data.clear()
                data = asyncio.ensure_future(self._data.wait())
                try:
                    await asyncio.wait({pending, data}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    data.cancel()
            result: tuple[list[str], str] = pending.result()
            return result
        finally:
            self._dial_pending = None

    def _alert(self, call: DialledCall) -> None:
        if self._call is call and call.state == CALL_DIALING:
            call.state = CALL_ALERTING
            self._changed.set()

    def _outcome(self, call: DialledCall, script: CallScript) -> None:
        if self._call is not call:
            return  # hung up or aborted before
        pending = self._dial_pending
        if script.outcome == "answer":
            call.state = CALL_ACTIVE
            call.answered_at = self._now()
            self._changed.set()
            if pending is not None and not pending.done():
                kind = 145 if call.number.startswith("+") else 129
                pending.set_result(([f'+COLP: "{call.number}",{kind},"",0,""'] if self._settings.colp else [], "OK"))
            if script.hang_up_after_s is not None:
                self._later(script.hang_up_after_s, self._far_end_hangs_up, call)
            return
        self._end(call, "network")
        result = _CALL_RESULT[script.outcome]
        if pending is not None and not pending.done():
            pending.set_result(([], result))
        else:
            self._urc(result)

    def _far_end_hangs_up(self, call: DialledCall) -> None:
        if self._call is call:
            self._end(call, "far end")
            self._urc("NO CARRIER")

    def _ring(self, call: IncomingCall, interval: float, give_up: float) -> None:
        if self._call is not call:
            return  # rejected, or the modem was unplugged
        if self._now() - call.started_at >= give_up:
            self._end(call, "gave up")
            self._urc("NO CARRIER")
            return
        call.rings += 1
        self._urc("RING")
        if self._settings.clip:
            self._urc(f'+CLIP: "{call.number}",{call.type},"",0,"",{call.validity}')
        self._changed.set()
        self._later(interval, self._ring, call, interval, give_up)

    def _hang_up(self) -> None:
        self.hangups.append(self._now())
        if self._call is not None:
            self._end(self._call, "ath")
        self._changed.set()

    def _end(self, call: DialledCall | IncomingCall, by: str) -> None:
        call.ended_at = self._now()
        call.ended_by = by
        if self._call is call:
            self._call = None
        self._changed.set()

    def _clcc(self) -> list[str]:
        call = self._call
        if isinstance(call, DialledCall):
            kind = 145 if call.number.startswith("+") else 129
            return [f'+CLCC: 1,0,{call.state},0,0,"{call.number}",{kind}']
        if isinstance(call, IncomingCall):
            return [f'+CLCC: 1,1,{CALL_INCOMING},0,0,"{call.number}",{call.type}']
        return []

    def _cme(self, code: int, text: str) -> str:
        match self._settings.cmee:
            case 1:
                return f"+CME ERROR: {code}"
            case 2:
                return f"+CME ERROR: {text}"
        return "ERROR"

    def _cmgl(self, stat: str) -> list[str]:
        if stat not in ("0", "1", "4"):  # 2/3 (stored unsent/sent) are never on our SIM; text-mode words
            raise _CmsError(CMS_INVALID_PDU if not stat.isdigit() else CMS_NOT_ALLOWED)
        lines = []
        for index, sms in sorted(self._sim.items()):
            if stat == "4" or int(stat) == sms.stat:
                lines += [f"+CMGL: {index},{sms.stat},,{sms.length}", sms.pdu]
                sms.stat = REC_READ
        return lines

    def _cmgr(self, arg: str) -> list[str]:
        if not arg.isdigit() or not 1 <= int(arg) <= self.capacity:
            raise _CmsError(CMS_INVALID_INDEX)
        sms = self._sim.get(int(arg))
        if sms is None:
            return []  # an empty slot: just OK, as SIM800 and most Quectel modems answer
        lines = [f"+CMGR: {sms.stat},,{sms.length}", sms.pdu]
        sms.stat = REC_READ
        return lines

    def _cmgd(self, arg: str, flag: str) -> None:
        if not arg.isdigit() or not 1 <= int(arg) <= self.capacity or flag not in "01234":
            raise _CmsError(CMS_INVALID_INDEX)
        match flag:
            case "0":
                self._sim.pop(int(arg), None)
            case "1" | "2" | "3":  # read ones (2 and 3 also stored sent/unsent: none on our SIM)
                for index in [i for i, sms in self._sim.items() if sms.stat == REC_READ]:
                    del self._sim[index]
            case "4":
                self._sim.clear()
        while self._network_queue and len(self._sim) < self.capacity:
            self._store(*self._network_queue.pop(0), notify=True)

    async def _cmgs(self, kind: str, args: list[str]) -> None:
        if kind != "=" or len(args) != 1 or not args[0].isdigit() or not 7 <= int(args[0]) <= 164:
            raise _CmsError(CMS_INVALID_PDU) if kind == "=" else _CommandError("+CMGS")
        length = int(args[0])
        self._write(b"\r\n> ")
        data, submitted = await self._read_pdu()
        if not submitted:
            self._final([], "OK")
            return
        pdu = data.decode("latin-1").strip().upper()
        if self.send_delay:
            await asyncio.sleep(self.send_delay)
        submit = self._check_submit(pdu, length)
        if submit is None:
            self._final([], f"+CMS ERROR: {CMS_INVALID_PDU}")
            return
        if self._cms_errors:
            self._final([], f"+CMS ERROR: {self._cms_errors.pop(0)}")
            return
        if self.registration not in (1, 5):
            self._final([], f"+CMS ERROR: {CMS_NO_NETWORK}")
            return
        mr = self.next_mr
        self.next_mr = (mr + 1) % 256
        self._record_sent(SentPart(mr, pdu, submit))
        self._final([f"+CMGS: {mr}"], "OK")
        if self.delivery_reports and submit.status_report:
            self._later(self.delivery_report_delay, self._delivery_report, mr, submit.to)

    def _check_submit(self, pdu: str, length: int) -> Submit | None:
        try:
            octets = bytes.fromhex(pdu)
        except ValueError:
            self.rejected.append((pdu, "not hex"))
            return None
        if not octets or len(octets) != 1 + octets[0] + length:
            self.rejected.append((pdu, f"length {length} does not match {len(octets)} octets"))
            return None
        try:
            return decode_submit(pdu)
        except PduError as err:
            self.rejected.append((pdu, str(err)))
            return None

    def _record_sent(self, part: SentPart) -> None:
        self.sent_parts.append(part)
        submit = part.submit
        if submit.part is None or submit.part.total == 1:
            parts = [part]
        else:
            key = (submit.to, submit.part.ref, submit.part.total)
            pending = self._pending_sent.setdefault(key, _Pending())
            pending.parts[submit.part.seq] = part
            if len(pending.parts) < submit.part.total:
                self._changed.set()
                return
            del self._pending_sent[key]
            parts = [p for _, p in sorted(pending.parts.items())]
        self.sent.append(
            SentSms(
                to=submit.to,
                text="".join(p.submit.text for p in parts)
                .encode("utf-16-be", "surrogatepass")
                .decode("utf-16-be", "replace"),
                parts=len(parts),
                pdus=tuple(p.pdu for p in parts),
                mrs=tuple(p.mr for p in parts),
                status_report=submit.status_report,
                encoding=submit.encoding,
            )
        )
        self._changed.set()

    def _delivery_report(self, mr: int, recipient: str) -> None:
        pdu, length = status_report_pdu(mr, recipient, status=self.delivery_status, smsc=self.smsc)
        self._urc(f"+CDS: {length}\r\n{pdu}")

    # --- URCs and storage ------------------------------------------------------------------------

    def _urc(self, text: str) -> None:
        data = f"\r\n{text}\r\n".encode("latin-1")
        if not self.connected or self._silent:
            self.lost_urcs.append(text)
        elif self._busy:
            self._held_urcs.append(data)
        else:
            self._write(data)

    def _store(self, pdu: str, length: int, *, notify: bool) -> int | None:
        free = next((i for i in range(1, self.capacity + 1) if i not in self._sim), None)
        if free is None:
            self._network_queue.append((pdu, length))
            return None
        self._sim[free] = StoredSms(REC_UNREAD, pdu, length)
        if notify:
            self._urc(f'+CMTI: "SM",{free}')
        return free

    async def _wait(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not done():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            recent = self.commands[-10:]
            raise TimeoutError(f"waited {timeout}s for {what}; last commands: {recent}") from None
