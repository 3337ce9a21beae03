"""The console entry point loads only the command being run, and every command still works."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mailflow_doctor.cli import modules_for


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; from mailflow_doctor.cli import main; sys.argv[0] = 'mailflow-doctor'; main()"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_modules_for_command_words() -> None:
    assert modules_for(["logs", "search", "x", "--count"]) == {"logs"}
    assert modules_for(["demo", "--format", "json"]) == {"diagnose"}
    assert modules_for(["--help"]) is None
    assert modules_for([]) is None
    assert modules_for(["no-such-command"]) is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["explain", "450 4.4.316 Connection refused"], "4.4.316"),
        (["probe", "--help"], "TARGET"),
        (["endpoints", "show"], "40.107.0.0/16"),
        (["--help"], "diagnose"),
    ],
)
def test_single_command_processes(args: list[str], expected: str) -> None:
    result = _run(*args)
    assert result.returncode in (0, 1), result.stderr
    assert expected.lower() in (result.stdout + result.stderr).lower()


def test_logs_search_does_not_load_the_heavy_stacks() -> None:
    code = (
        "import sys; from mailflow_doctor.cli import main, register, modules_for;"
        "register(modules_for(['logs', 'search']));"
        "heavy = [m for m in ('jinja2', 'cryptography.x509', 'dns.resolver') if m in sys.modules];"
        "print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
