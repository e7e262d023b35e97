"""`alertd decode` as an installer runs it: one JSON object per input, exit 0 only when all decoded."""

from __future__ import annotations

import json
import subprocess
import sys

from alertd.protocols.contact_id import build_message
from tests.fakes.gsm_modem import deliver_pdus


def decode(*args: str) -> tuple[int, list[dict[str, object]]]:
    done = subprocess.run(
        [sys.executable, "-m", "alertd.cli", "decode", *args], capture_output=True, text=True, timeout=60, check=False
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def test_contact_id_lines_valid_and_invalid() -> None:
    fire = build_message("1234", 1, 110, group=1, zone=3)
    broken = fire[:-1] + ("1" if fire[-1] != "1" else "2")
    rc, out = decode("contact-id", fire, broken)
    assert rc == 1
    assert out[0] == {
        "input": fire, "account": "1234", "message_type": "18", "qualifier": 1, "event_code": 110, "name": "fire",
        "category": "alarm", "group": 1, "zone": 3, "user": None, "kind": "fire", "armed": None, "silent": False,
        "restore": False, "receiver": None, "line": None, "valid": True,
    }  # fmt: skip
    assert out[1]["valid"] is False
    assert str(out[1]["error"]).startswith("bad_checksum")


def test_contact_id_in_a_receiver_format_and_all_valid_exits_0() -> None:
    rc, out = decode("contact-id", "--format", "mlr2", "5011 181234R12101001")
    assert rc == 0
    assert out[0]["kind"] == "panic"
    assert out[0]["silent"] is True
    assert out[0]["restore"] is True
    assert out[0]["qualifier"] == 3


def test_an_opening_by_user_and_a_code_alertd_does_not_know_are_valid_reports() -> None:
    # Issue 7: a checksum-valid 401 was "unknown_code", so every arming and disarming was an error.
    unknown = build_message("1234", 1, 999, group=1, zone=0)
    rc, out = decode("contact-id", "1234181401020035", unknown)
    assert rc == 0
    opening, other = out
    assert (opening["valid"], opening["event_code"], opening["name"]) == (True, 401, "open/close by user")
    assert (opening["kind"], opening["armed"], opening["user"], opening["group"]) == ("open_close", "disarmed", 3, 2)
    assert (other["valid"], other["kind"], other["event_code"], other["armed"]) == (True, "other", 999, None)
    assert "error" not in other


def test_sms_pdus_chinese_multipart_and_garbage() -> None:
    parts = deliver_pdus("+8613800010005", "收到 #17 " + "我们马上到" * 20, ref=42)
    rc, out = decode("sms-pdu", parts[0][0], parts[1][0], "not-hex")
    assert rc == 1
    assert out[0]["sender"] == "+8613800010005"
    assert out[0]["encoding"] == "ucs2"
    assert out[0]["part"] == {"ref": 42, "total": len(parts), "seq": 1}
    assert str(out[0]["text"]).startswith("收到 #17 我们")
    assert out[1]["part"] == {"ref": 42, "total": len(parts), "seq": 2}
    assert str(out[0]["timestamp"]).endswith("+00:00")
    assert out[2]["valid"] is False
    assert "error" in out[2]
