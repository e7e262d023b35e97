"""Zigbee2MQTT codec: topics, availability, state transitions, supervision, errors, siren commands."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from alertd.core.events import Alarm, CheckIn, Heartbeat, Restore, Supervision, SupervisionKind
from alertd.core.model import Kind
from alertd.core.profile import ActivityRule, AlarmRule, Command, DeviceProfile, Transport
from alertd.errors import AlertdError
from alertd.protocols.zigbee2mqtt import (
    MAX_PAYLOAD,
    REASONS,
    DeviceState,
    Event,
    Z2mError,
    Z2mTopics,
    interpret,
    parse_availability,
    render,
)

DEV = "s-h0101"
Z = Transport.ZIGBEE2MQTT

SMOKE = DeviceProfile(
    "zigbee-smoke",
    "Heiman HS1SA smoke detector",
    Z,
    alarms=(AlarmRule("smoke", True, Kind.SMOKE),),
    checkin_s=3600,
    battery_field="battery",
    battery_low_field="battery_low",
    tamper_field="tamper",
)
GAS = DeviceProfile("zigbee-gas", "Heiman HS1CG gas", Z, alarms=(AlarmRule("gas", True, Kind.GAS),))
WATER = DeviceProfile(
    "zigbee-water",
    "Aqara SJCGQ11LM water leak",
    Z,
    alarms=(AlarmRule("water_leak", True, Kind.WATER),),
    battery_field="battery",
)
DOOR = DeviceProfile(
    "zigbee-door",
    "Aqara MCCGQ11LM door contact",
    Z,
    alarms=(AlarmRule("contact", False, Kind.INTRUSION),),  # contact false: the door is open
    battery_field="battery",
)
SOS = DeviceProfile(
    "zigbee-sos",
    "Tuya TS0215A SOS button",
    Z,
    alarms=(AlarmRule("action", "emergency", Kind.PANIC, momentary=True),),
    battery_field="battery",
)
SIREN = DeviceProfile(
    "zigbee-siren",
    "Heiman HS2WD-E siren",
    Z,
    ring=Command(
        "{base}/{name}/set",
        '{"warning":{"mode":"emergency","level":"very_high","strobe":true,"duration":600}}',
    ),
    stop=Command("{base}/{name}/set", '{"warning":{"mode":"stop"}}'),
)


def msg(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def run(
    profile: DeviceProfile, payloads: list[bytes], previous: DeviceState | None = None
) -> tuple[DeviceState | None, list[list[Event]]]:
    """Feed live messages in order; the events of each, without heartbeats."""
    out: list[list[Event]] = []
    state = previous
    for payload in payloads:
        state, events = interpret(DEV, profile, state, payload, retained=False)
        out.append([e for e in events if not isinstance(e, Heartbeat)])
    return state, out


SMOKE_ALARM = Alarm(DEV, Kind.SMOKE, seq=None, source="zigbee2mqtt")
CLEAR = DeviceState(frozenset(), 100, False, False)

# --- topics -------------------------------------------------------------------------------------


def test_topics_default_base() -> None:
    topics = Z2mTopics()
    assert topics.subscriptions() == ["zigbee2mqtt/+", "zigbee2mqtt/+/availability"]
    assert topics.parse("zigbee2mqtt/kitchen_smoke") == ("kitchen_smoke", "state")
    assert topics.parse("zigbee2mqtt/kitchen_smoke/availability") == ("kitchen_smoke", "availability")
    assert topics.set_topic("siren_1") == "zigbee2mqtt/siren_1/set"


def test_topics_custom_base_and_chinese_name() -> None:
    topics = Z2mTopics("village/xiaohe/z2m")
    assert topics.subscriptions() == ["village/xiaohe/z2m/+", "village/xiaohe/z2m/+/availability"]
    assert topics.parse("village/xiaohe/z2m/王家 烟感") == ("王家 烟感", "state")
    assert topics.parse(topics.set_topic("王家 烟感").removesuffix("/set") + "/availability")[1] == "availability"


@pytest.mark.parametrize(
    "topic",
    [
        "zigbee2mqtt/bridge/state",
        "zigbee2mqtt/bridge/devices",
        "zigbee2mqtt/bridge/event",
        "zigbee2mqtt/bridge",
        "zigbee2mqtt/siren_1/set",
        "zigbee2mqtt/siren_1/get",
        "zigbee2mqtt/siren_1/set/warning",
        "zigbee2mqtt/",
        "zigbee2mqtt//availability",
        "zigbee2mqtt",
        "other/siren_1",
        "zigbee2mqttx/siren_1",
        "zigbee2mqtt/a\0b",
    ],
)
def test_topics_reject(topic: str) -> None:
    with pytest.raises(Z2mError) as info:
        Z2mTopics().parse(topic)
    assert info.value.reason == "bad_topic"


@pytest.mark.parametrize("base", ["", "a/", "/a", "a//b", "a/+", "#", "a\0"])
def test_topics_reject_bad_base(base: str) -> None:
    with pytest.raises(ValueError, match="base"):
        Z2mTopics(base)


@pytest.mark.parametrize("name", ["", "a/b", "+", "#", "a\0", "bridge"])
def test_set_topic_rejects_bad_name(name: str) -> None:
    with pytest.raises(Z2mError) as info:
        Z2mTopics().set_topic(name)
    assert info.value.reason == "bad_topic"


# --- availability -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "online"),
    [
        (b'{"state":"online"}', True),
        (b'{"state":"offline"}', False),
        (b'{"state": "online", "extra": 1}', True),
        (b"online", True),
        (b"offline", False),
        (b"online\n", True),
    ],
)
def test_availability(payload: bytes, online: bool) -> None:
    assert parse_availability(payload) is online


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "bad_value"),
        (b"ONLINE?", "bad_value"),
        (b'{"state":"maybe"}', "bad_value"),
        (b"{}", "bad_value"),
        (b'{"state":true}', "bad_type"),
        (b'{"state":', "not_json"),
        (b"\xff", "not_utf8"),
        (b"o" * (MAX_PAYLOAD + 1), "too_large"),
    ],
)
def test_availability_rejects(payload: bytes, reason: str) -> None:
    with pytest.raises(Z2mError) as info:
        parse_availability(payload)
    assert info.value.reason == reason


# --- state transitions --------------------------------------------------------------------------


def test_smoke_alarms_on_transition_only() -> None:
    quiet = msg(smoke=False, battery=100)
    fire = msg(smoke=True, battery=100)
    state, events = run(SMOKE, [quiet, fire, fire, quiet, quiet, fire], previous=CLEAR)
    assert events == [
        [],
        [SMOKE_ALARM],
        [],  # Zigbee2MQTT repeats the whole state: a repeat is not a new alarm
        [Restore(DEV, "smoke cleared")],
        [],
        [SMOKE_ALARM],
    ]
    assert state == DeviceState(frozenset({"smoke"}), 100, False, False)


def test_field_absent_or_null_means_no_change() -> None:
    fire = msg(smoke=True)
    state, events = run(SMOKE, [fire, msg(battery=90), b'{"smoke":null}', msg(smoke=False)], previous=CLEAR)
    assert events == [[SMOKE_ALARM], [], [], [Restore(DEV, "smoke cleared")]]
    assert state == DeviceState(frozenset(), 90, False, False)


def test_retained_state_after_restart_does_not_raise() -> None:
    # A retained or repeated state after a restart must not re-raise a resolved incident.
    state, events = interpret(DEV, SMOKE, None, msg(smoke=True, battery=100), retained=True)
    assert events == []  # not even a heartbeat: the broker spoke, not the device
    assert state == DeviceState(frozenset({"smoke"}), 100, False, False)
    # The device keeps repeating smoke: still nothing; it clears: restore; it fires again: alarm.
    _, events2 = run(SMOKE, [msg(smoke=True), msg(smoke=False), msg(smoke=True)], previous=state)
    assert events2 == [[], [Restore(DEV, "smoke cleared")], [SMOKE_ALARM]]


def test_retained_state_with_known_previous_is_a_real_transition() -> None:
    # Our MQTT session dropped and came back: the retained state is what we missed.
    _, events = interpret(DEV, SMOKE, CLEAR, msg(smoke=True), retained=True)
    assert events == [SMOKE_ALARM]


def test_live_first_message_after_restart_raises() -> None:
    # Zigbee2MQTT does not retain by default: a sleepy detector's first report may be the fire itself.
    state, events = interpret(
        DEV, SMOKE, None, msg(smoke=True, battery=100, battery_low=True, tamper=True), retained=False
    )
    assert events == [SMOKE_ALARM, Heartbeat(DEV, 100)]  # health is only baselined: no "before" to compare
    assert state == DeviceState(frozenset({"smoke"}), 100, True, True)


def test_first_message_quiet_is_baseline() -> None:
    state, events = interpret(DEV, SMOKE, None, msg(smoke=False, battery=100), retained=False)
    assert events == [Heartbeat(DEV, 100)]
    assert state == CLEAR


def test_unknown_counts_as_not_alarm() -> None:
    _, events = run(SMOKE, [msg(battery=100), msg(smoke=True)])
    assert events == [[], [SMOKE_ALARM]]


def test_door_contact_false_is_intrusion() -> None:
    closed, opened = msg(contact=True, battery=91), msg(contact=False, battery=91)
    _, events = run(DOOR, [closed, opened, opened, closed])
    assert events == [
        [],
        [Alarm(DEV, Kind.INTRUSION, seq=None, source="zigbee2mqtt")],
        [],
        [Restore(DEV, "contact cleared")],
    ]


def test_sos_momentary_raises_every_press() -> None:
    press = msg(action="emergency", battery=100)
    panic = Alarm(DEV, Kind.PANIC, seq=None, source="zigbee2mqtt")
    state, events = run(SOS, [press, press, msg(battery=100), b'{"action":""}', press])
    assert events == [[panic], [panic], [], [], [panic]]
    assert state is not None
    assert state.alarms == frozenset()  # momentary rules keep no state


def test_sos_retained_action_is_stale() -> None:
    _, events = interpret(DEV, SOS, None, msg(action="emergency"), retained=True)
    assert events == []
    _, events = interpret(DEV, SOS, CLEAR, msg(action="emergency"), retained=True)
    assert events == []


def test_several_rules_on_one_device() -> None:
    combo = DeviceProfile(
        "combo",
        "smoke and gas",
        Z,
        alarms=(AlarmRule("smoke", True, Kind.SMOKE), AlarmRule("gas", True, Kind.GAS)),
    )
    _, events = run(combo, [msg(smoke=False, gas=False), msg(smoke=True, gas=True), msg(smoke=False, gas=True)])
    assert events == [
        [],
        [SMOKE_ALARM, Alarm(DEV, Kind.GAS, seq=None, source="zigbee2mqtt")],
        [Restore(DEV, "smoke cleared")],
    ]


def test_unknown_fields_ignored() -> None:
    _, events = run(GAS, [msg(gas=False, whatever={"x": [1]}, linkquality=None), msg(gas=True, new_field="x")])
    assert events == [[], [Alarm(DEV, Kind.GAS, seq=None, source="zigbee2mqtt")]]


@pytest.mark.parametrize("state", [CLEAR, DeviceState(), DeviceState(frozenset({"smoke", "tamper_x"}), 7, True, True)])
def test_state_json_round_trip(state: DeviceState) -> None:
    assert DeviceState.from_json(state.to_json()) == state


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        '{"alarms":["smoke"],"battery":1,"battery_low":false}',
        '{"alarms":[1],"battery":1,"battery_low":false,"tamper":false}',
        '{"alarms":[],"battery":true,"battery_low":false,"tamper":false}',
        '{"alarms":[],"battery":"1","battery_low":false,"tamper":false}',
        '{"alarms":[],"battery":null,"battery_low":0,"tamper":false}',
    ],
)
def test_state_from_json_rejects(text: str) -> None:
    with pytest.raises(Z2mError) as info:
        DeviceState.from_json(text)
    assert info.value.reason == "bad_value"


# --- supervision and heartbeat ------------------------------------------------------------------


def test_battery_low_by_field() -> None:
    state, events = run(
        SMOKE,
        [msg(battery=60, battery_low=False), msg(battery=60, battery_low=True), msg(battery=60, battery_low=True)],
        previous=CLEAR,
    )
    assert events == [[], [Supervision(DEV, SupervisionKind.BATTERY_LOW)], []]
    _, events = run(SMOKE, [msg(battery=60, battery_low=False)], previous=state)
    assert events == [[Supervision(DEV, SupervisionKind.BATTERY_LOW, restore=True)]]


def test_battery_low_by_percent_at_threshold() -> None:
    _, events = run(WATER, [msg(battery=21), msg(battery=20), msg(battery=5), msg(water_leak=False), msg(battery=100)])
    assert events == [
        [],
        [Supervision(DEV, SupervisionKind.BATTERY_LOW)],
        [],
        [],
        [Supervision(DEV, SupervisionKind.BATTERY_LOW, restore=True)],
    ]


def test_battery_values_clamped_and_rounded() -> None:
    state, _ = interpret(DEV, WATER, CLEAR, msg(battery=250), retained=False)
    assert state.battery == 100
    state, _ = interpret(DEV, WATER, CLEAR, msg(battery=-3), retained=False)
    assert state.battery == 0
    state, events = interpret(DEV, WATER, CLEAR, msg(battery=47.6), retained=False)
    assert state.battery == 48
    assert events == [Heartbeat(DEV, 48)]


def test_battery_low_either_signal() -> None:
    # The device says low while the percentage looks fine, and the other way round.
    state, events = interpret(DEV, SMOKE, CLEAR, msg(battery=80, battery_low=True), retained=False)
    assert state.battery_low
    state, _ = interpret(DEV, SMOKE, CLEAR, msg(battery=10, battery_low=False), retained=False)
    assert state.battery_low
    assert Supervision(DEV, SupervisionKind.BATTERY_LOW) in events


def test_tamper() -> None:
    _, events = run(SMOKE, [msg(tamper=False), msg(tamper=True), msg(tamper=True), msg(smoke=False), msg(tamper=False)])
    assert events == [
        [],
        [Supervision(DEV, SupervisionKind.TAMPERED)],
        [],
        [],
        [Supervision(DEV, SupervisionKind.TAMPERED, restore=True)],
    ]


def test_profile_without_health_fields_ignores_them() -> None:
    state, events = interpret(DEV, GAS, CLEAR, msg(gas=False, battery=5, battery_low=True, tamper=True), retained=False)
    assert events == [Heartbeat(DEV, 100)]  # battery unknown to this profile: the previous value stays
    assert not state.battery_low
    assert not state.tamper


def test_heartbeat_every_live_message_carries_battery() -> None:
    state, events = interpret(DEV, SMOKE, CLEAR, msg(battery=77), retained=False)
    assert events == [Heartbeat(DEV, 77)]
    _, events = interpret(DEV, SMOKE, state, msg(linkquality=40), retained=False)
    assert events == [Heartbeat(DEV, 77)]
    _, events = interpret(DEV, SMOKE, state, msg(linkquality=40), retained=True)
    assert events == []


def test_event_order_alarms_first() -> None:
    before = DeviceState(frozenset(), 50, False, False)
    _, events = interpret(DEV, SMOKE, before, msg(smoke=True, battery=10, tamper=True), retained=False)
    assert events == [
        SMOKE_ALARM,
        Supervision(DEV, SupervisionKind.BATTERY_LOW),
        Supervision(DEV, SupervisionKind.TAMPERED),
        Heartbeat(DEV, 10),
    ]


# --- bad payloads -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not_json"),
        (b"online", "not_json"),
        (b'{"smoke":', "not_json"),
        (b'{"battery":NaN}', "not_json"),
        (b"[" * 100_000, "too_large"),
        (b"[" * 4000, "not_json"),  # nested past the recursion limit, within the size limit
        (b"\xff\xfe", "not_utf8"),
        (b"[]", "not_object"),
        (b'"smoke"', "not_object"),
        (b"null", "not_object"),
        (b'{"smoke":"yes"}', "bad_type"),
        (b'{"smoke":1}', "bad_type"),
        (b'{"battery":"90"}', "bad_type"),
        (b'{"battery":true}', "bad_type"),
        (b'{"battery_low":"no"}', "bad_type"),
        (b'{"tamper":0}', "bad_type"),
        (b'{"x":"' + b"a" * MAX_PAYLOAD + b'"}', "too_large"),
    ],
)
def test_bad_payloads(payload: bytes, reason: str) -> None:
    with pytest.raises(Z2mError) as info:
        interpret(DEV, SMOKE, CLEAR, payload, retained=False)
    assert info.value.reason == reason
    assert info.value.reason in REASONS
    assert isinstance(info.value, AlertdError)
    assert isinstance(info.value, ValueError)


def test_payload_at_size_limit_accepted() -> None:
    body = b'{"smoke":true,"pad":"'
    payload = body + b"a" * (MAX_PAYLOAD - len(body) - 2) + b'"}'
    assert len(payload) == MAX_PAYLOAD
    _, events = interpret(DEV, SMOKE, CLEAR, payload, retained=False)
    assert SMOKE_ALARM in events


@pytest.mark.parametrize(
    ("profile", "payload"),
    [(SOS, b'{"action":1}'), (SOS, b'{"action":true}'), (DOOR, b'{"contact":"open"}')],
)
def test_bad_type_per_rule_value(profile: DeviceProfile, payload: bytes) -> None:
    with pytest.raises(Z2mError) as info:
        interpret(DEV, profile, CLEAR, payload, retained=False)
    assert info.value.reason == "bad_type"


def test_numeric_rule_accepts_int_and_float() -> None:
    co = DeviceProfile("co", "co level", Z, alarms=(AlarmRule("co_level", 2, Kind.GAS),))
    _, events = run(co, [msg(co_level=1), msg(co_level=2.0)])
    assert events == [[], [Alarm(DEV, Kind.GAS, seq=None, source="zigbee2mqtt")]]
    with pytest.raises(Z2mError, match="co_level"):
        interpret(DEV, co, CLEAR, msg(co_level="2"), retained=False)


# --- real-looking captured payloads -------------------------------------------------------------

HEIMAN_SMOKE_QUIET = (
    b'{"battery":100,"battery_low":false,"linkquality":120,"smoke":false,"supervision":false,'
    b'"tamper":false,"test":false,"voltage":3000}'
)
HEIMAN_SMOKE_FIRE = (
    b'{"battery":100,"battery_low":false,"linkquality":116,"smoke":true,"supervision":false,'
    b'"tamper":false,"test":false,"voltage":3000}'
)
AQARA_LEAK_DRY = (
    b'{"battery":100,"device_temperature":27,"linkquality":87,"power_outage_count":3,"voltage":3025,"water_leak":false}'
)
AQARA_LEAK_WET = (
    b'{"battery":100,"device_temperature":27,"linkquality":90,"power_outage_count":3,"voltage":3025,"water_leak":true}'
)
AQARA_DOOR_CLOSED = (
    b'{"battery":91,"contact":true,"device_temperature":24,"linkquality":102,"power_outage_count":6,"voltage":2985}'
)
AQARA_DOOR_OPEN = (
    b'{"battery":91,"contact":false,"device_temperature":24,"linkquality":98,"power_outage_count":6,"voltage":2985}'
)
TUYA_SOS_PRESS = b'{"action":"emergency","battery":100,"battery_low":false,"linkquality":156,"tamper":false}'
TUYA_SOS_BATTERY = b'{"battery":100,"battery_low":false,"linkquality":149,"tamper":false}'


def test_captured_heiman_smoke() -> None:
    state, events = interpret(DEV, SMOKE, None, HEIMAN_SMOKE_QUIET, retained=True)
    assert events == []
    state, events = interpret(DEV, SMOKE, state, HEIMAN_SMOKE_FIRE, retained=False)
    assert events == [SMOKE_ALARM, Heartbeat(DEV, 100)]
    state, events = interpret(DEV, SMOKE, state, HEIMAN_SMOKE_QUIET, retained=False)
    assert events == [Restore(DEV, "smoke cleared"), Heartbeat(DEV, 100)]


def test_captured_aqara_water_leak() -> None:
    _, events = run(WATER, [AQARA_LEAK_DRY, AQARA_LEAK_WET, AQARA_LEAK_WET, AQARA_LEAK_DRY])
    assert events == [
        [],
        [Alarm(DEV, Kind.WATER, seq=None, source="zigbee2mqtt")],
        [],
        [Restore(DEV, "water_leak cleared")],
    ]


def test_captured_aqara_door() -> None:
    state, events = run(DOOR, [AQARA_DOOR_CLOSED, AQARA_DOOR_OPEN])
    assert events == [[], [Alarm(DEV, Kind.INTRUSION, seq=None, source="zigbee2mqtt")]]
    assert state == DeviceState(frozenset({"contact"}), 91, False, False)


def test_captured_tuya_sos() -> None:
    _, events = run(SOS, [TUYA_SOS_BATTERY, TUYA_SOS_PRESS, TUYA_SOS_BATTERY])
    assert events == [[], [Alarm(DEV, Kind.PANIC, seq=None, source="zigbee2mqtt")], []]


# --- commands -----------------------------------------------------------------------------------


def test_render_siren_ring_and_stop() -> None:
    assert SIREN.ring is not None
    assert SIREN.stop is not None
    topic, payload = render(SIREN.ring, base="zigbee2mqtt", name="siren_1", incident=42, kind="fire")
    assert topic == "zigbee2mqtt/siren_1/set"
    assert payload == '{"warning":{"mode":"emergency","level":"very_high","strobe":true,"duration":600}}'
    topic, payload = render(SIREN.stop, base="zigbee2mqtt", name="siren_1", incident=42, kind="fire")
    assert topic == "zigbee2mqtt/siren_1/set"
    assert payload == '{"warning":{"mode":"stop"}}'
    assert topic == Z2mTopics().set_topic("siren_1")


def test_render_substitutes_placeholders_safely() -> None:
    command = Command(
        "{base}/{name}/set",
        '{"label": "{name} #{incident}", "incident": {incident}, "kind": "{kind}", "via": "{base}"}',
    )
    topic, payload = render(command, base="village/z2m", name='王家 "东" \\ 警笛', incident=7, kind="smoke")
    assert topic == 'village/z2m/王家 "东" \\ 警笛/set'
    assert json.loads(payload) == {
        "label": '王家 "东" \\ 警笛 #7',
        "incident": 7,
        "kind": "smoke",
        "via": "village/z2m",
    }
    assert "王家" in payload  # kept readable, not \\u-escaped


@pytest.mark.parametrize(
    ("command", "kwargs"),
    [
        (Command("{base}/{name}/set", '{"x":1}'), {"kind": 'fire","x":"'}),
        (Command("{base}/{name}/set", '{"x":1}'), {"kind": "Fire"}),
        (Command("{base}/{name}/set", '{"x":1}'), {"kind": ""}),
        (Command("{base}/{name}/set", '{"x":1}'), {"incident": -1}),
        (Command("{base}/{name}/set", '{"x":1}'), {"incident": True}),
        (Command("{base}/{name}/set", '{"x":1}'), {"name": "a/b"}),
        (Command("{base}/{name}/set", '{"x":1}'), {"name": "+"}),
        (Command("{base}/{name}/set", '{"x":1}'), {"name": ""}),
        (Command("{base}/{name}/set", '{"x":1}'), {"name": "bridge"}),
        (Command("{base}/{name}/set", '{"x":1}'), {"base": "a/#"}),
        (Command("{base}/{name}/set", '{"x":1}'), {"base": ""}),
        (Command("{base}/{name}/set", '{"id":"{incident_id}"}'), {}),  # a typo must not reach a siren
        (Command("{base}/{nme}/set", '{"x":1}'), {}),
        (Command("{base}/{name}/#", '{"x":1}'), {}),
        (Command("{base}//{name}/set", '{"x":1}'), {}),
        (Command("{base}/{name}/set", '{"warning":{"mode":"stop"}'), {}),
        (Command("{base}/{name}/set", '{"kind": {kind}}'), {}),  # a bare token is not JSON
        (Command("{base}/{name}/set", '{"n": {name}}'), {}),
        (Command("{base}/{name}/set", '"ON"'), {}),
        (Command("{base}/{name}/set", ""), {}),
    ],
)
def test_render_rejects(command: Command, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"base": "zigbee2mqtt", "name": "siren_1", "incident": 1, "kind": "fire", **kwargs}
    with pytest.raises(Z2mError) as info:
        render(command, **args)  # type: ignore[arg-type]
    assert info.value.reason == "bad_command"


def test_reasons_are_labels() -> None:
    assert {"too_large", "not_json", "not_object", "bad_type", "bad_topic", "bad_command"} <= REASONS


def test_activity_a_profile_declares_is_a_sign_of_life_when_live_only() -> None:
    # 平安键 by activity: a door opened means someone is at home.
    door = replace(DOOR, activity=(ActivityRule("contact", False),))
    _, events = run(door, [b'{"contact":true}', b'{"contact":false}', b'{"battery":80}'])
    assert [[e for e in batch if isinstance(e, CheckIn)] for batch in events] == [[], [CheckIn(DEV)], []]
    _, retained = interpret(DEV, door, None, b'{"contact":false}', retained=True)
    assert not [e for e in retained if isinstance(e, CheckIn)], "a retained state is no sign of anyone now"
    _, plain = run(DOOR, [b'{"contact":false}'])
    assert not [e for e in plain[0] if isinstance(e, CheckIn)], "only profiles that say so"
