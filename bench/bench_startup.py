"""Start-up and memory at 15,000 households: `alertd run` from process start to ready, and its RSS, beside a floor.

    .venv/bin/python -m bench.bench_startup [--groups 1500] [--rounds 3] [--restarts 3]
        [--tree NAME=DIR ...] [--broker-port 1883] [--json out.json] [--keep]

    # before/after in one run: each tree's alertd is started in turn, in the same rounds, beside the same floor
    git archive HEAD | tar -x -C /tmp/before
    .venv/bin/python -m bench.bench_startup --tree before=/tmp/before --tree after=.

Each round writes a fresh village with tests.harness.write_village (1,500 groups of 10 households, one
terminal each, its own prefix and client id, a [twilio] section pointing at the Twilio-shaped server of
tests/fakes, run in this process; the daemon sends nothing while starting) and starts
`python -m alertd.cli run -c ...` as a real process, the way tests.harness.DaemonProcess does:

* once **cold**: nothing on disk yet beside the two TOML files (no store, no roster cache);
* then `--restarts` times **warm**: SIGTERM, wait for the exit, start again on the same files.

Per start: the time from just before the exec to the first `/healthz` answer that says mqtt ok (polled
every 10 ms over one keep-alive connection); `VmRSS` and `VmHWM` (the peak) from /proc/<pid>/status at
that moment; `VmRSS` again 1 s later (settled).

**The floor** is bench/startup_floor.py, measured the same way in the same rounds (one start per alertd
start, interleaved): a process that imports asyncio, aiohttp's web server and aiomqtt, connects to the same
broker with a persistent session and answers `/healthz` with mqtt ok. No roster, no store, nothing of
alertd. For scale the bench also times a bare interpreter (`python -c pass`) and alertd's imports alone
(`python -c "import alertd.cli"`), each to its exit.

alertd's modules are compiled to bytecode first (`compileall`, into the trees' `__pycache__`), as in an
installed package: with PYTHONDONTWRITEBYTECODE set and no bytecode, every start would compile them again.

Every wait has a limit (30 s per start, 10 s per stop before SIGKILL) and the whole run a budget. On the
way out every process the bench started is stopped, the MQTT persistent sessions are dropped (one
clean_session connect per client id) and the work dir is removed (unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt

from tests.fakes.twilio_server import TwilioServer
from tests.harness import ACCOUNT_SID, AUTH_TOKEN, free_port, write_village

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POLL_S = 0.010
SETTLE_S = 1.0


@dataclass(frozen=True, slots=True)
class Start:
    """One process start: seconds to ready, and its memory (MB) then and a second later."""

    ready_s: float
    rss_mb: float | None
    peak_mb: float | None
    settled_mb: float | None


def proc_status_mb(pid: int, key: str) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return None


async def stop_process(process: asyncio.subprocess.Process | None) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_S: every process the bench starts ends the same way."""
    if process is None or process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()


async def start_and_measure(argv: Sequence[str], http_port: int, log_path: Path, cwd: Path) -> Start:
    """Start `argv` in `cwd`, poll its /healthz until mqtt is ok, read its memory, stop it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTD_")}
    url = f"http://{HOST}:{http_port}/healthz"
    process: asyncio.subprocess.Process | None = None
    # One connection, opened before the clock starts (the connection pool re-connects as needed).
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        try:
            with log_path.open("ab") as log:
                t0 = time.monotonic()
                process = await asyncio.create_subprocess_exec(*argv, stdout=log, stderr=log, env=env, cwd=cwd)
            async with asyncio.timeout(START_TIMEOUT_S):
                while True:
                    if process.returncode is not None:
                        raise RuntimeError(f"{argv[2]} exited with {process.returncode}; see {log_path}")
                    with contextlib.suppress(aiohttp.ClientError, ValueError):
                        async with session.get(url) as response:
                            body = await response.json(content_type=None)
                            if body["checks"]["mqtt"]["ok"]:
                                break
                    await asyncio.sleep(POLL_S)
            ready_s = time.monotonic() - t0
            rss, peak = proc_status_mb(process.pid, "VmRSS"), proc_status_mb(process.pid, "VmHWM")
            await asyncio.sleep(SETTLE_S)
            return Start(ready_s, rss, peak, proc_status_mb(process.pid, "VmRSS"))
        finally:
            await stop_process(process)


def time_command(argv: Sequence[str], cwd: Path | None = None) -> float:
    """Wall time of a process that starts and exits on its own."""
    t0 = time.monotonic()
    subprocess.run(argv, check=True, timeout=START_TIMEOUT_S, stdout=subprocess.DEVNULL, cwd=cwd)
    return time.monotonic() - t0


async def forget_session(client_id: str, port: int) -> None:
    """Drop a persistent session at the broker, so nothing stays queued for it."""
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client(HOST, port, identifier=client_id, clean_session=True):
            pass


# --- summary ----------------------------------------------------------------------------------------------


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(starts: list[Start]) -> dict[str, Any]:
    ready = [s.ready_s for s in starts]
    return {
        "n": len(starts),
        "ready_s": median(ready),
        "ready_min_s": min(ready, default=None),
        "ready_max_s": max(ready, default=None),
        "rss_mb": median([s.rss_mb for s in starts]),
        "peak_mb": median([s.peak_mb for s in starts]),
        "settled_mb": median([s.settled_mb for s in starts]),
        "starts": [asdict(s) for s in starts],
    }


def fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def print_table(results: dict[str, Any]) -> None:
    columns: list[str] = results["columns"]
    floor = results["floor"]
    width = 18
    print()
    print(f"{results['households']:,} households, {results['rounds']} rounds; medians (min–max), ratio to the floor")
    print(f"{'':28}" + "".join(f"{c.replace('_', ' '):>{width}}" for c in columns))

    def row(label: str, cell: Any) -> None:
        print(f"{label:28}" + "".join(f"{cell(results[c]):>{width}}" for c in columns))

    def ratio(key: str) -> Any:
        return lambda s: "–" if s[key] is None or not floor[key] else f"{s[key] / floor[key]:.1f}×"

    row("start → healthz ok, s", lambda s: f"{fmt(s['ready_s'], '.2f')} ({fmt(s['ready_min_s'], '.2f')}–"
                                           f"{fmt(s['ready_max_s'], '.2f')})")  # fmt: skip
    row("  ÷ floor", ratio("ready_s"))
    for key, label in (("rss_mb", "RSS at ready, MB"), ("peak_mb", "peak RSS (VmHWM), MB"),
                       ("settled_mb", "RSS 1 s after ready, MB")):  # fmt: skip
        row(label, lambda s, key=key: fmt(s[key], ".1f"))
        row("  ÷ floor", ratio(key))
    imports = ", ".join(f"{k.removesuffix('_imports_s')} {fmt(v, '.3f')} s" for k, v in results.items()
                        if k.endswith("_imports_s"))  # fmt: skip
    print(f"bare interpreter (python -c pass): {fmt(results['bare_s'], '.3f')} s; "
          f"imports alone (python -c 'import alertd.cli'): {imports}")  # fmt: skip
    for column in columns[1:]:
        s = results[column]
        ok = s["ready_s"] is not None and s["ready_s"] < 1.0
        print(f"[{'PASS' if ok else 'MISS'}] {column}: start-up < 1 s: {fmt(s['ready_s'], '.2f')} s (median)")
        worst = max((v for v in (s["rss_mb"], s["settled_mb"]) if v is not None), default=None)
        ok = worst is not None and worst < 100
        print(
            f"[{'PASS' if ok else 'MISS'}] {column}: RSS < 100 MB: {fmt(worst, '.1f')} MB (median at ready or settled)"
        )


# --- main -----------------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="alertd-startup-"))
    python = sys.executable
    trees = [(name, Path(folder).resolve()) for name, _, folder in (t.partition("=") for t in args.tree)]
    trees = trees or [("alertd", Path.cwd())]
    floor_id = f"startup-floor-{uuid.uuid4().hex[:8]}"
    client_ids: list[str] = []
    starts: dict[str, list[Start]] = {"floor": []} | {f"{t}_{k}": [] for t, _ in trees for k in ("cold", "warm")}
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "households": args.groups * 10,
        "rounds": args.rounds,
        "restarts": args.restarts,
        "broker": f"{HOST}:{args.broker_port}",
        "trees": {name: str(path) for name, path in trees},
    }
    try:
        async with asyncio.timeout(args.budget), TwilioServer(ACCOUNT_SID, AUTH_TOKEN) as twilio:
            for _, tree in trees:  # bytecode, as an installed package has it (even under PYTHONDONTWRITEBYTECODE)
                time_command([python, "-m", "compileall", "-q", str(tree / "alertd"), str(Path.cwd() / "bench")])
            results["bare_s"] = median([time_command([python, "-c", "pass"]) for _ in range(5)])
            for name, tree in trees:
                imports = [time_command([python, "-c", "import alertd.cli"], cwd=tree) for _ in range(5)]
                results[f"{name}_imports_s"] = median(imports)

            async def floor_start() -> None:
                port = free_port()
                argv = [python, "-m", "bench.startup_floor", "--port", str(args.broker_port),
                        "--http-port", str(port), "--client-id", floor_id]  # fmt: skip
                s = await start_and_measure(argv, port, work / "floor.log", Path.cwd())
                starts["floor"].append(s)
                print(f"  floor: {s.ready_s:.2f} s, RSS {fmt(s.rss_mb, '.1f')} MB", flush=True)

            for round_no in range(1, args.rounds + 1):
                print(f"round {round_no}", flush=True)
                villages = []
                for name, tree in trees:
                    folder = work / f"round{round_no}-{name}"
                    folder.mkdir()
                    village = write_village(folder, groups=args.groups, twilio=twilio, broker_port=args.broker_port)
                    client_ids.append(village.client_id)
                    villages.append((name, tree, village))
                await floor_start()
                for restart in range(args.restarts + 1):
                    kind = "cold" if restart == 0 else "warm"
                    for name, tree, village in villages:
                        argv = [python, "-m", "alertd.cli", "run", "-c", str(village.settings_path)]
                        log = village.settings_path.with_name("alertd.log")
                        s = await start_and_measure(argv, village.http_port, log, tree)
                        starts[f"{name}_{kind}"].append(s)
                        memory = f"RSS {fmt(s.rss_mb, '.1f')} MB (peak {fmt(s.peak_mb, '.1f')})"
                        print(f"  {name} {kind}: {s.ready_s:.2f} s, {memory}", flush=True)
                    if restart > 0:
                        await floor_start()
    finally:
        for client_id in [*client_ids, floor_id]:
            await forget_session(client_id, args.broker_port)
        if args.keep:
            print(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results["columns"] = list(starts)
    results.update({column: summarize(values) for column, values in starts.items()})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--groups", type=int, default=1500, help="groups of 10 households (default 1500)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh villages, each with one cold start")
    parser.add_argument("--restarts", type=int, default=3, help="warm restarts per round")
    parser.add_argument("--broker-port", type=int, default=1883, help="the broker on 127.0.0.1 (default 1883)")
    parser.add_argument("--budget", type=float, default=600, help="the whole run, seconds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (rosters, stores, logs)")
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="an alertd source tree to start (`python -m alertd.cli` run in DIR), measured in the same rounds as "
        "the others; repeat for before/after (e.g. a `git archive HEAD | tar -x -C DIR`); default: alertd=.",
    )
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
