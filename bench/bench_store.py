"""The store's part of an alarm, alone: commit the alarm's batch, claim its 9 rings and 3 SMS, record them.

    .venv/bin/python -m bench.bench_store [--alarms 2000] [--json out.json]

What the engine and the two outbox workers ask of the store for each alarm, on a real SQLite file in a
temp dir (synchronous=FULL for commits, as shipped), without the broker or Twilio, so the figure is the
store's own and the machine's noise is small:

* trickle: one alarm per commit, then its rows claimed and recorded (each alarm alone);
* burst: alarms committed 256 at a time (the engine's batch), rows claimed 16 at a time (the terminal
  worker's refill) and recorded in the same chunks.

Reported: wall and CPU time (this process, every thread) per alarm, best of 3. The floor is the same SQL
run straight on sqlite3 in this thread, with the same transactions and fsyncs: what any store must pay.
Run it in each tree to compare (`cd other-tree && python -m bench.bench_store`): it uses only the Store API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from alertd.core.incidents import Channel, Incident, Notification, Purpose, State, TimelineEntry
from alertd.core.model import Kind
from alertd.core.records import Batch
from alertd.store import SendResult, Status, Store

RINGS, SMS = 9, 3
ENGINE_BATCH = 256
REFILL = 16


def batch_for(alarm: int, now: float) -> Batch:
    batch = Batch(now)
    batch.incidents[alarm] = Incident(
        alarm, f"h{alarm}", f"g{alarm // 10}", Kind.PANIC, "default", State.OPEN, now, now, 1, now + 120
    )
    batch.timeline.append(TimelineEntry(alarm, now, "opened", f"{alarm}号户", "panic via mqtt"))
    batch.notifications += [
        Notification(alarm, 0, Channel.TERMINAL, Purpose.ALERT, f"t{alarm}-{r}", f"p/dev/t{alarm}-{r}/cmd",
                     f'{{"type":"ring","incident":{alarm},"kind":"panic","from":"h","label":"1号户"}}')
        for r in range(RINGS)
    ] + [
        Notification(alarm, 0, Channel.SMS, Purpose.ALERT, f"p{alarm}-{s}", f"+86138{alarm:04d}{s:04d}",
                     "【联防】1号户 李家 求救(火警)，回复1确认")
        for s in range(SMS)
    ]  # fmt: skip
    batch.seen.append((f"t{alarm}", alarm))
    return batch


async def run_store(path: Path, alarms: int, burst: bool) -> None:
    store = await Store.open(path)
    try:
        claim_due = getattr(store, "claim_due", None)

        async def claim(channel: Channel, now: float, limit: int) -> list[Any]:
            if claim_due is not None:
                return list(await claim_due(channel, now, limit, "bench"))
            rows = await store.due(channel, now, limit=limit)
            if rows:
                await store.claim([r.id for r in rows], "bench", now)
            return rows

        async def drain(now: float, limit: int) -> None:
            for channel in (Channel.TERMINAL, Channel.SMS):
                while rows := await claim(channel, now, limit):
                    await store.record_results([SendResult(r.id, Status.SENT, "bench") for r in rows], now)

        now = 1_000_000.0
        step = ENGINE_BATCH if burst else 1
        for first in range(1, alarms + 1, step):
            merged = Batch(now)
            for alarm in range(first, min(first + step, alarms + 1)):
                one = batch_for(alarm, now)
                merged.incidents.update(one.incidents)
                merged.timeline += one.timeline
                merged.notifications += one.notifications
                merged.seen += one.seen
            await store.commit(merged)
            await drain(now, REFILL if burst else RINGS)
            now += 0.05
    finally:
        await store.close()


def run_floor(path: Path, alarms: int, burst: bool) -> None:
    """The same rows and transactions on sqlite3 directly: no thread, no objects, no store."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE IF NOT EXISTS n (id INTEGER PRIMARY KEY, incident INTEGER, channel TEXT, "
               "address TEXT, body TEXT, status TEXT)")  # fmt: skip
    db.execute("CREATE INDEX IF NOT EXISTS n_due ON n (channel, status)")
    step = ENGINE_BATCH if burst else 1
    for first in range(1, alarms + 1, step):
        rows = [(a, "terminal" if k < RINGS else "sms", f"a{a}-{k}", "x" * 60, "pending")
                for a in range(first, min(first + step, alarms + 1)) for k in range(RINGS + SMS)]  # fmt: skip
        db.execute("PRAGMA synchronous = FULL")
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO n (incident, channel, address, body, status) VALUES (?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
        db.execute("PRAGMA synchronous = NORMAL")
        for channel in ("terminal", "sms"):
            limit = REFILL if burst else RINGS
            due = "SELECT id FROM n WHERE channel = ? AND status = 'pending' LIMIT ?"
            while ids := [r[0] for r in db.execute(due, (channel, limit))]:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("UPDATE n SET status = 'sending' WHERE id = ?", [(i,) for i in ids])
                db.execute("COMMIT")
                db.execute("BEGIN IMMEDIATE")
                db.executemany("UPDATE n SET status = 'sent' WHERE id = ?", [(i,) for i in ids])
                db.execute("COMMIT")
    db.close()


def measure(fn: Any, alarms: int, burst: bool) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(3):
        with tempfile.TemporaryDirectory(prefix="alertd-bench-store-") as work:
            path = Path(work) / "alertd.db"
            wall, cpu = time.perf_counter(), time.process_time()
            fn(path, alarms, burst)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if not best or wall < best["wall_ms"] * alarms / 1000:
            best = {"wall_ms": wall * 1000 / alarms, "cpu_ms": cpu * 1000 / alarms}
    return best


def main() -> None:
    logging.disable(logging.WARNING)  # "No store at ...: created a new, empty one", every repeat
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alarms", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for mode, burst, count in (("trickle", False, args.alarms // 4), ("burst", True, args.alarms)):
        store = measure(lambda p, a, b: asyncio.run(run_store(p, a, b)), count, burst)
        floor = measure(run_floor, count, burst)
        results[mode] = {"alarms": count, "store": store, "floor": floor}
        print(f"{mode:8} ({count} alarms): store {store['wall_ms']:.3f} ms wall / {store['cpu_ms']:.3f} ms CPU "
              f"per alarm; floor {floor['wall_ms']:.3f} / {floor['cpu_ms']:.3f}; "
              f"ratio {store['wall_ms'] / floor['wall_ms']:.2f}x wall, {store['cpu_ms'] / floor['cpu_ms']:.2f}x CPU",
              flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
