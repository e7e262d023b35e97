"""A batch sender (the broker link for ring and stop commands) gets each claim whole, in one call, and every
message of the batch is recorded by its own outcome: sent, retried, failed for good. A batch sender that
breaks leaves no row stranded in 'sending'. A real store; the carrier is a double that answers per message."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from alertd.core.ports import BatchSender, Health, Outbound
from alertd.core.records import Batch, Channel, Notification, Purpose
from alertd.errors import PermanentError, TransientError
from alertd.metrics import Metrics
from alertd.outbox import OutboxWorker
from alertd.store import Claim, OutboxRow, Status, Store

NOW = 1000.0


class Publishing:
    """Answers each message of a batch by its address: 'bad/#' for good, 'busy/…' for now, else sent."""

    name = "mqtt"

    def __init__(self, *, broken: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.single: list[int] = []
        self.broken = broken

    async def send(self, message: Outbound) -> str | None:
        self.single.append(message.id)
        return None

    async def send_all(self, messages: Sequence[Outbound]) -> list[Exception | None]:
        self.batches.append([m.id for m in messages])
        if self.broken:
            raise RuntimeError("a bug in the carrier")
        return [
            PermanentError(f"publish to {m.address!r}: wildcard")
            if m.address.startswith("bad/")
            else TransientError("no PUBACK")
            if m.address.startswith("busy/")
            else None
            for m in messages
        ]

    async def find_sent(self, message: Outbound) -> str | None:
        return None

    def health(self) -> Health:
        return Health(True)


@contextlib.asynccontextmanager
async def store_with_commands(tmp_path: Path, addresses: list[str]) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "alertd.db")
    try:
        batch = Batch(NOW)
        batch.notifications += [
            Notification(None, 0, Channel.TERMINAL, Purpose.ALERT, f"d{i}", address, '{"type":"ring"}', scope="t")
            for i, address in enumerate(addresses)
        ]
        await store.commit(batch)
        yield store
    finally:
        await store.close()


async def settle(store: Store, count: int) -> list[OutboxRow]:
    """The rows once none is pending-and-due or in 'sending' any more."""
    async with asyncio.timeout(5):
        while True:
            rows = await store.notifications()
            if len(rows) == count and all(r.status != Status.SENDING and r.attempts > 0 for r in rows):
                return rows
            await asyncio.sleep(0.01)


async def test_a_claim_goes_to_a_batch_sender_whole_and_each_message_is_recorded_by_its_outcome(
    tmp_path: Path,
) -> None:
    addresses = ["alertd/dev/t1/cmd", "bad/#", "alertd/dev/t2/cmd", "busy/t3/cmd", "alertd/dev/t4/cmd"]
    async with store_with_commands(tmp_path, addresses) as store:
        carrier = Publishing()
        assert isinstance(carrier, BatchSender)
        worker = OutboxWorker(store, Channel.TERMINAL, carrier, Metrics(), clock=lambda: NOW, concurrency=16)
        task = asyncio.create_task(worker.run())
        try:
            rows = {r.address: r for r in await settle(store, len(addresses))}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert len(carrier.batches) == 1
        assert sorted(carrier.batches[0]) == sorted(r.id for r in rows.values())
        assert carrier.single == []
        assert [rows[a].status for a in addresses] == [
            Status.SENT, Status.FAILED, Status.SENT, Status.PENDING, Status.SENT,
        ]  # fmt: skip
        assert rows["bad/#"].error is not None
        assert "wildcard" in rows["bad/#"].error
        busy = rows["busy/t3/cmd"]
        assert busy.error == "no PUBACK"
        assert busy.next_attempt_at > NOW
        assert all(r.carrier == "mqtt" for r in rows.values())


async def test_a_batch_sender_that_breaks_strands_no_row_in_sending(tmp_path: Path) -> None:
    addresses = ["alertd/dev/t1/cmd", "alertd/dev/t2/cmd"]
    async with store_with_commands(tmp_path, addresses) as store:
        carrier = Publishing(broken=True)
        worker = OutboxWorker(store, Channel.TERMINAL, carrier, Metrics(), clock=lambda: NOW)
        task = asyncio.create_task(worker.run())
        try:
            rows = await settle(store, len(addresses))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert [r.status for r in rows] == [Status.PENDING, Status.PENDING]
        assert all(r.error is not None and "a bug in the carrier" in r.error for r in rows)
        assert all(r.next_attempt_at > NOW for r in rows)


async def test_a_commit_claims_its_new_rows_for_the_worker_that_has_room(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "alertd.db")
    try:
        batch = Batch(NOW)
        batch.notifications += [
            Notification(None, 0, Channel.TERMINAL, Purpose.ALERT, f"t{i}", f"alertd/dev/t{i}/cmd", "{}", scope="t")
            for i in range(3)
        ]
        batch.notifications.append(
            Notification(None, 0, Channel.SMS, Purpose.ALERT, "p1", "+8613800010001", "【联防】", scope="t")
        )
        claimed = await store.commit(batch, {Channel.TERMINAL: Claim(2, "mqtt")})
        assert set(claimed) == {Channel.TERMINAL}
        assert [r.recipient for r in claimed[Channel.TERMINAL]] == ["t0", "t1"]
        rows = {r.recipient: r for r in await store.notifications()}
        assert [(rows[k].status, rows[k].attempts, rows[k].carrier) for k in ("t0", "t1")] == [
            (Status.SENDING, 1, "mqtt")
        ] * 2
        assert rows["t2"].status == Status.PENDING  # no room for it: the worker claims it itself
        assert rows["p1"].status == Status.PENDING  # no claim asked for texts
        # A worker with room, but none of its rows in this commit: its own loop claims them, not the engine.
        later = Batch(NOW + 1)
        later.notifications.append(
            Notification(None, 0, Channel.TERMINAL, Purpose.ALERT, "t9", "alertd/dev/t9/cmd", "{}", scope="t")
        )
        assert await store.commit(later, {Channel.SMS: Claim(5, "twilio")}) == {}
        assert {r.recipient: r.status for r in await store.notifications()}["p1"] == Status.PENDING
    finally:
        await store.close()


class Unsure(Publishing):
    """A carrier whose lookups hang until released: the worker is still reconciling meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def find_sent(self, message: Outbound) -> str | None:
        await self.release.wait()
        return None


async def test_a_worker_takes_nothing_from_commits_until_it_has_reconciled_a_crashs_sends(tmp_path: Path) -> None:
    async with store_with_commands(tmp_path, ["alertd/dev/t1/cmd"]) as store:
        [row] = await store.claim_due(Channel.TERMINAL, NOW, 10, "mqtt")  # then the daemon was killed
        carrier = Unsure()
        worker = OutboxWorker(store, Channel.TERMINAL, carrier, Metrics(), clock=lambda: NOW, concurrency=16)
        assert worker.room() == Claim(0, "mqtt")
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.sleep(0.1)
            # Reconciling: a row claimed in a commit now would be taken for one of the crash's.
            assert worker.room() == Claim(0, "mqtt")
            carrier.release.set()
            async with asyncio.timeout(5):
                while worker.room().limit == 0:
                    await asyncio.sleep(0.01)
            assert worker.room() == Claim(16, "mqtt")
            [resent] = await settle(store, 1)
            assert resent.id == row.id
            assert resent.status == Status.SENT
            assert carrier.batches == [[row.id]]
            await worker.drain(1.0)
            assert worker.room() == Claim(0, "mqtt")  # draining: commits keep their rows pending
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
