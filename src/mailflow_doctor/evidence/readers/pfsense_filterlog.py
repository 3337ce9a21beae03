"""pfSense / OPNsense `filterlog` lines (CSV inside BSD or RFC 5424 syslog).

Field positions follow Netgate's raw filter log format: IPv4 TCP has source, destination and
destination port at fields 19, 20 and 22 (1-based); IPv6 at 16, 17 and 19. pfSense logs both
block and reject rules as `block`, and logs its default deny by default.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from mailflow_doctor.evidence.denylog import (
    clean_ip,
    drop_record,
    port,
    protocol_name,
    sniff_share,
    syslog_time,
)
from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.records import FirewallDrop
from mailflow_doctor.evidence.registry import register_reader

_FILTERLOG = re.compile(r"filterlog(?:\[\d+\])?:?\s+(?:\d+\s+-\s+-\s+)?(?P<csv>\d*,[^\s]*)")


@register_reader
class PfSenseFilterlogReader:
    kind = "firewall_log.pfsense"
    label = "pfSense / OPNsense filterlog"

    def sniff(self, doc: Document) -> int:
        return sniff_share(doc, _FILTERLOG)

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[FirewallDrop]:
        for line in doc.lines():
            match = _FILTERLOG.search(line.text)
            if not match:
                continue
            fields = match["csv"].split(",")
            if len(fields) < 9:
                ctx.warn(doc, line.number, "filterlog line has too few fields; skipped")
                continue
            action = fields[6]
            if action not in ("block", "reject"):
                continue
            version = fields[8]
            if version == "4" and len(fields) >= 22:
                proto, src, dst, sport, dport = (
                    fields[16],
                    fields[18],
                    fields[19],
                    fields[20],
                    fields[21],
                )
            elif version == "6" and len(fields) >= 19:
                proto, src, dst, sport, dport = (
                    fields[12],
                    fields[15],
                    fields[16],
                    fields[17],
                    fields[18],
                )
            else:
                ctx.warn(
                    doc, line.number, "filterlog line is truncated or of an unknown IP version"
                )
                continue
            src_ip, dst_ip = clean_ip(src), clean_ip(dst)
            if src_ip is None or dst_ip is None:
                ctx.warn(doc, line.number, f"filterlog addresses not understood: {src!r}, {dst!r}")
                continue
            protocol = protocol_name(proto)
            has_ports = protocol in ("tcp", "udp")
            yield drop_record(
                doc,
                line.number,
                line.text,
                vendor="pfsense",
                action="deny",
                protocol=protocol,
                src=src_ip,
                dst=dst_ip,
                src_port=port(sport) if has_ports else None,
                dst_port=port(dport) if has_ports else None,
                when=syslog_time(line.text, ctx),
                rule=f"tracker {fields[3]}" if fields[3] else f"rule {fields[0]}",
                interface=fields[4],
            )
