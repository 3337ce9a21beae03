"""`logs search`: the fast count agrees with a full parse, the CLI prints what it promises."""

from __future__ import annotations

import csv
import json
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mailflow_doctor.cli import app
from mailflow_doctor.evidence.document import Document
from mailflow_doctor.evidence.exchangelog import join_row
from mailflow_doctor.evidence.logsearch import RangeMatcher, count_sessions
from mailflow_doctor.knowledge.endpoints import load
from mailflow_doctor.knowledge.ipranges import IPSet

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "smtplogs"
sys.path.insert(0, str(REPO / "benchmarks"))
from gen_logs import generate  # noqa: E402

runner = CliRunner()
EOP = load().eop_smtp_ranges()


def csv_loop_count(files: list[Path], ranges: IPSet) -> tuple[int, int]:
    """The obvious, slow way: every row through csv.reader."""
    matcher = RangeMatcher(ranges)
    sessions: set[tuple[str, str]] = set()
    rows = 0
    for path in files:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.reader(handle):
                if not row or row[0].startswith("#") or len(row) < 6:
                    continue
                endpoint = row[5]
                host = endpoint.rpartition(":")[0] if ":" in endpoint else endpoint
                if matcher.contains_text(host):
                    rows += 1
                    sessions.add((row[1], row[2]))
    return len(sessions), rows


def test_fixture_count_is_eop_sessions_only() -> None:
    result = runner.invoke(
        app, ["logs", "search", str(FIXTURES / "RECV2026112814-1.LOG"), "--count"]
    )
    assert result.exit_code == 0, result.output
    # 40.92.18.75, 104.47.58.101, 2a01:111:f403:..., 52.100.165.12; not 104.47.200.9 (outside
    # the /17) nor the internal relay.
    assert result.output.strip() == "4"


def test_generated_logs_fast_count_matches_csv_loop(tmp_path: Path) -> None:
    files = generate(tmp_path, size_mb=3, servers=2, seed=11)
    docs = [Document.open(f) for f in files]
    fast = count_sessions(docs, EOP)
    assert fast.slow_path_files == []
    assert (fast.sessions, fast.lines) == csv_loop_count(files, EOP)
    assert fast.sessions > 100
    assert fast.bytes_read == sum(f.stat().st_size - 3 for f in files)


def test_tiny_chunks_match_normal_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailflow_doctor.evidence import logsearch

    files = generate(tmp_path, size_mb=1, servers=1, seed=9)
    whole = count_sessions([Document.open(f) for f in files], EOP)
    monkeypatch.setattr(logsearch, "CHUNK_BYTES", 4096)
    chunked = count_sessions([Document.open(f) for f in files], EOP)
    assert (chunked.sessions, chunked.lines) == (whole.sessions, whole.lines)
    assert chunked.slow_path_files == []


def test_parallel_scan_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailflow_doctor.evidence import logsearch

    files = generate(tmp_path, size_mb=2, servers=2, seed=3)
    monkeypatch.setattr(logsearch, "PARALLEL_MIN_BYTES", 0)
    docs = [Document.open(f) for f in files]
    one = count_sessions(docs, EOP, workers=1)
    two = count_sessions(docs, EOP, workers=2)
    assert (one.sessions, one.lines) == (two.sessions, two.lines)


def test_arbitrary_cidr_and_v6(tmp_path: Path) -> None:
    files = generate(tmp_path, size_mb=1, servers=1, seed=5)
    for ranges in (
        IPSet.parse("0.0.0.0/0", "::/0"),
        IPSet.parse("104.47.128.0/17"),
        IPSet.parse("2a01:111:f400::/48"),
        IPSet.parse("0.0.0.0/0"),
        IPSet.parse("10.20.0.0/16", "198.0.0.0/8"),
        IPSet.parse("40.94.3.0-40.94.200.17"),
    ):
        fast = count_sessions([Document.open(f) for f in files], ranges)
        assert (fast.sessions, fast.lines) == csv_loop_count(files, ranges), ranges


def test_quoted_connector_and_cut_rows(tmp_path: Path) -> None:
    header = (FIXTURES / "RECV2026112814-1.LOG").read_text(encoding="utf-8-sig")
    rows = [
        [
            "2026-11-28T14:00:00.000Z",
            "EX01\\Inbound, from EOP",
            "08DE000000000001",
            "0",
            "10.0.0.5:25",
            "40.92.1.1:1000",
            "+",
            "",
            "",
        ],
        [
            "2026-11-28T14:00:00.100Z",
            "EX01\\Inbound, from EOP",
            "08DE000000000001",
            "1",
            "10.0.0.5:25",
            "40.92.1.1:1000",
            "-",
            "",
            "Local",
        ],
    ]
    path = tmp_path / "RECV.LOG"
    path.write_text(header + "".join(join_row(r) + "\r\n" for r in rows), encoding="utf-8")
    cut = tmp_path / "RECV2.LOG"
    cut.write_text(
        "2026-11-28T14:00:00.000Z,EX01\\Default,08DE00000000000A,0,10.0.0.5:25,40.92.1.3:7\n"
        "2026-11-28T14:00:00.000Z,EX01\\Default\n"
        "2026-11-28T14:00:01.000Z,EX01\\Default,08DE000000000009,0,10.0.0.5:25,40.92.1.2:1,+,,\n",
        encoding="utf-8",
    )
    result = count_sessions([Document.open(path), Document.open(cut)], EOP)
    assert result.slow_path_files == []  # a quoted connector and a cut row need no fallback
    assert result.sessions == 4 + 1 + 2
    assert result.sessions == csv_loop_count([path, cut], EOP)[0]


def test_json_output_has_bytes_and_timings(tmp_path: Path) -> None:
    generate(tmp_path / "logs", size_mb=1, servers=1, seed=2)
    (tmp_path / "logs" / "notes.txt").write_text("not a log", encoding="utf-8")
    result = runner.invoke(
        app, ["logs", "search", str(tmp_path / "logs"), "--from", "eop", "--count", "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["sessions"] > 0
    assert doc["lines"] >= doc["sessions"]
    assert doc["files"] == 1
    assert doc["bytes"] > 900_000
    for key in ("elapsed_seconds", "sessions_per_second", "mb_per_second"):
        assert doc[key] >= 0
    assert doc["ranges"][0] == "40.92.0.0/15"
    assert doc["skipped_files"] == [str(tmp_path / "logs" / "notes.txt")]


def test_zip_and_custom_range(tmp_path: Path) -> None:
    bundle = tmp_path / "logs.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.write(FIXTURES / "RECV2026112814-1.LOG", "EX01/SmtpReceive/RECV2026112814-1.LOG")
        archive.write(FIXTURES / "SEND2026112814-1.LOG", "EX01/SmtpSend/SEND2026112814-1.LOG")
    result = runner.invoke(
        app, ["logs", "search", str(bundle), "--from", "198.51.100.0/24,104.47.128.0/17", "--count"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "2"


def test_listing_names_the_sessions(tmp_path: Path) -> None:
    result = runner.invoke(app, ["logs", "search", str(FIXTURES), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    remotes = {s["remote_ip"] for s in doc["sessions"]}
    # receive sessions from EOP in all fixtures, plus the send session *to* EOP 104.47.55.110
    assert {"40.92.18.75", "104.47.58.101", "52.100.165.12", "104.47.55.110"} <= remotes
    assert "104.47.200.9" not in remotes
    no_tls = next(s for s in doc["sessions"] if s["remote_ip"] == "52.100.165.12")
    assert no_tls["starttls_offered"] is False
    assert no_tls["outcome"] == "disconnected"
    report = tmp_path / "sessions.txt"
    text = runner.invoke(app, ["logs", "search", str(FIXTURES), "-o", str(report)])
    assert text.exit_code == 0
    listing = report.read_text(encoding="utf-8")
    assert "not offered" in listing
    assert "NAM12-DM6-obe.outbound.protec" in listing  # long names fold, never vanish
    assert "7 session(s) from 40.92.0.0/15" in listing


def test_hostile_ehlo_is_not_markup(tmp_path: Path) -> None:
    header = (FIXTURES / "RECV2026112814-1.LOG").read_text(encoding="utf-8-sig").split("\r\n")[:5]
    row = join_row(
        [
            "2026-11-28T14:00:00.000Z",
            "EX01\\Default Frontend EX01",
            "08DE0000000000AA",
            "0",
            "10.0.0.5:25",
            "40.92.9.9:1000",
            "<",
            "EHLO [red]<script>alert(1)</script>[/red]",
            "",
        ]
    )
    path = tmp_path / "RECV.LOG"
    path.write_text("\r\n".join(header) + "\r\n" + row + "\r\n", encoding="utf-8")
    report = tmp_path / "sessions.txt"
    result = runner.invoke(app, ["logs", "search", str(path), "-o", str(report)])
    assert result.exit_code == 0
    assert "[red]<script>alert(1)" in report.read_text(encoding="utf-8")  # shown, not obeyed


def test_bad_from_and_missing_path_are_clear(tmp_path: Path) -> None:
    bad = runner.invoke(app, ["logs", "search", str(FIXTURES), "--from", "not-a-range"])
    assert bad.exit_code == 2
    assert "not-a-range" in bad.output
    missing = runner.invoke(app, ["logs", "search", str(tmp_path / "nope"), "--count"])
    assert missing.exit_code == 2
    assert "no such file" in missing.output


def test_matcher_prefixes_cover_ranges() -> None:
    matcher = RangeMatcher(EOP)
    assert b"104.47." in matcher.prefixes_v4
    assert matcher.contains_endpoint(b"104.47.127.255:25")
    assert not matcher.contains_endpoint(b"104.47.128.0:25")
    assert matcher.contains_endpoint(b"2a01:111:f400:7e1b::31:25")
    assert matcher.contains_endpoint(b"[2a01:111:f403::1]:25")
    assert not matcher.contains_endpoint(b"2a01:111:f401::1:25")
    assert not matcher.contains_endpoint(b"garbage")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["EX01\\A", "EX02\\B", "Outbound, to EOP", ""]),
            st.sampled_from(["08DE000000000001", "08DE000000000002", "X"]),
            st.sampled_from(
                [
                    "40.92.0.1:1",
                    "40.94.0.1:2",
                    "104.47.127.1:3",
                    "104.47.128.1:4",
                    "",
                    "1.2.3.4",
                    "2a01:111:f400::9:25",
                    "::1:25",
                    "52.103.255.255:9",
                ]
            ),
            st.sampled_from(["+", "-", "<", ">", "*"]),
            st.text(alphabet='ab,"# \n', max_size=12),
            st.integers(min_value=1, max_value=9),  # fields kept: cut rows too
        ),
        max_size=25,
    )
)
def test_fast_count_equals_row_parse_on_generated_rows(
    tmp_path: Path, rows: list[tuple[str, str, str, str, str, int]]
) -> None:
    path = tmp_path / "RECV.LOG"
    lines = [
        join_row(
            ["2026-11-28T14:00:00.000Z", conn, sid, "1", "10.0.0.5:25", ep, ev, data, ""][:keep]
        )
        for conn, sid, ep, ev, data, keep in rows
    ]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    for ranges in (EOP, IPSet.universe()):
        fast = count_sessions([Document.open(path)], ranges)
        assert (fast.sessions, fast.lines) == csv_loop_count([path], ranges)
