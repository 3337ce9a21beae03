"""The netfilter kernel log reader: iptables LOG and nftables log lines wherever they land."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.records import FirewallDrop
from mailflow_doctor.evidence.registry import best_reader, readers

REF = datetime(2026, 11, 29, 12, tzinfo=UTC)
PACKET = (
    "IN=eth0 OUT= MAC=00:16:3e:aa:bb:cc:00:16:3e:dd:ee:ff:08:00 SRC=40.107.1.2 "
    "DST=203.0.113.25 LEN=60 TOS=0x00 PREC=0x00 TTL=115 ID=4242 DF PROTO=TCP SPT=51234 DPT=25 "
    "WINDOW=64240 RES=0x00 SYN URGP=0"
)
PACKET6 = (
    "IN=eth0 OUT= MAC=00:16:3e:aa:bb:cc:00:16:3e:dd:ee:ff:86:dd "
    "SRC=2a01:0111:f403:c900:0000:0000:0000:0005 DST=2001:0db8:0000:0000:0000:0000:0000:0025 "
    "LEN=80 TC=0 HOPLIMIT=117 FLOWLBL=95132 PROTO=TCP SPT=40112 DPT=25 WINDOW=64800 RES=0x00 "
    "SYN URGP=0"
)

PACKET_52 = PACKET.replace("40.107.1.2", "52.100.7.9")
PACKET_40 = PACKET.replace("40.107.1.2", "40.92.3.3")
KERN_LOG = f"""\
Nov 28 21:03:11 mx-gw kernel: [1823734.120311] DROP-SMTP: {PACKET}
Nov 28 21:03:12 mx-gw kernel: [1823735.120311] [UFW BLOCK] {PACKET_52}
Nov 28 21:03:13 mx-gw kernel: [1823736.120311] ACCEPT-SMTP: {PACKET_40}
Nov 28 21:03:14 mx-gw kernel: [1823737.120311] smtp-reject {PACKET6}
Nov 28 21:03:15 mx-gw kernel: [1823738.120311] New SMTP connection: {PACKET}
Nov 28 21:03:16 mx-gw sshd[811]: Accepted publickey for admin from 198.51.100.7 port 51514
Nov 28 21:03:17 mx-gw kernel: [1823739.120311] FW-SMTP: {PACKET}
"""


def _read(
    text: str, name: str, tmp_path: Path, zone: ZoneInfo | None = None
) -> tuple[list[FirewallDrop], ReadContext, str, int]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    doc = Document.open(path)
    reader, score = best_reader(doc)
    assert reader is not None
    ctx = ReadContext(timezone=zone, reference_utc=REF)
    records = [r for r in reader.read(doc, ctx) if isinstance(r, FirewallDrop)]
    return records, ctx, reader.kind, score


def test_kern_log_prefixes_decide_what_is_a_drop(tmp_path: Path) -> None:
    drops, ctx, kind, score = _read(KERN_LOG, "kern.log", tmp_path, ZoneInfo("Europe/Berlin"))
    assert kind == "firewall_log.netfilter"
    assert score >= 50
    assert [(d.action, d.rule, d.src_ip, d.dst_ip, d.dst_port) for d in drops] == [
        ("drop", "DROP-SMTP", "40.107.1.2", "203.0.113.25", 25),
        ("deny", "[UFW BLOCK]", "52.100.7.9", "203.0.113.25", 25),
        ("reject", "smtp-reject", "2a01:111:f403:c900::5", "2001:db8::25", 25),
    ]
    first = drops[0]
    # Berlin is UTC+1 in November; the year comes from the reference time.
    assert first.time_utc == datetime(2026, 11, 28, 20, 3, 11, tzinfo=UTC)
    assert "year 2026 assumed" in first.time_assumed
    assert first.interface == "eth0"
    assert first.protocol == "tcp"
    assert first.src_port == 51234
    assert first.ref.line == 1
    messages = [str(i) for i in ctx.issues.issues]
    assert any("'FW-SMTP'" in m and "not taken as drops" in m for m in messages)
    assert not any("New SMTP" in m for m in messages)  # an accept log, silently not a drop


def test_december_log_read_in_january_lands_in_december(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_text(f"Dec 31 23:59:58 gw kernel: DROP: {PACKET}\n", encoding="utf-8")
    doc = Document.open(path)
    ctx = ReadContext(reference_utc=datetime(2027, 1, 2, tzinfo=UTC))
    (drop,) = readers()["firewall_log.netfilter"].read(doc, ctx)
    assert drop.time_utc == datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC)
    assert "UTC assumed" in drop.time_assumed


def test_iso_syslog_with_offset_and_nftables_prefix(tmp_path: Path) -> None:
    text = f"2026-11-28T22:03:11.418211+01:00 mx-gw kernel: nft-drop-25 {PACKET}\n"
    drops, _, _, _ = _read(text, "syslog", tmp_path)
    assert drops[0].time_utc == datetime(2026, 11, 28, 21, 3, 11, 418211, tzinfo=UTC)
    assert drops[0].time_assumed == ""
    assert drops[0].rule == "nft-drop-25"


def test_dmesg_plain_and_human_readable(tmp_path: Path) -> None:
    text = f"[1823734.120311] DROP-SMTP: {PACKET}\n[Sat Nov 28 21:03:11 2026] DROP-SMTP: {PACKET}\n"
    drops, _, _, _ = _read(text, "dmesg.txt", tmp_path)
    assert drops[0].time_utc is None
    assert drops[0].time_assumed == "no wall-clock time in the line"
    assert drops[1].time_utc == datetime(2026, 11, 28, 21, 3, 11, tzinfo=UTC)
    assert [d.rule for d in drops] == ["DROP-SMTP", "DROP-SMTP"]


def test_journalctl_export_and_json(tmp_path: Path) -> None:
    export = (
        "__CURSOR=s=1;i=2\n__REALTIME_TIMESTAMP=1795899791000000\n__MONOTONIC_TIMESTAMP=9\n"
        "_TRANSPORT=kernel\nPRIORITY=4\nSYSLOG_IDENTIFIER=kernel\n"
        f"MESSAGE=DROP-SMTP: {PACKET}\n_HOSTNAME=mx-gw\n\n"
        "__CURSOR=s=1;i=3\n__REALTIME_TIMESTAMP=1795899792000000\n"
        "MESSAGE=usb 1-1: new high-speed USB device\n\n"
    )
    drops, _, kind, score = _read(export, "journal.export", tmp_path)
    assert kind == "firewall_log.netfilter"
    assert score >= 80
    assert len(drops) == 1
    assert drops[0].time_utc == datetime.fromtimestamp(1795899791, tz=UTC)
    assert drops[0].ref.line == 7
    line = json.dumps({"__REALTIME_TIMESTAMP": "1795899791000000", "MESSAGE": f"DROP: {PACKET}"})
    drops, _, _, _ = _read(line + "\n", "journal.json", tmp_path)
    assert drops[0].time_utc == datetime.fromtimestamp(1795899791, tz=UTC)


def test_dmesg_without_times_and_outbound_lines(tmp_path: Path) -> None:
    outbound = PACKET.replace("IN=eth0 OUT= ", "OUT=eth0 ")
    text = f"REJECT-OUT: {outbound}\n{outbound}\n"
    drops, _, _, _ = _read(text, "dmesg-t.txt", tmp_path)
    assert [(d.action, d.interface, d.ref.line) for d in drops] == [
        ("reject", "", 1),
        ("drop", "", 2),
    ]


def test_unprefixed_lines_are_drops_with_a_warning(tmp_path: Path) -> None:
    drops, ctx, _, _ = _read(f"Nov 28 21:03:11 gw kernel: {PACKET}\n", "messages", tmp_path)
    assert [d.action for d in drops] == ["drop"]
    assert any("no log prefix" in str(i) for i in ctx.issues.issues)


def test_other_files_are_not_claimed(tmp_path: Path) -> None:
    path = tmp_path / "auth.log"
    path.write_text("Nov 28 21:03:16 mx sshd[811]: Accepted publickey for admin\n" * 5)
    assert readers()["firewall_log.netfilter"].sniff(Document.open(path)) == 0


def test_samples(samples: Path) -> None:
    folder = samples / "firewall-logs"
    for name, count in (
        ("iptables_kernel_log_crowdsec-hub_iptables-logs.log", 3),
        ("iptables_kernel_log_crowdsec-hub_scan-multi-port.log", 33),
        ("proxmox_pvefw_iptables_crowdsec-hub.log", 8),
    ):
        doc = Document.open(folder / name)
        reader, _ = best_reader(doc)
        assert reader is not None
        assert reader.kind == "firewall_log.netfilter", name
        records = list(reader.read(doc, ReadContext(reference_utc=REF)))
        assert len(records) == count, name
    scan = Document.open(folder / "iptables_kernel_log_crowdsec-hub_scan-multi-port.log")
    smtp = [
        r
        for r in readers()["firewall_log.netfilter"].read(scan, ReadContext(reference_utc=REF))
        if isinstance(r, FirewallDrop) and r.dst_port == 25
    ]
    assert smtp
    assert smtp[0].src_ip == "62.34.17.168"
    proxmox = Document.open(folder / "proxmox_pvefw_iptables_crowdsec-hub.log")
    first = next(iter(readers()["firewall_log.netfilter"].read(proxmox, ReadContext())))
    assert isinstance(first, FirewallDrop)
    assert first.rule == "PVEFW-HOST-IN policy DROP"
    assert first.time_utc == datetime(2022, 6, 20, 11, 9, 14, tzinfo=UTC)


@pytest.mark.parametrize(
    ("bad", "warned"),
    [("SRC=999.1.1.1 DST=1.2.3.4", True), ("SRC= DST=", False), ("SRC=x DST=y", True)],
)
def test_bad_addresses_are_reported_not_raised(tmp_path: Path, bad: str, warned: bool) -> None:
    path = tmp_path / "kern.log"
    path.write_text(f"Nov 28 21:03:11 gw kernel: DROP: IN=eth0 OUT= {bad} PROTO=TCP\n{KERN_LOG}")
    doc = Document.open(path)
    ctx = ReadContext(reference_utc=REF)
    records = list(readers()["firewall_log.netfilter"].read(doc, ctx))
    assert len(records) == 3
    assert any("SRC=" in str(i) for i in ctx.issues.issues) == warned


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(KERN_LOG.splitlines()),
            st.sampled_from(KERN_LOG.splitlines()).map(lambda line: line[: len(line) * 2 // 3]),
            st.text(max_size=80),
            st.just("__REALTIME_TIMESTAMP=nonsense"),
            st.just("MESSAGE=" + PACKET),
            st.just(""),
        ),
        max_size=20,
    )
)
def test_reader_never_raises(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "fuzz.log"
    path.write_text("\n".join(lines), encoding="utf-8")
    doc = Document.open(path)
    for record in readers()["firewall_log.netfilter"].read(doc, ReadContext(reference_utc=REF)):
        assert isinstance(record, FirewallDrop)


@pytest.mark.parametrize(
    "line",
    [
        "kernel: IN=eth0 OUT= " + "a=b=c " * 30_000 + "x",
        "IN= " * 50_000,
        "IN= " * 50_000 + " SRC=1.2.3.4 DST=5.6.7.8",
        " SRC=1 DST=2" * 40_000,
    ],
    ids=["many-fields", "many-in", "many-in-then-packet", "many-src"],
)
def test_hostile_lines_stay_linear(tmp_path: Path, line: str) -> None:
    path = tmp_path / "kern.log"
    path.write_text((line + "\n") * 3, encoding="utf-8")
    doc = Document.open(path)
    records = list(readers()["firewall_log.netfilter"].read(doc, ReadContext(reference_utc=REF)))
    assert len(records) <= 3
