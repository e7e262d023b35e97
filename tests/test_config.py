"""Settings and roster loading: the shipped example, env overrides, and reporting every problem at once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from alertd.config import Config, HttpSettings, Settings, TwilioSettings, load_config, load_roster
from alertd.core.model import DEFAULT_POLICY, Kind, Prefers, Role
from alertd.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "alertd.toml"

# A small valid roster; tests break one thing at a time by editing the text.
ROSTER = """\
duty = ["p-duty"]

[[people]]
id = "p-lead"
name = "陈国庆"
phone = "138 0001 0501"

[[people]]
id = "p-dep"
name = "黄凤英"
phone = "+86 138-0001-0801"

[[people]]
id = "p-wang"
name = "王桂芬"
phone = "13800010201"
language = "en"

[[people]]
id = "p-duty"
name = "值班室"
phone = "+8613800090001"

[[people]]
id = "p-pat"
name = "护边员"
phone = "+8613800090021"

[[groups]]
id = "g1"
name = "一组"
village = "河口村"
leader = "p-lead"
deputy = "p-dep"
grid_worker = "p-duty"

[[households]]
id = "h0105"
group = "g1"
label = "5号户 陈家"
people = ["p-lead"]
devices = [{ id = "t-h0105" }]

[[households]]
id = "h0102"
group = "g1"
label = "2号户 王家"
address = "河口村一组2号"
people = ["p-wang", "p-dep"]
devices = [{ id = "t-h0102" }, { id = "s-h0102", profile = "zigbee-smoke", ringable = false }]

[[patrols]]
id = "pt"
name = "巡逻队"
members = ["p-pat"]
groups = ["g1"]
"""


def write(tmp_path: Path, roster: str = ROSTER, settings: str = "") -> Path:
    (tmp_path / "roster.toml").write_text(roster, encoding="utf-8")
    path = tmp_path / "alertd.toml"
    path.write_text(settings, encoding="utf-8")
    return path


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ or {})
    return info.value.problems


def test_shipped_example_loads() -> None:
    config = load_config(EXAMPLE, environ={})
    roster = config.roster
    assert config.roster_path == EXAMPLE.parent / "roster.toml"
    assert [g.name for g in roster.groups.values()] == ["一组", "二组", "三组"]
    assert {g.village for g in roster.groups.values()} == {"河口村"}
    assert [len(g.households) for g in roster.groups.values()] == [10, 10, 10]
    assert roster.households["h0102"].label == "2号户 王家"
    for household in roster.households.values():
        assert f"t-{household.id}" in household.devices
        assert roster.devices[f"t-{household.id}"].ringable
    smoke = [d for d in roster.devices.values() if d.profile == "zigbee-smoke"]
    assert smoke
    assert not any(d.ringable for d in smoke)
    for group in roster.groups.values():
        assert roster.people_for(group.id, Role.LEADER)
        assert roster.people_for(group.id, Role.DEPUTY)
        assert len(roster.people_for(group.id, Role.PATROL)) == 2
        assert len(roster.people_for(group.id, Role.DUTY)) == 2
    assert all(p.phone.startswith("+86") for p in roster.people.values())
    assert roster.policy_for(Kind.FIRE).name == "fast"
    assert roster.policy_for(Kind.PANIC) == DEFAULT_POLICY
    # A caller's neighbours' terminals ring; smoke sensors and the caller's own terminal do not.
    ringed = roster.ring_targets("h0102")
    assert len(ringed) == 9
    assert all(d.profile == "alertd-terminal" for d in ringed)

    settings = config.settings
    assert settings.mqtt.url == "mqtt://127.0.0.1:1883"
    assert settings.store.path == Path("/var/lib/alertd/alertd.db")
    assert not settings.twilio.enabled
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 8080)
    assert str(settings.daemon.zone) == "Asia/Shanghai"


def test_small_roster_is_built_as_written(tmp_path: Path) -> None:
    config = load_config(write(tmp_path), {})
    roster = config.roster
    assert roster.groups["g1"].households == ("h0105", "h0102")  # file order
    assert roster.households["h0102"].devices == ("t-h0102", "s-h0102")
    assert roster.devices["s-h0102"].household_id == "h0102"
    assert roster.household_of_device("t-h0105") == roster.households["h0105"]
    assert roster.people["p-dep"].phone == "+8613800010801"
    assert roster.person_by_phone("+8613800010201") == roster.people["p-wang"]
    assert roster.people["p-wang"].language == "en"
    assert roster.policies == {"default": DEFAULT_POLICY}  # none defined: the built-in default
    assert roster.duty == ("p-duty",)
    # Defaults of a settings file with no sections at all; relative paths follow the settings file.
    assert config.settings.daemon.roster == tmp_path / "roster.toml"
    assert config.settings.incidents.join_window_s == 600
    assert config.settings.sms.max_attempts == 8
    assert load_roster(tmp_path / "roster.toml") == roster


def test_every_problem_is_reported_with_file_entry_and_value(tmp_path: Path) -> None:
    roster = (
        ROSTER.replace('phone = "13800010201"', 'phone = "12345"')
        .replace('phone = "+8613800090021"', 'phone = "138 0001 0501"')
        .replace('id = "h0102"\ngroup = "g1"', 'id = "h0102"\ngroup = "g9"')
        .replace('people = ["p-lead"]', 'people = ["p-lead", "p-ghost"]')
        .replace('{ id = "t-h0102" }', '{ id = "t-h0105" }')
        .replace('deputy = "p-dep"', 'deputy = "p-pat"')
        .replace('members = ["p-pat"]', 'members = ["p-pat"]\nleader = "p-lead"')
        + """
[[groups]]
id = "g2"
name = "二组"
village = "河口村"
leader = "p-lead"

[[households]]
id = "h0105"
group = "g1"
label = "重复"

[policies.slow]
steps = [{ after = 300, sms = ["duty"] }, { after = 60, sms = ["mayor"] }]

[kinds]
fire = "fast"
earthquake = "slow"
"""
    )
    settings = """\
[mqtt]
url = "http://broker:1883"
keepalive = "often"

[http]
listen = "8080"

[daemon]
time_zone = "Asia/Beijing"
"""
    found = problems_of(write(tmp_path, roster, settings))
    s = str(tmp_path / "alertd.toml")
    r = str(tmp_path / "roster.toml")
    expected = [
        f'{s}: mqtt.url "http://broker:1883": scheme must be mqtt:// or mqtts://',
        f'{s}: mqtt.keepalive "often": input should be a valid integer, unable to parse string as an integer',
        f'{s}: http.listen "8080": must be host:port, e.g. 127.0.0.1:8080',
        f'{s}: daemon.time_zone "Asia/Beijing": unknown time zone',
        f'{r}: people[3] (id "p-wang"): phone "12345": not a valid phone number',
        f'{r}: people[5] (id "p-pat"): phone +86138****0501: same number as people[1] (id "p-lead")',
        f'{r}: households[1] (id "h0105"): person "p-ghost": unknown person',
        f'{r}: households[2] (id "h0102"): group "g9": unknown group',
        f'{r}: households[2] (id "h0102"): devices[1] (id "t-h0105"): '
        f'duplicate device id, first used by households[1] (id "h0105"): devices[1]',
        f'{r}: households[3] (id "h0105"): duplicate id, first used by households[1] (id "h0105")',
        f'{r}: groups[1] (id "g1"): deputy "p-pat": does not live in a household of this group',
        f'{r}: groups[2] (id "g2"): no household belongs to this group',
        f'{r}: patrols[1] (id "pt"): leader: unknown key',
        f'{r}: policies.slow.steps[2]: sms role "mayor": unknown role '
        "(one of leader, deputy, patrol, grid_worker, duty)",
        f"{r}: policies.slow.steps[2]: after 60: must be later than the step before (300)",
        f'{r}: kinds.fire: policy "fast": unknown policy',
        f'{r}: kinds: "earthquake": unknown kind (one of panic, fire, smoke, gas, water, intrusion, medical)',
    ]
    assert sorted(found) == sorted(expected)


def test_wrong_types_and_missing_keys_in_the_roster(tmp_path: Path) -> None:
    roster = ROSTER.replace('name = "王桂芬"', "name = 7").replace(
        'devices = [{ id = "t-h0105" }]', 'devices = [{ id = "t-h0105", ringable = "yes" }]'
    )
    roster = roster.replace('village = "河口村"\n', "")
    found = problems_of(write(tmp_path, roster))
    r = str(tmp_path / "roster.toml")
    assert sorted(found) == sorted(
        [
            f'{r}: people[3] (id "p-wang"): name 7: input should be a valid string',
            f'{r}: groups[1] (id "g1"): village: required key missing',
            f'{r}: households[1] (id "h0105"): devices[1].ringable "yes": input should be a valid boolean',
        ]
    )


def test_leader_must_live_in_the_group(tmp_path: Path) -> None:
    roster = ROSTER.replace('leader = "p-lead"', 'leader = "p-duty"')
    found = problems_of(write(tmp_path, roster))
    assert found == [
        f'{tmp_path / "roster.toml"}: groups[1] (id "g1"): leader "p-duty": does not live in a household of this group'
    ]


def test_a_broken_entry_is_not_also_reported_as_unknown_everywhere(tmp_path: Path) -> None:
    roster = ROSTER.replace('name = "陈国庆"', 'name = "陈国庆"\nage = 52')
    found = problems_of(write(tmp_path, roster))
    assert found == [f'{tmp_path / "roster.toml"}: people[1] (id "p-lead"): age: unknown key']


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    found = problems_of(write(tmp_path, ROSTER + '\n[[people]]\nid = "p-x\n'))
    bad_line = ROSTER.count("\n") + 3
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'roster.toml'}: TOML syntax error")
    assert f"line {bad_line}," in found[0]


def test_missing_files(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope.toml") == [f"{tmp_path / 'nope.toml'}: file not found"]
    path = write(tmp_path, settings='[daemon]\nroster = "people/roster.toml"\n')
    assert problems_of(path) == [f"{tmp_path / 'people' / 'roster.toml'}: file not found"]
    with pytest.raises(ConfigError, match="file not found"):
        load_roster(tmp_path / "missing.toml")


def test_unknown_settings_keys_and_sections(tmp_path: Path) -> None:
    path = write(tmp_path, settings='[mqtt]\nurll = "mqtt://x"\n\n[smtp]\nhost = "x"\n')
    s = str(path)
    found = problems_of(path, {"ALERTD_SMTP__HOST": "y", "ALERTD_SMSS__MAX_ATTEMPTS": "3"})
    assert sorted(found) == sorted(
        [
            "ALERTD_SMSS__MAX_ATTEMPTS (environment): smss: unknown section",
            f"{s}: mqtt.urll: unknown key",
            f"{s}: smtp: unknown section",
        ]
    )


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        settings='[mqtt]\nurl = "mqtt://127.0.0.1"\nkeepalive = 30\n\n[store]\npath = "/var/lib/alertd/alertd.db"\n',
    )
    environ = {
        "ALERTD_MQTT__URL": "mqtts://broker.example.cn",
        "ALERTD_MQTT__KEEPALIVE": "45",
        "ALERTD_STORE__PATH": "data/alertd.db",
        "ALERTD_TWILIO__ACCOUNT_SID": "AC" + "0" * 32,
        "ALERTD_TWILIO__AUTH_TOKEN": "s3cret-token",
        "ALERTD_TWILIO__FROM_NUMBER": "+1 415 555 2671",
        "ALERTD_HTTP__LISTEN": "[::1]:9000",
        "ALERTD_HTTP__PUBLIC_URL": "https://alertd.example.cn/",
        "ALERTD_INCIDENTS__JOIN_WINDOW_S": "120.5",
        "ALERTD_LOG_LEVEL": "debug",  # no "__": not a setting, ignored
        "PATH": "/usr/bin",
    }
    settings = load_config(path, environ).settings
    assert settings.mqtt.url == "mqtts://broker.example.cn"
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.tls) == ("broker.example.cn", 8883, True)
    assert settings.mqtt.keepalive == 45
    assert settings.store.path == tmp_path / "data" / "alertd.db"
    assert settings.twilio.enabled
    assert settings.twilio.auth_token == "s3cret-token"
    assert settings.twilio.from_number == "+14155552671"
    assert (settings.http.host, settings.http.port) == ("::1", 9000)
    assert settings.http.public_url == "https://alertd.example.cn"
    assert settings.incidents.join_window_s == 120.5


def test_environment_can_move_the_roster_and_unset_a_value(tmp_path: Path) -> None:
    path = write(tmp_path, settings='[mqtt]\nusername = "alertd"\n')
    (tmp_path / "other.toml").write_text(ROSTER.replace("一组", "其他组"), encoding="utf-8")
    config = load_config(path, {"ALERTD_DAEMON__ROSTER": "other.toml", "ALERTD_MQTT__USERNAME": ""})
    assert config.roster_path == tmp_path / "other.toml"
    assert config.roster.groups["g1"].name == "其他组"
    assert config.settings.mqtt.username is None


def test_bad_environment_values_name_the_variable_and_hide_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, settings='[twilio]\naccount_sid = "AC1"\nfrom_number = "+8613800000000"\n')
    found = problems_of(
        path,
        {
            "ALERTD_SMS__MAX_ATTEMPTS": "0",
            "ALERTD_MQTT__URL": "mqtt://user:pw@broker",
            "ALERTD_MQTT__PASWORD": "hunter2",
            "ALERTD_TWILIO__AUTH_TOKEN": "",
        },
    )
    assert sorted(found) == sorted(
        [
            'ALERTD_SMS__MAX_ATTEMPTS (environment): sms.max_attempts "0": input should be greater than or equal to 1',
            'ALERTD_MQTT__URL (environment): mqtt.url "mqtt://user:pw@broker": '
            "put credentials in username/password, not in the URL",
            "ALERTD_MQTT__PASWORD (environment): mqtt.pasword: unknown key",
            f"{path}: twilio: account_sid, auth_token and from_number go together; missing auth_token",
        ]
    )
    assert not any("hunter2" in p for p in found)


def test_secrets_stay_out_of_repr_and_error_messages(tmp_path: Path) -> None:
    twilio = TwilioSettings(account_sid="AC1", auth_token="s3cret-token", from_number="+8613800000000")
    settings = Settings(twilio=twilio)
    assert "s3cret-token" not in repr(settings)
    assert "s3cret-token" not in str(settings)
    path = write(tmp_path, settings='[twilio]\nauth_token = 12345678\n\n[mqtt]\npassword = ["pw-in-a-list"]\n')
    found = problems_of(path)
    assert "12345678" not in "\n".join(found)
    assert "pw-in-a-list" not in "\n".join(found)
    assert f"{path}: twilio.auth_token ***: input should be a valid string" in found


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [("127.0.0.1:8080", "127.0.0.1", 8080), ("0.0.0.0:80", "0.0.0.0", 80), ("[::]:8443", "::", 8443)],
)
def test_listen_address(listen: str, host: str, port: int) -> None:
    http = HttpSettings(listen=listen)
    assert (http.host, http.port) == (host, port)


@pytest.mark.parametrize("listen", ["8080", ":8080", "host:", "host:http", "host:70000"])
def test_bad_listen_address(listen: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        HttpSettings(listen=listen)


def test_policies_and_kinds(tmp_path: Path) -> None:
    roster = (
        ROSTER
        + """
[policies.default]
steps = [{ after = 0, ring = true, sms = ["leader"] }, { after = 30, sms = ["duty", "patrol"] }]

[policies.quiet]
steps = [{ after = 0, sms = ["leader"] }]

[kinds]
water = "quiet"
fire = "default"
"""
    )
    roster_value = load_config(write(tmp_path, roster), {}).roster
    default = roster_value.policy_for(Kind.FIRE)
    assert [(s.after_s, s.ring, s.sms) for s in default.steps] == [
        (0, True, (Role.LEADER,)),
        (30, False, (Role.DUTY, Role.PATROL)),
    ]
    assert roster_value.policy_for(Kind.WATER).name == "quiet"
    assert roster_value.policy_for(Kind.GAS).name == "default"


def test_load_roster_logs_counts_without_phone_numbers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path)
    with caplog.at_level(logging.INFO, logger="alertd.config"):
        load_roster(tmp_path / "roster.toml")
    assert "1 groups, 2 households, 3 devices, 5 people" in caplog.text
    assert "138" not in caplog.text.replace(str(tmp_path), "")


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path), {})
    assert isinstance(config, Config)
    with pytest.raises(AttributeError):
        config.roster = config.roster  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        config.settings.mqtt.url = "mqtt://elsewhere"


CALLING = """
[policies.default]
steps = [{ after = 0, ring = true, sms = ["patrol"], call = ["leader"] }, { after = 60, call = ["duty"] }]
call_retries = 1
call_retry_s = 90
"""
TWILIO = """
[twilio]
account_sid = "AC0123"
auth_token = "secret-token"
from_number = "+8613800000000"
"""


def test_calls_and_call_preferences(tmp_path: Path) -> None:
    roster = ROSTER.replace('language = "en"', 'language = "en"\nprefers = "call"') + CALLING
    settings = TWILIO + '\n[http]\npublic_url = "https://alertd.example.cn"\n'
    config = load_config(write(tmp_path, roster, settings), {})
    policy = config.roster.policy_for(Kind.FIRE)
    assert [(s.sms, s.call) for s in policy.steps] == [((Role.PATROL,), (Role.LEADER,)), ((), (Role.DUTY,))]
    assert (policy.call_retries, policy.call_retry_s) == (1, 90)
    assert [p.id for p in config.roster.people.values() if p.prefers == Prefers.CALL] == ["p-wang"]


def test_calls_need_a_carrier_and_twilio_a_public_url(tmp_path: Path) -> None:
    roster = ROSTER.replace('language = "en"', 'language = "en"\nprefers = "call"') + CALLING
    [problem] = problems_of(write(tmp_path, roster))
    assert "policies.default, people[p-wang] prefers call: alert calls need [twilio] or [modem]" in problem
    [problem] = problems_of(write(tmp_path, roster, TWILIO))
    assert "http.public_url" in problem
    # The modem alone can ring the phones; Twilio last in [voice] prefer needs no public URL either.
    load_config(write(tmp_path, roster, '[modem]\nurl = "/dev/ttyUSB1"\n'), {})


def test_bad_call_settings_are_each_reported(tmp_path: Path) -> None:
    roster = ROSTER.replace('language = "en"', 'language = "en"\nprefers = "phone"') + (
        '[policies.default]\nsteps = [{ after = 0, call = ["leader", "mayor"] }]\n'
        '[policies.other]\nsteps = [{ after = 0, call = ["leader"] }]\ncall_retries = 99\n'
    )
    settings = '[voice]\nprefer = ["carrier-pigeon"]\nring_s = 5\n[sms]\nprefer = ["twilio", "twilio"]\n'
    problems = "\n".join(problems_of(write(tmp_path, roster, settings)))
    for expected in ("voice.prefer", "voice.ring_s", "sms.prefer", "names a carrier twice", "prefers",
                     '"phone"', 'call role "mayor"', "call_retries"):  # fmt: skip
        assert expected in problems, expected


def test_aliyun_settings_go_together_and_need_an_alert_template(tmp_path: Path) -> None:
    partial = '[aliyun]\naccess_key_id = "LTAI5t"\nsign_name = "河口村联防"\n'
    [problem] = problems_of(write(tmp_path, settings=partial))
    assert "missing access_key_secret" in problem
    no_alert = partial + 'access_key_secret = "s3cr3t"\ntemplates = { confirm = "SMS_2" }\n'
    [problem] = problems_of(write(tmp_path, settings=no_alert))
    assert 'templates has no "alert"' in problem
    assert "s3cr3t" not in problem
    complete = partial + 'access_key_secret = "s3cr3t"\ntemplates = { alert = "SMS_1" }\n'
    settings = load_config(write(tmp_path, settings=complete), {}).settings
    assert settings.aliyun.enabled
    assert "s3cr3t" not in repr(settings)


def test_sms_prefer_takes_one_name_or_an_order(tmp_path: Path) -> None:
    assert load_config(write(tmp_path), {}).settings.sms.prefer == ["aliyun", "twilio", "modem"]
    one = load_config(write(tmp_path, settings='[sms]\nprefer = "modem"\n'), {}).settings.sms.prefer
    assert one == ["modem", "aliyun", "twilio"]


def test_quorum_and_ack_notice(tmp_path: Path) -> None:
    roster = ROSTER + (
        "[policies.default]\nack_notice = false\n"
        'steps = [{ after = 0, ring = true, sms = ["leader"], quorum = 3 }, { after = 120, sms = ["duty"] }]\n'
    )
    policy = load_config(write(tmp_path, roster), {}).roster.policy_for(Kind.FIRE)
    assert ([s.quorum for s in policy.steps], policy.ack_notice) == ([3, 0], False)
    last = ROSTER + '[policies.default]\nsteps = [{ after = 0, sms = ["leader"], quorum = 2 }]\n'
    [problem] = problems_of(write(tmp_path, last))
    assert "policies.default.steps[1]: quorum 2: the last step has no deadline for it" in problem


def test_scheduled_drills_are_read_and_every_bad_one_reported(tmp_path: Path) -> None:
    good = ROSTER + '[[drills]]\nid = "d1"\nhousehold = "h0102"\nschedule = "monthly first sunday 10:00"\n'
    [drill] = load_config(write(tmp_path, good), {}).roster.drills.values()
    assert (drill.household_id, drill.kind, str(drill.schedule)) == ("h0102", Kind.FIRE, "monthly first sunday 10:00")
    bad = ROSTER + (
        '[[drills]]\nid = "d1"\nhousehold = "h9999"\nschedule = "daily 10:00"\n'
        '[[drills]]\nid = "d2"\nhousehold = "h0102"\nkind = "flood"\nschedule = "daily 10:00"\n'
        '[[drills]]\nid = "d3"\nhousehold = "h0102"\nschedule = "monthly fifth sunday 10:00"\n'
    )
    problems = "\n".join(problems_of(write(tmp_path, bad)))
    assert 'drills[d1]: household "h9999": unknown household' in problems
    assert 'drills[d2]: kind "flood": unknown kind' in problems
    assert "drills[d3]: " in problems
    assert "fifth" in problems


def test_daily_check_in_time(tmp_path: Path) -> None:
    roster = ROSTER.replace('label = "5号户 陈家"', 'label = "5号户 陈家"\ncheck_in = "09:30"')
    assert load_config(write(tmp_path, roster), {}).roster.households["h0105"].check_in == 9 * 60 + 30
    bad = ROSTER.replace('label = "5号户 陈家"', 'label = "5号户 陈家"\ncheck_in = "9:30 am"')
    problem = problems_of(write(tmp_path, bad))[0]
    assert 'households[1] (id "h0105"): check_in "9:30 am": must be a time of day as HH:MM, e.g. 10:00' in problem
