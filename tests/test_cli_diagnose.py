"""`diagnose` and `demo` end to end, as an admin runs them: real processes, real files."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "src" / "mailflow_doctor" / "examples" / "tailspin"
EXE = Path(sys.executable).parent / "mailflow-doctor"
MISSING = ["40.107.0.0/16", "52.102.0.0/15"]
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
SEVERITIES = {"critical", "error", "warning", "info"}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    if not EXE.exists():
        pytest.skip("mailflow-doctor is not installed in this environment")
    return subprocess.run(
        [str(EXE), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        cwd=cwd,
        timeout=120,
    )


# ---- a small checker for the output contract ----------------------------------------------


def _canonical(cidrs: list[str]) -> bool:
    nets = [ipaddress.ip_network(c) for c in cidrs]
    v4 = list(ipaddress.collapse_addresses(n for n in nets if n.version == 4))
    v6 = list(ipaddress.collapse_addresses(n for n in nets if n.version == 6))
    return [str(n) for n in [*v4, *v6]] == cidrs


def _is_cidr(text: object) -> bool:
    if not isinstance(text, str) or "/" not in text:
        return False
    try:
        ipaddress.ip_network(text)
    except ValueError:
        return False
    return True


def contract_errors(doc: Any) -> list[str]:
    """Every way `doc` departs from spec/output-contract.md (empty list: it conforms)."""
    errors: list[str] = []

    def need(cond: bool, message: str) -> None:
        if not cond:
            errors.append(message)

    need(isinstance(doc, dict), "document is not an object")
    if not isinstance(doc, dict):
        return errors
    keys = ["tool", "version", "generated_utc", "endpoints", "evidence", "root_cause", "findings"]
    need(list(doc) == keys, f"top-level keys {list(doc)} != {keys}")
    need(doc.get("tool") == "mailflow-doctor", "tool")
    need(isinstance(doc.get("version"), str), "version")
    need(bool(ISO_Z.match(str(doc.get("generated_utc")))), "generated_utc not ISO Z")
    endpoints = doc.get("endpoints", {})
    need(set(endpoints) == {"source", "instance", "version"}, f"endpoints keys {set(endpoints)}")
    for entry in doc.get("evidence", []):
        need(
            list(entry) == ["path", "kind", "records", "first_utc", "last_utc", "warnings"],
            f"evidence keys {list(entry)}",
        )
        need(isinstance(entry.get("records"), int), "evidence.records")
        for key in ("first_utc", "last_utc"):
            value = entry.get(key)
            need(value is None or bool(ISO_Z.match(value)), f"evidence.{key} {value!r}")
        need(isinstance(entry.get("warnings"), list), "evidence.warnings")
    findings = doc.get("findings", [])
    roots = [f for f in findings if f.get("root_cause") is True]
    need(len(roots) <= 1, "more than one root cause")
    if doc.get("root_cause") is None:
        need(not roots, "root_cause null but a finding is marked root")
    else:
        need(bool(roots) and roots[0]["id"] == doc["root_cause"], "root_cause id mismatch")
        need(bool(findings) and findings[0].get("root_cause") is True, "root not first")
    required = {
        "trace.deferrals": ["by_code", "targets", "first_utc", "last_utc"],
        "firewall.eop_ranges_blocked": ["missing_ranges", "vendor"],
        "firewall.eop_ranges_permitted_partially": ["ranges"],
        "firewall.stale_eop_objects": ["stale_ranges"],
        "firewall.drops_from_eop": ["count", "source_ranges", "first_utc", "last_utc"],
        "firewall.drops_from_unpublished": ["count", "sources"],
        "smtp.nothing_listening": ["target"],
        "smtp.connection_timeout": ["target"],
        "logs.eop_sessions_absent": ["window_utc", "servers"],
        "logs.coverage_gap": ["window_utc", "covered_utc"],
    }
    for finding in findings:
        fid = finding.get("id")
        base = ["id", "severity", "root_cause", "confidence", "title", "summary", "data"]
        need(list(finding)[: len(base)] == base, f"{fid}: keys {list(finding)}")
        need(finding.get("severity") in SEVERITIES, f"{fid}: severity")
        need(0 <= finding.get("confidence", -1) <= 1, f"{fid}: confidence")
        need(isinstance(finding.get("evidence"), list), f"{fid}: evidence")
        for ref in finding.get("evidence", []):
            need(set(ref) == {"path", "line", "excerpt"}, f"{fid}: evidence ref {ref}")
        need(
            all(isinstance(line, str) for line in finding.get("remediation", [None])),
            f"{fid}: remediation",
        )
        data = finding.get("data", {})
        for key in required.get(fid, []):
            need(key in data, f"{fid}: data lacks {key}")
        for key, value in data.items():
            if key.endswith("_utc") and isinstance(value, str):
                need(bool(ISO_Z.match(value)), f"{fid}: data.{key} {value!r}")
            if key.endswith("ranges") and isinstance(value, list) and all(map(_is_cidr, value)):
                need(_canonical(value), f"{fid}: data.{key} not canonical: {value}")
    return errors


def test_contract_checker_catches_departures() -> None:
    good = {
        "tool": "mailflow-doctor",
        "version": "0.1.0",
        "generated_utc": "2026-11-28T22:00:00Z",
        "endpoints": {"source": "bundled", "instance": "Worldwide", "version": "1"},
        "evidence": [],
        "root_cause": None,
        "findings": [],
    }
    assert contract_errors(good) == []
    assert contract_errors({**good, "generated_utc": "2026-11-28 22:00"})
    assert contract_errors({**good, "root_cause": "x.y"})
    bad_finding = {
        "id": "firewall.eop_ranges_blocked",
        "severity": "fatal",
        "root_cause": False,
        "confidence": 0.5,
        "title": "t",
        "summary": "s",
        "data": {"missing_ranges": ["40.107.0.0/17", "40.107.128.0/17"], "vendor": "x"},
        "evidence": [],
        "remediation": [],
    }
    errors = contract_errors({**good, "findings": [bad_finding]})
    assert any("severity" in e for e in errors)
    assert any("not canonical" in e for e in errors)


# ---- demo --------------------------------------------------------------------------------


def test_demo_json_names_the_firewall_gap_per_contract() -> None:
    result = run("demo", "--format", "json")
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)  # ONE document, nothing else on stdout
    assert contract_errors(doc) == []
    assert doc["root_cause"] == "firewall.eop_ranges_blocked"
    root = doc["findings"][0]
    assert root["data"]["missing_ranges"] == MISSING
    assert root["data"]["vendor"] == "cisco-asa"
    assert root["severity"] == "critical"
    assert any("network-object 40.107.0.0 255.255.0.0" in line for line in root["remediation"])
    assert any(ref["path"].endswith("tsp-fw01-running-config.txt") for ref in root["evidence"])
    ids = {f["id"] for f in doc["findings"]}
    assert {
        "trace.deferrals",
        "firewall.drops_from_eop",
        "firewall.stale_eop_objects",
        "logs.eop_sessions_absent",
    } <= ids
    paths = [e["path"] for e in doc["evidence"]]
    assert all(p.startswith("tailspin/") for p in paths)
    assert "unrecognised" not in {e["kind"] for e in doc["evidence"]}
    # The example must stay readable by every reader without a single complaint.
    assert [e["warnings"] for e in doc["evidence"] if e["warnings"]] == []
    kinds = {e["kind"] for e in doc["evidence"]}
    assert {"exo.message_trace", "exo.message_trace_detail", "firewall.cisco-asa"} <= kinds
    for finding in doc["findings"][1:]:
        assert finding["root_cause"] is False
    stale = next(f for f in doc["findings"] if f["id"] == "firewall.stale_eop_objects")
    assert stale["data"]["stale_ranges"] == ["65.55.88.0/24"]
    assert " no network-object object EOP-LEGACY-65.55.88" in stale["remediation"]
    assert "Traceback" not in result.stderr


def test_demo_text_html_markdown_and_output_file(tmp_path: Path) -> None:
    text = run("demo")
    assert text.returncode == 1
    assert "firewall.eop_ranges_blocked" in text.stdout
    assert "40.107.0.0/16" in text.stdout
    out = tmp_path / "sub" / "report.html"
    html = run("demo", "--format", "html", "--output", str(out))
    assert html.returncode == 1
    assert html.stdout == ""
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "52.102.0.0/15" in page
    markdown = run("demo", "-f", "markdown", "-o", str(tmp_path / "r.md"), "--quiet")
    assert markdown.returncode == 1
    assert markdown.stderr == ""
    assert (tmp_path / "r.md").read_text(encoding="utf-8").startswith("# Exchange Online")


def test_piped_output_has_no_progress_bar() -> None:
    result = run("demo", "--format", "json")
    assert "reading" not in result.stderr
    assert "\x1b[" not in result.stderr


# ---- diagnose ----------------------------------------------------------------------------


def test_diagnose_a_folder_and_a_zip_give_the_same_verdict(tmp_path: Path) -> None:
    folder = tmp_path / "evidence"
    shutil.copytree(EXAMPLE, folder)
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    docs = []
    for target in (folder, archive):
        result = run("diagnose", str(target), "--format", "json")
        assert result.returncode == 1, result.stderr
        doc = json.loads(result.stdout)
        assert contract_errors(doc) == []
        docs.append(doc)
    for doc in docs:
        assert doc["root_cause"] == "firewall.eop_ranges_blocked"
        assert doc["findings"][0]["data"]["missing_ranges"] == MISSING
    assert any("bundle.zip!trace/MessageTraceDetail.csv" in e["path"] for e in docs[1]["evidence"])


def test_diagnose_single_files_and_to_option(tmp_path: Path) -> None:
    config = EXAMPLE / "firewall" / "tsp-fw01-running-config.txt"
    result = run("diagnose", str(config), "--to", "203.0.113.25", "--format", "json")
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["root_cause"] == "firewall.eop_ranges_blocked"
    assert doc["findings"][0]["data"]["missing_ranges"] == MISSING
    clean = tmp_path / "trace.csv"
    lines = (EXAMPLE / "trace" / "MessageTrace.csv").read_text(encoding="utf-8").splitlines()
    clean.write_text("\n".join(line for line in lines if "Pending" not in line) + "\n")
    ok = run("diagnose", str(clean), "--format", "json")
    assert ok.returncode == 0, ok.stdout
    assert json.loads(ok.stdout)["root_cause"] is None


def test_missing_path_exits_2_naming_it(tmp_path: Path) -> None:
    ghost = tmp_path / "no-such-trace.csv"
    result = run("diagnose", str(ghost), "--format", "json")
    assert result.returncode == 2
    assert str(ghost) in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--timezone", "Mars/Olympus_Mons"], "Mars/Olympus_Mons"),
        (["--to", "smtp.example"], "smtp.example"),
    ],
)
def test_bad_options_exit_2(args: list[str], needle: str) -> None:
    result = run("diagnose", str(EXAMPLE / "trace"), *args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_endpoints_file_exits_2(tmp_path: Path) -> None:
    bogus = tmp_path / "endpoints.json"
    bogus.write_text("{not json", encoding="utf-8")
    result = run("diagnose", str(EXAMPLE), "--endpoints", str(bogus))
    assert result.returncode == 2
    assert str(bogus) in result.stderr


def test_unrecognised_input_is_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("call the firewall team\n", encoding="utf-8")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    result = run("diagnose", str(tmp_path), "--format", "json")
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert contract_errors(doc) == []
    assert doc["root_cause"] is None
    assert "none of the files was recognised" in result.stderr


def test_timezone_offsets_are_accepted() -> None:
    result = run("diagnose", str(EXAMPLE / "firewall"), "--timezone", "-05:00", "-f", "json")
    assert result.returncode in (0, 1), result.stderr
    json.loads(result.stdout)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_progress_bar_only_on_a_terminal() -> None:
    import os
    import pty

    if not EXE.exists():
        pytest.skip("mailflow-doctor is not installed in this environment")
    primary, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.Popen(
        [str(EXE), "diagnose", str(EXAMPLE), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    stdout, _ = proc.communicate(timeout=120)
    os.close(primary)
    tty_err = b"".join(chunks).decode("utf-8", "replace")
    assert "reading" in tty_err  # the bar was drawn on the terminal
    assert json.loads(stdout)["root_cause"] == "firewall.eop_ranges_blocked"
    quiet = subprocess.run(
        [str(EXE), "demo", "--format", "json", "--quiet"],
        capture_output=True,
        check=False,
    )
    assert quiet.stderr == b""


def test_a_bug_ends_in_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from mailflow_doctor.cli import app
    from mailflow_doctor.cli import diagnose as command

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(command, "diagnose", broken)
    monkeypatch.delenv("MAILFLOW_DOCTOR_DEBUG", raising=False)
    result = CliRunner().invoke(app, ["demo", "--format", "json"])
    assert result.exit_code == 2
    assert "internal error: RuntimeError: boom" in result.output
    assert "Traceback" not in result.output


def test_demo_takes_a_relative_endpoints_file(tmp_path: Path) -> None:
    source = REPO / "src" / "mailflow_doctor" / "knowledge" / "data" / "endpoints-worldwide.json"
    shutil.copy(source, tmp_path / "endpoints.json")
    result = run("demo", "-f", "json", "--endpoints", "endpoints.json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["endpoints"]["source"] == "file"
    assert doc["root_cause"] == "firewall.eop_ranges_blocked"


def test_json_warnings_go_to_stderr_naming_file_and_line(tmp_path: Path) -> None:
    trace = tmp_path / "MessageTraceDetail.csv"
    shutil.copy(EXAMPLE / "trace" / "MessageTraceDetail.csv", trace)
    with trace.open("a", encoding="utf-8", newline="") as handle:
        handle.write(
            '"x","y","False","t","<m>","id","r@x","s@x","bad","bad","not a date","Defer","",'
            '"Reason: [{LED=450 4.4.316 Connection refused}]",""\r\n'
        )
    result = run("diagnose", str(trace), "--format", "json")
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert contract_errors(doc) == []
    assert doc["evidence"][0]["warnings"]
    assert f"warning: {trace}: line 56" in result.stderr
    quiet = run("diagnose", str(trace), "--format", "json", "--quiet")
    assert quiet.stderr == ""


def test_a_zip_whose_only_member_is_damaged_exits_2(tmp_path: Path) -> None:
    broken = tmp_path / "evidence.zip"
    with zipfile.ZipFile(broken, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("trace.csv", "x" * 5000)
    data = bytearray(broken.read_bytes())
    start = data.index(b"trace.csv") + len("trace.csv")
    data[start + 2 : start + 12] = b"\xff" * 10  # corrupt the compressed stream
    broken.write_bytes(bytes(data))
    result = run("diagnose", str(broken), "--format", "json")
    assert result.returncode == 2, result.stdout
    assert str(broken) in result.stderr
    assert "nothing could be read" in result.stderr
    assert "Traceback" not in result.stderr


def test_mutated_zips_never_crash_the_intake(tmp_path: Path) -> None:
    """Random byte flips in a real zip: each ends as a warning, never an exception."""
    import io
    import random

    from mailflow_doctor.diagnose.bundle import collect
    from mailflow_doctor.knowledge.endpoints import load_bundled

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("trace/MessageTrace.csv", (EXAMPLE / "trace" / "MessageTrace.csv").read_text())
        zf.writestr("notes.log", "x" * 3000)
    raw = buffer.getvalue()
    rng = random.Random(7)
    endpoints = load_bundled()
    for number in range(300):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"mutant{number}.zip"
        path.write_bytes(bytes(data))
        collect([path], endpoints)  # must not raise
