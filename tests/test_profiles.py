"""Device profiles: the shipped files, every problem reported at once, local folders, roster cross-checks, packaging."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from alertd.config import load_roster
from alertd.core.model import Device, Kind
from alertd.core.profile import AlarmRule, Command, DeviceProfile, Transport
from alertd.errors import ConfigError
from alertd.profiles import check_roster_profiles, load_profiles
from alertd.protocols import zigbee2mqtt
from alertd.store import MIGRATIONS, read_migrations

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.stem for p in (ROOT / "devices").glob("*.toml"))

SIREN_RING = '{"warning": {"mode": "emergency", "level": "very_high", "strobe": true, "duration": 600}}'


def problems_of(*folders: Path, shipped: bool = False) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_profiles(folders, shipped=shipped)
    return info.value.problems


# ---------------------------------------------------------------------------------------------- shipped


def test_shipped_profiles_load_and_are_the_files_of_devices() -> None:
    profiles = load_profiles()
    assert sorted(profiles) == SHIPPED
    assert {
        "alertd-terminal",
        "contact-id",
        "zigbee-sos-button",
        "zigbee-smoke",
        "zigbee-gas",
        "zigbee-water",
        "zigbee-door",
        "zigbee-siren",
    } <= set(profiles)
    assert all(isinstance(p, DeviceProfile) and p.name for p in profiles.values())


@pytest.mark.parametrize(
    ("profile_id", "rules"),
    [
        ("alertd-terminal", ()),
        ("contact-id", ()),
        (
            "zigbee-sos-button",
            (AlarmRule("action", "emergency", Kind.PANIC, momentary=True), AlarmRule("sos", True, Kind.PANIC)),
        ),
        ("zigbee-smoke", (AlarmRule("smoke", True, Kind.SMOKE),)),
        ("zigbee-gas", (AlarmRule("gas", True, Kind.GAS),)),
        ("zigbee-water", (AlarmRule("water_leak", True, Kind.WATER),)),
        ("zigbee-door", (AlarmRule("contact", False, Kind.INTRUSION),)),  # contact false: open
        ("zigbee-siren", ()),
    ],
)
def test_shipped_alarm_rules(profile_id: str, rules: tuple[AlarmRule, ...]) -> None:
    assert load_profiles()[profile_id].alarms == rules


def test_shipped_transports_checkins_and_ringing() -> None:
    p = load_profiles()
    terminal = p["alertd-terminal"]
    assert (terminal.transport, terminal.checkin_s, terminal.battery_field) == (Transport.ALERTD, 300, "battery")
    assert terminal.ringable
    assert terminal.ring is None  # rung through our own protocol
    panel = p["contact-id"]
    assert (panel.transport, panel.checkin_s, panel.ringable) == (Transport.CONTACT_ID, 86400, False)
    smoke = p["zigbee-smoke"]
    assert smoke.transport == Transport.ZIGBEE2MQTT
    assert (smoke.battery_field, smoke.battery_low, smoke.battery_low_field, smoke.tamper_field) == (
        "battery",
        20,
        "battery_low",
        "tamper",
    )
    assert not smoke.ringable
    siren = p["zigbee-siren"]
    assert siren.ringable
    assert siren.ring == Command("{base}/{name}/set", SIREN_RING)
    assert siren.stop == Command("{base}/{name}/set", '{"warning": {"mode": "stop"}}')
    for zigbee in ("zigbee-smoke", "zigbee-water", "zigbee-door", "zigbee-siren"):
        assert p[zigbee].checkin_s == 90000  # Zigbee2MQTT's battery reporting maximum is 62000 s


def test_shipped_siren_renders_to_a_zigbee2mqtt_command() -> None:
    siren = load_profiles()["zigbee-siren"]
    assert siren.ring is not None
    topic, payload = zigbee2mqtt.render(siren.ring, base="zigbee2mqtt", name="siren-h0101", incident=7, kind="fire")
    assert topic == "zigbee2mqtt/siren-h0101/set"
    assert '"mode":"emergency"' in payload


# ---------------------------------------------------------------------------------------------- problems


BAD_JSON = '{"warning": {"mode": "emergency"}'  # one brace short
BAD_PLACEHOLDER = '{"warning": {"mode": "{mode}"}}'
BROKEN = f"""\
id = "zigbee-smoke"
name = "a smoke detector with every mistake"
transport = "zigbe2mqtt"
checkin_s = -5
battery_low = "20"
colour = "red"

[[alarms]]
field = "smoke"
value = true
kind = "smok"

[[alarms]]
value = [1]
kind = "fire"

[ring]
topic = "{{base}}/{{nmae}}/set"
payload = '{BAD_JSON}'

[stop]
topic = "{{base}}/{{name}}/set"
payload = '{BAD_PLACEHOLDER}'
"""


def test_every_problem_is_reported_with_file_entry_and_value(tmp_path: Path) -> None:
    (tmp_path / "smoke.toml").write_text(BROKEN, encoding="utf-8")
    f = str(tmp_path / "smoke.toml")
    assert problems_of(tmp_path) == [
        f'{f}: id "zigbee-smoke": file name and id differ (name the file zigbee-smoke.toml)',
        f'{f}: transport "zigbe2mqtt": unknown transport (one of alertd, zigbee2mqtt, contact-id)',
        f"{f}: checkin_s -5: input should be greater than or equal to 0",
        f'{f}: battery_low "20": input should be a valid integer',
        f'{f}: alarms[1].kind "smok": unknown kind (one of panic, fire, smoke, gas, water, intrusion, medical)',
        f"{f}: alarms[2].field: required key missing",
        f"{f}: alarms[2].value [1]: must be a boolean, a number or a string",
        f'{f}: ring.topic "{{base}}/{{nmae}}/set": unknown placeholder {{nmae}} '
        "(allowed: {base}, {name}, {incident}, {kind})",
        f"{f}: ring.payload {json.dumps(BAD_JSON)}: not valid JSON "
        "(Expecting ',' delimiter at column 34; placeholders go inside strings)",
        f"{f}: stop.payload {json.dumps(BAD_PLACEHOLDER)}: unknown placeholder {{mode}} "
        "(allowed: {base}, {name}, {incident}, {kind})",
        f"{f}: colour: unknown key",
    ]


def test_problems_of_keys_that_only_clash_together(tmp_path: Path) -> None:
    (tmp_path / "siren-a.toml").write_text(
        'id = "siren-a"\nname = "ring, no stop"\ntransport = "zigbee2mqtt"\nbattery_low = 10\n'
        '[ring]\ntopic = "{base}/{name}/set"\npayload = \'{"warning": {"mode": "fire"}}\'\n'
        '[[alarms]]\nfield = "smoke"\nvalue = true\nkind = "smoke"\n'
        '[[alarms]]\nfield = "smoke"\nvalue = true\nkind = "fire"\n'
        '[[alarms]]\nfield = "smoke"\nvalue = 1\nkind = "fire"\n',  # 1 is not true: no clash
        encoding="utf-8",
    )
    (tmp_path / "panel.toml").write_text(
        'id = "panel"\nname = "a panel"\ntransport = "contact-id"\n'
        '[[alarms]]\nfield = "code"\nvalue = 130\nkind = "intrusion"\n'
        '[ring]\ntopic = "x/+/set"\npayload = "[1]"\n'
        '[stop]\ntopic = "/x/{name}"\npayload = "{}"\n',
        encoding="utf-8",
    )
    p, s = str(tmp_path / "panel.toml"), str(tmp_path / "siren-a.toml")
    assert problems_of(tmp_path) == [
        f'{p}: ring.topic "x/+/set": wildcards (+, #) cannot be published to',
        f'{p}: ring.payload "[1]": must be a JSON object',
        f'{p}: stop.topic "/x/{{name}}": empty topic level (a leading, trailing or double /)',
        f"{s}: [ring] without [stop]: a siren that cannot be silenced keeps sounding after the incident",
        f"{s}: battery_low 10: needs battery_field (the percent it applies to)",
        f"{s}: alarms[2]: smoke = true already in alarms[1]",
    ]
    (tmp_path / "panel.toml").write_text(
        (tmp_path / "panel.toml")
        .read_text()
        .replace("x/+/set", "x/{name}/set")
        .replace("[1]", "{}")
        .replace("/x/{name}", "x/{name}"),
        encoding="utf-8",
    )
    assert problems_of(tmp_path)[:2] == [
        f'{p}: [[alarms]]: transport "contact-id" carries the kind in the Contact ID event code',
        f'{p}: [ring]/[stop]: transport "contact-id" is one-way',
    ]


def test_unreadable_files_and_missing_folders(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('id = "bad"\nname = \n', encoding="utf-8")
    (tmp_path / "latin.toml").write_bytes(b'id = "latin"\nname = "caf\xe9"\n')
    (tmp_path / "notes.txt").write_text("not a profile", encoding="utf-8")  # ignored: not *.toml
    found = problems_of(tmp_path, tmp_path / "nowhere")
    assert found[0].startswith(f"{tmp_path / 'bad.toml'}: TOML syntax error")
    assert found[1:] == [
        f"{tmp_path / 'latin.toml'}: not UTF-8 text",
        f"{tmp_path / 'nowhere'}: profile folder not found",
    ]


# ---------------------------------------------------------------------------------------------- local folders


def test_a_new_device_is_supported_by_adding_only_a_profile_file(tmp_path: Path) -> None:
    (tmp_path / "zigbee-co.toml").write_text(
        """\
# Heiman HS1CA-E: carbon monoxide
id = "zigbee-co"
name = "Zigbee CO detector (Heiman HS1CA-E)"
transport = "zigbee2mqtt"
checkin_s = 90000
battery_field = "battery"
battery_low = 15
battery_low_field = "battery_low"

[[alarms]]
field = "carbon_monoxide"
value = true
kind = "gas"

[[alarms]]
field = "action"
value = "test"
kind = "panic"
momentary = true
""",
        encoding="utf-8",
    )
    profiles = load_profiles([tmp_path])
    assert set(SHIPPED) < set(profiles)
    assert profiles["zigbee-co"] == DeviceProfile(
        id="zigbee-co",
        name="Zigbee CO detector (Heiman HS1CA-E)",
        transport=Transport.ZIGBEE2MQTT,
        alarms=(AlarmRule("carbon_monoxide", True, Kind.GAS), AlarmRule("action", "test", Kind.PANIC, momentary=True)),
        checkin_s=90000,
        battery_field="battery",
        battery_low=15,
        battery_low_field="battery_low",
    )


def test_the_same_id_twice_is_an_error_naming_both_files(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    shutil.copy(ROOT / "devices" / "zigbee-smoke.toml", local)
    found = problems_of(local, shipped=True)
    assert len(found) == 1
    assert found[0].startswith(f'{local / "zigbee-smoke.toml"}: id "zigbee-smoke": duplicate profile id, also in ')
    assert found[0].rpartition("also in ")[2].endswith("devices/zigbee-smoke.toml")  # the shipped one

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(ROOT / "devices" / "zigbee-smoke.toml", other)
    assert problems_of(local, other) == [
        f'{other / "zigbee-smoke.toml"}: id "zigbee-smoke": duplicate profile id, also in {local / "zigbee-smoke.toml"}'
    ]


# ---------------------------------------------------------------------------------------------- roster


def test_roster_profiles_are_checked() -> None:
    roster = load_roster(ROOT / "config" / "roster.toml")
    profiles = load_profiles()
    assert {d.profile for d in roster.devices.values()} == {"alertd-terminal", "zigbee-smoke"}
    assert check_roster_profiles(roster, profiles) == []

    typo = dataclasses.replace(
        roster, devices={**roster.devices, "t-h0101": Device("t-h0101", "h0101", profile="alertd-termnal")}
    )
    known = ", ".join(sorted(profiles))
    assert check_roster_profiles(typo, profiles, label="config/roster.toml") == [
        f'config/roster.toml: device "t-h0101": profile "alertd-termnal": unknown profile (known: {known})'
    ]


def test_roster_devices_must_fit_their_profile() -> None:
    roster = load_roster(ROOT / "config" / "roster.toml")
    devices = {
        "s-h0101": Device("s-h0101", "h0101", profile="zigbee-smoke"),  # ringable by default
        "p-h0102": Device("p-h0102", "h0102", profile="contact-id", ringable=False),  # no account
        "t-h0103": Device("t-h0103", "h0103", account="1234"),
        "p-h0104": Device("p-h0104", "h0104", profile="contact-id", ringable=False, account="1234", zone=3),
    }
    found = check_roster_profiles(dataclasses.replace(roster, devices=devices), load_profiles())
    assert found == [
        'roster.toml: device "s-h0101": ringable, but profile "zigbee-smoke" cannot be rung (set ringable = false)',
        'roster.toml: device "p-h0102": profile "contact-id" needs the panel\'s Contact ID account',
        'roster.toml: device "t-h0103": account/zone only apply to Contact ID devices, '
        'not to profile "alertd-terminal"',
    ]


# ---------------------------------------------------------------------------------------------- packaging


def test_pyproject_lists_every_package() -> None:
    """packages is an explicit list (find cannot see the mapped folders): a new subpackage must be added."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    mapped = {"alertd.devices": "devices", "alertd.examples": "config"}
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "alertd").rglob("__init__.py")}
    assert set(tool["packages"]) == on_disk | set(mapped)
    assert tool["package-dir"] == mapped
    assert set(tool["package-data"]["alertd.devices"]) >= {"*.toml", "*.md"}
    assert set(tool["package-data"]["alertd.examples"]) >= {"*.toml"}
    assert set(tool["package-data"]["alertd.schema"]) >= {"*.sql"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """A wheel built from a copy of the repository's sources (so the build leaves nothing in the work tree)."""
    src = tmp_path_factory.mktemp("src")
    out = tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src)
    for folder in ("alertd", "devices", "config"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (built,) = out.glob("alertd-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_contains_the_profiles(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert "alertd/devices/__init__.py" in names
    assert "alertd/devices/README.md" in names
    assert {f"alertd/devices/{stem}.toml" for stem in SHIPPED} <= names
    assert "alertd/devices/zigbee-smoke.toml" in names
    assert "alertd/py.typed" in names


def test_the_wheel_contains_the_example_village_and_the_starter(wheel: zipfile.ZipFile) -> None:
    """`alertd demo` and `alertd init` read these from the package; an install without them fails."""
    names = set(wheel.namelist())
    assert {f"alertd/examples/{name}" for name in ("alertd.toml", "roster.toml", "roster.starter.toml")} <= names


def test_the_wheel_contains_the_schema_files(wheel: zipfile.ZipFile) -> None:
    """The store reads its schema from the package: a wheel without a file cannot create or migrate a store."""
    shipped = sorted((ROOT / "alertd" / "schema").glob("*.sql"))
    assert len(shipped) == len(MIGRATIONS)
    for path in shipped:
        assert wheel.read(f"alertd/schema/{path.name}") == path.read_bytes()
    # Read the way an install reads them: the wheel's folder gives the same migrations, in the same order.
    assert read_migrations(zipfile.Path(wheel, "alertd/schema/")) == tuple(MIGRATIONS)
