"""What every codec shares: one error base whose `reason` is a short, fixed label for metrics, and how an
offending value is quoted in an error message."""

from __future__ import annotations

from typing import Generic, TypeVar

from alertd.errors import AlertdError

R = TypeVar("R", bound=str)

QUOTE_LIMIT = 40  # characters of an offending value quoted in an error message


class CodecError(AlertdError, ValueError, Generic[R]):
    """Bytes from the world we cannot accept; `reason` labels the metric, the message says exactly why."""

    def __init__(self, reason: R, message: str) -> None:
        super().__init__(message)
        self.reason: R = reason


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """repr() of an offending value, cut short: error messages name it, logs stay one line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
