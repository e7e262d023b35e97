"""Settings and roster: two TOML files, checked as a whole so `alertd check` can list every problem at once.

Settings (alertd.toml) are pydantic models; every key can be overridden as ALERTD_<SECTION>__<KEY>.
The roster (roster.toml) is read entry by entry, then cross-checked, then built into a core `Roster`.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from datetime import time as dt_time
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# tomli, not tomllib: its compiled wheels parse a 15,000-household roster 3-4x faster (start-up time).
import tomli
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from alertd import roster_cache
from alertd.core.model import (
    CALL_RETRIES,
    CALL_RETRY_S,
    DEFAULT_POLICY,
    Device,
    Group,
    Household,
    Kind,
    PatrolTeam,
    Person,
    Policy,
    Prefers,
    Role,
    Roster,
    ScheduledDrill,
    Step,
)
from alertd.core.profile import DeviceProfile
from alertd.core.schedule import parse_schedule
from alertd.errors import ConfigError
from alertd.phones import mask, normalize
from alertd.problems import reason as _reason
from alertd.problems import show as _show
from alertd.problems import where as _where
from alertd.profiles import check_roster_profiles, load_profiles

__all__ = [
    "AliyunSettings",
    "Config",
    "DaemonSettings",
    "HttpSettings",
    "IncidentSettings",
    "MqttSettings",
    "Settings",
    "SmsSettings",
    "StoreSettings",
    "StormSettings",
    "TwilioSettings",
    "VoiceSettings",
    "load_config",
    "load_roster",
]

_LOGGER = logging.getLogger(__name__)

ENV_PREFIX = "ALERTD_"
# Never echoed back in error messages, and kept out of repr().
_SECRETS = frozenset({("mqtt", "password"), ("twilio", "auth_token"), ("aliyun", "access_key_secret")})
_LANGUAGES = ("zh", "en")  # what core.messages can write
_KINDS = frozenset(k.value for k in Kind)
_ROLES = frozenset(r.value for r in Role)


# ---------------------------------------------------------------------------------------------- settings


def _relative_to_settings(value: Path, info: ValidationInfo) -> Path:
    base = info.context.get("base_dir") if isinstance(info.context, dict) else None
    return value if base is None or value.is_absolute() else base / value


def _language(value: str) -> str:
    if not value.lower().startswith(_LANGUAGES):
        raise ValueError("unsupported language (use zh-CN or en)")
    return value


def _web_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value.rstrip("/")


# sun_path in struct sockaddr_un is 108 bytes on Linux, the terminating NUL included.
_SOCKET_PATH_MAX = 107


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # "[::1]:8080"
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("must be host:port, e.g. 127.0.0.1:8080")
    return host, int(port)


SettingsPath = Annotated[Path, AfterValidator(_relative_to_settings)]
Language = Annotated[str, AfterValidator(_language)]


class _Section(BaseModel):
    # validate_default: defaults go through the validators too, so relative default paths get resolved.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class DaemonSettings(_Section):
    roster: SettingsPath = Path("roster.toml")
    profiles: list[SettingsPath] = []  # folders of local device profiles, beside the shipped ones
    time_zone: str = "Asia/Shanghai"
    language: Language = "zh-CN"

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError("unknown time zone") from err
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)  # ZoneInfo caches instances, so this is cheap


class MqttSettings(_Section):
    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    client_id: str = Field(default="alertd", min_length=1)
    prefix: str = "alertd/v1"
    keepalive: int = Field(default=30, ge=5, le=65535)
    ca_file: SettingsPath | None = None
    cert_file: SettingsPath | None = None
    key_file: SettingsPath | None = None

    @field_validator("url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError("scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError("no broker host")
        if parts.username or parts.password:
            # URLs end up in logs; credentials belong in username/password.
            raise ValueError("put credentials in username/password, not in the URL")
        _ = parts.port  # raises ValueError on a bad port
        return value

    @field_validator("prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        value = value.strip("/")
        if not value or "+" in value or "#" in value:
            raise ValueError("must be a non-empty topic without wildcards")
        return value

    @model_validator(mode="after")
    def _client_cert_pair(self) -> MqttSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)


class StoreSettings(_Section):
    path: SettingsPath = Path("/var/lib/alertd/alertd.db")
    # Disk space kept beside the store (alertd.reserve) and given up when the disk fills, so alarms are
    # still recorded and the duty room is told; 0 for none.
    reserve_mb: float = Field(default=16, ge=0)
    # A shared PostgreSQL instead of the SQLite file (issue 15): two or more instances on one database, one
    # of them active ([standby]). The password belongs in the environment (ALERTD_STORE__URL) or ~/.pgpass.
    url: str | None = Field(default=None, repr=False)

    @field_validator("url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (leave it out for the SQLite file at path)")
        return value


class StandbySettings(_Section):
    """Active/standby on a shared PostgreSQL ([store] url): who this instance is, how soon a standby takes over."""

    # This instance's name in the lease, /healthz and the incidents it opens; default: the host's name.
    instance: str = Field(default_factory=socket.gethostname, min_length=1, max_length=64)
    # The longest an alarm waits for a standby once the active dies (the lease's length on the database).
    takeover_s: float = Field(default=5.0, ge=1.0, le=300.0)
    # The standby's own broker account, for its broker check (a login that subscribes to nothing). Never the
    # service's: under use_username_as_clientid a login as [mqtt] username *is* the alarms' session, and a
    # clean login would wipe it. Without one, a standby whose broker needs a login only checks that the
    # broker answers on its port.
    mqtt_username: str | None = None
    mqtt_password: str | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _own_account(self) -> StandbySettings:
        if (self.mqtt_username is None) != (self.mqtt_password is None):
            raise ValueError("mqtt_username and mqtt_password go together")
        return self


class TwilioSettings(_Section):
    account_sid: str | None = None
    auth_token: str | None = Field(default=None, repr=False)
    from_number: str | None = None
    api_base_url: str | None = None
    timeout_s: float = Field(default=15.0, gt=0, le=120)  # one API call; past it the send is retried

    @field_validator("from_number")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return None if value is None else normalize(value)

    @field_validator("api_base_url")
    @classmethod
    def _api_url(cls, value: str | None) -> str | None:
        return None if value is None else _web_url(value)

    @model_validator(mode="after")
    def _all_or_nothing(self, info: ValidationInfo) -> TwilioSettings:
        # Half a Twilio setup silently disables SMS; in an alarm system that must be loud.
        missing = [k for k in ("account_sid", "auth_token", "from_number") if not getattr(self, k)]
        if missing == ["auth_token"] and isinstance(info.context, dict) and info.context.get("secrets") is False:
            return self  # a command that sends nothing; `run` and `check` are still refused without it
        if 0 < len(missing) < 3:
            raise ValueError(f"account_sid, auth_token and from_number go together; missing {', '.join(missing)}")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.account_sid and self.auth_token and self.from_number)


class AliyunSettings(_Section):
    """Aliyun SMS (Alibaba Cloud Dysmsapi): texts sent as registered templates under a sign name."""

    access_key_id: str | None = None
    access_key_secret: str | None = Field(default=None, repr=False)
    sign_name: str | None = None  # 签名, as registered with Aliyun, e.g. "河口村联防"
    # alertd's message kinds -> Aliyun's template codes (docs/carriers.md lists the kinds and their
    # parameters). A kind without a template goes through the next carrier.
    templates: dict[str, str] = {}
    endpoint: str | None = None  # None: dysmsapi.aliyuncs.com; tests point it at a stand-in
    timeout_s: float = Field(default=15.0, gt=0, le=120)
    receipts_interval_s: float = Field(default=60.0, gt=0, le=3600)  # how often handset reports are asked for

    @model_validator(mode="after")
    def _all_or_nothing(self, info: ValidationInfo) -> AliyunSettings:
        missing = [k for k in ("access_key_id", "access_key_secret", "sign_name") if not getattr(self, k)]
        secret_elsewhere = isinstance(info.context, dict) and info.context.get("secrets") is False
        if missing == ["access_key_secret"] and secret_elsewhere:
            return self
        if 0 < len(missing) < 3:
            raise ValueError(
                f"access_key_id, access_key_secret and sign_name go together; missing {', '.join(missing)}"
            )
        if self.enabled and "alert" not in self.templates:
            raise ValueError('templates has no "alert": alarm texts could not go through Aliyun')
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.access_key_id and self.access_key_secret and self.sign_name)


SmsCarrier = Literal["aliyun", "twilio", "modem"]
VoiceCarrier = Literal["twilio", "modem"]
_SMS_CARRIERS: tuple[SmsCarrier, ...] = ("aliyun", "twilio", "modem")
_VOICE_CARRIERS: tuple[VoiceCarrier, ...] = ("twilio", "modem")


class VoiceSettings(_Section):
    """Alert calls: Twilio speaks the alert and takes a key; the GSM modem rings the phone (响铃提醒)."""

    # The order carriers are tried in (those configured): the next takes over when one fails.
    prefer: list[VoiceCarrier] = Field(default_factory=lambda: list(_VOICE_CARRIERS), min_length=1)
    ring_s: float = Field(default=30.0, ge=10, le=120)  # how long a phone rings before the call gives up
    max_attempts: int = Field(default=3, ge=1)  # a carrier failing to place one call, before it is given up


class ZigbeeSettings(_Section):
    """Zigbee2MQTT on the same broker: sensors and sirens named in the roster by their friendly name."""

    enabled: bool = True
    base: str = Field(default="zigbee2mqtt", pattern=r"^[^#+\s]+$")


class HttpSettings(_Section):
    listen: str = "127.0.0.1:8080"
    public_url: str | None = None
    # Operator actions (alertd ack/on-scene/resolve/cancel) are taken only on this Unix socket, never on
    # `listen`: its mode (0660) and group decide who may act, and the connection tells who did (SO_PEERCRED).
    socket: SettingsPath = Path("/run/alertd/alertd.sock")
    socket_group: str | None = Field(default=None, min_length=1)  # None: the daemon's own group

    @field_validator("socket")
    @classmethod
    def _socket_path(cls, value: Path) -> Path:
        if len(os.fsencode(value)) > _SOCKET_PATH_MAX:
            raise ValueError(f"a Unix socket path has at most {_SOCKET_PATH_MAX} bytes; use a shorter one")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        _split_listen(value)
        return value

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        return None if value is None else _web_url(value)

    @property
    def host(self) -> str:
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return _split_listen(self.listen)[1]


class SupervisionSettings(_Section):
    """Device supervision: maintenance incidents for devices that cannot be trusted to raise an alarm."""

    # Offline or silent this long before the grid worker is told (radio flaps create nothing).
    grace_s: float = Field(default=600, ge=0)
    interval_s: float = Field(default=60, gt=0)  # how often every device is reviewed
    # Local time of the daily readiness digest to each group's leader; "" for none.
    digest_at: str = Field(default="08:00", pattern=r"^$|^([01][0-9]|2[0-3]):[0-5][0-9]$")
    # A digest missed while alertd was down goes out on return only within this long of its time.
    digest_catch_up_s: float = Field(default=7200, ge=0)

    @property
    def digest_time(self) -> dt_time | None:
        return dt_time.fromisoformat(self.digest_at) if self.digest_at else None


class StormSettings(_Section):
    """Storm control: many alarms at once (a flood, lightning on a feeder). Rings and each group leader's
    first text are never held; every other alert text is merged into one summary per window per person."""

    threshold: int = Field(default=5, ge=0)  # alarms within window_s that make a storm; 0: never
    window_s: float = Field(default=60.0, ge=10, le=3600)  # the rate's window, and each summary's


class IncidentSettings(_Section):
    join_window_s: float = Field(default=600, ge=0)
    dedup_window_s: float = Field(default=3600, ge=0)


class SmsSettings(_Section):
    max_attempts: int = Field(default=8, ge=1)
    # The order SMS carriers are tried in (those configured); the next takes over when one fails. One name
    # (the old form) puts that carrier first.
    prefer: list[SmsCarrier] = Field(default_factory=lambda: list(_SMS_CARRIERS), min_length=1)
    # An alarm SMS whose carrier has not answered within this long goes through the next carrier as well
    # (a hung carrier would hold it for its whole timeout); 0: never hedge.
    hedge_after_s: float = Field(default=3.0, ge=0, le=300)

    @field_validator("prefer", mode="before")
    @classmethod
    def _one_or_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [value, *(c for c in _SMS_CARRIERS if c != value)]
        return value

    @field_validator("prefer")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("names a carrier twice")
        return value


class ModemSettings(_Section):
    """A GSM modem on a serial line: SMS out and in when the internet is down (3GPP TS 27.005)."""

    url: str | None = None  # /dev/ttyUSB1, socket://host:port, rfc2217://host:port; None: no modem
    baudrate: int = Field(default=115200, gt=0)
    command_timeout_s: float = Field(default=10.0, gt=0, le=120)
    sweep_interval_s: float = Field(default=60.0, gt=0)  # AT+CMGL in case a +CMTI was missed
    smsc: str | None = None  # service centre; None: the SIM's


class ReceiverSettings(_Section):
    """A Contact ID alarm receiver printing reports on a serial line."""

    name: str = Field(min_length=1)
    url: str = Field(min_length=1)
    baudrate: int = Field(default=9600, gt=0)
    bytesize: Literal[7, 8] = 8
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    format: str = "plain"  # a key of alertd.protocols.contact_id.LINE_FORMATS

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        # Imported here: only a site with receivers loads the Contact ID decoder (start-up time).
        from alertd.protocols.contact_id import LINE_FORMATS  # noqa: PLC0415

        if value not in LINE_FORMATS:
            raise ValueError(f"unknown line format; one of {', '.join(LINE_FORMATS)}")
        return value


class ConsoleSettings(_Section):
    """The duty-room console (值班台), served on [http] listen; accounts come from `alertd users`."""

    enabled: bool = True
    idle_timeout_min: float = Field(default=720.0, gt=0)  # a session unused this long must log in again


class Settings(_Section):
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    standby: StandbySettings = Field(default_factory=StandbySettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    sms: SmsSettings = Field(default_factory=SmsSettings)
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    storm: StormSettings = Field(default_factory=StormSettings)
    aliyun: AliyunSettings = Field(default_factory=AliyunSettings)
    modem: ModemSettings = Field(default_factory=ModemSettings)
    zigbee2mqtt: ZigbeeSettings = Field(default_factory=ZigbeeSettings)
    supervision: SupervisionSettings = Field(default_factory=SupervisionSettings)
    receivers: list[ReceiverSettings] = []

    @model_validator(mode="before")
    @classmethod
    def _every_section(cls, data: object) -> object:
        # A missing section is validated as an empty table, so its relative default paths get resolved too.
        if isinstance(data, dict):
            return {name: {} for name in cls.model_fields if name != "receivers"} | data
        return data


@dataclass(frozen=True)
class Config:
    settings: Settings
    roster: Roster
    settings_path: Path
    roster_path: Path
    profiles: Mapping[str, DeviceProfile] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- helpers


def _read_bytes(path: Path, label: str) -> tuple[bytes | None, list[str]]:
    try:
        return path.read_bytes(), []
    except FileNotFoundError:
        return None, [f"{label}: file not found"]
    except OSError as err:
        return None, [f"{label}: cannot read: {err.strerror}"]


def _parse_toml(raw: bytes, label: str) -> tuple[dict[str, Any] | None, list[str]]:
    try:
        return tomli.loads(raw.decode("utf-8")), []
    except tomli.TOMLDecodeError as err:
        return None, [f"{label}: TOML syntax error: {err}"]
    except UnicodeDecodeError:
        return None, [f"{label}: not UTF-8 text"]


def _read_toml(path: Path, label: str) -> tuple[dict[str, Any] | None, list[str]]:
    raw, problems = _read_bytes(path, label)
    return (None, problems) if raw is None else _parse_toml(raw, label)


def _env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """Apply ALERTD_<SECTION>__<KEY> onto the file's tables; return which env var set which key."""
    sources: dict[tuple[str, ...], str] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name.removeprefix(ENV_PREFIX).lower().partition("__")
        if section not in data:
            sources[(section,)] = f"{name} (environment)"  # e.g. a typo'd section name
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            continue  # the file's own type error is reported
        if value == "":
            table.pop(key, None)  # an empty variable means "not set", e.g. to drop a file value
        else:
            table[key] = value
        sources[(section, key)] = f"{name} (environment)"
    return sources


# ---------------------------------------------------------------------------------------------- roster input


Id = Annotated[str, Field(min_length=1)]


class _Entry(BaseModel):
    # strict: TOML already has types, so "true" for a bool or 5 for a name is a typo worth reporting.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class _PersonIn(_Entry):
    id: Id
    name: str
    phone: str
    language: Language | None = None
    prefers: Literal["sms", "call"] = "sms"


class _DeviceIn(_Entry):
    id: Id
    profile: str = "alertd-terminal"
    ringable: bool = True
    account: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{4}$")] | None = None  # Contact ID account
    zone: Annotated[int, Field(ge=0, le=999)] | None = None


class _HouseholdIn(_Entry):
    id: Id
    group: str
    label: str = Field(min_length=1)
    address: str = ""
    people: list[str] = []
    devices: list[_DeviceIn] = []
    check_in: str | None = None  # "10:00"

    @field_validator("check_in")
    @classmethod
    def _hh_mm(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", value):
            raise ValueError("must be a time of day as HH:MM, e.g. 10:00")
        return value


class _GroupIn(_Entry):
    id: Id
    name: str
    village: str
    leader: str
    deputy: str | None = None
    grid_worker: str | None = None


class _PatrolIn(_Entry):
    id: Id
    name: str
    members: list[str] = Field(min_length=1)
    groups: list[str] = Field(min_length=1)


class _StepIn(_Entry):
    after: float = Field(ge=0)
    ring: bool = False
    sms: list[str] = []
    call: list[str] = []
    quorum: int = Field(default=0, ge=0, le=50)


class _PolicyIn(_Entry):
    steps: list[_StepIn] = Field(min_length=1)
    call_retries: int = Field(default=CALL_RETRIES, ge=0, le=10)
    call_retry_s: float = Field(default=CALL_RETRY_S, ge=10, le=3600)
    ack_notice: bool = True


class _DrillIn(_Entry):
    id: Id
    household: str
    kind: str = "fire"
    schedule: str


class _RosterIn(_Entry):
    duty: list[str] = []
    people: list[dict[str, Any]] = []
    groups: list[dict[str, Any]] = []
    households: list[dict[str, Any]] = []
    patrols: list[dict[str, Any]] = []
    policies: dict[str, dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    drills: list[dict[str, Any]] = []


_M = TypeVar("_M", bound=BaseModel)


class _Reader:
    """Collects problems while the roster is read, each prefixed with the file and the entry."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.problems: list[str] = []
        # Every id written in a section, valid entry or not, so one broken entry does not
        # also show up as an "unknown" reference everywhere it is used.
        self.ids: dict[str, set[str]] = {}

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{self.label}: {where}: {message}" if where else f"{self.label}: {message}")

    def validate(self, model: type[_M], raw: object, where: str) -> _M | None:
        try:
            return model.model_validate(raw)
        except ValidationError as err:
            for error in err.errors():
                key = _where(error["loc"])
                shown = "" if error["type"] in ("extra_forbidden", "missing") else " " + _show(error["input"])
                detail = f"{key}{shown}: {_reason(error)}" if key else _reason(error)
                self.problem(where, detail)
            return None

    def entries(self, section: str, raws: list[dict[str, Any]], model: type[_M]) -> dict[str, tuple[str, _M]]:
        """Valid entries by id, first one wins; reports invalid and duplicate ones."""
        out: dict[str, tuple[str, _M]] = {}
        ids = self.ids.setdefault(section, set())
        for index, raw in enumerate(raws, 1):
            entry_id = raw.get("id")
            if isinstance(entry_id, str):
                ids.add(entry_id)
            where = f"{section}[{index}]" + (f" (id {_show(entry_id)})" if isinstance(entry_id, str) else "")
            entry = self.validate(model, raw, where)
            if entry is None:
                continue
            key: str = getattr(entry, "id")  # noqa: B009 - every entry model has an id
            if key in out:
                self.problem(where, f"duplicate id, first used by {out[key][0]}")
            else:
                out[key] = (where, entry)
        return out

    def ref(self, where: str, field: str, value: str | None, known: Container[str], what: str) -> bool:
        if value is None or value in known:
            return True
        self.problem(where, f"{field} {_show(value)}: unknown {what}")
        return False


def _read_roster(path: Path, label: str, raw: bytes | None = None) -> tuple[Roster | None, list[str]]:
    """The roster file at `path` (or its bytes, `raw`, already read) validated in full."""
    with roster_cache.no_gc():  # ~200,000 objects at 15,000 households and no cycles: the collector only slows it
        data, problems = _read_toml(path, label) if raw is None else _parse_toml(raw, label)
        if data is None:
            return None, problems
        return _build_roster(data, label)


def _build_roster(data: dict[str, Any], label: str) -> tuple[Roster | None, list[str]]:
    r = _Reader(label)
    top = r.validate(_RosterIn, data, "")
    if top is None:
        return None, r.problems

    people = r.entries("people", top.people, _PersonIn)
    groups = r.entries("groups", top.groups, _GroupIn)
    households = r.entries("households", top.households, _HouseholdIn)
    patrols = r.entries("patrols", top.patrols, _PatrolIn)

    phones = _check_phones(r, people)
    devices: dict[str, Device] = {}
    device_where: dict[str, str] = {}
    account_where: dict[tuple[str, int | None], str] = {}
    members: dict[str, list[str]] = {}  # group id -> household ids, file order
    residents: dict[str, set[str]] = {}  # group id -> person ids
    for household_id, (where, household) in households.items():
        if r.ref(where, "group", household.group, r.ids["groups"], "group"):
            members.setdefault(household.group, []).append(household_id)
            residents.setdefault(household.group, set()).update(household.people)
        for person_id in household.people:
            r.ref(where, "person", person_id, r.ids["people"], "person")
        for index, device in enumerate(household.devices, 1):
            if device.id in device_where:
                r.problem(
                    f"{where}: devices[{index}] (id {_show(device.id)})",
                    f"duplicate device id, first used by {device_where[device.id]}",
                )
                continue
            device_where[device.id] = f"{where}: devices[{index}]"
            if device.account is not None:
                key = (device.account.upper(), device.zone)
                if key in account_where:
                    r.problem(
                        f"{where}: devices[{index}] (id {_show(device.id)})",
                        f"account {_show(device.account)} zone {device.zone}: already mapped to {account_where[key]}",
                    )
                account_where[key] = f"{where}: devices[{index}]"
            devices[device.id] = Device(
                device.id, household_id, device.profile, device.ringable, device.account, device.zone
            )

    _check_groups(r, groups, members, residents)

    for where, team in patrols.values():
        for person_id in team.members:
            r.ref(where, "member", person_id, r.ids["people"], "person")
        for group_id in team.groups:
            r.ref(where, "group", group_id, r.ids["groups"], "group")

    for index, person_id in enumerate(top.duty, 1):
        r.ref(f"duty[{index}]", "person", person_id, r.ids["people"], "person")

    policies = {"default": DEFAULT_POLICY} | {
        name: policy for name, raw in top.policies.items() if (policy := _read_policy(r, name, raw)) is not None
    }
    kind_policy: dict[Kind, str] = {}
    for kind, policy_name in top.kinds.items():
        if kind not in _KINDS:
            r.problem("kinds", f"{_show(kind)}: unknown kind (one of {', '.join(Kind)})")
            continue
        if r.ref(f"kinds.{kind}", "policy", policy_name, {"default", *top.policies}, "policy"):
            kind_policy[Kind(kind)] = policy_name

    drills = _read_drills(r, top.drills)

    if r.problems:
        return None, r.problems
    roster = Roster(
        people={i: Person(i, p.name, phones[i], p.language, Prefers(p.prefers)) for i, (_, p) in people.items()},
        households={
            i: Household(
                i, h.label, h.group, h.address, tuple(h.people), tuple(d.id for d in h.devices), _minutes(h.check_in)
            )
            for i, (_, h) in households.items()
        },
        groups={
            i: Group(i, g.name, g.village, tuple(members[i]), g.leader, g.deputy, g.grid_worker)
            for i, (_, g) in groups.items()
        },
        devices=devices,
        patrols={i: PatrolTeam(i, t.name, tuple(t.members), tuple(t.groups)) for i, (_, t) in patrols.items()},
        duty=tuple(top.duty),
        policies=policies,
        kind_policy=kind_policy,
        drills=drills,
    )
    return roster, []


def _minutes(hh_mm: str | None) -> int | None:
    return None if hh_mm is None else int(hh_mm[:2]) * 60 + int(hh_mm[3:])


def _read_drills(r: _Reader, raws: list[dict[str, Any]]) -> dict[str, ScheduledDrill]:
    drills: dict[str, ScheduledDrill] = {}
    for index, raw in enumerate(raws, 1):
        where = f"drills[{index}]"
        drill = r.validate(_DrillIn, raw, where)
        if drill is None:
            continue
        where = f"drills[{drill.id}]"
        if drill.id in drills:
            r.problem(where, "id used twice")
        known = r.ref(where, "household", drill.household, r.ids["households"], "household")
        if drill.kind not in _KINDS:
            r.problem(where, f"kind {_show(drill.kind)}: unknown kind (one of {', '.join(Kind)})")
        try:
            schedule = parse_schedule(drill.schedule)
        except ValueError as err:
            r.problem(where, str(err))
            continue
        if known and drill.kind in _KINDS:
            drills[drill.id] = ScheduledDrill(drill.id, drill.household, Kind(drill.kind), schedule)
    return drills


def _check_phones(r: _Reader, people: Mapping[str, tuple[str, _PersonIn]]) -> dict[str, str]:
    """E.164 number of each person whose number is valid."""
    phones: dict[str, str] = {}
    first_with: dict[str, str] = {}  # E.164 -> where
    for person_id, (where, person) in people.items():
        try:
            phone = normalize(person.phone)
        except ValueError:
            r.problem(where, f"phone {_show(person.phone)}: not a valid phone number")
            continue
        if phone in first_with:
            # Replies are matched to people by number, so a number must be unique.
            r.problem(where, f"phone {mask(phone)}: same number as {first_with[phone]}")
        else:
            first_with[phone] = where
        phones[person_id] = phone
    return phones


def _check_groups(
    r: _Reader,
    groups: Mapping[str, tuple[str, _GroupIn]],
    members: Mapping[str, list[str]],
    residents: Mapping[str, set[str]],
) -> None:
    for group_id, (where, group) in groups.items():
        if group_id not in members:
            r.problem(where, "no household belongs to this group")
        r.ref(where, "grid_worker", group.grid_worker, r.ids["people"], "person")
        roles: tuple[tuple[str, str | None], ...] = (("leader", group.leader), ("deputy", group.deputy))
        for role, person_id in roles:
            # The leader and deputy must be neighbours: they are the first to run over.
            if person_id is None or not r.ref(where, role, person_id, r.ids["people"], "person"):
                continue
            if group_id in members and person_id not in residents[group_id]:
                r.problem(where, f"{role} {_show(person_id)}: does not live in a household of this group")


def _read_policy(r: _Reader, name: str, raw: dict[str, Any]) -> Policy | None:
    where = f"policies.{name}"
    policy = r.validate(_PolicyIn, raw, where)
    if policy is None:
        return None
    before = len(r.problems)
    steps: list[Step] = []
    for index, step in enumerate(policy.steps, 1):
        step_where = f"{where}.steps[{index}]"
        for field_name, listed in (("sms", step.sms), ("call", step.call)):
            for role in listed:
                if role not in _ROLES:
                    r.problem(step_where, f"{field_name} role {_show(role)}: unknown role (one of {', '.join(Role)})")
        if steps and step.after <= steps[-1].after_s:
            r.problem(step_where, f"after {step.after:g}: must be later than the step before ({steps[-1].after_s:g})")
        if step.quorum and index == len(policy.steps):
            # The next step's time is the quorum's deadline: the last step has none, so "missed" could never be said.
            r.problem(step_where, f"quorum {step.quorum}: the last step has no deadline for it; add a later step")
        texted = tuple(Role(role) for role in step.sms if role in _ROLES)
        called = tuple(Role(role) for role in step.call if role in _ROLES)
        steps.append(Step(step.after, step.ring, texted, called, step.quorum))
    if len(r.problems) != before:
        return None
    return Policy(name, tuple(steps), policy.call_retries, policy.call_retry_s, policy.ack_notice)


# ---------------------------------------------------------------------------------------------- public


def load_roster(
    path: Path, profiles: Mapping[str, DeviceProfile] | None = None, *, cache: Path | None = None
) -> Roster:
    """Read and check a roster file on its own (SIGHUP); ConfigError lists every problem.

    With `cache` (alertd.roster_cache.path_for the store) and `profiles`, a roster validated before with the
    same file, profiles and code is read from the cache, and a freshly validated one is written to it.
    """
    if cache is not None and profiles is not None:
        roster, problems = _roster_through_cache(path, str(path), profiles, cache)
    else:
        roster, problems = _read_roster(path, str(path))
        if roster is not None and profiles is not None:
            problems += check_roster_profiles(roster, profiles, str(path))
    if roster is None or problems:
        raise ConfigError(problems)
    _LOGGER.info(
        "roster %s: %d groups, %d households, %d devices, %d people",
        path,
        len(roster.groups),
        len(roster.households),
        len(roster.devices),
        len(roster.people),
    )
    return roster


def _roster_through_cache(
    path: Path, label: str, profiles: Mapping[str, DeviceProfile], cache: Path
) -> tuple[Roster | None, list[str]]:
    """The roster from the cache when it holds this file's validated roster; else validated in full (and cached).

    The problems are exactly those of a full validation (check_roster_profiles' included): a cache is only
    ever written for a roster that had none.
    """
    raw, problems = _read_bytes(path, label)
    if raw is None:
        return None, problems
    key = roster_cache.cache_key(raw, profiles, roster_cache.code_fingerprint())
    if key is not None and (cached := roster_cache.read(cache, key)) is not None:
        _LOGGER.info("roster %s: read from the cache %s (validated before: same file, profiles and code)", path, cache)
        return cached, []
    roster, problems = _read_roster(path, label, raw)
    if roster is not None:
        problems += check_roster_profiles(roster, profiles, label)
    if roster is None or problems:
        return None, problems
    body = roster_cache.encode(roster)
    del roster  # its strings are the parse's, spread over memory the parse has otherwise given back
    if key is not None:
        roster_cache.write(cache, key, body)
    with roster_cache.no_gc():
        # Served from the cached form, like every later start: the same values (tests/test_roster_cache.py),
        # in compact fresh memory, so the process keeps no more than a restart would.
        return roster_cache.decode(body), []


def load_config(
    path: Path, environ: Mapping[str, str] | None = None, *, secrets: bool = True, use_cache: bool = False
) -> Config:
    """Read the settings file, apply ALERTD_<SECTION>__<KEY> overrides, then read the roster it names.

    Raises ConfigError with every problem in both files, each naming the file, the entry and the value.
    secrets=False is for commands that send nothing themselves (incidents, show, devices, ack...): a secret the
    environment does not hold is then no problem. It lives in the service's environment file, which an
    operator's shell does not read; the settings file itself must still be complete.
    use_cache=True (`alertd run`) reads the validated roster from its cache beside the store when the roster
    file, the profiles and the code are those it was validated with, and writes it after a full validation
    (alertd.roster_cache). Otherwise (`alertd check` and the rest) the roster is always validated in full.
    """
    environ = os.environ if environ is None else environ
    label = str(path)
    data, problems = _read_toml(path, label)
    if data is None:
        raise ConfigError(problems)
    sources = _env_overrides(data, environ)

    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data, context={"base_dir": path.parent.absolute(), "secrets": secrets})
    except ValidationError as err:
        for error in err.errors():
            loc = tuple(str(p) for p in error["loc"])
            source = sources.get(loc[:2]) or sources.get(loc[:1]) or label
            show = len(loc) >= 2 and error["type"] not in ("extra_forbidden", "missing")
            value = (" ***" if loc[:2] in _SECRETS else " " + _show(error["input"])) if show else ""
            reason = "unknown section" if loc[1:] == () and error["type"] == "extra_forbidden" else _reason(error)
            problems.append(f"{source}: {_where(error['loc'])}{value}: {reason}")

    # Even with broken settings, check the roster too: the operator wants the whole list in one go.
    daemon = data.get("daemon")
    raw_roster = daemon.get("roster") if isinstance(daemon, dict) else None
    roster_path = path.parent / (raw_roster if isinstance(raw_roster, str) else "roster.toml")
    profiles: dict[str, DeviceProfile] = {}
    profile_problems: list[str] = []
    try:
        profiles = load_profiles(settings.daemon.profiles if settings is not None else ())
    except ConfigError as err:
        profile_problems = err.problems
    if use_cache and settings is not None and not problems and not profile_problems:
        cache = roster_cache_path(settings)
        roster, roster_problems = _roster_through_cache(roster_path, str(roster_path), profiles, cache)
        problems += roster_problems
    else:
        # The problems in the order a reader expects: the roster's own, the profiles', then the devices'.
        roster, roster_problems = _read_roster(roster_path, str(roster_path))
        problems += roster_problems + profile_problems
        if roster is not None and profiles:
            problems += check_roster_profiles(roster, profiles, str(roster_path))

    if settings is not None and roster is not None:
        problems += _check_calls(settings, roster, label, str(roster_path))
    if settings is None or roster is None or problems:
        raise ConfigError(problems)
    _check_session_id(settings.mqtt, label)
    return Config(settings, roster, path.absolute(), settings.daemon.roster, profiles)


def _check_calls(settings: Settings, roster: Roster, label: str, roster_label: str) -> list[str]:
    """Calls the roster asks for need a carrier that can place them, and Twilio's a public URL for its TwiML."""
    wanted = [f"policies.{p.name}" for p in roster.policies.values() if any(s.call for s in p.steps)]
    wanted += [f"people[{pid}] prefers call" for pid, p in roster.people.items() if p.prefers == Prefers.CALL]
    if not wanted:
        return []
    twilio, modem = settings.twilio.enabled, bool(settings.modem.url)
    shown = ", ".join(wanted[:3]) + (f" and {len(wanted) - 3} more" if len(wanted) > 3 else "")
    if not twilio and not modem:
        return [f"{roster_label}: {shown}: alert calls need [twilio] or [modem] in {label}"]
    if twilio and not settings.http.public_url and "twilio" in settings.voice.prefer:
        return [f"{label}: http.public_url: Twilio fetches what a call says from it; set it ({shown} call)"]
    return []


def roster_cache_path(settings: Settings) -> Path:
    """The validated roster's cache: beside the store, in the directory the daemon owns and writes."""
    return roster_cache.path_for(settings.store.path)


def _check_session_id(mqtt: MqttSettings, label: str) -> None:
    """Warn when alertd's client_id is not its broker username (docs/security.md, "One session per account").

    The shipped broker config replaces every client id with the username (use_username_as_clientid), so that
    no account can take over another's session. There a different client_id is only a wrong name; but the
    session (and the alarms queued in it) changes hands the day a broker starts or stops doing that. A warning,
    not a problem: alertd still works, and an alarm daemon should not refuse to start over it.
    """
    if mqtt.username is not None and mqtt.client_id != mqtt.username:
        _LOGGER.warning(
            '%s: mqtt.client_id "%s" is not mqtt.username "%s": the broker keeps alertd\'s session under the '
            "username (use_username_as_clientid in mosquitto.conf), and alarms queued under the other id are "
            'stranded when that changes; set client_id = "%s"',
            label,
            mqtt.client_id,
            mqtt.username,
            mqtt.username,
        )
