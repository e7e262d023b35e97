"""Storm benchmark (issue 13): a flood of alarms -> rings at once, and few texts to the patrol and the duty room.

    .venv/bin/python -m bench.bench_storm [--quick] [--steps 0,120,300] [--json out.json] [--keep]
                                          [--own-broker | --no-own-broker [--broker-port 1883]]

A storm: 2,000 alarms (quick: 400) published evenly over 60 s (quick: 10 s), every household of 200 groups
(quick: 40) alarming once, in a shuffled order (seeded: the same every run), each from its own terminal
`t{g}-{h}` with a `seq`, as real terminals send. Nobody acknowledges anything.

Processes, as in bench/bench_pipeline.py (whose pieces are imported, not copied): our own mosquitto with
config/mosquitto.conf (OwnBroker; --no-own-broker uses the broker on --broker-port), `alertd run` as a real
process (AlertdTarget: the harness's DaemonProcess command line), roster and settings from
tests.harness.write_village(groups=N), SMS through the Twilio-shaped server as its own process
(TwilioProcess: its own `received_at` per SMS). The bench process publishes alarms with paho (QoS 1) and
receives ring commands on `{prefix}/dev/+/cmd` (QoS 1), timestamped in paho's receive callback. All clocks
are time.time() on one machine.

The roster's escalation steps are the harness's (and the shipped rosters'): after 0 s the leader and the
patrol are texted, after 120 s the deputy, the grid worker and the patrol, after 300 s the duty room. The
bench waits for every alarm's last step, so "the whole storm" includes the escalations, which come after the
last alarm. --quick scales the storm's times by 1/6 (10 s of alarms, a 10 s window, steps 0, 20, 50 s), so
the escalations fall in the same place relative to the storm. --steps A,B,C sets other steps (e.g. 0,20,40:
every escalation inside the storm's windows).

Storm control is configured with a `[storm]` section (threshold 5, window_s 60; quick: window_s 10) only
if alertd.config.Settings has a `storm` section (keys the harness already wrote there are kept); otherwise
the daemon runs without one (unknown sections are refused) and the results say so: every SMS then goes out
by itself.

Measured:
* leader's first SMS: per group, the first SMS to its leader (any SMS, by the server's received_at)
  minus the publish time of the group's first alarm; p50/p95/p99/max over the groups reached, and how
  many leaders got nothing. Target: p99 <= 10 s, every leader reached.
* SMS per recipient over the whole run: each patrol member (tests.harness.PATROL_PHONES), the duty phone,
  the grid worker, the leaders and deputies (max and total); all SMS, how many were storm summaries
  (body starts with 【联防】 and contains 起报警), alerts (contain 回1收到) and anything else. Target:
  <= 6 per patrol member and per duty phone.
* rings: every alarm's 9 ring commands (lost = alarms with fewer after the wait), and publish -> all 9
  rings p50/p95/p99/max.
* after the daemon stops: its outbox's SMS by status (sent, merged, ...), read from the store.

After the last alarm the bench waits for the last step (and, with storm control, a window for its last
summary) plus a margin, then until no SMS has come for a few seconds, bounded (a lagging outbox gets a
capped time to drain). The whole run has a time budget; every process it started is stopped and the
daemon's MQTT session forgotten on the way out, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import tempfile
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from alertd.config import Settings, load_config
from bench.bench_pipeline import (
    RINGS,
    Alarm,
    AlertdTarget,
    OwnBroker,
    PahoClient,
    TwilioProcess,
    alarm_payload,
    cpu_s,
    fmt,
    match_rings,
    pct,
    rss_mb,
    summary_ms,
)
from tests import harness
from tests.harness import DUTY_PHONE, GRID_PHONE, PATROL_PHONES, write_village

THRESHOLD = 5  # [storm] threshold written when the daemon takes a [storm] section (the default)
SEED = 13  # the alarms' order
LEADER_P99_S = 10.0
PER_PHONE_MAX = 6


@dataclass(frozen=True, slots=True)
class Sizes:
    groups: int  # roster: groups x 10 households; every household alarms once
    duration_s: float  # alarms published evenly over this long
    steps: tuple[float, float, float]  # the roster's escalation steps
    window_s: float  # [storm] window_s, when the daemon takes a [storm] section
    margin_s: float  # after the last step (+ window): time for the last SMS to arrive
    quiet_s: float  # ...then done once no SMS and no ring has come for this long
    drain_cap_s: float  # ...but never wait longer than this past margin for a lagging outbox
    overhead_s: float  # start-up and shut-down, in the time budget

    @property
    def alarms(self) -> int:
        return self.groups * 10

    @property
    def budget_s(self) -> float:
        """The whole run: the storm, its last step, a window, the margin and the drain cap, and overhead."""
        return self.overhead_s + self.duration_s + self.steps[-1] + self.window_s + self.margin_s + self.drain_cap_s


FULL = Sizes(groups=200, duration_s=60, steps=(0, 120, 300), window_s=60, margin_s=15, quiet_s=10,
             drain_cap_s=120, overhead_s=60)  # fmt: skip
QUICK = Sizes(groups=40, duration_s=10, steps=(0, 20, 50), window_s=10, margin_s=5, quiet_s=4, drain_cap_s=20,
              overhead_s=20)  # fmt: skip


def parse_steps(value: str) -> tuple[float, float, float]:
    try:
        a, b, c = (float(part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("three seconds, comma-separated: 0,120,300") from None
    if not 0 <= a <= b <= c:
        raise argparse.ArgumentTypeError("steps must be >= 0 and in order")
    return a, b, c


def summary_s(values: list[float]) -> dict[str, float | int | None]:
    return {"n": len(values), "p50": pct(values, 50), "p95": pct(values, 95), "p99": pct(values, 99),
            "max": max(values, default=None)}  # fmt: skip


def kind_of(body: str) -> str:
    if body.startswith("【联防】") and "起报警" in body:
        return "summary"
    if "回1收到" in body:
        return "alert"
    return "other"


# --- storm settings -------------------------------------------------------------------------------------


def configure_storm(settings_path: Path, sizes: Sizes) -> dict[str, Any] | None:
    """Give the harness's settings file our [storm] keys, when alertd has a [storm] section (keys the
    harness already wrote stay as they are); then the storm settings the daemon will read, validated as it
    would, or None when alertd has no storm control (the file is left alone: unknown sections are refused)."""
    field = Settings.model_fields.get("storm")
    if field is None:
        return None
    known = getattr(field.annotation, "model_fields", {})
    text = settings_path.read_text(encoding="utf-8")
    present = tomllib.loads(text).get("storm")
    wanted = {"threshold": THRESHOLD, "window_s": sizes.window_s}
    lines = "".join(f"{k} = {v}\n" for k, v in wanted.items() if k in known and k not in (present or {}))
    if present is None:
        text += "[storm]\n" + lines
    else:
        text = re.sub(r"^\[storm\][ \t]*\n", lambda m: m.group(0) + lines, text, count=1, flags=re.MULTILINE)
    settings_path.write_text(text, encoding="utf-8")
    storm = load_config(settings_path, environ={}).settings.storm
    return dict(storm.model_dump(mode="json"))


# --- the storm ------------------------------------------------------------------------------------------


class Rings:
    """Ring commands from the bench's subscriber, matched to alarms by the calling household."""

    def __init__(self, alarms: list[Alarm], receiver: PahoClient) -> None:
        self.alarms = {a.household: a for a in alarms}
        self.receiver = receiver
        self._pos = 0
        self.stray = 0

    def update(self) -> int:
        self._pos, stray = match_rings(self.alarms, self.receiver.received, self._pos)
        self.stray += stray
        return self._pos


async def publish_storm(target: AlertdTarget, publisher: PahoClient, alarms: list[Alarm], sizes: Sizes) -> None:
    interval = sizes.duration_s / len(alarms)
    start = time.monotonic()
    for i, alarm in enumerate(alarms):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        alarm.t0 = publisher.publish(f"{target.prefix}/dev/t{alarm.group}-{alarm.house}/event",
                                     alarm_payload(i + 1))  # fmt: skip


async def wait_after(alarms: list[Alarm], rings: Rings, twilio: TwilioProcess, sizes: Sizes,
                     window_s: float | None) -> dict[str, Any]:  # fmt: skip
    """Until the last step (+ a window for its summary) + margin has passed and nothing has arrived for
    quiet_s; at most drain_cap_s more for a lagging outbox."""
    last = max(a.t0 for a in alarms)
    settle_at = last + sizes.steps[-1] + (window_s or 0) + sizes.margin_s
    hard_at = settle_at + sizes.drain_cap_s
    seen, changed = (-1, -1), time.time()
    while True:
        now = time.time()
        state = (rings.update(), len(twilio.messages))
        if state != seen:
            seen, changed = state, now
        if now >= settle_at and now - changed >= sizes.quiet_s:
            reason = "quiet"
            break
        if now >= hard_at:
            reason = "drain cap"
            break
        await asyncio.sleep(0.1)
    return {"waited_after_last_alarm_s": time.time() - last, "ended_by": reason}


def outbox_statuses(store_path: Path) -> dict[str, int] | None:
    """The stopped daemon's SMS by status, straight from its store (read-only)."""
    with contextlib.suppress(sqlite3.Error):
        db = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT status, count(*) FROM notifications WHERE channel = 'sms' GROUP BY status"
            ).fetchall()
        finally:
            db.close()
        return {str(status): int(n) for status, n in rows}
    return None


def report(alarms: list[Alarm], messages: list[tuple[float, str, str]], since: float, groups: int) -> dict[str, Any]:
    sms = [(at, to, body) for at, to, body in messages if at >= since]
    per_phone = Counter(to for _, to, _ in sms)
    kinds = Counter(kind_of(body) for _, _, body in sms)
    first_alarm: dict[int, float] = {}
    for a in alarms:
        first_alarm[a.group] = min(first_alarm.get(a.group, a.t0), a.t0)
    leader_first: dict[str, tuple[float, str]] = {}
    for at, to, body in sorted(sms):
        leader_first.setdefault(to, (at, kind_of(body)))
    leader_latency, leader_first_kind, unreached = [], Counter[str](), 0
    for g in range(1, groups + 1):
        got = leader_first.get(harness.leader_phone(g))
        if got is None:
            unreached += 1
            continue
        leader_latency.append(got[0] - first_alarm[g])
        leader_first_kind[got[1]] += 1
    leaders = [per_phone.get(harness.leader_phone(g), 0) for g in range(1, groups + 1)]
    deputies = [per_phone.get(harness.resident_phone(g, harness.DEPUTY), 0) for g in range(1, groups + 1)]
    all9 = [sorted(a.rings.values())[RINGS - 1] - a.t0 for a in alarms if len(a.rings) >= RINGS]
    return {
        "leader_first_sms_s": summary_s(leader_latency),
        "leaders_unreached": unreached,
        "leader_first_sms_kind": dict(leader_first_kind),
        "sms_total": len(sms),
        "sms_kinds": {"alert": kinds["alert"], "summary": kinds["summary"], "other": kinds["other"]},
        "sms_per_patrol": {phone: per_phone.get(phone, 0) for phone in PATROL_PHONES},
        "sms_duty": per_phone.get(DUTY_PHONE, 0),
        "sms_grid": per_phone.get(GRID_PHONE, 0),
        "sms_leaders": {"max": max(leaders, default=0), "total": sum(leaders)},
        "sms_deputies": {"max": max(deputies, default=0), "total": sum(deputies)},
        "summaries_per_phone": dict(Counter(to for _, to, body in sms if kind_of(body) == "summary")),
        "rings_all9_ms": summary_ms(all9),
        "rings_lost": sum(len(a.rings) < RINGS for a in alarms),
        "rings_received": sum(len(a.rings) for a in alarms),
        "alarms_without_any_ring": sum(not a.rings for a in alarms),
    }


async def run_storm(target: AlertdTarget, twilio: TwilioProcess, port: int, sizes: Sizes,
                    window_s: float | None) -> dict[str, Any]:  # fmt: skip
    """One storm; window_s: the daemon's storm window (None: no storm control), waited for at the end."""
    result: dict[str, Any] = {}
    groups = list(range(1, sizes.groups + 1))
    alarms = [Alarm(group=g, house=h) for g in groups for h in range(1, 11)]
    random.Random(SEED).shuffle(alarms)
    await target.start()
    result["startup_s"] = target.startup_s
    result["rss_start_mb"] = rss_mb(target.pid)
    receiver = PahoClient(port, subscribe=f"{target.prefix}/dev/+/cmd")
    publisher = PahoClient(port)
    try:
        rings = Rings(alarms, receiver)
        since = time.time()
        cpu_before = cpu_s(target.pid)
        print(f"  alertd started in {target.startup_s:.2f} s; {len(alarms)} alarms over {sizes.duration_s:.0f} s...",
              flush=True)  # fmt: skip
        await publish_storm(target, publisher, alarms, sizes)
        result["publish_s"] = alarms[-1].t0 - alarms[0].t0 if len(alarms) > 1 else 0.0
        print(f"  published in {result['publish_s']:.1f} s; waiting for the last steps"
              f"{' and summaries' if window_s else ''}...", flush=True)  # fmt: skip
        result |= await wait_after(alarms, rings, twilio, sizes, window_s)
        cpu_after = cpu_s(target.pid)
        if cpu_before is not None and cpu_after is not None:
            result["cpu_ms_per_alarm"] = (cpu_after - cpu_before) * 1000 / len(alarms)
        result["rss_end_mb"] = rss_mb(target.pid)
        rings.update()
        result |= report(alarms, twilio.messages, since, sizes.groups)
        result["rings_stray"] = rings.stray
    finally:
        publisher.close()
        receiver.close()
        await target.stop()
        await target.forget(port)
    result["outbox_sms_by_status"] = outbox_statuses(target.village.store_path)
    return result


# --- output ---------------------------------------------------------------------------------------------


def check_targets(r: dict[str, Any]) -> list[str]:
    out = []
    p99, unreached = r["leader_first_sms_s"]["p99"], r["leaders_unreached"]
    ok = p99 is not None and p99 <= LEADER_P99_S and unreached == 0
    out.append(f"[{'PASS' if ok else 'MISS'}] every leader's first SMS p99 <= {LEADER_P99_S:.0f} s: "
               f"{fmt(p99, '.2f')} s, {unreached} leaders got none")  # fmt: skip
    patrol = list(r["sms_per_patrol"].values())
    ok = all(n <= PER_PHONE_MAX for n in patrol)
    out.append(f"[{'PASS' if ok else 'MISS'}] SMS per patrol member <= {PER_PHONE_MAX}: "
               f"{' / '.join(str(n) for n in patrol)}")  # fmt: skip
    ok = r["sms_duty"] <= PER_PHONE_MAX
    out.append(f"[{'PASS' if ok else 'MISS'}] SMS per duty phone <= {PER_PHONE_MAX}: {r['sms_duty']}")
    ok = r["rings_lost"] == 0
    out.append(f"[{'PASS' if ok else 'MISS'}] every alarm's 9 rings arrived: lost {r['rings_lost']} "
               f"of {r['alarms']}")  # fmt: skip
    return out


def print_results(results: dict[str, Any]) -> None:
    r = results["storm"]
    s = results["sizes"]
    print()
    print(f"broker: {results['broker_used']}; {s['alarms']} alarms from {s['groups']} groups over "
          f"{s['duration_s']:.0f} s; steps {s['steps']} s")  # fmt: skip
    storm = results["storm_settings"]
    print(f"storm control: {json.dumps(storm) if storm else 'none ([storm] absent from alertd.config: not written)'}")
    rows: list[tuple[str, str]] = [
        ("start-up (-> healthz ok), s", fmt(r["startup_s"], ".2f")),
        ("published in, s", fmt(r["publish_s"], ".1f")),
        ("waited after the last alarm, s", f"{fmt(r['waited_after_last_alarm_s'], '.1f')} ({r['ended_by']})"),
    ]
    lf = r["leader_first_sms_s"]
    for p in ("p50", "p95", "p99", "max"):
        rows.append((f"leader's first SMS {p}, s", fmt(lf[p], ".2f")))
    rows.append(("leaders reached / without SMS", f"{lf['n']} / {r['leaders_unreached']}"))
    rows.append(("leader's first SMS was", ", ".join(f"{k} {v}" for k, v in r["leader_first_sms_kind"].items())
                 or "-"))  # fmt: skip
    for phone, n in r["sms_per_patrol"].items():
        rows.append((f"SMS to patrol {phone}", str(n)))
    rows.append((f"SMS to duty {DUTY_PHONE}", str(r["sms_duty"])))
    rows.append((f"SMS to grid worker {GRID_PHONE}", str(r["sms_grid"])))
    rows.append(("SMS per leader max / all leaders", f"{r['sms_leaders']['max']} / {r['sms_leaders']['total']}"))
    rows.append(("SMS per deputy max / all deputies", f"{r['sms_deputies']['max']} / {r['sms_deputies']['total']}"))
    k = r["sms_kinds"]
    rows.append(("SMS total (alert / summary / other)", f"{r['sms_total']} ({k['alert']} / {k['summary']} / "
                 f"{k['other']})"))  # fmt: skip
    outbox = r["outbox_sms_by_status"]
    rows.append(("outbox SMS by status (store)", ", ".join(f"{k} {v}" for k, v in sorted(outbox.items()))
                 if outbox else "-"))  # fmt: skip
    ra = r["rings_all9_ms"]
    rows.append(("all 9 rings p50 / p95 / p99 / max, ms", " / ".join(fmt(ra[p], ".0f") for p in
                                                                     ("p50", "p95", "p99", "max"))))  # fmt: skip
    rows.append(("alarms without 9 rings (lost)", f"{r['rings_lost']} of {r['alarms']} "
                 f"({r['alarms_without_any_ring']} without any)"))  # fmt: skip
    rows.append(("daemon CPU per alarm, ms", fmt(r.get("cpu_ms_per_alarm"), ".2f")))
    rows.append(("daemon RSS start / end, MB", f"{fmt(r['rss_start_mb'], '.0f')} / {fmt(r['rss_end_mb'], '.0f')}"))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:{width}}  {value}")
    print()
    for line in results["targets"]:
        print(line)


# --- main -----------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    sizes = QUICK if args.quick else FULL
    if args.steps is not None:
        sizes = replace(sizes, steps=args.steps)
    work = Path(tempfile.mkdtemp(prefix="alertd-storm-"))
    broker = OwnBroker(work) if args.own_broker else None
    twilio = TwilioProcess()
    target: AlertdTarget | None = None
    port = args.broker_port
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "quick": args.quick,
        "sizes": {
            "groups": sizes.groups,
            "alarms": sizes.alarms,
            "duration_s": sizes.duration_s,
            "steps": list(sizes.steps),
            "seed": SEED,
        },
    }
    try:
        async with asyncio.timeout(sizes.budget_s):
            if broker is not None:
                await broker.start()
                port = broker.port
            results["broker_used"] = "own mosquitto, config/mosquitto.conf" if broker else f"127.0.0.1:{port}"
            await twilio.start()
            village = write_village(work, groups=sizes.groups, steps=sizes.steps, twilio=twilio,  # type: ignore[arg-type]
                                    broker_port=port)  # fmt: skip
            storm = results["storm_settings"] = configure_storm(village.settings_path, sizes)
            print(f"work dir {work}; {sizes.alarms} households in {sizes.groups} groups; storm control: "
                  f"{results['storm_settings'] or 'none (no [storm] in alertd.config)'}", flush=True)  # fmt: skip
            target = AlertdTarget(village, work / "alertd.log")
            on = storm is not None and storm.get("threshold", THRESHOLD) > 0
            window_s = float(storm.get("window_s", sizes.window_s)) if storm is not None and on else None
            results["storm"] = await run_storm(target, twilio, port, sizes, window_s)
            results["storm"]["alarms"] = sizes.alarms
    finally:
        if target is not None:
            with contextlib.suppress(Exception):
                await target.stop()
            await target.forget(port)
        await twilio.stop()
        if broker is not None:
            await broker.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["targets"] = check_targets(results["storm"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="alertd storm control benchmark (loopback)")
    parser.add_argument("--quick", action="store_true", help="400 alarms over 10 s, times / 6: under 2 minutes")
    parser.add_argument("--steps", type=parse_steps, metavar="A,B,C",
                        help="the roster's escalation steps, s (default 0,120,300; quick 0,20,50)")  # fmt: skip
    parser.add_argument(
        "--own-broker",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run our own mosquitto with config/mosquitto.conf (default); --no-own-broker: use --broker-port",
    )
    parser.add_argument("--broker-port", type=int, default=1883, help="with --no-own-broker (default 1883)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (roster, settings, store, logs)")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print_results(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
