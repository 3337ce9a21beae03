"""Palo Alto PAN-OS traffic logs (CSV over syslog, or a CSV export from the web interface).

Fields are read by position after the `FUTURE_USE,Receive Time,Serial,TRAFFIC` anchor; newer
versions append fields, which are ignored. Denied actions are deny, drop, drop-ICMP and the
reset-* family. Receive time is the firewall's local time: the user's `--timezone` applies.
PAN-OS does not log its default interzone deny unless the rule is overridden.
"""

from __future__ import annotations

import csv
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

_ANCHOR = re.compile(
    r"(?:^|[\s,])(?P<start>[^,\s]*,\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2},[^,]*,TRAFFIC,)"
)
_ANY_PANOS = re.compile(
    r"\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2},[^,]*,"
    r"(?:TRAFFIC|THREAT|SYSTEM|CONFIG|HIPMATCH|GLOBALPROTECT|USERID|DECRYPTION|AUTHENTICATION),"
)
DENY_ACTIONS = frozenset(
    {"deny", "drop", "drop-icmp", "reset-client", "reset-server", "reset-both"}
)


@register_reader
class PanOsTrafficLogReader:
    kind = "firewall_log.panos"
    label = "Palo Alto PAN-OS traffic log"

    def sniff(self, doc: Document) -> int:
        return sniff_share(doc, _ANY_PANOS)

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[FirewallDrop]:
        for line in doc.lines():
            match = _ANCHOR.search(line.text)
            if not match:
                continue
            payload = line.text[match.start("start") :]
            try:
                fields = next(csv.reader([payload]))
            except (csv.Error, StopIteration):
                ctx.warn(doc, line.number, "PAN-OS traffic line is not valid CSV; skipped")
                continue
            if len(fields) < 31:
                ctx.warn(doc, line.number, "PAN-OS traffic line is truncated; skipped")
                continue
            action = fields[30].strip().lower()
            if action not in DENY_ACTIONS:
                continue
            src_ip, dst_ip = clean_ip(fields[7]), clean_ip(fields[8])
            if src_ip is None or dst_ip is None:
                ctx.warn(doc, line.number, "PAN-OS traffic line without readable addresses")
                continue
            yield drop_record(
                doc,
                line.number,
                line.text,
                vendor="panos",
                action="reset" if action.startswith("reset") else "deny",
                protocol=protocol_name(fields[29]),
                src=src_ip,
                dst=dst_ip,
                src_port=port(fields[24]),
                dst_port=port(fields[25]),
                when=syslog_time(fields[1].replace("/", "-"), ctx),
                rule=fields[11],
                interface=fields[18],
            )
