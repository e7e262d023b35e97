"""Phone numbers: normalization to E.164 and masking for logs."""

from __future__ import annotations

import phonenumbers
import pytest

from alertd.phones import mask, normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13800010201", "+8613800010201"),
        ("138 0001 0201", "+8613800010201"),
        ("138-0001-0201", "+8613800010201"),
        ("+86 138 0001 0201", "+8613800010201"),
        ("0086 138 0001 0201", "+8613800010201"),
        ("+1 415 555 2671", "+14155552671"),
    ],
)
def test_normalize_gives_e164(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_normalize_uses_the_default_region() -> None:
    assert normalize("(415) 555-2671", region="US") == "+14155552671"


@pytest.mark.parametrize("raw", ["12345", "", "not a number", "138 0001 020", "+86 12 3456 7890"])
def test_normalize_rejects_invalid(raw: str) -> None:
    with pytest.raises(ValueError, match="not a valid phone number"):
        normalize(raw)


@pytest.mark.parametrize(
    ("e164", "expected"),
    [
        ("+8613812345678", "+86138****5678"),
        ("+14155552671", "+1415****2671"),
        ("+85291234567", "+852****67"),  # Hong Kong: 8 national digits, so less is shown
        ("13812345678", "138****5678"),  # no country code: still masked
        ("+86123", "+86****"),
        ("", "****"),
        ("garbage", "****"),
    ],
)
def test_mask(e164: str, expected: str) -> None:
    assert mask(e164) == expected


def test_mask_never_shows_the_middle_digits() -> None:
    masked = mask("+8613800010201")
    assert "0001" not in masked.removeprefix("+86138")
    assert masked.endswith("0201")


@pytest.mark.parametrize(
    "raw",
    ["+8613800010005", "+390612345678", "+14155552671", "+447911123456", "+85291234567", "+8675512345678"],
)
def test_canonical_numbers_take_the_fast_path_to_the_same_answer(raw: str) -> None:
    slow = phonenumbers.format_number(phonenumbers.parse(raw, "CN"), phonenumbers.PhoneNumberFormat.E164)
    assert normalize(raw) == slow == raw


@pytest.mark.parametrize("raw", ["+8612345", "+861380001000", "+86999999999999", "+0123456789"])
def test_canonical_looking_but_invalid_numbers_are_still_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="not a valid phone number"):
        normalize(raw)
