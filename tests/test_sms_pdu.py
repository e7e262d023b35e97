"""SMS PDUs: published vectors, hand-built vectors, round trips, part boundaries, every error reason."""

from __future__ import annotations

import calendar

import pytest

from alertd.errors import AlertdError
from alertd.protocols.sms_pdu import (
    DEFAULT_VALIDITY_S,
    REASONS,
    Concat,
    Deliver,
    PduError,
    Reassembler,
    decode_deliver,
    decode_status_report,
    decode_submit,
    encode_submit,
    fits_gsm7,
)

CN = "+8613800138000"
OA_CN = "0D91683108108300F0"  # +8613800138000, international, semi-octets swapped, F padded
SMSC_CN = "0891683108200105F0"  # +8613800210500
SCTS_CN = "42107231850023"  # 2024-01-27 13:58:00 +08:00 (TZ 0x23: 32 quarter hours)
SCTS_CN_EPOCH = calendar.timegm((2024, 1, 27, 5, 58, 0))


def _deliver(ud: str, *, dcs: str = "00", udl: int, udhi: bool = False, oa: str = OA_CN, scts: str = SCTS_CN) -> str:
    """An SMS-DELIVER built field by field, independent of the encoder under test."""
    first = 0x04 | (0x40 if udhi else 0)  # TP-MTI 00, TP-MMS set
    return f"{SMSC_CN}{first:02X}{oa}00{dcs}{scts}{udl:02X}{ud}"


# --- published vectors --------------------------------------------------------------------------


def test_classic_submit_vector_decodes() -> None:
    submit = decode_submit("0011000B916407281553F80000AA0AE8329BFD4697D9EC37")
    assert submit.to == "+46708251358"
    assert submit.text == "hellohello"
    assert submit.part is None
    assert submit.status_report is False
    assert submit.encoding == "gsm7"
    assert submit.validity == 0xAA  # 4 days


def test_classic_submit_vector_encodes_byte_for_byte() -> None:
    pdus = encode_submit("+46708251358", "hellohello", reference=0, status_report=False, validity_s=4 * 86400)
    assert [p.hex for p in pdus] == ["0011000B916407281553F80000AA0AE8329BFD4697D9EC37"]
    assert pdus[0].tpdu_length == 23  # everything after the "00" SMSC octet


def test_classic_deliver_vector() -> None:
    deliver = decode_deliver("07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37")
    # TOA 0xC8 is TON "subscriber number", not international: the digits come back without "+".
    assert deliver.sender == "27838890001"
    assert deliver.text == "hellohello"
    assert deliver.encoding == "gsm7"
    assert deliver.part is None
    # 1999-03-29 15:16:59 at +02:00 (TZ 0x80: 8 quarter hours)
    assert deliver.timestamp == calendar.timegm((1999, 3, 29, 13, 16, 59))


# --- SUBMIT encoding ----------------------------------------------------------------------------


def test_submit_defaults() -> None:
    [pdu] = encode_submit(CN, "Fire at No. 3", reference=0)
    assert pdu.hex.startswith("00" + "31" + "00" + OA_CN + "00" + "00" + "A7")  # SRR + VPF relative, 24 h
    assert pdu.tpdu_length == len(pdu.hex) // 2 - 1
    submit = decode_submit(pdu.hex)
    assert (submit.to, submit.text, submit.status_report, submit.validity) == (CN, "Fire at No. 3", True, 0xA7)


def test_submit_with_smsc_and_without_validity() -> None:
    [pdu] = encode_submit(CN, "hi", reference=0, smsc="+8613800210500", status_report=False, validity_s=None)
    assert pdu.hex.startswith(SMSC_CN + "01")  # SUBMIT, no SRR, no VP
    assert pdu.tpdu_length == len(pdu.hex) // 2 - 9
    submit = decode_submit(pdu.hex)
    assert (submit.text, submit.validity, submit.status_report) == ("hi", None, False)


def test_submit_short_code_uses_unknown_ton() -> None:
    [pdu] = encode_submit("10086", "CXYE", reference=0)
    assert "0581" + "0180F6" in pdu.hex
    assert decode_submit(pdu.hex).to == "10086"


@pytest.mark.parametrize(
    ("seconds", "octet"),
    [
        (1, 0),
        (5 * 60, 0),
        (6 * 60, 1),
        (12 * 3600, 143),
        (12 * 3600 + 1, 144),
        (DEFAULT_VALIDITY_S, 0xA7),
        (2 * 86400, 168),
        (30 * 86400, 196),
        (31 * 86400, 197),
        (63 * 7 * 86400, 255),
        (10**9, 255),
    ],
)
def test_validity_rounds_up(seconds: int, octet: int) -> None:
    [pdu] = encode_submit(CN, "x", reference=0, validity_s=seconds)
    assert decode_submit(pdu.hex).validity == octet


def test_gsm7_extension_characters() -> None:
    text = "^{}\\[~]|€ and @£$¥ ÄÖÑÜ§¿"
    assert fits_gsm7(text)
    [pdu] = encode_submit(CN, text, reference=0)
    submit = decode_submit(pdu.hex)
    assert submit.encoding == "gsm7"
    assert submit.text == text


def test_gsm7_single_part_counts_escapes_as_two_septets() -> None:
    assert len(encode_submit(CN, "€" * 80, reference=0)) == 1  # 160 septets
    assert len(encode_submit(CN, "€" * 80 + "a", reference=0)) == 2


def test_gsm7_multipart_round_trip() -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(400))
    pdus = encode_submit(CN, text, reference=42)
    parts = [decode_submit(p.hex) for p in pdus]
    assert [p.part for p in parts] == [Concat(42, 3, 1), Concat(42, 3, 2), Concat(42, 3, 3)]
    assert [len(p.text) for p in parts] == [153, 153, 94]
    assert "".join(p.text for p in parts) == text


def test_gsm7_concatenation_header_and_fill_bit() -> None:
    pdus = encode_submit(CN, "A" * (153 * 2 + 1), reference=0x12)
    # UDL 8 septets (7 for the header, 1 for "A"); header; one fill bit, then "A" (0x41 << 1).
    assert pdus[2].hex.endswith("08" + "050003120303" + "82")


def test_gsm7_escape_never_split_across_parts() -> None:
    text = "a" * 152 + "€" + "b" * 10
    parts = [decode_submit(p.hex) for p in encode_submit(CN, text, reference=1)]
    assert [p.text for p in parts] == ["a" * 152, "€" + "b" * 10]


def test_ucs2_single_part_chinese() -> None:
    text = "【联防报警】张家三号院 火警，请速到场。回1收到"
    [pdu] = encode_submit(CN, text, reference=0)
    submit = decode_submit(pdu.hex)
    assert (submit.encoding, submit.text, submit.part) == ("ucs2", text, None)
    assert "0008A7" in pdu.hex  # TP-DCS UCS-2


def test_ucs2_seventy_units_fit_one_part() -> None:
    assert len(encode_submit(CN, "火" * 70, reference=0)) == 1
    assert len(encode_submit(CN, "火" * 71, reference=0)) == 2


def test_ucs2_multipart_chinese_round_trip() -> None:
    text = "".join(chr(0x4E00 + i) for i in range(150))
    pdus = encode_submit(CN, text, reference=200)
    assert len(pdus) == 3
    parts = [decode_submit(p.hex) for p in pdus]
    assert all(len(p.text.encode("utf-16-be")) // 2 <= 67 for p in parts)
    assert [p.part for p in parts] == [Concat(200, 3, seq) for seq in (1, 2, 3)]
    assert all(p.tpdu_length <= 140 + 15 for p in pdus)

    # The same parts received as DELIVERs, out of order, join back into the text.
    reassembler = Reassembler()
    results = []
    for p in reversed(parts):
        assert p.part is not None
        header = f"050003{p.part.ref:02X}{p.part.total:02X}{p.part.seq:02X}"
        ud = header + p.text.encode("utf-16-be").hex()
        results.append(reassembler.add(decode_deliver(_deliver(ud, dcs="08", udl=len(ud) // 2, udhi=True)), 0))
    assert results[:2] == [None, None]
    assert results[2] == Deliver(CN, text, SCTS_CN_EPOCH, "ucs2")


@pytest.mark.parametrize("char", ["🔥", "\U00020000"])  # an emoji, a CJK Extension B character
def test_surrogate_pair_at_split_point_stays_whole(char: str) -> None:
    text = "火" * 66 + char + "警" * 10
    parts = [decode_submit(p.hex) for p in encode_submit(CN, text, reference=3)]
    assert [p.text for p in parts] == ["火" * 66, char + "警" * 10]


def test_too_many_parts() -> None:
    encode_submit(CN, "火" * 67 * 255, reference=0)
    with pytest.raises(PduError) as err:
        encode_submit(CN, "火" * (67 * 255 + 1), reference=0)
    assert err.value.reason == "too_long"


@pytest.mark.parametrize(
    ("to", "text", "kwargs", "reason"),
    [
        ("+86 138", "x", {}, "bad_number"),
        ("+", "x", {}, "bad_number"),
        ("", "x", {}, "bad_number"),
        ("+8613８", "x", {}, "bad_number"),  # full-width digit
        ("+" + "1" * 21, "x", {}, "bad_number"),
        (CN, "x", {"smsc": "smsc"}, "bad_number"),
        (CN, "", {}, "bad_value"),
        (CN, "x", {"reference": 256}, "bad_value"),
        (CN, "x", {"reference": -1}, "bad_value"),
        (CN, "x", {"validity_s": 0}, "bad_value"),
    ],
)
def test_encode_rejects(to: str, text: str, kwargs: dict[str, object], reason: str) -> None:
    args: dict[str, object] = {"reference": 0, **kwargs}
    with pytest.raises(PduError) as err:
        encode_submit(to, text, **args)  # type: ignore[arg-type]
    assert err.value.reason == reason


# --- DELIVER decoding ---------------------------------------------------------------------------


def test_deliver_ucs2_with_8bit_reference_udh() -> None:
    deliver = decode_deliver(_deliver("050003120201" + "4F60597D", dcs="08", udl=10, udhi=True))
    assert deliver == Deliver(CN, "你好", SCTS_CN_EPOCH, "ucs2", Concat(0x12, 2, 1))


def test_deliver_ucs2_with_16bit_reference_udh() -> None:
    deliver = decode_deliver(_deliver("06080412340202" + "4E16754C", dcs="08", udl=11, udhi=True))
    assert (deliver.text, deliver.part) == ("世界", Concat(0x1234, 2, 2))


def test_deliver_udh_with_other_elements_first() -> None:
    # IEI 0x24 (national language single shift, ignored) before the concatenation element.
    ud = "08" + "2401" + "0D" + "000399" + "0301" + "0031"
    deliver = decode_deliver(_deliver(ud, dcs="08", udl=len(ud) // 2, udhi=True))
    assert (deliver.text, deliver.part) == ("1", Concat(0x99, 3, 1))


def test_deliver_gsm7_with_udh_fill_bits() -> None:
    deliver = decode_deliver(_deliver("05000312020182", udl=8, udhi=True))
    assert (deliver.text, deliver.part) == ("A", Concat(0x12, 2, 1))


def test_deliver_alphanumeric_sender() -> None:
    deliver = decode_deliver(_deliver("31", udl=1, oa="0BD06176594E2703"))
    assert deliver.sender == "alertd"
    assert deliver.text == "1"


def test_deliver_national_sender_kept_as_given() -> None:
    deliver = decode_deliver(_deliver("31", udl=1, oa="05A10180F6"))  # TON national
    assert deliver.sender == "10086"


def test_deliver_8bit() -> None:
    deliver = decode_deliver(_deliver("00FF41", dcs="04", udl=3))
    assert deliver.encoding == "8bit"
    assert deliver.text.encode("latin-1") == b"\x00\xffA"


@pytest.mark.parametrize(
    ("dcs", "encoding"),
    [("00", "gsm7"), ("08", "ucs2"), ("04", "8bit"), ("0C", "gsm7"), ("48", "ucs2"), ("F4", "8bit"), ("F0", "gsm7"),
     ("C0", "gsm7"), ("E0", "ucs2"), ("80", "gsm7")],
)  # fmt: skip
def test_deliver_data_coding_schemes(dcs: str, encoding: str) -> None:
    ud = "0031" if encoding == "ucs2" else "31"
    assert decode_deliver(_deliver(ud, dcs=dcs, udl=len(ud) // 2)).encoding == encoding


def test_deliver_negative_timezone_and_bad_timestamp() -> None:
    # 2024-01-27 13:58:00 -05:00: 20 quarter hours, sign bit set -> 0x0A
    deliver = decode_deliver(_deliver("31", udl=1, scts="4210723185000A"))
    assert deliver.timestamp == calendar.timegm((2024, 1, 27, 18, 58, 0))
    for bad in ("42200331850023", "42317231850023", "421072318500A3", "4F10723185000A", "42107231850623"):
        assert decode_deliver(_deliver("31", udl=1, scts=bad)).timestamp is None


def test_deliver_unknown_escape_reads_as_basic_character() -> None:
    # Septets 1B 41 1B: ESC "A" is not in the extension table, so it shows "A"; a trailing ESC is dropped.
    assert decode_deliver(_deliver("9BE006", udl=3)).text == "A"


@pytest.mark.parametrize(("total", "seq"), [(0, 0), (2, 0), (2, 3)])
def test_deliver_voids_impossible_concatenation(total: int, seq: int) -> None:
    ud = f"050003AA{total:02X}{seq:02X}" + "0031"
    deliver = decode_deliver(_deliver(ud, dcs="08", udl=8, udhi=True))
    assert (deliver.text, deliver.part) == ("1", None)


def test_deliver_accepts_lowercase_and_surrounding_whitespace() -> None:
    assert decode_deliver(" " + _deliver("31", udl=1).lower() + "\r\n").text == "1"


@pytest.mark.parametrize(
    ("pdu", "reason"),
    [
        ("0", "not_hex"),
        ("zz", "not_hex"),
        ("", "truncated"),
        ("07917283010010", "truncated"),
        (_deliver("31", udl=2), "truncated"),
        (_deliver("0031", dcs="08", udl=4), "truncated"),
        (_deliver("0500", udl=2, udhi=True), "bad_udh"),
        (_deliver("03000312", dcs="08", udl=4, udhi=True), "bad_udh"),
        (_deliver("", udl=0, udhi=True), "bad_udh"),
        (_deliver("31", dcs="20", udl=1), "unsupported"),
        ("0011000B916407281553F80000AA0AE8329BFD4697D9EC37", "wrong_type"),
    ],
)
def test_decode_deliver_rejects(pdu: str, reason: str) -> None:
    with pytest.raises(PduError) as err:
        decode_deliver(pdu)
    assert err.value.reason == reason
    assert isinstance(err.value, AlertdError)
    assert isinstance(err.value, ValueError)
    assert reason in REASONS


def test_decode_submit_rejects_deliver() -> None:
    with pytest.raises(PduError) as err:
        decode_submit(_deliver("31", udl=1))
    assert err.value.reason == "wrong_type"


def test_decode_submit_skips_absolute_validity() -> None:
    pdu = "00" + "19" + "00" + OA_CN + "0000" + SCTS_CN + "0131"  # TP-VPF 11: absolute
    submit = decode_submit(pdu)
    assert (submit.text, submit.validity) == ("1", None)


# --- STATUS-REPORT ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("st", "status"),
    [(0x00, "delivered"), (0x01, "delivered"), (0x1F, "delivered"), (0x20, "pending"), (0x30, "pending"),
     (0x40, "failed"), (0x46, "failed"), (0x60, "failed"), (0x7F, "failed"), (0x80, "failed")],
)  # fmt: skip
def test_status_report(st: int, status: str) -> None:
    pdu = f"{SMSC_CN}060C{OA_CN}{SCTS_CN}42107231851023{st:02X}"
    report = decode_status_report(pdu)
    assert report.mr == 12
    assert report.recipient == CN
    assert report.status == status
    assert report.st == st
    assert report.timestamp == SCTS_CN_EPOCH
    assert report.discharged == SCTS_CN_EPOCH + 1


def test_status_report_with_optional_tail_and_errors() -> None:
    base = f"00060C{OA_CN}{SCTS_CN}{SCTS_CN}00"
    assert decode_status_report(base + "00").status == "delivered"  # TP-PI 0: nothing follows
    with pytest.raises(PduError) as err:
        decode_status_report(base[:-2])
    assert err.value.reason == "truncated"
    with pytest.raises(PduError) as err:
        decode_status_report(_deliver("31", udl=1))
    assert err.value.reason == "wrong_type"


# --- reassembly ---------------------------------------------------------------------------------


def _part(text: str, ref: int, total: int, seq: int, sender: str = CN, timestamp: int = 100) -> Deliver:
    return Deliver(sender, text, timestamp, "ucs2", Concat(ref, total, seq))


def test_reassembler_passes_single_messages_through() -> None:
    reassembler = Reassembler()
    single = Deliver(CN, "1", 5, "gsm7")
    assert reassembler.add(single, 0) is single
    assert reassembler.add(_part("x", 1, 1, 1), 0) == Deliver(CN, "x", 100, "ucs2")
    assert len(reassembler) == 0


def test_reassembler_keys_by_sender_and_reference() -> None:
    reassembler = Reassembler()
    assert reassembler.add(_part("A1", 7, 2, 1), 0) is None
    assert reassembler.add(_part("B1", 7, 2, 1, sender="+8613900000000"), 0) is None
    assert reassembler.add(_part("C2", 8, 2, 2), 0) is None
    assert reassembler.add(_part("A1", 7, 2, 1), 1) is None  # a repeated part changes nothing
    assert len(reassembler) == 3
    assert reassembler.add(_part("A2", 7, 2, 2, timestamp=90), 2) == Deliver(CN, "A1A2", 90, "ucs2")
    assert len(reassembler) == 2


def test_reassembler_joins_a_surrogate_pair_split_by_the_sender() -> None:
    # Some phones split a pair: part 1 ends with the high surrogate, part 2 starts with the low one.
    first = decode_deliver(_deliver("050003050201" + "706BD83D", dcs="08", udl=10, udhi=True))
    second = decode_deliver(_deliver("050003050202" + "DD25", dcs="08", udl=8, udhi=True))
    reassembler = Reassembler()
    assert reassembler.add(first, 0) is None
    whole = reassembler.add(second, 0)
    assert whole is not None
    assert whole.text == "火🔥"


def test_reassembler_expire_returns_stranded_parts_cleaned() -> None:
    first = decode_deliver(_deliver("050003050201" + "706BD83D", dcs="08", udl=10, udhi=True))
    reassembler = Reassembler()
    assert reassembler.add(first, 100) is None
    assert reassembler.add(_part("y", 9, 3, 2), 150) is None
    assert reassembler.expire(159, older_than_s=60) == []
    dropped = reassembler.expire(160, older_than_s=60)
    assert [d.text for d in dropped] == ["火\ufffd"]  # the lone surrogate cannot be shown
    dropped[0].text.encode("utf-8")
    assert len(reassembler) == 1
    assert [d.text for d in reassembler.expire(210, older_than_s=60)] == ["y"]


def test_reassembler_bounds_incomplete_messages() -> None:
    reassembler = Reassembler(max_groups=2)
    reassembler.add(_part("a", 1, 2, 1), 0)
    reassembler.add(_part("b", 2, 2, 1), 1)
    reassembler.add(_part("c", 3, 2, 1), 2)
    assert len(reassembler) == 2
    assert [d.text for d in reassembler.expire(2, older_than_s=3600)] == ["a"]
    assert reassembler.add(_part("c2", 3, 2, 2), 3) == Deliver(CN, "cc2", 100, "ucs2")
