"""One error root for alertd, split by what the caller should do about it."""

from __future__ import annotations


class AlertdError(Exception):
    """Base of every error alertd raises on purpose."""


class TransientError(AlertdError):
    """Worth retrying later: timeouts, 5xx, 429, a broker or modem that went away."""


class PermanentError(AlertdError):
    """Retrying will not help (invalid number, rejected message): record it and tell a person."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ConfigError(AlertdError):
    """The configuration or roster is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StoreError(AlertdError):
    """The store is unusable (failed integrity check, schema from the future)."""


class StoreFull(TransientError):
    """A write to the store failed for lack of space (or an I/O error): nothing was committed; retry later."""
