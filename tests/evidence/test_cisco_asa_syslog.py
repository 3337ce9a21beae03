"""Cisco ASA / FTD deny messages into FirewallDrop records, with times in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.records import FirewallDrop
from mailflow_doctor.evidence.registry import best_reader, readers

KIND = "firewall_log.cisco_asa"
REF = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

# The Tailspin Toys edge ASA during the outage, as a syslog server stored it (relay time and
# host first, then the ASA's own message).
TAILSPIN_LOG = """\
Nov 28 21:03:11 tt-edge-fw01 %ASA-4-106023: Deny tcp src outside:40.107.21.14/51234 dst inside:10.0.0.25/25 by access-group "OUTSIDE_IN" [0x0, 0x0]
Nov 28 21:03:12 tt-edge-fw01 %ASA-6-302013: Built inbound TCP connection 81723 for outside:40.92.4.5/40001 (40.92.4.5/40001) to inside:10.0.0.25/25 (203.0.113.25/25)
<164>Nov 28 2026 21:03:13 UTC: %ASA-4-106023: Deny tcp src outside:2a01:111:f403:c900::5/41234 dst inside:2001:db8:25::25/25 by access-group "OUTSIDE_IN" [0x0, 0x0]
Nov 28 21:03:14 tt-edge-fw01 %ASA-6-106100: access-list OUTSIDE_IN denied tcp outside/52.102.3.4(40001) -> inside/10.0.0.25(25) hit-cnt 1 first hit [0x1a2b3c4d, 0x0]
Nov 28 21:03:15 tt-edge-fw01 %ASA-6-106100: access-list OUTSIDE_IN permitted tcp outside/40.92.1.1(40002) -> inside/10.0.0.25(25) hit-cnt 1 first hit [0x1a2b3c4d, 0x0]
Nov 28 21:03:16 tt-edge-fw01 %ASA-2-106001: Inbound TCP connection denied from 52.101.9.9/33333 to 203.0.113.25/25 flags SYN  on interface outside
Nov 28 21:03:17 tt-edge-fw01 %ASA-2-106006: Deny inbound UDP from 198.51.100.7/5353 to 203.0.113.25/53 on interface outside
Nov 28 21:03:18 tt-edge-fw01 %ASA-6-106015: Deny TCP (no connection) from 40.92.4.5/40001 to 10.0.0.25/25 flags RST  on interface outside
Nov 28 21:03:19 tt-edge-fw01 %FTD-3-710003: TCP access denied by ACL from 40.107.2.2/5555 to outside:203.0.113.2/25
Nov 28 21:03:20 tt-edge-fw01 %ASA-4-106023: Deny tcp src outside:40.107.21.15/51235 dst inside:mail.tailspintoys.ca/25 by access-group "OUTSIDE_IN" [0x0, 0x0]
Nov 28 21:03:21 tt-edge-fw01 %ASA-4-106023: Deny something unexpected
Nov 28 21:03:22 tt-edge-fw01 %ASA-2-106006: message repeated 3 times: [ Deny inbound UDP from 198.51.100.8/137 to 10.0.0.9/137 on interface inside]
Nov 28 21:03:23 tt-edge-fw01 %ASA-4-106023: Deny icmp src outside:198.51.100.9 dst inside:10.0.0.25 (type 8, code 0) by access-group "OUTSIDE_IN" [0x0, 0x0]
"""  # noqa: E501


def _read(path: Path, zone: ZoneInfo | None = None) -> tuple[list[FirewallDrop], ReadContext]:
    doc = Document.open(path)
    reader, score = best_reader(doc)
    assert reader is not None
    assert reader.kind == KIND
    assert score >= 50
    ctx = ReadContext(timezone=zone, reference_utc=REF)
    return [r for r in reader.read(doc, ctx) if isinstance(r, FirewallDrop)], ctx


def test_tailspin_denies(tmp_path: Path) -> None:
    path = tmp_path / "asa.log"
    path.write_text(TAILSPIN_LOG, encoding="utf-8")
    drops, ctx = _read(path, ZoneInfo("America/Toronto"))
    assert [(d.src_ip, d.src_port, d.dst_ip, d.dst_port, d.protocol, d.action) for d in drops] == [
        ("40.107.21.14", 51234, "10.0.0.25", 25, "tcp", "deny"),
        ("2a01:111:f403:c900::5", 41234, "2001:db8:25::25", 25, "tcp", "deny"),
        ("52.102.3.4", 40001, "10.0.0.25", 25, "tcp", "deny"),
        ("52.101.9.9", 33333, "203.0.113.25", 25, "tcp", "deny"),
        ("198.51.100.7", 5353, "203.0.113.25", 53, "udp", "deny"),
        ("40.92.4.5", 40001, "10.0.0.25", 25, "tcp", "no-connection"),
        ("40.107.2.2", 5555, "203.0.113.2", 25, "tcp", "deny"),
        ("198.51.100.8", 137, "10.0.0.9", 137, "udp", "deny"),
        ("198.51.100.9", None, "10.0.0.25", None, "icmp", "deny"),
    ]
    first = drops[0]
    # Relay time without year or zone: Toronto (UTC-5 in November), year from the reference.
    assert first.time_utc == datetime(2026, 11, 29, 2, 3, 11, tzinfo=UTC)
    assert "year 2026 assumed" in first.time_assumed
    assert first.rule == "OUTSIDE_IN"
    assert first.interface == "outside"
    assert first.vendor == "cisco-asa"
    assert first.ref.line == 1
    # The ASA's own time with year and zone wins over --timezone.
    assert drops[1].time_utc == datetime(2026, 11, 28, 21, 3, 13, tzinfo=UTC)
    assert drops[1].time_assumed == ""
    assert drops[6].vendor == "cisco-ftd"
    assert "no connection" in drops[5].rule
    # A host name in place of an address and an unexpected 106023 are reported with the line.
    assert {(i.line, "host name" in i.message) for i in ctx.issues.issues} == {
        (10, True),
        (11, False),
    }


def test_interface_prefixes_and_missing_ports(tmp_path: Path) -> None:
    path = tmp_path / "fw.log"
    path.write_text(
        "LOCAL4.WARNING: fw-1 %ASA-4-106023: Deny udp src v1:outside:10.8.1.9 dst "
        'v2:inside:172.16.1.3/53 by access-group "outside_acl" [0x0, 0x0]\n'
        "%ASA-4-106023: Deny tcp src dmz:192.0.2.1/1234(LOCAL\\bob) dst inside:10.0.0.25/25 "
        'by access-group "dmz_in"\n',
        encoding="utf-8",
    )
    drops, ctx = _read(path)
    assert [(d.interface, d.src_ip, d.src_port, d.dst_port, d.rule) for d in drops] == [
        ("outside", "10.8.1.9", None, 53, "outside_acl"),
        ("dmz", "192.0.2.1", 1234, 25, "dmz_in"),
    ]
    assert drops[0].time_utc is None
    assert ctx.issues.issues == []


def test_utf16_export_is_read(tmp_path: Path) -> None:
    path = tmp_path / "asdm-export.log"
    path.write_bytes(TAILSPIN_LOG.replace("\n", "\r\n").encode("utf-16"))
    drops, _ = _read(path)
    assert len(drops) == 9


def test_other_files_are_not_claimed(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_text(
        "Nov 28 21:03:11 gw kernel: [12.3] DROP IN=eth0 OUT= SRC=40.107.1.1 DST=192.0.2.25 "
        "PROTO=TCP SPT=5000 DPT=25 SYN\n",
        encoding="utf-8",
    )
    assert readers()[KIND].sniff(Document.open(path)) == 0


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(TAILSPIN_LOG.splitlines()).flatmap(
                lambda line: st.integers(0, len(line)).map(lambda cut: line[:cut])
            ),
            st.text(max_size=120).map(lambda t: "%ASA-4-106023: " + t),
            st.text(max_size=120).map(lambda t: "%ASA-6-106100: access-list " + t),
            st.text(max_size=120).map(lambda t: "%ASA-3-710003: " + t),
        ),
        max_size=15,
    )
)
def test_reader_never_raises(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "fuzz.log"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    doc = Document.open(path)
    ctx = ReadContext(reference_utc=REF)
    for record in readers()[KIND].read(doc, ctx):
        assert isinstance(record, FirewallDrop)
        assert record.ref.line is not None


def test_samples_are_recognised_and_read(samples: Path) -> None:
    files = sorted((samples / "firewall-logs").glob("cisco_asa*"))
    assert len(files) == 3
    counts = {}
    for path in files:
        drops, _ = _read(path)
        counts[path.name] = len(drops)
    assert counts["cisco_asa_106023_elastic-integrations_test-106023-iface-with-prefix.log"] == 9
    assert counts["cisco_asa_elastic-integrations_test-repeat-deny.log"] == 1
    # 106001, 106006, 710003, 106023, 106015 lines in the wazuh rule tests.
    assert counts["cisco_asa_wazuh-ruleset_tests_cisco_asa.ini"] == 5
