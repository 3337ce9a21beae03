"""What the hybrid checks share: which sessions came from Exchange Online, certificate names,
the hybrid connectors, and the deferral reasons of the trace.

Kept apart from the rule modules so that TLS, connector, routing and message-path checks read
the evidence the same way (one idea of "an Exchange Online session", one name matcher).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mailflow_doctor.diagnose.bundle import Bundle
from mailflow_doctor.evidence.records import (
    CertificateInfo,
    ConnectorConfig,
    HybridConfigInfo,
    ParsedReason,
    SmtpSession,
    TraceEvent,
)
from mailflow_doctor.knowledge.ipranges import AddressParseError, IPSet

EOP_HELO = re.compile(r"\.(?:outbound\.)?protection\.outlook\.com$|\.mx\.microsoft$", re.I)
EOP_CERT = "mail.protection.outlook.com"
CLOUD_CAPABILITIES = ("acceptcloudservicesmail", "acceptoorgprotocol")
STARTTLS_RE = re.compile(r"STARTTLS\s+is\s+required|Must issue a STARTTLS command", re.I)
_CN = re.compile(r"(?:^|,)\s*CN=([^,]+)", re.I)
DEFERRAL_EVENTS = frozenset({"defer", "fail", "deferred", "failed"})


def evidence_time(bundle: Bundle, facts: dict[str, Any]) -> datetime:
    """The time the evidence describes: the end of the deferral window, else now."""
    window = facts.get("deferral_window")
    if isinstance(window, tuple) and len(window) == 2 and isinstance(window[1], datetime):
        return window[1]
    option = bundle.options.get("now")
    return option if isinstance(option, datetime) else datetime.now(UTC)


def eop_ranges(bundle: Bundle) -> IPSet:
    try:
        return bundle.endpoints.eop_smtp_ranges()
    except Exception:  # an endpoint list without set 10 must not stop the TLS checks
        return IPSet.empty()


def in_set(address: str, ranges: IPSet) -> bool:
    try:
        return ipaddress.ip_address(address) in ranges
    except ValueError:
        return False


def is_eop_session(session: SmtpSession, ranges: IPSet) -> bool:
    """A receive session that Exchange Online opened (by source range, HELO or certificate)."""
    if session.direction != "receive":
        return False
    if session.remote_ip and in_set(session.remote_ip, ranges):
        return True
    if session.ehlo and EOP_HELO.search(session.ehlo.strip().rstrip(".")):
        return True
    remote = session.remote_certificate
    return bool(remote and EOP_CERT in (remote.subject + " " + " ".join(remote.sans)).lower())


def eop_sessions(bundle: Bundle) -> list[SmtpSession]:
    ranges = eop_ranges(bundle)
    return [s for s in bundle.of(SmtpSession) if is_eop_session(s, ranges)]


def subject_cn(subject: str) -> str:
    match = _CN.search(subject or "")
    return match.group(1).strip() if match else ""


def certificate_names(subject: str, sans: Iterable[str]) -> list[str]:
    names = [n.strip().lower() for n in sans if n and n.strip()]
    cn = subject_cn(subject).lower()
    if cn and cn not in names:
        names.insert(0, cn)
    return names


def name_matches(expected: str, name: str) -> bool:
    """Does a certificate name cover the expected host name (one-label wildcards both ways)?

    The outbound connector's TlsDomain may itself be a wildcard (`*.contoso.com`), meaning any
    name in that domain is accepted.
    """
    expected = expected.strip().lower().rstrip(".").replace("\\*", "*")
    name = name.strip().lower().rstrip(".")
    if not expected or not name:
        return False
    if expected == name:
        return True
    if name.startswith("*."):
        suffix = name[1:]
        head = expected[: -len(suffix)] if expected.endswith(suffix) else ""
        if head and "." not in head and head != "*":
            return True
    if expected.startswith("*."):
        return name == expected or (
            name.endswith(expected[1:]) and "." not in name[: -len(expected) + 1]
        )
    return False


def covers(expected: str, names: Iterable[str]) -> bool:
    return any(name_matches(expected, n) for n in names)


def normalise_dn(dn: str) -> str:
    """Compare X.500 names as Exchange prints them, forgiving spacing and case."""
    parts = [p.strip().lower() for p in re.split(r",(?=\s*[A-Za-z.]+=)", dn or "") if p.strip()]
    return ",".join(parts)


def parse_certificate_name(value: str) -> tuple[str, str]:
    """`<I>issuer<S>subject` -> (issuer, subject); a bare value is taken as the subject."""
    match = re.match(r"^\s*<I>(?P<i>.*?)<S>(?P<s>.*)$", value or "", re.IGNORECASE | re.DOTALL)
    if match:
        return match["i"].strip(), match["s"].strip()
    return "", (value or "").strip()


def certificate_matches_name(cert: CertificateInfo, configured: str) -> bool:
    issuer, subject = parse_certificate_name(configured)
    if normalise_dn(cert.subject) != normalise_dn(subject):
        return False
    # A table export shows no issuer: the subject is all there is to compare.
    return not issuer or not cert.issuer or normalise_dn(cert.issuer) == normalise_dn(issuer)


def same_server(a: str, b: str) -> bool:
    return bool(a) and bool(b) and a.split(".")[0].lower() == b.split(".")[0].lower()


def thumbprints_match(a: str, b: str) -> bool:
    """Exchange Online's error may show a shortened thumbprint; compare the common prefix."""
    a, b = a.replace(" ", "").upper(), b.replace(" ", "").upper()
    shorter = min(len(a), len(b))
    return shorter >= 16 and a[:shorter] == b[:shorter]


def hybrid_outbound(bundle: Bundle) -> ConnectorConfig | None:
    """The Exchange Online connector that delivers to on-premises (the HCW one when known)."""
    outbound = [c for c in bundle.of(ConnectorConfig) if c.kind == "outbound" and c.enabled]
    onprem = [c for c in outbound if c.connector_type.lower() == "onpremises"] or outbound
    hcw = [c for c in onprem if c.connector_source.lower() == "hybridwizard"]
    chosen = hcw or onprem
    return chosen[0] if chosen else None


def hybrid_config(bundle: Bundle) -> HybridConfigInfo | None:
    configs = bundle.of(HybridConfigInfo)
    return configs[0] if configs else None


def range_set(text: str) -> IPSet | None:
    text = text.strip()
    try:
        if "-" in text and "/" not in text:
            first, last = text.split("-", 1)
            return IPSet.from_range(first.strip(), last.strip())
        return IPSet.parse(text)
    except (AddressParseError, ValueError):
        return None


def binds_port_25(connector: ConnectorConfig) -> bool:
    if not connector.bindings:
        return True  # not exported: do not rule it out
    return any(b.rsplit(":", 1)[-1].strip() == "25" for b in connector.bindings)


def landing_connectors(bundle: Bundle) -> dict[str, ConnectorConfig]:
    """Per server, the receive connector that Exchange Online sessions land on.

    Among the enabled connectors listening on TCP 25 whose RemoteIPRanges hold a published
    Exchange Online address, Exchange picks the most specific range; Front End connectors win
    over Hub ones where both exist (the hybrid path enters through Front End Transport).
    """
    ranges = eop_ranges(bundle)
    probe_addresses = [net.network_address for net in ranges.networks()[:8]]
    result: dict[str, ConnectorConfig] = {}
    by_server: dict[str, list[ConnectorConfig]] = {}
    for connector in bundle.of(ConnectorConfig):
        if connector.kind == "receive" and connector.enabled is not False:
            by_server.setdefault(connector.server.upper(), []).append(connector)
    for server, connectors in by_server.items():
        best: tuple[int, int, ConnectorConfig] | None = None
        for connector in connectors:
            if not binds_port_25(connector):
                continue
            role = 0 if "frontend" in connector.transport_role.lower() else 1
            sizes = []
            for text in connector.remote_ip_ranges or ("0.0.0.0-255.255.255.255",):
                parsed = range_set(text)
                if parsed is None:
                    continue
                if not probe_addresses or any(a in parsed for a in probe_addresses):
                    sizes.append(parsed.size())
            if not sizes:
                continue
            key = (min(sizes), role)
            if best is None or key < best[:2]:
                best = (key[0], key[1], connector)
        if best is not None:
            result[server] = best[2]
    return result


def has_cloud_capability(connector: ConnectorConfig) -> bool:
    for item in connector.tls_domain_capabilities:
        domain, _, capability = item.partition(":")
        if domain.strip().lower() != EOP_CERT:
            continue
        capability = capability.strip().lower()
        if any(c in capability for c in CLOUD_CAPABILITIES) or capability.isdigit():
            return True
    return False


@dataclass(frozen=True)
class Deferral:
    event: TraceEvent
    reason: ParsedReason
    code: str  # normalised deferral code (5.4.31x folded into 4.4.31x)

    @property
    def text(self) -> str:
        return self.reason.raw

    @property
    def target_ip(self) -> str:
        for hop in walk(self.reason):
            if hop.ip:
                return hop.ip
            if hop.proxy_target_ip:
                return hop.proxy_target_ip
        return ""

    @property
    def target_host(self) -> str:
        for hop in walk(self.reason):
            if hop.fqdn:
                return hop.fqdn
            if hop.proxy_target_host:
                return hop.proxy_target_host
        return ""


def walk(reason: ParsedReason) -> Iterator[ParsedReason]:
    yield reason
    for hop in reason.chain:
        yield from walk(hop)


def first_of(reason: ParsedReason, attribute: str) -> str:
    for hop in walk(reason):
        value = getattr(hop, attribute, None)
        if value:
            return str(value)
    return ""


def _code(reason: ParsedReason) -> str:
    code = reason.code or ""
    if code.startswith("5.4.31") and len(code) == 7:
        return "4" + code[1:]
    if reason.expired:
        for hop in walk(reason):
            if hop.enhanced_code and hop.enhanced_code.startswith("4.4.3"):
                return hop.enhanced_code
    return code


def deferrals(bundle: Bundle) -> list[Deferral]:
    """Trace events whose reason is a 4.x.x / 5.x.x failure (Defer, Fail, expiry)."""
    result = []
    for event in bundle.of(TraceEvent):
        reason = event.reason
        if reason is None:
            continue
        code = _code(reason)
        name = event.event.strip().lower()
        if name in DEFERRAL_EVENTS or (code[:2] in ("4.", "5.") and code[2:3] != "1"):
            result.append(Deferral(event, reason, code))
    return result


def reason_text(reason: ParsedReason) -> str:
    return " ".join(filter(None, (hop.raw for hop in walk(reason))))
