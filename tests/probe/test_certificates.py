"""Real STARTTLS servers (aiosmtpd on loopback) presenting good and broken certificates.

Each case must yield exactly its own finding and nothing else: a certificate failure is never
reported as a missing STARTTLS, an expired certificate is not also "untrusted", and so on.
"""

from __future__ import annotations

import ssl
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from probekit import DAY, NOW, Issued, TestCA, self_signed, server_context, smtp_server

from conftest import Pki
from mailflow_doctor.probe.runner import ProbeOptions, ProbeReport, probe

HOST = "mail.example.test"


def _probe_with(
    issued: Issued | None, tmp_path: Path, options: ProbeOptions, **changes: object
) -> ProbeReport:
    context = server_context(issued, tmp_path) if issued else None
    with smtp_server(context) as port:
        return probe(HOST, replace(options, port=port, **changes))  # type: ignore[arg-type]


def _ids(report: ProbeReport) -> list[str]:
    return sorted(p.id for p in report.problems)


def test_good_chain_has_no_finding(pki: Pki, tmp_path: Path, options: ProbeOptions) -> None:
    report = _probe_with(pki.intermediate.issue(HOST), tmp_path, options)
    assert _ids(report) == []
    (address,) = report.addresses
    assert address.connect == "connected"
    assert address.smtp is not None
    assert address.smtp.starttls == "offered"
    assert address.smtp.banner.startswith("220 ")
    assert address.smtp.tls is not None
    assert address.smtp.tls.version in ("TLSv1.2", "TLSv1.3")
    assert [c.subject for c in address.chain] == [
        f"CN={HOST}",
        "CN=Probe Test Intermediate CA",
    ]
    assert report.dns[0].hosts[0].addresses == ("127.0.0.1",)


def test_wildcard_matches_one_label(pki: Pki, tmp_path: Path, options: ProbeOptions) -> None:
    report = _probe_with(pki.intermediate.issue("*.example.test"), tmp_path, options)
    assert _ids(report) == []


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (
            lambda ca: ca.issue(HOST, not_before=NOW - 400 * DAY, not_after=NOW - 10 * DAY),
            "tls.certificate_expired",
        ),
        (
            lambda ca: ca.issue(HOST, not_before=NOW + 10 * DAY, not_after=NOW + 400 * DAY),
            "tls.certificate_not_yet_valid",
        ),
        (lambda ca: ca.issue("other.example.test"), "tls.certificate_name_mismatch"),
        (lambda ca: ca.issue(HOST, san=False), "tls.certificate_cn_only"),
        (lambda ca: ca.issue(HOST, send_chain=False), "tls.chain_incomplete"),
        (
            lambda ca: ca.issue(HOST, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)),
            "tls.certificate_usage_invalid",
        ),
        (lambda ca: ca.issue(HOST, not_after=NOW + 5 * DAY), "tls.certificate_expiring_soon"),
    ],
    ids=[
        "expired",
        "not-yet-valid",
        "wrong-name",
        "cn-only",
        "missing-intermediate",
        "client-auth-only",
        "expiring-soon",
    ],
)
def test_each_broken_certificate_gives_exactly_its_finding(
    pki: Pki, tmp_path: Path, options: ProbeOptions, build: object, expected: str
) -> None:
    issued = build(pki.intermediate)  # type: ignore[operator]
    report = _probe_with(issued, tmp_path, options)
    assert _ids(report) == [expected]
    (address,) = report.addresses
    # A certificate failure is judged after the handshake: STARTTLS itself worked.
    assert address.smtp is not None
    assert address.smtp.starttls == "offered"
    assert address.chain, "the presented chain is captured even when it is invalid"
    (problem,) = report.problems
    assert problem.data["host"] == HOST
    assert problem.data["address"] == "127.0.0.1"


def test_self_signed(tmp_path: Path, options: ProbeOptions) -> None:
    report = _probe_with(self_signed(HOST), tmp_path, options)
    assert _ids(report) == ["tls.certificate_self_signed"]


@pytest.mark.parametrize("send_root", [False, True], ids=["root-not-sent", "root-sent"])
def test_untrusted_root(tmp_path: Path, options: ProbeOptions, send_root: bool) -> None:
    foreign_root = TestCA("Foreign Root CA")
    issued = foreign_root.intermediate("Foreign Intermediate CA").issue(HOST)
    if send_root:
        issued.chain.append(foreign_root.cert)
    report = _probe_with(issued, tmp_path, options)
    assert _ids(report) == ["tls.chain_untrusted"]
    assert "Foreign" in report.problems[0].data["detail"]


def test_expected_name_is_the_connectors_tls_domain(
    pki: Pki, tmp_path: Path, options: ProbeOptions
) -> None:
    issued = pki.intermediate.issue(HOST)
    report = _probe_with(issued, tmp_path, options, expect_name="hybrid.contoso.test")
    assert _ids(report) == ["tls.certificate_name_mismatch"]
    (problem,) = report.problems
    assert problem.severity == "error"
    assert problem.data["expected"] == "hybrid.contoso.test"
    assert problem.data["checked_against"] == "tls_domain"
    assert HOST in problem.data["presented"]
    # The same certificate passes when the connector expects a name it carries.
    report = _probe_with(issued, tmp_path, options, expect_name=HOST.upper())
    assert _ids(report) == []


def test_no_starttls_at_all(tmp_path: Path, options: ProbeOptions) -> None:
    report = _probe_with(None, tmp_path, options)
    assert _ids(report) == ["tls.starttls_missing"]
    (address,) = report.addresses
    assert address.smtp is not None
    assert address.smtp.starttls == "not_offered"
    assert address.chain == ()


def test_starttls_offered_but_handshake_fails(
    pki: Pki, tmp_path: Path, options: ProbeOptions
) -> None:
    """The server offers STARTTLS, says 220, then cannot agree on any cipher with us."""
    context = server_context(pki.intermediate.issue(HOST), tmp_path)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("eNULL:@SECLEVEL=0")
    with smtp_server(context) as port:
        report = probe(HOST, replace(options, port=port))
    assert _ids(report) == ["tls.handshake_failed"]
    (address,) = report.addresses
    assert address.smtp is not None
    assert address.smtp.starttls == "failed"
    # asyncio's TLS closes without an alert here; OpenSSL servers send one. Either way it is
    # a handshake failure, never "STARTTLS not supported".
    assert report.problems[0].data["reason"] in ("protocol", "closed")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1 is deprecated:DeprecationWarning")
def test_tls_1_0_only_server_is_outdated(pki: Pki, tmp_path: Path, options: ProbeOptions) -> None:
    context = server_context(pki.intermediate.issue(HOST), tmp_path)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1
    with smtp_server(context) as port:
        report = probe(HOST, replace(options, port=port))
    assert _ids(report) == ["tls.protocol_outdated"]
    assert report.problems[0].data["version"] == "TLSv1"


def test_weak_key_and_signature(tmp_path: Path, options: ProbeOptions) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from probekit import _name

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (the point)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(HOST))
        .issuer_name(_name(HOST))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 300 * DAY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())  # cryptography no longer signs with SHA-1
    )
    issued = Issued(cert, key, [cert])  # type: ignore[arg-type]
    from mailflow_doctor.probe.certs import TrustRoots

    trusting = replace(options, roots=TrustRoots((cert,), "the weak certificate itself"))
    cert_path, key_path = issued.write(tmp_path, "weak")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(cert_path, key_path)
    with smtp_server(context) as port:
        report = probe(HOST, replace(trusting, port=port))
    assert _ids(report) == ["tls.certificate_weak"]
    detail = report.problems[0].data["detail"]
    assert "1024-bit" in detail


def test_wrong_intermediate_sent(pki: Pki, tmp_path: Path, options: ProbeOptions) -> None:
    """The server sends an intermediate of another CA: the right one is still missing."""
    issued = pki.intermediate.issue(HOST, send_chain=False)
    issued.chain.append(TestCA("Unrelated Root").intermediate("Unrelated Intermediate").cert)
    report = _probe_with(issued, tmp_path, options)
    assert _ids(report) == ["tls.chain_incomplete"]
    assert "another chain" in report.problems[0].data["detail"]
    assert report.problems[0].data["missing_issuer"] == "CN=Probe Test Intermediate CA"
