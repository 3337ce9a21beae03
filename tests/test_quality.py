"""The project's own static checks run as tests, so CI fails when they fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    other = shutil.which(name)
    if other is None:
        pytest.skip(f"{name} is not installed")
    return other


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "src", "tests", "benchmarks"],
        ["ruff", "format", "--check", "src", "tests", "benchmarks"],
        ["mypy", "--strict", "src"],
    ],
    ids=["ruff-check", "ruff-format", "mypy-strict"],
)
def test_static_checks(command: list[str]) -> None:
    result = subprocess.run(
        [_tool(command[0]), *command[1:]], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_layers_import_only_downwards() -> None:
    """Imports point down: knowledge imports nothing of ours, no layer imports one above."""
    layer = {
        "knowledge": 0,
        "evidence": 1,
        "firewall": 1,
        "probe": 1,
        "diagnose": 2,
        "report": 3,
        "cli": 4,
    }
    sideways_ok: set[tuple[str, str]] = set()
    src = REPO / "src" / "mailflow_doctor"
    bad: list[str] = []
    for path in src.rglob("*.py"):
        rel = path.relative_to(src).parts
        if len(rel) < 2 or rel[0] not in layer:
            continue
        own = rel[0]
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if not stripped.startswith(("from mailflow_doctor.", "import mailflow_doctor.")):
                continue
            target = stripped.split()[1].split(".")[1]
            if target not in layer or target == own:
                continue
            if layer[target] >= layer[own] and (own, target) not in sideways_ok:
                bad.append(f"{path.relative_to(REPO)}: {stripped}")
    assert not bad, "imports that point up or sideways:\n" + "\n".join(bad)
