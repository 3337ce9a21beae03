"""`explain`: every text form from the research notes and the samples, one by one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mailflow_doctor.cli import app
from mailflow_doctor.knowledge.status_codes import load
from mailflow_doctor.report.explain_report import explain_all, explain_text, split_texts

# (exact text, lead code label, an entry that must be found, a finding id among the top 2 causes)
FORMS: list[tuple[str, str, str, str]] = [
    (
        "450 4.4.316 Connection refused [Message=Socket error code 10061]",
        "450 4.4.316",
        "10061",
        "firewall.eop_ranges_blocked",
    ),
    (
        "Reason: [{LED=450 4.4.316 Connection refused [Message=Socket error code 10061] "
        "[LastAttemptedServerName=mail.contoso.com] [LastAttemptedIP=203.0.113.25:25] "
        "[BN1NAM02FT012.eop-nam02.prod.protection.outlook.com 2026-11-28T21:00:00.000Z "
        "08DE0F2A1B2C3D4E]};{MSG=};{FQDN=mail.contoso.com};{IP=203.0.113.25};"
        "{LRT=11/28/2026 9:00:00 PM}]. OutboundProxyTargetIP: 203.0.113.25. "
        "OutboundProxyTargetHostName: mail.contoso.com",
        "450 4.4.316",
        "10061",
        "firewall.eop_ranges_blocked",
    ),
    (
        "550 5.4.316 Message expired, connection refused(Socket error code 10061)",
        "4.4.316",
        "5.4.31x",
        "firewall.eop_ranges_blocked",
    ),
    ("450 4.4.315 Connection timed out", "450 4.4.315", "4.4.315", "firewall.eop_ranges_blocked"),
    (
        "450 4.4.315 Connection timed out [Message=Socket error code 10060]",
        "450 4.4.315",
        "10060",
        "smtp.connection_timeout",
    ),
    ("450 4.4.312 DNS query failed", "450 4.4.312", "4.4.312", "dns.resolution_failed"),
    (
        "450 4.4.317 Cannot connect to remote server",
        "450 4.4.317",
        "4.4.317",
        "tls.starttls_missing",
    ),
    (
        "450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch Expected Subject: "
        "*.contoso.com. Presented Subject: CN=ExchangeServer01. Thumbprint: "
        "D0AC2FC63B9C5798828B45D849BE8D33.] [LastAttemptedServerName=mail.contoso.com] "
        "[LastAttemptedIP=203.0.113.25:25] [SmtpSecurity=-1;-1] [BN7NAM10FT066.eop-nam10.prod."
        "protection.outlook.com] OutboundProxyTargetIP: 203.0.113.25. "
        "OutboundProxyTargetHostName: mail.contoso.com",
        "450 4.4.317",
        "subject-mismatch",
        "tls.certificate_name_mismatch",
    ),
    (
        "450 4.4.317 Cannot connect to remote server [Message=CertificateExpired Expected "
        "Subject: email.domain.com. Presented Subject: CN=email.domain.com. Thumbprint: "
        "94E7A1B2C3D4E5F60718293A4B5C6D7E8F901234] [LastAttemptedServerName=email.domain.com] "
        "[LastAttemptedIP=198.51.100.7:25] [SmtpSecurity=-1;-1] "
        "[DM6NAM11FT035.eop-nam11.prod.protection.outlook.com 2025-03-01T10:00:00.000Z "
        "08DD58A1B2C3D4E5]",
        "450 4.4.317",
        "certificate-expired",
        "tls.certificate_expired",
    ),
    (
        "LED=450 4.4.317 Cannot connect to remote server [Message=451 5.7.3 STARTTLS is required "
        "to send mail]",
        "450 4.4.317",
        "starttls-required",
        "tls.starttls_missing",
    ),
    (
        "Reason: [{LED=450 4.4.317 Cannot establish session with remote server [Message=451 5.7.3 "
        "STARTTLS is required to send mail]",
        "450 4.4.317",
        "starttls-required",
        "tls.starttls_missing",
    ),
    (
        "450 4.4.317 Cannot connect to remote server [Message=UntrustedRoot]",
        "450 4.4.317",
        "untrusted-root",
        "tls.chain_untrusted",
    ),
    (
        "450 4.4.317 Cannot connect to remote server [Message=451 4.4.0 TLS negotiation failed "
        "with error ConnectionAborted] [LastAttemptedServerName=mail.contoso.com] "
        "[LastAttemptedIP=203.0.113.25:25] [SmtpSecurity=-2;-2] "
        "[CO1NAM11FT009.eop-nam11.prod.protection.outlook.com 2025-03-01T10:00:00.000Z "
        "08DD58A1B2C3D4E6]",
        "450 4.4.317",
        "tls-negotiation-failed",
        "tls.handshake_failed",
    ),
    (
        "LED=450 4.4.317 Cannot connect to remote server [Message=451 4.4.0 Security status "
        "IllegalMessage]",
        "450 4.4.317",
        "tls-negotiation-failed",
        "tls.handshake_failed",
    ),
    (
        "450 4.4.317 Cannot connect to remote server [Message=550-5.7.0 Connection refused - "
        "IB116. 40.107.107.122 Senderscore too low.",
        "450 4.4.317",
        "remote-banner-reject",
        "",
    ),
    (
        "550 5.4.317 Message expired, cannot connect to remote server(451 5.7.3 STARTTLS is "
        "required to send mail)",
        "4.4.317",
        "starttls-required",
        "tls.starttls_missing",
    ),
    (
        "450 4.4.318 Connection was closed abruptly",
        "450 4.4.318",
        "4.4.318",
        "smtp.connection_reset",
    ),
    (
        "450 4.4.318 Connection was closed abruptly (SuspiciousRemoteServerError)",
        "450 4.4.318",
        "suspicious-remote-server",
        "smtp.connection_reset",
    ),
    (
        "550 5.4.318 Message expired, connection reset (SuspiciousRemoteServerError)",
        "4.4.318",
        "suspicious-remote-server",
        "smtp.connection_reset",
    ),
    (
        "450 4.7.320 Certificate validation failed",
        "450 4.7.320",
        "4.7.320",
        "connector.tls_certificate_name_mismatch",
    ),
    (
        "Reason: [{LED=450 4.7.320 Certificate validation failed};{MSG=SubjectMismatch};"
        "{FQDN=hybrid.domain.com};{IP=198.51.100.9};{LRT=4/14/2017 1:07:17 PM}]. "
        "OutboundProxyTargetIP: 198.51.100.9. OutboundProxyTargetHostName: hybrid.domain.com",
        "450 4.7.320",
        "subject-mismatch",
        "tls.certificate_name_mismatch",
    ),
    (
        "Reason: [{LED=450 4.7.320 Certificate validation failed [Message=SubjectMismatch] "
        "[LastAttemptedServerName=mail.contoso.com] [LastAttemptedIP=172.16.254.1:25] "
        "[XXXEUR01FTXXX.eop-EUR01.prod.protection.outlook.com]};{MSG=SubjectMismatch};",
        "450 4.7.320",
        "subject-mismatch",
        "tls.certificate_name_mismatch",
    ),
    (
        "4.7.321 starttls-not-supported: Destination mail server must support TLS to receive mail.",
        "4.7.321",
        "4.7.321-4.7.325",
        "",
    ),
    (
        "4.7.322 certificate-expired: Destination mail server's certificate is expired.",
        "4.7.322",
        "4.7.321-4.7.325",
        "tls.certificate_expired",
    ),
    ("4.7.323 tlsa-invalid: The domain failed DANE validation.", "4.7.323", "4.7.321-4.7.325", ""),
    (
        "4.7.324 dnssec-invalid: Destination domain returned invalid DNSSEC records",
        "4.7.324",
        "4.7.321-4.7.325",
        "",
    ),
    (
        "4.7.325 certificate-host-mismatch: Remote certificate MUST have a common name or subject "
        "alternative name matching the hostname (DANE)",
        "4.7.325",
        "4.7.321-4.7.325",
        "",
    ),
    ("5.7.323 tlsa-invalid: The domain failed DANE validation.", "5.7.323", "4.7.321-4.7.325", ""),
    ("#550 4.4.7 QUEUE.Expired; message expired ##", "550 4.4.7", "4.4.7", ""),
    ("4.4.7 Message expired", "4.4.7", "4.4.7", ""),
    ("400 4.4.7 Message delayed", "400 4.4.7", "4.4.7", ""),
    ("5.4.300 Message expired", "5.4.300", "5.4.300", ""),
    (
        "550 5.4.300 Message expired -> 451 4.4.397 Error communicating with target host. -> "
        "421 4.4.2 Connection dropped due to ConnectionReset",
        "451 4.4.397",
        "10054",
        "smtp.connection_reset",
    ),
    (
        "451 4.4.397 Error communicating with target host. -> 421 4.2.1 Unable to connect -> "
        "SocketConnectionRefused: Socket error code 10061",
        "451 4.4.397",
        "10061",
        "firewall.eop_ranges_blocked",
    ),
    (
        "451 4.4.397 Error communicating with target host. -> 421 4.2.1 Unable to connect -> "
        "SocketTimedout: Socket error code 10060",
        "451 4.4.397",
        "10060",
        "firewall.eop_ranges_blocked",
    ),
    (
        "451 4.4.397 Error communicating with target host. -> 421 4.2.1 Unable to connect -> "
        "SocketError: Failed to connect. Winsock error code: 10051, Win32 error code: 10051",
        "451 4.4.397",
        "10051",
        "smtp.host_unreachable",
    ),
    (
        "451 4.4.397 Error communicating with target host -> 421 4.3.2 Service not active.",
        "451 4.4.397",
        "4.4.397",
        "",
    ),
    ("4.4.1 Connection timed out", "4.4.1", "4.4.1-4.4.2", "queue.onprem_delivery_errors"),
    ("4.4.2 Connection dropped", "4.4.2", "4.4.1-4.4.2", "queue.onprem_delivery_errors"),
    (
        "450 4.4.101 Proxy session setup failed on Frontend with '451 4.4.0 Primary target IP "
        'address responded with "451 5.7.3 STARTTLS is required to send mail." Attempted '
        "failover to alternate host, but that did not succeed. Either there are no alternate "
        "hosts, or delivery failed to all alternate hosts. The last endpoint attempted was "
        "203.0.113.25:25'.",
        "450 4.4.101",
        "starttls-required",
        "tls.starttls_missing",
    ),
    (
        '451 4.4.0 Primary target IP address responded with: "421 4.2.1 Unable to connect." '
        "Attempted failover to alternate host, but that did not succeed. Either there are no "
        "alternate hosts, or delivery failed to all alternate hosts.",
        "451 4.4.0",
        "4.2.1",
        "queue.onprem_delivery_errors",
    ),
    (
        "451 4.4.0 DNS query failed. The error was: SMTPSEND.DNS.NonExistentDomain; nonexistent "
        "domain",
        "451 4.4.0",
        "dns-error-retry",
        "dns.resolution_failed",
    ),
    (
        "451 4.7.0 Temporary server error. Please try again later. PRX4 NextHop: "
        "contoso-com.mail.protection.outlook.com",
        "451 4.7.0",
        "4.4.0",
        "",
    ),
    ("451 4.7.0 Timeout waiting for client input", "451 4.7.0", "4.4.0", ""),
    (
        "4.4.24 Message failed to be replicated: insufficient system resource:",
        "4.4.24",
        "4.4.24-4.4.28",
        "",
    ),
    ("451 4.4.62 Mail sent to the wrong Office 365 region. ATTR35.", "451 4.4.62", "4.4.62", ""),
    (
        "4.7.26 Access denied, a message sent over IPv6 [2a01:111:f200:2004::240] must pass "
        "either SPF or DKIM validation, this message is not signed",
        "4.7.26",
        "4.7.26-5.7.25",
        "",
    ),
    (
        "451 4.7.500 Server busy. Please try again later from [192.0.2.1]. (AS77712344)",
        "451 4.7.500",
        "4.7.500-4.7.899",
        "",
    ),
    ("451 4.7.700 PFA agent busy, please try again.", "451 4.7.700", "4.7.500-4.7.899", ""),
    ("550 5.4.1 Relay Access Denied", "550 5.4.1", "5.4.1", ""),
    ("554 5.4.6 Hop count exceeded - possible mail loop", "554 5.4.6", "5.4.6-5.4.14", ""),
    (
        "5.4.14 Hop count exceeded - possible mail loop ATTR34",
        "5.4.14",
        "5.4.6-5.4.14",
        "routing.cmt_bypass",
    ),
    (
        "550 5.7.1 Unable to relay",
        "550 5.7.1",
        "5.7.1",
        "connector.tls_domain_capabilities_missing",
    ),
    ("530 5.7.1 Client was not authenticated", "530 5.7.1", "5.7.1", ""),
    (
        "451 5.7.3 STARTTLS is required to send mail",
        "451 5.7.3",
        "starttls-required",
        "tls.starttls_missing",
    ),
    ("5.7.3 Cannot achieve Exchange Server authentication", "5.7.3", "exchange-auth-failure", ""),
    (
        "454 4.7.5 The certificate specified in TlsCertificateName of the SendConnector could not "
        "be found.",
        "454 4.7.5",
        "4.7.5",
        "connector.tls_certificate_name_mismatch",
    ),
    (
        "550 5.7.51 TenantInboundAttribution; There is a partner connector configured that "
        "matched the message's recipient domain. The connector had either the "
        "RestrictDomainsToIPAddresses or RestrictDomainsToCertificate set",
        "550 5.7.51",
        "5.7.51",
        "connector.tls_certificate_name_mismatch",
    ),
    (
        "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain",
        "550 5.7.54",
        "5.7.54",
        "connector.tls_domain_capabilities_missing",
    ),
    (
        "5.7.57 Client was not authenticated to send anonymous mail during MAIL FROM",
        "5.7.57",
        "5.7.57",
        "",
    ),
    (
        "550 5.7.64 TenantAttribution; Relay Access Denied",
        "550 5.7.64",
        "5.7.64",
        "connector.tls_certificate_name_mismatch",
    ),
    (
        "550 5.7.64 Relay Access Denied ATTR36. For more details please refer to KB 3169958.",
        "550 5.7.64",
        "5.7.64",
        "connector.tls_certificate_name_mismatch",
    ),
    (
        "550 5.7.68 TenantInboundAttribution; Direct Send not allowed for this organization from "
        "authorized sources",
        "550 5.7.68",
        "5.7.68",
        "",
    ),
    (
        "5.7.23 The message was rejected because of Sender Policy Framework violation",
        "5.7.23",
        "5.7.23",
        "",
    ),
    (
        "550 5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC "
        "policy.",
        "550 5.7.26",
        "5.7.26",
        "",
    ),
    (
        "5.7.509 Access denied, sending domain [example.com] does not pass DMARC verification and "
        "has a DMARC policy of reject.",
        "5.7.509",
        "5.7.5xx-5.7.6xx",
        "",
    ),
    ("5.7.606 Access denied, banned sending IP [192.0.2.1]", "5.7.606", "5.7.5xx-5.7.6xx", ""),
    (
        "5.7.750 Service unavailable. Client blocked from sending from unregistered domains",
        "5.7.750",
        "5.7.7xx",
        "",
    ),
    ("#550 5.1.1 RESOLVER.ADR.ExRecipNotFound; not found ##", "550 5.1.1", "5.1.x", ""),
    ("5.2.2 Submission quota exceeded", "5.2.2", "5.2.2", ""),
    (
        "5.3.190 Journaling on-premises messages to Microsoft 365 or Office 365 not supported when "
        "Journaling Archive is disabled",
        "5.3.190",
        "5.3.190",
        "",
    ),
    ("5.6.11 Invalid characters", "5.6.11", "5.6.11", ""),
    (
        "421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to "
        "support TLS 1.2. Visit https://aka.ms/smtp_auth_tls",
        "421 4.7.66",
        "4.7.66",
        "",
    ),
    (
        "451 4.4.4 Temporary server error. Please try again later ATTR5.",
        "451 4.4.4",
        "4.4.4-4.4.5",
        "",
    ),
    (
        "451 4.4.5 Address domain different from previous accepted address. All recipients must "
        "be on the same domain ATTR46.",
        "451 4.4.5",
        "4.4.4-4.4.5",
        "",
    ),
    (
        "UnknownExpectedTlsDomain",
        "UnknownExpectedTlsDomain",
        "unknown-expected-tls-domain",
        "connector.tls_domain_mismatch",
    ),
    ("10061", "10061", "10061", "firewall.eop_ranges_blocked"),
    ("10060", "10060", "10060", "firewall.eop_ranges_blocked"),
    ("Socket error code 10054", "10054", "10054", "smtp.connection_reset"),
    ("Winsock error code: 10053", "10053", "10053", "tls.handshake_failed"),
    ("10064", "10064", "10064", "smtp.connection_timeout"),
    ("10065", "10065", "10065", "smtp.host_unreachable"),
    ("10013", "10013", "10013", ""),
    ("11001", "11001", "11001", "dns.resolution_failed"),
    ("11002", "11002", "11002", "dns.resolution_failed"),
    ("11004", "11004", "11004", "dns.resolution_failed"),
    ("421", "421", "smtp-421", ""),
]


def _lead_label(text: str) -> str:
    explanation = explain_text(text)
    lead = explanation.primary
    assert lead is not None, text
    if lead.role == "message" and lead.entry is not None:
        return lead.entry.title
    return lead.label


@pytest.mark.parametrize(("text", "lead", "entry_id", "finding"), FORMS)
def test_every_research_form(text: str, lead: str, entry_id: str, finding: str) -> None:
    explanation = explain_text(text)
    assert explanation.recognised
    assert _lead_label(text) == lead
    assert entry_id in {f.entry.id for f in explanation.found if f.entry is not None}
    assert explanation.causes
    assert explanation.checks
    assert explanation.fixes
    if finding:
        top = {f for cause in explanation.causes[:2] for f in cause.findings}
        assert finding in top, [c.text for c in explanation.causes[:2]]


def test_facts_are_read_from_the_reason() -> None:
    explanation = explain_text(FORMS[7][0])
    facts = dict(explanation.facts)
    assert facts["server tried"] == "mail.contoso.com"
    assert facts["address tried"] == "203.0.113.25"
    assert facts["certificate thumbprint"] == "D0AC2FC63B9C5798828B45D849BE8D33"
    assert facts["expected certificate name"] == "*.contoso.com"
    commands = [check.command for check in explanation.checks if check.command]
    assert "mailflow-doctor probe mail.contoso.com --port 25" in commands


def test_refused_checks_name_the_firewall_and_log_commands() -> None:
    explanation = explain_text(FORMS[1][0])
    commands = [check.command for check in explanation.checks if check.command]
    assert "mailflow-doctor firewall check FIREWALL-CONFIG --to 203.0.113.25 --port 25" in commands
    assert "mailflow-doctor logs search SMTPRECEIVE-LOGS --from eop --count" in commands
    assert "mailflow-doctor probe mail.contoso.com --port 25" in commands


def test_unknown_code_falls_back_to_its_class() -> None:
    explanation = explain_text("451 4.9.42 Something new happened")
    assert explanation.recognised
    assert "temporary failure" in explanation.headline


def test_unrecognised_text() -> None:
    explanation = explain_text("hello, the mail is slow")
    assert not explanation.recognised
    assert explanation.found == ()


def test_several_pasted_lines_are_explained_one_by_one() -> None:
    text = "451 4.4.1 Connection timed out\n550 5.7.64 TenantAttribution; Relay Access Denied\n"
    assert len(split_texts(text)) == 2
    assert [e.primary.label for e in explain_all(text) if e.primary] == ["451 4.4.1", "550 5.7.64"]


# ------------------------------------------------------------------- research and samples


def _research(samples: Path) -> dict[str, object]:
    path = samples.parent / "research" / "error-codes.yaml"
    loaded: dict[str, object] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


def test_every_text_form_in_the_research_yaml(samples: Path) -> None:
    """Each exact text in error-codes.yaml is recognised, led by the code it starts with."""
    kb = load()
    research = _research(samples)
    checked = 0
    for block in research["codes"]:  # type: ignore[attr-defined]
        for item in block["texts"]:
            text = item["text"]
            explanation = explain_text(text)
            assert explanation.recognised, text
            codes = re.findall(r"(?<![\w.])[245]\.\d{1,3}\.\d{1,3}(?![\w.])", text)
            if codes:
                entry = kb.by_enhanced(codes[0])
                expected = {entry.id} if entry else set()
                deferral = kb.deferral_for(codes[0])
                if deferral:
                    expected.add(deferral.id)
                found = {f.entry.id for f in explanation.found if f.entry is not None}
                assert expected & found or not expected, (text, found)
            checked += 1
    for item in research["sub_messages"]:  # type: ignore[attr-defined]
        explanation = explain_text(item["pattern"])
        assert explanation.recognised, item["pattern"]
        checked += 1
    for item in research["socket_errors"]:  # type: ignore[attr-defined]
        explanation = explain_text(f"Socket error code {item['code']}")
        assert explanation.primary is not None
        assert explanation.primary.label == str(item["code"])
        checked += 1
    assert checked > 100


SAMPLE_LEADS = {
    "ndr_exo_4.4.312_dns_2019.txt": ("450 4.4.312", "dns.resolution_failed"),
    "ndr_exo_4.4.317_5.4.317_socketerror_serverfault_1091875.txt": ("450 4.4.317", ""),
    "ndr_exo_4.4.317_lastattemptedip_smtpsecurity_2026.txt": (
        "450 4.4.317",
        "smtp.connection_timeout",
    ),
    "ndr_exo_4.4.317_starttls_required_2020.txt": ("450 4.4.317", "tls.starttls_missing"),
    "ndr_onprem_451_4.4.0_primary_target_qa_2020.txt": ("451 4.4.0", ""),
    "exo_event_defer_detail_4.4.316_rmilne_2018_truncated.txt": (
        "450 4.4.316",
        "firewall.eop_ranges_blocked",
    ),
    "exo_event_defer_detail_4.4.316_truncated_qa1377740.txt": (
        "450 4.4.316",
        "firewall.eop_ranges_blocked",
    ),
    "exo_event_defer_detail_4.4.316_userquoted_qa218686.txt": (
        "450 4.4.316",
        "firewall.eop_ranges_blocked",
    ),
    "exo_event_defer_detail_4.4.317_subjectmismatch_ms_jp_blog.txt": (
        "450 4.4.317",
        "tls.certificate_name_mismatch",
    ),
    "exo_event_defer_detail_4.4.317_tls_answersms_2023.txt": (
        "450 4.4.317",
        "tls.handshake_failed",
    ),
    "exo_event_defer_detail_4.7.23_full_qa2149611.txt": ("451 4.7.23", ""),
    "queue_lasterror_onprem_to_exo_socketrefused_qa336454.txt": (
        "451 4.4.397",
        "firewall.eop_ranges_blocked",
    ),
    "queue_lasterror_onprem_to_exo_supertekboy_2017.txt": (
        "451 4.4.0",
        "queue.onprem_delivery_errors",
    ),
    "exo_connector_validation_4.4.101_kb2989382.txt": ("450 4.4.101", "tls.starttls_missing"),
    "exo_hcw_connector_validation_4.4.316_csharpcorner.txt": (
        "450 4.4.316",
        "firewall.eop_ranges_blocked",
    ),
    "getqueue_fl_2013_dag_retry_qa234456.txt": ("450 4.7.0", "queue.onprem_delivery_errors"),
}


@pytest.mark.parametrize("name", sorted(SAMPLE_LEADS))
def test_samples(samples: Path, name: str) -> None:
    text = (samples / "exchange" / name).read_text(encoding="utf-8")
    if name.startswith("getqueue_fl"):
        text = text.split("LastError : ", 1)[1].split("RetryCount", 1)[0]
    lead, finding = SAMPLE_LEADS[name]
    explanation = explain_all(text)[0]
    assert explanation.primary is not None
    assert explanation.primary.label == lead
    if finding:
        top = {f for cause in explanation.causes[:2] for f in cause.findings}
        assert finding in top


def test_queue_lasterror_lines_sample(samples: Path) -> None:
    text = (samples / "exchange" / "getqueue_lasterror_strings_ms_kb.txt").read_text()
    explanations = explain_all(text)
    assert len(explanations) == 2
    first, second = explanations
    assert "exchange-auth-failure" in {f.entry.id for f in first.found if f.entry}
    assert "4.4.1-4.4.2" in {f.entry.id for f in second.found if f.entry}


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_explain_never_raises(text: str) -> None:
    for explanation in explain_all(text):
        assert isinstance(explanation.headline, str)


# ------------------------------------------------------------------------------- the command


def test_cli_text_and_json(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["explain", FORMS[0][0]])
    assert result.exit_code == 0, result.output
    assert "Connection refused" in result.output
    assert "mailflow-doctor firewall check" in result.output
    result = runner.invoke(app, ["explain", "--format", "json", FORMS[7][0]])
    assert result.exit_code == 0
    document = json.loads(result.output)
    item = document["explanations"][0]
    assert item["codes"][0]["code"] == "450 4.4.317"
    assert item["likely_causes"][0]["findings"][0] == "tls.certificate_name_mismatch"
    assert all(source["title"] for source in item["sources"])
    out = tmp_path / "x.md"
    result = runner.invoke(app, ["explain", "-f", "markdown", "-o", str(out), "10060"])
    assert result.exit_code == 0
    assert out.read_text().startswith("## 10060")


def test_cli_stdin_and_file(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["explain", "-"], input=FORMS[1][0])
    assert result.exit_code == 0
    assert "4.4.316" in result.output
    pasted = tmp_path / "lasterror.txt"
    pasted.write_bytes("\ufeff".encode("utf-16-le") + FORMS[33][0].encode("utf-16-le"))
    result = runner.invoke(app, ["explain", "--file", str(pasted), "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["explanations"][0]["codes"][0]["code"] == "451 4.4.397"


def test_cli_unrecognised_and_empty() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["explain", "the mail is slow"])
    assert result.exit_code == 1
    assert "No status code" in result.output
    result = runner.invoke(app, ["explain", "   "])
    assert result.exit_code == 2
    result = runner.invoke(app, ["explain", "--file", "/nonexistent/file.txt"])
    assert result.exit_code == 2


def test_many_defer_rows_are_grouped() -> None:
    rows = "\n".join(
        f'"x","<m{i}@x>","11/28/2026 1:0{i}:00 PM","Defer","","{FORMS[1][0]}"' for i in range(4)
    )
    other = (
        '"x","<m9@x>","11/28/2026 1:09:00 PM","Defer","","Reason: [{LED=450 4.4.315 '
        'Connection timed out};{MSG=};{FQDN=};{IP=};{LRT=}]"'
    )
    explanations = explain_all(rows + "\n" + other)
    assert [e.occurrences for e in explanations] == [4, 1]
    assert explanations[1].primary is not None
    assert explanations[1].primary.label == "450 4.4.315"


def test_whole_get_queue_paste_with_wrapped_lines(samples: Path) -> None:
    """A whole `Get-Queue | fl` paste whose LastError the page wrapped mid-phrase."""
    text = (samples / "exchange" / "getqueue_fl_2013_dag_retry_qa234456.txt").read_text()
    explanation = explain_all(text)[0]
    assert explanation.primary is not None
    assert explanation.primary.label == "450 4.7.0"
    found = {f.entry.id for f in explanation.found if f.entry is not None}
    assert "exchange-auth-failure" in found
    assert "tls-negotiation-failed" not in found
