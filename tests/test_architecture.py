"""The arrows point one way: the core imports no other alertd package, and no module imports in a circle; and
`alertd run` does not import what only other commands need.

Read from the source with ast, so the test sees every import, including those inside functions
(a lazy import is still a dependency) and those only for type checking (a cycle there still ties two
modules together)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "alertd"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every alertd module and the alertd modules it imports."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_the_core_imports_nothing_from_any_other_alertd_package() -> None:
    outward = {
        f"{module} -> {target}"
        for module, targets in _imports().items()
        if module.startswith("alertd.core")
        for target in targets
        if not target.startswith("alertd.core")
    }
    assert outward == set()


def test_no_module_imports_in_a_circle() -> None:
    graph = _imports()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_alertd_run_imports_only_what_it_uses() -> None:
    """Start-up time (docs/benchmarks.md): what only other commands, other configurations or a roster that must be
    checked in full need is imported when it is needed, not by `alertd run`'s modules."""
    code = "import sys, alertd.cli, alertd.daemon; print(' '.join(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(run.stdout.split())
    assert "alertd.daemon" in loaded
    lazy = {
        "alertd.decode", "alertd.demo", "alertd.mqtt_acl", "alertd.report", "alertd.scaffold",  # other commands
        "alertd.protocols.contact_id", "alertd.protocols.sms_pdu", "alertd.modem.session",  # receivers, modem
        "alertd.channels.twilio_sms", "twilio.rest", "serial",  # Twilio, serial lines: when configured
        "phonenumbers",  # a roster read from its cache checks no number
    }  # fmt: skip
    assert lazy & loaded == set()
