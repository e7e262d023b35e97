"""AT response parser: framing (whole, byte by byte, glued), URCs inside responses, prompt, echo, helpers."""

from __future__ import annotations

from typing import Protocol

import pytest

from alertd.errors import AlertdError
from alertd.protocols.at import (
    CALL_ACTIVE,
    CALL_ALERTING,
    CALL_INCOMING,
    CMS_CHANNEL_DOWN,
    CMS_PERMANENT,
    MAX_LINE,
    REGISTERED,
    AtError,
    AtEvent,
    AtParser,
    CallEntry,
    CallerId,
    Final,
    Info,
    Prompt,
    Urc,
    classify_cms,
    cme_code,
    cms_code,
    is_channel_down_cms,
    is_permanent_cms,
    parse_clcc,
    parse_clip,
    parse_cmgl,
    parse_cmgs,
    parse_colp,
    parse_creg,
    parse_csq,
    split_args,
)

PDU1 = "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37"
PDU2 = "0891683108200105F0040D91683108108300F000004210723185002301B1"
CDS_PDU = "0891683108200105F0060C0D91683108108300F0421072318500234210723185102300"

CMGL = (
    b"\r\n+CMGL: 1,1,,37\r\n" + PDU1.encode() + b"\r\n"
    b"\r\n+CMTI: \"SM\",3\r\n"  # a new message arrives while the list is being printed
    b"+CMGL: 2,0,,30\r\n" + PDU2.encode() + b"\r\n"
    b"\r\nOK\r\n"
)  # fmt: skip
CMGL_EVENTS: list[AtEvent] = [
    Info("+CMGL: 1,1,,37"),
    Info(PDU1),
    Urc("+CMTI", ("SM", "3")),
    Info("+CMGL: 2,0,,30"),
    Info(PDU2),
    Final(ok=True),
]


class Feed(Protocol):
    def __call__(self, data: bytes, command: str | None = None) -> list[AtEvent]: ...


def _feed_whole(data: bytes, command: str | None = None) -> list[AtEvent]:
    parser = AtParser()
    if command is not None:
        parser.sent(command)
    return parser.feed(data)


def _feed_bytewise(data: bytes, command: str | None = None) -> list[AtEvent]:
    parser = AtParser()
    if command is not None:
        parser.sent(command)
    return [event for i in range(len(data)) for event in parser.feed(data[i : i + 1])]


FEEDERS: list[Feed] = [_feed_whole, _feed_bytewise]


@pytest.mark.parametrize("feed", FEEDERS)
def test_cmgl_with_urc_in_the_middle(feed: Feed) -> None:
    assert feed(CMGL, "AT+CMGL=4") == CMGL_EVENTS


def test_cmgl_in_random_chunks() -> None:
    for size in range(2, 40, 3):
        parser = AtParser()
        parser.sent("AT+CMGL=4")
        events = [e for i in range(0, len(CMGL), size) for e in parser.feed(CMGL[i : i + size])]
        assert events == CMGL_EVENTS, size


def test_parse_cmgl_pairs_headers_with_pdus() -> None:
    lines = [e.line for e in CMGL_EVENTS if isinstance(e, Info)]
    assert parse_cmgl(lines) == [(1, PDU1), (2, PDU2)]
    assert parse_cmgl(["+CMGL: 4,0,,30", "+CMGL: 5,0,,30", PDU2.lower(), PDU1]) == [(5, PDU2)]
    assert parse_cmgl([]) == []
    with pytest.raises(AtError):
        parse_cmgl(["+CMGL: x,0,,30", PDU1])


@pytest.mark.parametrize("feed", FEEDERS)
def test_simple_commands(feed: Feed) -> None:
    assert feed(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n", "AT+CSQ") == [Info("+CSQ: 20,99"), Final(ok=True)]
    assert feed(b"\r\nERROR\r\n", "AT+FOO") == [Final(ok=False, error="ERROR")]
    assert feed(b"\r\n+CME ERROR: 10\r\n", "AT+CPIN?") == [Final(ok=False, error="CME 10")]
    assert feed(b"\r\n+CME ERROR: SIM not inserted\r\n") == [Final(ok=False, error="CME SIM not inserted")]
    assert feed(b"\r\n+CMS ERROR: 500\r\n", "AT+CMGS=23") == [Final(ok=False, error="CMS 500")]


def test_glued_responses_and_lone_line_endings() -> None:
    parser = AtParser()
    parser.sent("AT+CSQ")
    events = parser.feed(b'\r\n+CSQ: 31,0\r\n\r\nOK\r\n\r\n+CMTI: "SM",1\r\n\r\nOK\r')
    assert events == [Info("+CSQ: 31,0"), Final(ok=True), Urc("+CMTI", ("SM", "1")), Final(ok=True)]
    assert parser.feed(b"\nOK\n") == [Final(ok=True)]  # LF-only and CR-only modems


def test_sms_send_with_prompt_without_line_ending() -> None:
    parser = AtParser()
    parser.sent("AT+CMGS=23")
    assert parser.feed(b"\r\n> ") == [Prompt()]
    parser.sent("0011000B916407281553F80000AA0AE8329BFD4697D9EC37\x1a")
    assert parser.feed(b"\r\n+CMGS: 12\r\n\r\nOK\r\n") == [Info("+CMGS: 12"), Final(ok=True)]


def test_prompt_byte_by_byte_and_space_arriving_late() -> None:
    parser = AtParser()
    parser.sent("AT+CMGS=23")
    assert parser.feed(b"\r") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b">") == [Prompt()]
    assert parser.feed(b" ") == []
    assert parser.feed(b"\r\n+CMGS: 7\r\n\r\nOK\r\n") == [Info("+CMGS: 7"), Final(ok=True)]


def test_prompt_after_echo_of_the_command() -> None:
    parser = AtParser()
    parser.sent("AT+CMGS=23")
    assert parser.feed(b"AT+CMGS=23\r\r\n> ") == [Prompt()]
    pdu = "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"
    parser.sent(pdu + "\x1a")
    # With echo on, the modem repeats the PDU (and the Ctrl-Z) before answering.
    assert parser.feed(pdu.encode() + b"\x1a\r\n+CMGS: 12\r\n\r\nOK\r\n") == [Info("+CMGS: 12"), Final(ok=True)]


def test_echo_suppression_only_for_the_last_command_once() -> None:
    parser = AtParser()
    parser.sent("ATE0")
    assert parser.feed(b"ATE0\r\r\nOK\r\n") == [Final(ok=True)]
    parser.sent("AT+CSQ")
    assert parser.feed(b"\r\n+CSQ: 5,99\r\n\r\nOK\r\n") == [Info("+CSQ: 5,99"), Final(ok=True)]
    parser.sent("AT")
    assert parser.feed(b"AT\r\nAT\r\nOK\r\n") == [Info("AT"), Final(ok=True)]


def test_urcs_outside_a_command() -> None:
    events = _feed_whole(
        b"\r\nRING\r\n"
        b"\r\n+CREG: 1\r\n"
        b'\r\n+CREG: 5,"1A2B","0C3D"\r\n'
        b"\r\n^RSSI: 17\r\n"
        b"\r\n^BOOT\r\n"
        b"\r\n+CPIN: READY\r\n"
        b"\r\nSMS Ready\r\n"
        b"\r\nNO CARRIER\r\n"
    )
    assert events == [
        Urc("RING"),
        Urc("+CREG", ("1",)),
        Urc("+CREG", ("5", "1A2B", "0C3D")),
        Urc("^RSSI", ("17",)),
        Urc("^BOOT"),
        Urc("+CPIN", ("READY",)),
        Urc("SMS Ready"),
        Urc("NO CARRIER"),
    ]


def test_creg_answer_is_info_and_creg_urc_inside_it_is_not() -> None:
    events = _feed_whole(b'\r\n+CREG: 1\r\n\r\n+CREG: 2,1,"1A2B","0C3D"\r\n\r\nOK\r\n', "AT+CREG?")
    assert events == [Urc("+CREG", ("1",)), Info('+CREG: 2,1,"1A2B","0C3D"'), Final(ok=True)]


def test_own_prefix_is_info_even_if_it_can_be_a_urc() -> None:
    assert _feed_whole(b"\r\n+CPIN: READY\r\n\r\nOK\r\n", "AT+CPIN?") == [Info("+CPIN: READY"), Final(ok=True)]
    assert _feed_whole(b"\r\n^SYSINFO: 2,3,0,5,1\r\n\r\nOK\r\n", "AT^SYSINFO") == [
        Info("^SYSINFO: 2,3,0,5,1"),
        Final(ok=True),
    ]


def test_call_results_end_a_running_dial() -> None:
    assert _feed_whole(b"\r\nBUSY\r\n", "ATD+8613800138000;") == [Final(ok=False, error="BUSY")]


@pytest.mark.parametrize("feed", FEEDERS)
def test_pdu_urcs_carry_their_pdu(feed: Feed) -> None:
    data = (
        b"\r\n+CDS: 26\r\n" + CDS_PDU.encode() + b"\r\n"
        b"\r\n+CMT: ,37\r\n" + PDU1.lower().encode() + b"\r\n"
        b'\r\n+CMT: "",30\r\n' + PDU2.encode() + b"\r\n"
    )  # fmt: skip
    assert feed(data) == [
        Urc("+CDS", ("26",), CDS_PDU),
        Urc("+CMT", ("", "37"), PDU1),
        Urc("+CMT", ("", "30"), PDU2),
    ]


def test_pdu_urc_inside_a_command_response() -> None:
    parser = AtParser()
    parser.sent("AT+CSQ")
    events = parser.feed(b"\r\n+CDS: 26\r\n" + CDS_PDU.encode() + b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    assert events == [Urc("+CDS", ("26",), CDS_PDU), Info("+CSQ: 20,99"), Final(ok=True)]


def test_pdu_urc_without_its_pdu_line() -> None:
    # Text mode by mistake, or a lost line: the code is still reported, and the next line read normally.
    assert _feed_whole(b"\r\n+CDS: 26\r\n\r\nRING\r\n") == [Urc("+CDS", ("26",)), Urc("RING")]


def test_pdu_urc_held_until_the_next_line() -> None:
    parser = AtParser()
    assert parser.feed(b"\r\n+CMT: ,37\r\n") == []
    assert parser.feed(PDU1.encode() + b"\r\n") == [Urc("+CMT", ("", "37"), PDU1)]


def test_leading_garbage_and_overlong_lines() -> None:
    parser = AtParser()
    assert parser.feed(b"\x00\xff\r\n\r\nOK\r\n") == [Info("\x00\ufffd"), Final(ok=True)]
    assert parser.feed(b"x" * (MAX_LINE + 1)) == []
    assert parser.overflows == 1
    assert parser.feed(b"yyy\r\nOK\r\n") == [Final(ok=True)]  # rest of the overlong line dropped


def test_reset_forgets_partial_state() -> None:
    parser = AtParser()
    parser.sent("AT+CSQ")
    assert parser.feed(b"\r\n+CMT: ,37\r\n+CS") == []
    parser.reset()
    assert parser.feed(b"\r\nOK\r\n") == [Final(ok=True)]


def test_split_args() -> None:
    assert split_args('"SM",3') == ("SM", "3")
    assert split_args(",24") == ("", "24")
    assert split_args('1,"REC UNREAD","a,b",24') == ("1", "REC UNREAD", "a,b", "24")


# --- helpers ------------------------------------------------------------------------------------


def test_parse_csq() -> None:
    assert parse_csq("+CSQ: 20,99") == 20
    assert parse_csq("+CSQ: 0,0") == 0
    assert parse_csq("+CSQ: 31,7") == 31
    assert parse_csq("+CSQ: 99,99") is None
    for bad in ("+CSQ: 32,99", "+CSQ: ,99", "+CREG: 1", "OK", "+CSQ: ２0,99"):
        with pytest.raises(AtError) as err:
            parse_csq(bad)
        assert err.value.reason == "bad_response"
        assert isinstance(err.value, AlertdError)
        assert isinstance(err.value, ValueError)


def test_parse_creg() -> None:
    assert parse_creg("+CREG: 0,1") == (0, 1)
    assert parse_creg('+CREG: 2,5,"1A2B","0C3D"') == (2, 5)
    assert parse_creg("+CEREG: 0,2") == (0, 2)
    assert parse_creg("+CREG: 0,1")[1] in REGISTERED
    assert parse_creg("+CREG: 0,3")[1] not in REGISTERED
    for bad in ("+CREG: 1", "+CSQ: 1,2", "+CREG: a,1"):
        with pytest.raises(AtError):
            parse_creg(bad)


def test_parse_cmgs() -> None:
    assert parse_cmgs("+CMGS: 12") == 12
    assert parse_cmgs('+CMGS: 255,"0791..."') == 255
    for bad in ("+CMGS: 256", "+CMGS:", "+CMGR: 1"):
        with pytest.raises(AtError):
            parse_cmgs(bad)


# --- +CMS ERROR classes -------------------------------------------------------------------------


@pytest.mark.parametrize("code", [1, 10, 21, 28, 29, 30, 50, 96, 97, 304, 305, 0xC3])
def test_permanent_cms(code: int) -> None:
    assert is_permanent_cms(code)
    assert classify_cms(code) == "permanent"


@pytest.mark.parametrize("code", [8, 310, 311, 313, 316, 330])
def test_channel_down_cms(code: int) -> None:
    assert is_channel_down_cms(code)
    assert not is_permanent_cms(code)
    assert classify_cms(code) == "channel_down"


@pytest.mark.parametrize("code", [27, 38, 41, 42, 47, 300, 301, 302, 314, 322, 331, 332, 500, 512, 9999])
def test_transient_cms(code: int) -> None:
    assert classify_cms(code) == "transient"


def test_cms_classes_are_disjoint() -> None:
    assert not CMS_PERMANENT & CMS_CHANNEL_DOWN


def test_cms_code() -> None:
    assert cms_code(Final(ok=False, error="CMS 332").error) == 332
    assert cms_code("CME 10") is None
    assert cms_code("CMS unknown") is None
    assert cms_code(None) is None


# --- voice calls ----------------------------------------------------------------------------------


@pytest.mark.parametrize("result", ["BUSY", "NO ANSWER", "NO CARRIER", "NO DIALTONE"])
def test_a_call_result_is_the_final_result_of_a_dial(result: str) -> None:
    parser = AtParser()
    parser.sent("ATD13800138000;")
    assert parser.feed(f"\r\n{result}\r\n".encode()) == [Final(ok=False, error=result)]
    # The dial is over: the same words afterwards are the modem's own (a later call ending).
    assert parser.feed(f"\r\n{result}\r\n".encode()) == [Urc(result)]


@pytest.mark.parametrize("feed", FEEDERS)
def test_colp_is_the_dials_info_line_and_unsolicited_otherwise(feed: Feed) -> None:
    answered = b'\r\n+COLP: "13800138000",129,"",0,""\r\n\r\nOK\r\n'
    assert feed(answered, "ATD13800138000;") == [Info('+COLP: "13800138000",129,"",0,""'), Final(ok=True)]
    assert feed(b'\r\n+COLP: "13800138000",129\r\n') == [Urc("+COLP", ("13800138000", "129"))]
    assert parse_colp('+COLP: "13800138000",129,"",0,""') == CallerId("13800138000", 129)
    with pytest.raises(AtError):
        parse_colp("+CLIP: 1")


def test_a_call_result_during_another_command_is_unsolicited() -> None:
    """NO CARRIER of a call whose dial returned long ago may land inside the call list's answer: it is the
    call's end, not the end of AT+CLCC (nor of ATH, which ends a call and answers OK)."""
    clcc = b'\r\nNO CARRIER\r\n\r\n+CLCC: 1,0,3,0,0,"13800138000",129\r\n\r\nOK\r\n'
    assert _feed_whole(clcc, "AT+CLCC") == [
        Urc("NO CARRIER"),
        Info('+CLCC: 1,0,3,0,0,"13800138000",129'),
        Final(ok=True),
    ]
    assert _feed_whole(b"\r\nBUSY\r\n\r\nOK\r\n", "ATH") == [Urc("BUSY"), Final(ok=True)]
    assert _feed_whole(b"\r\nNO ANSWER\r\n\r\n+CSQ: 20,99\r\n\r\nOK\r\n", "AT+CSQ")[0] == Urc("NO ANSWER")
    assert _feed_whole(b"\r\nNO CARRIER\r\n", "ATA") == [Final(ok=False, error="NO CARRIER")]


@pytest.mark.parametrize("feed", FEEDERS)
def test_an_incoming_call_rings_with_its_caller_id_also_inside_a_response(feed: Feed) -> None:
    ring = b'\r\nRING\r\n\r\n+CLIP: "+8613800138000",145,"",0,"",0\r\n'
    clip = Urc("+CLIP", ("+8613800138000", "145", "", "0", "", "0"))
    assert feed(ring) == [Urc("RING"), clip]
    assert feed(ring + b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n", "AT+CSQ") == [
        Urc("RING"),
        clip,
        Info("+CSQ: 20,99"),
        Final(ok=True),
    ]
    assert feed(b"\r\n+CRING: VOICE\r\n") == [Urc("+CRING", ("VOICE",))]
    # The answer to AT+CLIP? is the command's own line, not a call.
    assert feed(b"\r\n+CLIP: 1,1\r\n\r\nOK\r\n", "AT+CLIP?") == [Info("+CLIP: 1,1"), Final(ok=True)]


def test_simcom_call_notices_are_unsolicited() -> None:
    assert _feed_whole(b"\r\nVOICE CALL: BEGIN\r\n\r\nVOICE CALL: END: 000012\r\n") == [
        Urc("VOICE CALL", ("BEGIN",)),
        Urc("VOICE CALL", ("END: 000012",)),
    ]
    assert _feed_whole(b'\r\n+CLCC: 1,0,3,0,0,"10086",129\r\n') == [
        Urc("+CLCC", ("1", "0", "3", "0", "0", "10086", "129"))
    ]


def test_parse_clip() -> None:
    assert parse_clip(("+8613800138000", "145", "", "0", "", "0")) == CallerId("+8613800138000", 145, 0)
    national = parse_clip(("13800138000", "129"))
    assert national == CallerId("13800138000", 129)
    assert national.international == "13800138000"
    assert not national.withheld
    # International type without its plus, as some networks send it.
    assert parse_clip(("8613800138000", "145")).international == "+8613800138000"
    assert parse_clip(("02151082965", "129", "", "", "QUECTEL", "0")) == CallerId("02151082965", 129, 0)
    for withheld in (
        ("", "128", "", "", "", "1"),
        ("", "129"),
        ("anonymous", "128"),
        ("+8613800138000", "145", "", "", "", "2"),
    ):
        assert parse_clip(withheld).withheld, withheld
    for bad in ((), ("+8613800138000", "x45")):
        with pytest.raises(AtError):
            parse_clip(bad)


def test_parse_clcc() -> None:
    assert parse_clcc('+CLCC: 1,0,3,0,0,"13800138000",129') == CallEntry(1, True, CALL_ALERTING, 0, "13800138000", 129)
    assert parse_clcc('+CLCC: 2,1,4,0,0,"+8613800138000",145,""') == CallEntry(
        2, False, CALL_INCOMING, 0, "+8613800138000", 145
    )
    assert parse_clcc("+CLCC: 1,0,0,0,0") == CallEntry(1, True, CALL_ACTIVE, 0)
    assert parse_clcc('+CLCC: 1,0,6,0,0,"10086",129').state == 6  # SIMCom: being released
    for bad in ("+CLCC: 1,2,0,0,0", "+CLCC: 1,0,0", "+CLCC: a,0,0,0,0", "+COLP: 1,0,0,0,0"):
        with pytest.raises(AtError):
            parse_clcc(bad)


def test_cme_code() -> None:
    assert cme_code("CME 27") == 27
    assert cme_code("CMS 27") is None
    assert cme_code("CME invalid characters in dial string") is None
    assert cme_code("NO CARRIER") is None
    assert cme_code(None) is None
