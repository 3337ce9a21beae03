"""Deny-log readers for pfSense, FortiGate, PAN-OS, Windows Firewall and Check Point."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.records import FirewallDrop
from mailflow_doctor.evidence.registry import best_reader, readers

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "denylogs"
T0 = datetime(2026, 11, 28, 21, 3, 11, tzinfo=UTC)
REF = datetime(2026, 11, 29, tzinfo=UTC)


def _read(path: Path, zone: ZoneInfo | None = None) -> tuple[str, list[FirewallDrop], ReadContext]:
    doc = Document.open(path)
    reader, score = best_reader(doc)
    assert reader is not None, f"{path.name} not recognised"
    assert score >= 50
    ctx = ReadContext(timezone=zone, reference_utc=REF)
    records = [r for r in reader.read(doc, ctx) if isinstance(r, FirewallDrop)]
    return reader.kind, records, ctx


def test_pfsense_v4_v6_and_truncated() -> None:
    kind, drops, ctx = _read(FIXTURES / "pfsense-filterlog.log", ZoneInfo("America/Toronto"))
    assert kind == "firewall_log.pfsense"
    assert [(d.src_ip, d.dst_ip, d.dst_port, d.protocol) for d in drops] == [
        ("40.107.21.14", "203.0.113.25", 25, "tcp"),
        ("2a01:111:f403:c900::5", "2001:db8::25", 25, "tcp"),
        ("192.0.2.9", "203.0.113.25", 53, "udp"),
    ]
    # BSD time in Toronto (UTC-5 in November); RFC 5424 time carries its own offset.
    assert drops[0].time_utc == datetime(2026, 11, 29, 2, 3, 11, tzinfo=UTC)
    assert drops[1].time_utc == datetime(2026, 11, 28, 20, 4, 2, 120100, tzinfo=UTC)
    assert drops[0].rule == "tracker 1000000103"
    assert any(i.line == 4 for i in ctx.issues.issues)


def test_fortigate_only_denies_with_epoch_time() -> None:
    kind, drops, _ = _read(FIXTURES / "fortigate-traffic.log")
    assert kind == "firewall_log.fortigate"
    assert [d.src_ip for d in drops] == ["40.107.21.14", "52.102.3.4"]
    assert drops[0].time_utc == T0
    assert drops[0].rule == "implicit deny (policy 0)"
    # No eventtime: date + time + tz offset.
    assert drops[1].time_utc == datetime(2026, 11, 28, 21, 4, 0, tzinfo=UTC)
    assert drops[1].rule == "policy 12"


def test_panos_deny_drop_reset_not_allow() -> None:
    kind, drops, ctx = _read(FIXTURES / "panos-traffic.log", ZoneInfo("Europe/Amsterdam"))
    assert kind == "firewall_log.panos"
    assert [(d.src_ip, d.action, d.rule) for d in drops] == [
        ("40.107.21.14", "deny", "interzone-default"),
        ("52.102.3.4", "reset", "Block-Bad"),
    ]
    assert drops[0].dst_port == 25
    assert drops[0].time_utc == T0
    assert any("truncated" in i.message for i in ctx.issues.issues)


def test_windows_firewall_header_fields_and_local_time() -> None:
    kind, drops, _ = _read(FIXTURES / "pfirewall.log", ZoneInfo("Europe/Amsterdam"))
    assert kind == "firewall_log.windows"
    assert [(d.src_ip, d.dst_port) for d in drops] == [
        ("40.107.21.14", 25),
        ("2a01:111:f403:c900::5", 25),
    ]
    assert drops[0].time_utc == T0
    assert drops[0].time_assumed == ""


def test_windows_firewall_without_zone_says_so() -> None:
    _, drops, _ = _read(FIXTURES / "pfirewall.log")
    assert "UTC assumed" in drops[0].time_assumed


def test_checkpoint_drop_and_reject() -> None:
    kind, drops, _ = _read(FIXTURES / "checkpoint.log")
    assert kind == "firewall_log.checkpoint"
    assert [(d.src_ip, d.action, d.dst_port) for d in drops] == [
        ("40.107.21.14", "deny", 25),
        ("52.102.3.4", "reject", 25),
    ]
    assert drops[0].time_utc == T0
    assert drops[0].rule == "Cleanup rule"


def test_evidence_refs_point_at_lines() -> None:
    _, drops, _ = _read(FIXTURES / "fortigate-traffic.log")
    assert drops[0].ref.line == 1
    assert drops[1].ref.line == 3
    assert "52.102.3.4" in drops[1].ref.excerpt


DENY_KINDS = [
    "firewall_log.pfsense",
    "firewall_log.fortigate",
    "firewall_log.panos",
    "firewall_log.windows",
    "firewall_log.checkpoint",
]


@pytest.mark.parametrize("kind", DENY_KINDS)
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.lists(st.text(max_size=300), max_size=8))
def test_readers_never_raise_on_junk(tmp_path: Path, kind: str, junk: list[str]) -> None:
    base = {
        "firewall_log.pfsense": "pfsense-filterlog.log",
        "firewall_log.fortigate": "fortigate-traffic.log",
        "firewall_log.panos": "panos-traffic.log",
        "firewall_log.windows": "pfirewall.log",
        "firewall_log.checkpoint": "checkpoint.log",
    }[kind]
    lines = (FIXTURES / base).read_text(encoding="utf-8").splitlines()
    # Interleave junk and cut real lines at random-ish points.
    mixed: list[str] = []
    for index, line in enumerate(lines):
        mixed.append(line[: max(1, len(line) - index * 7)])
        if index < len(junk):
            mixed.append(junk[index])
    path = tmp_path / "log.txt"
    path.write_text("\n".join(mixed), encoding="utf-8", errors="surrogatepass")
    reader = readers()[kind]
    list(reader.read(Document.open(path), ReadContext(reference_utc=REF)))


def _panos_lines_from_haskell(text: str) -> list[str]:
    """The PAN-OS sample keeps each log line as a Haskell list of string pieces."""
    lines = []
    for block in re.findall(r"pack \$ concat\s*\[(.*?)\]", text, re.S):
        lines.append("".join(re.findall(r'"((?:[^"\\]|\\.)*)"', block)))
    return lines


def test_conformance_samples(samples: Path, tmp_path: Path) -> None:
    logs = samples / "firewall-logs"
    expected = {
        "pfsense_filterlog_rfc5424_crowdsec-hub.log": "firewall_log.pfsense",
        "windows_pfirewall_BetaHydri-ParseFirewallLog.log": "firewall_log.windows",
    }
    for name, kind in expected.items():
        got_kind, drops, ctx = _read(logs / name)
        assert got_kind == kind
        assert drops, name
        assert not ctx.issues.issues, name
    # FortiGate and Check Point samples are test sources with log lines embedded: read directly.
    forti = readers()["firewall_log.fortigate"]
    doc = Document.open(
        logs / "fortigate_traffic_deny_GEBIT-fluent-plugin-fortigate-logs-parser_testModule.rb"
    )
    drops = list(forti.read(doc, ReadContext()))
    assert [(d.src_ip, d.dst_port, d.rule) for d in drops] == [
        ("192.168.0.32", 80, "implicit deny (policy 0)")
    ]
    checkpoint = readers()["firewall_log.checkpoint"]
    doc = Document.open(logs / "checkpoint_smart1_wazuh-ruleset_tests.ini")
    cp_drops = list(checkpoint.read(doc, ReadContext()))
    assert {d.action for d in cp_drops} <= {"deny", "reject"}
    assert len(cp_drops) >= 2
    panos_text = (logs / "panos_syslog_layer-3-communications_pan-os-syslog_Sample.hs").read_text(
        encoding="utf-8"
    )
    extracted = tmp_path / "panos.log"
    extracted.write_text("\n".join(_panos_lines_from_haskell(panos_text)), encoding="utf-8")
    kind, pan_drops, _ = _read(extracted)
    assert kind == "firewall_log.panos"
    assert ("192.0.2.235", "192.0.2.251") in {(d.src_ip, d.dst_ip) for d in pan_drops}
