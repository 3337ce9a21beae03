"""The hybrid checks one by one, on records built directly (no reader involved)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailflow_doctor.diagnose.bundle import Bundle
from mailflow_doctor.diagnose.checks import Context
from mailflow_doctor.diagnose.engine import diagnose
from mailflow_doctor.diagnose.facts import CONTRADICT_KEY, SUPPORT_KEY, notes
from mailflow_doctor.diagnose.hybrid import (
    certificate_matches_name,
    covers,
    landing_connectors,
    name_matches,
    thumbprints_match,
)
from mailflow_doctor.diagnose.model import Finding
from mailflow_doctor.diagnose.rules.connectors import connector_config
from mailflow_doctor.diagnose.rules.dns_target import dns_target
from mailflow_doctor.diagnose.rules.message_path import message_paths
from mailflow_doctor.diagnose.rules.routing import routing_cmt
from mailflow_doctor.diagnose.rules.tls import tls_evidence
from mailflow_doctor.evidence.document import SourceRef
from mailflow_doctor.evidence.reason import parse_reason
from mailflow_doctor.evidence.records import (
    CertificateInfo,
    ConnectorConfig,
    HybridConfigInfo,
    QueueEntry,
    SmtpSession,
    TlsCertificateSeen,
    TraceEvent,
    TraceMessage,
    TrackingEvent,
)
from mailflow_doctor.knowledge.endpoints import load_bundled

T0 = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)
R11 = "CN=R11, O=Let's Encrypt, C=US"
GOOD_NAME = f"<I>{R11}<S>CN=mail.contoso.com"
REF = SourceRef("x", 1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def bundle(*records: object, **options: object) -> Bundle:
    result = Bundle(endpoints=load_bundled(), options=dict(options))
    for record in records:
        result.add(record)
    return result


def defer(text: str, minute: float = 0, msg: str = "<m1@x>") -> TraceEvent:
    return TraceEvent(
        ref=SourceRef("trace.csv", int(minute) + 2),
        time_utc=at(minute),
        event="Defer",
        action="",
        detail=text,
        data="",
        reason=parse_reason(text),
        message_id=msg,
    )


def led(inner: str, ip: str = "203.0.113.25", code: str = "450 4.4.317") -> str:
    text = {"450 4.4.317": "Cannot connect to remote server"}.get(code, "Connection timed out")
    return (
        f"Reason: [{{LED={code} {text} [Message={inner}] "
        f"[LastAttemptedServerName=mail.contoso.com] [LastAttemptedIP={ip}:25]}};"
        f"{{MSG=}};{{FQDN=mail.contoso.com}};{{IP={ip}}};{{LRT=11/28/2026 1:00:00 PM}}]"
    )


def cert(
    subject: str = "CN=mail.contoso.com",
    issuer: str = R11,
    not_after: datetime = datetime(2027, 2, 1, tzinfo=UTC),
    server: str = "EX01",
    services: tuple[str, ...] = ("IIS", "SMTP"),
    thumbprint: str = "9F3A6C1D2B4E5F60718293A4B5C6D7E8F9012345",
    sans: tuple[str, ...] = ("mail.contoso.com",),
) -> CertificateInfo:
    return CertificateInfo(
        ref=REF,
        thumbprint=thumbprint,
        subject=subject,
        issuer=issuer,
        sans=sans,
        not_before_utc=datetime(2026, 1, 1, tzinfo=UTC),
        not_after_utc=not_after,
        services=services,
        server=server,
    )


def receive(server: str = "EX01", name: str = GOOD_NAME, caps: bool = True) -> ConnectorConfig:
    return ConnectorConfig(
        ref=SourceRef("rc.txt", 2),
        kind="receive",
        name=f"Default Frontend {server}",
        server=server,
        enabled=True,
        tls_certificate_name=name,
        tls_domain_capabilities=(
            ("mail.protection.outlook.com:AcceptCloudServicesMail",) if caps else ()
        ),
        bindings=("0.0.0.0:25",),
        remote_ip_ranges=("0.0.0.0-255.255.255.255",),
        transport_role="FrontendTransport",
    )


def outbound(
    tls_domain: str = "mail.contoso.com",
    smart_hosts: tuple[str, ...] = ("mail.contoso.com",),
    cmt: bool = False,
) -> ConnectorConfig:
    return ConnectorConfig(
        ref=SourceRef("out.txt", 2),
        kind="outbound",
        name="Outbound to 2c3e",
        enabled=True,
        connector_type="OnPremises",
        connector_source="HybridWizard",
        smart_hosts=smart_hosts,
        tls_domain=tls_domain,
        tls_settings="DomainValidation",
        route_all_via_onprem=cmt,
        recipient_domains=("contoso.com",),
    )


def eop_session(
    server: str = "EX01",
    starttls: bool | None = True,
    presented: TlsCertificateSeen | None = None,
    minute: float = 0,
    message_ids: tuple[str, ...] = (),
) -> SmtpSession:
    return SmtpSession(
        ref=SourceRef(f"{server}/RECV.LOG", 7),
        direction="receive",
        server=server,
        connector=f"{server}\\Default Frontend {server}",
        session_id=f"08DE{server}{int(minute):04d}",
        start_utc=at(minute),
        end_utc=at(minute + 0.1),
        remote_ip="40.107.22.57",
        ehlo="EUR05-AM6-obe.outbound.protection.outlook.com",
        starttls_offered=starttls,
        certificate=presented,
        message_ids=message_ids,
    )


def seen(subject: str, thumbprint: str, not_after: datetime | None = None) -> TlsCertificateSeen:
    return TlsCertificateSeen(
        subject=subject,
        issuer=subject,
        thumbprint=thumbprint,
        not_after_utc=not_after or datetime(2031, 1, 1, tzinfo=UTC),
        sans=(subject.removeprefix("CN="),),
    )


def by_id(findings: list[Finding]) -> dict[str, Finding]:
    return {f.id: f for f in findings}


# ------------------------------------------------------------------------------- helpers


def test_name_matching() -> None:
    assert name_matches("mail.contoso.com", "mail.contoso.com")
    assert name_matches("mail.contoso.com", "*.contoso.com")
    assert not name_matches("a.b.contoso.com", "*.contoso.com")
    assert name_matches("*.contoso.com", "mail.contoso.com")
    assert name_matches("\\*.contoso.com", "*.contoso.com")
    assert not name_matches("mail.contoso.com", "ex02")
    assert covers("MAIL.contoso.com", ["ex02", "mail.contoso.com."])
    assert thumbprints_match(
        "D0AC2FC63B9C5798828B45D849BE8D33", "d0ac2fc63b9c5798828b45d849be8d33aa11bb22"
    )
    assert not thumbprints_match("D0AC", "D0AC2FC63B9C5798")
    assert certificate_matches_name(
        cert(), "<I>CN=R11,O=Let's Encrypt,  C=US<S>cn=mail.contoso.com"
    )
    assert not certificate_matches_name(
        cert(), "<I>CN=R3, O=Let's Encrypt, C=US<S>CN=mail.contoso.com"
    )


def test_landing_connector_is_the_most_specific_on_port_25() -> None:
    scoped = ConnectorConfig(
        ref=REF,
        kind="receive",
        name="Inbound from Office 365",
        server="EX01",
        enabled=True,
        bindings=("0.0.0.0:25",),
        remote_ip_ranges=("40.107.0.0/16", "40.92.0.0/15"),
        transport_role="FrontendTransport",
    )
    relay = ConnectorConfig(
        ref=REF,
        kind="receive",
        name="Relay",
        server="EX01",
        enabled=True,
        bindings=("0.0.0.0:25",),
        remote_ip_ranges=("192.0.2.40-192.0.2.47",),
    )
    client = ConnectorConfig(
        ref=REF,
        kind="receive",
        name="Client Frontend EX01",
        server="EX01",
        enabled=True,
        bindings=("0.0.0.0:587",),
        remote_ip_ranges=(),
    )
    landing = landing_connectors(bundle(receive(), scoped, relay, client))
    assert landing["EX01"].name == "Inbound from Office 365"


# --------------------------------------------------------------------------------- TLS


def test_starttls_from_the_logs_alone() -> None:
    ctx = Context(bundle(eop_session("EX01", False), eop_session("EX02", True)))
    found = by_id(list(tls_evidence(ctx)))
    finding = found["tls.starttls_missing"]
    assert finding.data["servers"] == ["EX01"]
    assert finding.data["servers_offering_starttls"] == ["EX02"]
    assert finding.confidence == 0.8
    assert finding.severity.value == "error"


def test_starttls_from_the_trace_alone() -> None:
    ctx = Context(bundle(defer(led("451 5.7.3 STARTTLS is required to send mail"))))
    finding = by_id(list(tls_evidence(ctx)))["tls.starttls_missing"]
    assert finding.data["target"] == "mail.contoso.com"
    assert "4.4.317" in finding.explains
    assert finding.confidence == 0.7


def test_name_mismatch_found_from_logs_and_expected_name() -> None:
    ctx = Context(
        bundle(
            eop_session("EX01", True, seen("CN=mail.contoso.com", "AA" * 20)),
            eop_session("EX02", True, seen("CN=EX02", "BB" * 20)),
        )
    )
    ctx.facts["expected_tls_name"] = "mail.contoso.com"
    finding = by_id(list(tls_evidence(ctx)))["tls.certificate_name_mismatch"]
    assert finding.data["servers"] == ["EX02"]
    assert finding.data["servers_ok"] == ["EX01"]
    assert finding.data["intermittent"] is True
    assert finding.data["presented"] == "CN=EX02"


def test_name_mismatch_thumbprint_names_the_server() -> None:
    text = led(
        "SubjectMismatch Expected Subject: *.contoso.com. Presented Subject: CN=EX02. "
        "Thumbprint: D0AC2FC63B9C5798828B45D849BE8D33."
    )
    ctx = Context(
        bundle(
            defer(text),
            eop_session("EX02", True, seen("CN=EX02", "D0AC2FC63B9C5798828B45D849BE8D33AA11BB22")),
        )
    )
    finding = by_id(list(tls_evidence(ctx)))["tls.certificate_name_mismatch"]
    assert finding.data["expected"] == "*.contoso.com"
    assert finding.data["servers"] == ["EX02"]
    assert finding.confidence == 0.95


def test_expired_from_logs_and_untrusted_from_trace() -> None:
    old = seen("CN=mail.contoso.com", "CC" * 20, datetime(2026, 11, 20, tzinfo=UTC))
    ctx = Context(bundle(eop_session("EX01", True, old), defer(led("UntrustedRoot"))))
    found = by_id(list(tls_evidence(ctx)))
    assert found["tls.certificate_expired"].data["not_after"] == "2026-11-20T00:00:00Z"
    assert found["tls.chain_untrusted"].data["detail"] == "UntrustedRoot"


def test_sessions_from_elsewhere_are_not_judged() -> None:
    other = SmtpSession(
        ref=REF,
        direction="receive",
        server="EX01",
        connector="c",
        session_id="1",
        start_utc=T0,
        end_utc=T0,
        remote_ip="192.0.2.44",
        ehlo="scanner.contoso.local",
        starttls_offered=False,
    )
    assert list(tls_evidence(Context(bundle(other)))) == []


# ------------------------------------------------------------------------------ connectors


def test_connector_names_a_removed_certificate() -> None:
    old_name = "<I>CN=R3, O=Let's Encrypt, C=US<S>CN=mail.contoso.com"
    ctx = Context(bundle(receive("EX01", old_name), cert(), outbound()))
    found = by_id(list(connector_config(ctx)))
    finding = found["connector.tls_certificate_name_mismatch"]
    assert finding.data["problem"] == "not_installed"
    assert finding.data["configured"] == old_name
    assert finding.data["installed"][0]["issuer"] == R11
    assert "Set-ReceiveConnector" in finding.remediation[0]
    assert ctx.facts["expected_tls_name"] == "mail.contoso.com"
    assert ctx.facts["tls_certificate_name_broken"] == ["EX01\\Default Frontend EX01"]
    assert [n.finding_id for n in notes(ctx.facts, SUPPORT_KEY)] == ["tls.starttls_missing"]


def test_connector_without_name_and_capabilities() -> None:
    ctx = Context(bundle(receive("EX01"), receive("EX02", "", caps=False), cert(), outbound()))
    found = list(connector_config(ctx))
    ids = [f.id for f in found]
    assert ids.count("connector.tls_certificate_name_mismatch") == 1
    unset = by_id(found)["connector.tls_certificate_name_mismatch"]
    assert unset.data["problem"] == "unset"
    assert unset.data["connector"] == "EX02\\Default Frontend EX02"
    capability = by_id(found)["connector.tls_domain_capabilities_missing"]
    assert capability.data["server"] == "EX02"
    assert capability.severity.value == "warning"


def test_expired_named_certificate_and_smtp_service() -> None:
    expired = cert(not_after=datetime(2026, 11, 1, tzinfo=UTC))
    ctx = Context(bundle(receive(), expired, now=T0))
    finding = by_id(list(connector_config(ctx)))["connector.tls_certificate_name_mismatch"]
    assert finding.data["problem"] == "expired"
    ctx = Context(bundle(receive(), cert(services=("IIS",)), now=T0))
    finding = by_id(list(connector_config(ctx)))["connector.certificate_not_enabled_for_smtp"]
    assert not finding.can_be_root_cause


def test_outbound_tls_domain_not_on_the_certificate() -> None:
    ctx = Context(bundle(receive(), cert(), outbound(tls_domain="hybrid.contoso.com")))
    finding = by_id(list(connector_config(ctx)))["connector.tls_domain_mismatch"]
    assert finding.data["tls_domain"] == "hybrid.contoso.com"
    assert finding.data["certificate_names"] == ["mail.contoso.com"]
    ctx = Context(bundle(receive(), cert(sans=("*.contoso.com",)), outbound("hybrid.contoso.com")))
    assert "connector.tls_domain_mismatch" not in by_id(list(connector_config(ctx)))


def test_hybrid_configuration_names_another_certificate() -> None:
    hybrid = HybridConfigInfo(
        ref=REF,
        receiving_transport_servers=("EX01",),
        tls_certificate_name="<I>CN=Other CA<S>CN=mail.contoso.com",
    )
    ctx = Context(bundle(receive(), cert(), hybrid))
    finding = by_id(list(connector_config(ctx)))["connector.tls_certificate_name_mismatch"]
    assert finding.data["problem"] == "differs_from_hcw"
    assert not finding.can_be_root_cause


def test_send_connector_to_exchange_online_names_a_missing_certificate() -> None:
    send = ConnectorConfig(
        ref=REF,
        kind="send",
        name="Outbound to Office 365 - 2c3e",
        enabled=True,
        address_spaces=("smtp:contoso.mail.onmicrosoft.com;1",),
        tls_certificate_name="<I>CN=R3, O=Let's Encrypt, C=US<S>CN=mail.contoso.com",
        source_transport_servers=("EX01",),
    )
    finding = by_id(list(connector_config(Context(bundle(send, cert())))))[
        "connector.tls_certificate_name_mismatch"
    ]
    assert finding.data["problem"] == "send_not_installed"
    assert "4.7.5" in finding.explains


def test_smart_host_not_tried() -> None:
    ctx = Context(bundle(outbound()))
    ctx.facts["smtp_targets"] = ["old-mail.contoso.com", "198.51.100.77"]
    finding = by_id(list(connector_config(ctx)))["connector.smart_host_mismatch"]
    assert finding.data["tried"] == ["old-mail.contoso.com"]


# ------------------------------------------------------------------------------ DNS target


def test_target_mismatch_against_an_ip_smart_host() -> None:
    text = led("Socket error code 10060", ip="198.51.100.77", code="450 4.4.315")
    ctx = Context(bundle(defer(text), outbound(smart_hosts=("203.0.113.25",))))
    finding = by_id(list(dns_target(ctx)))["dns.target_mismatch"]
    assert finding.data == {
        "tried": ["198.51.100.77"],
        "expected": ["203.0.113.25"],
        "names": ["mail.contoso.com"],
        "attempts": 1,
    }
    assert finding.explains == ("4.4.315",)


def test_no_target_mismatch_when_the_address_is_current() -> None:
    text = led("Socket error code 10061", ip="203.0.113.25", code="450 4.4.316")
    ctx = Context(bundle(defer(text), expected_address="203.0.113.25"))
    assert list(dns_target(ctx)) == []
    ctx = Context(bundle(defer(text)))
    assert list(dns_target(ctx)) == []  # nothing says where the endpoint is


def test_target_mismatch_contradicts_a_firewall_judged_for_the_stale_address() -> None:
    text = led("Socket error code 10060", ip="198.51.100.77", code="450 4.4.315")
    ctx = Context(bundle(defer(text), expected_address="203.0.113.25"))
    ctx.facts["firewall_checks"] = [(None, "198.51.100.77", None)]
    assert list(dns_target(ctx))
    against = notes(ctx.facts, CONTRADICT_KEY)
    assert {n.finding_id for n in against} == {
        "firewall.eop_ranges_blocked",
        "firewall.eop_ranges_permitted_partially",
    }


# --------------------------------------------------------------------------------- routing


def test_cmt_configured_but_off() -> None:
    hybrid = HybridConfigInfo(ref=REF, features=("FreeBusy", "CentralizedTransport"))
    finding = by_id(list(routing_cmt(Context(bundle(outbound(cmt=False), hybrid)))))[
        "routing.cmt_bypass"
    ]
    assert "RouteAllMessagesViaOnPremises" in finding.data["detail"]
    hybrid = HybridConfigInfo(ref=REF, features=("FreeBusy",))
    assert list(routing_cmt(Context(bundle(outbound(cmt=False), hybrid)))) == []


def test_cmt_on_and_all_mail_via_onprem_is_fine() -> None:
    event = TraceEvent(
        ref=REF,
        time_utc=T0,
        event="Send external",
        action="",
        detail="Message sent to mail.contoso.com at 203.0.113.25 using TLS1.2 with AES256",
        data="",
        message_id="<a@b>",
        sender="u@contoso.com",
        recipient="x@fabrikam.com",
    )
    assert list(routing_cmt(Context(bundle(outbound(cmt=True), event)))) == []
    direct = TraceEvent(
        ref=REF,
        time_utc=T0,
        event="Send external",
        action="",
        detail="Message sent to mx.fabrikam.com at 198.51.100.40 using TLS1.2 with AES256",
        data="",
        message_id="<c@d>",
    )
    summary = TraceMessage(
        ref=REF,
        received_utc=T0,
        sender="u@contoso.com",
        recipient="x@fabrikam.com",
        subject="s",
        status="Delivered",
        message_id="<c@d>",
    )
    found = by_id(list(routing_cmt(Context(bundle(outbound(cmt=True), event, direct, summary)))))
    assert found["routing.cmt_bypass"].data["via_onprem"] == 1
    assert found["routing.cmt_bypass"].data["direct"][0]["recipient"] == "x@fabrikam.com"


# ---------------------------------------------------------------------------- message path


def test_message_followed_from_trace_to_tracking_and_session() -> None:
    text = led("451 5.7.3 STARTTLS is required to send mail")
    receive_event = TrackingEvent(
        ref=SourceRef("MSGTRK.LOG", 9),
        time_utc=at(40),
        event_id="RECEIVE",
        source="SMTP",
        message_id="<m1@x>",
        server_hostname="EX01",
        source_context="08DEEX010030;2026;1",
    )
    carried = eop_session("EX01", True, minute=30)
    ctx = Context(
        bundle(defer(text, 0, "<m1@x>"), defer(text, 5, "<m2@x>"), receive_event, carried)
    )
    finding = by_id(list(message_paths(ctx)))["trace.message_paths"]
    assert finding.data["messages"] == 2
    assert finding.data["arrived"] == 1
    first = finding.data["paths"][0]
    assert first["message_id"] == "m1@x"
    assert first["session"] == "08DEEX010030"
    assert first["from_ip"] == "40.107.22.57"
    assert not finding.can_be_root_cause


def test_onprem_queue_errors_are_joined_and_explained() -> None:
    error = (
        "451 4.4.397 Error communicating with target host. -> 421 4.2.1 Unable to connect -> "
        "SocketConnectionRefused: Socket error code 10061"
    )
    queue = QueueEntry(
        ref=SourceRef("queues.txt", 4),
        identity="EX01\\12",
        server="EX01",
        delivery_type="SmtpDeliveryToExo",
        status="Retry",
        message_count=37,
        next_hop_domain="contoso.mail.onmicrosoft.com",
        last_error=error,
        reason=parse_reason(error),
    )
    idle = QueueEntry(ref=REF, identity="EX01\\3", status="Ready", last_error="")
    finding = by_id(list(message_paths(Context(bundle(queue, idle)))))[
        "queue.onprem_delivery_errors"
    ]
    assert finding.data["messages_waiting"] == 37
    assert finding.data["queues"][0]["explained_as"].startswith("WSAECONNREFUSED")
    assert "4.4.397" in finding.explains
    assert finding.severity.value == "error"


def test_queue_errors_do_not_outrank_the_exchange_online_cause() -> None:
    error = "451 4.4.397 Error communicating with target host. -> 421 4.2.1 Unable to connect"
    queue = QueueEntry(
        ref=REF,
        identity="EX01\\12",
        server="EX01",
        status="Retry",
        message_count=3,
        last_error=error,
        reason=parse_reason(error),
    )
    starttls = defer(led("451 5.7.3 STARTTLS is required to send mail"))
    diagnosis = diagnose(bundle(queue, starttls, eop_session("EX01", False)))
    assert diagnosis.root_cause == "tls.starttls_missing"
    queue_finding = diagnosis.finding("queue.onprem_delivery_errors")
    assert queue_finding is not None
    assert queue_finding.ruled_out


def test_sessions_not_granted_cloud_capability() -> None:
    def judged(server: str, caps: str, status: str) -> SmtpSession:
        base = eop_session(server, True, seen("CN=mail.contoso.com", "AA" * 20))
        return SmtpSession(
            **{**base.__dict__, "tls_domain_capabilities": caps, "tls_domain_status": status}
        )

    good = judged("EX01", "mail.protection.outlook.com:AcceptCloudServicesMail", "Success")
    assert "connector.tls_domain_capabilities_missing" not in by_id(
        list(tls_evidence(Context(bundle(good))))
    )
    bad = judged("EX02", "None", "DomainMismatch")
    finding = by_id(list(tls_evidence(Context(bundle(good, bad)))))[
        "connector.tls_domain_capabilities_missing"
    ]
    assert finding.data["servers"] == ["EX02"]
    assert finding.data["statuses"] == ["DomainMismatch"]
    ctx = Context(bundle(good, bad))
    ctx.facts["capabilities_missing_servers"] = ["EX02"]
    assert "connector.tls_domain_capabilities_missing" not in by_id(list(tls_evidence(ctx)))
    assert notes(ctx.facts, SUPPORT_KEY)


def test_certificate_table_without_issuer_still_matches_by_subject() -> None:
    table_cert = CertificateInfo(
        ref=REF, thumbprint="AB" * 20, subject="CN=mail.contoso.com", services=("SMTP",)
    )
    assert certificate_matches_name(table_cert, GOOD_NAME)
    ctx = Context(bundle(receive(), table_cert))
    assert "connector.tls_certificate_name_mismatch" not in by_id(list(connector_config(ctx)))


def test_tls_domain_mismatch_ranks_under_the_evidence_it_explains() -> None:
    text = led(
        "SubjectMismatch Expected Subject: hybrid.contoso.com. Presented Subject: "
        "CN=mail.contoso.com. Thumbprint: 9F3A6C1D2B4E5F60718293A4B5C6D7E8."
    )
    diagnosis = diagnose(
        bundle(defer(text), receive(), cert(), outbound(tls_domain="hybrid.contoso.com"))
    )
    assert diagnosis.root_cause == "tls.certificate_name_mismatch"
    config = diagnosis.finding("connector.tls_domain_mismatch")
    assert config is not None
    assert config.ruled_out.startswith("Not a separate cause")


def test_onprem_queue_alone_is_the_root_cause() -> None:
    error = (
        "454 4.7.5 The certificate specified in TlsCertificateName of the SendConnector could "
        "not be found."
    )
    queue = QueueEntry(
        ref=REF,
        identity="EX01\\21",
        server="EX01",
        status="Retry",
        message_count=14,
        next_hop_domain="contoso.mail.onmicrosoft.com",
        last_error=error,
        reason=parse_reason(error),
    )
    diagnosis = diagnose(bundle(queue))
    assert diagnosis.root_cause == "queue.onprem_delivery_errors"
    root = diagnosis.finding("queue.onprem_delivery_errors")
    assert root is not None
    assert root.data["queues"][0]["explained_as"] == "Send connector certificate not found"
    assert any("Set-SendConnector" in step for step in root.remediation)
