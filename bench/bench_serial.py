"""Serial-line benchmark: Contact ID receiver in, GSM modem out, and the codecs in between.

    .venv/bin/python -m bench.bench_serial [--quick] [--json out.json] [--keep] [--broker-port 1883 | --own-broker]

One run measures, once each (the machine is shared and noisy; compare ratios, not single numbers):

1. **Contact ID line -> first ring**, against the MQTT path in the same run and the same daemon.
   `alertd run` is a real process (tests.harness.DaemonProcess) with one receiver (format mlr2) on a
   FakeReceiver pty; the fake lives in the bench process. N alarms are printed as MLR2 lines
   (`5011 18AAAAE12001001` + DC4), one every 50 ms, each from another household in another group; then N
   MQTT alarms (QoS 1, `{"type": "alarm", "kind": "panic", "seq": n}`) the same way from N other
   households. Rings are received by a paho subscriber in its own thread and stamped in its callback
   (time.time()). For the serial path the ACK (0x06, written after the commit) is also timed; that stamp
   is taken on the bench's event loop when the pty becomes readable.
   The harness's Contact ID accounts (f"{g}{h:03d}") fit 4 characters only for groups 1-9; the bench
   rewrites every household's device list in the generated roster so each has a dialer with a unique
   account 0001, 0002, ..., and no two alarms join one incident.
2. **Codecs, in process**: Contact ID reports/s through LineDecoder.feed (plain and mlr2; one large
   buffer, 1 KiB chunks as read_chunks delivers them, and line by line), AtParser.feed for one AT+CMGS
   exchange, and encode_submit for the two SMS sizes used in 3. Best of 3 repeats.
3. **Modem channel**: alertd.channels.gsm_modem.ModemSender on alertd.modem.session.AtSession (the
   inbox attached, as in the daemon) driven in process against a FakeModem pty: M SMS (zh-CN, UCS-2:
   60-character single-part texts and every 5th a 150-character 3-part text) through
   `await modem.send(...)`, one after another. The floor is the same AT+CMGS exchanges (PDUs
   encoded beforehand) written straight to a fresh FakeModem: on the event loop through
   serial_asyncio_fast (the transport alertd uses), and with blocking pyserial in a thread. The fake
   has no radio delay, so this measures alertd's own overhead per SMS, not what a real modem does
   (a real network takes seconds per AT+CMGS); the wire time of the same bytes at 115200 baud is
   printed for scale.

Every wait is bounded and the whole run has a time budget; on the way out the daemon is stopped, the
ptys are closed and the daemon's MQTT persistent session is forgotten, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import serial
import serial_asyncio_fast

from alertd.channels.gsm_modem import ModemSender
from alertd.core.ports import Outbound
from alertd.ingress.modem_inbox import ModemInbox
from alertd.metrics import Metrics
from alertd.modem.session import AtSession
from alertd.protocols.at import AtParser, Final
from alertd.protocols.contact_id import LineDecoder, Report, build_message
from alertd.protocols.sms_pdu import encode_submit
from alertd.serial_lines import LineSettings
from bench.bench_pipeline import OwnBroker, PahoClient, alarm_payload, fmt, ratio, ring_household, summary_ms
from tests.fakes.contact_id_receiver import ACK, FakeReceiver
from tests.fakes.gsm_modem import FakeModem
from tests.harness import DaemonProcess, Village, forget_session, write_village

INTERVAL_S = 0.050
ROUNDS = 3  # modem rounds per variant
BLOCK = 25  # alarms of one path in a row (see block_path)
PANIC = 120
DC4 = "\x14"
BAUD = 115200
PHONE = "+8613800010001"
TEXT = ("【河口村联防】3号户 12组 报警：紧急求助！请就近村民和护边员立即前往查看，注意安全。"
        "回复1表示收到，回复2表示已到达现场，回复3表示解除警报。值班室电话见村务公开栏。")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Sizes:
    alarms: int  # per path (serial, MQTT)
    codec_lines: int
    codec_exchanges: int
    sms: int
    settle_s: float
    budget_s: float


FULL = Sizes(alarms=300, codec_lines=100_000, codec_exchanges=50_000, sms=500, settle_s=20, budget_s=600)
QUICK = Sizes(alarms=50, codec_lines=20_000, codec_exchanges=10_000, sms=100, settle_s=10, budget_s=55)


def mlr2_line(account: str, event_code: int = PANIC, zone: int = 1) -> str:
    """A report as a Sur-Gard MLR2 prints it (receiver 01, line 1), as in tests/test_serial_e2e.py."""
    return f"5011 18{account}E{event_code:03d}01{zone:03d}"


def sms_text(chars: int) -> str:
    return (TEXT * (chars // len(TEXT) + 1))[:chars]


# --- 1. Contact ID line -> first ring, against MQTT ------------------------------------------------


class TimedReceiver(FakeReceiver):
    """The FakeReceiver, plus the time each ACK/NAK byte was read off the pty."""

    def __init__(self) -> None:
        super().__init__(name="ttyS9")
        self.ack_times: list[float] = []

    def _on_data(self, data: bytes) -> None:
        now = time.time()
        self.ack_times.extend(now for b in data if b == ACK[0])
        super()._on_data(data)


DEVICES_LINE = re.compile(r'^devices = \[\{ id = "t(\d+)-(\d+)" \}.*\]$', re.MULTILINE)


def renumber_accounts(village: Village) -> Callable[[int, int], str]:
    """Give every household a Contact ID dialer with a unique 4-digit account (the harness's own accounts
    have 4 digits only for groups 1-9); return (group, house) -> account."""
    roster = village.settings_path.parent / "roster.toml"

    def account(g: int, h: int) -> str:
        return f"{(g - 1) * 10 + h:04d}"

    def devices(m: re.Match[str]) -> str:
        g, h = int(m[1]), int(m[2])
        return (f'devices = [{{ id = "t{g}-{h}" }}, {{ id = "c{g}-{h}", profile = "contact-id", '
                f'ringable = false, account = "{account(g, h)}" }}]')  # fmt: skip

    text, count = DEVICES_LINE.subn(devices, roster.read_text(encoding="utf-8"))
    if count != village.groups * 10 or village.groups * 10 > 9999:
        raise RuntimeError(f"roster layout changed: rewrote {count} device lists for {village.groups * 10} households")
    roster.write_text(text, encoding="utf-8")
    return account


class RingLog:
    """First ring per household, from the subscriber's records."""

    def __init__(self, client: PahoClient) -> None:
        self.client = client
        self.first: dict[str, float] = {}
        self.stray = 0
        self._pos = 0

    def update(self) -> None:
        received = self.client.received
        end = len(received)
        for at, _topic, payload in received[self._pos : end]:
            household = ring_household(payload)
            if household is None:
                self.stray += 1
                continue
            self.first.setdefault(household, at)
        self._pos = end


async def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


async def wait_receiver_up(village: Village, daemon: DaemonProcess) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(20):
        while True:
            if daemon.process is None or daemon.process.returncode is not None:
                raise RuntimeError(f"alertd exited; see {daemon.log_path}")
            with contextlib.suppress(aiohttp.ClientError, ValueError, KeyError):
                async with session.get(f"{village.base_url}/healthz") as response:
                    checks = (await response.json())["checks"]
                    if checks["mqtt"]["ok"] and checks["receiver:rx"]["ok"]:
                        return
            await asyncio.sleep(0.05)


async def paced(n: int, fire: Callable[[int], Any]) -> None:
    start = time.monotonic()
    for i in range(n):
        delay = start + i * INTERVAL_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        result = fire(i)
        if asyncio.iscoroutine(result):
            await result


def block_path(slot: int) -> str:
    """Blocks of BLOCK alarms in the order serial, MQTT, MQTT, serial, serial, MQTT, ... (ABBA), so a
    drift over the run (incidents piling up, a noisy neighbour) falls on both paths alike."""
    block = slot // BLOCK
    return "serial" if block % 4 in (0, 3) else "mqtt"


async def measure_rings(work: Path, port: int, sizes: Sizes) -> dict[str, Any]:
    n = sizes.alarms
    if n % (2 * BLOCK):
        raise ValueError(f"alarms per path must be a multiple of {2 * BLOCK} for balanced ABBA blocks")
    groups = 2 * n  # serial alarms from groups 1..n, MQTT alarms from groups n+1..2n: one household each
    result: dict[str, Any] = {"alarms_per_path": n, "households": groups * 10}
    async with TimedReceiver() as receiver:
        village = write_village(work, groups=groups, receiver=(receiver.path, "mlr2"), broker_port=port)
        account = renumber_accounts(village)
        daemon = DaemonProcess(village, work / "alertd.log")
        subscriber: PahoClient | None = None
        publisher: PahoClient | None = None
        try:
            t0 = time.monotonic()
            await daemon.start()
            await wait_receiver_up(village, daemon)
            result["startup_s"] = time.monotonic() - t0
            subscriber = PahoClient(port, subscribe=f"{village.prefix}/dev/+/cmd")
            publisher = PahoClient(port)
            rings = RingLog(subscriber)
            print(f"  alertd up in {result['startup_s']:.2f} s ({groups * 10} households); "
                  f"{n} Contact ID lines and {n} MQTT alarms in blocks of {BLOCK}...", flush=True)  # fmt: skip

            serial_sent: dict[str, float] = {}
            mqtt_sent: dict[str, float] = {}
            half: dict[str, int] = {}  # household -> 0 (first half of the run) or 1
            counts = {"serial": 0, "mqtt": 0}

            async def fire(slot: int) -> None:
                path = block_path(slot)
                i = counts[path]
                counts[path] += 1
                if path == "serial":
                    g, h = i + 1, i % 10 + 1
                    household = f"h{g}-{h}"
                    serial_sent[household] = time.time()
                    await receiver.send_line(mlr2_line(account(g, h)), terminator=DC4)
                else:
                    g, h = n + i + 1, i % 10 + 1
                    household = f"h{g}-{h}"
                    mqtt_sent[household] = publisher.publish(f"{village.prefix}/dev/t{g}-{h}/event",
                                                             alarm_payload(i + 1))  # fmt: skip
                half[household] = int(slot >= n)

            await paced(2 * n, fire)
            everything = serial_sent.keys() | mqtt_sent.keys()
            await wait_until(lambda: (rings.update(), everything <= rings.first.keys())[1], sizes.settle_s)
            await wait_until(lambda: len(receiver.ack_times) >= n, 5)
            rings.update()

            def latencies(sent: dict[str, float], which: int | None = None) -> list[float]:
                return [rings.first[k] - t for k, t in sent.items()
                        if k in rings.first and which in (None, half[k])]  # fmt: skip

            # ACKs come in line order (one receiver line, committed in order): pair them by position.
            sent_order = list(serial_sent.values())
            acks = [a - s for s, a in zip(sent_order, receiver.ack_times, strict=False)]
            result["serial"] = {
                "first_ring_ms": summary_ms(latencies(serial_sent)),
                "first_half_ms": summary_ms(latencies(serial_sent, 0)),
                "second_half_ms": summary_ms(latencies(serial_sent, 1)),
                "ack_ms": summary_ms(acks),
                "lost": sum(k not in rings.first for k in serial_sent),
                "acks": len(receiver.ack_times),
                "other_replies": sum(r != ACK for r in receiver.acks),
            }
            result["mqtt"] = {
                "first_ring_ms": summary_ms(latencies(mqtt_sent)),
                "first_half_ms": summary_ms(latencies(mqtt_sent, 0)),
                "second_half_ms": summary_ms(latencies(mqtt_sent, 1)),
                "lost": sum(k not in rings.first for k in mqtt_sent),
            }
            result["stray"] = rings.stray
        finally:
            for client in (publisher, subscriber):
                if client is not None:
                    client.close()
            if daemon.process is not None:
                try:
                    await daemon.terminate()
                except TimeoutError:
                    await daemon.kill()
            await asyncio.wait_for(forget_session(village), 15)
    return result


# --- 2. codecs in process --------------------------------------------------------------------------


def best_of(repeats: int, run: Callable[[], int]) -> tuple[float, int]:
    """(best seconds, items) over `repeats` runs of run(), which returns how many items it handled."""
    times, items = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        items = run()
        times.append(time.perf_counter() - t0)
    return min(times), items


def measure_codecs(sizes: Sizes) -> dict[str, Any]:
    n = sizes.codec_lines
    accounts = [f"{i % 9999 + 1:04d}" for i in range(n)]
    lines = {
        "plain": [(build_message(a, 1, PANIC, zone=1) + "\r").encode("latin-1") for a in accounts],
        "mlr2": [(mlr2_line(a) + DC4).encode("latin-1") for a in accounts],
    }
    out: dict[str, Any] = {}
    for name, encoded in lines.items():
        buffer = b"".join(encoded)
        chunks = [buffer[i : i + 1024] for i in range(0, len(buffer), 1024)]

        def reports(decoded: list[Any]) -> int:
            return sum(isinstance(d, Report) for d in decoded)

        def whole(name: str = name, buffer: bytes = buffer) -> int:
            return reports(LineDecoder(name).feed(buffer))

        def chunked(name: str = name, chunks: list[bytes] = chunks) -> int:
            decoder = LineDecoder(name)
            return sum(reports(decoder.feed(c)) for c in chunks)

        def by_line(name: str = name, encoded: list[bytes] = encoded) -> int:
            decoder = LineDecoder(name)
            return sum(reports(decoder.feed(line)) for line in encoded)

        for how, run in (("buffer", whole), ("1k_chunks", chunked), ("line_by_line", by_line)):
            seconds, items = best_of(3, run)
            if items != n:
                raise RuntimeError(f"{name} {how}: decoded {items} reports of {n}")
            out[f"contact_id_{name}_{how}"] = {"per_s": n / seconds, "us_each": seconds / n * 1e6}

    # One AT+CMGS exchange as alertd's parser sees it with echo off: prompt, then +CMGS and OK.
    pdu = encode_submit(PHONE, sms_text(60), reference=1)[0]
    command = f"AT+CMGS={pdu.tpdu_length}"

    def at_exchanges() -> int:
        parser = AtParser()
        finals = 0
        for i in range(sizes.codec_exchanges):
            parser.sent(command)
            parser.feed(b"\r\n> ")
            parser.sent(pdu.hex)
            finals += sum(isinstance(e, Final) for e in parser.feed(f"\r\n+CMGS: {i % 256}\r\n\r\nOK\r\n".encode()))
        return finals

    seconds, items = best_of(3, at_exchanges)
    if items != sizes.codec_exchanges:
        raise RuntimeError(f"AT parser: {items} finals of {sizes.codec_exchanges}")
    out["at_cmgs_exchange"] = {"per_s": items / seconds, "us_each": seconds / items * 1e6}
    for chars in (60, 150):
        text = sms_text(chars)
        count = sizes.codec_exchanges // 5

        def encode(text: str = text, count: int = count) -> int:
            return sum(len(encode_submit(PHONE, text, reference=i % 256)) > 0 for i in range(count))

        seconds, items = best_of(3, encode)
        out[f"encode_submit_{chars}"] = {"per_s": items / seconds, "us_each": seconds / items * 1e6,
                                         "parts": len(encode_submit(PHONE, text, reference=1))}  # fmt: skip
    return out


# --- 3. the modem channel against the fake modem -------------------------------------------------


def sms_plan(m: int) -> list[str]:
    """Every 5th message is a 150-character 3-part text, the rest 60-character single-part texts."""
    return [sms_text(150 if i % 5 == 4 else 60) for i in range(m)]


def modem_summary(texts: list[str], per_sms: list[float], seconds: float, parts: int) -> dict[str, Any]:
    return {"sms": len(per_sms), "parts": parts, "seconds": seconds,
            "sms_per_s": len(per_sms) / seconds if seconds else None,
            "parts_per_s": parts / seconds if seconds else None,
            "per_sms_ms": summary_ms(per_sms)}  # fmt: skip


async def measure_alertd_modem(texts: list[str]) -> dict[str, Any]:
    async with FakeModem(name="ttyUSB9") as fake:
        metrics = Metrics()
        session = AtSession(LineSettings("modem", fake.path, BAUD), metrics)
        session.attach(ModemInbox(session, lambda _item, _done: None, metrics))  # sweeps as in the daemon
        modem = ModemSender(session)
        task = asyncio.create_task(session.run(), name="bench-modem")
        try:
            async with asyncio.timeout(15):
                while not modem.health().ok:
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.01)
            per_sms: list[float] = []
            async with asyncio.timeout(120):
                t0 = time.perf_counter()
                for i, text in enumerate(texts):
                    s0 = time.perf_counter()
                    await modem.send(Outbound(i, PHONE, text, 0.0))
                    per_sms.append(time.perf_counter() - s0)
                seconds = time.perf_counter() - t0
            sent = await fake.wait_for_sent(len(texts), timeout=5)
            if [m.text for m in sent] != texts or fake.rejected:
                raise RuntimeError(f"the fake modem got other texts than sent ({len(fake.rejected)} rejected)")
            return modem_summary(texts, per_sms, seconds, len(fake.sent_parts))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def encoded(texts: list[str]) -> list[list[tuple[bytes, bytes]]]:
    """Per SMS, per part: (command line, PDU + Ctrl-Z), encoded before the clock starts."""
    out = []
    for i, text in enumerate(texts):
        parts = encode_submit(PHONE, text, reference=i % 256)
        out.append([(f"AT+CMGS={p.tpdu_length}\r".encode(), p.hex.encode() + b"\x1a") for p in parts])
    return out


async def measure_floor_async(texts: list[str]) -> dict[str, Any]:
    """The same exchanges over serial_asyncio_fast (alertd's transport), with nothing but the wait for
    the prompt and the final result."""
    plan = encoded(texts)
    async with FakeModem(name="ttyUSB8") as fake:
        reader, writer = await asyncio.wait_for(
            serial_asyncio_fast.open_serial_connection(url=fake.path, baudrate=BAUD), 10
        )
        try:
            buffer = bytearray()

            async def until(marker: bytes) -> None:
                while (at := buffer.find(marker)) < 0:
                    chunk = await reader.read(1024)
                    if not chunk:
                        raise ConnectionError("the fake modem closed the line")
                    buffer.extend(chunk)
                if b"ERROR" in buffer[:at]:
                    raise RuntimeError(f"the fake modem refused: {bytes(buffer)!r}")
                del buffer[: at + len(marker)]

            async with asyncio.timeout(10):
                writer.write(b"ATE0\r")
                await until(b"OK\r\n")
            per_sms: list[float] = []
            async with asyncio.timeout(120):
                t0 = time.perf_counter()
                for parts in plan:
                    s0 = time.perf_counter()
                    for command, pdu in parts:
                        writer.write(command)
                        await until(b"> ")
                        writer.write(pdu)
                        await until(b"OK\r\n")
                    per_sms.append(time.perf_counter() - s0)
                seconds = time.perf_counter() - t0
            await fake.wait_for_sent(len(texts), timeout=5)
            return modem_summary(texts, per_sms, seconds, len(fake.sent_parts))
        finally:
            writer.close()


def blocking_exchanges(
    path: str, plan: list[list[tuple[bytes, bytes]]], stop: threading.Event
) -> tuple[list[float], float]:
    with serial.Serial(path, BAUD, timeout=0.5) as port:
        buffer = bytearray()

        def until(marker: bytes, deadline: float) -> None:
            while (at := buffer.find(marker)) < 0:
                if stop.is_set() or time.monotonic() > deadline:
                    raise TimeoutError(f"no {marker!r} from the fake modem; have {bytes(buffer)!r}")
                buffer.extend(port.read(max(1, port.in_waiting)))
            del buffer[: at + len(marker)]

        port.write(b"ATE0\r")
        until(b"OK\r\n", time.monotonic() + 10)
        deadline = time.monotonic() + 120
        per_sms: list[float] = []
        t0 = time.perf_counter()
        for parts in plan:
            s0 = time.perf_counter()
            for command, pdu in parts:
                port.write(command)
                until(b"> ", deadline)
                port.write(pdu)
                until(b"OK\r\n", deadline)
            per_sms.append(time.perf_counter() - s0)
        return per_sms, time.perf_counter() - t0


async def measure_floor_blocking(texts: list[str]) -> dict[str, Any]:
    """The same exchanges with blocking pyserial in a thread (the fake keeps the event loop)."""
    plan = encoded(texts)
    stop = threading.Event()
    async with FakeModem(name="ttyUSB7") as fake:
        try:
            per_sms, seconds = await asyncio.wait_for(asyncio.to_thread(blocking_exchanges, fake.path, plan, stop), 130)
        finally:
            stop.set()
        await fake.wait_for_sent(len(texts), timeout=5)
        return modem_summary(texts, per_sms, seconds, len(fake.sent_parts))


def wire_seconds(texts: list[str]) -> float:
    """Bytes both ways for the exchanges at 115200 baud 8N1 (10 bits a byte), echo off."""
    total = 0
    for parts in encoded(texts):
        for command, pdu in parts:
            total += len(command) + len(pdu) + len(b"\r\n> ") + len(b"\r\n+CMGS: 123\r\n\r\nOK\r\n")
    return total * 10 / BAUD


async def measure_modem(sizes: Sizes) -> dict[str, Any]:
    """ROUNDS rounds of the three variants (each on a fresh fake); per variant the fastest round counts
    (a round is a fraction of a second, so one scheduling hiccup on this shared machine would dominate)."""
    texts = sms_plan(sizes.sms)
    variants = {"alertd": measure_alertd_modem, "floor_async": measure_floor_async,
                "floor_blocking": measure_floor_blocking}  # fmt: skip
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, measure in variants.items():
            rounds[name].append(await measure(texts))
    out: dict[str, Any] = {}
    for name, results in rounds.items():
        out[name] = min(results, key=lambda r: r["seconds"])
        out[name]["rounds_s"] = [r["seconds"] for r in results]
    out["wire_s_at_115200"] = wire_seconds(texts)
    return out


# --- output ----------------------------------------------------------------------------------------


def print_table(results: dict[str, Any]) -> None:
    print()
    print(f"{results['date']}; broker {results['broker_used']}; nproc {results['nproc']}; "
          f"Python {results['python']}; quick={results['quick']}")  # fmt: skip
    r = results.get("rings")
    if r:
        s, m = r["serial"], r["mqtt"]
        print(f"\n1. alarm -> first ring, alertd as a process, {r['alarms_per_path']} alarms per path, "
              f"1 per {INTERVAL_S * 1000:.0f} ms, {r['households']} households "
              f"(start-up {r['startup_s']:.2f} s)")  # fmt: skip
        print(f"{'':28}  {'serial':>9}  {'MQTT':>9}  {'ratio':>7}")
        for p in ("p50", "p95", "p99", "max"):
            a, b = s["first_ring_ms"][p], m["first_ring_ms"][p]
            print(f"{'first ring ' + p + ', ms':28}  {fmt(a):>9}  {fmt(b):>9}  {ratio(a, b):>7}")
        for key, label in (("first_half_ms", "1st half"), ("second_half_ms", "2nd half")):
            a, b = s[key]["p50"], m[key]["p50"]
            print(f"{'first ring p50, ' + label + ', ms':28}  {fmt(a):>9}  {fmt(b):>9}  {ratio(a, b):>7}")
        print(f"{'lost (no ring)':28}  {s['lost']:>9}  {m['lost']:>9}")
        ack = s["ack_ms"]
        print(f"serial line -> ACK (after commit): p50 {fmt(ack['p50'])} / p95 {fmt(ack['p95'])} / "
              f"p99 {fmt(ack['p99'])} ms; {s['acks']} ACKs, {s['other_replies']} other replies; "
              f"stray ring messages {r['stray']}")  # fmt: skip
    c = results.get("codecs")
    if c:
        print("\n2. codecs in process (best of 3)")
        print(f"{'':34}  {'per s':>10}  {'us each':>8}")
        for key, v in c.items():
            label = key + (f" ({v['parts']} part{'s' if v['parts'] > 1 else ''})" if "parts" in v else "")
            print(f"{label:34}  {v['per_s']:>10,.0f}  {v['us_each']:>8.2f}")
    md = results.get("modem")
    if md:
        a, fa, fb = md["alertd"], md["floor_async"], md["floor_blocking"]
        print(f"\n3. modem channel vs FakeModem (no radio delay: alertd's own overhead), {a['sms']} SMS, "
              f"{a['parts']} parts")  # fmt: skip
        print(f"{'':26}  {'alertd':>9}  {'floor aio':>9}  {'ratio':>7}  {'floor thr':>9}  {'ratio':>7}")
        rows = [("SMS/s", a["sms_per_s"], fa["sms_per_s"], fb["sms_per_s"], ".0f"),
                ("parts/s", a["parts_per_s"], fa["parts_per_s"], fb["parts_per_s"], ".0f"),
                ("per SMS p50, ms", a["per_sms_ms"]["p50"], fa["per_sms_ms"]["p50"], fb["per_sms_ms"]["p50"], ".2f"),
                ("per SMS p99, ms", a["per_sms_ms"]["p99"], fa["per_sms_ms"]["p99"], fb["per_sms_ms"]["p99"], ".2f"),
                ("total, s", a["seconds"], fa["seconds"], fb["seconds"], ".3f")]  # fmt: skip
        for label, x, y, z, spec in rows:
            # For rates alertd/floor < 1 is slower; for times > 1 is slower.
            print(f"{label:26}  {fmt(x, spec):>9}  {fmt(y, spec):>9}  {ratio(x, y):>7}  {fmt(z, spec):>9}  "
                  f"{ratio(x, z):>7}")  # fmt: skip
        print("rounds, s: " + "; ".join(f"{k} " + " / ".join(f"{x:.3f}" for x in md[k]["rounds_s"])
                                         for k in ("alertd", "floor_async", "floor_blocking")))  # fmt: skip
        print(
            f"the same bytes on a 115200-baud line would take {md['wire_s_at_115200']:.2f} s "
            f"({a['sms'] / md['wire_s_at_115200']:.0f} SMS/s); a real modem spends 1-5 s per AT+CMGS on the network"
        )


# --- main ------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="alertd-bench-serial-"))
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "quick": args.quick,
        "sizes": {"alarms": sizes.alarms, "codec_lines": sizes.codec_lines, "sms": sizes.sms},
    }
    broker = OwnBroker(work) if args.own_broker else None
    port = args.broker_port
    results["broker_used"] = f"127.0.0.1:{port}"
    try:
        async with asyncio.timeout(sizes.budget_s):
            if broker is not None:
                await broker.start()
                port = broker.port
                results["broker_used"] = "own mosquitto, config/mosquitto.conf"
            print(f"work dir {work}; broker {results['broker_used']}", flush=True)
            print("1. Contact ID line vs MQTT -> first ring...", flush=True)
            results["rings"] = await measure_rings(work, port, sizes)
            print("2. codecs...", flush=True)
            results["codecs"] = await asyncio.to_thread(measure_codecs, sizes)
            print("3. modem channel...", flush=True)
            results["modem"] = await measure_modem(sizes)
    finally:
        if broker is not None:
            await broker.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="alertd serial-line benchmark (Contact ID receiver, GSM modem)")
    parser.add_argument("--quick", action="store_true", help="small smoke run, under a minute")
    parser.add_argument("--broker-port", type=int, default=1883, help="the broker on 127.0.0.1 (default 1883)")
    parser.add_argument("--own-broker", action="store_true",
                        help="run our own mosquitto with config/mosquitto.conf (set_tcp_nodelay and all)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (roster, store, daemon log)")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
