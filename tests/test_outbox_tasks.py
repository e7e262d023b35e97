"""The outbox worker owns its tasks: the sends in flight and the recorder end with the worker, and a
failure in one of them stops the worker instead of dying unseen. A real store, a carrier that hangs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alertd.core.ports import Health, Outbound
from alertd.core.records import Batch, Channel, Notification, Purpose
from alertd.metrics import Metrics
from alertd.outbox import OutboxWorker
from alertd.store import Store

NOW = 1000.0


class Hanging:
    """Takes every message and never answers; remembers how each attempt ended."""

    name = "hanging"

    def __init__(self) -> None:
        self.started: list[int] = []
        self.cancelled: list[int] = []

    async def send(self, message: Outbound) -> str | None:
        self.started.append(message.id)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # a carrier that tidies up (closes a request) before it is gone
            self.cancelled.append(message.id)
            raise
        return None

    async def find_sent(self, message: Outbound) -> str | None:
        return None

    def health(self) -> Health:
        return Health(True)


@contextlib.asynccontextmanager
async def store_with_rows(tmp_path: Path, count: int) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "alertd.db")
    try:
        batch = Batch(NOW)
        batch.notifications += [
            Notification(None, 0, Channel.SMS, Purpose.ALERT, f"p{i}", f"+86138000100{i:02d}", "【联防】", scope="t")
            for i in range(count)
        ]
        await store.commit(batch)
        yield store
    finally:
        await store.close()


async def test_cancelling_the_worker_waits_for_its_sends_in_flight(tmp_path: Path) -> None:
    async with store_with_rows(tmp_path, 3) as store:
        carrier = Hanging()
        worker = OutboxWorker(store, Channel.SMS, carrier, Metrics(), clock=lambda: NOW)
        task = asyncio.create_task(worker.run())
        async with asyncio.timeout(5):
            while len(carrier.started) < 3:
                await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Every send had ended (and tidied up) by the time the worker was gone: none is left running
        # against a store about to be closed.
        assert sorted(carrier.cancelled) == sorted(carrier.started)
        assert worker.in_flight == 0


async def test_a_recorder_that_cannot_record_stops_the_worker_loudly(tmp_path: Path) -> None:
    async with store_with_rows(tmp_path, 1) as store:

        class Broken(Hanging):
            async def send(self, message: Outbound) -> str | None:
                await store.close()  # the store goes away under the recorder: recording must fail
                return "id-1"

        worker = OutboxWorker(store, Channel.SMS, Broken(), Metrics(), clock=lambda: NOW)
        async with asyncio.timeout(5):
            with pytest.raises(ExceptionGroup):
                await worker.run()
