"""Contact ID codec: checksum, every mapped event code, every error reason, receiver line framing."""

from __future__ import annotations

import pytest

from alertd.core.events import Arming, SupervisionKind
from alertd.core.model import Kind
from alertd.errors import AlertdError
from alertd.protocols.contact_id import (
    ACK,
    DECODE_REASONS,
    EVENT_CODES,
    LINE_FORMATS,
    MAX_LINE,
    NAK,
    REASONS,
    Category,
    ContactIdError,
    Decoded,
    DecodeError,
    EventCode,
    LineDecoder,
    ReceiverHeartbeat,
    Report,
    build_message,
    category_of,
    checksum_digit,
    digit_value,
    get_format,
    parse_message,
)


def _checksum_ok(message: str) -> bool:
    """The rule, restated independently of the module: 0 counts 10, hex B-F 11-15, sum % 15 == 0."""
    values = {**{str(n): n for n in range(1, 10)}, "0": 10, "A": 10, "B": 11, "C": 12, "D": 13, "E": 14, "F": 15}
    return sum(values[c] for c in message.upper()) % 15 == 0


def _reason(text: str) -> str:
    with pytest.raises(ContactIdError) as info:
        parse_message(text)
    return info.value.reason


# --- checksum ---------------------------------------------------------------------------------

# Worked by hand: 1+2+3+4 + 1+8 + 1 + 1+3+1 + 10+1 + 10+10+7 = 63; 63 % 15 = 3, so S is worth 12 = "C".
# (The often-quoted "1234181131010075" does not satisfy the rule and is rejected below.)
HAND_VECTOR = "123418113101007C"


def test_hand_worked_vector() -> None:
    assert checksum_digit(HAND_VECTOR[:15]) == "C"
    assert _checksum_ok(HAND_VECTOR)
    report = parse_message(HAND_VECTOR)
    assert (report.account, report.event_code, report.group, report.zone) == ("1234", 131, 1, 7)
    assert report.kind is Kind.INTRUSION


def test_misquoted_vector_fails_checksum() -> None:
    assert not _checksum_ok("1234181131010075")
    assert _reason("1234181131010075") == "bad_checksum"


@pytest.mark.parametrize(
    ("first15", "digit"),
    [
        ("123418112101001", "4"),  # 56 % 15 = 11 -> worth 4
        ("BCDE18160201005", "6"),  # 11+12+13+14 + 1+8 + 1 + 6+10+2 + 10+1 + 10+10+5 = 114; 114 % 15 = 9 -> 6
        ("111111111111115", "B"),  # 19 % 15 = 4 -> worth 11
        ("111111111111116", "0"),  # 20 % 15 = 5 -> worth 10, written "0"
        ("111111111111112", "E"),  # 16 % 15 = 1 -> worth 14
        ("11111111111111F", "1"),  # 29 % 15 = 14 -> worth 1
        ("111111111111111", "F"),  # 15 % 15 = 0 -> worth 15, never 0
        ("22222222222222D", "4"),  # 28 + 13 = 41; 41 % 15 = 11 -> worth 4
    ],
)
def test_checksum_digit(first15: str, digit: str) -> None:
    assert checksum_digit(first15) == digit
    assert _checksum_ok(first15 + digit)


def test_digit_values() -> None:
    assert [digit_value(c) for c in "1234567890ABCDEF"] == [*range(1, 11), 10, 11, 12, 13, 14, 15]
    assert digit_value("e") == 14
    with pytest.raises(ContactIdError) as info:
        digit_value("G")
    assert info.value.reason == "bad_digit"


def test_checksum_digit_input_errors() -> None:
    with pytest.raises(ContactIdError) as info:
        checksum_digit("1234")
    assert info.value.reason == "bad_length"
    with pytest.raises(ContactIdError) as info:
        checksum_digit("12341811310100X")
    assert info.value.reason == "bad_digit"


@pytest.mark.parametrize("position", range(16))
def test_any_single_digit_change_fails_checksum(position: int) -> None:
    good = build_message("1234", 1, 110, 1, 3)
    for replacement in "1234567890BCDEF":
        if replacement == good[position]:
            continue
        bad = good[:position] + replacement + good[position + 1 :]
        assert _reason(bad) == "bad_checksum"


def test_error_is_alertd_and_value_error() -> None:
    with pytest.raises(ContactIdError) as info:
        parse_message("12")
    assert isinstance(info.value, AlertdError)
    assert isinstance(info.value, ValueError)
    assert info.value.reason in REASONS


# --- event codes ------------------------------------------------------------------------------

ALARMS: list[tuple[int, Kind, bool]] = [
    (100, Kind.MEDICAL, False),
    (110, Kind.FIRE, False),
    (111, Kind.SMOKE, False),
    (120, Kind.PANIC, False),
    (121, Kind.PANIC, True),
    (122, Kind.PANIC, True),
    (130, Kind.INTRUSION, False),
    (131, Kind.INTRUSION, False),
    (132, Kind.INTRUSION, False),
    (133, Kind.INTRUSION, False),
    (134, Kind.INTRUSION, False),
    (151, Kind.GAS, False),
    (154, Kind.WATER, False),
    (101, Kind.MEDICAL, False),
    (102, Kind.MEDICAL, False),
    (112, Kind.FIRE, False),
    (113, Kind.FIRE, False),
    (114, Kind.FIRE, False),
    (115, Kind.FIRE, False),
    (116, Kind.SMOKE, False),
    (117, Kind.FIRE, False),
    (123, Kind.PANIC, False),
    (124, Kind.PANIC, True),
    (125, Kind.PANIC, True),
    (135, Kind.INTRUSION, False),
    (136, Kind.INTRUSION, False),
    (139, Kind.INTRUSION, False),
    (140, Kind.PANIC, False),
    (146, Kind.INTRUSION, True),
    (155, Kind.INTRUSION, False),
    (162, Kind.GAS, False),
]
SUPERVISION: list[tuple[int, SupervisionKind]] = [
    (137, SupervisionKind.TAMPERED),
    (383, SupervisionKind.TAMPERED),
    (301, SupervisionKind.AC_LOSS),
    (302, SupervisionKind.BATTERY_LOW),
    (309, SupervisionKind.BATTERY_LOW),
    (350, SupervisionKind.COMM_TROUBLE),
    (602, SupervisionKind.TEST),
    (141, SupervisionKind.TAMPERED),
    (142, SupervisionKind.TAMPERED),
    (143, SupervisionKind.COMM_TROUBLE),
    (144, SupervisionKind.TAMPERED),
    (145, SupervisionKind.TAMPERED),
    (147, SupervisionKind.COMM_TROUBLE),
    (311, SupervisionKind.BATTERY_LOW),
    (333, SupervisionKind.COMM_TROUBLE),
    (338, SupervisionKind.BATTERY_LOW),
    (341, SupervisionKind.TAMPERED),
    (342, SupervisionKind.AC_LOSS),
    *((code, SupervisionKind.COMM_TROUBLE) for code in range(351, 358)),
    (381, SupervisionKind.COMM_TROUBLE),
    (382, SupervisionKind.COMM_TROUBLE),
    (384, SupervisionKind.BATTERY_LOW),
    (601, SupervisionKind.TEST),
    (603, SupervisionKind.TEST),
    (608, SupervisionKind.TEST),
]
# Every other code DC-05 defines: known by name, a report of kind "other" (or open_close), never an alarm.
OPEN_CLOSE: list[tuple[int, Arming]] = [
    (400, Arming.ARMED),
    (401, Arming.ARMED),
    (402, Arming.ARMED),
    (403, Arming.ARMED),
    (407, Arming.ARMED),
    (408, Arming.ARMED),
    (409, Arming.ARMED),
    (441, Arming.ARMED_STAY),
    (442, Arming.ARMED_STAY),
]


@pytest.mark.parametrize(("code", "kind", "silent"), ALARMS)
def test_alarm_codes(code: int, kind: Kind, silent: bool) -> None:
    message = build_message("1234", 1, code, 1, 5)
    assert _checksum_ok(message)
    report = parse_message(message)
    assert report == Report(
        account="1234",
        message_type="18",
        qualifier=1,
        event_code=code,
        group=1,
        zone=5,
        kind=kind,
        supervision=None,
        silent=silent,
        restore=False,
        raw=message,
    )
    assert report.to_json() == {
        "account": "1234",
        "message_type": "18",
        "qualifier": 1,
        "event_code": code,
        "name": EVENT_CODES[code].name,
        "category": "alarm",
        "group": 1,
        "zone": 5,
        "user": None,
        "kind": kind.value,
        "armed": None,
        "silent": silent,
        "restore": False,
        "receiver": None,
        "line": None,
        "valid": True,
    }


@pytest.mark.parametrize(("code", "supervision"), SUPERVISION)
def test_supervision_codes(code: int, supervision: SupervisionKind) -> None:
    report = parse_message(build_message("0042", 1, code, 0, 0))
    assert report.kind is None
    assert report.supervision is supervision
    assert not report.silent
    assert report.to_json()["kind"] == supervision.value
    assert report.account == "0042"


def test_only_duress_silent_panic_and_silent_burglary_are_silent() -> None:
    assert {code for code, entry in EVENT_CODES.items() if entry.silent} == {121, 122, 124, 125, 146}


def test_table_is_exactly_the_mapped_codes_and_the_rest_is_other() -> None:
    """The tables above are the whole of what alertd acts on: a new mapping needs a line here."""
    alarms = {code: (kind, silent) for code, kind, silent in ALARMS}
    supervision = dict(SUPERVISION)
    arming = dict(OPEN_CLOSE)
    assert {c: (e.kind, e.silent) for c, e in EVENT_CODES.items() if e.kind is not None} == alarms
    assert {c: e.supervision for c, e in EVENT_CODES.items() if e.supervision is not None} == supervision
    assert {c: e.closes for c, e in EVENT_CODES.items() if e.closes is not None} == arming
    for code, entry in EVENT_CODES.items():
        assert entry.name, code
        assert entry.category is category_of(code)
        if code in alarms or code in supervision or code in arming:
            continue
        assert parse_message(build_message("1234", 1, code)).meaning == "other", code


def test_table_has_every_dc05_block() -> None:
    per_block = {block: [c for c in EVENT_CODES if c // 100 == block] for block in range(1, 7)}
    assert {block: len(codes) > 5 for block, codes in per_block.items()} == dict.fromkeys(range(1, 7), True)
    assert {category_of(c) for c in EVENT_CODES} == set(Category) - {Category.OTHER}
    assert [category_of(c) for c in (99, 100, 299, 350, 441, 570, 602, 700, 999)] == [
        Category.OTHER, Category.ALARM, Category.SUPERVISORY, Category.TROUBLE, Category.OPEN_CLOSE,
        Category.BYPASS, Category.TEST, Category.OTHER, Category.OTHER,
    ]  # fmt: skip


def test_event_code_invariants() -> None:
    with pytest.raises(ValueError, match="at most one"):
        EventCode(110, "both", Kind.FIRE, SupervisionKind.TEST)
    with pytest.raises(ValueError, match="only an alarm can be silent"):
        EventCode(602, "silent test", supervision=SupervisionKind.TEST, silent=True)
    with pytest.raises(ValueError, match="only a 1xx code is an alarm"):
        EventCode(350, "a trouble that rings", Kind.FIRE)
    with pytest.raises(ValueError, match="only a 4xx open/close code arms"):
        EventCode(602, "a test that arms", closes=Arming.ARMED)
    with pytest.raises(ValueError, match="never disarms"):
        EventCode(401, "a closing that disarms", closes=Arming.DISARMED)
    with pytest.raises(ValueError, match="not in a DC-05 block"):
        EventCode(999, "vendor code")
    assert EventCode(305, "system reset").category is Category.TROUBLE  # a name alone is fine


@pytest.mark.parametrize("code", [999, 160, 199, 7, 750, 340])
def test_a_valid_message_with_a_code_outside_the_table_is_a_report_of_kind_other(code: int) -> None:
    assert code not in EVENT_CODES
    report = parse_message(build_message("1234", 1, code, 2, 9))
    assert (report.kind, report.supervision, report.arming, report.silent) == (None, None, None, False)
    assert report.meaning == "other"
    assert report.name == "unknown event code"
    json = report.to_json()
    assert (json["valid"], json["kind"], json["event_code"], json["zone"]) == (True, "other", code, 9)
    assert LineDecoder("plain").ack_for(report) == b""  # a plain line has no replies at all
    assert LineDecoder("mlr2").ack_for(report) == ACK


def test_the_issue_vector_401_is_a_valid_opening_by_user_3() -> None:
    report = parse_message("1234181401020035")
    assert (report.event_code, report.qualifier, report.group, report.zone) == (401, 1, 2, 3)
    assert (report.meaning, report.arming, report.user, report.name) == (
        "open_close", Arming.DISARMED, 3, "open/close by user"
    )  # fmt: skip
    assert report.to_json()["armed"] == "disarmed"
    assert report.to_json()["category"] == "open_close"


@pytest.mark.parametrize(("code", "closing"), OPEN_CLOSE)
def test_open_close_qualifier_1_disarms_3_arms_6_says_nothing(code: int, closing: Arming) -> None:
    opening, close, status = (parse_message(build_message("1234", q, code, 1, 7)) for q in (1, 3, 6))
    assert (opening.arming, close.arming, status.arming) == (Arming.DISARMED, closing, None)
    assert {opening.meaning, close.meaning, status.meaning} == {"open_close"}
    assert opening.user == close.user == 7
    assert opening.kind is None


@pytest.mark.parametrize("code", [406, 421, 456, 463, 570, 305, 627])
def test_named_codes_without_a_use_are_other_and_keep_their_name(code: int) -> None:
    report = parse_message(build_message("1234", 3, code, 1, 4))
    assert (report.meaning, report.arming, report.kind, report.supervision) == ("other", None, None, None)
    assert report.name == EVENT_CODES[code].name
    # The CCC field is a user number for the 4xx codes only.
    assert report.user == (4 if code // 100 == 4 else None)


# --- qualifiers, types, accounts --------------------------------------------------------------


def test_restore_and_previous() -> None:
    new = parse_message(build_message("1234", 1, 110, 1, 3))
    restore = parse_message(build_message("1234", 3, 110, 1, 3))
    previous = parse_message(build_message("1234", 6, 110, 1, 3))
    assert (new.qualifier, new.restore) == (1, False)
    assert (restore.qualifier, restore.restore) == (3, True)
    assert (previous.qualifier, previous.restore) == (6, False)
    assert new.kind is restore.kind is previous.kind is Kind.FIRE
    assert restore.to_json()["restore"] is True


@pytest.mark.parametrize("qualifier", [0, 2, 4, 5, 7, 8, 9])
def test_bad_qualifier(qualifier: int) -> None:
    assert _reason(build_message("1234", qualifier, 110)) == "bad_qualifier"


def test_message_type_98_accepted() -> None:
    report = parse_message(build_message("1234", 1, 120, message_type="98"))
    assert report.message_type == "98"
    assert report.kind is Kind.PANIC


@pytest.mark.parametrize("message_type", ["17", "27", "55", "19", "00", "B8"])
def test_bad_type(message_type: str) -> None:
    assert _reason(build_message("1234", 1, 110, message_type=message_type)) == "bad_type"


def test_hex_account() -> None:
    message = build_message("BCDE", 1, 110, 2, 15)
    assert _checksum_ok(message)
    report = parse_message(message)
    assert report.account == "BCDE"
    assert (report.group, report.zone) == (2, 15)
    assert parse_message(message.lower()).account == "BCDE"


def test_a_is_the_digit_zero() -> None:
    with_zero = build_message("1204", 1, 110, 1, 1)
    with_a = with_zero.replace("0", "A")  # same DTMF digits as printed by a decoder chip
    assert _checksum_ok(with_a)
    assert parse_message(with_a) == Report(
        account="1204",
        message_type="18",
        qualifier=1,
        event_code=110,
        group=1,
        zone=1,
        kind=Kind.FIRE,
        supervision=None,
        silent=False,
        restore=False,
        raw=with_a,
    )
    assert checksum_digit(with_zero[:15]) == checksum_digit(with_a[:15])


def test_hex_in_decimal_fields_is_bad_digit() -> None:
    # Valid checksums, hex where a decimal number belongs: rejected, never guessed.
    for first15 in ("1234181" + "11B" + "01" + "001", "1234181110" + "0B" + "001", "1234181110" + "01" + "B01"):
        assert _reason(first15 + checksum_digit(first15)) == "bad_digit"


@pytest.mark.parametrize("text", ["", "123", "12341811100100101", "1234 18 1 110 01 001 1"])
def test_bad_length(text: str) -> None:
    assert _reason(text) == "bad_length"


@pytest.mark.parametrize("text", ["12341811G0010015", "1234181110010０15", "1234-81110010015"])
def test_bad_digit(text: str) -> None:
    assert _reason(text) == "bad_digit"


def test_surrounding_whitespace_ignored() -> None:
    assert parse_message(f"  {HAND_VECTOR}\r\n").raw == HAND_VECTOR


def test_build_message_range_checks() -> None:
    with pytest.raises(ValueError, match="event_code"):
        build_message("1234", 1, 1000)
    with pytest.raises(ValueError, match="qualifier"):
        build_message("1234", 10, 110)
    with pytest.raises(ValueError, match="group or zone"):
        build_message("1234", 1, 110, 100)
    with pytest.raises(ValueError, match="group or zone"):
        build_message("1234", 1, 110, 1, 1000)


# --- plain line format ------------------------------------------------------------------------

FIRE = build_message("1234", 1, 110, 1, 3)
DURESS = build_message("2001", 1, 121, 1, 7)
GAS_RESTORE = build_message("BEEF", 3, 151, 2, 12)
PLAIN_STREAM = f"{FIRE}\r\n{DURESS}\n{GAS_RESTORE}\r".encode()


def _expected_plain() -> list[Report]:
    return [parse_message(FIRE), parse_message(DURESS), parse_message(GAS_RESTORE)]


def test_plain_whole() -> None:
    decoder = LineDecoder("plain")
    decoded = decoder.feed(PLAIN_STREAM)
    assert decoded == _expected_plain()
    assert [decoder.ack_for(item) for item in decoded] == [b"", b"", b""]
    assert decoder.pending == 0


def test_plain_one_byte_at_a_time() -> None:
    decoder = LineDecoder("plain")
    decoded: list[Decoded] = []
    for byte in PLAIN_STREAM:
        decoded += decoder.feed(bytes([byte]))
    assert decoded == _expected_plain()


def test_plain_glued_and_split_anywhere() -> None:
    for cut in range(len(PLAIN_STREAM) + 1):
        decoder = LineDecoder(LINE_FORMATS["plain"])
        decoded = decoder.feed(PLAIN_STREAM[:cut]) + decoder.feed(PLAIN_STREAM[cut:])
        assert decoded == _expected_plain(), cut


@pytest.mark.parametrize("terminator", [b"\r", b"\n", b"\r\n"])
def test_plain_terminators(terminator: bytes) -> None:
    decoder = LineDecoder("plain")
    assert decoder.feed(FIRE.encode() + terminator + DURESS.encode() + terminator) == [
        parse_message(FIRE),
        parse_message(DURESS),
    ]


def test_plain_waits_for_terminator() -> None:
    decoder = LineDecoder("plain")
    assert decoder.feed(FIRE.encode()) == []
    assert decoder.pending == 16
    assert decoder.feed(b"\r") == [parse_message(FIRE)]


def test_plain_after_garbage() -> None:
    decoder = LineDecoder("plain")
    decoded = decoder.feed(b"\x00\xff~noise " + FIRE.encode() + b"\r\n")
    assert decoded == [
        DecodeError("garbage", b"\x00\xff~noise ", "9 bytes before a message"),
        parse_message(FIRE),
    ]
    assert decoder.ack_for(decoded[0]) == b""


def test_plain_hex_run_is_not_split_by_guess() -> None:
    # Extra hex digits glued to a message: which 16 are the message is a guess, so it is rejected.
    decoder = LineDecoder("plain")
    [error] = decoder.feed(b"99" + FIRE.encode() + b"\n")
    assert isinstance(error, DecodeError)
    assert error.reason == "bad_length"


def test_plain_bad_line_does_not_hide_neighbours() -> None:
    bad = FIRE[:-1] + ("1" if FIRE[-1] != "1" else "2")
    decoder = LineDecoder("plain")
    decoded = decoder.feed(f"{FIRE}\r\n{bad}\r\n{build_message('1234', 1, 999)}\r\n{DURESS}\r\n".encode())
    assert decoded[0] == parse_message(FIRE)
    assert isinstance(decoded[1], DecodeError)
    assert decoded[1].reason == "bad_checksum"
    assert decoded[1].raw == bad.encode()
    assert isinstance(decoded[2], Report)
    assert decoded[2].meaning == "other"  # valid, though alertd does not know its code
    assert decoded[3] == parse_message(DURESS)


def test_plain_too_long_then_resync() -> None:
    decoder = LineDecoder("plain")
    first = decoder.feed(b"7" * (MAX_LINE + 1))
    assert len(first) == 1
    assert isinstance(first[0], DecodeError)
    assert first[0].reason == "too_long"
    assert decoder.pending == 0
    # More of the same line: dropped silently, then the next line decodes.
    assert decoder.feed(b"7" * 1000) == []
    assert decoder.feed(b"777\r\n" + FIRE.encode() + b"\r\n") == [parse_message(FIRE)]


def test_too_long_with_terminator_in_same_chunk() -> None:
    decoder = LineDecoder("plain")
    decoded = decoder.feed(b"5" * (MAX_LINE + 10) + b"\n" + FIRE.encode() + b"\n")
    assert [type(item) for item in decoded] == [DecodeError, Report]
    assert isinstance(decoded[0], DecodeError)
    assert decoded[0].reason == "too_long"


def test_line_exactly_max_is_not_too_long() -> None:
    decoder = LineDecoder("plain")
    [error] = decoder.feed(b"x" * MAX_LINE + b"\n")
    assert isinstance(error, DecodeError)
    assert error.reason == "bad_length"


# --- Sur-Gard MLR2 ----------------------------------------------------------------------------

# Published in the Sur-Gard MLR2 manual: account 1234, duress (121), group 01, zone 001,
# receiver 01, line 1.
MLR2_PUBLISHED = b"5011 181234E12101001\x14"
MLR2_HEARTBEAT = b"1011           @    \x14"
MLR2_RESTORE = b"5012 181234R13101003\x14"
MLR2_PREVIOUS = b"5013 98BCDEP60200000\x14"


def test_mlr2_published_example() -> None:
    decoder = LineDecoder("mlr2")
    [report] = decoder.feed(MLR2_PUBLISHED)
    assert report == Report(
        account="1234",
        message_type="18",
        qualifier=1,
        event_code=121,
        group=1,
        zone=1,
        kind=Kind.PANIC,
        supervision=None,
        silent=True,
        restore=False,
        raw="5011 181234E12101001",
        receiver="01",
        line="1",
    )
    assert decoder.ack_for(report) == ACK


def test_mlr2_qualifiers_and_type_98() -> None:
    decoder = LineDecoder("mlr2")
    restore, previous = decoder.feed(MLR2_RESTORE + MLR2_PREVIOUS)
    assert isinstance(restore, Report)
    assert isinstance(previous, Report)
    assert (restore.qualifier, restore.restore, restore.kind, restore.line) == (3, True, Kind.INTRUSION, "2")
    assert (previous.qualifier, previous.message_type, previous.account) == (6, "98", "BCDE")
    assert previous.supervision is SupervisionKind.TEST


def test_mlr2_digit_qualifiers_accepted() -> None:
    [report] = LineDecoder("mlr2").feed(b"5011 181234311001001\x14")
    assert isinstance(report, Report)
    assert (report.qualifier, report.event_code) == (3, 110)


def test_mlr2_opening_closing_and_an_unknown_code_are_reports_and_acked() -> None:
    # Refused before (unknown_code): the receiver was ACKed but every arming and disarming was lost.
    decoder = LineDecoder("mlr2")
    frames = (b"5011 181234E40101003\x14", b"5011 181234R44101003\x14", b"5011 181234E99901000\x14")
    decoded = decoder.feed(b"".join(frames))
    assert all(isinstance(item, Report) for item in decoded)
    opening, stay, unknown = (item for item in decoded if isinstance(item, Report))
    assert (opening.arming, opening.user, stay.arming) == (Arming.DISARMED, 3, Arming.ARMED_STAY)
    assert unknown.meaning == "other"
    assert [decoder.ack_for(item) for item in decoded] == [ACK, ACK, ACK]


def test_mlr2_heartbeat() -> None:
    decoder = LineDecoder("mlr2")
    [beat] = decoder.feed(MLR2_HEARTBEAT)
    assert beat == ReceiverHeartbeat("01", "1", "1011           @")
    assert decoder.ack_for(beat) == ACK


MLR2_STREAM = MLR2_HEARTBEAT + MLR2_PUBLISHED + MLR2_RESTORE + MLR2_HEARTBEAT + MLR2_PREVIOUS


def _mlr2_expected() -> list[type]:
    return [ReceiverHeartbeat, Report, Report, ReceiverHeartbeat, Report]


def test_mlr2_one_byte_at_a_time() -> None:
    decoder = LineDecoder("mlr2")
    decoded: list[Decoded] = []
    for byte in MLR2_STREAM:
        decoded += decoder.feed(bytes([byte]))
    assert [type(item) for item in decoded] == _mlr2_expected()
    assert decoded == LineDecoder("mlr2").feed(MLR2_STREAM)
    assert [decoder.ack_for(item) for item in decoded] == [ACK] * 5


def test_mlr2_split_anywhere() -> None:
    whole = LineDecoder("mlr2").feed(MLR2_STREAM)
    for cut in range(len(MLR2_STREAM) + 1):
        decoder = LineDecoder("mlr2")
        assert decoder.feed(MLR2_STREAM[:cut]) + decoder.feed(MLR2_STREAM[cut:]) == whole, cut


@pytest.mark.parametrize("terminator", [b"\x14", b"\r", b"\n", b"\r\n", b"\x14\r\n"])
def test_mlr2_terminators(terminator: bytes) -> None:
    stream = MLR2_PUBLISHED.replace(b"\x14", terminator) + MLR2_HEARTBEAT.replace(b"\x14", terminator)
    assert [type(item) for item in LineDecoder("mlr2").feed(stream)] == [Report, ReceiverHeartbeat]


def test_mlr2_after_garbage() -> None:
    decoder = LineDecoder("mlr2")
    decoded = decoder.feed(b"\x00\x7f\xfe" + MLR2_PUBLISHED + b"##" + MLR2_HEARTBEAT)
    assert [type(item) for item in decoded] == [DecodeError, Report, DecodeError, ReceiverHeartbeat]
    garbage = decoded[0]
    assert isinstance(garbage, DecodeError)
    assert (garbage.reason, garbage.raw) == ("garbage", b"\x00\x7f\xfe")
    assert [decoder.ack_for(item) for item in decoded] == [b"", ACK, b"", ACK]


def test_mlr2_garbage_with_digits_before_frame() -> None:
    [garbage, report] = LineDecoder("mlr2").feed(b"55" + MLR2_PUBLISHED)
    assert isinstance(garbage, DecodeError)
    assert garbage.raw == b"55"
    assert isinstance(report, Report)
    assert (report.receiver, report.line) == ("01", "1")


@pytest.mark.parametrize(
    ("frame", "reason", "reply"),
    [
        (b"5011 181234E1210100\x14", "bad_length", NAK),  # one digit lost
        (b"5011 181234E121010011\x14", "bad_length", NAK),
        (b"5011 18123GE12101001\x14", "bad_digit", NAK),
        (b"5011 1812341121B1001\x14", "bad_digit", NAK),  # hex group
        (b"5011 171234E12101001\x14", "bad_type", ACK),
        (b"5011 181234X12101001\x14", "bad_qualifier", ACK),
        (b"3011    001234BA0001\x14", "unsupported", ACK),  # an SIA line: not ours, not damaged
        (b"hello\x14", "unsupported", ACK),
    ],
)
def test_mlr2_errors_and_replies(frame: bytes, reason: str, reply: bytes) -> None:
    decoder = LineDecoder("mlr2")
    [error, beat] = decoder.feed(frame + MLR2_HEARTBEAT)
    assert isinstance(error, DecodeError)
    assert error.reason == reason
    assert error.reason in DECODE_REASONS
    assert error.raw == frame.rstrip(b"\x14")
    assert decoder.ack_for(error) == reply
    assert isinstance(beat, ReceiverHeartbeat)  # the next line still decodes


def test_mlr2_too_long_is_nakked_and_resyncs() -> None:
    decoder = LineDecoder("mlr2")
    decoded = decoder.feed(b"5" * 300)
    assert len(decoded) == 1
    assert isinstance(decoded[0], DecodeError)
    assert decoded[0].reason == "too_long"
    assert decoder.ack_for(decoded[0]) == NAK
    assert [type(item) for item in decoder.feed(b"555\x14" + MLR2_PUBLISHED)] == [Report]


def test_mlr2000_three_digit_line() -> None:
    decoder = LineDecoder("mlr2000")
    report, beat = decoder.feed(b"5010A3 181234E11001003\x14" + b"101000           @    \x14")
    assert isinstance(report, Report)
    assert (report.receiver, report.line, report.kind, report.zone) == ("01", "0A3", Kind.FIRE, 3)
    assert beat == ReceiverHeartbeat("01", "000", "101000           @")
    assert decoder.ack_for(report) == ACK


def test_mlr2_line_in_mlr2000_decoder_is_unsupported() -> None:
    [error] = LineDecoder("mlr2000").feed(MLR2_PUBLISHED)
    assert isinstance(error, DecodeError)
    assert error.reason == "unsupported"


def test_empty_lines_skipped() -> None:
    assert LineDecoder("mlr2").feed(b"\x14\r\n  \x14") == []
    assert LineDecoder("plain").feed(b"\r\n\r\n") == []


# --- registry ---------------------------------------------------------------------------------


def test_registry() -> None:
    assert set(LINE_FORMATS) == {"plain", "mlr2", "mlr2000"}
    for name, fmt in LINE_FORMATS.items():
        assert fmt.name == name
        assert get_format(name) is fmt
    assert LINE_FORMATS["plain"].ack == LINE_FORMATS["plain"].nak == b""
    assert LINE_FORMATS["mlr2"].ack == ACK
    assert LINE_FORMATS["mlr2"].nak == NAK


def test_unknown_format_name() -> None:
    with pytest.raises(ValueError, match="known: mlr2, mlr2000, plain"):
        LineDecoder("ademco685")


def test_plain_errors_get_no_reply() -> None:
    decoder = LineDecoder("plain")
    for item in decoder.feed(b"junk\r\n" + b"x" * 300):
        assert isinstance(item, DecodeError)
        assert decoder.ack_for(item) == b""
