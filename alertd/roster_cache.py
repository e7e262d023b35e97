"""The validated roster, kept on disk as plain JSON so a restart skips parsing and validating it again.

At 15,000 households, parsing roster.toml, validating every entry and every phone number takes about a
second; reading it back from this cache takes about a tenth of that. The cache is one file beside the store
(`alertd.db.roster-cache`, mode 0600: it holds phone numbers): a header line (format, key, SHA-256 of the
body), then the roster as JSON, table by table and column by column. It is used only when its key matches,
and the key is a hash of everything the validated roster depends on:

* the roster file's bytes (the same bytes that are then parsed, so no edit can slip in between);
* the device profiles as loaded (what `check_roster_profiles` checks the devices against);
* the code that validates and builds it: the source of the alertd modules below, and the versions of
  phonenumbers (its metadata decides which numbers are valid), pydantic, tomli and Python;
* this file format.

No setting changes how a roster validates except the profile folders, which the profiles cover.

Any other outcome is a full validation: a cache that is missing, out of date, unreadable, truncated or
corrupt (the header carries a SHA-256 of the body, and every field's type is checked on the way in) is
logged and ignored, never raised; a directory that cannot be written is logged and run without. Only a
roster that passed validation is ever written, so a hit means "this exact input was valid".

Plain data only: JSON cannot carry code, so a writable cache file cannot become code execution (which is
why this is not pickle). It is trusted as much as the store beside it, which the daemon's user owns: it
is checked for damage, not for forgery.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import importlib.util
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from alertd.core.model import (
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

__all__ = ["FORMAT", "cache_key", "code_fingerprint", "decode", "encode", "no_gc", "path_for", "read", "write"]

_LOGGER = logging.getLogger(__name__)

FORMAT = 5  # bump when the layout of the file changes
_PACKAGE = Path(__file__).resolve().parent
# The modules whose code decides what a roster file validates into: reading and checking (config), phone
# numbers (phones), device profiles (profiles, core/profile), the built values and the default policy
# (core/model), and this encoding.
_SOURCES = ("config.py", "phones.py", "profiles.py", "core/model.py", "core/profile.py", "roster_cache.py")
_LIBRARIES = ("phonenumbers", "pydantic", "pydantic_core", "tomli")


class CorruptCache(ValueError):
    """The cache file is not what this code writes."""


def path_for(store_path: Path) -> Path:
    """Where the roster cache lives: beside the store, owned and written like it."""
    return store_path.with_name(store_path.name + ".roster-cache")


@functools.cache
def code_fingerprint() -> str | None:
    """A hash of the validating code and libraries; None (no caching) when a source cannot be read."""
    digest = hashlib.sha256(f"alertd roster cache {FORMAT}\n{sys.version}\n".encode())
    try:
        for name in _SOURCES:
            digest.update(f"{name}\n".encode())
            digest.update((_PACKAGE / name).read_bytes())
        for library in _LIBRARIES:
            digest.update(f"{library}\n".encode())
            digest.update(_installed_version(library).encode())
    except (OSError, ImportError, ValueError) as err:
        _LOGGER.info("roster cache off: cannot fingerprint the validating code (%s)", err)
        return None
    return digest.hexdigest()


def _installed_version(library: str) -> str:
    """Which release of `library` is installed, found without importing it (phonenumbers costs 20 ms) or
    importlib.metadata (15 ms): the names of its *.dist-info folders, and its __init__.py."""
    spec = importlib.util.find_spec(library)
    if spec is None or spec.origin is None:
        raise ImportError(f"{library} not found")
    init = Path(spec.origin)
    site = init.parent.parent
    infos = sorted(n for n in os.listdir(site) if n.startswith(f"{library}-") and n.endswith(".dist-info"))
    return "\n".join([*infos, init.read_text(encoding="utf-8", errors="replace")])


def cache_key(roster_bytes: bytes, profiles: Mapping[str, DeviceProfile], code: str | None) -> str | None:
    """The key a cache must carry to stand for this roster file, these profiles and this code."""
    if code is None:
        return None
    digest = hashlib.sha256(code.encode())
    digest.update(b"\nprofiles\n")
    digest.update(repr(sorted(profiles.items())).encode())
    digest.update(b"\nroster\n")
    digest.update(roster_bytes)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- encoding


def encode(roster: Roster) -> bytes:
    """The roster as compact JSON, in the roster's own order.

    Each table is written by column (every person's id, then every name...): read back, a column is one list
    and its values are built in one sweep, with no short-lived list per entry left between the strings
    that stay. References (a household's group, people and devices; a group's households and roles; a
    device's household and profile; patrols; duty) are indexes into the columns of ids they point at: each id
    is stored once, and read back as one string shared by every mention.
    """
    people, households, groups = roster.people.values(), roster.households.values(), roster.groups.values()
    devices, patrols = roster.devices.values(), roster.patrols.values()
    person = {pid: i for i, pid in enumerate(roster.people)}
    household = {hid: i for i, hid in enumerate(roster.households)}
    group = {gid: i for i, gid in enumerate(roster.groups)}
    device = {did: i for i, did in enumerate(roster.devices)}
    profile: dict[str, int] = {}
    for d in devices:
        profile.setdefault(d.profile, len(profile))

    def opt(index: dict[str, int], key: str | None) -> int | None:
        return None if key is None else index[key]

    data = {
        "people": {
            "id": list(roster.people),
            "name": [p.name for p in people],
            "phone": [p.phone for p in people],
            "language": [p.language for p in people],
            "prefers": [p.prefers.value for p in people],
        },
        "households": {
            "id": list(roster.households),
            "label": [h.label for h in households],
            "group": [group[h.group_id] for h in households],
            "address": [h.address for h in households],
            "people": [[person[p] for p in h.people] for h in households],
            "devices": [[device[d] for d in h.devices] for h in households],
            "check_in": [h.check_in for h in households],
        },
        "groups": {
            "id": list(roster.groups),
            "name": [g.name for g in groups],
            "village": [g.village for g in groups],
            "households": [[household[h] for h in g.households] for g in groups],
            "leader": [person[g.leader] for g in groups],
            "deputy": [opt(person, g.deputy) for g in groups],
            "grid_worker": [opt(person, g.grid_worker) for g in groups],
        },
        "profiles": list(profile),
        "devices": {
            "id": list(roster.devices),
            "household": [household[d.household_id] for d in devices],
            "profile": [profile[d.profile] for d in devices],
            "ringable": [d.ringable for d in devices],
            "account": [d.account for d in devices],
            "zone": [d.zone for d in devices],
        },
        "patrols": {
            "id": list(roster.patrols),
            "name": [t.name for t in patrols],
            "members": [[person[p] for p in t.members] for t in patrols],
            "groups": [[group[g] for g in t.groups] for t in patrols],
        },
        "duty": [person[p] for p in roster.duty],
        "policies": [
            [
                p.name,
                [[s.after_s, s.ring, [r.value for r in s.sms], [r.value for r in s.call], s.quorum] for s in p.steps],
                p.call_retries,
                p.call_retry_s,
                p.ack_notice,
            ]
            for p in roster.policies.values()
        ],
        "kind_policy": [[kind.value, name] for kind, name in roster.kind_policy.items()],
        "drills": [[d.id, d.household_id, d.kind.value, str(d.schedule)] for d in roster.drills.values()],
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


_STR: frozenset[type] = frozenset({str})
_OPT_STR: frozenset[type] = frozenset({str, type(None)})
_INT: frozenset[type] = frozenset({int})  # an index; bool is a type of its own here
_OPT_INT: frozenset[type] = frozenset({int, type(None)})
_BOOL: frozenset[type] = frozenset({bool})
_LIST: frozenset[type] = frozenset({list})  # of indexes, each checked where it is used


def _columns(table: Any, types: Mapping[str, frozenset[type]]) -> list[list[Any]]:
    """A table's columns in the order of `types`, each checked: a list, as long as the ids, of those types only."""
    columns: list[list[Any]] = []
    for name, allowed in types.items():
        column = table[name]
        if type(column) is not list or (columns and len(column) != len(columns[0])):
            raise CorruptCache(f"column {name}: not a list as long as the ids")
        if not set(map(type, column)) <= allowed:
            raise CorruptCache(f"column {name}: a value of the wrong type")
        columns.append(column)
    return columns


def decode(body: bytes) -> Roster:
    """The roster `encode` wrote. CorruptCache, another ValueError, LookupError or TypeError when the body is
    anything else: a column of the wrong type or length, an index that points nowhere."""
    data = json.loads(body)
    if type(data) is not dict:
        raise CorruptCache("not a JSON object")
    person_ids, names, phones, languages, prefers = _columns(
        data["people"], {"id": _STR, "name": _STR, "phone": _STR, "language": _OPT_STR, "prefers": _STR}
    )
    household_ids, labels, group_refs, addresses, member_refs, device_refs, check_ins = _columns(
        data["households"],
        {"id": _STR, "label": _STR, "group": _INT, "address": _STR, "people": _LIST, "devices": _LIST,
         "check_in": _OPT_INT},
    )  # fmt: skip
    group_ids, group_names, villages, household_refs, leaders, deputies, grid_workers = _columns(
        data["groups"],
        {"id": _STR, "name": _STR, "village": _STR, "households": _LIST, "leader": _INT, "deputy": _OPT_INT,
         "grid_worker": _OPT_INT},
    )  # fmt: skip
    device_ids, device_households, device_profiles, ringables, accounts, zones = _columns(
        data["devices"],
        {"id": _STR, "household": _INT, "profile": _INT, "ringable": _BOOL, "account": _OPT_STR, "zone": _OPT_INT},
    )  # fmt: skip
    patrol_ids, patrol_names, patrol_members, patrol_groups = _columns(
        data["patrols"], {"id": _STR, "name": _STR, "members": _LIST, "groups": _LIST}
    )
    (profiles,) = _columns({"names": data["profiles"]}, {"names": _STR})

    def refs(ids: list[str]) -> Any:
        """Index lists -> tuples of the ids they point at."""
        get = ids.__getitem__
        return lambda indexes: tuple(map(get, indexes))

    def opt(ids: list[str]) -> Any:
        return lambda index: None if index is None else ids[index]

    people = dict(
        zip(person_ids, map(Person, person_ids, names, phones, languages, map(Prefers, prefers)), strict=True)
    )
    households = dict(
        zip(
            household_ids,
            map(Household, household_ids, labels, map(group_ids.__getitem__, group_refs), addresses,
                map(refs(person_ids), member_refs), map(refs(device_ids), device_refs), check_ins),
            strict=True,
        )
    )  # fmt: skip
    groups = dict(
        zip(
            group_ids,
            map(Group, group_ids, group_names, villages, map(refs(household_ids), household_refs),
                map(person_ids.__getitem__, leaders), map(opt(person_ids), deputies),
                map(opt(person_ids), grid_workers)),
            strict=True,
        )
    )  # fmt: skip
    devices = dict(
        zip(
            device_ids,
            map(Device, device_ids, map(household_ids.__getitem__, device_households),
                map(profiles.__getitem__, device_profiles), ringables, accounts, zones),
            strict=True,
        )
    )  # fmt: skip
    patrols = dict(
        zip(
            patrol_ids,
            map(PatrolTeam, patrol_ids, patrol_names, map(refs(person_ids), patrol_members),
                map(refs(group_ids), patrol_groups)),
            strict=True,
        )
    )  # fmt: skip
    policies: dict[str, Policy] = {}
    for name, steps, call_retries, call_retry_s, ack_notice in data["policies"]:
        built: list[Step] = []
        for after, ring, texted, called, quorum in steps:
            if type(after) not in (int, float) or type(ring) is not bool or type(quorum) is not int:
                raise CorruptCache("policy step: after, ring or quorum of the wrong type")
            built.append(Step(after, ring, tuple(map(Role, texted)), tuple(map(Role, called)), quorum))
        if type(name) is not str or type(call_retries) is not int or type(call_retry_s) not in (int, float):
            raise CorruptCache("policy name or call retries: of the wrong type")
        if type(ack_notice) is not bool:
            raise CorruptCache("policy ack_notice: not a bool")
        policies[name] = Policy(name, tuple(built), call_retries, call_retry_s, ack_notice)
    kind_policy: dict[Kind, str] = {}
    for kind, policy_name in data["kind_policy"]:
        if type(policy_name) is not str:
            raise CorruptCache("kinds: policy name not a string")
        kind_policy[Kind(kind)] = policy_name
    return Roster(
        people=people,
        households=households,
        groups=groups,
        devices=devices,
        patrols=patrols,
        duty=refs(person_ids)(data["duty"]),
        policies=policies,
        kind_policy=kind_policy,
        drills={
            str(i): ScheduledDrill(str(i), str(h), Kind(k), parse_schedule(str(spec)))
            for i, h, k, spec in data["drills"]
        },
    )


# ---------------------------------------------------------------------------------------------- the file


def read(path: Path, key: str) -> Roster | None:
    """The cached roster when the file at `path` holds one for `key`; None (and a log line) otherwise."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        _LOGGER.info("roster cache %s: none yet; validating the roster in full", path)
        return None
    except OSError as err:
        _LOGGER.warning("roster cache %s: cannot read it (%s); validating the roster in full", path, err.strerror)
        return None
    try:
        head, _, body = raw.partition(b"\n")
        header = json.loads(head)
        if type(header) is not dict:
            raise CorruptCache("no header")
        if header.get("format") != FORMAT:
            _LOGGER.info(
                "roster cache %s: out of date (written by another version of alertd); validating the roster in full",
                path,
            )
            return None
        if header.get("key") != key:
            _LOGGER.info(
                "roster cache %s: out of date (roster, profiles or alertd changed); validating the roster in full", path
            )
            return None
        if header.get("sha256") != hashlib.sha256(body).hexdigest():
            raise CorruptCache("the body does not match its checksum")
        with no_gc():  # tens of thousands of objects, none of them in a cycle
            return decode(body)
    except (ValueError, LookupError, TypeError, RecursionError) as err:  # JSON, CorruptCache, enums, shapes, indexes
        _LOGGER.warning("roster cache %s: damaged (%s); validating the roster in full", path, err)
        return None


def write(path: Path, key: str, body: bytes) -> None:
    """Replace the cache atomically (a reader sees the old file or the new one); log, never raise, on failure."""
    header = json.dumps({"format": FORMAT, "key": key, "sha256": hashlib.sha256(body).hexdigest()}).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # the store's folder, which the store would make anyway
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(header + b"\n" + body)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as err:
        _LOGGER.warning(
            "roster cache %s: not written (%s); the next start validates the roster in full again",
            path,
            err.strerror or err,
        )


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """No cyclic garbage collection while a roster is built: it makes no cycles, and at 15,000 households the
    collector would otherwise walk every object of the process several times over."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
