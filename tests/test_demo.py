"""The README's first command: `alertd demo` runs the whole scenario against the local broker and passes."""

from __future__ import annotations

import os
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
    alerts = [line for line in out.splitlines() if line.startswith("SMS → +86") and "2号户 王家 求救" in line]
    assert len(alerts) == 3, "the leader and two patrol members, printed by the console channel"
    notices = [line for line in out.splitlines() if line.startswith("SMS → +86") and "已确认" in line]
    assert len(notices) == 2, "the two patrol members hear that the leader acknowledged"
    assert "time to acknowledge" in out
    assert out.rstrip().endswith("demo passed")


def test_demo_runs_from_any_folder_on_the_shipped_village(tmp_path: Path) -> None:
    """An installed alertd shows itself anywhere: without -c the demo runs the example village in the package."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTD_")}
    done = subprocess.run(
        [sys.executable, "-m", "alertd.cli", "demo"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path, env=env,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.count("rings: 2号户 王家 求救") == 9
    assert out.count("stops ringing") == 9
    # The leader and two patrol members; any other SMS (the daily digest) is not this test's business.
    alerts = [line for line in out.splitlines() if line.startswith("SMS → +86") and "2号户 王家 求救" in line]
    assert len(alerts) == 3
    assert "time to acknowledge" in out
    assert out.rstrip().endswith("demo passed")
    assert list(tmp_path.iterdir()) == []  # its throwaway files went elsewhere and are gone
