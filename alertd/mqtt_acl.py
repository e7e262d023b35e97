"""The Mosquitto ACL for a roster, and the steps to make its password file (docs/security.md).

Each terminal logs in with its device id as username and may only publish its own ``event`` and
``status`` and read its own ``cmd``; Zigbee2MQTT gets its base topic; the daemon reads every device's
events and statuses and writes every ``cmd``. Nothing here touches the broker: ``render_acl`` returns
the file text, ``write_file`` puts it in place.

The rules trust the username, and so must the session: the broker has to run with
``BROKER_SETTINGS`` (config/mosquitto.conf does), above all ``use_username_as_clientid true``, or any
account could take over another's session, alertd's with its queued alarms included, by connecting
with its client id. The generated file names them in its header.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shlex
import tempfile
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import Path

from alertd.config import Config
from alertd.core.model import Device
from alertd.protocols.terminal import Topics
from alertd.protocols.zigbee2mqtt import Z2mTopics

__all__ = [
    "BROKER_SETTINGS",
    "DEFAULT_DAEMON_USER",
    "TERMINAL_PROFILE",
    "ZIGBEE_USER",
    "is_alertd_terminal",
    "password_steps",
    "render_acl",
    "terminal_ids",
    "write_file",
]

TERMINAL_PROFILE = "alertd-terminal"
ZIGBEE_USER = "zigbee2mqtt"
DEFAULT_DAEMON_USER = "alertd"  # when [mqtt] username is not set
DEFAULT_PWFILE = "/etc/mosquitto/passwd"  # Mosquitto's password_file
REGENERATE = "alertd mqtt-acl -c {settings} -o /etc/mosquitto/acl"
MAX_UTF8_BYTES = 65535  # MQTT strings (topics, usernames) carry a 16-bit length
# mosquitto.conf lines the ACL relies on (config/mosquitto.conf has them): no login without an account,
# and the session is the account's (use_username_as_clientid, a per-listener option: after every
# `listener` line). tests/test_mqtt_takeover.py shows what happens without the second.
BROKER_SETTINGS = ("allow_anonymous false", "use_username_as_clientid true")

# Not allowed in a topic level: the separator and the wildcards. Not allowed in a username, in addition:
# ':' (the separator of Mosquitto's password file).
_NOT_IN_LEVEL = "/+#"
_NOT_IN_USERNAME = "/+#:"


def is_alertd_terminal(device: Device) -> bool:
    """The default predicate: a device speaking our terminal protocol over MQTT."""
    return device.profile == TERMINAL_PROFILE


def _problem(value: str, forbidden: str = _NOT_IN_USERNAME) -> str | None:
    """Why `value` cannot be an MQTT topic level (and a Mosquitto username), or None if it can."""
    if not value:
        return "is empty"
    if len(value.encode("utf-8", "surrogatepass")) > MAX_UTF8_BYTES:
        return f"is longer than {MAX_UTF8_BYTES} bytes"
    for char in value:
        if char in forbidden:
            return f"contains {char!r} (not allowed: {' '.join(forbidden)})"
        if char.isspace():
            return f"contains whitespace {char!r}"
        # Cc: NUL and other control characters (MQTT forbids or discourages them, Mosquitto rejects them);
        # Cs: lone surrogates (not UTF-8); Cn: unassigned code points and non-characters such as U+FFFF.
        if unicodedata.category(char) in ("Cc", "Cs", "Cn"):
            return f"contains the control or invalid character U+{ord(char):04X}"
    return None


def _check_name(what: str, value: str) -> str:
    if (why := _problem(value)) is not None:
        raise ValueError(f"{what} {value!r} {why}; it cannot be an MQTT topic level or broker username")
    return value


def _check_topic(what: str, value: str) -> str:
    """A topic made of one or more levels (a prefix or base topic), without wildcards or blanks."""
    for level in value.split("/"):
        why = "has an empty level" if level == "" else _problem(level, _NOT_IN_LEVEL)
        if why is not None:
            raise ValueError(f"{what} {value!r} {why}; it cannot be used in the broker ACL")
    return value


def terminal_ids(
    config: Config,
    *,
    is_terminal: Callable[[Device], bool] = is_alertd_terminal,
    reserved: Iterable[str] = (),
) -> list[str]:
    """The broker usernames of the terminals, sorted; ValueError names the first device that cannot be one."""
    taken = set(reserved)
    ids = []
    for device in sorted(config.roster.devices.values(), key=lambda d: d.id):
        if not is_terminal(device):
            continue
        _check_name(f"device {device.id!r} (household {device.household_id!r}): id", device.id)
        if device.id in taken:
            raise ValueError(
                f"device {device.id!r} (household {device.household_id!r}): id is also the broker username of the "
                "daemon or Zigbee2MQTT; rename the device or choose another username"
            )
        ids.append(device.id)
    return ids


def _users(config: Config, zigbee_user: str, daemon_user: str | None) -> tuple[str, str]:
    daemon = daemon_user or config.settings.mqtt.username or DEFAULT_DAEMON_USER
    _check_name("daemon username", daemon)
    _check_name("Zigbee2MQTT username", zigbee_user)
    if daemon == zigbee_user:
        raise ValueError(f"the daemon and Zigbee2MQTT must have different broker usernames, both are {daemon!r}")
    return daemon, zigbee_user


def _comment(text: str) -> str:
    """Text safe inside a one-line comment: control characters (a newline would end it) become '?'."""
    return "".join("?" if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") else c for c in text)


def render_acl(
    config: Config,
    *,
    zigbee_base: str | None = None,
    zigbee_user: str = ZIGBEE_USER,
    daemon_user: str | None = None,
    is_terminal: Callable[[Device], bool] = is_alertd_terminal,
) -> str:
    """Mosquitto `acl_file` text for the roster in `config`.

    One `user` block per terminal (by default devices with profile "alertd-terminal"), one for
    Zigbee2MQTT (its base topic: `zigbee_base`, else `[zigbee2mqtt] base`) and one for the daemon
    (`daemon_user`, else `[mqtt] username`, else "alertd").
    Raises ValueError, naming the device, when a device id cannot be a topic level or username.
    """
    prefix = _check_topic("[mqtt] prefix", config.settings.mqtt.prefix)
    zigbee_base = _check_topic(
        "Zigbee2MQTT base topic", config.settings.zigbee2mqtt.base if zigbee_base is None else zigbee_base
    )
    daemon, zigbee = _users(config, zigbee_user, daemon_user)
    terminals = terminal_ids(config, is_terminal=is_terminal, reserved=(daemon, zigbee))
    topics, zigbee_topics = Topics(prefix), Z2mTopics(zigbee_base)

    settings = _comment(str(config.settings_path))
    lines = [
        "# Mosquitto ACL generated by alertd from",
        f"#   {settings}",
        f"#   {_comment(str(config.roster_path))}",
        "# Do not edit by hand: change the roster, then regenerate and reload the broker:",
        f"#   {REGENERATE.format(settings=settings)}",
        "#   kill -HUP $(pidof mosquitto)    # or: systemctl reload mosquitto",
        "# Every user below also needs a line in the password file (docs/security.md).",
        "# Users not listed here, and topics not listed for a user, are denied.",
        "# These rules trust the username, so each session must be its username's too: mosquitto.conf needs",
        *(f"#   {setting}" for setting in BROKER_SETTINGS),
        "# (use_username_as_clientid after every listener line, read at start only: restart the broker, a",
        "# SIGHUP does not apply it). Without it any user below could take over another's session, alertd's",
        "# and the alarms queued in it included, by connecting with its client id.",
        "",
        "# alertd: reads every device's events and statuses, sends every device's commands.",
        "# Its [mqtt] client_id should be this username: the broker keeps its session under the username.",
        f"user {daemon}",
        f"topic read {topics.every('event')}",
        f"topic read {topics.every('status')}",
        f"topic write {topics.every('cmd')}",
        f"topic readwrite {zigbee_topics.everything()}",
        "",
        "# Zigbee2MQTT: its own base topic only.",
        f"user {zigbee}",
        f"topic readwrite {zigbee_topics.everything()}",
        "",
        f"# Terminals ({len(terminals)}): username = device id (and session id); each may publish only its own",
        "# event and status (its Last Will included) and read only its own commands.",
    ]
    for device_id in terminals:
        lines += [
            "",
            f"user {device_id}",
            f"topic write {topics.event(device_id)}",
            f"topic write {topics.status(device_id)}",
            f"topic read {topics.cmd(device_id)}",
        ]
    return "\n".join(lines) + "\n"


def password_steps(
    config: Config,
    *,
    zigbee_user: str = ZIGBEE_USER,
    daemon_user: str | None = None,
    is_terminal: Callable[[Device], bool] = is_alertd_terminal,
    password_file: str = DEFAULT_PWFILE,
) -> str:
    """Shell steps that create Mosquitto's password file for the users of `render_acl`.

    No password is in the text: the steps make one random password per user on the broker host and
    collect them in a root-only sheet, from which the operator configures each terminal.
    """
    daemon, zigbee = _users(config, zigbee_user, daemon_user)
    terminals = terminal_ids(config, is_terminal=is_terminal, reserved=(daemon, zigbee))
    passwd = shlex.quote(password_file)
    lines = [
        "# Mosquitto password file for alertd: run as root on the broker host (docs/security.md).",
        "# Every user gets its own random password. The passwords are collected in $SHEET (mode 0600):",
        "# configure each terminal with its device id as MQTT username and its password from the sheet",
        "# (the broker uses the username as client id: use_username_as_clientid in mosquitto.conf),",
        "# put the alertd password into /etc/alertd/alertd.env as ALERTD_MQTT__PASSWORD and the",
        "# zigbee2mqtt one into Zigbee2MQTT's configuration.yaml (mqtt.password), then delete the sheet:",
        '#   shred -u "$SHEET"',
        "# Never reuse a password between terminals, never send the sheet by chat or SMS.",
        "# mosquitto_passwd -b shows a password in the process list for a moment: run this on the",
        "# broker host only, with no other users logged in. -c (first command) replaces an existing file.",
        "set -eu",
        "umask 077",
        'SHEET="${SHEET:-/root/alertd-mqtt-passwords.txt}"',
        "new_password() { head -c 18 /dev/urandom | base64; }",
        "",
        f"# The daemon (username {daemon}: [mqtt] username and client_id in alertd.toml); -c creates the file.",
        *_add_user(passwd, daemon, first=True),
        "",
        "# Zigbee2MQTT.",
        *_add_user(passwd, zigbee),
        "",
        *_standby_user(config, passwd, daemon),
        f"# Terminals ({len(terminals)}): username = device id.",
    ]
    for device_id in terminals:
        lines += _add_user(passwd, device_id)
    lines += [
        "unset pw",
        "",
        f"chown root:mosquitto {passwd} && chmod 0640 {passwd}",
        'echo "password file written; passwords for the terminals are in $SHEET"',
    ]
    return "\n".join(lines) + "\n"


def _standby_user(config: Config, passwd: str, daemon: str) -> list[str]:
    """A standby's own account ([standby] mqtt_username), for its broker check: no ACL line, so no topic."""
    user = config.settings.standby.mqtt_username
    if user is None:
        return []
    _check_name("standby username", user)
    if user == daemon:
        raise ValueError(
            f"[standby] mqtt_username must not be the daemon's ({daemon!r}): that login is the alarms' session"
        )
    return [
        f"# The standby's broker check (username {user}: [standby] mqtt_username, its password in alertd.env as",
        "# ALERTD_STANDBY__MQTT_PASSWORD on every node). It may read and write no topic.",
        *_add_user(passwd, user),
        "",
    ]


def _add_user(passwd: str, user: str, *, first: bool = False) -> list[str]:
    quoted = shlex.quote(user)
    create, append = ("-c ", ">") if first else ("", ">>")
    return [
        f'pw=$(new_password); mosquitto_passwd {create}-b {passwd} {quoted} "$pw"',
        f'printf "%s\\t%s\\n" {quoted} "$pw" {append} "$SHEET"',
    ]


def write_file(path: Path, text: str, *, mode: int = 0o640, group: str | None = "mosquitto") -> None:
    """Replace `path` atomically with `text` (a broker reloading mid-write never sees half a file).

    An existing file keeps its permissions, owner and group (e.g. root:mosquitto 0640). A new one gets
    `mode`, and, when written by root, `group` if that group exists: Mosquitto 2 reads its files after
    dropping to the mosquitto user.
    """
    try:
        old = path.stat()
    except FileNotFoundError:
        old = None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if old is not None:
            os.chmod(tmp, old.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.chown(tmp, old.st_uid, old.st_gid)
        else:
            os.chmod(tmp, mode)
            if group is not None and os.geteuid() == 0:
                # No such group on this host: the file stays root-only until the operator chowns it.
                with contextlib.suppress(KeyError):
                    os.chown(tmp, 0, grp.getgrnam(group).gr_gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
