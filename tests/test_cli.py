"""The `alertd` command as operators run it: a real subprocess, its exit code and what it prints."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from openpyxl import load_workbook  # type: ignore[import-untyped]

from alertd.store import Store
from tests.fakes.twilio_server import TwilioServer
from tests.harness import (
    DaemonProcess,
    forget_session,
    terminals,
    write_village,
)

ROOT = Path(__file__).parent.parent
CLI_TIMEOUT_S = 30.0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ALERTD_")}


def alertd_sync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alertd.cli", *args],
        capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip


async def alertd(*args: str) -> tuple[int, str, str]:
    """Run the CLI without blocking the loop (the Twilio-shaped server lives in this loop)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "alertd.cli", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=ROOT,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_check_shipped_example_is_ok() -> None:
    result = alertd_sync("check", "-c", "config/alertd.toml")
    assert result.returncode == 0, result.stderr
    assert "config/alertd.toml: ok" in result.stdout
    assert "3 groups, 30 households" in result.stdout


BROKEN_SETTINGS = """\
[daemon]
roster = "roster.toml"
timezone = "Asia/Shanghai"
[mqtt]
url = "http://127.0.0.1:1883"
"""

BROKEN_ROSTER = """\
people = [
    { id = "p1", name = "甲", phone = "+8613800010001" },
    { id = "p2", name = "乙", phone = "+8613800010002" },
    { id = "p3", name = "丙", phone = "12345" },
    { id = "p-out", name = "外人", phone = "+8613800010004" },
]

[[groups]]
id = "g1"
name = "1组"
village = "河口村"
leader = "p-out"

[[households]]
id = "h1"
group = "g1"
label = "1号户"
people = ["p1"]
devices = [{ id = "d1" }]

[[households]]
id = "h2"
group = "g1"
label = "2号户"
people = ["p2", "p-ghost"]
devices = [{ id = "d1" }]

[[households]]
id = "h3"
group = "g9"
label = "3号户"
people = ["p3"]

[kinds]
fire = "nosuch"
"""


def test_check_lists_every_problem_with_file_entry_and_value(tmp_path: Path) -> None:
    settings, roster = tmp_path / "alertd.toml", tmp_path / "roster.toml"
    settings.write_text(BROKEN_SETTINGS, encoding="utf-8")
    roster.write_text(BROKEN_ROSTER, encoding="utf-8")

    result = alertd_sync("check", "-c", str(settings))

    assert result.returncode == 2, result.stdout + result.stderr
    assert "ok" not in result.stdout
    lines = result.stderr.splitlines()
    expected = [
        f"{settings}: daemon.timezone: unknown key",
        f'{settings}: mqtt.url "http://127.0.0.1:1883": scheme must be mqtt:// or mqtts://',
        f'{roster}: people[3] (id "p3"): phone "12345": not a valid phone number',
        f'{roster}: households[2] (id "h2"): person "p-ghost": unknown person',
        f'{roster}: households[2] (id "h2"): devices[1] (id "d1"): duplicate device id, '
        f'first used by households[1] (id "h1"): devices[1]',
        f'{roster}: households[3] (id "h3"): group "g9": unknown group',
        f'{roster}: groups[1] (id "g1"): leader "p-out": does not live in a household of this group',
        f'{roster}: kinds.fire: policy "nosuch": unknown policy',
    ]
    for line in expected:
        assert line in lines, f"missing {line!r} in:\n{result.stderr}"
    assert f"{len(expected)} problem(s) found" in lines


async def test_incident_lifecycle_through_the_cli(tmp_path: Path, twilio: TwilioServer) -> None:
    village = write_village(tmp_path, twilio=twilio)
    daemon = DaemonProcess(village, tmp_path / "daemon.log")
    cfg = ("-c", str(village.settings_path))
    try:
        async with terminals(village) as sims:
            await daemon.start()
            await sims.alarm("t1-2", "fire", seq=1)
            await sims.wait_until(lambda: len(sims.rings()) == 9)
            incident_id = sims.rings()[0].command.incident_id
            await twilio.wait_for_messages(3, timeout=20)

            rc, out, err = await alertd("incidents", *cfg)
            assert rc == 0, err
            row = next(line for line in out.splitlines() if line.split()[:1] == [str(incident_id)])
            assert "fire" in row
            assert "open" in row
            assert "h1-2" in row

            rc, out, err = await alertd("incidents", "--open", "--json", *cfg)
            assert rc == 0, err
            listed = json.loads(out)
            assert [(i["id"], i["state"], i["household"], i["kind"]) for i in listed] == [
                (incident_id, "open", "h1-2", "fire")
            ]
            assert listed[0]["time_to_acknowledge"] is None

            rc, out, err = await alertd("ack", str(incident_id), "--by", "张三", *cfg)
            assert rc == 0, out + err
            assert f"acknowledged {incident_id} (recorded as 张三 (os:root))" in out  # the tests run as root
            await sims.wait_until(lambda: len(sims.stops(incident_id)) == 9)
            assert {c.device for c in sims.stops(incident_id)} == {c.device for c in sims.rings(incident_id)}

            rc, out, err = await alertd("ack", str(incident_id), "--by", "张三", *cfg)
            assert rc == 1
            assert "already acknowledged" in out + err

            rc, out, err = await alertd("resolve", str(incident_id), "--by", "张三", "--outcome", "false_alarm", *cfg)
            assert rc == 0, out + err
            assert f"resolved {incident_id}" in out

            rc, out, err = await alertd("incidents", "--open", "--json", *cfg)
            assert rc == 0, err
            assert json.loads(out) == []

            rc, text, err = await alertd("show", str(incident_id), *cfg)
            assert rc == 0, err
            rc, out, err = await alertd("show", str(incident_id), "--json", *cfg)
            assert rc == 0, err
            record = json.loads(out)

            rc, out, err = await alertd("show", "999", *cfg)
            assert rc == 1
            assert "no incident 999" in err
            assert await daemon.terminate() == 0
    finally:
        await daemon.kill()
        await forget_session(village)

    # The human view: header, timeline in order, notifications with their status.
    assert f"Incident {incident_id}: fire at h1-2" in text
    assert "state resolved, outcome false_alarm" in text
    assert "time to acknowledge" in text
    assert "time to acknowledge -" not in text
    timeline_text = text.split("Timeline:")[1].split("Notifications:")[0]
    positions = [timeline_text.find(f"  {event}") for event in ("opened", "step 0", "acknowledged", "resolved")]
    assert -1 not in positions, timeline_text
    assert positions == sorted(positions), timeline_text
    # The name the operator gave, and the OS user the daemon's socket says ran the command.
    assert "acknowledged by 张三 (os:root)" in timeline_text
    assert "resolved by 张三 (os:root)" in timeline_text
    notes_text = text.split("Notifications:")[1]
    assert "(none)" not in notes_text
    sms_lines = [line for line in notes_text.splitlines() if " alert " in line]
    assert len(sms_lines) == 3, notes_text
    assert all("twilio" in line and line.endswith(": sent") for line in sms_lines), notes_text
    assert "1组5号户主" in notes_text  # recipients by name (the leader), numbers masked

    # The JSON view.
    assert record["id"] == incident_id
    assert record["state"] == "resolved"
    assert record["outcome"] == "false_alarm"
    assert record["acknowledged_by"] == "张三 (os:root)"
    assert isinstance(record["time_to_acknowledge"], (int, float))
    assert record["time_to_acknowledge"] >= 0
    assert [t["event"] for t in record["timeline"]] == ["opened", "step 0", "acknowledged", "resolved"]
    sms = [n for n in record["notifications"] if n["channel"] == "sms"]
    # The alert to the leader and the patrol, then to each of them who acknowledged (the duty room, 张三).
    assert [n["purpose"] for n in sms] == ["alert"] * 3 + ["notice"] * 3
    assert all(n["status"] == "sent" and n["carrier"] == "twilio" for n in sms)
    rings = [n for n in record["notifications"] if n["channel"] == "terminal" and n["purpose"] == "ring"]
    stops = [n for n in record["notifications"] if n["channel"] == "terminal" and n["purpose"] == "stop"]
    assert len(rings) == 9
    assert len(stops) == 9


async def test_ack_without_a_running_daemon_says_it_cannot_reach_it(tmp_path: Path) -> None:
    village = write_village(tmp_path)  # no daemon: nothing at the socket's path
    rc, out, err = await alertd("ack", "1", "--by", "张三", "-c", str(village.settings_path))
    assert rc == 1
    assert out == ""
    assert "cannot reach the daemon" in err
    assert str(village.socket_path) in err
    assert "is it running?" in err


async def test_commands_that_send_nothing_need_no_twilio_secret(tmp_path: Path) -> None:
    """The Twilio token lives in the service's environment file, readable by systemd only: an operator's shell
    has no ALERTD_TWILIO__AUTH_TOKEN. Commands that send nothing must work there; check and run still need it."""
    village = write_village(tmp_path)
    with village.settings_path.open("a", encoding="utf-8") as settings:
        settings.write('[twilio]\naccount_sid = "AC' + "0" * 32 + '"\nfrom_number = "+8613900000000"\n')
    await (await Store.open(village.store_path)).close()
    cfg = ("-c", str(village.settings_path))

    for command in (("incidents",), ("incidents", "--json"), ("devices", "--group", "g1")):
        rc, out, err = await alertd(*command, *cfg)
        assert rc == 0, (command, err)
        assert "auth_token" not in err
    rc, out, err = await alertd("show", "1", *cfg)
    assert (rc, out) == (1, "")
    assert "alertd: no incident 1" in err  # it read the store and found nothing
    rc, out, err = await alertd("mqtt-acl", *cfg)
    assert rc == 0, err
    assert "topic read test-" in out
    rc, out, err = await alertd("ack", "1", "--by", "张三", *cfg)  # goes to the daemon, which holds the token
    assert (rc, out) == (1, "")
    assert "cannot reach the daemon" in err
    assert "auth_token" not in err

    rc, _, err = await alertd("check", *cfg)  # what `run` will need
    assert rc == 2
    assert "twilio: account_sid, auth_token and from_number go together; missing auth_token" in err


def test_roster_diff_shows_what_a_reload_would_change_and_refuses_a_broken_file(tmp_path: Path) -> None:
    old = ROOT / "config" / "roster.toml"
    new = tmp_path / "roster.toml"
    text = old.read_text(encoding="utf-8").replace('name = "陈国庆"', 'name = "陈国强"')
    new.write_text(text.replace('check_in = "10:00"', 'check_in = "09:00"'), encoding="utf-8")
    done = alertd_sync("roster", "diff", str(old), str(new))
    assert done.returncode == 0, done.stderr
    assert "陈国庆 → 陈国强" in done.stdout
    assert "10:00 → 09:00" in done.stdout
    same = alertd_sync("roster", "diff", str(old), str(old))
    assert same.stdout.strip() == "无变更"
    new.write_text(text.replace('group = "g1"', 'group = "g9"', 1), encoding="utf-8")
    broken = alertd_sync("roster", "diff", str(old), str(new))
    assert broken.returncode == 2
    assert 'group "g9": unknown group' in broken.stderr


def test_roster_sheets_through_the_cli_template_export_import_and_problems(tmp_path: Path) -> None:
    template = alertd_sync("roster", "template", str(tmp_path / "花名册模板.xlsx"))
    assert template.returncode == 0, template.stderr
    assert (tmp_path / "花名册模板.xlsx").stat().st_size > 0
    sheets, roster = tmp_path / "花名册.xlsx", tmp_path / "roster.toml"
    shipped = ROOT / "config" / "roster.toml"
    assert alertd_sync("roster", "export", str(shipped), "-o", str(sheets)).returncode == 0
    done = alertd_sync("roster", "import", str(sheets), "-o", str(roster), "--base", str(shipped))
    assert done.returncode == 0, done.stderr
    same = alertd_sync("roster", "diff", str(shipped), str(roster))
    assert same.stdout.strip() == "无变更", same.stdout  # export then import is lossless

    book = load_workbook(sheets)
    people = book["人员"]
    header = [str(c.value or "").strip() for c in people[1]]
    phone = next(i for i, h in enumerate(header) if "电话" in h) + 1
    people.cell(row=3, column=phone, value="1380001")
    book.save(sheets)
    roster.unlink()
    bad = alertd_sync("roster", "import", str(sheets), "-o", str(roster))
    assert bad.returncode == 2
    assert "人员 第3行" in bad.stderr
    assert '"1380001"' in bad.stderr
    assert not roster.exists(), "nothing is written when there are problems"
