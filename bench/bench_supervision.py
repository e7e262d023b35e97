"""Supervision review cost as the roster grows: N households with 3 devices each (terminal, smoke, door).

Runs the same pure functions the engine runs once per review interval (assess every device, then review
against open maintenance incidents) and reports the time per pass and per device. Flat per-device cost
means the pass grows linearly; the engine runs it on the event loop once a minute.

    .venv/bin/python -m bench.bench_supervision [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from alertd.core.model import Device
from alertd.core.profile import DeviceProfile, Transport
from alertd.core.supervision import Condition, Reported, assess, review

PROFILES = {
    "alertd-terminal": DeviceProfile("alertd-terminal", "terminal", Transport.ALERTD, checkin_s=300),
    "zigbee-smoke": DeviceProfile("zigbee-smoke", "smoke", Transport.ZIGBEE2MQTT, checkin_s=90000),
    "zigbee-door": DeviceProfile("zigbee-door", "door", Transport.ZIGBEE2MQTT, checkin_s=90000),
}
NOW = 1_800_000_000.0


def roster(households: int, rng: random.Random) -> list[tuple[Device, Reported]]:
    devices = []
    for h in range(households):
        for profile in PROFILES:
            device = Device(f"{profile}-{h}", f"h{h}", profile)
            # Mostly healthy, a few percent offline / silent / low battery, as in a real village.
            roll = rng.random()
            seen = NOW - (100_000 if roll < 0.02 else 30)
            reported = Reported(online=roll > 0.01, last_seen=seen, battery=15 if roll > 0.97 else 80)
            devices.append((device, reported))
    return devices


def one_pass(devices: list[tuple[Device, Reported]], open_cases: set[tuple[str, Condition]]) -> float:
    started = time.perf_counter()
    healths = [assess(d, PROFILES[d.profile], r, NOW) for d, r in devices]
    review(healths, open_cases, {}, NOW, 600.0)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = (1_500, 5_000) if args.quick else (1_500, 5_000, 15_000, 30_000)
    rng = random.Random(7)
    print(f"{'households':>10}  {'devices':>8}  {'pass ms (median of 5)':>22}  {'µs / device':>11}")
    for households in sizes:
        devices = roster(households, rng)
        open_cases = {(d.id, Condition.OFFLINE) for d, r in devices[::50]}
        one_pass(devices, open_cases)  # warm-up
        median = statistics.median(one_pass(devices, open_cases) for _ in range(5))
        print(f"{households:>10}  {len(devices):>8}  {median * 1000:>22.1f}  {median / len(devices) * 1e6:>11.2f}")


if __name__ == "__main__":
    main()
