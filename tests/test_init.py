"""`alertd init DIR`: an annotated settings file and a starter roster to begin a deployment from.

Run as operators run it, from a folder outside the repository, so the files must come from the package.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

from alertd.config import Settings

CLI_TIMEOUT_S = 30.0


def alertd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTD_")}
    return subprocess.run(
        [sys.executable, "-m", "alertd.cli", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip


def test_init_writes_a_pair_that_check_accepts(tmp_path: Path) -> None:
    folder = tmp_path / "etc" / "alertd"  # missing: init creates it
    done = alertd("init", str(folder), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["alertd.toml", "roster.toml"]
    assert f"alertd check -c {folder / 'alertd.toml'}" in done.stdout  # the next step, spelled out

    checked = alertd("check", "-c", str(folder / "alertd.toml"), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert f"{folder / 'alertd.toml'}: ok (1 groups, 3 households" in checked.stdout


def test_init_keeps_secrets_out_and_explains_every_setting(tmp_path: Path) -> None:
    assert alertd("init", str(tmp_path), cwd=tmp_path).returncode == 0
    text = (tmp_path / "alertd.toml").read_text(encoding="utf-8")
    settings = tomllib.loads(text)
    assert "password" not in settings["mqtt"]
    assert not {"account_sid", "auth_token", "from_number"} & set(settings.get("twilio", {}))
    assert "ALERTD_MQTT__PASSWORD" in text
    assert "ALERTD_TWILIO__AUTH_TOKEN" in text

    # Every setting alertd knows is in the file, set or commented out, so the file is the whole menu.
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if typing.get_origin(model) is list:  # [[receivers]]
            (model,) = typing.get_args(model)
        header = f"[[{section}]]" if section == "receivers" else f"[{section}]"
        assert re.search(rf"^(# )?{re.escape(header)}$", text, re.MULTILINE), header
        assert model is not None
        for key in model.model_fields:
            assert re.search(rf"^#?\s*{key}\s*[=:]", text, re.MULTILINE), f"{section}.{key} is not in alertd.toml"

    roster = (tmp_path / "roster.toml").read_text(encoding="utf-8")
    assert roster.startswith("# alertd roster")
    assert "Replace every name and phone number" in roster


def test_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "roster.toml").write_text("# ours\n", encoding="utf-8")
    done = alertd("init", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert f"{tmp_path / 'roster.toml'}: already exists" in done.stderr
    assert "alertd.toml" not in done.stderr  # only the file in the way is named
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roster.toml"]  # nothing written, not even alertd.toml
    assert (tmp_path / "roster.toml").read_text(encoding="utf-8") == "# ours\n"

    (tmp_path / "roster.toml").unlink()
    (tmp_path / "alertd.toml").write_text("# ours\n", encoding="utf-8")
    done = alertd("init", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert f"{tmp_path / 'alertd.toml'}: already exists" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alertd.toml"]
    assert (tmp_path / "alertd.toml").read_text(encoding="utf-8") == "# ours\n"
