"""Phone numbers: normalize whatever the roster says to E.164, and mask numbers before they reach a log.

phonenumbers is imported on first use, not with this module: a start that reads its roster from the cache
(alertd.roster_cache) may need no number checked at all, and the import costs ~20 ms.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import phonenumbers

# ruff: noqa: PLC0415

__all__ = ["mask", "normalize"]


_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def normalize(raw: str, region: str = "CN") -> str:
    """E.164 form of `raw` ("138 0000 0001", "+86-138-0000-0001", ...); ValueError if it cannot be a number."""
    import phonenumbers

    if _E164.fullmatch(raw) and (number := _from_e164(raw)) is not None and phonenumbers.is_valid_number(number):
        return raw  # already canonical: skip the general parser, the slow part of loading a large roster
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as err:
        raise ValueError(f"not a valid phone number: {raw!r}") from err
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"not a valid phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _from_e164(text: str) -> phonenumbers.PhoneNumber | None:
    import phonenumbers

    digits = text[1:]
    for size in (1, 2, 3):  # country codes are one to three digits and prefix-free
        code = int(digits[:size])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            national = digits[size:]
            if not national or national[0] == "0":
                return None  # a leading zero (Italy...) needs the general parser
            return phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    return None


def mask(e164: str) -> str:
    """ "+8613812345678" -> "+86138****5678". Never raises: it is called while logging, on anything."""
    import phonenumbers

    digits = "".join(c for c in e164 if c.isdigit())
    country = ""
    if e164.startswith("+"):
        try:
            country = str(phonenumbers.parse(e164, None).country_code)
        except phonenumbers.NumberParseException:
            country = ""
        if digits.startswith(country):
            digits = digits[len(country) :]
        else:
            country = ""
    prefix = f"+{country}" if country else ""
    # Short numbers would be given away by head + tail, so show less of them.
    if len(digits) >= 9:
        return f"{prefix}{digits[:3]}****{digits[-4:]}"
    if len(digits) >= 5:
        return f"{prefix}****{digits[-2:]}"
    return f"{prefix}****"
