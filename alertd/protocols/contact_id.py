"""Ademco Contact ID (SIA DC-05) and the receiver lines that carry it, as a sans-I/O codec.

The message
-----------
Sixteen digits ``ACCT MT Q XYZ GG CCC S``:

=========  ======  ==================================================================
field      digits  accepted
=========  ======  ==================================================================
ACCT       4       ``0-9`` and ``B-F`` (hex accounts); see "the digit A" below
MT         2       ``18`` (standard) or ``98`` (seen from some panels); else ``bad_type``
Q          1       ``1`` new event, ``3`` restore, ``6`` previously reported / still present
XYZ        3       event code, decimal, looked up in :data:`EVENT_CODES`
GG         2       group / partition, decimal
CCC        3       zone or user number, decimal
S          1       checksum
=========  ======  ==================================================================

Digit values: ``1``-``9`` are 1-9, ``0`` is 10, ``B``-``F`` are 11-15. A message is valid when the
sum of the values of all sixteen digits is a multiple of 15, so ``S`` is never worth 0: it is
written ``0`` when it is worth 10 and ``F`` when the first fifteen already sum to a multiple of 15.

The digit A. DTMF has no separate key for a hex ``A``: the ``0`` key *is* value 10, and DTMF
decoder chips (MT8870 and friends) report it as ``0xA``, so some receivers print ``A`` where the
panel sent ``0``. We therefore treat ``A`` (and ``a``) as exactly the digit ``0`` in every position:
worth 10 in the checksum and normalized to ``0`` in the decoded fields, so account ``A234`` is
account ``0234``. Lower-case hex is accepted and upper-cased. Event code, group and zone must be
decimal after that normalization (``bad_digit`` otherwise: a hex zone is rejected, never guessed).

Errors raise :class:`ContactIdError` whose ``reason`` is a metrics label: ``bad_length``,
``bad_digit``, ``bad_checksum``, ``bad_type``, ``bad_qualifier``, ``unknown_code`` (checked in that
order). An event code missing from :data:`EVENT_CODES` is ``unknown_code``: never mapped by guess.

Receiver lines
--------------
A serial line from a receiver is decoded by a :class:`LineDecoder` for one :class:`LineFormat`,
chosen by name from :data:`LINE_FORMATS` (config: the line's format name). ``feed(bytes)`` returns
:class:`Report`, :class:`ReceiverHeartbeat` and :class:`DecodeError` values in order; errors are
values, so one bad line never hides the good lines around it. ``ack_for(decoded)`` is the reply to
write back (``b""``: none). Bytes are ASCII; the serial port itself (e.g. 7E1 on a Sur-Gard) is the
ingress adapter's business.

``plain``
    One 16-digit message per line, terminated by CR, LF or CRLF; empty lines are skipped.
    No replies. Example: ``1234181131010075\\r\\n``.

``mlr2`` (Sur-Gard MLR2 / MLR2-DG automation output, Contact ID = protocol 5)
    ``5 RR L SP MT AAAA Q XYZ GG CCC DC4``, exactly::

        '5' + receiver (2 decimal digits) + line (1 hex digit) + ' '
            + MT ('18' | '98') + account (4) + Q ('E' new | 'R' restore | 'P' previous,
              digits '1' | '3' | '6' also accepted) + XYZ (3) + GG (2) + CCC (3) + 0x14

    e.g. ``5011 181234E12101001\\x14``: receiver 01, line 1, account 1234, new duress (121),
    group 01, zone 001. There is **no checksum digit**: the receiver verified it before printing,
    so a Report from this format carries the receiver's word for it. Heartbeat (the receiver
    checks the automation link, about every 30 s)::

        '1' + receiver (2) + line (1-3 digits, "0"s) + spaces + '@' + spaces + 0x14

    e.g. ``1011           @    \\x14``. The receiver wants ACK ``0x06`` within 4 s for every
    message, heartbeats included; on NAK ``0x15`` or silence it resends (three times), and if the
    automation keeps failing it buffers signals until a heartbeat is acknowledged again.

``mlr2000`` (Sur-Gard MLR2000 emulation)
    As ``mlr2`` with a three-digit line number: ``5 RR LLL SP 18AAAAQXYZGGCCC DC4``.

Both Sur-Gard formats also accept CR or LF as terminator (so ``...\\x14\\r\\n`` works). What we
reply after each decoded value:

* a Report or a heartbeat: ACK;
* ``bad_length``, ``bad_digit``, ``too_long``: NAK, because a resend may repair a damaged line;
* ``bad_type``, ``bad_qualifier``, ``unknown_code``, ``unsupported`` (a whole line in another
  receiver protocol, e.g. SIA ``3RRL...``): ACK. The line arrived intact and a resend would be the
  same bytes; NAKing it would only make the receiver retry and then buffer every *other* signal,
  alarms included, as if the automation were down. The error is still returned, to be logged
  and counted;
* ``garbage`` (bytes before a frame on the same line): nothing; the frame after it is answered.

Framing: a line longer than :data:`MAX_LINE` bytes without a terminator yields one ``too_long``
error and the rest of that line (up to the next terminator) is dropped. Bytes before a valid
frame start on the same line yield one ``garbage`` error and the frame still decodes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Literal, get_args

from alertd.core.model import Kind
from alertd.protocols.common import QUOTE_LIMIT, CodecError, quote

__all__ = [
    "ACK",
    "DECODE_REASONS",
    "EVENT_CODES",
    "LINE_FORMATS",
    "MAX_LINE",
    "NAK",
    "REASONS",
    "ContactIdError",
    "DecodeError",
    "DecodeReason",
    "Decoded",
    "EventCode",
    "LineDecoder",
    "LineFormat",
    "Reason",
    "ReceiverHeartbeat",
    "Report",
    "SupervisionKind",
    "build_message",
    "checksum_digit",
    "digit_value",
    "get_format",
    "parse_message",
]

ACK: Final = b"\x06"
NAK: Final = b"\x15"
DC4: Final = b"\x14"
MAX_LINE: Final = 256  # bytes without a terminator before we give up on a line; a frame is ~25

Reason = Literal["bad_length", "bad_digit", "bad_checksum", "bad_type", "bad_qualifier", "unknown_code"]
REASONS: Final[frozenset[str]] = frozenset(get_args(Reason))
DecodeReason = Literal[
    "bad_length",
    "bad_digit",
    "bad_checksum",
    "bad_type",
    "bad_qualifier",
    "unknown_code",
    "garbage",
    "too_long",
    "unsupported",
]
DECODE_REASONS: Final[frozenset[str]] = frozenset(get_args(DecodeReason))

MESSAGE_TYPES: Final = frozenset({"18", "98"})
QUALIFIERS: Final = frozenset({1, 3, 6})
NEW, RESTORE, PREVIOUS = 1, 3, 6

_DIGIT_VALUES: Final[Mapping[str, int]] = MappingProxyType(
    {**{str(n): n for n in range(1, 10)}, "0": 10, "A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15}
)
_VALUE_DIGITS: Final[Mapping[int, str]] = MappingProxyType(
    {**{n: str(n) for n in range(1, 10)}, 10: "0", 11: "B", 12: "C", 13: "D", 14: "E", 15: "F"}
)
_DECIMAL = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() would let "²" through


class ContactIdError(CodecError[Reason]):
    """A Contact ID message we cannot accept."""



# --- the event code table ---------------------------------------------------------------------


class SupervisionKind(StrEnum):
    """Device health news that is not an alarm (``alertd.core.events.Supervision.event``)."""

    TAMPER = "tamper"
    LOW_BATTERY = "low_battery"
    AC_LOSS = "ac_loss"
    TEST = "test"
    COMM_TROUBLE = "comm_trouble"


@dataclass(frozen=True, slots=True)
class EventCode:
    """What alertd makes of one Contact ID event code: an alarm kind or a supervision event."""

    code: int
    name: str
    kind: Kind | None = None
    supervision: SupervisionKind | None = None
    silent: bool = False  # duress / silent panic: nothing may sound in the calling household

    def __post_init__(self) -> None:
        if (self.kind is None) == (self.supervision is None):
            raise ValueError(f"event code {self.code}: exactly one of kind and supervision")
        if self.silent and self.kind is None:
            raise ValueError(f"event code {self.code}: only an alarm can be silent")


def _table(*codes: EventCode) -> Mapping[int, EventCode]:
    table = {code.code: code for code in codes}
    if len(table) != len(codes):
        raise ValueError("duplicate event code")
    return MappingProxyType(table)


_S = SupervisionKind
EVENT_CODES: Final[Mapping[int, EventCode]] = _table(
    # 1xx alarms
    EventCode(100, "medical", Kind.MEDICAL),
    EventCode(101, "personal emergency", Kind.MEDICAL),
    EventCode(110, "fire", Kind.FIRE),
    EventCode(111, "smoke", Kind.SMOKE),
    EventCode(114, "heat", Kind.FIRE),
    EventCode(115, "pull station", Kind.FIRE),
    EventCode(120, "panic", Kind.PANIC),
    EventCode(121, "duress", Kind.PANIC, silent=True),
    EventCode(122, "silent panic", Kind.PANIC, silent=True),
    EventCode(123, "audible panic", Kind.PANIC),
    EventCode(130, "burglary", Kind.INTRUSION),
    EventCode(131, "perimeter", Kind.INTRUSION),
    EventCode(132, "interior", Kind.INTRUSION),
    EventCode(133, "24-hour burglary", Kind.INTRUSION),
    EventCode(134, "entry/exit", Kind.INTRUSION),
    EventCode(137, "tamper (cabinet)", supervision=_S.TAMPER),
    EventCode(151, "gas detected", Kind.GAS),
    EventCode(154, "water leak", Kind.WATER),
    EventCode(162, "carbon monoxide", Kind.GAS),
    # 3xx troubles
    EventCode(301, "AC loss", supervision=_S.AC_LOSS),
    EventCode(302, "low system battery", supervision=_S.LOW_BATTERY),
    EventCode(309, "battery test failure", supervision=_S.LOW_BATTERY),
    EventCode(350, "communication trouble", supervision=_S.COMM_TROUBLE),
    EventCode(383, "sensor tamper", supervision=_S.TAMPER),
    EventCode(384, "RF low battery", supervision=_S.LOW_BATTERY),
    # 6xx tests
    EventCode(601, "manual test", supervision=_S.TEST),
    EventCode(602, "periodic test report", supervision=_S.TEST),
)
del _S


# --- the 16-digit message ---------------------------------------------------------------------


def digit_value(char: str) -> int:
    """The checksum value of one Contact ID digit (``0``/``A`` -> 10, ``B``-``F`` -> 11-15)."""
    try:
        return _DIGIT_VALUES[char.upper()]
    except KeyError:
        raise ContactIdError("bad_digit", f"not a Contact ID digit: {quote(char)}") from None


def _values(text: str) -> list[int]:
    values = []
    for position, char in enumerate(text):
        value = _DIGIT_VALUES.get(char.upper())
        if value is None:
            raise ContactIdError("bad_digit", f"not a Contact ID digit at position {position}: {quote(text)}")
        values.append(value)
    return values


def checksum_digit(first15: str) -> str:
    """The checksum digit ``S`` that makes ``first15 + S`` a valid message (never worth 0)."""
    if len(first15) != 15:
        raise ContactIdError("bad_length", f"need the first 15 digits, got {len(first15)}: {quote(first15)}")
    value = 15 - sum(_values(first15)) % 15  # 1..15
    return _VALUE_DIGITS[value]


def build_message(
    account: str,
    qualifier: int,
    event_code: int,
    group: int = 1,
    zone: int = 0,
    message_type: str = "18",
) -> str:
    """A valid 16-digit message, checksum included: for simulators and tests. Does not validate
    semantics (unknown codes and qualifiers are allowed, to build negative vectors)."""
    for name, number, width in (("qualifier", qualifier, 1), ("event_code", event_code, 3)):
        if not 0 <= number < 10**width:
            raise ValueError(f"{name} out of range: {number}")
    if not 0 <= group <= 99 or not 0 <= zone <= 999:
        raise ValueError(f"group or zone out of range: {group}, {zone}")
    first15 = f"{account}{message_type}{qualifier}{event_code:03d}{group:02d}{zone:03d}"
    return first15 + checksum_digit(first15)


@dataclass(frozen=True, slots=True)
class Report:
    """One decoded Contact ID event. ``kind`` or ``supervision`` says what alertd makes of it."""

    account: str  # 4 characters, upper case, "A" normalized to "0"
    message_type: str  # "18" or "98"
    qualifier: int  # 1 new, 3 restore, 6 previously reported
    event_code: int
    group: int
    zone: int  # zone or user number
    kind: Kind | None
    supervision: SupervisionKind | None
    silent: bool  # never sound anything in the calling household
    restore: bool  # qualifier 3
    raw: str  # the message or receiver frame as received, terminator and garbage removed
    receiver: str | None = None  # receiver and line number, from a wrapped receiver format
    line: str | None = None

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict for logs, the API and the timeline."""
        what = self.kind.value if self.kind is not None else None
        if what is None and self.supervision is not None:
            what = self.supervision.value
        return {
            "account": self.account,
            "message_type": self.message_type,
            "qualifier": self.qualifier,
            "event_code": self.event_code,
            "group": self.group,
            "zone": self.zone,
            "kind": what,
            "silent": self.silent,
            "restore": self.restore,
            "receiver": self.receiver,
            "line": self.line,
            "valid": True,
        }


def _normalize(text: str) -> str:
    return text.upper().replace("A", "0")


def _decimal(name: str, text: str, raw: str) -> int:
    if not _DECIMAL.fullmatch(text):
        raise ContactIdError("bad_digit", f"{name} must be decimal, got {text!r} in {quote(raw)}")
    return int(text)


def _report(
    account: str,
    message_type: str,
    qualifier: str,
    xyz: str,
    gg: str,
    ccc: str,
    raw: str,
    receiver: str | None = None,
    line: str | None = None,
) -> Report:
    """Validate the fields after the checksum (which the caller checked, or a receiver did)."""
    _values(account + message_type + qualifier + xyz + gg + ccc)  # raises bad_digit
    account, message_type, qualifier = _normalize(account), _normalize(message_type), _normalize(qualifier)
    xyz, gg, ccc = _normalize(xyz), _normalize(gg), _normalize(ccc)
    if message_type not in MESSAGE_TYPES:
        raise ContactIdError("bad_type", f"message type must be 18 or 98, got {message_type!r} in {quote(raw)}")
    q = int(qualifier) if _DECIMAL.fullmatch(qualifier) else -1
    if q not in QUALIFIERS:
        raise ContactIdError("bad_qualifier", f"qualifier must be 1, 3 or 6, got {qualifier!r} in {quote(raw)}")
    code = _decimal("event code", xyz, raw)
    group = _decimal("group", gg, raw)
    zone = _decimal("zone", ccc, raw)
    entry = EVENT_CODES.get(code)
    if entry is None:
        raise ContactIdError("unknown_code", f"unknown event code {xyz} in {quote(raw)}")
    return Report(
        account=account,
        message_type=message_type,
        qualifier=q,
        event_code=code,
        group=group,
        zone=zone,
        kind=entry.kind,
        supervision=entry.supervision,
        silent=entry.silent,
        restore=q == RESTORE,
        raw=raw,
        receiver=receiver,
        line=line,
    )


def parse_message(text: str) -> Report:
    """Decode one 16-digit Contact ID message (surrounding whitespace is ignored)."""
    raw = text.strip(" \t\r\n")
    if len(raw) != 16:
        raise ContactIdError("bad_length", f"a message has 16 digits, got {len(raw)}: {quote(raw)}")
    if sum(_values(raw)) % 15:
        raise ContactIdError("bad_checksum", f"checksum mismatch: {quote(raw)}")
    return _report(raw[0:4], raw[4:6], raw[6], raw[7:10], raw[10:12], raw[12:15], raw)


# --- receiver line formats --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceiverHeartbeat:
    """The receiver checking the link to us; it wants an ACK, like a report."""

    receiver: str
    line: str
    raw: str


@dataclass(frozen=True, slots=True)
class DecodeError:
    """A line (or part of one) we could not use, as a value: see the module doc for replies."""

    reason: DecodeReason
    raw: bytes
    message: str = ""


Decoded = Report | ReceiverHeartbeat | DecodeError
_RESEND: Final = frozenset({"bad_length", "bad_digit", "bad_checksum", "too_long"})


def _bytes(text: str) -> bytes:
    return text.encode("latin-1")  # lines are decoded as latin-1, so this is the exact input


def _attempt(parse: Callable[[], Report], raw: str) -> Decoded:
    try:
        return parse()
    except ContactIdError as err:
        return DecodeError(err.reason, _bytes(raw), str(err))


@dataclass(frozen=True, slots=True)
class LineFormat:
    """One receiver output format: how lines end, how one line decodes, what to reply."""

    name: str
    terminators: bytes  # each byte ends a line
    parse_line: Callable[[str], list[Decoded]]  # one line, terminator removed, never raises
    ack: bytes = b""
    nak: bytes = b""
    max_line: int = MAX_LINE

    def reply(self, decoded: Decoded) -> bytes:
        match decoded:
            case Report() | ReceiverHeartbeat():
                return self.ack
            case DecodeError(reason="garbage"):
                return b""
            case DecodeError(reason=reason) if reason in _RESEND:
                return self.nak
            case DecodeError():
                return self.ack  # arrived intact; a resend would not change it (see module doc)


_WHITESPACE: Final = " \t\r\n"
_PLAIN_MESSAGE = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{16}\Z")


def _parse_plain(text: str) -> list[Decoded]:
    line = text.strip(_WHITESPACE)
    if not line:
        return []
    out: list[Decoded] = []
    match = _PLAIN_MESSAGE.search(line)
    if match is not None and match.start() > 0:
        prefix = line[: match.start()]
        out.append(DecodeError("garbage", _bytes(prefix), f"{len(prefix)} bytes before a message"))
        line = match.group()
    out.append(_attempt(lambda: parse_message(line), line))
    return out


_SURGARD_QUALIFIERS: Final[Mapping[str, str]] = MappingProxyType({"E": "1", "R": "3", "P": "6"})
_SURGARD_HEARTBEAT = re.compile(r"1(?P<receiver>[0-9]{2})(?P<line>[0-9]{1,3}) +@\Z")


def _surgard_parser(line_digits: int) -> Callable[[str], list[Decoded]]:
    # The head has a fixed width, so the frame start is fixed by the last space on the line.
    event = re.compile(rf"5(?P<receiver>[0-9]{{2}})(?P<line>[0-9A-Fa-f]{{{line_digits}}}) (?P<body>\S+)\Z")

    def parse(text: str) -> list[Decoded]:
        line = text.strip(_WHITESPACE)
        if not line:
            return []
        match = event.search(line) or _SURGARD_HEARTBEAT.search(line)
        if match is None:
            return [DecodeError("unsupported", _bytes(line), f"not a Contact ID or heartbeat line: {quote(line)}")]
        out: list[Decoded] = []
        if match.start() > 0:
            prefix = line[: match.start()]
            out.append(DecodeError("garbage", _bytes(prefix), f"{len(prefix)} bytes before a frame"))
        frame = match.group()
        if match.re is _SURGARD_HEARTBEAT:
            out.append(ReceiverHeartbeat(match["receiver"], match["line"], frame))
        else:
            receiver, line_no, body = match["receiver"], match["line"].upper(), match["body"]
            out.append(_attempt(lambda: _parse_surgard_body(body, frame, receiver, line_no), frame))
        return out

    return parse


def _parse_surgard_body(body: str, frame: str, receiver: str, line: str) -> Report:
    # MT AAAA Q XYZ GG CCC, no checksum digit: the receiver checked it.
    if len(body) != 15:
        raise ContactIdError("bad_length", f"a receiver event has 15 characters, got {len(body)}: {quote(frame)}")
    qualifier = body[6].upper()
    qualifier = _SURGARD_QUALIFIERS.get(qualifier, qualifier)
    if qualifier not in "136":  # a letter other than E/R/P would fail as bad_digit otherwise
        raise ContactIdError("bad_qualifier", f"qualifier must be E, R or P, got {body[6]!r} in {quote(frame)}")
    return _report(body[2:6], body[0:2], qualifier, body[7:10], body[10:12], body[12:15], frame, receiver, line)


LINE_FORMATS: Final[Mapping[str, LineFormat]] = MappingProxyType(
    {
        "plain": LineFormat("plain", b"\r\n", _parse_plain),
        "mlr2": LineFormat("mlr2", DC4 + b"\r\n", _surgard_parser(1), ack=ACK, nak=NAK),
        "mlr2000": LineFormat("mlr2000", DC4 + b"\r\n", _surgard_parser(3), ack=ACK, nak=NAK),
    }
)


def get_format(name: str) -> LineFormat:
    """The registered format called ``name``; ValueError naming the known ones otherwise."""
    try:
        return LINE_FORMATS[name]
    except KeyError:
        known = ", ".join(sorted(LINE_FORMATS))
        raise ValueError(f"unknown Contact ID line format {name!r} (known: {known})") from None


class LineDecoder:
    """Frames a receiver byte stream into lines and decodes each; keeps its buffer across feeds."""

    __slots__ = ("_buffer", "_discarding", "_terminator", "line_format")

    def __init__(self, line_format: LineFormat | str) -> None:
        self.line_format = get_format(line_format) if isinstance(line_format, str) else line_format
        self._terminator = re.compile(b"[" + re.escape(self.line_format.terminators) + b"]")
        self._buffer = bytearray()
        self._discarding = False  # inside a line already reported as too long

    def feed(self, data: bytes) -> list[Decoded]:
        self._buffer += data
        out: list[Decoded] = []
        fmt = self.line_format
        while True:
            found = self._terminator.search(self._buffer)
            if found is None:
                if len(self._buffer) > fmt.max_line:
                    if not self._discarding:
                        out.append(self._too_long())
                    self._discarding = True
                    self._buffer.clear()
                return out
            end = found.start()
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._discarding:  # the tail of a line already reported as too long
                self._discarding = False
                continue
            if len(line) > fmt.max_line:
                out.append(self._too_long(line))
                continue
            out.extend(fmt.parse_line(line.decode("latin-1")))

    def _too_long(self, line: bytes | None = None) -> DecodeError:
        data = bytes(self._buffer) if line is None else line
        return DecodeError("too_long", data[:QUOTE_LIMIT], f"line over {self.line_format.max_line} bytes, dropped")

    def ack_for(self, decoded: Decoded) -> bytes:
        """What to write back to the receiver after ``decoded`` (``b""``: nothing)."""
        return self.line_format.reply(decoded)

    @property
    def pending(self) -> int:
        """Bytes buffered waiting for a terminator (for tests and diagnostics)."""
        return len(self._buffer)
