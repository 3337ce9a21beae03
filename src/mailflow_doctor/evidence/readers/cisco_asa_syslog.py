"""Cisco ASA (and FTD) syslog: the messages that say a packet was denied.

The payload is found by its `%ASA-<level>-<id>:` tag wherever a relay put it (RFC 3164 with
the ASA's own `Nov 28 2026 21:03:11:` time, relay-added host names, `LOCAL4.WARNING:` facility
text, `message repeated N times: [ ... ]`). Read:

- 106023 `Deny tcp src outside:A/p dst inside:B/25 by access-group "ACL" [..]`: an ACL denied
  the packet (an explicit deny without `log`, or the implicit deny at the end of the ACL);
- 106100 `access-list ACL denied tcp outside/A(p) -> inside/B(25) hit-cnt ..`: an ACE with `log`
  denied it (`permitted` lines are not drops and are skipped);
- 106001 / 106006: inbound TCP / UDP denied (by security levels or an ACL);
- 106015 `Deny TCP (no connection)`: a packet of no known connection (late FIN/RST, asymmetric
  routing). Not a policy deny of a new connection, so its action is `no-connection`;
- 710003 `TCP access denied by ACL`: traffic to the ASA itself was denied.

Addresses may be IPv6 (`outside:2a01:111:f403::5/41234`) and an interface may carry a context
prefix (`v1:outside`); a host name logged in place of an address is reported, not guessed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from mailflow_doctor.evidence.denylog import drop_record, protocol_name, sniff_share, syslog_time
from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.records import FirewallDrop
from mailflow_doctor.evidence.registry import register_reader

_TAG = re.compile(r"%(?P<product>ASA|FTD)-(?P<level>\d)-(?P<id>\d{6}):?\s*(?P<body>.*)")
_REPEATED = re.compile(r"^message repeated \d+ times:\s*\[\s*")
_SNIFF = re.compile(r"%(?:ASA|FTD)-\d-\d{6}")

_106023 = re.compile(
    r"^Deny (?:protocol )?(?P<proto>\S+) src (?P<src>\S+?)(?:\([^)]*\))? "
    r"dst (?P<dst>\S+?)(?:\([^)]*\))?(?: \(type \d+, code \d+\))? "
    r'by access-group "(?P<acl>[^"]*)"'
)
_106100 = re.compile(
    r"^access-list (?P<acl>\S+) (?P<verdict>denied|permitted|est-allowed) (?P<proto>\S+) "
    r"(?P<src>\S+)\((?P<sport>\d+)\)(?:\([^)]*\))? -> (?P<dst>\S+)\((?P<dport>\d+)\)"
)
_106001 = re.compile(
    r"^Inbound TCP connection denied from (?P<src>\S+) to (?P<dst>\S+) "
    r"flags (?P<flags>.*?) on interface (?P<ifc>\S+)"
)
_106006 = re.compile(
    r"^Deny inbound UDP from (?P<src>\S+) to (?P<dst>\S+)(?: due to \S+)? on interface (?P<ifc>\S+)"
)
_106015 = re.compile(
    r"^Deny TCP \(no connection\) from (?P<src>\S+) to (?P<dst>\S+) "
    r"flags (?P<flags>.*?) on interface (?P<ifc>\S+)"
)
_710003 = re.compile(
    r"^(?P<proto>TCP|UDP|ICMP|\S+) access denied by ACL from (?P<src>\S+) to (?P<dst>\S+?)\s*$"
)

DENY_IDS = {"106001", "106006", "106015", "106023", "106100", "710003"}


def _split_address(text: str) -> tuple[str, str | None, int | None]:
    """`[ctx:]ifc:ip[/port]` or `ip[/port]` -> (interface, ip or None, port)."""
    text = text.rstrip(",;]")
    port: int | None = None
    head, slash, tail = text.rpartition("/")
    if slash and tail.isdigit():
        text = head
        value = int(tail)
        port = value if value <= 65535 else None
    if _ip(text):
        return "", _ip(text), port
    for index, char in enumerate(text):
        if char == ":":
            candidate = _ip(text[index + 1 :])
            if candidate:
                return text[:index].rsplit(":", 1)[-1], candidate, port
    interface, _, _name = text.partition(":")
    return interface, None, port


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


def _split_106100(text: str) -> tuple[str, str | None]:
    """`ifc/ip` (106100 form) -> (interface, ip)."""
    interface, _, address = text.rpartition("/")
    return interface.rsplit(":", 1)[-1], _ip(address)


@register_reader
class CiscoAsaSyslogReader:
    kind = "firewall_log.cisco_asa"
    label = "Cisco ASA / FTD syslog (deny messages)"

    def sniff(self, doc: Document) -> int:
        return sniff_share(doc, _SNIFF)

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[FirewallDrop]:
        for line in doc.lines():
            tag = _TAG.search(line.text)
            if tag is None or tag["id"] not in DENY_IDS:
                continue
            try:
                record = self._parse(doc, ctx, line.number, line.text, tag)
            except (ValueError, IndexError) as exc:  # defensive: never stop on one line
                ctx.warn(doc, line.number, f"ASA message {tag['id']} not understood: {exc}")
                continue
            if record is not None:
                yield record

    def _parse(
        self, doc: Document, ctx: ReadContext, number: int, text: str, tag: re.Match[str]
    ) -> FirewallDrop | None:
        message_id = tag["id"]
        body = _REPEATED.sub("", tag["body"].strip()).removesuffix("]").strip()
        vendor = "cisco-ftd" if tag["product"] == "FTD" else "cisco-asa"
        protocol = "tcp"
        acl = ""
        interface = ""
        action = "deny"
        src_ip: str | None
        dst_ip: str | None
        src_port: int | None
        dst_port: int | None
        if message_id == "106023":
            match = _106023.search(body)
            if match is None:
                return self._unknown(doc, ctx, number, message_id)
            protocol = protocol_name(match["proto"])
            interface, src_ip, src_port = _split_address(match["src"])
            _dst_ifc, dst_ip, dst_port = _split_address(match["dst"])
            acl = match["acl"]
        elif message_id == "106100":
            match = _106100.search(body)
            if match is None:
                return self._unknown(doc, ctx, number, message_id)
            if match["verdict"] != "denied":
                return None
            protocol = protocol_name(match["proto"])
            interface, src_ip = _split_106100(match["src"])
            _dst_ifc, dst_ip = _split_106100(match["dst"])
            src_port, dst_port = int(match["sport"]), int(match["dport"])
            acl = match["acl"]
        elif message_id in ("106001", "106006", "106015"):
            pattern = {"106001": _106001, "106006": _106006, "106015": _106015}[message_id]
            match = pattern.search(body)
            if match is None:
                return self._unknown(doc, ctx, number, message_id)
            protocol = "udp" if message_id == "106006" else "tcp"
            _ifc, src_ip, src_port = _split_address(match["src"])
            _ifc2, dst_ip, dst_port = _split_address(match["dst"])
            interface = match["ifc"].rstrip(".,")
            if message_id == "106015":
                action = "no-connection"
                acl = f"no connection (flags {match['flags'].strip()}): not an ACL deny"
        else:  # 710003
            match = _710003.search(body)
            if match is None:
                return self._unknown(doc, ctx, number, message_id)
            protocol = protocol_name(match["proto"])
            _ifc, src_ip, src_port = _split_address(match["src"])
            interface, dst_ip, dst_port = _split_address(match["dst"])
            acl = "to-the-box access (710003)"
        if src_ip is None or dst_ip is None:
            ctx.warn(
                doc,
                number,
                f"ASA message {message_id}: an address is a host name, not an IP; skipped",
            )
            return None
        if protocol not in ("tcp", "udp"):
            src_port = dst_port = None
        return drop_record(
            doc,
            number,
            text,
            vendor=vendor,
            action=action,
            protocol=protocol,
            src=src_ip,
            dst=dst_ip,
            src_port=src_port,
            dst_port=dst_port,
            when=syslog_time(text, ctx),
            rule=acl,
            interface=interface,
        )

    @staticmethod
    def _unknown(doc: Document, ctx: ReadContext, number: int, message_id: str) -> None:
        ctx.warn(doc, number, f"ASA message {message_id} is not in the expected form; skipped")
        return None
