"""Pieces every firewall deny-log reader shares: field splitting, ports, protocols, records.

Deny logs arrive through syslog relays that add their own prefixes, so readers locate the
vendor's payload inside each line rather than trusting fixed positions from the line start.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import tzinfo

from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.records import FirewallDrop
from mailflow_doctor.evidence.syslogtime import SyslogTime, parse_syslog_time

PROTOCOL_NUMBERS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "ipv6-icmp", "47": "gre"}

_KV = re.compile(r'([A-Za-z_][\w.:-]*)=("(?:[^"\\]|\\.)*"|\S*)')
_CP_KV = re.compile(r'([A-Za-z_][\w:.-]*):"((?:[^"\\]|\\.)*)"')


def key_values(text: str) -> dict[str, str]:
    """FortiGate-style `key=value key="quoted value"` pairs (first occurrence of a key wins)."""
    result: dict[str, str] = {}
    for key, value in _KV.findall(text):
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = value[1:-1].replace('\\"', '"')
        result.setdefault(key, value)
    return result


def colon_values(text: str) -> dict[str, str]:
    """Check Point Log Exporter `key:"value";` pairs."""
    result: dict[str, str] = {}
    for key, value in _CP_KV.findall(text):
        result.setdefault(key, value.replace('\\"', '"'))
    return result


def protocol_name(text: str) -> str:
    lowered = text.strip().lower()
    return PROTOCOL_NUMBERS.get(lowered, lowered)


def port(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if text.isdigit():
        value = int(text)
        if 0 <= value <= 65535:
            return value
    return None


def clean_ip(text: str) -> str | None:
    """A normalised IP address, or None when the text is not one."""
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return None


def syslog_time(line: str, ctx: ReadContext, zone: tzinfo | None = None) -> SyslogTime | None:
    return parse_syslog_time(line, zone if zone is not None else ctx.timezone, ctx.reference_utc)


def drop_record(
    doc: Document,
    number: int,
    line: str,
    *,
    vendor: str,
    action: str,
    protocol: str,
    src: str,
    dst: str,
    src_port: int | None,
    dst_port: int | None,
    when: SyslogTime | None,
    rule: str = "",
    interface: str = "",
) -> FirewallDrop:
    return FirewallDrop(
        ref=doc.ref(number, line),
        time_utc=when.utc if when else None,
        vendor=vendor,
        action=action,
        protocol=protocol,
        src_ip=src,
        dst_ip=dst,
        src_port=src_port,
        dst_port=dst_port,
        rule=rule,
        interface=interface,
        time_assumed=when.assumed if when else "time not found",
    )


def count_matching(lines: list[str], pattern: re.Pattern[str]) -> int:
    return sum(1 for line in lines if pattern.search(line))


def sniff_share(doc: Document, pattern: re.Pattern[str], certain: int = 90) -> int:
    """Score a file by the share of its first non-comment lines that match `pattern`."""
    lines = [line for line in doc.head_lines(60) if line.strip() and not line.startswith("#")]
    if not lines:
        return 0
    hits = count_matching(lines, pattern)
    if hits == 0:
        return 0
    share = hits / len(lines)
    return max(30, int(certain * share)) if share >= 0.2 else 25
