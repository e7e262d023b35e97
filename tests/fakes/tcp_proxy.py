"""A TCP relay on loopback in front of a real server, that a test can cut like a network partition.

`cut()` stops every byte both ways without closing anything: the client hears nothing, not even a reset,
as when a cable or a switch between it and the database fails. Connections made after the cut hang too.
`cut(spare=...)` leaves the connections with those numbers (1 for the first accepted) flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

CHUNK = 65536


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        self._cut = asyncio.Event()
        self._spared: frozenset[int] = frozenset()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def cut(self, spare: frozenset[int] = frozenset()) -> None:
        self._spared = spare
        self._cut.set()

    def _dropping(self, number: int) -> bool:
        return self._cut.is_set() and number not in self._spared

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        if self._dropping(number):
            await self._swallow(reader, writer)  # the server is unreachable: the client waits
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._spawn(self._pump(reader, up_writer, number))
        await self._pump(up_reader, writer, number)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        try:
            while data := await reader.read(CHUNK):
                if self._dropping(number):
                    continue  # dropped on the floor, as by a dead link
                writer.write(data)
                await writer.drain()
            if not self._dropping(number):
                writer.close()
        except (ConnectionError, OSError):
            writer.close()

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while await reader.read(CHUNK):
                pass
        writer.close()
