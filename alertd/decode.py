"""`alertd decode`: what alertd makes of a receiver line or an SMS PDU, for installers at the cabinet."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from alertd.protocols.contact_id import DecodeError, LineDecoder, ReceiverHeartbeat, Report, get_format
from alertd.protocols.sms_pdu import PduError, decode_deliver, decode_status_report


def contact_id(lines: Iterable[str], line_format: str = "plain") -> list[dict[str, object]]:
    """One JSON-ready object per input line: the report's fields and `valid`, or `valid: false` and `error`."""
    fmt = get_format(line_format)
    out: list[dict[str, object]] = []
    for line in lines:
        decoded = LineDecoder(fmt).feed(line.encode("latin-1", "replace") + b"\r")
        result: dict[str, object] = {"input": line, "valid": False, "error": "no message in the line"}
        for item in decoded:
            match item:
                case Report():
                    result = {"input": line, **item.to_json()}
                case ReceiverHeartbeat():
                    result = {"input": line, "heartbeat": True, "valid": True}
                case DecodeError(reason=reason, message=message):
                    result = {"input": line, "valid": False, "error": f"{reason}: {message}".rstrip(": ")}
        out.append(result)
    return out


def sms_pdu(pdus: Iterable[str]) -> list[dict[str, object]]:
    """One object per PDU: an incoming SMS (sender, text, timestamp, encoding, part) or a delivery report."""
    out: list[dict[str, object]] = []
    for pdu in pdus:
        try:
            deliver = decode_deliver(pdu)
        except PduError as deliver_error:
            try:
                report = decode_status_report(pdu)
            except PduError:
                out.append({"input": pdu, "valid": False, "error": f"{deliver_error.reason}: {deliver_error}"})
                continue
            out.append({"input": pdu, "valid": True, "type": "status_report", "mr": report.mr,
                        "recipient": report.recipient, "status": report.status})  # fmt: skip
            continue
        part = deliver.part
        out.append(
            {
                "input": pdu,
                "valid": True,
                "type": "deliver",
                "sender": deliver.sender,
                "text": deliver.text,
                "timestamp": None
                if deliver.timestamp is None
                else datetime.fromtimestamp(deliver.timestamp, UTC).isoformat(),
                "encoding": deliver.encoding,
                "part": None if part is None else {"ref": part.ref, "total": part.total, "seq": part.seq},
            }
        )
    return out
