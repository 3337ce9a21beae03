"""Conformance: the whole public samples folder at once, as an admin would point the tool at it.

The folder mixes every supported format (Exchange logs and exports, firewall configurations
and deny logs, endpoint lists) from unrelated organisations and years, plus documentation and
source files. The run must finish cleanly, read every file of a supported format as what it
is, follow the JSON contract, and refuse to name one root cause for unrelated incidents.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXE = Path(sys.executable).parent / "mailflow-doctor"
SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"  # as in conftest.py
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
SEVERITIES = {"critical", "error", "warning", "info"}
CIDR_KEYS = ("missing_ranges", "stale_ranges", "source_ranges")

# Files that are not evidence of any format the tool reads: documentation, licence text,
# parser source code holding log lines as string literals, a LogParser summary and a list of
# column values. Everything else in the folder has a reader or a firewall parser.
NOT_EVIDENCE = (
    re.compile(r"^SOURCES-.*\.md$"),
    re.compile(r"NOTICE\.txt$"),
    re.compile(r"^logstash-patterns-core_"),
    re.compile(r"\.hs$"),
    re.compile(r"^logparser_"),
    re.compile(r"recipient_status_values"),
    re.compile(r"^O365IPAddresses_.*\.xml$"),  # the feed retired in 2018; no reader
)

# What each sample folder holds, as the `kind` prefix the tool must report.
KIND_BY_FOLDER = {
    "exchange": ("exo.", "exchange."),
    "firewall-configs": ("firewall.",),
    "firewall-logs": ("firewall_log.",),
    "endpoints": ("firewall.allowlist", "endpoints.m365"),
}


def _canonical(cidrs: list[str]) -> list[str]:
    networks = [ipaddress.ip_network(c) for c in cidrs]
    v4 = ipaddress.collapse_addresses(n for n in networks if n.version == 4)
    v6 = ipaddress.collapse_addresses(n for n in networks if n.version == 6)
    return [str(n) for n in [*sorted(v4), *sorted(v6)]]


def _cidr_lists(value: Any, key: str = "") -> list[list[str]]:
    found: list[list[str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += _cidr_lists(v, k)
    elif isinstance(value, list):
        if key in CIDR_KEYS and all(isinstance(v, str) for v in value):
            found.append(value)
        else:
            for v in value:
                found += _cidr_lists(v, key)
    return found


@pytest.fixture(scope="module")
def whole_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict[str, Any], str]:
    if not SAMPLES.is_dir():
        pytest.skip("../shared/samples is not present")
    if not EXE.exists():
        pytest.skip("mailflow-doctor is not installed in this environment")
    result = subprocess.run(
        [str(EXE), "diagnose", str(SAMPLES), "--format", "json"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=300,
        cwd=tmp_path_factory.mktemp("run"),
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.returncode, json.loads(result.stdout), result.stderr


def test_exit_status_is_a_diagnosis(whole_folder: tuple[int, dict[str, Any], str]) -> None:
    code, _, stderr = whole_folder
    assert code in (0, 1), stderr[-2000:]


def test_no_check_failed_internally(whole_folder: tuple[int, dict[str, Any], str]) -> None:
    _, doc, _ = whole_folder
    broken = [f["title"] for f in doc["findings"] if f["id"].startswith("internal.")]
    assert broken == []


def test_every_file_of_a_supported_format_is_recognised(
    whole_folder: tuple[int, dict[str, Any], str],
) -> None:
    _, doc, _ = whole_folder
    wrong: list[str] = []
    for entry in doc["evidence"]:
        path = Path(entry["path"])
        name = path.name
        if any(p.search(name) for p in NOT_EVIDENCE):
            # Not evidence: it must not be mistaken for a firewall or a log either.
            if entry["kind"] != "unrecognised":
                wrong.append(f"{name}: read as {entry['kind']}")
            continue
        if entry["kind"] in ("unrecognised", "binary", "container"):
            wrong.append(f"{name}: {entry['kind']}")
            continue
        folder = next((p for p in path.parts if p in KIND_BY_FOLDER), None)
        if folder is not None and not entry["kind"].startswith(KIND_BY_FOLDER[folder]):
            wrong.append(f"{name}: read as {entry['kind']} in {folder}/")
    assert wrong == []


def test_json_follows_the_contract(whole_folder: tuple[int, dict[str, Any], str]) -> None:
    _, doc, _ = whole_folder
    assert doc["tool"] == "mailflow-doctor"
    assert ISO_Z.match(doc["generated_utc"])
    assert set(doc["endpoints"]) >= {"source", "instance", "version"}
    for entry in doc["evidence"]:
        assert set(entry) >= {"path", "kind", "records", "first_utc", "last_utc", "warnings"}
        assert isinstance(entry["records"], int)
        for key in ("first_utc", "last_utc"):
            assert entry[key] is None or ISO_Z.match(entry[key]), entry
        assert all(isinstance(w, str) and w for w in entry["warnings"])
    roots = [f for f in doc["findings"] if f["root_cause"]]
    assert len(roots) <= 1
    assert doc["root_cause"] == (roots[0]["id"] if roots else None)
    for finding in doc["findings"]:
        assert set(finding) >= {
            "id",
            "severity",
            "root_cause",
            "confidence",
            "title",
            "summary",
            "data",
            "evidence",
            "remediation",
        }
        assert finding["severity"] in SEVERITIES
        assert 0.0 <= finding["confidence"] <= 1.0
        for ref in finding["evidence"]:
            assert set(ref) >= {"path", "line", "excerpt"}
        for cidrs in _cidr_lists(finding["data"]):
            assert cidrs == _canonical(cidrs), (finding["id"], cidrs)


def test_unrelated_samples_get_no_root_cause(
    whole_folder: tuple[int, dict[str, Any], str],
) -> None:
    _, doc, _ = whole_folder
    assert doc["root_cause"] is None
    assert any(f["id"] == "evidence.mixed_sources" for f in doc["findings"])
