"""Records and bundles built directly, so each check is tested without any reader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import ClassVar

from mailflow_doctor.diagnose.bundle import Bundle, FirewallEvidence
from mailflow_doctor.evidence.document import SourceRef
from mailflow_doctor.evidence.records import (
    FirewallDrop,
    LogSpan,
    ParsedReason,
    SmtpSession,
    TraceEvent,
    TraceMessage,
)
from mailflow_doctor.firewall.evaluate import RangeCheck
from mailflow_doctor.firewall.model import Action, Chain, Origin, Policy, PortSet, Rule
from mailflow_doctor.firewall.registry import (
    ParseOptions,
    ParseResult,
    Remediation,
    register_parser,
)
from mailflow_doctor.knowledge.endpoints import load_bundled
from mailflow_doctor.knowledge.ipranges import IPSet

T0 = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)
PUBLIC = "203.0.113.25"
FQDN = "smtp.example.test"
TRACE = "trace/detail.csv"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def reason(
    code: str = "4.4.316", ip: str = PUBLIC, text: str = "Connection refused"
) -> ParsedReason:
    return ParsedReason(
        raw=f"450 {code} {text}",
        smtp_code="450",
        enhanced_code=code,
        text=text,
        socket_error=10061 if code == "4.4.316" else 10060,
        fqdn=FQDN,
        ip=ip,
        port=25,
    )


def defer(minute: float, code: str = "4.4.316", msg: str = "m1", line: int = 2) -> TraceEvent:
    return TraceEvent(
        ref=SourceRef(TRACE, line, f"Defer {code}"),
        time_utc=at(minute),
        event="Defer",
        action="",
        detail=f"Reason: [{{LED=450 {code}}}]",
        data="",
        reason=reason(code),
        message_id=msg,
    )


def sent(minute: float, msg: str = "m2", ip: str = PUBLIC, line: int = 3) -> TraceEvent:
    return TraceEvent(
        ref=SourceRef(TRACE, line, "Send external"),
        time_utc=at(minute),
        event="Send external",
        action="",
        detail=f"Message sent to {FQDN} at {ip} using TLS1.2 with AES256",
        data="",
        message_id=msg,
    )


def message(status: str, msg: str, to_ip: str = PUBLIC, subject: str = "hello") -> TraceMessage:
    return TraceMessage(
        ref=SourceRef("trace/summary.csv", 2, subject),
        received_utc=at(0),
        sender="a@example.org",
        recipient="b@example.test",
        subject=subject,
        status=status,
        message_id=msg,
        to_ip=to_ip,
    )


def drop(minute: float, src: str, port: int = 25, line: int = 1) -> FirewallDrop:
    return FirewallDrop(
        ref=SourceRef("fw/syslog.log", line, f"Deny tcp src outside:{src}"),
        time_utc=at(minute),
        vendor="cisco-asa",
        action="deny",
        protocol="tcp",
        src_ip=src,
        dst_ip="10.0.0.25",
        dst_port=port,
        rule="OUTSIDE_IN",
    )


def span(server: str, first: float, last: float, path: str | None = None) -> LogSpan:
    return LogSpan(
        ref=SourceRef(path or f"{server}/RECV.LOG"),
        kind="exchange.smtp_receive",
        server=server,
        first_utc=at(first),
        last_utc=at(last),
        records=100,
    )


def session(server: str, minute: float, remote: str, line: int = 10) -> SmtpSession:
    return SmtpSession(
        ref=SourceRef(f"{server}/RECV.LOG", line, "+"),
        direction="receive",
        server=server,
        connector=f"{server}\\Default Frontend {server}",
        session_id="08DE000000000001",
        start_utc=at(minute),
        end_utc=at(minute + 0.1),
        remote_ip=remote,
        local_ip="10.0.0.25",
        outcome="delivered",
    )


VENDOR = "unit-allowlist"
MAGIC = "#UNIT-ALLOWLIST"


def allowlist_text(*cidrs: str, action: str = "reject") -> str:
    return "\n".join([MAGIC, f"#default {action}", *cidrs]) + "\n"


@register_parser
class UnitAllowList:
    """A tiny vendor for tests: one permitted CIDR per line, a default action, 1:1 remediation.

    `#broken-remedy` makes remediation write lines that do not close the gap.
    """

    vendor: ClassVar[str] = VENDOR
    label: ClassVar[str] = "unit-test allow-list"

    def sniff(self, text: str) -> int:
        return 100 if text.startswith(MAGIC) else 0

    def parse(self, text: str, path: str, options: ParseOptions) -> ParseResult:
        rules = []
        default = Action.REJECT
        for number, line in enumerate(text.splitlines(), 1):
            if line.startswith("#default"):
                default = Action(line.split()[1])
                continue
            if not line or line.startswith("#"):
                continue
            rules.append(
                Rule(
                    Action.PERMIT,
                    Origin(path, number, line),
                    sources=IPSet.parse(line),
                    protocol="tcp",
                    dst_ports=PortSet.single(25),
                )
            )
        chain = Chain("in", tuple(rules), default, Origin(path, 2, f"#default {default.value}"))
        policy = Policy(VENDOR, path, {"in": chain}, ("in",), acl_name="in")
        return ParseResult(policy)

    def remediate(self, text: str, result: ParseResult, check: RangeCheck) -> Remediation:
        lines = tuple(check.missing.cidrs())
        if "#broken-remedy" in text:
            lines = ("192.0.2.0/24",)
        return Remediation(lines, "append to the list", text + "\n".join(lines) + "\n")


def firewall(*cidrs: str, action: str = "reject", extra: str = "") -> FirewallEvidence:
    text = allowlist_text(*cidrs, action=action) + extra
    result = UnitAllowList().parse(text, "fw/allow.txt", ParseOptions())
    return FirewallEvidence(result, text, "fw/allow.txt")


def bundle(
    *records: object, firewalls: tuple[FirewallEvidence, ...] = (), **options: object
) -> Bundle:
    b = Bundle(endpoints=load_bundled(), options=dict(options))
    for record in records:
        b.add(record)
    b.firewalls.extend(firewalls)
    return b


PERMITTED_EOP = ("40.92.0.0/15", "52.100.0.0/15", "104.47.0.0/17")
