"""Connector, certificate and hybrid configuration exports: Format-List, Export-Csv, JSON."""

from __future__ import annotations

import codecs
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.readers.exchange_config import classify, parse_tls_certificate_name
from mailflow_doctor.evidence.records import CertificateInfo, ConnectorConfig, HybridConfigInfo
from mailflow_doctor.evidence.registry import best_reader

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "exchange_config"
LE_ISSUER = "CN=R3, O=Let's Encrypt, C=US"


def read(path: Path, ctx: ReadContext | None = None) -> tuple[str, list[object], ReadContext]:
    ctx = ctx or ReadContext()
    doc = Document.open(path)
    reader, score = best_reader(doc)
    assert reader is not None, path
    assert score >= 80
    return reader.kind, list(reader.read(doc, ctx)), ctx


def test_outbound_connector_format_list() -> None:
    kind, records, ctx = read(FIXTURES / "get-outboundconnector.txt")
    assert kind == "exo.outbound_connector"
    assert not ctx.issues.issues
    hybrid, partner = records
    assert isinstance(hybrid, ConnectorConfig)
    assert hybrid.kind == "outbound"
    assert hybrid.name == "Outbound to 2c3e6f0a-4b5d-4e8f-9a1b-2c3d4e5f6a7b"
    assert hybrid.smart_hosts == ("mail.contoso.com",)
    assert hybrid.tls_domain == "mail.contoso.com"
    assert hybrid.tls_settings == "DomainValidation"
    assert hybrid.route_all_via_onprem is False
    assert hybrid.connector_type == "OnPremises"
    assert hybrid.recipient_domains == ("contoso.com", "contoso.mail.onmicrosoft.com")
    assert hybrid.ref.line == 2
    assert isinstance(partner, ConnectorConfig)
    assert partner.enabled is False
    assert partner.smart_hosts == ()
    assert partner.use_mx_record is True


def test_receive_connectors_format_list() -> None:
    kind, records, _ = read(FIXTURES / "get-receiveconnector.txt")
    assert kind == "exchange.receive_connector"
    ex01, ex02, scanner = records
    assert isinstance(ex01, ConnectorConfig)
    assert isinstance(ex02, ConnectorConfig)
    assert isinstance(scanner, ConnectorConfig)
    assert (ex01.server, ex02.server, scanner.server) == ("EX01", "EX02", "EX01")
    assert ex01.tls_certificate_name == f"<I>{LE_ISSUER}<S>CN=mail.contoso.com"
    assert ex01.tls_domain_capabilities == ("mail.protection.outlook.com:AcceptCloudServicesMail",)
    assert ex01.bindings == ("[::]:25", "0.0.0.0:25")
    assert ex01.remote_ip_ranges[-1] == "0.0.0.0-255.255.255.255"
    assert ex01.transport_role == "FrontendTransport"
    assert ex02.tls_certificate_name == ""
    assert ex02.tls_domain_capabilities == ()
    assert scanner.remote_ip_ranges == ("192.0.2.40-192.0.2.47",)


def test_receive_connector_json_with_serialised_objects() -> None:
    kind, records, _ = read(FIXTURES / "get-receiveconnector.json")
    assert kind == "exchange.receive_connector"
    (connector,) = records
    assert isinstance(connector, ConnectorConfig)
    assert connector.server == "EX01"
    assert connector.bindings == ("[::]:25", "0.0.0.0:25")
    assert connector.fqdn == "EX01.contoso.local"
    assert connector.tls_certificate_name == f"<I>{LE_ISSUER}<S>CN=mail.contoso.com"
    assert connector.tls_domain_capabilities == (
        "mail.protection.outlook.com:AcceptCloudServicesMail",
    )
    assert connector.remote_ip_ranges == (
        "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "0.0.0.0-255.255.255.255",
    )


def test_send_connector_and_inbound_connector() -> None:
    kind, records, _ = read(FIXTURES / "get-sendconnector.txt")
    assert kind == "exchange.send_connector"
    (send,) = records
    assert isinstance(send, ConnectorConfig)
    assert send.address_spaces == ("smtp:contoso.mail.onmicrosoft.com;1",)
    assert send.source_transport_servers == ("EX01", "EX02")
    assert send.tls_domain == "mail.protection.outlook.com"
    assert send.tls_auth_level == "DomainValidation"
    kind, records, _ = read(FIXTURES / "get-inboundconnector.csv")
    assert kind == "exo.inbound_connector"
    (inbound,) = records
    assert isinstance(inbound, ConnectorConfig)
    assert inbound.tls_sender_certificate_name == "mail.contoso.com"
    assert inbound.sender_domains == ("smtp:*;1",)
    assert inbound.require_tls is True
    assert inbound.ref.line == 3  # after the #TYPE line and the header


def test_certificates_format_list() -> None:
    kind, records, _ = read(FIXTURES / "get-exchangecertificate.txt")
    assert kind == "exchange.certificate"
    current, selfsigned = records
    assert isinstance(current, CertificateInfo)
    assert isinstance(selfsigned, CertificateInfo)
    assert current.thumbprint == "6B1E2F3A4C5D6E7F8091A2B3C4D5E6F708192A3B"
    assert current.sans == ("mail.contoso.com", "autodiscover.contoso.com", "owa.contoso.com")
    assert current.services == ("IMAP", "POP", "IIS", "SMTP")
    assert current.not_after_utc == datetime(2027, 2, 11, 7, 59, 59, tzinfo=UTC)
    assert current.server == "EX01"
    assert "read as UTC" in current.time_assumed
    assert selfsigned.is_self_signed is True
    assert selfsigned.status == "DateInvalid"


def test_certificate_dates_in_the_given_zone() -> None:
    ctx = ReadContext(timezone=timezone(timedelta(hours=-5)))
    _, records, _ = read(FIXTURES / "get-exchangecertificate.txt", ctx)
    first = records[0]
    assert isinstance(first, CertificateInfo)
    assert first.not_after_utc == datetime(2027, 2, 11, 12, 59, 59, tzinfo=UTC)
    assert "UTC-05:00" in first.time_assumed


def test_certificates_json_and_german_csv() -> None:
    _, records, _ = read(FIXTURES / "get-exchangecertificate.json")
    (cert,) = records
    assert isinstance(cert, CertificateInfo)
    assert cert.services == ("IMAP", "POP", "IIS", "SMTP")  # 27 = 1 + 2 + 8 + 16
    assert cert.not_after_utc == datetime(2027, 2, 11, 7, 59, 59, tzinfo=UTC)
    assert cert.time_assumed == ""  # /Date(ms)/ is absolute
    assert cert.sans == ("mail.contoso.com", "autodiscover.contoso.com")
    assert cert.server.lower() == "ex01"
    _, records, ctx = read(FIXTURES / "get-exchangecertificate-de.csv")
    good, old = records
    assert isinstance(good, CertificateInfo)
    assert isinstance(old, CertificateInfo)
    assert good.not_after_utc == datetime(2027, 2, 11, 8, 59, 59, tzinfo=UTC)  # day first
    assert good.sans == ("mail.contoso.com", "autodiscover.contoso.com")
    assert old.sans == ()
    assert any("type name" in issue.message for issue in ctx.issues.issues)


def test_hybrid_configuration_with_wrapped_features() -> None:
    kind, records, _ = read(FIXTURES / "get-hybridconfiguration.txt")
    assert kind == "exchange.hybrid_configuration"
    (hybrid,) = records
    assert isinstance(hybrid, HybridConfigInfo)
    assert hybrid.receiving_transport_servers == ("EX01", "EX02")
    assert "SecureMail" in hybrid.features
    assert "Photos" in hybrid.features  # the wrapped continuation line
    assert "CentralizedTransport" not in hybrid.features
    assert hybrid.on_premises_smart_host == "mail.contoso.com"


def test_utf16_powershell_export(tmp_path: Path) -> None:
    text = (FIXTURES / "get-outboundconnector.txt").read_text(encoding="utf-8")
    path = tmp_path / "out.txt"
    path.write_bytes(codecs.BOM_UTF16_LE + text.replace("\n", "\r\n").encode("utf-16-le"))
    kind, records, _ = read(path)
    assert kind == "exo.outbound_connector"
    assert len(records) == 2


def test_mixed_file_reads_every_object(tmp_path: Path) -> None:
    path = tmp_path / "all.txt"
    path.write_text(
        (FIXTURES / "get-receiveconnector.txt").read_text()
        + (FIXTURES / "get-exchangecertificate.txt").read_text()
        + (FIXTURES / "get-hybridconfiguration.txt").read_text()
    )
    _, records, _ = read(path)
    kinds = [type(r).__name__ for r in records]
    assert kinds.count("ConnectorConfig") == 3
    assert kinds.count("CertificateInfo") == 2
    assert kinds.count("HybridConfigInfo") == 1


def test_other_files_are_not_claimed(tmp_path: Path) -> None:
    path = tmp_path / "queue.txt"
    path.write_text("Identity      : EX01\\3\nDeliveryType  : SmtpDeliveryToExo\nStatus : Retry\n")
    doc = Document.open(path)
    reader, _ = best_reader(doc)
    assert reader is None or not reader.kind.startswith(("exo.outbound", "exchange.receive"))


def test_classify_and_certificate_name() -> None:
    assert classify({"thumbprint", "notafter"}) == "certificate"
    assert classify({"bindings", "remoteipranges"}) == "receive"
    assert classify({"addressspaces", "sourcetransportservers"}) == "send"
    assert classify({"smarthosts", "tlssettings"}) == "outbound"
    assert classify({"senderdomains"}) == "inbound"
    assert classify({"receivingtransportservers"}) == "hybrid"
    assert classify({"identity", "status"}) is None
    assert parse_tls_certificate_name(f"<I>{LE_ISSUER}<S>CN=mail.contoso.com") == (
        LE_ISSUER,
        "CN=mail.contoso.com",
    )
    assert parse_tls_certificate_name("mail.contoso.com") == ("", "mail.contoso.com")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "SmartHosts",
                    "TlsDomain",
                    "Bindings",
                    "Thumbprint",
                    "NotAfter",
                    "Services",
                    "RemoteIPRanges",
                    "TlsCertificateName",
                    "Identity",
                    "RecipientDomains",
                    "Junk",
                ]
            ),
            st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
        ),
        max_size=30,
    )
)
def test_reader_never_raises(
    tmp_path_factory: pytest.TempPathFactory, pairs: list[tuple[str, str]]
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "x.txt"
    lines = ["SmartHosts : {a}", "TlsSettings : DomainValidation"]
    lines += [f"{k} : {v}".replace("\n", " ").replace("\r", " ") for k, v in pairs]
    path.write_text("\n".join(lines), encoding="utf-8")
    doc = Document.open(path)
    reader, _ = best_reader(doc)
    if reader is not None:
        for record in reader.read(doc, ReadContext()):
            assert record is not None


def test_broken_json_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[{"Thumbprint": "AB", "NotAfter": "x", "Services": 16},\n{"Thumbprint": ')
    _, records, ctx = read(path)
    assert len(records) == 1
    assert ctx.issues.issues


def test_default_certificate_table() -> None:
    kind, records, ctx = read(FIXTURES / "get-exchangecertificate-table.txt")
    assert kind == "exchange.certificate"
    assert not ctx.issues.issues
    current, unused, selfsigned, auth = records
    assert isinstance(current, CertificateInfo)
    assert current.services == ("IMAP", "POP", "IIS", "SMTP")
    assert current.subject == "CN=mail.contoso.com"
    assert isinstance(unused, CertificateInfo)
    assert unused.services == ()
    assert isinstance(selfsigned, CertificateInfo)
    assert selfsigned.services == ("IMAP", "POP", "SMTP")
    assert isinstance(auth, CertificateInfo)
    assert auth.subject == "CN=Microsoft Exchange Server Auth Certificate"
    assert current.not_after_utc is None


MY_KINDS = {
    "exo.outbound_connector",
    "exo.inbound_connector",
    "exchange.receive_connector",
    "exchange.send_connector",
    "exchange.certificate",
    "exchange.hybrid_configuration",
}


def test_samples_of_other_formats_are_not_claimed(samples: Path) -> None:
    """No public sample is a connector/certificate export; none may be read as one."""
    checked = 0
    for path in sorted(samples.rglob("*")):
        if not path.is_file() or path.suffix.lower() in (".md",):
            continue
        doc = Document.open(path)
        if doc.is_binary:
            continue
        reader, _ = best_reader(doc)
        assert reader is None or reader.kind not in MY_KINDS, path.name
        checked += 1
    assert checked > 30
