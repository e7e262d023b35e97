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
XYZ        3       event code, decimal, looked up in :data:`EVENT_CODES` (any code is accepted)
GG         2       group / partition, decimal
CCC        3       zone, or user number for the 4xx codes (open/close, access), decimal
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
``bad_digit``, ``bad_checksum``, ``bad_type``, ``bad_qualifier`` (checked in that order).

Event codes
-----------
:data:`EVENT_CODES` holds every code SIA DC-05 defines, each with its name; its first digit is its
:class:`Category` (1 alarm, 2 supervisory, 3 trouble, 4 open/close and access, 5 bypass, 6 test and
miscellaneous). What a :class:`Report` means to alertd (:attr:`Report.meaning`):

* an alarm kind: the 1xx codes that mean a present danger (``121``/``122``/``124``/``125`` duress and
  ``146`` silent burglary are *silent*); qualifier 3 is the alarm's restore;
* a :class:`SupervisionKind`: ``tampered``, ``battery_low``, ``ac_loss``, ``comm_trouble`` (qualifier 1
  or 6: present, 3: over) and ``test`` (601/602/603/608, the panel's check-in);
* ``open_close`` (400-403, 407-409, 441, 442): qualifier 1 is an opening (:attr:`Report.arming`
  ``disarmed``), 3 a closing (``armed``, or ``armed_stay`` for 441/442), by user :attr:`Report.user`;
* ``other``: every other code, in the table or not. A checksum-valid message with a code alertd does
  not know is a valid report of kind ``other``: acknowledged and recorded, never an alarm, because
  mapping an unknown code to a kind would be a guess.

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

* a Report (of any kind, ``other`` included) or a heartbeat: ACK;
* ``bad_length``, ``bad_digit``, ``too_long``: NAK, because a resend may repair a damaged line;
* ``bad_type``, ``bad_qualifier``, ``unsupported`` (a whole line in another
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

from alertd.core.events import Arming, SupervisionKind
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
    "Category",
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
    "build_message",
    "category_of",
    "checksum_digit",
    "digit_value",
    "get_format",
    "parse_message",
]

ACK: Final = b"\x06"
NAK: Final = b"\x15"
DC4: Final = b"\x14"
MAX_LINE: Final = 256  # bytes without a terminator before we give up on a line; a frame is ~25

Reason = Literal["bad_length", "bad_digit", "bad_checksum", "bad_type", "bad_qualifier"]
REASONS: Final[frozenset[str]] = frozenset(get_args(Reason))
DecodeReason = Literal[
    "bad_length",
    "bad_digit",
    "bad_checksum",
    "bad_type",
    "bad_qualifier",
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


class Category(StrEnum):
    """The DC-05 block an event code belongs to: its first digit."""

    ALARM = "alarm"  # 1xx
    SUPERVISORY = "supervisory"  # 2xx: fire and sprinkler supervision
    TROUBLE = "trouble"  # 3xx
    OPEN_CLOSE = "open_close"  # 4xx: open/close, remote access, access control; CCC is a user number
    BYPASS = "bypass"  # 5xx: bypasses and disables
    TEST = "test"  # 6xx: test and miscellaneous
    OTHER = "other"  # 0xx, 7xx-9xx: outside DC-05's blocks (vendor extensions)


_BLOCKS: Final[Mapping[int, Category]] = MappingProxyType(
    {
        1: Category.ALARM,
        2: Category.SUPERVISORY,
        3: Category.TROUBLE,
        4: Category.OPEN_CLOSE,
        5: Category.BYPASS,
        6: Category.TEST,
    }
)


def category_of(code: int) -> Category:
    """The DC-05 block of an event code, known to the table or not (the blocks are the standard's)."""
    return _BLOCKS.get(code // 100, Category.OTHER)


@dataclass(frozen=True, slots=True)
class EventCode:
    """One DC-05 event code and what alertd makes of it: an alarm kind, a supervision event, the panel's
    arming state (open/close codes), or no more than its name (a report of kind ``other``)."""

    code: int
    name: str
    kind: Kind | None = None
    supervision: SupervisionKind | None = None
    silent: bool = False  # duress / silent panic: nothing may sound in the calling household
    closes: Arming | None = None  # open/close codes: what a closing (qualifier 3) arms; an opening disarms

    def __post_init__(self) -> None:
        if self.category is Category.OTHER:
            raise ValueError(f"event code {self.code}: not in a DC-05 block (100-699)")
        if self.kind is not None and self.supervision is not None:
            raise ValueError(f"event code {self.code}: at most one of kind and supervision")
        if self.silent and self.kind is None:
            raise ValueError(f"event code {self.code}: only an alarm can be silent")
        # Only the alarm block may ring a village: a trouble or a test must never become an alarm by a typo.
        if self.kind is not None and self.category is not Category.ALARM:
            raise ValueError(f"event code {self.code}: only a 1xx code is an alarm")
        if self.closes is not None and (self.category is not Category.OPEN_CLOSE or self.closes is Arming.DISARMED):
            raise ValueError(f"event code {self.code}: only a 4xx open/close code arms, and a closing never disarms")

    @property
    def category(self) -> Category:
        return category_of(self.code)


def _table(*codes: EventCode) -> Mapping[int, EventCode]:
    table = {code.code: code for code in codes}
    if len(table) != len(codes):
        raise ValueError("duplicate event code")
    return MappingProxyType(table)


# SIA DC-05 (Ademco Contact ID), every code it defines. A code alertd has no use for beyond its name is
# still listed: the name goes to the log, the timeline and `alertd decode`. Mappings to alarm kinds follow
# one rule: a present danger to people or property rings (fire, panic, intrusion, gas, water, medical);
# pre-alarms and monitoring of equipment (near alarm, freezer, tank level) are recorded, never rung.
_E, _K, _S, _A = EventCode, Kind, SupervisionKind, Arming
EVENT_CODES: Final[Mapping[int, EventCode]] = _table(
    # 1xx alarms: medical
    _E(100, "medical", _K.MEDICAL),
    _E(101, "personal emergency", _K.MEDICAL),
    _E(102, "fail to report in", _K.MEDICAL),  # a person living alone missed their check-in button
    # fire
    _E(110, "fire", _K.FIRE),
    _E(111, "smoke", _K.SMOKE),
    _E(112, "combustion", _K.FIRE),
    _E(113, "water flow", _K.FIRE),  # sprinkler water flowing: a fire is being fought
    _E(114, "heat", _K.FIRE),
    _E(115, "pull station", _K.FIRE),
    _E(116, "duct", _K.SMOKE),
    _E(117, "flame", _K.FIRE),
    _E(118, "near alarm (fire)"),  # a pre-alarm
    # panic
    _E(120, "panic", _K.PANIC),
    _E(121, "duress", _K.PANIC, silent=True),
    _E(122, "silent panic", _K.PANIC, silent=True),
    _E(123, "audible panic", _K.PANIC),
    _E(124, "duress, access granted", _K.PANIC, silent=True),  # duress: the caller is being watched
    _E(125, "duress, egress granted", _K.PANIC, silent=True),
    # burglary
    _E(130, "burglary", _K.INTRUSION),
    _E(131, "perimeter", _K.INTRUSION),
    _E(132, "interior", _K.INTRUSION),
    _E(133, "24-hour burglary", _K.INTRUSION),
    _E(134, "entry/exit", _K.INTRUSION),
    _E(135, "day/night", _K.INTRUSION),
    _E(136, "outdoor", _K.INTRUSION),
    _E(137, "tamper (cabinet)", supervision=_S.TAMPERED),
    _E(138, "near alarm (burglary)"),  # a first trip of a cross-zone pair
    _E(139, "intrusion verifier", _K.INTRUSION),
    # general
    _E(140, "general alarm", _K.PANIC),  # an alarm of no stated kind: someone needs help
    _E(141, "polling loop open", supervision=_S.TAMPERED),  # wiring cut or shorted: treated as sabotage
    _E(142, "polling loop short", supervision=_S.TAMPERED),
    _E(143, "expansion module failure", supervision=_S.COMM_TROUBLE),  # the panel lost a part of itself
    _E(144, "sensor tamper", supervision=_S.TAMPERED),
    _E(145, "expansion module tamper", supervision=_S.TAMPERED),
    _E(146, "silent burglary", _K.INTRUSION, silent=True),  # the panel was told not to tip the intruder off
    _E(147, "sensor supervision failure", supervision=_S.COMM_TROUBLE),
    # 24-hour non-burglary
    _E(150, "24-hour non-burglary"),  # an auxiliary zone of unstated purpose: not guessed into an alarm
    _E(151, "gas detected", _K.GAS),
    _E(152, "refrigeration"),
    _E(153, "loss of heat"),
    _E(154, "water leak", _K.WATER),
    _E(155, "foil break", _K.INTRUSION),  # window foil: a burglary sensor
    _E(156, "day trouble"),
    _E(157, "low bottled gas level"),
    _E(158, "high temperature"),
    _E(159, "low temperature"),
    _E(161, "loss of air flow"),
    _E(162, "carbon monoxide", _K.GAS),
    _E(163, "tank level"),
    # 2xx supervisory (fire and sprinkler systems)
    _E(200, "fire supervisory"),
    _E(201, "low water pressure"),
    _E(202, "low CO2"),
    _E(203, "gate valve sensor"),
    _E(204, "low water level"),
    _E(205, "pump activated"),
    _E(206, "pump failure"),
    # 3xx troubles: system
    _E(300, "system trouble"),
    _E(301, "AC loss", supervision=_S.AC_LOSS),
    _E(302, "low system battery", supervision=_S.BATTERY_LOW),
    _E(303, "RAM checksum bad"),
    _E(304, "ROM checksum bad"),
    _E(305, "system reset"),
    _E(306, "panel programming changed"),
    _E(307, "self-test failure"),
    _E(308, "system shutdown"),
    _E(309, "battery test failure", supervision=_S.BATTERY_LOW),
    _E(310, "ground fault"),
    _E(311, "battery missing/dead", supervision=_S.BATTERY_LOW),
    _E(312, "power supply overcurrent"),
    _E(313, "engineer reset"),
    # sounder / relay
    _E(320, "sounder/relay trouble"),
    _E(321, "bell 1 trouble"),
    _E(322, "bell 2 trouble"),
    _E(323, "alarm relay trouble"),
    _E(324, "trouble relay trouble"),
    _E(325, "reversing relay trouble"),
    _E(326, "notification appliance circuit 3 trouble"),
    _E(327, "notification appliance circuit 4 trouble"),
    # system peripherals
    _E(330, "system peripheral trouble"),
    _E(331, "polling loop open"),
    _E(332, "polling loop short"),
    _E(333, "expansion module failure", supervision=_S.COMM_TROUBLE),
    _E(334, "repeater failure"),
    _E(335, "local printer out of paper"),
    _E(336, "local printer failure"),
    _E(337, "expansion module DC loss"),
    _E(338, "expansion module low battery", supervision=_S.BATTERY_LOW),
    _E(339, "expansion module reset"),
    _E(341, "expansion module tamper", supervision=_S.TAMPERED),
    _E(342, "expansion module AC loss", supervision=_S.AC_LOSS),
    _E(343, "expansion module self-test failure"),
    _E(344, "RF receiver jam detected"),
    # communication
    _E(350, "communication trouble", supervision=_S.COMM_TROUBLE),
    _E(351, "telco 1 fault", supervision=_S.COMM_TROUBLE),
    _E(352, "telco 2 fault", supervision=_S.COMM_TROUBLE),
    _E(353, "long range radio transmitter fault", supervision=_S.COMM_TROUBLE),
    _E(354, "failure to communicate event", supervision=_S.COMM_TROUBLE),
    _E(355, "loss of radio supervision", supervision=_S.COMM_TROUBLE),
    _E(356, "loss of central polling", supervision=_S.COMM_TROUBLE),
    _E(357, "long range radio VSWR problem", supervision=_S.COMM_TROUBLE),
    # protection loops
    _E(370, "protection loop trouble"),
    _E(371, "protection loop open"),
    _E(372, "protection loop short"),
    _E(373, "fire loop trouble"),
    _E(374, "exit error alarm (zone)"),
    _E(375, "panic zone trouble"),
    _E(376, "hold-up zone trouble"),
    _E(377, "swinger trouble"),
    _E(378, "cross-zone trouble"),
    # sensors
    _E(380, "sensor trouble"),
    _E(381, "loss of supervision (RF)", supervision=_S.COMM_TROUBLE),  # a wireless sensor no longer heard
    _E(382, "loss of supervision (RPM)", supervision=_S.COMM_TROUBLE),
    _E(383, "sensor tamper", supervision=_S.TAMPERED),
    _E(384, "RF low battery", supervision=_S.BATTERY_LOW),
    _E(385, "smoke detector high sensitivity"),
    _E(386, "smoke detector low sensitivity"),
    _E(387, "intrusion detector high sensitivity"),
    _E(388, "intrusion detector low sensitivity"),
    _E(389, "sensor self-test failure"),
    _E(391, "sensor watch trouble"),
    _E(392, "drift compensation error"),
    _E(393, "maintenance alert"),
    _E(394, "CO detector needs replacement"),
    # 4xx open/close: qualifier 1 is an opening (disarmed), 3 a closing (armed)
    _E(400, "open/close", closes=_A.ARMED),
    _E(401, "open/close by user", closes=_A.ARMED),
    _E(402, "group open/close", closes=_A.ARMED),
    _E(403, "automatic open/close", closes=_A.ARMED),
    _E(404, "late to open/close"),  # a notice that nobody did, not an arming
    _E(405, "deferred open/close"),
    _E(406, "cancel"),  # an alarm called off by a user; the opening comes as its own 401
    _E(407, "remote arm/disarm", closes=_A.ARMED),
    _E(408, "quick arm", closes=_A.ARMED),
    _E(409, "keyswitch open/close", closes=_A.ARMED),
    # remote access
    _E(411, "callback request made"),
    _E(412, "successful download/access"),
    _E(413, "unsuccessful access"),
    _E(414, "system shutdown command received"),
    _E(415, "dialer shutdown command received"),
    _E(416, "successful upload"),
    # access control
    _E(421, "access denied"),
    _E(422, "access report by user"),
    _E(423, "forced access"),
    _E(424, "egress denied"),
    _E(425, "egress granted"),
    _E(426, "access door propped open"),
    _E(427, "access point door status monitor trouble"),
    _E(428, "access point request to exit trouble"),
    _E(429, "access program mode entry"),
    _E(430, "access program mode exit"),
    _E(431, "access threat level change"),
    _E(432, "access relay/trigger failure"),
    _E(433, "access RTE shunt"),
    _E(434, "access DSM shunt"),
    # arming with people at home
    _E(441, "armed stay", closes=_A.ARMED_STAY),
    _E(442, "keyswitch armed stay", closes=_A.ARMED_STAY),
    # exceptions: notices about arming, whose qualifiers do not follow the open/close rule across panels
    _E(450, "exception open/close"),
    _E(451, "early open/close"),
    _E(452, "late open/close"),
    _E(453, "failed to open"),
    _E(454, "failed to close"),
    _E(455, "auto-arm failed"),
    _E(456, "partial arm"),
    _E(457, "exit error (user)"),
    _E(458, "user on premises"),
    _E(459, "recent close"),
    _E(461, "wrong code entry"),
    _E(462, "legal code entry"),
    _E(463, "re-arm after alarm"),
    _E(464, "auto-arm time extended"),
    _E(465, "panic alarm reset"),
    _E(466, "service on/off premises"),
    # 5xx bypasses and disables
    _E(501, "access reader disable"),
    _E(520, "sounder/relay disable"),
    _E(521, "bell 1 disable"),
    _E(522, "bell 2 disable"),
    _E(523, "alarm relay disable"),
    _E(524, "trouble relay disable"),
    _E(525, "reversing relay disable"),
    _E(526, "notification appliance circuit 3 disable"),
    _E(527, "notification appliance circuit 4 disable"),
    _E(531, "module added"),
    _E(532, "module removed"),
    _E(551, "dialer disabled"),
    _E(552, "radio transmitter disabled"),
    _E(553, "remote upload/download disabled"),
    _E(570, "zone/sensor bypass"),
    _E(571, "fire bypass"),
    _E(572, "24-hour zone bypass"),
    _E(573, "burglary bypass"),
    _E(574, "group bypass"),
    _E(575, "swinger bypass"),
    _E(576, "access zone shunt"),
    _E(577, "access point bypass"),
    # 6xx test and miscellaneous: the test reports are the panel's check-in
    _E(601, "manual test", supervision=_S.TEST),
    _E(602, "periodic test report", supervision=_S.TEST),
    _E(603, "periodic RF transmission", supervision=_S.TEST),
    _E(604, "fire test"),
    _E(605, "status report to follow"),
    _E(606, "listen-in to follow"),
    _E(607, "walk test mode"),
    _E(608, "periodic test, system trouble present", supervision=_S.TEST),
    _E(609, "video transmitter active"),
    _E(611, "point tested OK"),
    _E(612, "point not tested"),
    _E(613, "intrusion zone walk tested"),
    _E(614, "fire zone walk tested"),
    _E(615, "panic zone walk tested"),
    _E(616, "service request"),
    _E(621, "event log reset"),
    _E(622, "event log 50% full"),
    _E(623, "event log 90% full"),
    _E(624, "event log overflow"),
    _E(625, "time/date reset"),
    _E(626, "time/date inaccurate"),
    _E(627, "program mode entry"),
    _E(628, "program mode exit"),
    _E(629, "32-hour event log marker"),
    _E(630, "schedule change"),
    _E(631, "exception schedule change"),
    _E(632, "access schedule change"),
    _E(641, "senior watch trouble"),
    _E(642, "latch-key supervision"),
    _E(651, "reserved (Ademco)"),
    _E(652, "reserved (Ademco)"),
    _E(653, "reserved (Ademco)"),
    _E(654, "system inactivity"),
)
del _E, _K, _S, _A


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
    """One decoded Contact ID event. What alertd makes of it (:attr:`meaning`): an alarm (``kind``), device
    health (``supervision``), the panel armed or disarmed (:attr:`arming`), or ``other``: a valid report,
    recorded and acknowledged, never an alarm (every code outside :data:`EVENT_CODES` is one)."""

    account: str  # 4 characters, upper case, "A" normalized to "0"
    message_type: str  # "18" or "98"
    qualifier: int  # 1 new, 3 restore, 6 previously reported
    event_code: int
    group: int
    zone: int  # zone or user number
    kind: Kind | None
    supervision: SupervisionKind | None
    silent: bool  # never sound anything in the calling household
    restore: bool  # qualifier 3 (for an open/close code: a closing)
    raw: str  # the message or receiver frame as received, terminator and garbage removed
    receiver: str | None = None  # receiver and line number, from a wrapped receiver format
    line: str | None = None

    @property
    def name(self) -> str:
        entry = EVENT_CODES.get(self.event_code)
        return "unknown event code" if entry is None else entry.name

    @property
    def category(self) -> Category:
        return category_of(self.event_code)

    @property
    def user(self) -> int | None:
        """The user number, for the 4xx codes, whose CCC field names a user, not a zone."""
        return self.zone if self.category is Category.OPEN_CLOSE else None

    @property
    def arming(self) -> Arming | None:
        """What an open/close report says the panel is now; None for any other report."""
        entry = EVENT_CODES.get(self.event_code)
        if entry is None or entry.closes is None:
            return None
        if self.qualifier == NEW:
            return Arming.DISARMED  # an opening
        if self.qualifier == RESTORE:
            return entry.closes  # a closing
        return None  # 6, a status report: says nothing new about the arming

    @property
    def meaning(self) -> str:
        """An alarm kind, a supervision event, ``open_close`` or ``other``."""
        if self.kind is not None:
            return self.kind.value
        if self.supervision is not None:
            return self.supervision.value
        entry = EVENT_CODES.get(self.event_code)
        if entry is not None and entry.closes is not None:
            return SupervisionKind.OPEN_CLOSE.value
        return SupervisionKind.OTHER.value

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict for logs, the API and the timeline."""
        arming = self.arming
        return {
            "account": self.account,
            "message_type": self.message_type,
            "qualifier": self.qualifier,
            "event_code": self.event_code,
            "name": self.name,
            "category": self.category.value,
            "group": self.group,
            "zone": self.zone,
            "user": self.user,
            "kind": self.meaning,
            "armed": None if arming is None else arming.value,
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
    # A code outside the table is still a valid report, of kind "other": refusing it would lose a panel's
    # news (and, on a Sur-Gard line, count as an error); mapping it to an alarm would be a guess.
    entry = EVENT_CODES.get(code)
    return Report(
        account=account,
        message_type=message_type,
        qualifier=q,
        event_code=code,
        group=group,
        zone=zone,
        kind=None if entry is None else entry.kind,
        supervision=None if entry is None else entry.supervision,
        silent=entry is not None and entry.silent,
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
