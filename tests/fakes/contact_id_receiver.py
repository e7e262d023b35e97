"""An alarm receiver's automation output (Sur-Gard MLR2 style) on a real pty.

The daemon opens :attr:`FakeReceiver.path` like the serial port of a receiver; the test writes what the
receiver would print (``send_line``) and reads back what the daemon answered (``acks``). The pty,
symlink, ``unplug()`` and ``replug()`` behave as for :class:`tests.fakes.gsm_modem.FakeModem`.

``acks`` splits the daemon's bytes into replies: every ACK (0x06) and NAK (0x15) byte is one entry;
any other bytes are grouped into one entry up to and including a CR or LF (``received`` keeps the raw
stream).
"""

from __future__ import annotations

import asyncio

from tests.fakes.gsm_modem import PtyPort

__all__ = ["ACK", "NAK", "FakeReceiver"]

ACK = b"\x06"
NAK = b"\x15"
_SINGLE = frozenset(ACK + NAK)
_LINE_END = frozenset(b"\r\n")


class FakeReceiver(PtyPort):
    """A receiver's serial output on a pty; records the daemon's replies."""

    def __init__(self, *, name: str = "ttyS1") -> None:
        super().__init__(name)
        self.acks: list[bytes] = []
        self.received = bytearray()
        self._partial = bytearray()
        self._changed = asyncio.Event()

    async def send_line(self, text: str, terminator: str = "\r") -> None:
        """Print one line the way the receiver does (``text`` may carry DC4 0x14 itself)."""
        await self.send_raw((text + terminator).encode("latin-1"))

    async def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (for split or glued lines)."""
        if not self.connected:
            raise ConnectionError("the receiver is unplugged")
        self._write(data)
        await asyncio.sleep(0)

    async def wait_for_acks(self, n: int, timeout: float = 5.0) -> list[bytes]:
        """Wait until ``n`` replies arrived; TimeoutError saying what did arrive otherwise."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.acks) < n:
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"waited {timeout}s for {n} replies; got {self.acks!r}") from None
        return self.acks[:n]

    def _on_plug(self) -> None:
        self._partial.clear()

    def _on_data(self, data: bytes) -> None:
        self.received += data
        for byte in data:
            if byte in _SINGLE:
                self.acks.append(bytes([byte]))
            else:
                self._partial.append(byte)
                if byte in _LINE_END:
                    self.acks.append(bytes(self._partial))
                    self._partial.clear()
        self._changed.set()
