"""Serial lines: open a port by URL, run a session on it, reopen with capped backoff when it goes away.

pyserial's serial_for_url takes a device path (/dev/ttyUSB0), socket://host:port (a serial-over-IP
converter) and rfc2217://host:port alike, so a USB adapter, a converter in the township office and a
pty in a test take the same path. I/O runs on the event loop (pyserial-asyncio-fast); no threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import serial
import serial_asyncio_fast

from alertd.core.ports import Health

_LOGGER = logging.getLogger(__name__)

OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 2.0
REOPEN_MIN_S = 0.5
REOPEN_MAX_S = 30.0
READ_CHUNK = 1024


@dataclass(frozen=True, slots=True)
class LineSettings:
    name: str
    url: str
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"  # N, E, O (Sur-Gard receivers print 7E1)
    stopbits: float = 1


Session = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class LineClosed(ConnectionError):
    """The far end closed the line (EOF): reopen it."""


class SerialLine:
    """One port, supervised: the session runs while the port is open; unplug or EOF reopens it."""

    def __init__(self, settings: LineSettings, session: Session, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.session = session
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not security)
        self._up = False
        self._last_error = "not opened yet"
        self.up = asyncio.Event()

    def health(self) -> Health:
        return Health(True) if self._up else Health(False, self._last_error)

    async def run(self) -> None:
        failures = 0
        while True:
            writer: asyncio.StreamWriter | None = None
            try:
                async with asyncio.timeout(OPEN_TIMEOUT_S):
                    reader, writer = await serial_asyncio_fast.open_serial_connection(
                        url=self.settings.url,
                        baudrate=self.settings.baudrate,
                        bytesize=self.settings.bytesize,
                        parity=self.settings.parity,
                        stopbits=self.settings.stopbits,
                    )
                self._opened(failures)
                failures = 0
                await self.session(reader, writer)
                raise LineClosed("end of file")
            except (OSError, serial.SerialException, TimeoutError) as err:
                failures += 1
                self._set_down(f"{type(err).__name__}: {err}", failures)
            finally:
                if writer is not None:
                    await _close(writer)
            delay = min(REOPEN_MAX_S, REOPEN_MIN_S * 2 ** min(failures, 10)) * self._rng.uniform(0.5, 1.0)
            await asyncio.sleep(delay)

    def _opened(self, failures: int) -> None:
        self._up = True
        self.up.set()
        _LOGGER.info("Serial line %s open (%s)%s", self.settings.name, self.settings.url,
                     " again" if failures else "")  # fmt: skip

    def _set_down(self, reason: str, failures: int) -> None:
        was_up = self._up
        self._up = False
        self.up.clear()
        self._last_error = f"line down: {reason}"
        # One line when it goes down; repeats of the same outage only at DEBUG.
        level = logging.WARNING if was_up or failures == 1 else logging.DEBUG
        _LOGGER.log(level, "Serial line %s (%s) down: %s", self.settings.name, self.settings.url, reason)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close the port and wait for it: pyserial closes the device in an executor, which must not outlive us."""
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await writer.wait_closed()


async def read_chunks(reader: asyncio.StreamReader) -> bytes:
    """The next bytes from the line, whatever size they come in; LineClosed at EOF."""
    chunk = await reader.read(READ_CHUNK)
    if not chunk:
        raise LineClosed("end of file")
    return chunk
