"""The validated roster's cache (alertd.roster_cache): a hit skips validation, every input that could change the
outcome misses, and a damaged cache or an unwritable folder only costs a full validation. Real files, no mocks."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from alertd import roster_cache
from alertd.cli import EXIT_OK, main
from alertd.config import load_config, load_roster, roster_cache_path
from alertd.core.model import Roster
from alertd.errors import ConfigError
from alertd.profiles import load_profiles
from tests.fakes.twilio_server import TwilioServer
from tests.harness import DaemonProcess, forget_session, write_village

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "alertd.toml"

ROSTER = """\
duty = ["p-duty"]
people = [
    { id = "p-lead", name = "陈国庆", phone = "138 0001 0501" },
    { id = "p-wang", name = "王桂芬", phone = "13800010201", language = "en" },
    { id = "p-duty", name = "值班室", phone = "+8613800090001" },
]

[[groups]]
id = "g1"
name = "一组"
village = "河口村"
leader = "p-lead"
grid_worker = "p-duty"

[[households]]
id = "h1"
group = "g1"
label = "1号户 陈家"
people = ["p-lead"]
devices = [{ id = "t1" }]

[[households]]
id = "h2"
group = "g1"
label = "2号户 王家"
people = ["p-wang"]
devices = [{ id = "t2" }, { id = "siren2", profile = "my-siren" }]
"""

SIREN = """\
id = "my-siren"
name = "A siren of our own"
transport = "zigbee2mqtt"

[ring]
topic = "{base}/{name}/set"
payload = '{"warning": {"mode": "emergency"}}'

[stop]
topic = "{base}/{name}/set"
payload = '{"warning": {"mode": "stop"}}'
"""


def write(tmp_path: Path, roster: str = ROSTER, siren: str = SIREN) -> Path:
    (tmp_path / "roster.toml").write_text(roster, encoding="utf-8")
    local = tmp_path / "local"
    local.mkdir(exist_ok=True)
    (local / "my-siren.toml").write_text(siren, encoding="utf-8")
    settings = tmp_path / "alertd.toml"
    settings.write_text('[daemon]\nprofiles = ["local"]\n[store]\npath = "state/alertd.db"\n', encoding="utf-8")
    (tmp_path / "state").mkdir(exist_ok=True)
    return settings


def cache_of(tmp_path: Path) -> Path:
    return tmp_path / "state" / "alertd.db.roster-cache"


def cached(settings: Path) -> Roster:
    return load_config(settings, {}, use_cache=True).roster


def full(settings: Path) -> Roster:
    return load_config(settings, {}).roster


def read_from_cache(caplog: pytest.LogCaptureFixture) -> bool:
    return "read from the cache" in caplog.text


# ---------------------------------------------------------------------------------------------- the encoding


@pytest.mark.parametrize("source", ["example", "village"])
def test_a_roster_reads_back_equal_to_itself(tmp_path: Path, source: str) -> None:
    path = EXAMPLE if source == "example" else write_village(tmp_path, groups=3, zigbee=True).settings_path
    roster = load_config(path, {}).roster
    again = roster_cache.decode(roster_cache.encode(roster))
    assert again == roster
    for name in ("people", "households", "groups", "devices", "patrols", "policies", "kind_policy"):
        assert list(getattr(again, name).items()) == list(getattr(roster, name).items())  # and in the same order
    assert again.duty == roster.duty
    # The lookups built from it answer the same.
    for person in roster.people.values():
        assert again.person_by_phone(person.phone) == person
    for device in roster.devices.values():
        if device.account is not None:
            assert again.device_for_account(device.account, device.zone) == device
    for group_id in roster.groups:
        assert again.patrol_teams_of(group_id) == roster.patrol_teams_of(group_id)


def test_an_id_is_one_string_however_often_it_is_mentioned(tmp_path: Path) -> None:
    roster = roster_cache.decode(roster_cache.encode(full(write(tmp_path))))
    household = roster.households["h2"]
    assert household.group_id is roster.groups["g1"].id
    assert household.people[0] is roster.people["p-wang"].id
    assert household.devices[0] is roster.devices["t2"].id
    assert roster.devices["t2"].household_id is household.id
    assert roster.devices["t1"].profile is roster.devices["t2"].profile


# ---------------------------------------------------------------------------------------------- hit and miss


def test_the_first_start_validates_and_writes_the_cache_the_next_reads_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = write(tmp_path)
    expected = full(settings)
    assert not cache_of(tmp_path).exists()
    with caplog.at_level(logging.INFO):
        assert cached(settings) == expected
    assert "none yet; validating the roster in full" in caplog.text
    assert not read_from_cache(caplog)
    assert cache_of(tmp_path).exists()
    assert roster_cache_path(load_config(settings, {}).settings) == cache_of(tmp_path)
    # Phone numbers are in it: only the daemon's user may read it.
    assert stat.S_IMODE(cache_of(tmp_path).stat().st_mode) & 0o077 == 0

    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert cached(settings) == expected
    assert read_from_cache(caplog)
    assert "validating" not in caplog.text


def test_a_changed_roster_file_is_validated_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = write(tmp_path)
    cached(settings)
    roster_path = tmp_path / "roster.toml"
    roster_path.write_text(ROSTER.replace("2号户 王家", "2号户 王家新"), encoding="utf-8")
    with caplog.at_level(logging.INFO):
        assert cached(settings).households["h2"].label == "2号户 王家新"
    assert "out of date" in caplog.text
    assert not read_from_cache(caplog)

    # Even a change that means nothing (a comment) is a new file: validated, never assumed.
    roster_path.write_text(ROSTER.replace("2号户 王家", "2号户 王家新") + "# checked\n", encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        cached(settings)
    assert "out of date" in caplog.text


def test_a_roster_broken_since_it_was_cached_is_refused_not_served_from_the_cache(tmp_path: Path) -> None:
    settings = write(tmp_path)
    cached(settings)
    (tmp_path / "roster.toml").write_text(ROSTER.replace('group = "g1"', 'group = "g9"', 1), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        cached(settings)
    assert any('group "g9": unknown group' in p for p in info.value.problems)
    with pytest.raises(ConfigError) as again:
        full(settings)
    assert info.value.problems == again.value.problems


def test_a_changed_profile_is_checked_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = write(tmp_path)
    cached(settings)
    # The siren can no longer ring, and the roster's device still says it can: a problem now, whatever was cached.
    silent = SIREN.split("[ring]", maxsplit=1)[0]
    (tmp_path / "local" / "my-siren.toml").write_text(silent, encoding="utf-8")
    with caplog.at_level(logging.INFO), pytest.raises(ConfigError) as info:
        cached(settings)
    assert 'device "siren2": ringable, but profile "my-siren" cannot be rung' in "\n".join(info.value.problems)
    assert "out of date" in caplog.text

    # A change to a profile the roster passes with is a miss as well, then a hit again.
    (tmp_path / "local" / "my-siren.toml").write_text(SIREN.replace("A siren of our own", "Our siren"), "utf-8")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        cached(settings)
    assert "out of date" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        cached(settings)
    assert read_from_cache(caplog)


def test_another_profile_folder_is_a_miss(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = write(tmp_path)
    cached(settings)
    more = tmp_path / "more"
    more.mkdir()
    (more / "our-door.toml").write_text(
        'id = "our-door"\nname = "Our door"\ntransport = "zigbee2mqtt"\n'
        '[[alarms]]\nfield = "contact"\nvalue = false\nkind = "intrusion"\n',
        encoding="utf-8",
    )
    settings.write_text(settings.read_text().replace('["local"]', '["local", "more"]'), encoding="utf-8")
    with caplog.at_level(logging.INFO):
        cached(settings)
    assert "out of date" in caplog.text


def test_the_key_covers_the_file_the_profiles_and_the_code(tmp_path: Path) -> None:
    profiles = load_profiles()
    code = roster_cache.code_fingerprint()
    assert code is not None  # a checkout and an installed package both have the sources
    key = roster_cache.cache_key(b"roster", profiles, code)
    assert key == roster_cache.cache_key(b"roster", dict(profiles), code)
    assert key != roster_cache.cache_key(b"roster ", profiles, code)
    assert key != roster_cache.cache_key(b"roster", {k: v for k, v in profiles.items() if k != "zigbee-door"}, code)
    assert key != roster_cache.cache_key(b"roster", profiles, code + "0")
    assert roster_cache.cache_key(b"roster", profiles, None) is None
    # What the fingerprint reads: the validating modules and the libraries' releases.
    assert {"config.py", "phones.py", "profiles.py", "core/model.py"} <= set(roster_cache._SOURCES)
    assert {"phonenumbers", "pydantic", "pydantic_core", "tomli"} <= set(roster_cache._LIBRARIES)
    assert all((ROOT / "alertd" / name).is_file() for name in roster_cache._SOURCES)
    assert "phonenumbers-" in roster_cache._installed_version("phonenumbers")


def test_a_cache_of_another_format_is_not_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = write(tmp_path)
    cached(settings)
    head, body = cache_of(tmp_path).read_bytes().split(b"\n", 1)
    header = json.loads(head) | {"format": roster_cache.FORMAT + 1}
    cache_of(tmp_path).write_bytes(json.dumps(header).encode() + b"\n" + body)
    with caplog.at_level(logging.INFO):
        assert cached(settings) == full(settings)
    assert not read_from_cache(caplog)
    assert "out of date (written by another version of alertd)" in caplog.text


# ---------------------------------------------------------------------------------------------- damage


def _damage(raw: bytes, how: str) -> bytes:
    head, body = raw.split(b"\n", 1)
    header = json.loads(head)

    def resealed(new_body: bytes) -> bytes:  # a writer's bug rather than a torn file: the checksum fits
        sealed = header | {"sha256": hashlib.sha256(new_body).hexdigest()}
        return json.dumps(sealed).encode() + b"\n" + new_body

    data = json.loads(body)
    match how:
        case "empty":
            return b""
        case "truncated":
            return raw[: len(raw) // 2]
        case "garbage":
            return os.urandom(4096)
        case "flipped byte":
            return head + b"\n" + body.replace("王桂芬".encode(), "王桂芳".encode())
        case "not JSON":
            return resealed(b"{not json")
        case "a column too short":
            data["people"]["phone"].pop()
            return resealed(json.dumps(data).encode())
        case "a number for a name":
            data["households"]["label"][0] = 5
            return resealed(json.dumps(data).encode())
        case "an index that points nowhere":
            data["households"]["group"][0] = 99
            return resealed(json.dumps(data).encode())
        case "a string for an index":
            data["groups"]["households"][0] = "h1"
            return resealed(json.dumps(data).encode())
        case "an unknown role":
            data["policies"][0][1][0][2] = ["mayor"]
            return resealed(json.dumps(data).encode())
        case "a list for the roster":
            return resealed(b"[]")
        case "deep nesting":
            return resealed(b"[" * 100_000)
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "empty",
        "truncated",
        "garbage",
        "flipped byte",
        "not JSON",
        "a column too short",
        "a number for a name",
        "an index that points nowhere",
        "a string for an index",
        "an unknown role",
        "a list for the roster",
        "deep nesting",
    ],
)
def test_a_damaged_cache_is_validated_in_full_and_rewritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    settings = write(tmp_path)
    expected = cached(settings)
    cache_of(tmp_path).write_bytes(_damage(cache_of(tmp_path).read_bytes(), how))
    with caplog.at_level(logging.INFO):
        assert cached(settings) == expected
    assert not read_from_cache(caplog)
    assert "validating the roster in full" in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records if r.name == "alertd.roster_cache")
    # Rewritten whole: the next start reads it.
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert cached(settings) == expected
    assert read_from_cache(caplog)


def test_a_folder_where_the_cache_should_be_costs_only_the_validation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = write(tmp_path)
    cache_of(tmp_path).mkdir()  # unreadable as a file, and cannot be replaced by one
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert cached(settings) == full(settings)
        assert "cannot read it" in caplog.text
        assert "not written" in caplog.text
    assert cache_of(tmp_path).is_dir()


def test_a_folder_that_cannot_be_written_costs_only_the_validation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = write(tmp_path)
    # The store's folder is a plain file: nothing can be created in it, not even by root.
    (tmp_path / "blocked").write_text("", encoding="utf-8")
    settings.write_text(settings.read_text().replace("state/alertd.db", "blocked/alertd.db"), encoding="utf-8")
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            assert cached(settings) == full(settings)
        assert "not written" in caplog.text
        assert any(r.levelno == logging.WARNING and "not written" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alertd.toml", "blocked", "local", "roster.toml", "state"]


# ---------------------------------------------------------------------------------------------- who uses it


def test_check_always_validates_in_full(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = write(tmp_path)
    config = load_config(settings, {})
    # A cache that claims another roster (one household) for this very file: `run` would believe it...
    smaller = ROSTER.split('[[households]]\nid = "h2"', maxsplit=1)[0]
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "roster.toml").write_text(smaller, encoding="utf-8")
    small = load_roster(tmp_path / "small" / "roster.toml")
    key = roster_cache.cache_key(
        (tmp_path / "roster.toml").read_bytes(), config.profiles, roster_cache.code_fingerprint()
    )
    assert key is not None
    roster_cache.write(cache_of(tmp_path), key, roster_cache.encode(small))
    assert len(cached(settings).households) == 1
    # ...`check` does not read it.
    assert main(["check", "-c", str(settings)]) == EXIT_OK
    assert "2 households" in capsys.readouterr().out


def test_a_reload_sees_a_changed_file(tmp_path: Path) -> None:
    settings = write(tmp_path)
    config = load_config(settings, {}, use_cache=True)
    cache = roster_cache_path(config.settings)
    assert load_roster(config.roster_path, config.profiles, cache=cache) == config.roster
    config.roster_path.write_text(ROSTER.replace("2号户 王家", "2号户 新王家"), encoding="utf-8")
    assert load_roster(config.roster_path, config.profiles, cache=cache).households["h2"].label == "2号户 新王家"
    config.roster_path.write_text(ROSTER.replace('group = "g1"', 'group = "g9"', 1), encoding="utf-8")
    with pytest.raises(ConfigError):
        load_roster(config.roster_path, config.profiles, cache=cache)


async def test_alertd_run_reads_the_cache_on_a_restart(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, groups=2, twilio=twilio)
    log_path = tmp_path / "daemon.log"
    daemon = DaemonProcess(village, log_path)
    try:
        await daemon.start()
        assert await daemon.terminate() == 0
        first = log_path.read_text(encoding="utf-8")
        assert "none yet; validating the roster in full" in first
        await daemon.start()
        assert await daemon.terminate() == 0
        second = log_path.read_text(encoding="utf-8")[len(first) :]
        assert "read from the cache" in second
    finally:
        await daemon.kill()
        await forget_session(village)
