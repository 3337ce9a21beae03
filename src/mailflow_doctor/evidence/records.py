"""Typed records that readers produce and checks consume.

Every record keeps `ref` (file and line) so that each finding can point at its evidence, and
every time is a timezone-aware UTC `datetime`. Records hold facts as read; judging them is the
diagnose layer's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mailflow_doctor.evidence.document import SourceRef


@dataclass(frozen=True)
class ParsedReason:
    """A deferral / failure reason as Exchange Online or on-premises Exchange wrote it.

    Filled from every form: `{LED=...};{MSG=...};{FQDN=...};{IP=...};{LRT=...}`, the bracketed
    `[Message=...] [LastAttemptedServerName=...] [LastAttemptedIP=ip:port]` form, NDR expiry
    lines and on-premises `A -> B` chains. Whatever cannot be read stays in `raw`.
    """

    raw: str
    smtp_code: str | None = None  # "450"
    enhanced_code: str | None = None  # "4.4.316"
    text: str | None = None  # "Connection refused"
    message: str | None = None  # [Message=...] / {MSG=...} contents
    socket_error: int | None = None  # 10061
    fqdn: str | None = None  # {FQDN=...} / LastAttemptedServerName
    ip: str | None = None  # {IP=...} / LastAttemptedIP without port
    port: int | None = None
    last_retry_utc: datetime | None = None  # {LRT=...}
    smtp_security: str | None = None  # [SmtpSecurity=...]
    eop_server: str | None = None  # [BN1NAM02FT012.eop-nam02.prod.protection.outlook.com ...]
    proxy_target_ip: str | None = None  # OutboundProxyTargetIP
    proxy_target_host: str | None = None  # OutboundProxyTargetHostName
    certificate_thumbprint: str | None = None
    chain: tuple[ParsedReason, ...] = ()  # on-premises "A -> B" hops, outermost first
    fields: tuple[tuple[str, str], ...] = ()  # every key=value seen, in order

    @property
    def code(self) -> str | None:
        """The most specific code: the enhanced status code when present."""
        return self.enhanced_code or self.smtp_code


@dataclass(frozen=True)
class TraceMessage:
    """One row of Get-MessageTrace(V2) or an EAC summary / enhanced summary report."""

    ref: SourceRef
    received_utc: datetime | None
    sender: str
    recipient: str
    subject: str
    status: str  # Delivered, Pending, Failed, Deferred, Expanded, Quarantined, FilteredAsSpam ...
    message_id: str = ""
    trace_id: str = ""
    from_ip: str = ""
    to_ip: str = ""
    size: int | None = None
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TraceEvent:
    """One row of Get-MessageTraceDetail(V2) or an event of an EAC extended report."""

    ref: SourceRef
    time_utc: datetime | None
    event: str  # Receive, Send external, Defer, Deliver, Fail, Drop ...
    action: str
    detail: str
    data: str
    reason: ParsedReason | None = None
    message_id: str = ""
    trace_id: str = ""
    recipient: str = ""
    sender: str = ""
    subject: str = ""


@dataclass(frozen=True)
class TlsCertificateSeen:
    """A certificate that a protocol log says a server presented or used."""

    subject: str = ""
    issuer: str = ""
    thumbprint: str = ""
    serial: str = ""
    not_before_utc: datetime | None = None
    not_after_utc: datetime | None = None
    sans: tuple[str, ...] = ()


@dataclass(frozen=True)
class SmtpSession:
    """One SMTP session from a SmtpReceive or SmtpSend protocol log."""

    ref: SourceRef
    direction: str  # "receive" or "send"
    server: str  # from the connector id ("EX01\\Default Frontend EX01") or the file path
    connector: str
    session_id: str
    start_utc: datetime | None
    end_utc: datetime | None
    local_ip: str = ""
    local_port: int | None = None
    remote_ip: str = ""
    remote_port: int | None = None
    ehlo: str = ""
    banner: str = ""
    starttls_offered: bool | None = None  # None: the EHLO reply was not logged
    starttls_requested: bool = False
    tls_negotiated: bool = False
    tls_protocol: str = ""
    tls_cipher: str = ""
    certificate: TlsCertificateSeen | None = None
    remote_certificate: TlsCertificateSeen | None = None
    tls_domain_capabilities: str = ""
    mail_from: str = ""
    recipients: int = 0
    message_ids: tuple[str, ...] = ()
    last_response: str = ""
    outcome: str = ""  # "delivered", "rejected", "tls_failed", "disconnected", "open", ...
    events: int = 0
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LogSpan:
    """The time a log file covers, so that log silence can be judged against a window."""

    ref: SourceRef
    kind: str  # the reader kind, e.g. "exchange.smtp_receive"
    server: str
    first_utc: datetime
    last_utc: datetime
    records: int


@dataclass(frozen=True)
class FirewallDrop:
    """A deny / drop log entry."""

    ref: SourceRef
    time_utc: datetime | None
    vendor: str
    action: str  # "deny", "drop", "reset", "reject"
    protocol: str  # "tcp", "udp", ...
    src_ip: str
    dst_ip: str
    src_port: int | None = None
    dst_port: int | None = None
    rule: str = ""  # ACL / policy / rule name or id as logged
    interface: str = ""
    time_assumed: str = ""  # how a missing year or zone was filled in, when it was


@dataclass(frozen=True)
class Unrecognised:
    """A file no reader claimed."""

    ref: SourceRef
    hint: str = ""


@dataclass(frozen=True)
class RecordBatch:
    """Used by readers that want to hand over many small records at once (kept for speed)."""

    items: tuple[object, ...] = field(default=())
