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
    """The store is unusable and a person must act: an empty, damaged or foreign file, a failed integrity
    check, a schema from the future, no permission. Starting again cannot help (exit 2, not restarted)."""


class StoreUnavailable(TransientError):
    """The store cannot be opened just now (disk full, I/O error, locked): a later start may succeed."""


class StoreFull(TransientError):
    """A write to the store failed for lack of space (or an I/O error): nothing was committed; retry later."""


class Deposed(AlertdError):
    """This instance no longer holds the lease (issue 15): another instance is active, or this one could not
    renew in time. It must stop acting at once: nothing it tried to write was written."""
