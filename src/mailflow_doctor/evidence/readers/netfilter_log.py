"""Linux netfilter kernel log lines: iptables `LOG`, nftables `log` (the same nf_log text).

`[prefix]IN=eth0 OUT= MAC=... SRC=40.107.1.2 DST=203.0.113.25 ... PROTO=TCP SPT=51234 DPT=25
... SYN`, wherever the kernel log ends up: syslog / kern.log / messages (BSD or ISO 8601
timestamps), `dmesg` (uptime only, or `dmesg -T` wall-clock), `journalctl` short formats,
`journalctl -o export` (blank-line separated `KEY=value` records) and `-o json`, and Proxmox
pve-firewall logs. LOG does not drop anything itself: the verdict is only implied by the
administrator's `--log-prefix`, so a prefix naming DROP / REJECT / BLOCK / DENY is a drop, one
naming ACCEPT / ALLOW / PASS is not, and lines without a prefix are taken as drops (a LOG rule
in front of the DROP it documents is the common pattern) with a warning that says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from mailflow_doctor.evidence.denylog import clean_ip, port, protocol_name, syslog_time
from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.records import FirewallDrop
from mailflow_doctor.evidence.registry import register_reader
from mailflow_doctor.evidence.syslogtime import SyslogTime

# The packet part starts at IN= (OUT= for locally sent packets; Proxmox leaves empty fields out).
_SRC_DST = re.compile(r" SRC=\S+ DST=\S+")
_IN_START = re.compile(r"(?:^|(?<=[\s:\]]))IN=")
_OUT_START = re.compile(r"(?:^|(?<=[\s:\]]))OUT=")
_IN = re.compile(r"\bIN=(\S*)")
_FIELD = re.compile(r"\b(SRC|DST|PROTO|SPT|DPT)=(\S+)")
_KERNEL = re.compile(r"kernel:\s*(?:\[\s*\d+\.\d+\]\s*)?")
_UPTIME = re.compile(r"^\s*\[\s*\d+\.\d+\]\s*")
_DMESG_T = re.compile(
    r"^\s*\[(?:\w{3}\s+)?(?P<mon>\w{3})\s+(?P<d>\d{1,2})\s+(?P<t>\d\d:\d\d:\d\d)\s+(?P<y>\d{4})\]\s*"
)
_PVE = re.compile(
    r"^\s*\d+\s+\d+\s+(?P<chain>\S+)\s+(?P<d>\d{1,2})/(?P<mon>\w{3})/(?P<y>\d{4}):"
    r"(?P<t>\d\d:\d\d:\d\d)\s+(?P<tz>[+-]\d{4})\s+"
)
_DROP_WORDS = re.compile(r"drop|reject|block|deny|denied|refuse|ban", re.I)
_ACCEPT_WORDS = re.compile(r"accept|allow|pass|\bacc\b|-acc-|new ", re.I)
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def _prefix_action(prefix: str) -> str | None:
    """'drop' / 'reject' / 'deny' for drop prefixes, None for accept prefixes, '' when unknown."""
    if not prefix:
        return ""
    found = _DROP_WORDS.search(prefix)
    if found:
        word = found.group(0).lower()
        if word.startswith("reject") or word.startswith("refuse"):
            return "reject"
        if word.startswith("den") or word.startswith("block") or word == "ban":
            return "deny"
        return "drop"
    if _ACCEPT_WORDS.search(prefix):
        return None
    return ""


def _split_prefix(before: str) -> str:
    """The log prefix: what stands between the syslog header / uptime and `IN=`."""
    text = before
    kernel = _KERNEL.search(text)
    if kernel:
        text = text[kernel.end() :]
    else:
        pve = _PVE.match(text)
        if pve:
            text = text[pve.end() :]
        else:
            dmesg = _DMESG_T.match(text) or _UPTIME.match(text)
            if dmesg:
                text = text[dmesg.end() :]
    # iptables allows 29 characters of prefix, nftables 127: anything longer is not one.
    return text.strip().rstrip(":").strip()[-128:]


def _time(line: str, ctx: ReadContext) -> SyslogTime | None:
    pve = _PVE.match(line)
    if pve:
        month = _MONTHS.index(pve["mon"].lower()) + 1 if pve["mon"].lower() in _MONTHS else 0
        if month:
            tz = pve["tz"]
            offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5]))
            if tz[0] == "-":
                offset = -offset
            hour, minute, second = (int(x) for x in pve["t"].split(":"))
            try:
                naive = datetime(int(pve["y"]), month, int(pve["d"]), hour, minute, second)
            except ValueError:
                return None
            return SyslogTime((naive - offset).replace(tzinfo=UTC), "")
    dmesg = _DMESG_T.match(line)
    if dmesg:
        return syslog_time(f"{dmesg['mon']} {dmesg['d']} {dmesg['y']} {dmesg['t']}", ctx)
    if _UPTIME.match(line):
        return None  # plain dmesg: seconds since boot, no wall-clock time
    return syslog_time(line, ctx)


def _records(doc: Document) -> Iterator[tuple[int, str, str | None]]:
    """(line number, message text, journal realtime in microseconds or None)."""
    export_message: tuple[int, str] | None = None
    export_time: str | None = None
    for line in doc.lines():
        text = line.text
        if text.startswith("{") and '"MESSAGE"' in text:
            try:
                entry = json.loads(text)
            except json.JSONDecodeError:
                yield line.number, text, None
                continue
            message = entry.get("MESSAGE")
            if isinstance(message, str):
                yield line.number, message, str(entry.get("__REALTIME_TIMESTAMP") or "") or None
            continue
        if text.startswith("__REALTIME_TIMESTAMP="):
            export_time = text.partition("=")[2]
            continue
        if text.startswith("MESSAGE="):
            export_message = (line.number, text[len("MESSAGE=") :])
            continue
        if not text.strip():
            if export_message is not None:
                yield export_message[0], export_message[1], export_time
            export_message, export_time = None, None
            continue
        if re.match(r"^[A-Z_][A-Z0-9_]*=", text) and not text.startswith(("IN=", "OUT=", "SRC=")):
            continue  # another journal export field
        yield line.number, text, None
    if export_message is not None:
        yield export_message[0], export_message[1], export_time


def packet_start(text: str) -> int | None:
    """Where the nf_log packet part (`IN=... OUT=... SRC=... DST=...`) starts, or None.

    The packet part starts at IN= (OUT= for locally sent packets; Proxmox leaves empty fields
    out). Found with plain searches, in linear time whatever the line holds.
    """
    found = _SRC_DST.search(text)
    if found is None:
        return None
    head = text[: found.start()]
    for pattern in (_IN_START, _OUT_START):
        starts = [m.start() for m in pattern.finditer(head)]
        if starts:
            return starts[-1]
    return None


@register_reader
class NetfilterLogReader:
    kind = "firewall_log.netfilter"
    label = "Linux netfilter log (iptables LOG / nftables log in syslog, kern.log, journal)"

    def sniff(self, doc: Document) -> int:
        lines = [line for line in doc.head_lines(200) if line.strip()]
        if not lines:
            return 0
        hits = sum(1 for line in lines if packet_start(line) is not None)
        if not hits:
            return 0
        if any(line.startswith("__REALTIME_TIMESTAMP=") for line in lines):
            return 85
        share = hits / len(lines)
        return max(40, int(92 * share)) if share >= 0.2 else 30

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[FirewallDrop]:
        unprefixed = 0
        skipped_prefixes: dict[str, int] = {}
        for number, text, realtime in _records(doc):
            start = packet_start(text)
            if start is None:
                continue
            packet = text[start:]
            fields = dict(_FIELD.findall(packet))
            src = clean_ip(fields.get("SRC", ""))
            dst = clean_ip(fields.get("DST", ""))
            if src is None or dst is None:
                ctx.warn(doc, number, "netfilter log line without readable SRC= / DST=; skipped")
                continue
            prefix = _split_prefix(text[:start])
            pve = _PVE.match(text)
            rule = f"{pve['chain']} {prefix}".strip() if pve else prefix
            action = _prefix_action(prefix)
            if action is None:
                continue
            if action == "" and prefix:
                skipped_prefixes[prefix] = skipped_prefixes.get(prefix, 0) + 1
                continue
            if action == "":
                unprefixed += 1
                action = "drop"
            when = _journal_time(realtime) if realtime else _time(text, ctx)
            protocol = protocol_name(fields.get("PROTO", ""))
            has_ports = protocol in ("tcp", "udp")
            yield FirewallDrop(
                ref=doc.ref(number, text),
                time_utc=when.utc if when else None,
                vendor="netfilter",
                action=action,
                protocol=protocol,
                src_ip=src,
                dst_ip=dst,
                src_port=port(fields.get("SPT")) if has_ports else None,
                dst_port=port(fields.get("DPT")) if has_ports else None,
                rule=rule,
                interface=inbound[1] if (inbound := _IN.search(packet)) else "",
                time_assumed=(when.assumed if when else "no wall-clock time in the line"),
            )
        if unprefixed:
            ctx.warn(
                doc,
                None,
                f"{unprefixed} log lines carry no log prefix; they were taken as drops (a LOG "
                "rule usually sits in front of the DROP it records). Give your LOG rules a "
                "prefix such as 'DROP-SMTP: ' to make this certain.",
            )
        for prefix, count in sorted(skipped_prefixes.items()):
            ctx.warn(
                doc,
                None,
                f"{count} log lines with the prefix {prefix!r} were not taken as drops (the "
                "prefix names no drop, reject, block or deny)",
            )


def _journal_time(realtime: str) -> SyslogTime | None:
    try:
        micro = int(realtime)
    except ValueError:
        return None
    return SyslogTime(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micro), "")
