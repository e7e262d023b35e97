"""How a configuration problem is written: the entry (counted from 1, as people count), the value, why."""

from __future__ import annotations

import json

from pydantic_core import ErrorDetails


def show(value: object) -> str:
    """A value as it appears in the file, cut short."""
    if isinstance(value, str) and value.isprintable() and '"' not in value and "\\" not in value:
        text = f'"{value}"'  # what json.dumps gives for it, without its cost (called for every roster entry)
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def where(loc: tuple[int | str, ...]) -> str:
    """("devices", 0, "profile") -> "devices[1].profile"."""
    out = ""
    for part in loc:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def reason(error: ErrorDetails) -> str:
    """pydantic's complaint in the words of a config file."""
    match error["type"]:
        case "extra_forbidden":
            return "unknown key"
        case "missing":
            return "required key missing"
        case "value_error":
            return str(error.get("ctx", {}).get("error", error["msg"]))
    msg = error["msg"]
    return msg[:1].lower() + msg[1:]
