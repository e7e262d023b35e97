"""The README's first command: `alertd demo` runs the whole scenario against the local broker and passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_demo_runs_end_to_end() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "alertd.cli", "demo", "-c", str(ROOT / "config" / "alertd.toml")],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.count("rings: 2号户 王家 求救") == 9
    assert out.count("stops ringing") == 9
    assert out.count("SMS → +86") == 3, "the leader and two patrol members, printed by the console channel"
    assert "time to acknowledge" in out
    assert out.rstrip().endswith("demo passed")
