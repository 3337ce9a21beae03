"""FortiGate traffic logs (`key=value`, from syslog or a FortiAnalyzer export).

A deny is `type="traffic"` with `action="deny"`; `policyid=0` is the implicit deny, which
FortiOS logs only when `fwpolicy-implicit-log` is enabled. Times come from `eventtime` (epoch,
UTC) when present, else from `date`/`time` with the logged `tz` offset or the user's zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

from mailflow_doctor.evidence.denylog import (
    clean_ip,
    drop_record,
    key_values,
    port,
    protocol_name,
    sniff_share,
    syslog_time,
)
from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.records import FirewallDrop
from mailflow_doctor.evidence.registry import register_reader
from mailflow_doctor.evidence.syslogtime import SyslogTime

_TRAFFIC = re.compile(r'\btype="?traffic"?\b.*\bsrcip=')


def _time(fields: dict[str, str], line: str, ctx: ReadContext) -> SyslogTime | None:
    event = fields.get("eventtime", "")
    if event.isdigit():
        value = int(event)
        # FortiOS writes seconds, or nanoseconds since 6.2.
        seconds = value / 1e9 if value > 10**14 else float(value)
        try:
            return SyslogTime(datetime.fromtimestamp(seconds, UTC), "")
        except (OverflowError, OSError, ValueError):
            pass
    date, clock, zone = fields.get("date"), fields.get("time"), fields.get("tz", "")
    if date and clock:
        return syslog_time(f"{date}T{clock}{zone}", ctx)
    return syslog_time(line, ctx)


@register_reader
class FortiGateTrafficLogReader:
    kind = "firewall_log.fortigate"
    label = "FortiGate traffic log"

    def sniff(self, doc: Document) -> int:
        return sniff_share(doc, _TRAFFIC)

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[FirewallDrop]:
        for line in doc.lines():
            if "srcip=" not in line.text:
                continue
            fields = key_values(line.text)
            if fields.get("type") != "traffic" or fields.get("action") != "deny":
                continue
            src_ip, dst_ip = clean_ip(fields.get("srcip", "")), clean_ip(fields.get("dstip", ""))
            if src_ip is None or dst_ip is None:
                ctx.warn(doc, line.number, "FortiGate deny without readable srcip/dstip; skipped")
                continue
            policy = fields.get("policyid", "")
            rule = "implicit deny (policy 0)" if policy == "0" else f"policy {policy}"
            yield drop_record(
                doc,
                line.number,
                line.text,
                vendor="fortigate",
                action="deny",
                protocol=protocol_name(fields.get("proto", "")),
                src=src_ip,
                dst=dst_ip,
                src_port=port(fields.get("srcport")),
                dst_port=port(fields.get("dstport")),
                when=_time(fields, line.text, ctx),
                rule=rule,
                interface=fields.get("srcintf", ""),
            )
