"""Check Point logs from Log Exporter / Smart-1 syslog (`[key:"value"; ...]`).

`service` holds the destination port; `action` Drop (silent) or Reject (ICMP unreachable back).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

from mailflow_doctor.evidence.denylog import (
    clean_ip,
    colon_values,
    drop_record,
    port,
    protocol_name,
    sniff_share,
    syslog_time,
)
from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.records import FirewallDrop
from mailflow_doctor.evidence.registry import register_reader
from mailflow_doctor.evidence.syslogtime import SyslogTime

_CHECKPOINT = re.compile(r'\baction:"[A-Za-z ]+";.*\bsrc:"')


@register_reader
class CheckPointLogReader:
    kind = "firewall_log.checkpoint"
    label = "Check Point firewall log"

    def sniff(self, doc: Document) -> int:
        return sniff_share(doc, _CHECKPOINT, certain=85)

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[FirewallDrop]:
        for line in doc.lines():
            if 'action:"' not in line.text:
                continue
            fields = colon_values(line.text)
            action = fields.get("action", "").lower()
            if action not in ("drop", "reject", "block"):
                continue
            src_ip, dst_ip = clean_ip(fields.get("src", "")), clean_ip(fields.get("dst", ""))
            if src_ip is None or dst_ip is None:
                ctx.warn(doc, line.number, "Check Point drop without readable src/dst; skipped")
                continue
            when: SyslogTime | None = None
            epoch = fields.get("time", "")
            if epoch.isdigit():
                try:
                    when = SyslogTime(datetime.fromtimestamp(int(epoch), UTC), "")
                except (OverflowError, OSError, ValueError):
                    when = None
            if when is None:
                when = syslog_time(line.text, ctx)
            yield drop_record(
                doc,
                line.number,
                line.text,
                vendor="checkpoint",
                action="reject" if action == "reject" else "deny",
                protocol=protocol_name(fields.get("proto", "")),
                src=src_ip,
                dst=dst_ip,
                src_port=port(fields.get("s_port")),
                dst_port=port(fields.get("service")),
                when=when,
                rule=fields.get("rule_name", ""),
                interface=fields.get("ifname", ""),
            )
