"""Terminal protocol v1: topics, every event vector, every error reason, commands."""

from __future__ import annotations

import json

import pytest

from alertd.core.events import Alarm, CheckIn, Coming, Heartbeat, TerminalAck
from alertd.core.events import TestReport as SelfTest  # pytest would try to collect a name starting "Test"
from alertd.core.model import Kind
from alertd.errors import AlertdError
from alertd.protocols import terminal
from alertd.protocols.terminal import (
    MAX_PAYLOAD,
    REASONS,
    DeviceEvent,
    ProtocolError,
    RingCommand,
    StopCommand,
    Topics,
    decode_command,
    encode_event,
    encode_ring,
    encode_stop,
    parse_event,
    parse_status,
)

DEV = "t-0102-a"

# --- topics -------------------------------------------------------------------------------------


def test_topics_default_prefix() -> None:
    topics = Topics()
    assert topics.event(DEV) == "alertd/v1/dev/t-0102-a/event"
    assert topics.status(DEV) == "alertd/v1/dev/t-0102-a/status"
    assert topics.cmd(DEV) == "alertd/v1/dev/t-0102-a/cmd"
    assert topics.subscriptions() == ["alertd/v1/dev/+/event", "alertd/v1/dev/+/status"]


def test_topics_custom_prefix_round_trip() -> None:
    topics = Topics("village/xiaohe/alertd")
    assert topics.subscriptions() == ["village/xiaohe/alertd/dev/+/event", "village/xiaohe/alertd/dev/+/status"]
    assert topics.parse(topics.event(DEV)) == (DEV, "event")
    assert topics.parse(topics.status(DEV)) == (DEV, "status")


@pytest.mark.parametrize("prefix", ["", "a/", "/a", "a//b", "a/+/b", "a/#", "a\0b"])
def test_topics_reject_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Topics(prefix)


@pytest.mark.parametrize("device_id", ["", "a/b", "+", "#", "a\0"])
def test_topics_reject_bad_device_id(device_id: str) -> None:
    topics = Topics()
    for build in (topics.event, topics.status, topics.cmd):
        with pytest.raises(ValueError, match="device id"):
            build(device_id)


@pytest.mark.parametrize(
    "topic",
    [
        "alertd/v1/dev/t1/cmd",  # our own command topic echoed back
        "alertd/v1/dev//event",  # empty device id
        "alertd/v1/dev/t1/event/extra",
        "alertd/v1/dev/t1",
        "alertd/v1/dev/",
        "alertd/v2/dev/t1/event",
        "other/alertd/v1/dev/t1/event",
        "alertd/v1/devx/t1/event",
        "alertd/v1/dev/t\0/event",
        "",
    ],
)
def test_topics_parse_rejects(topic: str) -> None:
    with pytest.raises(ProtocolError) as info:
        Topics().parse(topic)
    assert info.value.reason == "bad_topic"


# --- events: vectors ----------------------------------------------------------------------------

VECTORS: list[tuple[bytes, DeviceEvent]] = [
    (b'{"type":"alarm","kind":"fire","seq":17}', Alarm(DEV, Kind.FIRE, 17)),
    (b'{"type":"alarm","kind":"panic","seq":0}', Alarm(DEV, Kind.PANIC, 0)),
    (b'{"type":"alarm","kind":"gas"}', Alarm(DEV, Kind.GAS, None)),
    (b'{"type":"alarm","kind":"smoke","seq":null}', Alarm(DEV, Kind.SMOKE, None)),
    (b'{"type":"alarm","kind":"water","seq":9223372036854775807}', Alarm(DEV, Kind.WATER, 2**63 - 1)),
    (b'{"type":"alarm","kind":"intrusion","seq":3,"rssi":-71,"fw":"1.2"}', Alarm(DEV, Kind.INTRUSION, 3)),
    (b' {\n "type" : "alarm", "kind" : "medical", "seq" : 5 }\n', Alarm(DEV, Kind.MEDICAL, 5)),
    (b'{"type":"ack","incident":"17"}', TerminalAck(DEV, 17)),
    (b'{"type":"ack","incident":17}', TerminalAck(DEV, 17)),
    (b'{"type":"ack","incident":"017"}', TerminalAck(DEV, 17)),
    (b'{"type":"ack"}', TerminalAck(DEV, None)),
    (b'{"type":"ack","incident":null}', TerminalAck(DEV, None)),
    # revision 2: coming (我来了) takes incident as ack does; checkin (平安键) has no fields
    (b'{"type":"coming","incident":"17"}', Coming(DEV, 17)),
    (b'{"type":"coming","incident":17}', Coming(DEV, 17)),
    (b'{"type":"coming","incident":"017"}', Coming(DEV, 17)),
    (b'{"type":"coming","incident":"9223372036854775807"}', Coming(DEV, 2**63 - 1)),
    (b'{"type":"coming"}', Coming(DEV, None)),
    (b'{"type":"coming","incident":null}', Coming(DEV, None)),
    (b'{"type":"coming","incident":"17","rssi":-71,"fw":"2.0"}', Coming(DEV, 17)),
    (b'{"type":"checkin"}', CheckIn(DEV)),
    (b'{"type":"checkin","battery":"87","incident":true,"fw":"2.0"}', CheckIn(DEV)),  # extra fields, any type
    (b'{"type":"heartbeat","battery":87}', Heartbeat(DEV, 87)),
    (b'{"type":"heartbeat","battery":0}', Heartbeat(DEV, 0)),
    (b'{"type":"heartbeat","battery":100}', Heartbeat(DEV, 100)),
    (b'{"type":"heartbeat"}', Heartbeat(DEV, None)),
    (b'{"type":"test"}', SelfTest(DEV)),
    (b'{"type":"test","note":"\xe6\xb5\x8b\xe8\xaf\x95"}', SelfTest(DEV)),  # UTF-8 extra field
]


@pytest.mark.parametrize(("payload", "expected"), VECTORS)
def test_parse_event_vectors(payload: bytes, expected: object) -> None:
    assert parse_event(DEV, payload) == expected


def test_every_kind_parses() -> None:
    for kind in Kind:
        payload = json.dumps({"type": "alarm", "kind": kind.value, "seq": 1}).encode()
        assert parse_event(DEV, payload) == Alarm(DEV, kind, 1)


def test_alarm_source_is_mqtt() -> None:
    event = parse_event(DEV, b'{"type":"alarm","kind":"fire"}')
    assert isinstance(event, Alarm)
    assert event.source == "mqtt"


@pytest.mark.parametrize(
    "event",
    [
        Alarm(DEV, Kind.FIRE, 42),
        Alarm(DEV, Kind.WATER, None),
        TerminalAck(DEV, 17),
        TerminalAck(DEV, None),
        Coming(DEV, 17),
        Coming(DEV, 0),
        Coming(DEV, 2**63 - 1),
        Coming(DEV, None),
        CheckIn(DEV),
        Heartbeat(DEV, 55),
        Heartbeat(DEV, None),
        SelfTest(DEV),
    ],
)
def test_encode_event_round_trip(event: DeviceEvent) -> None:
    payload = encode_event(event)
    assert b"null" not in payload  # optional fields are omitted, not null
    assert b" " not in payload
    assert parse_event(DEV, payload) == event


def test_encode_event_exact_bytes() -> None:
    assert encode_event(Alarm(DEV, Kind.FIRE, 3)) == b'{"type":"alarm","kind":"fire","seq":3}'
    assert encode_event(TerminalAck(DEV, 17)) == b'{"type":"ack","incident":"17"}'
    assert encode_event(Coming(DEV, 17)) == b'{"type":"coming","incident":"17"}'
    assert encode_event(Coming(DEV, None)) == b'{"type":"coming"}'
    assert encode_event(CheckIn(DEV)) == b'{"type":"checkin"}'


def test_new_events_are_distinct_from_ack() -> None:
    # "I'm coming" is not an acknowledgement: the same incident field, a different input for the engine.
    assert parse_event(DEV, b'{"type":"coming","incident":"17"}') != TerminalAck(DEV, 17)
    assert parse_event(DEV, b'{"type":"checkin"}') != SelfTest(DEV)


# --- events: errors -----------------------------------------------------------------------------

ERRORS: list[tuple[bytes, str, str]] = [
    # (payload, reason, a fragment the message must contain)
    (b"\xff\xfe{}", "not_utf8", "byte 0"),
    (b'{"type":"alarm","kind":"fire\xc3"}', "not_utf8", "UTF-8"),
    (b"", "not_json", "not JSON"),
    (b"{", "not_json", "not JSON"),
    (b"online", "not_json", "not JSON"),
    (b'{"type":"alarm","kind":"fire","seq":NaN}', "not_json", "NaN"),
    (b'{"type":"alarm","kind":"fire","seq":Infinity}', "not_json", "Infinity"),
    (b"[" * 2040 + b"]" * 2040, "not_json", "not JSON"),  # within size, deeper than the recursion limit
    (b"[]", "not_object", "list"),
    (b'"alarm"', "not_object", "str"),
    (b"17", "not_object", "int"),
    (b"null", "not_object", "NoneType"),
    (b"{}", "missing_field", "'type'"),
    (b'{"kind":"fire"}', "missing_field", "'type'"),
    (b'{"type":"alarm"}', "missing_field", "'kind'"),
    (b'{"type":1}', "bad_type", "'type'"),
    (b'{"type":null}', "bad_type", "'type'"),
    (b'{"type":"alarm","kind":3}', "bad_type", "'kind'"),
    (b'{"type":"alarm","kind":"fire","seq":"5"}', "bad_type", "'seq'"),
    (b'{"type":"alarm","kind":"fire","seq":5.0}', "bad_type", "'seq'"),
    (b'{"type":"alarm","kind":"fire","seq":true}', "bad_type", "'seq'"),
    (b'{"type":"ack","incident":17.0}', "bad_type", "'incident'"),
    (b'{"type":"ack","incident":true}', "bad_type", "'incident'"),
    (b'{"type":"ack","incident":["17"]}', "bad_type", "'incident'"),
    (b'{"type":"heartbeat","battery":"87"}', "bad_type", "'battery'"),
    (b'{"type":"heartbeat","battery":87.5}', "bad_type", "'battery'"),
    (b'{"type":"heartbeat","battery":false}', "bad_type", "'battery'"),
    (b'{"type":"coming","incident":17.0}', "bad_type", "'incident'"),
    (b'{"type":"coming","incident":true}', "bad_type", "'incident'"),
    (b'{"type":"coming","incident":["17"]}', "bad_type", "'incident'"),
    (b'{"type":"coming","incident":{"id":"17"}}', "bad_type", "'incident'"),
    (b'{"type":"siren"}', "unknown_type", "'siren'"),
    (b'{"type":"Coming"}', "unknown_type", "'Coming'"),
    (b'{"type":"check_in"}', "unknown_type", "'check_in'"),
    (b'{"type":"CHECKIN"}', "unknown_type", "'CHECKIN'"),
    (b'{"type":"Alarm","kind":"fire"}', "unknown_type", "'Alarm'"),
    (b'{"type":"ring","incident":"1"}', "unknown_type", "'ring'"),  # a command is not an event
    (b'{"type":"alarm","kind":"flood"}', "unknown_kind", "'flood'"),
    (b'{"type":"alarm","kind":"FIRE"}', "unknown_kind", "'FIRE'"),
    (b'{"type":"alarm","kind":""}', "unknown_kind", "''"),
    (b'{"type":"alarm","kind":"fire","seq":-1}', "bad_value", "'seq'"),
    (b'{"type":"alarm","kind":"fire","seq":9223372036854775808}', "bad_value", "'seq'"),
    (b'{"type":"heartbeat","battery":101}', "bad_value", "'battery'"),
    (b'{"type":"heartbeat","battery":-1}', "bad_value", "'battery'"),
    (b'{"type":"ack","incident":""}', "bad_value", "'incident'"),
    (b'{"type":"ack","incident":"#17"}', "bad_value", "'incident'"),
    (b'{"type":"ack","incident":" 17"}', "bad_value", "'incident'"),
    (b'{"type":"ack","incident":"-1"}', "bad_value", "'incident'"),
    (b'{"type":"ack","incident":"\xef\xbc\x91\xef\xbc\x97"}', "bad_value", "'incident'"),  # full-width 17
    (b'{"type":"ack","incident":"\xd9\xa1"}', "bad_value", "'incident'"),  # Arabic-Indic digit one
    (b'{"type":"ack","incident":-3}', "bad_value", "'incident'"),
    (b'{"type":"ack","incident":"9223372036854775808"}', "bad_value", "'incident'"),
    (b'{"type":"ack","incident":"12345678901234567890"}', "bad_value", "'incident'"),
    (b'{"type":"coming","incident":""}', "bad_value", "'incident'"),
    (b'{"type":"coming","incident":"#17"}', "bad_value", "'incident'"),
    (b'{"type":"coming","incident":"17 "}', "bad_value", "'incident'"),
    (b'{"type":"coming","incident":-1}', "bad_value", "'incident'"),
    (b'{"type":"coming","incident":"9223372036854775808"}', "bad_value", "'incident'"),
    (b'{"type":"coming","incident":9223372036854775808}', "bad_value", "'incident'"),
]


@pytest.mark.parametrize(("payload", "reason", "fragment"), ERRORS)
def test_parse_event_errors(payload: bytes, reason: str, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_event(DEV, payload)
    assert info.value.reason == reason
    assert fragment in str(info.value)


def test_every_reason_is_exercised() -> None:
    seen = {reason for _, reason, _ in ERRORS} | {"too_large", "bad_topic"}
    assert seen == REASONS


def test_protocol_error_is_value_error_and_alertd_error() -> None:
    err = ProtocolError("bad_value", "x")
    assert isinstance(err, ValueError)
    assert isinstance(err, AlertdError)


def test_error_message_truncates_long_values() -> None:
    kind = "x" * 1000
    with pytest.raises(ProtocolError) as info:
        parse_event(DEV, json.dumps({"type": "alarm", "kind": kind}).encode())
    assert info.value.reason == "unknown_kind"
    assert len(str(info.value)) < 100
    assert str(info.value).endswith("...")


def _padded(size: int) -> bytes:
    """A valid alarm padded with an ignored field to exactly ``size`` bytes."""
    head, tail = b'{"type":"alarm","kind":"fire","seq":1,"pad":"', b'"}'
    payload = head + b"x" * (size - len(head) - len(tail)) + tail
    assert len(payload) == size
    return payload


def test_payload_of_exactly_max_is_accepted() -> None:
    assert parse_event(DEV, _padded(MAX_PAYLOAD)) == Alarm(DEV, Kind.FIRE, 1)


def test_payload_one_byte_over_max_is_too_large() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_event(DEV, _padded(MAX_PAYLOAD + 1))
    assert info.value.reason == "too_large"
    assert "4097" in str(info.value)


def test_too_large_is_checked_before_decoding() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_event(DEV, b"\xff" * (MAX_PAYLOAD + 1))
    assert info.value.reason == "too_large"


def test_max_payload_constant() -> None:
    assert MAX_PAYLOAD == 4096


# --- status -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "online"),
    [(b"online", True), (b"offline", False), (b"online\n", True), (b"OFFLINE", False), (b" Online ", True)],
)
def test_parse_status(payload: bytes, online: bool) -> None:
    assert parse_status(payload) is online


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "bad_value"),
        (b"   ", "bad_value"),
        (b"on", "bad_value"),
        (b'{"state":"online"}', "bad_value"),
        (b"true", "bad_value"),
        (b"\xff", "not_utf8"),
        (b"o" * (MAX_PAYLOAD + 1), "too_large"),
    ],
)
def test_parse_status_errors(payload: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_status(payload)
    assert info.value.reason == reason


def test_empty_status_message_hints_at_cleared_retained() -> None:
    with pytest.raises(ProtocolError, match="retained"):
        parse_status(b"")


# --- commands -----------------------------------------------------------------------------------


def test_encode_ring_exact() -> None:
    body = encode_ring(17, Kind.FIRE, "h0102", "2号户 王家")
    assert body == '{"type":"ring","incident":"17","kind":"fire","from":{"household":"h0102","label":"2号户 王家"}}'
    # UTF-8 on the wire, not \u escapes: small terminals display the bytes as they come.
    assert "2号户 王家".encode() in body.encode()


def test_encode_stop_exact() -> None:
    assert encode_stop(17) == '{"type":"stop","incident":"17"}'


def test_encoders_match_what_incidents_calls() -> None:
    # alertd.core.incidents calls these through the module; keep the names and arity.
    assert terminal.encode_ring(1, Kind.GAS, "h", "l").startswith('{"type":"ring"')
    assert terminal.encode_stop(1).startswith('{"type":"stop"')


def test_ring_with_quotes_and_backslashes_round_trips() -> None:
    label = 'Li "the elder" \\ 李家\n'
    body = encode_ring(5, Kind.MEDICAL, "h\u00e9", label)
    assert decode_command(body.encode()) == RingCommand(5, Kind.MEDICAL, "h\u00e9", label)


@pytest.mark.parametrize("kind", list(Kind))
def test_ring_round_trip_every_kind(kind: Kind) -> None:
    body = encode_ring(2**40, kind, "h0102", "2号户 王家")
    assert decode_command(body.encode()) == RingCommand(2**40, kind, "h0102", "2号户 王家")


def test_stop_round_trip() -> None:
    assert decode_command(encode_stop(17).encode()) == StopCommand(17)


def test_decode_command_accepts_int_incident_and_extra_fields() -> None:
    assert decode_command(b'{"type":"stop","incident":9,"why":"ack"}') == StopCommand(9)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"type":"stop"}', "missing_field"),
        (b'{"type":"ring","kind":"fire","from":{"household":"h","label":"l"}}', "missing_field"),
        (b'{"type":"ring","incident":"1","from":{"household":"h","label":"l"}}', "missing_field"),
        (b'{"type":"ring","incident":"1","kind":"fire"}', "missing_field"),
        (b'{"type":"ring","incident":"1","kind":"fire","from":{"label":"l"}}', "missing_field"),
        (b'{"type":"ring","incident":"1","kind":"fire","from":"h0102"}', "bad_type"),
        (b'{"type":"ring","incident":"1","kind":"fire","from":{"household":1,"label":"l"}}', "bad_type"),
        (b'{"type":"ring","incident":"1","kind":"lava","from":{"household":"h","label":"l"}}', "unknown_kind"),
        (b'{"type":"stop","incident":"x"}', "bad_value"),
        (b'{"type":"alarm","kind":"fire"}', "unknown_type"),
        (b"[]", "not_object"),
        (b"{", "not_json"),
        (b"\xc3", "not_utf8"),
        (b" " * (MAX_PAYLOAD + 1), "too_large"),
    ],
)
def test_decode_command_errors(payload: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_command(payload)
    assert info.value.reason == reason
