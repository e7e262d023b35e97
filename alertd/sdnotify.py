"""A tiny, dependency-free sd_notify(3) client.

systemd passes the address of its notification socket in ``NOTIFY_SOCKET``; the
service tells it about its state by sending newline-separated ``KEY=VALUE``
assignments in one datagram.  When the variable is missing (run from a shell, in
tests, in a container without systemd) the :class:`Notifier` is inactive and every
method is a cheap no-op, so the daemon can call it unconditionally.

Sending never raises into the caller: the daemon's health must not depend on the
supervisor's socket.  The first failure is logged at WARNING, repeats at DEBUG,
and the first success after a failure at INFO.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Self

__all__ = ["Notifier"]

_LOGGER = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"

#: Ping the watchdog this many times per WatchdogSec interval (sd_watchdog_enabled(3)
#: recommends half the interval).
WATCHDOG_PINGS_PER_INTERVAL = 2


def _parse_address(raw: str) -> str | bytes | None:
    """Turn a ``NOTIFY_SOCKET`` value into a ``sendto`` address, or None if unsupported."""
    if raw.startswith("@") and len(raw) > 1:
        # Linux abstract namespace: leading NUL byte instead of the "@".
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    # Relative paths are not allowed; "vsock:" addresses (systemd >= 253 in VMs)
    # are outside what this daemon needs.
    return None


def _parse_watchdog_usec(environ: Mapping[str, str], pid: int) -> int | None:
    raw_usec = environ.get(WATCHDOG_USEC_ENV)
    if not raw_usec:
        return None
    try:
        usec = int(raw_usec)
    except ValueError:
        _LOGGER.warning("Ignoring invalid %s=%r", WATCHDOG_USEC_ENV, raw_usec)
        return None
    if usec <= 0:
        return None
    raw_pid = environ.get(WATCHDOG_PID_ENV)
    if raw_pid:
        try:
            watchdog_pid = int(raw_pid)
        except ValueError:
            _LOGGER.warning("Ignoring invalid %s=%r", WATCHDOG_PID_ENV, raw_pid)
            return None
        if watchdog_pid != pid:
            # The watchdog is meant for another process (e.g. our parent).
            return None
    return usec


class Notifier:
    """Sends state notifications to systemd; inactive when there is no socket.

    Build it with :meth:`from_env` from the process environment mapping.  The
    datagram socket is opened lazily on the first send and is non-blocking.
    """

    __slots__ = ("_address", "_failing", "_sock", "_watchdog_usec")

    def __init__(self, address: str | bytes | None, *, watchdog_usec: int | None = None) -> None:
        """Use *address* (a path, or ``b"\\0name"`` for an abstract socket; None for inactive)."""
        self._address = address
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, pid: int | None = None) -> Notifier:
        """Build from an environment mapping (normally ``os.environ``).

        *pid* is the process id compared with ``WATCHDOG_PID``; it defaults to ours.
        """
        raw = environ.get(NOTIFY_SOCKET_ENV, "")
        address: str | bytes | None = None
        if raw:
            address = _parse_address(raw)
            if address is None:
                _LOGGER.warning("Unsupported %s=%r; systemd notifications disabled", NOTIFY_SOCKET_ENV, raw)
        watchdog_usec = _parse_watchdog_usec(environ, os.getpid() if pid is None else pid)
        return cls(address, watchdog_usec=watchdog_usec)

    @property
    def active(self) -> bool:
        """True when there is a notification socket to talk to."""
        return self._address is not None

    def watchdog_interval_s(self) -> float | None:
        """Seconds between watchdog pings (half of WatchdogSec), or None if no watchdog is wanted."""
        if self._watchdog_usec is None or not self.active:
            return None
        return self._watchdog_usec / 1_000_000 / WATCHDOG_PINGS_PER_INTERVAL

    # --- the notifications ------------------------------------------------------------

    def ready(self, status: str | None = None) -> bool:
        """Startup (or a reload) is complete; systemd considers the unit started."""
        return self._send("READY=1", status)

    def reloading(self, status: str | None = None) -> bool:
        """A reload has started; follow it with :meth:`ready` when it is done.

        Carries ``MONOTONIC_USEC`` so it also satisfies ``Type=notify-reload``.
        """
        return self._send(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}", status)

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun (draining in-flight sends)."""
        return self._send("STOPPING=1", status)

    def watchdog(self) -> bool:
        """Keep-alive ping; send it every :meth:`watchdog_interval_s` seconds."""
        return self._send("WATCHDOG=1", None)

    def status(self, text: str) -> bool:
        """Free-form one-line status shown by ``systemctl status``."""
        return self._send(None, text)

    def notify(self, *assignments: str) -> bool:
        """Send raw ``KEY=VALUE`` assignments in one datagram (for anything not covered above)."""
        return self._send("\n".join(assignments), None)

    # --- plumbing ---------------------------------------------------------------------

    def _send(self, state: str | None, status: str | None) -> bool:
        """Send one datagram; return True if it was handed to the kernel. Never raises."""
        if self._address is None:
            return False
        lines: list[str] = []
        if state:
            lines.append(state)
        if status is not None:
            # A newline would start a new assignment: keep the status on one line.
            lines.append("STATUS=" + " ".join(status.splitlines()))
        if not lines:
            return False
        payload = "\n".join(lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto(payload, self._address)
        except OSError as err:
            if self._failing:
                _LOGGER.debug("sd_notify still failing: %s", err)
            else:
                self._failing = True
                _LOGGER.warning("sd_notify to %r failed: %s", self._address, err)
            return False
        if self._failing:
            self._failing = False
            _LOGGER.info("sd_notify works again")
        return True

    def close(self) -> None:
        """Close the socket (idempotent); a later send reopens it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Notifier(address={self._address!r}, watchdog_usec={self._watchdog_usec!r})"
