"""`alertd status`: is this instance running, active or standby, and which instance is active (issue 15).

It asks the local daemon's /healthz (on [http] listen). When nobody answers there and the store is a shared
PostgreSQL, it still says who holds the lease, from the database: an operator on the standby's console
learns which node is serving the alarms even while this one is down.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from alertd.config import Config

TIMEOUT_S = 3.0
EXIT_OK, EXIT_UNHEALTHY = 0, 1


def run(config: Config, *, as_json: bool) -> int:
    http = config.settings.http
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host  # noqa: S104 (a wildcard bind: ask loopback)
    url = f"http://{host}:{http.port}/healthz"
    body = _healthz(url)
    if body is None:
        holder = _lease_holder(config.settings.store.url) if config.settings.store.url else None
        if as_json:
            print(json.dumps({"ok": False, "role": "not running", "active": holder}, ensure_ascii=False))
        else:
            print(f"alertd {config.settings.standby.instance}: not running (no answer at {url})")
            if holder is not None:
                print(f"active: {holder or 'none'} (the lease in the database)")
        return EXIT_UNHEALTHY
    if as_json:
        print(json.dumps(body, ensure_ascii=False, indent=1))
    else:
        print(_describe(body))
    return EXIT_OK if body.get("ok") else EXIT_UNHEALTHY


def _describe(body: dict[str, Any]) -> str:
    role, instance, active = body.get("role", "active"), body.get("instance") or "", body.get("active")
    head = f"alertd {instance}: {role}".replace("alertd : ", "alertd: ")
    if role == "standby":
        head += f" (active: {active or 'none yet'})"
    lines = [head + ("" if body.get("ok") else ", NOT healthy")]
    for name, check in sorted(body.get("checks", {}).items()):
        if not check.get("ok"):
            lines.append(f"  {name}: {check.get('detail')}")
    return "\n".join(lines)


def _healthz(url: str) -> dict[str, Any] | None:
    """The daemon's /healthz answer (also when it says 503: unhealthy is an answer), None if nobody answers."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 (our own http:// URL)
            raw = response.read()
    except urllib.error.HTTPError as err:
        raw = err.read()
    except (urllib.error.URLError, OSError):
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _lease_holder(url: str | None) -> str | None:
    """Who holds an unexpired lease ("" for nobody), or None when the database cannot be asked."""
    import psycopg  # noqa: PLC0415 (only here, and only for a PostgreSQL store)

    from alertd.lease_table import LeaseTable  # noqa: PLC0415

    if url is None:
        return None
    try:
        with psycopg.connect(url, connect_timeout=int(TIMEOUT_S), autocommit=True) as conn:
            row = conn.execute(LeaseTable().holder_query()).fetchone()
    except psycopg.Error:
        return None
    return "" if row is None else str(row[0])
