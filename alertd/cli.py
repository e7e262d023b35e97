"""The `alertd` command: run the daemon, check a config, run the demo, read and act on the response log.

What only some commands use (the decoders, the demo, the ACL writer, the report, the scaffold) is imported
by those commands: `alertd run` starts without it (start-up time, docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import http.client
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

from alertd.config import Config, load_config, load_roster
from alertd.core import reload
from alertd.core.access import Role
from alertd.core.events import Outcome
from alertd.core.model import Device, Kind, Roster
from alertd.daemon import Daemon
from alertd.errors import ConfigError, StoreError, StoreUnavailable
from alertd.profiles import load_profiles
from alertd.store import DeviceRecord, reading

# The imports inside the commands are there on purpose (see the docstring).
# ruff: noqa: PLC0415

DEFAULT_CONFIG = Path(os.environ.get("ALERTD_CONFIG", "/etc/alertd/alertd.toml"))
API_TIMEOUT_S = 15.0

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alertd", description="Joint-defense alarm daemon")
    parser.add_argument("--log-level", default=os.environ.get("ALERTD_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("-c", "--config", type=Path, default=DEFAULT_CONFIG, help="settings file (alertd.toml)")
        return p

    with_config("run", "run the daemon")
    with_config("check", "validate settings and roster; list every problem (exit 2) or exit 0")
    demo = sub.add_parser("demo", help="run the end-to-end demo against the local broker")
    # No default path: without -c the demo runs the example village shipped inside the package, so it
    # works from any folder (a relative default only worked inside the repository).
    demo.add_argument("-c", "--config", type=Path, help="settings file (default: the shipped example village)")
    init = sub.add_parser("init", help="write an annotated alertd.toml and a starter roster.toml into a folder")
    init.add_argument("folder", type=Path, help="where to write them (created if missing), e.g. /etc/alertd")
    decode = sub.add_parser("decode", help="show what alertd makes of receiver lines or SMS PDUs (JSON lines)")
    what = decode.add_subparsers(dest="what", required=True)
    cid = what.add_parser("contact-id", help="Contact ID lines as a receiver prints them")
    cid.add_argument("--format", default="plain", help="receiver line format (plain, mlr2, mlr2000)")
    cid.add_argument("lines", nargs="+")
    pdu = what.add_parser("sms-pdu", help="SMS PDUs in hex, as AT+CMGL/AT+CMGR print them")
    pdu.add_argument("pdus", nargs="+")
    p = with_config("incidents", "list incidents, newest first")
    p.add_argument("--open", action="store_true", help="only incidents not yet resolved")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=200)
    _two_node_parsers(with_config)
    p = with_config("devices", "every device's health: which can still raise an alarm, which can still ring")
    p.add_argument("--group", help="only this group's devices")
    p.add_argument("--json", action="store_true")
    p = with_config("mqtt-acl", "write the Mosquitto ACL: each terminal may use only its own topics")
    p.add_argument("-o", "--output", type=Path, help="write here (atomically) instead of standard output")
    with_config("mqtt-passwords", "print the shell steps that create the Mosquitto password file")
    p = with_config("show", "one incident's timeline and notifications")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    for name, help_text in (
        ("ack", "acknowledge an incident"),
        ("on-scene", "report someone on scene"),
        ("resolve", "resolve an incident"),
        ("cancel", "cancel an incident (false alarm)"),
    ):
        p = with_config(name, help_text)
        p.add_argument("id", type=int)
        _by(p)
        if name == "resolve":
            p.add_argument("--outcome", choices=[o.value for o in Outcome], default=Outcome.REAL.value)
    p = with_config("drill", "raise a drill (演练): a real alarm at a household, tagged as a drill")
    p.add_argument("--household", required=True, help="the household's id in the roster, e.g. h0102")
    p.add_argument("--kind", choices=[k.value for k in Kind], default=Kind.FIRE.value, help="default: fire")
    _by(p)
    p = with_config("pause", "pause a household's daily check-in (平安键) while the person is away, or resume it")
    p.add_argument("household", help="the household's id in the roster, e.g. h0102")
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument(
        "--until",
        help="YYYY-MM-DD (to the end of that day) or YYYY-MM-DDTHH:MM, in the daemon's time zone ([daemon] time_zone)",
    )
    when.add_argument("--resume", action="store_true", help="expect the daily check-in again from now on")
    _by(p)
    _users_parser(with_config("users", "the duty-room console's accounts (alertd users add/list/disable/passwd)"))
    _roster_parser(sub.add_parser("roster", help="the roster and the spreadsheets village cadres keep (花名册)"))
    return parser


def _two_node_parsers(with_config: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """The commands of a shared PostgreSQL store (docs/deploy.md, Two nodes)."""
    p = with_config("status", "is this instance running, active or standby, and which instance is active")
    p.add_argument("--json", action="store_true")
    p = with_config("migrate", "copy an SQLite store into the PostgreSQL at [store] url (once, with alertd stopped)")
    p.add_argument(
        "--from", dest="source", type=Path, required=True, help="the SQLite store, e.g. /var/lib/alertd/alertd.db"
    )


def _roster_parser(roster: argparse.ArgumentParser) -> None:
    what = roster.add_subparsers(dest="what", required=True)
    p = what.add_parser("template", help="write the XLSX template: a sheet per kind, Chinese headers, examples")
    p.add_argument("output", type=Path, help="e.g. 花名册模板.xlsx")
    p = what.add_parser("export", help="write a roster as the template, filled in")
    p.add_argument("roster", type=Path, help="roster.toml")
    p.add_argument("-o", "--output", type=Path, required=True, help="e.g. 花名册.xlsx")
    p = what.add_parser(
        "import", help="read XLSX or CSV (UTF-8 or GBK): every problem at once (exit 2, nothing written), or the roster"
    )
    p.add_argument("sheets", type=Path, help="花名册.xlsx, a CSV, or a folder of CSVs (one per sheet)")
    p.add_argument("-o", "--output", type=Path, required=True, help="the roster.toml to write")
    p.add_argument("--base", type=Path, help="keep policies, kinds and drills from this roster (not in the sheets)")
    p.add_argument("-c", "--config", type=Path, help="alertd.toml: check devices against its device profiles")
    p = what.add_parser("diff", help="what a reload would change: households, people, phones, leaders, devices...")
    p.add_argument("old", type=Path, help="the roster the daemon runs with")
    p.add_argument("new", type=Path, help="the edited roster")
    p.add_argument("--language", default="zh", help="zh (default) or en")


def _roster(args: argparse.Namespace) -> int:
    """alertd roster template / export / import / diff. Every problem at once, exit 2."""
    if args.what == "diff":
        from alertd.core.roster_diff import diff
        from alertd.roster_diff_text import render

        old, new = load_roster(args.old), load_roster(args.new)  # ConfigError: every problem, exit 2
        print(render(diff(old, new), language=args.language))
        return EXIT_OK
    from alertd import roster_sheets

    if args.what == "template":
        roster_sheets.write_template(args.output)
        print(f"wrote {args.output}")
        return EXIT_OK
    if args.what == "export":
        roster_sheets.export_roster(args.roster, args.output)
        print(f"wrote {args.output}")
        return EXIT_OK
    profiles = None
    if args.config is not None:
        from alertd.profiles import load_profiles

        profiles = load_profiles(load_config(args.config, secrets=False).settings.daemon.profiles)
    problems = roster_sheets.import_sheets(args.sheets, args.output, base=args.base, profiles=profiles)
    if problems:
        raise ConfigError(problems)
    print(f"wrote {args.output}; check it with: alertd roster diff <the current roster> {args.output}")
    return EXIT_OK


def _by(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--by", required=True, help="who is acting (a name); alertd adds the OS user that runs this command"
    )


def _users_parser(users: argparse.ArgumentParser) -> None:
    what = users.add_subparsers(dest="what", required=True)
    # -c after the subcommand too (alertd users add 老周 --role duty -c FILE), as for every other command.
    config_too = argparse.ArgumentParser(add_help=False)
    config_too.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS, help="settings file")
    p = what.add_parser("add", help="create an account", parents=[config_too])
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--groups", default="", help="comma-separated group ids (grid and leader only), e.g. g1,g2")
    _password_args(p)
    what.add_parser("list", help="every account", parents=[config_too])
    p = what.add_parser("disable", help="disable an account and end its sessions", parents=[config_too])
    p.add_argument("name")
    p = what.add_parser("passwd", help="set a new password (ends the account's sessions)", parents=[config_too])
    p.add_argument("name")
    _password_args(p)
    p = what.add_parser("token", help="a bearer token for the JSON API that acts as this user", parents=[config_too])
    p.add_argument("name")
    p.add_argument("--label", default="", help="what the token is for, e.g. 12345")
    p = what.add_parser("revoke", help="revoke every API token of this user", parents=[config_too])
    p.add_argument("name")


def _password_args(parser: argparse.ArgumentParser) -> None:
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    how.add_argument("--generate", action="store_true", help="generate a password and show it once")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _dispatch(args)
    except ConfigError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        print(f"{len(err.problems)} problem(s) found", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as err:
        # An empty, damaged or foreign store file, or one alertd may not open: a person must act, so it is
        # EXIT_CONFIG, which the shipped unit does not restart (RestartPreventExitStatus=2).
        print(f"alertd: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreUnavailable as err:  # a full disk, an I/O error: systemd starts it again (Restart=on-failure)
        print(f"alertd: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


def _dispatch(args: argparse.Namespace) -> int:
    match args.command:
        case "check":
            config = load_config(args.config)
            roster = config.roster
            print(
                f"{args.config}: ok ({len(roster.groups)} groups, {len(roster.households)} households, "
                f"{len(roster.devices)} devices, {len(roster.people)} people)"
            )
            for change in asyncio.run(_open_incident_changes(config)):
                # A warning, not a problem: the reload is safe (the incident keeps escalating with the
                # roster it had), but whoever edits the roster should know a response is under way.
                print(f"warning: open incident {change.incident_id}: {change.what}; it will keep escalating with "
                      "the roster it had until it is closed", file=sys.stderr)  # fmt: skip
            return EXIT_OK
        case "run":
            config = load_config(args.config, use_cache=True)
            # The modules, the settings and the roster live as long as the process and hold no garbage (a
            # collection here finds none): out of the collector's sight, a full collection no longer walks
            # them (26 ms each at 15,000 households) for as long as the daemon runs.
            gc.freeze()
            daemon = Daemon(config, exit_at_once=True)
            asyncio.run(daemon.run())
            return daemon.exit_code
        case "roster":
            return _roster(args)
        case "demo":
            from alertd.demo import run_demo

            return asyncio.run(run_demo(args.config))
        case "init":
            return _init(args.folder)
        case "decode":
            from alertd import decode

            results = (
                decode.contact_id(args.lines, args.format) if args.what == "contact-id" else decode.sms_pdu(args.pdus)
            )
            for result in results:
                print(json.dumps(result, ensure_ascii=False))
            return EXIT_OK if all(r["valid"] for r in results) else EXIT_FAILED
        case "mqtt-acl" | "mqtt-passwords":
            from alertd.mqtt_acl import password_steps, render_acl, write_file

            config = load_config(args.config, secrets=False)
            try:
                text = render_acl(config) if args.command == "mqtt-acl" else password_steps(config)
            except ValueError as err:
                print(f"alertd: {err}", file=sys.stderr)
                return EXIT_FAILED
            if getattr(args, "output", None):
                write_file(args.output, text)
            else:
                sys.stdout.write(text)
            return EXIT_OK
        # Commands that send nothing themselves run without the secrets, which only the service's environment
        # holds (an operator's shell does not): an acknowledgement must not wait for someone to find a token.
        case "migrate":
            return asyncio.run(_migrate(args, load_config(args.config, secrets=False)))
        case "status":
            from alertd import status

            return status.run(load_config(args.config, secrets=False), as_json=args.json)
        case "devices":
            return asyncio.run(_devices(args, load_config(args.config, secrets=False)))
        case "incidents" | "show":
            return asyncio.run(_report(args, load_config(args.config, secrets=False)))
        case "ack" | "on-scene" | "resolve" | "cancel" | "drill" | "pause":
            return _act(args, load_config(args.config, secrets=False))
        case "users":
            from alertd import users

            return users.run(args, load_config(args.config, secrets=False))
    return EXIT_FAILED


async def _migrate(args: argparse.Namespace, config: Config) -> int:
    from alertd.store_copy import copy_store

    store = config.settings.store
    if not store.url:
        print("alertd migrate: set [store] url (or ALERTD_STORE__URL) to the PostgreSQL to copy into", file=sys.stderr)
        return EXIT_CONFIG
    copied = await copy_store(args.source, store.url, store.path)
    print(f"copied {args.source} into the PostgreSQL store: {copied.summary() or 'nothing (an empty store)'}")
    return EXIT_OK


async def _open_incident_changes(config: Config) -> list[reload.Change]:
    """What this roster changes for the incidents open in the store now (none when there is no store yet)."""
    if not config.settings.store.url and not config.settings.store.path.exists():
        return []
    try:
        async with reading(config.settings.store) as store:
            incidents = await store.incidents(active_only=True)
    except (StoreError, StoreUnavailable) as err:
        print(f"warning: cannot read open incidents from the store: {err}", file=sys.stderr)
        return []
    return reload.changes(incidents, config.roster)


def _init(folder: Path) -> int:
    from alertd.scaffold import STARTER, write_examples

    try:
        written = write_examples(folder, STARTER)
    except OSError as err:  # an existing file is a ConfigError (exit 2); this is the folder itself
        print(f"alertd: cannot write into {folder}: {err}", file=sys.stderr)
        return EXIT_FAILED
    settings = folder / "alertd.toml"
    print("wrote " + ", ".join(str(path) for path in written))
    print(
        "next: replace the example names and numbers in roster.toml; put secrets (MQTT password, Twilio) in\n"
        "the environment, not in these files (ALERTD_<SECTION>__<KEY>, e.g. a systemd EnvironmentFile);\n"
        f"then: alertd check -c {settings}"
    )
    return EXIT_OK


async def _report(args: argparse.Namespace, config: Config) -> int:
    from alertd.report import incident_dict, incidents_table, show

    zone = config.settings.daemon.zone
    async with reading(config.settings.store) as store:  # a damaged store: one line, exit 2
        if args.command == "incidents":
            incidents = await store.incidents(active_only=args.open, limit=args.limit)
            if args.json:
                print(json.dumps([incident_dict(i, config.roster) for i in incidents], ensure_ascii=False, indent=1))
            else:
                print(incidents_table(incidents, config.roster, zone))
            return EXIT_OK
        incident = await store.incident(args.id)
        if incident is None:
            print(f"alertd: no incident {args.id}", file=sys.stderr)
            return EXIT_FAILED
        timeline, notes = await store.timeline(args.id), await store.notifications(args.id)
        if args.json:
            record = incident_dict(incident, config.roster)
            record["timeline"] = [
                {"at": t.at, "event": t.event, "actor": t.actor, "detail": t.detail} for t in timeline
            ]
            record["notifications"] = [
                {"step": n.step, "purpose": n.purpose.value, "channel": n.channel.value, "carrier": n.carrier,
                 "recipient": n.recipient, "status": n.status.value, "delivery": n.delivery, "error": n.error}
                for n in notes
            ]  # fmt: skip
            print(json.dumps(record, ensure_ascii=False, indent=1))
        else:
            print(show(incident, timeline, notes, config.roster, zone))
        return EXIT_OK


async def _devices(args: argparse.Namespace, config: Config) -> int:
    from alertd.report import device_dict, device_health, devices_table

    roster = config.roster
    if args.group is not None and args.group not in roster.groups:
        print(f"alertd: no group {args.group} (groups: {', '.join(roster.groups)})", file=sys.stderr)
        return EXIT_FAILED
    async with reading(config.settings.store) as store:
        records = await store.devices()
    rows = [
        (device, health)
        for device, health in device_health(roster, records, load_profiles(), time.time())
        if args.group is None or roster.households[device.household_id].group_id == args.group
    ]
    if args.json:
        print(
            json.dumps(
                [{**device_dict(d, h, roster), **_arming_dict(records.get(d.id))} for d, h in rows],
                ensure_ascii=False,
                indent=1,
            )
        )
    else:
        print(devices_table(rows, roster, config.settings.daemon.zone))
        panels = [(d, r) for d, _ in rows if (r := records.get(d.id)) is not None and r.armed is not None]
        if panels:
            print(_arming_table(panels, roster, config.settings.daemon.zone))
    return EXIT_OK


def _arming_dict(record: DeviceRecord | None) -> dict[str, object]:
    """An alarm panel's arming, as its open/close reports left it (None: never reported)."""
    if record is None or record.armed is None:
        return {"armed": None, "armed_user": None, "armed_at": None}
    return {"armed": record.armed.value, "armed_user": record.armed_user, "armed_at": record.armed_at}


def _arming_table(panels: list[tuple[Device, DeviceRecord]], roster: Roster, zone: ZoneInfo) -> str:
    """Which alarm panels are armed, by whom and since when: a household away is a household to look in on."""
    lines = ["", f"{'PANEL':14}  {'HOUSEHOLD':16}  {'ARMING':10}  {'USER':>4}  SINCE"]
    for device, record in panels:
        armed = "-" if record.armed is None else record.armed.value
        user = "-" if record.armed_user is None else str(record.armed_user)
        since = (
            "-"
            if record.armed_at is None
            else datetime.fromtimestamp(record.armed_at, UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        )
        label = roster.households[device.household_id].label
        lines.append(f"{device.id:14}  {label:16}  {armed:10}  {user:>4}  {since}")
    return "\n".join(lines)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the daemon's Unix socket: the kernel tells the daemon who we are (SO_PEERCRED)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _act(args: argparse.Namespace, config: Config) -> int:
    """Operator actions go through the running daemon's engine (the single writer), over its Unix socket."""
    done = None  # what was done, in words, when the daemon says it was
    match args.command:
        case "drill":
            url = "/api/drills"
            body: dict[str, object] = {"household": args.household, "kind": args.kind, "by": args.by}
        case "pause":
            zone = config.settings.daemon.zone
            if args.resume:
                until, done = None, f"daily check-in of {args.household} resumed"
            else:
                try:
                    until, when = _until(args.until, zone)
                except ValueError as err:
                    print(f"alertd: --until {args.until}: {err}", file=sys.stderr)
                    return EXIT_FAILED
                if until <= time.time():
                    print(f"alertd: --until {args.until}: already passed ({zone.key})", file=sys.stderr)
                    return EXIT_FAILED
                done = f"daily check-in of {args.household} paused {when}"
            url = f"/api/checkins/{quote(args.household, safe='')}/pause"
            body = {"until": until, "by": args.by}
        case _:
            url = f"/api/incidents/{args.id}/{args.command.replace('-', '_')}"
            body = {"by": args.by}
            if getattr(args, "outcome", None):
                body["outcome"] = args.outcome
    reply = _operator_request(config.settings.http.socket, url, body)
    if reply is None:
        return EXIT_FAILED
    result = reply.get("result", reply)
    if reply.get("ok") and "actor" in reply:
        if args.command == "drill":
            done = f"drill ({args.kind} at {args.household}): {result}"
        print(f"{done or result} (recorded as {reply['actor']})")
    else:
        print(result)
    return EXIT_OK if reply.get("ok") else EXIT_FAILED


def _until(text: str, zone: ZoneInfo) -> tuple[float, str]:
    """--until as a moment and in words: a local date (the pause lasts to the end of that day) or a local
    date and time, both in the daemon's time zone (never this machine's)."""
    try:
        if len(text) == len("YYYY-MM-DD"):
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=zone)
            end = day + timedelta(days=1)  # wall-clock arithmetic: the next midnight there, whatever the DST
            return end.timestamp(), f"to the end of {day:%Y-%m-%d} (until {end:%Y-%m-%d %H:%M} {zone.key})"
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M").replace(tzinfo=zone)
    except (ValueError, OverflowError):
        raise ValueError("give a date, YYYY-MM-DD, or a date and time, YYYY-MM-DDTHH:MM") from None
    return moment.timestamp(), f"until {moment:%Y-%m-%d %H:%M} {zone.key}"


def _operator_request(path: Path, url: str, body: Mapping[str, object]) -> dict[str, object] | None:
    """POST `body` to `url` on the daemon's operator socket `path`: its answer ({"ok", "result", "actor",
    ...}; a refusal as {"ok": False, "result": "refused (STATUS): why"}), or None when the daemon cannot be
    reached (said on standard error)."""
    connection = _UnixHTTPConnection(path, API_TIMEOUT_S)
    try:
        connection.request("POST", url, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        status, raw = response.status, response.read()
    except PermissionError as err:
        print(
            f"alertd: cannot reach the daemon at {path}: {err.strerror} "
            "(operator actions need root or membership in the socket's group, [http] socket_group)",
            file=sys.stderr,
        )
        return None
    except OSError as err:
        print(f"alertd: cannot reach the daemon at {path}: {err} (is it running?)", file=sys.stderr)
        return None
    finally:
        connection.close()
    if status in (200, 409):
        reply: dict[str, object] = json.loads(raw)
        return reply
    return {"ok": False, "result": f"refused ({status}): {raw.decode(errors='replace').strip()}"}


if __name__ == "__main__":
    sys.exit(main())
