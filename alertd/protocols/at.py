"""AT command responses (3GPP TS 27.007 / 27.005) from a GSM modem, as a sans-I/O parser.

The channel writes a command, tells the parser with :meth:`AtParser.sent`, and feeds every byte it
reads to :meth:`AtParser.feed`, which returns typed events:

* :class:`Info`: an intermediate line of the running command (``+CSQ: 20,99``, ``+CMGS: 12``, the
  ``+CMGL:`` header and the PDU line after it);
* :class:`Final`: ``OK``, ``ERROR``, ``+CME ERROR: <n>``, ``+CMS ERROR: <n>`` (and the call results
  ``NO CARRIER`` / ``BUSY`` / ``NO ANSWER`` / ``NO DIALTONE`` while a dial ``ATD`` or an answer ``ATA``
  runs: those are the only commands they end; at any other time they are unsolicited);
* :class:`Prompt`: the ``> `` SMS text prompt, which has no line ending;
* :class:`Urc`: an unsolicited result code, which may arrive between two lines of a response:
  ``+CMTI``, ``+CDS`` and ``+CMT`` (with the PDU line that follows them), ``RING`` and ``+CLIP`` (an
  incoming call and its caller id), ``NO CARRIER`` / ``BUSY`` / ``NO ANSWER`` (a call that ended after
  its dial returned), ``+CREG: <stat>``, vendor codes starting with ``^`` and the like.

The modem is assumed to be in PDU mode (``AT+CMGF=0``) with verbose result codes (``ATV1``). A line
equal to the last command sent is its echo and is dropped (``ATE0`` may not be in effect yet).

:func:`classify_cms` sorts ``+CMS ERROR`` codes into permanent (this message will never go through),
channel down (this modem or SIM cannot send anything: fail over, tell the operator) and transient.

Voice (TS 27.007 chapter 7): :func:`parse_clip` reads a caller id (``+CLIP``), :func:`parse_colp` the
connected line of an answered dial (``+COLP``), :func:`parse_clcc` one call of the call list (``+CLCC``).
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass

from alertd.protocols.common import CodecError

__all__ = [
    "CALL_ACTIVE",
    "CALL_ALERTING",
    "CALL_DIALING",
    "CALL_HELD",
    "CALL_INCOMING",
    "CALL_RESULTS",
    "CALL_WAITING",
    "CMS_CHANNEL_DOWN",
    "CMS_PERMANENT",
    "MAX_LINE",
    "REGISTERED",
    "AtError",
    "AtEvent",
    "AtParser",
    "CallEntry",
    "CallerId",
    "CmsClass",
    "Final",
    "Info",
    "Prompt",
    "Urc",
    "classify_cms",
    "cme_code",
    "cms_code",
    "is_channel_down_cms",
    "is_permanent_cms",
    "parse_clcc",
    "parse_clip",
    "parse_cmgl",
    "parse_cmgs",
    "parse_colp",
    "parse_creg",
    "parse_csq",
    "split_args",
]

MAX_LINE: typing.Final = 1024  # bytes; a PDU line is at most ~360 hex digits, anything longer is noise

AtReason = typing.Literal["bad_response"]


class AtError(CodecError[AtReason]):
    """A response line we cannot read."""


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Final:
    """The end of a command: ``ok``, or ``error`` such as ``"ERROR"``, ``"CMS 500"``, ``"CME 10"``."""

    ok: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Info:
    """An intermediate response line of the running command, as received (trimmed)."""

    line: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """The ``> `` prompt: write the PDU and Ctrl-Z now."""


@dataclass(frozen=True, slots=True)
class Urc:
    """An unsolicited result code: ``name`` (``"+CMTI"``, ``"RING"``), unquoted ``args``, and the
    PDU line that follows ``+CMT`` / ``+CDS`` / ``+CBM`` (None if the modem sent none)."""

    name: str
    args: tuple[str, ...] = ()
    pdu: str | None = None


AtEvent = Final | Info | Prompt | Urc

# Unsolicited codes recognised by name. A line whose name is the running command's own prefix is
# still an Info (``AT+CPIN?`` answers ``+CPIN: READY``, which some modems also send unprompted).
_URC_NAMES: typing.Final = frozenset(
    {
        "+CMTI", "+CMT", "+CDS", "+CDSI", "+CBM", "+CBMI",  # new SMS, delivery reports, broadcast
        "+CLIP", "+CRING", "+CCWA", "+CUSD", "+CIEV", "+CGEV", "+CTZV", "+CTZE", "+CTZU", "+CPIN",
        "+CFUN", "+CMEE",
        "+COLP",  # an Info line of the dial it answers; unsolicited from modems that send it after OK
        "+CLCC",  # the answer to AT+CLCC; unsolicited from SIMCom modules after AT+CLCC=1
        "VOICE CALL", "MISSED_CALL",  # SIMCom LTE modules: a call began / ended, a call was missed
        "+QIND", "+QUSIM", "+QSIMSTAT",  # Quectel
        "+SIMCARD", "+CPMS",  # seen unprompted from SIMCom modules after boot
    }
)  # fmt: skip
_PDU_URCS: typing.Final = frozenset({"+CMT", "+CDS", "+CBM"})
# Network registration: ``+CREG: <stat>[,"<lac>","<ci>"...]`` is the URC, the answer to ``AT+CREG?``
# is ``+CREG: <n>,<stat>[,...]`` (second field unquoted).
_REGISTRATION: typing.Final = frozenset({"+CREG", "+CGREG", "+CEREG", "+C5GREG"})
CALL_RESULTS: typing.Final = frozenset({"NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE"})
_UNSOLICITED_WORDS: typing.Final = frozenset({"RING", "RDY", "NORMAL POWER DOWN", "SMS Ready", "Call Ready"})

_COMMAND_PREFIX = re.compile(r"AT([+^$#%*][A-Z0-9]+)", re.IGNORECASE)
# The commands a call result code ends (V.250 D and A). ATH ends a call too, but answers OK: a NO CARRIER
# while it runs is the modem's word on the call it ended (or on a caller who gave up), not its result.
_CALL_COMMAND = re.compile(r"AT[DA]", re.IGNORECASE)
_HEX = re.compile(r"[0-9A-Fa-f]+")
_ECHO_JUNK = "\x1a\x1b"  # Ctrl-Z (send) and ESC (abort) after an SMS body


def split_args(text: str) -> tuple[str, ...]:
    """Comma-separated fields with surrounding double quotes removed: ``"SM",3`` -> ``("SM", "3")``."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    fields.append("".join(current).strip())
    return tuple(fields)


def _name_and_rest(line: str) -> tuple[str, str]:
    name, colon, rest = line.partition(":")
    return (name.strip(), rest.strip()) if colon else (line, "")


class AtParser:
    """Turns the modem's byte stream into :data:`AtEvent` values; keeps no clock and does no I/O."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._echo: str | None = None
        self._running: str | None = None  # the "+XXX" of the running command, if any
        self._calling = False  # the running command is a dial or an answer: call results end it
        self._waiting_pdu: Urc | None = None  # a +CMT/+CDS whose PDU line has not come yet
        self._discarding = False
        self.overflows = 0  # lines dropped for exceeding MAX_LINE: count and log them

    def sent(self, command: str) -> None:
        """Record what was just written (a command, or an SMS PDU after the prompt)."""
        line = command.strip().strip(_ECHO_JUNK).strip()
        self._echo = line
        match = _COMMAND_PREFIX.match(line)
        if line[:2].upper() == "AT":
            self._running = match.group(1).upper() if match else None
            self._calling = _CALL_COMMAND.match(line) is not None

    def reset(self) -> None:
        """Forget the running command and any partial line (after a timeout or reopening the port)."""
        self._buffer.clear()
        self._echo = self._running = self._waiting_pdu = None
        self._discarding = self._calling = False

    def feed(self, data: bytes) -> list[AtEvent]:
        """Every complete event in the bytes received so far."""
        self._buffer += data
        events: list[AtEvent] = []
        while True:
            ends = [i for i in (self._buffer.find(b"\r"), self._buffer.find(b"\n")) if i >= 0]
            if not ends:
                break
            end = min(ends)
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._discarding:
                self._discarding = False
                continue
            self._line(raw.decode("utf-8", "replace").strip(), events)
        if self._buffer[:1] == b">":
            # The prompt has no line ending: "\r\n> ". A line never starts with ">" otherwise.
            del self._buffer[: 2 if self._buffer[1:2] == b" " else 1]
            events.append(Prompt())
        elif len(self._buffer) > MAX_LINE:
            self._buffer.clear()
            self._discarding = True
            self.overflows += 1
        return events

    def _line(self, line: str, events: list[AtEvent]) -> None:
        if not line:
            return
        if self._waiting_pdu is not None:
            urc, self._waiting_pdu = self._waiting_pdu, None
            if _HEX.fullmatch(line):
                events.append(Urc(urc.name, urc.args, line.upper()))
                return
            events.append(urc)  # no PDU after all: report the code, then read the line normally
        if self._echo is not None and line.strip(_ECHO_JUNK).strip() == self._echo:
            self._echo = None
            return
        event = self._classify(line)
        match event:
            case Urc(name=name) if name in _PDU_URCS:
                self._waiting_pdu = event
            case Final():
                self._calling = False
                self._running = None
                self._echo = None
                events.append(event)
            case _:
                events.append(event)

    def _classify(self, line: str) -> AtEvent:
        if line == "OK":
            return Final(ok=True)
        if line in {"ERROR", "COMMAND NOT SUPPORT"}:
            return Final(ok=False, error="ERROR")
        if line in CALL_RESULTS:
            return Final(ok=False, error=line) if self._calling else Urc(line)
        if line in _UNSOLICITED_WORDS:
            return Urc(line)
        name, rest = _name_and_rest(line)
        if name in {"+CME ERROR", "+CMS ERROR"}:
            return Final(ok=False, error=f"{name[1:4]} {rest}")
        if name in _REGISTRATION:
            args = split_args(rest)
            urc_form = len(args) == 1 or rest.split(",")[1].strip().startswith('"')
            return Urc(name, args) if urc_form else Info(line)
        if name == self._running or (name == "+COLP" and self._calling):
            return Info(line)
        if name in _URC_NAMES or name.startswith("^"):
            return Urc(name, split_args(rest) if rest else ())
        return Info(line)


# --- response helpers ---------------------------------------------------------------------------


def _fields(line: str, name: str, minimum: int) -> tuple[str, ...]:
    found, rest = _name_and_rest(line.strip())
    args = split_args(rest)
    if found.upper() != name or len(args) < minimum:
        raise AtError("bad_response", f"expected {name} with {minimum}+ fields, got {line[:40]!r}")
    return args


def _int(value: str, line: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise AtError("bad_response", f"expected a number, got {value[:20]!r} in {line[:40]!r}")
    return int(value)


def parse_csq(line: str) -> int | None:
    """RSSI 0..31 of ``+CSQ: <rssi>,<ber>``; None for 99 (not known or not detectable)."""
    rssi = _int(_fields(line, "+CSQ", 1)[0], line)
    if rssi == 99:
        return None
    if rssi > 31:
        raise AtError("bad_response", f"rssi out of range in {line[:40]!r}")
    return rssi


REGISTERED: typing.Final = frozenset({1, 5})  # registered, home network / roaming


def parse_creg(line: str) -> tuple[int, int]:
    """(n, stat) of the answer to ``AT+CREG?`` (or ``+CGREG`` / ``+CEREG``); registered if stat in
    :data:`REGISTERED`. The URC form ``+CREG: <stat>`` arrives as a :class:`Urc` with stat in args[0]."""
    name, _ = _name_and_rest(line.strip())
    if name.upper() not in _REGISTRATION:
        raise AtError("bad_response", f"not a registration line: {line[:40]!r}")
    args = _fields(line, name.upper(), 2)
    return _int(args[0], line), _int(args[1], line)


def parse_cmgs(line: str) -> int:
    """The message reference of ``+CMGS: <mr>`` (matches TP-MR of the later +CDS status report)."""
    mr = _int(_fields(line, "+CMGS", 1)[0], line)
    if mr > 255:
        raise AtError("bad_response", f"message reference out of range in {line[:40]!r}")
    return mr


def parse_cmgl(info_lines: list[str]) -> list[tuple[int, str]]:
    """(index, PDU hex) of each message in the Info lines of ``AT+CMGL=<stat>`` in PDU mode.

    Each ``+CMGL: <index>,<stat>,[<alpha>],<length>`` line is followed by its PDU; a header without a
    PDU line is skipped.
    """
    messages = []
    index: int | None = None
    for raw in info_lines:
        line = raw.strip()
        if line.upper().startswith("+CMGL:"):
            index = _int(_fields(line, "+CMGL", 1)[0], line)
        elif index is not None and _HEX.fullmatch(line):
            messages.append((index, line.upper()))
            index = None
    return messages


# --- voice calls (TS 27.007 7.6, 7.8, 7.18) ------------------------------------------------------

# <stat> of a +CLCC line. SIMCom modules also list a call being released as 6 (disconnect): a call in any
# state but these is on its way out.
CALL_ACTIVE: typing.Final = 0  # answered: the two parties are connected
CALL_HELD: typing.Final = 1
CALL_DIALING: typing.Final = 2  # outgoing, not yet ringing at the far end
CALL_ALERTING: typing.Final = 3  # outgoing, the far end rings
CALL_INCOMING: typing.Final = 4
CALL_WAITING: typing.Final = 5  # incoming while another call is up


@dataclass(frozen=True, slots=True)
class CallerId:
    """The number the network presents for a call: the caller's (+CLIP) or the answering line's (+COLP).

    ``number`` as the modem gives it: ``"+8613800138000"``, ``"13800138000"``, ``"8613800138000"`` (with
    type 145 but no plus, as some networks send it) or ``""`` when there is none. ``validity`` is +CLIP's
    <CLI validity>: 0 valid, 1 withheld by the caller, 2 not available (interworking); None if not sent."""

    number: str
    type: int | None = None
    validity: int | None = None

    @property
    def withheld(self) -> bool:
        """No number to act on: withheld by the caller, unavailable from their network, or empty."""
        return not self.number or self.validity in (1, 2)

    @property
    def international(self) -> str:
        """The number with the plus that type 145 (international) implies but some networks leave out."""
        if self.type == 145 and self.number and not self.number.startswith("+"):
            return "+" + self.number
        return self.number


@dataclass(frozen=True, slots=True)
class CallEntry:
    """One call of the list ``AT+CLCC`` answers: ``+CLCC: <id>,<dir>,<stat>,<mode>,<mpty>[,<number>,<type>]``."""

    index: int
    outgoing: bool  # <dir> 0: mobile originated (we dialled it)
    state: int  # CALL_ACTIVE, CALL_DIALING, CALL_ALERTING, ...
    mode: int  # 0 voice, 1 data, 2 fax, 9 unknown
    number: str = ""
    type: int | None = None


def _optional_int(value: str, line: str) -> int | None:
    return None if value == "" else _int(value, line)


def parse_clip(args: typing.Sequence[str]) -> CallerId:
    """The caller id in the fields of a ``+CLIP`` unsolicited code (``Urc.args``):
    ``<number>,<type>[,<subaddr>,<satype>[,<alpha>[,<CLI validity>]]]``."""
    line = "+CLIP: " + ",".join(args)
    if not args:
        raise AtError("bad_response", "+CLIP without fields")
    number = args[0].strip()
    if number and not re.fullmatch(r"\+?[0-9*#]{1,24}", number):
        # Not dialable digits: an operator's text ("anonymous", "Unknown") stands for no number at all.
        number = ""
    kind = _optional_int(args[1], line) if len(args) > 1 else None
    validity = _optional_int(args[5], line) if len(args) > 5 else None
    return CallerId(number, kind, validity)


def parse_colp(line: str) -> CallerId:
    """The connected line of ``+COLP: <number>,<type>[,...]``, the Info line of a dial the far end answered."""
    args = _fields(line, "+COLP", 1)
    return CallerId(args[0], _optional_int(args[1], line) if len(args) > 1 else None)


def parse_clcc(line: str) -> CallEntry:
    """One line of the answer to ``AT+CLCC``."""
    args = _fields(line, "+CLCC", 5)
    index, direction, state, mode = (_int(args[i], line) for i in range(4))
    if direction not in (0, 1):
        raise AtError("bad_response", f"call direction out of range in {line[:40]!r}")
    number = args[5] if len(args) > 5 else ""
    kind = _optional_int(args[6], line) if len(args) > 6 else None
    return CallEntry(index, direction == 0, state, mode, number, kind)


# --- +CMS ERROR classification ------------------------------------------------------------------

CmsClass = typing.Literal["permanent", "channel_down", "transient"]

# Retrying this message (on any channel that uses the same number and text) will not help.
CMS_PERMANENT: typing.Final[frozenset[int]] = frozenset(
    {
        1,  # unassigned (unallocated) number
        10,  # call barred (the destination's barring)
        21,  # short message transfer rejected
        28,  # unidentified subscriber
        29,  # facility rejected
        30,  # unknown subscriber
        50,  # requested facility not subscribed (may also mean our SIM lacks SMS: watch for repeats)
        69,  # requested facility not implemented
        95,  # invalid message, unspecified
        96,  # invalid mandatory information
        97,  # message type non-existent or not implemented
        99,  # information element non-existent or not implemented
        0x80, 0x81, 0x82, 0x8F,  # TP-PID errors (TS 23.040 9.2.3.22)
        0x90, 0x91, 0x9F,  # TP-DCS errors
        0xB0,  # TPDU not supported
        0xC3,  # invalid SME address
        0xC4,  # destination SME barred
        0xC6, 0xC7,  # TP-VPF / TP-VP not supported: our PDU, retried unchanged, fails again
        303,  # operation not supported
        304,  # invalid PDU mode parameter: our PDU is wrong, resending it is pointless
        305,  # invalid text mode parameter
        321,  # invalid memory index (reading or deleting a slot that is empty)
    }
)  # fmt: skip

# This modem cannot send anything until a person acts: fail over to the other channel, alert the
# operator, and retry the message there. Not the message's fault, so not "permanent" for it.
CMS_CHANNEL_DOWN: typing.Final[frozenset[int]] = frozenset(
    {
        8,  # operator determined barring: in practice a prepaid SIM out of credit (欠费停机)
        0xC1,  # no SC subscription
        310,  # (U)SIM not inserted
        311, 312, 316, 317, 318,  # SIM PIN / PH-SIM PIN / PUK / PIN2 / PUK2 required
        313,  # SIM failure
        315,  # SIM wrong
        330,  # SMSC address unknown: AT+CSCA is missing (configuration)
    }
)  # fmt: skip

# Everything else is transient, retried with backoff: 27 destination out of order, 38 network out of
# order, 41 temporary failure, 42 congestion, 47 resources unavailable, 81/98/111/127 protocol
# hiccups, 0xC0 SC busy, 0xC2 SC system failure, 0xC5 rejected duplicate (a retry gets a new TP-MR),
# 300 ME failure, 301 SMS service of ME reserved, 302 operation not allowed (modem busy or not ready
# after boot), 314 SIM busy, 320 memory failure, 322 memory full, 331 no network service, 332 network
# timeout, 340 no +CNMA expected, 500 unknown, 512+ manufacturer specific. Unknown codes are
# transient so a message is never given up on a code we do not understand; the retry budget bounds it.


def classify_cms(code: int) -> CmsClass:
    if code in CMS_PERMANENT:
        return "permanent"
    if code in CMS_CHANNEL_DOWN:
        return "channel_down"
    return "transient"


def is_permanent_cms(code: int) -> bool:
    return code in CMS_PERMANENT


def is_channel_down_cms(code: int) -> bool:
    return code in CMS_CHANNEL_DOWN


def cme_code(error: str | None) -> int | None:
    """The number of a ``Final.error`` such as ``"CME 27"``; None for anything else."""
    if error is None or not error.startswith("CME "):
        return None
    value = error[4:].strip()
    return int(value) if value.isascii() and value.isdigit() else None


def cms_code(error: str | None) -> int | None:
    """The number of a ``Final.error`` such as ``"CMS 500"``; None for anything else."""
    if error is None or not error.startswith("CMS "):
        return None
    value = error[4:].strip()
    return int(value) if value.isascii() and value.isdigit() else None
