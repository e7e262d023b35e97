"""Hedging benchmark (issue 16): alarm -> the leader's SMS while Twilio takes requests and never answers.

    .venv/bin/python -m bench.bench_hedging [--quick] [--json out.json] [--keep] [--broker-port 1883 | --own-broker]

One run measures three scenarios, once each, one after another, each with a fresh `alertd run` process
(tests.harness.DaemonProcess), a fresh store, the same roster layout and the same alarms (the machine is
shared and noisy; compare ratios against the floor of the same run, not single numbers):

1. **floor**: Twilio (the Twilio-shaped server, tests/fakes/twilio_server.py) answers at once; the GSM
   modem (tests/fakes/gsm_modem.py FakeModem, on a real pty) is configured but not needed. Alarm ->
   the leader's SMS accepted by Twilio.
2. **hedged**: Twilio holds every request (`hang_all`) and never answers; `[sms] hedge_after_s` is the
   shipped default (3 s). Alarm -> the leader's SMS taken by the modem.
3. **unhedged**: the same hanging Twilio with `hedge_after_s = 0` (what alertd did before issue 16):
   each SMS waits for Twilio's timeout (`[twilio] timeout_s`, 15 s) before the modem gets it, until
   Twilio's own health turns red after 3 timeouts; meanwhile the hung requests fill the outbox's window.

Everything else is production settings: `[twilio] timeout_s` 15 s, `[modem] command_timeout_s` 10 s and
`sweep_interval_s` 60 s (the test harness uses 1 s for both), 32 SMS in flight. N alarms, one every
INTERVAL_S, each from house 1 of another group (groups 1..N), so each alarm texts its own leader (house 5)
and the two patrol members: 3 SMS per alarm. The alarm is published by a paho client (QoS 1, TCP_NODELAY)
and stamped with time.time() before the publish; the leader's SMS is stamped with time.time() when the
fake modem (in this process, on the bench's event loop) has the whole message after AT+CMGS, or when the
Twilio-shaped server (in this process too) has parsed the request. A hung Twilio request is never
accepted, so no message arrives twice. At the end, alertd's /metrics is read for the hedges it counted.

Every wait is bounded and the whole run has a time budget; on the way out the daemon is stopped, the pty
and the server are closed, and the daemon's MQTT persistent session is forgotten, whatever happens.
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from alertd.config import SmsSettings
from bench.bench_pipeline import OwnBroker, PahoClient, alarm_payload, fmt, ratio, summary_ms
from tests.fakes.gsm_modem import FakeModem, SentPart
from tests.fakes.twilio_server import SentMessage, TwilioServer
from tests.harness import ACCOUNT_SID, AUTH_TOKEN, DaemonProcess, Village, forget_session, leader_phone, write_village

INTERVAL_S = 0.5  # between alarms: a busy evening, not a burst; a burst is bench_pipeline's business
HANG_S = 3600.0  # how long the hanging Twilio holds a request: longer than any run
TWILIO_TIMEOUT_S = 15.0  # alertd's default [twilio] timeout_s, written out so the bench says what it ran
SCENARIOS = ("floor", "hedged", "unhedged")


@dataclass(frozen=True, slots=True)
class Sizes:
    alarms: int
    settle_s: float  # after the last alarm, how long the stragglers may take
    budget_s: float


FULL = Sizes(alarms=120, settle_s=90, budget_s=900)
QUICK = Sizes(alarms=20, settle_s=60, budget_s=300)


class TimedModem(FakeModem):
    """The FakeModem, plus when each whole message (all its parts) was taken, by destination."""

    def __init__(self) -> None:
        super().__init__(name="ttyUSB7")
        self.taken_at: dict[str, float] = {}

    def _record_sent(self, part: SentPart) -> None:
        before = len(self.sent)
        super()._record_sent(part)
        if len(self.sent) > before:
            self.taken_at.setdefault(self.sent[-1].to, time.time())


def production_settings(village: Village, hedge_after_s: float) -> None:
    """The harness writes test timings for the modem; the bench runs what ships."""
    path = village.settings_path
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"command_timeout_s = [0-9.]+\n", "command_timeout_s = 10\n", text)
    text = re.sub(r"sweep_interval_s = [0-9.]+\n", "sweep_interval_s = 60\n", text)
    text = text.replace("[sms]\n", f"[sms]\nhedge_after_s = {hedge_after_s}\n", 1)
    text = text.replace("[twilio]\n", f"[twilio]\ntimeout_s = {TWILIO_TIMEOUT_S}\n", 1)
    path.write_text(text, encoding="utf-8")


async def wait_modem_up(village: Village, daemon: DaemonProcess) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(30):
        while True:
            if daemon.process is None or daemon.process.returncode is not None:
                raise RuntimeError(f"alertd exited; see {daemon.log_path}")
            with contextlib.suppress(aiohttp.ClientError, ValueError, KeyError):
                async with session.get(f"{village.base_url}/healthz") as response:
                    checks = (await response.json())["checks"]
                    if checks["mqtt"]["ok"] and checks["modem"]["ok"]:
                        return
            await asyncio.sleep(0.05)


async def hedge_metrics(village: Village) -> dict[str, float]:
    """alertd's own count of hedges and of attempts left running, from /metrics."""
    counts: dict[str, float] = {}
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with aiohttp.ClientSession() as session, session.get(f"{village.base_url}/metrics") as response:
            for line in (await response.text()).splitlines():
                if line.startswith(("alertd_sms_hedged_total", "alertd_sms_hedge_leftovers_total")):
                    name, value = line.rsplit(" ", 1)
                    counts[name] = float(value)
    return counts


async def paced(n: int, fire: Any) -> None:
    start = time.monotonic()
    for i in range(n):
        delay = start + i * INTERVAL_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        fire(i)


async def wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


async def measure(scenario: str, work: Path, port: int, sizes: Sizes) -> dict[str, Any]:
    n = sizes.alarms
    work.mkdir()
    twilio_taken: dict[str, float] = {}

    def on_twilio(message: SentMessage) -> None:
        twilio_taken.setdefault(message.to, message.received_at)

    result: dict[str, Any] = {"alarms": n}
    async with TwilioServer(ACCOUNT_SID, AUTH_TOKEN, on_message=on_twilio) as twilio, TimedModem() as modem:
        if scenario != "floor":
            twilio.hang_all(HANG_S)
        village = write_village(work, groups=n, twilio=twilio, modem=modem.path, broker_port=port, storm_threshold=0)
        hedge = 0.0 if scenario == "unhedged" else SmsSettings().hedge_after_s  # the shipped default
        production_settings(village, hedge)
        result["hedge_after_s"] = hedge
        daemon = DaemonProcess(village, work / "alertd.log")
        publisher: PahoClient | None = None
        try:
            await daemon.start()
            await wait_modem_up(village, daemon)
            publisher = PahoClient(port)
            sent: dict[int, float] = {}

            def fire(i: int) -> None:
                g = i + 1
                assert publisher is not None
                sent[g] = publisher.publish(f"{village.prefix}/dev/t{g}-1/event", alarm_payload(i + 1))

            print(f"  {scenario}: {n} alarms, one every {INTERVAL_S:g} s...", flush=True)
            await paced(n, fire)
            leaders = {g: leader_phone(g) for g in sent}

            def taken(g: int) -> float | None:
                return modem.taken_at.get(leaders[g]) or twilio_taken.get(leaders[g])

            await wait_until(lambda: all(taken(g) is not None for g in sent), sizes.settle_s)
            latencies = [at - sent[g] for g in sent if (at := taken(g)) is not None]
            result["leader_sms_ms"] = summary_ms(latencies)
            # Which alarms waited (a hedge delay, a timeout): by alarm number, so a pattern shows.
            result["slow_alarms"] = {g: round(at - sent[g], 2) for g in sent if (at := taken(g)) and at - sent[g] >= 1}
            result["lost"] = sum(taken(g) is None for g in sent)
            result["via_modem"] = sum(leaders[g] in modem.taken_at for g in sent)
            result["via_twilio"] = sum(leaders[g] in twilio_taken for g in sent)
            result["sms_total"] = {"modem": len(modem.sent), "twilio": len(twilio.messages)}
            result["twilio_requests_hanging_at_end"] = twilio.hanging
            result["metrics"] = await hedge_metrics(village)
        finally:
            if publisher is not None:
                publisher.close()
            if daemon.process is not None:
                try:
                    await daemon.terminate()
                except TimeoutError:
                    await daemon.kill()
            await asyncio.wait_for(forget_session(village), 15)
    return result


def print_table(results: dict[str, Any]) -> None:
    print()
    print(f"broker: {results['broker_used']}; {results['sizes']}")
    floor = results["floor"]["leader_sms_ms"]
    heading = f"{'alarm -> leader SMS, ms':32} {'p50':>9} {'p95':>9} {'p99':>9} {'max':>9}"
    print(f"{heading}  {'p50 ratio':>9} {'p99 ratio':>9}")
    for name in SCENARIOS:
        s = results[name]["leader_sms_ms"]
        print(
            f"{name:32} {fmt(s['p50']):>9} {fmt(s['p95']):>9} {fmt(s['p99']):>9} {fmt(s['max']):>9}  "
            f"{ratio(s['p50'], floor['p50']):>9} {ratio(s['p99'], floor['p99']):>9}"
        )
    for name in SCENARIOS:
        r = results[name]
        print(
            f"{name}: lost {r['lost']}, leader SMS via modem {r['via_modem']} / twilio {r['via_twilio']}; "
            f"all SMS {r['sms_total']}; Twilio requests held at the end {r['twilio_requests_hanging_at_end']}; "
            f"{r['metrics'] or 'no hedges counted'}"
        )
        print(f"  alarms whose leader SMS took >= 1 s (alarm: seconds): {r['slow_alarms'] or 'none'}")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="alertd-bench-hedging-"))
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "quick": args.quick,
        "sizes": {"alarms": sizes.alarms, "interval_s": INTERVAL_S},
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
            for scenario in SCENARIOS:
                results[scenario] = await measure(scenario, work / scenario, port, sizes)
    finally:
        if broker is not None:
            await broker.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="alertd hedging benchmark: alarm -> leader SMS under a hanging Twilio")
    parser.add_argument("--quick", action="store_true", help="small smoke run, about a minute")
    parser.add_argument("--broker-port", type=int, default=1883, help="the broker on 127.0.0.1 (default 1883)")
    parser.add_argument("--own-broker", action="store_true",
                        help="run our own mosquitto with config/mosquitto.conf (set_tcp_nodelay and all)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (rosters, stores, daemon logs)")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
