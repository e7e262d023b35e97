"""SMS PDUs (3GPP TS 23.040 / 23.038) for the GSM modem channel, as a sans-I/O codec.

* :func:`encode_submit` builds the SMS-SUBMIT PDUs that ``AT+CMGS=<tpdu_length>`` sends, split into
  concatenated parts when the text does not fit one message.
* :func:`decode_deliver` reads an incoming SMS-DELIVER (``+CMT`` / ``+CMGL`` / ``+CMGR`` in PDU mode);
  :class:`Reassembler` joins concatenated parts.
* :func:`decode_status_report` reads an SMS-STATUS-REPORT (``+CDS``): did message ``mr`` arrive?
* :func:`decode_submit` reads our own SUBMITs back, for a simulated modem.

Choices:

* Text that fits the GSM 7-bit default alphabet (with its extension table) is sent as 7-bit, anything
  else as UCS-2 (UTF-16BE, so characters outside the BMP travel as surrogate pairs). National language
  shift tables are not used.
* Concatenated parts carry an IEI 0x00 header (8-bit reference). A part boundary never falls inside a
  GSM escape pair or a UTF-16 surrogate pair.
* TP-MR is sent as 0: the modem assigns the real reference and reports it in ``+CMGS: <mr>``.
* Validity period: relative (TP-VPF 10), 24 hours by default (TP-VP 0xA7). An alarm that reaches a phone
  more than a day late is noise, and a short validity makes the SC give up and send a failed status
  report we can act on (fail over, tell a person) instead of holding the message for the network's
  default of several days. ``validity_s=None`` leaves TP-VP out (network default).

Every rejection is a :class:`PduError` whose ``reason`` is one of :data:`REASONS`.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from typing import Final, Literal, get_args

from alertd.protocols.common import CodecError

__all__ = [
    "DEFAULT_VALIDITY_S",
    "REASONS",
    "Concat",
    "Deliver",
    "Encoding",
    "PduError",
    "Reason",
    "Reassembler",
    "StatusReport",
    "Submit",
    "SubmitPdu",
    "decode_deliver",
    "decode_status_report",
    "decode_submit",
    "encode_submit",
    "fits_gsm7",
]

DEFAULT_VALIDITY_S: Final = 24 * 3600  # TP-VP 0xA7

Reason = Literal[
    "not_hex",
    "truncated",
    "wrong_type",
    "bad_number",
    "bad_udh",
    "unsupported",
    "too_long",
    "bad_value",
]
REASONS: Final[frozenset[str]] = frozenset(get_args(Reason))

Encoding = Literal["gsm7", "ucs2", "8bit"]
Delivery = Literal["delivered", "pending", "failed"]


class PduError(CodecError[Reason]):
    """A PDU we cannot build or read."""


# --- GSM 7-bit default alphabet (TS 23.038 6.2.1) -----------------------------------------------

_ESC: Final = 0x1B
# fmt: off
_GSM7_BASIC: Final = (
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
# The basic extension table: ESC followed by one of these septets.
_GSM7_EXT: Final = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
_ENCODE_GSM7: Final[dict[str, tuple[int, ...]]] = {
    **{char: (code,) for code, char in enumerate(_GSM7_BASIC) if code != _ESC},
    **{char: (_ESC, code) for code, char in _GSM7_EXT.items()},
}

_SINGLE_SEPTETS: Final = 160
_PART_SEPTETS: Final = 153  # 160 minus the 6-octet concatenation header (7 septets)
_SINGLE_UNITS: Final = 70
_PART_UNITS: Final = 67  # (140 - 6) / 2
_MAX_PARTS: Final = 255

_MTI_DELIVER: Final = 0b00
_MTI_SUBMIT: Final = 0b01
_MTI_STATUS_REPORT: Final = 0b10
_UDHI: Final = 0x40
_SRR: Final = 0x20  # TP-SRR in a SUBMIT, TP-SRQ in a STATUS-REPORT
_VPF_NONE: Final = 0b00
_VPF_RELATIVE: Final = 0b10

_TOA_INTERNATIONAL: Final = 0x91  # TON international, NPI ISDN/E.164
_TOA_UNKNOWN: Final = 0x81  # TON unknown, NPI ISDN/E.164: short codes such as 10086
_TON_INTERNATIONAL: Final = 1
_TON_ALPHANUMERIC: Final = 5
_MAX_DIGITS: Final = 20
_SEMI_OCTET: Final = "0123456789*#abc"  # 0xF is the filler
_CENTURY_PIVOT: Final = 70  # SCTS years 70..99 are 1970..1999 (old test vectors), 00..69 are 2000..2069


def fits_gsm7(text: str) -> bool:
    """True when ``text`` can be sent in the GSM 7-bit default alphabet (with extension table)."""
    return all(char in _ENCODE_GSM7 for char in text)


# --- values -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubmitPdu:
    """One SMS-SUBMIT ready for ``AT+CMGS=<tpdu_length>`` followed by ``hex`` and Ctrl-Z."""

    hex: str  # the whole PDU, SMSC part included ("00": the SMSC stored on the SIM)
    tpdu_length: int  # octets after the SMSC part


@dataclass(frozen=True, slots=True)
class Concat:
    """Concatenation header: part ``seq`` (1-based) of ``total``, grouped by ``ref``."""

    ref: int
    total: int
    seq: int


@dataclass(frozen=True, slots=True)
class Deliver:
    """An incoming SMS-DELIVER.

    ``timestamp`` is the SC timestamp in UTC epoch seconds, None when the network sent an impossible
    date. For ``8bit`` messages ``text`` is the data decoded as Latin-1 (``text.encode("latin-1")``
    gives the bytes back). The text of one part of a UCS-2 message whose sender split a surrogate pair
    keeps the lone surrogate; :class:`Reassembler` joins it with its other half.
    """

    sender: str
    text: str
    timestamp: int | None
    encoding: Encoding
    part: Concat | None = None


@dataclass(frozen=True, slots=True)
class Submit:
    """An SMS-SUBMIT read back (what a simulated modem received from alertd)."""

    to: str
    text: str
    part: Concat | None
    status_report: bool
    encoding: Encoding = "gsm7"
    validity: int | None = None  # raw relative TP-VP, None when absent


@dataclass(frozen=True, slots=True)
class StatusReport:
    """An SMS-STATUS-REPORT: the fate of the message the modem acknowledged with ``+CMGS: <mr>``."""

    mr: int
    recipient: str
    status: Delivery
    st: int  # raw TP-ST, for the log
    timestamp: int | None  # SC timestamp of the original message
    discharged: int | None  # when the SC delivered it, or gave up


# --- low-level readers and writers ----------------------------------------------------------------


def _from_hex(pdu_hex: str) -> bytes:
    text = pdu_hex.strip()
    if len(text) % 2:
        raise PduError("not_hex", f"odd number of hex digits ({len(text)})")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise PduError("not_hex", "PDU is not hexadecimal") from None


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, count: int, what: str) -> bytes:
        if self.pos + count > len(self.data):
            raise PduError("truncated", f"PDU ends inside the {what}")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


def _digits(number: str, what: str) -> tuple[int, str]:
    """(type of address, digits) of a destination or SMSC number."""
    toa, digits = (_TOA_INTERNATIONAL, number[1:]) if number.startswith("+") else (_TOA_UNKNOWN, number)
    # ASCII only: str.isdigit() would let "²" or "١" through.
    if not 1 <= len(digits) <= _MAX_DIGITS or any(c not in "0123456789" for c in digits):
        raise PduError("bad_number", f"invalid {what} number {number!r}")
    return toa, digits


def _semi_octets(digits: str) -> bytes:
    padded = digits + "F" * (len(digits) % 2)
    return bytes.fromhex("".join(padded[i + 1] + padded[i] for i in range(0, len(padded), 2)))


def _read_semi_octets(data: bytes, count: int) -> str:
    out: list[str] = []
    for octet in data:
        for nibble in (octet & 0x0F, octet >> 4):
            if len(out) < count and nibble != 0x0F:
                out.append(_SEMI_OCTET[nibble])
    return "".join(out)


def _encode_smsc(smsc: str | None) -> bytes:
    if smsc is None:
        return b"\x00"
    toa, digits = _digits(smsc, "SMSC")
    body = bytes([toa]) + _semi_octets(digits)
    return bytes([len(body)]) + body


def _skip_smsc(reader: _Reader) -> None:
    reader.take(reader.byte("SMSC length"), "SMSC address")


def _read_address(reader: _Reader, what: str) -> str:
    length = reader.byte(f"{what} length")  # in semi-octets
    toa = reader.byte(f"{what} type")
    raw = reader.take((length + 1) // 2, what)
    ton = (toa >> 4) & 0x07
    if ton == _TON_ALPHANUMERIC:
        return _gsm7_text(_unpack_septets(raw, 0, length * 4 // 7))
    digits = _read_semi_octets(raw, length)
    return "+" + digits if ton == _TON_INTERNATIONAL else digits


def _bcd(octet: int) -> int:
    """A swapped semi-octet pair as a number; -1 when a nibble is not a decimal digit."""
    low, high = octet & 0x0F, octet >> 4
    return -1 if low > 9 or high > 9 else low * 10 + high


def _read_timestamp(reader: _Reader, what: str) -> int | None:
    raw = reader.take(7, what)
    year, month, day, hour, minute, second = (_bcd(octet) for octet in raw[:6])
    # Time zone in quarter hours; bit 3 of the octet (the tens digit's top bit) is the sign.
    tz_octet = raw[6]
    quarters = _bcd(tz_octet & 0xF7)
    if year >= 0:
        year += 1900 if year >= _CENTURY_PIVOT else 2000
    if (
        min(year, day, hour, minute, second, quarters) < 0
        or not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1])
        or hour > 23
        or minute > 59
        or second > 59
    ):
        return None
    offset = quarters * 15 * 60 * (-1 if tz_octet & 0x08 else 1)
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset


# --- septets ------------------------------------------------------------------------------------


def _pack_septets(septets: list[int], header: bytes) -> bytes:
    """User data of a 7-bit message: the header octets, fill bits, then the septets, LSB first."""
    start = -(-len(header) * 8 // 7)  # header length in septets, fill bits included
    total = start + len(septets)
    bits = int.from_bytes(header, "little")
    for index, septet in enumerate(septets):
        bits |= septet << (7 * (start + index))
    return bits.to_bytes(-(-total * 7 // 8), "little")


def _unpack_septets(data: bytes, skip: int, count: int) -> list[int]:
    bits = int.from_bytes(data, "little")
    return [(bits >> (7 * index)) & 0x7F for index in range(skip, count)]


def _gsm7_text(septets: list[int]) -> str:
    out = []
    escaped = False
    for septet in septets:
        if escaped:
            # An unknown extension code shows the basic character (TS 23.038 6.2.1.1).
            out.append(_GSM7_EXT.get(septet, _GSM7_BASIC[septet] if septet != _ESC else " "))
            escaped = False
        elif septet == _ESC:
            escaped = True
        else:
            out.append(_GSM7_BASIC[septet])
    return "".join(out)


# --- SUBMIT -------------------------------------------------------------------------------------


def _validity_octet(seconds: int) -> int:
    """The smallest relative TP-VP lasting at least ``seconds`` (capped at 63 weeks)."""
    if seconds <= 0:
        raise PduError("bad_value", f"validity must be positive, got {seconds}")
    minutes = -(-seconds // 60)
    if minutes <= 12 * 60:  # 0..143: (VP + 1) x 5 minutes
        return max(0, -(-minutes // 5) - 1)
    if minutes <= 24 * 60:  # 144..167: 12 hours + (VP - 143) x 30 minutes
        return 143 + -(-(minutes - 12 * 60) // 30)
    days = -(-minutes // (24 * 60))
    if days <= 30:  # 168..196: (VP - 166) days
        return days + 166
    return min(255, -(-days // 7) + 192)  # 197..255: (VP - 192) weeks


def _split(units: list[list[int]], single: int, per_part: int) -> list[list[int]]:
    """Split indivisible units (a GSM escape pair, a surrogate pair) into parts of at most ``per_part``."""
    if sum(len(unit) for unit in units) <= single:
        return [[code for unit in units for code in unit]]
    parts: list[list[int]] = [[]]
    for unit in units:
        if len(parts[-1]) + len(unit) > per_part:
            parts.append([])
        parts[-1].extend(unit)
    return parts


def _ucs2_units(text: str) -> list[list[int]]:
    """UTF-16 code units per character: one below U+10000, a surrogate pair above (kept together)."""
    units = []
    for char in text:
        code = ord(char)
        if code < 0x10000:
            units.append([code])
        else:
            code -= 0x10000
            units.append([0xD800 | (code >> 10), 0xDC00 | (code & 0x3FF)])
    return units


def encode_submit(
    to: str,
    text: str,
    *,
    reference: int,
    smsc: str | None = None,
    status_report: bool = True,
    validity_s: int | None = DEFAULT_VALIDITY_S,
) -> list[SubmitPdu]:
    """SMS-SUBMIT PDUs carrying ``text`` to ``to`` (E.164 ``+86...`` or a national short code).

    ``reference`` (0..255) is the concatenation reference shared by the parts of a long message; use a
    counter per destination. ``smsc`` None means the SMSC stored on the SIM.
    """
    if not 0 <= reference <= 255:
        raise PduError("bad_value", f"concatenation reference must be 0..255, got {reference}")
    if not text:
        raise PduError("bad_value", "empty text")
    toa, digits = _digits(to, "destination")
    smsc_part = _encode_smsc(smsc)
    gsm7 = fits_gsm7(text)
    if gsm7:
        parts = _split([list(_ENCODE_GSM7[char]) for char in text], _SINGLE_SEPTETS, _PART_SEPTETS)
    else:
        parts = _split(_ucs2_units(text), _SINGLE_UNITS, _PART_UNITS)
    if len(parts) > _MAX_PARTS:
        raise PduError("too_long", f"text needs {len(parts)} parts, more than {_MAX_PARTS}")

    first = _MTI_SUBMIT | (_SRR if status_report else 0)
    first |= (_VPF_NONE if validity_s is None else _VPF_RELATIVE) << 3
    if len(parts) > 1:
        first |= _UDHI
    head = bytes([first, 0x00, len(digits), toa]) + _semi_octets(digits)
    head += bytes([0x00, 0x00 if gsm7 else 0x08])  # TP-PID, TP-DCS
    if validity_s is not None:
        head += bytes([_validity_octet(validity_s)])

    pdus = []
    for seq, codes in enumerate(parts, start=1):
        udh = b"" if len(parts) == 1 else bytes([5, 0x00, 3, reference, len(parts), seq])
        if gsm7:
            udl = -(-len(udh) * 8 // 7) + len(codes)
            user_data = _pack_septets(codes, udh)
        else:
            user_data = udh + b"".join(code.to_bytes(2, "big") for code in codes)
            udl = len(user_data)
        tpdu = head + bytes([udl]) + user_data
        pdus.append(SubmitPdu((smsc_part + tpdu).hex().upper(), len(tpdu)))
    return pdus


# --- user data ----------------------------------------------------------------------------------


def _encoding(dcs: int) -> Encoding:
    """The alphabet of a TP-DCS (TS 23.038 4). Reserved values read as GSM 7-bit, as the spec says."""
    group = dcs >> 4
    if group <= 0b0111:  # general data coding, with or without automatic deletion
        if dcs & 0x20:
            raise PduError("unsupported", f"compressed user data (DCS {dcs:#04x})")
        return ("gsm7", "8bit", "ucs2", "gsm7")[(dcs >> 2) & 0x03]
    if group == 0b1110:  # message waiting indication, UCS-2
        return "ucs2"
    if group == 0b1111:  # data coding / message class
        return "8bit" if dcs & 0x04 else "gsm7"
    return "gsm7"


def _read_udh(header: bytes) -> Concat | None:
    part = None
    pos = 0
    while pos < len(header):
        if pos + 2 > len(header) or pos + 2 + header[pos + 1] > len(header):
            raise PduError("bad_udh", "user data header ends inside an information element")
        iei, size = header[pos], header[pos + 1]
        data = header[pos + 2 : pos + 2 + size]
        pos += 2 + size
        if iei == 0x00 and size == 3:
            candidate = Concat(data[0], data[1], data[2])
        elif iei == 0x08 and size == 4:
            candidate = Concat(int.from_bytes(data[:2], "big"), data[2], data[3])
        else:
            continue
        # TS 23.040 9.2.3.24.1: a zero total, a zero or too large sequence number voids the element.
        if 1 <= candidate.seq <= candidate.total:
            part = candidate
    return part


def _read_user_data(reader: _Reader, first: int, encoding: Encoding) -> tuple[str, Concat | None]:
    udl = reader.byte("user data length")
    data = reader.rest()
    header = b""
    if first & _UDHI:
        if not data or 1 + data[0] > len(data):
            raise PduError("bad_udh", "user data header longer than the user data")
        header = data[1 : 1 + data[0]]
    part = _read_udh(header) if first & _UDHI else None
    header_octets = len(header) + 1 if first & _UDHI else 0

    if encoding == "gsm7":
        if -(-udl * 7 // 8) > len(data):
            raise PduError("truncated", f"user data holds fewer than {udl} septets")
        skip = -(-header_octets * 8 // 7)
        return _gsm7_text(_unpack_septets(data, skip, udl)), part
    if udl > len(data):
        raise PduError("truncated", f"user data holds fewer than {udl} octets")
    body = data[header_octets:udl]
    if encoding == "8bit":
        return body.decode("latin-1"), part
    # A lone surrogate at a part's edge is kept so the reassembled text is whole; elsewhere replaced.
    errors = "surrogatepass" if part is not None else "replace"
    return body[: len(body) // 2 * 2].decode("utf-16-be", errors), part


# --- DELIVER, STATUS-REPORT, SUBMIT decoding ------------------------------------------------------


def _first_octet(reader: _Reader, mti: int, name: str) -> int:
    first = reader.byte("first octet")
    if first & 0x03 != mti:
        raise PduError("wrong_type", f"not an {name} (TP-MTI {first & 0x03})")
    return first


def decode_deliver(pdu_hex: str) -> Deliver:
    """Decode an SMS-DELIVER as listed by the modem (SMSC part first)."""
    reader = _Reader(_from_hex(pdu_hex))
    _skip_smsc(reader)
    first = _first_octet(reader, _MTI_DELIVER, "SMS-DELIVER")
    sender = _read_address(reader, "sender")
    reader.byte("TP-PID")
    encoding = _encoding(reader.byte("TP-DCS"))
    timestamp = _read_timestamp(reader, "SC timestamp")
    text, part = _read_user_data(reader, first, encoding)
    return Deliver(sender, text, timestamp, encoding, part)


def decode_submit(pdu_hex: str) -> Submit:
    """Decode an SMS-SUBMIT (SMSC part first), as a simulated modem reads what alertd sent."""
    reader = _Reader(_from_hex(pdu_hex))
    _skip_smsc(reader)
    first = _first_octet(reader, _MTI_SUBMIT, "SMS-SUBMIT")
    reader.byte("TP-MR")
    to = _read_address(reader, "destination")
    reader.byte("TP-PID")
    encoding = _encoding(reader.byte("TP-DCS"))
    validity = None
    match (first >> 3) & 0x03:
        case 0b10:
            validity = reader.byte("TP-VP")
        case 0b01 | 0b11:  # enhanced or absolute: 7 octets we do not interpret
            reader.take(7, "TP-VP")
    text, part = _read_user_data(reader, first, encoding)
    return Submit(to, text, part, bool(first & _SRR), encoding, validity)


def _delivery(st: int) -> Delivery:
    if st <= 0x1F:  # transaction completed (received, forwarded, replaced, SC-specific)
        return "delivered"
    if st <= 0x3F:  # temporary error, the SC is still trying
        return "pending"
    # 0x40..0x5F permanent error; 0x60..0x7F temporary error the SC no longer retries;
    # reserved values (bit 7 set) count as "service rejected" (TS 23.040 9.2.3.15).
    return "failed"


def decode_status_report(pdu_hex: str) -> StatusReport:
    """Decode an SMS-STATUS-REPORT (``+CDS`` in PDU mode; SMSC part first)."""
    reader = _Reader(_from_hex(pdu_hex))
    _skip_smsc(reader)
    _first_octet(reader, _MTI_STATUS_REPORT, "SMS-STATUS-REPORT")
    mr = reader.byte("TP-MR")
    recipient = _read_address(reader, "recipient")
    timestamp = _read_timestamp(reader, "SC timestamp")
    discharged = _read_timestamp(reader, "discharge time")
    st = reader.byte("TP-ST")
    # Optional TP-PI, PID, DCS and user data may follow; nothing we need.
    return StatusReport(mr, recipient, _delivery(st), st, timestamp, discharged)


# --- reassembly ---------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Replace surrogates left unpaired (a sender split a pair, and a part never came)."""
    return text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")


@dataclass(slots=True)
class _Group:
    first_seen: float
    parts: dict[int, Deliver] = field(default_factory=dict)


class Reassembler:
    """Joins the parts of concatenated messages, keyed by (sender, reference, total).

    Pure: the caller passes ``now`` and calls :meth:`expire` now and then. At most ``max_groups``
    incomplete messages are kept; beyond that the oldest is dropped (returned by the next ``expire``).
    """

    def __init__(self, max_groups: int = 1000) -> None:
        self._groups: dict[tuple[str, int, int], _Group] = {}
        self._dropped: list[Deliver] = []
        self._max_groups = max_groups

    def __len__(self) -> int:
        return len(self._groups)

    def add(self, deliver: Deliver, now: float) -> Deliver | None:
        """The whole message once its last part arrives (the input itself if not concatenated)."""
        part = deliver.part
        if part is None:
            return deliver
        if part.total == 1:
            return Deliver(deliver.sender, _clean(deliver.text), deliver.timestamp, deliver.encoding)
        key = (deliver.sender, part.ref, part.total)
        group = self._groups.get(key)
        if group is None:
            if len(self._groups) >= self._max_groups:
                oldest = min(self._groups, key=lambda k: self._groups[k].first_seen)
                self._dropped.extend(self._sorted(self._groups.pop(oldest)))
            group = self._groups[key] = _Group(now)
        group.parts[part.seq] = deliver  # a repeated part replaces the earlier copy
        if len(group.parts) < part.total:
            return None
        del self._groups[key]
        parts = [p for _, p in sorted(group.parts.items())]  # raw: a split surrogate pair joins here
        stamps = [p.timestamp for p in parts if p.timestamp is not None]
        text = _clean("".join(p.text for p in parts))
        return Deliver(deliver.sender, text, min(stamps, default=None), parts[0].encoding)

    def expire(self, now: float, older_than_s: float) -> list[Deliver]:
        """Drop messages whose first part came ``older_than_s`` ago or more; return their parts."""
        expired = [key for key, group in self._groups.items() if now - group.first_seen >= older_than_s]
        dropped, self._dropped = self._dropped, []
        for key in expired:
            dropped.extend(self._sorted(self._groups.pop(key)))
        return dropped

    @staticmethod
    def _sorted(group: _Group) -> list[Deliver]:
        return [
            Deliver(p.sender, _clean(p.text), p.timestamp, p.encoding, p.part) for _, p in sorted(group.parts.items())
        ]
