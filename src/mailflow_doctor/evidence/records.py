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
    # Further replies, outermost first: on-premises "A -> B" hops, later NDR hop lines, and
    # replies quoted inside this one ([Message=451 ...], '...responded with "..."').
    chain: tuple[ParsedReason, ...] = ()
    fields: tuple[tuple[str, str], ...] = ()  # every key=value seen, in order
    eop_time_utc: datetime | None = None  # the time in the EOP server bracket
    eop_session_id: str | None = None  # the hex session id in the EOP server bracket
    win32_error: int | None = None  # "Win32 error code: 995"
    certificate_error: str | None = None  # SubjectMismatch, CertificateExpired, UntrustedRoot ...
    expected_subject: str | None = None  # "Expected Subject: *.contoso.com"
    presented_subject: str | None = None  # "Presented Subject: CN=ExchangeServer01"
    inner: str | None = None  # the "(...)" that ends an NDR hop line
    expired: bool = False  # "550 5.4.316 Message expired, ..." / QUEUE.Expired
    reported_by: str | None = None  # NDR hop: "Server at <host>"
    reported_by_ip: str | None = None  # NDR hop: "Server at <host> (<ip>)"
    reported_utc: datetime | None = None  # NDR hop: the date that starts the line

    @property
    def codes(self) -> tuple[str, ...]:
        """Every code in this reply and its chain, outermost first, without repeats."""
        seen: dict[str, None] = {}
        for item in (self, *self.chain):
            if item.code:
                seen.setdefault(item.code, None)
        return tuple(seen)

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
    time_assumed: str = ""  # how the time was read when the file did not say (culture, zone)


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
    time_assumed: str = ""  # how the time was read when the file did not say (culture, zone)
    extra: tuple[tuple[str, str], ...] = ()  # further columns (EAC: source, server, ...)


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
    tls_domain_status: str = ""  # Status='...' of the TlsDomainCapabilities line: Success, ...
    internal_message_ids: tuple[str, ...] = ()  # [InternalId=...] of accepted messages
    disconnect_reason: str = ""  # context of the `-` event: Local, Remote(ConnectionReset) ...


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


@dataclass(frozen=True)
class ConnectorConfig:
    """One connector from a Get-*Connector export (Format-List, Export-Csv or ConvertTo-Json).

    `kind` is "outbound" / "inbound" (Exchange Online) or "receive" / "send" (on-premises).
    Lists keep the order the export showed; booleans are None when the export omitted them.
    """

    ref: SourceRef
    kind: str
    name: str
    identity: str = ""
    server: str = ""  # "EX01" for "EX01\\Default Frontend EX01"; "" in Exchange Online
    enabled: bool | None = None
    connector_type: str = ""  # OnPremises / Partner (EXO); Frontend / HubTransport (receive)
    connector_source: str = ""  # HybridWizard / Default / AdminUI ...
    smart_hosts: tuple[str, ...] = ()
    use_mx_record: bool | None = None
    tls_domain: str = ""
    tls_settings: str = ""  # EncryptionOnly / CertificateValidation / DomainValidation
    tls_auth_level: str = ""  # on-premises send connector
    tls_certificate_name: str = ""  # "<I>issuer<S>subject"
    tls_sender_certificate_name: str = ""  # EXO inbound connector
    tls_domain_capabilities: tuple[str, ...] = ()
    require_tls: bool | None = None
    bindings: tuple[str, ...] = ()
    remote_ip_ranges: tuple[str, ...] = ()
    fqdn: str = ""
    route_all_via_onprem: bool | None = None  # RouteAllMessagesViaOnPremises (CMT)
    cloud_services_mail_enabled: bool | None = None
    recipient_domains: tuple[str, ...] = ()
    sender_domains: tuple[str, ...] = ()
    sender_ip_addresses: tuple[str, ...] = ()
    address_spaces: tuple[str, ...] = ()
    source_transport_servers: tuple[str, ...] = ()
    auth_mechanism: str = ""
    permission_groups: str = ""
    transport_role: str = ""
    is_transport_rule_scoped: bool | None = None
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CertificateInfo:
    """One certificate from Get-ExchangeCertificate."""

    ref: SourceRef
    thumbprint: str
    subject: str = ""
    issuer: str = ""
    sans: tuple[str, ...] = ()  # CertificateDomains
    not_before_utc: datetime | None = None
    not_after_utc: datetime | None = None
    services: tuple[str, ...] = ()  # "IMAP", "POP", "IIS", "SMTP" ...
    has_private_key: bool | None = None
    status: str = ""  # Valid / Revoked / Untrusted / DateInvalid ...
    server: str = ""  # from PSComputerName / Identity, when the export shows it
    is_self_signed: bool | None = None
    friendly_name: str = ""
    time_assumed: str = ""  # how a culture-formatted local time was read, when it was


@dataclass(frozen=True)
class HybridConfigInfo:
    """Get-HybridConfiguration: what the Hybrid Configuration Wizard last configured."""

    ref: SourceRef
    name: str = ""
    domains: tuple[str, ...] = ()
    features: tuple[str, ...] = ()  # FreeBusy, SecureMail, CentralizedTransport ...
    receiving_transport_servers: tuple[str, ...] = ()
    sending_transport_servers: tuple[str, ...] = ()
    edge_transport_servers: tuple[str, ...] = ()
    on_premises_smart_host: str = ""
    tls_certificate_name: str = ""
    external_ip_addresses: tuple[str, ...] = ()
    service_instance: str = ""


@dataclass(frozen=True)
class TrackingEvent:
    """One message tracking event: a raw MSGTRK* log row or a Get-MessageTrackingLog object.

    `source_context` of a RECEIVE/SMTP event is `<session-id>;<session start>;<n>`, the key
    that joins it to the SMTP protocol log session; `internal_message_id` equals the
    `[InternalId=...]` of the `250 2.6.0` reply in that session.
    """

    ref: SourceRef
    time_utc: datetime | None
    event_id: str  # RECEIVE, SEND, DELIVER, DEFER, FAIL, SENDEXTERNAL ... (upper case)
    source: str = ""  # SMTP, STOREDRIVER, ROUTING, AGENT ...
    message_id: str = ""
    internal_message_id: str = ""
    network_message_id: str = ""
    sender: str = ""
    recipients: tuple[str, ...] = ()
    recipient_status: tuple[str, ...] = ()  # matches `recipients` by position (padded)
    client_ip: str = ""
    client_hostname: str = ""
    server_ip: str = ""
    server_hostname: str = ""
    connector_id: str = ""
    source_context: str = ""
    message_subject: str = ""
    related_recipient_address: str = ""
    return_path: str = ""
    total_bytes: int | None = None
    directionality: str = ""
    message_info: str = ""
    original_client_ip: str = ""
    original_server_ip: str = ""
    reason: ParsedReason | None = None  # first recipient status that reads as a reason
    time_assumed: str = ""  # how a culture-formatted local time was read, when it was
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class QueueEntry:
    """One queue from Get-Queue (Format-List or Export-Csv) on an on-premises server."""

    ref: SourceRef
    identity: str
    server: str = ""  # the part of Identity before the backslash
    delivery_type: str = ""
    status: str = ""  # Active, Connecting, Ready, Retry, Suspended
    message_count: int | None = None
    next_hop_domain: str = ""
    next_hop_connector: str = ""
    tls_domain: str = ""
    last_error: str = ""
    reason: ParsedReason | None = None
    retry_count: int | None = None
    last_retry_utc: datetime | None = None
    next_retry_utc: datetime | None = None
    first_retry_utc: datetime | None = None
    deferred_message_count: int | None = None
    time_assumed: str = ""
    extra: tuple[tuple[str, str], ...] = ()
