"""Windows Defender Firewall `pfirewall.log` (W3C-style, fields named by `#Fields:`).

Dropped-packet logging is off by default, so a missing or empty log proves nothing. The file
says `#Time Format: Local` or `UTC`; local times take the user's `--timezone`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC

from mailflow_doctor.evidence.denylog import clean_ip, drop_record, port, protocol_name, syslog_time
from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.records import FirewallDrop
from mailflow_doctor.evidence.registry import register_reader

DEFAULT_FIELDS: list[str] = [
    "date",
    "time",
    "action",
    "protocol",
    "src-ip",
    "dst-ip",
    "src-port",
    "dst-port",
    "size",
    "tcpflags",
    "tcpsyn",
    "tcpack",
    "tcpwin",
    "icmptype",
    "icmpcode",
    "info",
    "path",
]


@register_reader
class WindowsFirewallLogReader:
    kind = "firewall_log.windows"
    label = "Windows Defender Firewall log (pfirewall.log)"

    def sniff(self, doc: Document) -> int:
        head = doc.head[:4096]
        if "#Software: Microsoft Windows Firewall" in head:
            return 95
        if "#Fields: date time action protocol src-ip dst-ip" in head:
            return 80
        return 0

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[FirewallDrop]:
        fields = DEFAULT_FIELDS
        local_time = True
        for line in doc.lines():
            text = line.text.strip()
            if not text:
                continue
            if text.startswith("#"):
                if text.startswith("#Fields:"):
                    fields = text[len("#Fields:") :].split()
                elif text.startswith("#Time Format:"):
                    local_time = "utc" not in text.lower()
                continue
            values = text.split()
            if len(values) < 4:
                ctx.warn(doc, line.number, "firewall log line has too few fields; skipped")
                continue
            row = dict(zip(fields, values, strict=False))
            if row.get("action", "").upper() != "DROP":
                continue
            src_ip, dst_ip = clean_ip(row.get("src-ip", "")), clean_ip(row.get("dst-ip", ""))
            if src_ip is None or dst_ip is None:
                ctx.warn(doc, line.number, "DROP line without readable addresses; skipped")
                continue
            stamp = f"{row.get('date', '')}T{row.get('time', '')}"
            when = syslog_time(stamp, ctx, None if local_time else UTC)
            if when is not None and not local_time:
                when = type(when)(when.utc, "")
            yield drop_record(
                doc,
                line.number,
                line.text,
                vendor="windows-firewall",
                action="deny",
                protocol=protocol_name(row.get("protocol", "")),
                src=src_ip,
                dst=dst_ip,
                src_port=port(row.get("src-port")),
                dst_port=port(row.get("dst-port")),
                when=when,
                rule=row.get("path", ""),
            )
