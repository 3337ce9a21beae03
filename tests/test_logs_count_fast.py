"""The typer-free `logs search --count` prints what the typer command prints, or declines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mailflow_doctor.cli import app
from mailflow_doctor.cli.logs_count import run

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "smtplogs"
LOG = str(FIXTURES / "RECV2026112814-1.LOG")
TIMINGS = ("elapsed_seconds", "sessions_per_second", "mb_per_second")
runner = CliRunner()


def typer_output(args: list[str]) -> str:
    result = runner.invoke(app, ["logs", "search", *args])
    assert result.exit_code == 0, result.output
    return result.output


def without_timings(text: str) -> dict[str, object]:
    doc = json.loads(text)
    assert all(doc.pop(key) >= 0 for key in TIMINGS)
    return doc  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "args",
    [
        [LOG, "--count"],
        ["--count", str(FIXTURES), "--from", "198.51.100.0/24,104.47.128.0/17", "-q"],
        [LOG, "--count", "--from=eop", "--jobs=1", "--limit", "3"],
        ["--count", "-j", "2", "--", LOG],
    ],
)
def test_text_count_is_the_typer_commands(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(args)
    assert capsys.readouterr().out == typer_output(args)


@pytest.mark.parametrize("fmt", [["--format", "json"], ["-f", "json"], ["--format=json"]])
def test_json_count_is_the_typer_commands(
    fmt: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [str(FIXTURES), "--count", *fmt]
    assert run(args)
    fast = without_timings(capsys.readouterr().out)
    assert fast == without_timings(typer_output(args))
    assert fast["sessions"] == 7


@pytest.mark.parametrize(
    "args",
    [
        [LOG],  # a listing, not a count
        ["--count"],  # no path
        [LOG, "--count", "--help"],
        [LOG, "--count", "-o", "out.txt"],
        [LOG, "--count", "-f", "html"],
        [LOG, "--count", "--from", "not-a-range"],
        [LOG, "--count", "--from"],
        [LOG, "--count", "--jobs", "two"],
        [LOG, "--count", "-qj", "1"],
        ["/no/such/folder", "--count"],
        [LOG, "--count", "--endpoints", "/no/such/endpoints.json"],
    ],
)
def test_anything_unusual_is_declined(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert not run(args)
    assert capsys.readouterr().out == ""


def test_console_entry_counts_and_errors_as_before(tmp_path: Path) -> None:
    code = "import sys; from mailflow_doctor.cli import main; sys.argv[0] = 'm'; main()"

    def entry(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", code, "logs", "search", *args]
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)

    counted = entry(str(FIXTURES), "--count")
    assert (counted.returncode, counted.stdout) == (0, "7\n")
    missing = entry(str(tmp_path / "nope"), "--count")
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
