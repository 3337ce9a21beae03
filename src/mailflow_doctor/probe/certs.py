"""Judge the chain a server presented: name, validity, chain, trust, usage, strength.

Each check is separate and each failure is its own problem, because each has its own fix: an
expired certificate is renewed, a missing intermediate is installed, a name mismatch is a
different certificate or a different TlsDomain on the connector. Path building and trust use
cryptography's `x509.verification` (offline; roots from certifi, the system store or a PEM
file), with the name, time and usage checks kept out of it so they do not mask each other.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from mailflow_doctor.probe.problems import ERROR, WARNING, ProbeProblem, place, safe_text

EXPIRY_WARNING_DAYS = 30
EXO_CERT_CODE = "4.4.317"
_WEAK_HASHES = {"md5", "sha1", "md2", "md4"}


class TrustRootsError(ValueError):
    """--ca-file could not be read as PEM certificates."""


@dataclass(frozen=True)
class TrustRoots:
    """The roots a chain must lead to, and where they came from (for the report)."""

    certificates: tuple[x509.Certificate, ...]
    source: str

    @classmethod
    def certifi(cls) -> TrustRoots:
        return _certifi_roots()

    @classmethod
    def system(cls) -> TrustRoots:
        context = ssl.create_default_context()
        ders = context.get_ca_certs(binary_form=True)
        roots: list[x509.Certificate] = []
        for der in ders:
            try:
                roots.append(x509.load_der_x509_certificate(der))
            except ValueError:
                continue
        return cls(tuple(roots), "the system store")

    @classmethod
    def from_file(cls, path: Path) -> TrustRoots:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TrustRootsError(f"{path}: cannot read: {exc.strerror or exc}") from None
        roots = _load_pem(data)
        if not roots:
            raise TrustRootsError(f"{path}: no PEM certificate found")
        return cls(roots, str(path))


@functools.cache
def _certifi_roots() -> TrustRoots:
    return TrustRoots(_load_pem(Path(certifi.where()).read_bytes()), "certifi (Mozilla)")


def _load_pem(data: bytes) -> tuple[x509.Certificate, ...]:
    """PEM certificates; a root with a legacy quirk (negative serial) must not make noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return tuple(x509.load_pem_x509_certificates(data))
        except ValueError:
            return ()


@dataclass(frozen=True)
class CertInfo:
    """One certificate as a report shows it."""

    subject: str
    issuer: str
    common_name: str
    sans: tuple[str, ...]  # DNS names and IP addresses, in order
    has_san: bool
    not_before: dt.datetime
    not_after: dt.datetime
    sha256: str
    sha1: str  # the "thumbprint" Exchange shows
    self_signed: bool
    is_ca: bool
    key: str  # "RSA 2048", "EC secp256r1", ...
    signature_hash: str

    def to_json(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "sans": list(self.sans),
            "not_before": _iso(self.not_before),
            "not_after": _iso(self.not_after),
            "sha256": self.sha256,
        }


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_chain(ders: Sequence[bytes]) -> tuple[list[x509.Certificate], list[str]]:
    """Parse each DER certificate; unparsable ones are reported, not fatal."""
    certs: list[x509.Certificate] = []
    errors: list[str] = []
    for index, der in enumerate(ders):
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            errors.append(f"certificate {index + 1} cannot be parsed: {exc}")
    return certs, errors


def describe(cert: x509.Certificate) -> CertInfo:
    sans: list[str] = []
    has_san = False
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        pass
    else:
        has_san = True
        sans.extend(extension.value.get_values_for_type(x509.DNSName))
        sans.extend(str(a) for a in extension.value.get_values_for_type(x509.IPAddress))
    return CertInfo(
        subject=safe_text(cert.subject.rfc4514_string(), 300),
        issuer=safe_text(cert.issuer.rfc4514_string(), 300),
        common_name=safe_text(_common_name(cert), 300),
        sans=tuple(safe_text(s, 300) for s in sans[:100]),
        has_san=has_san,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=cert.fingerprint(hashes.SHA256()).hex().upper(),
        sha1=hashlib.sha1(cert.public_bytes(Encoding.DER)).hexdigest().upper(),  # noqa: S324
        self_signed=_self_signed(cert),
        is_ca=_is_ca(cert),
        key=_key_text(cert),
        signature_hash=_hash_name(cert),
    )


def _common_name(cert: x509.Certificate) -> str:
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not values:
        return ""
    value = values[0].value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, Exception):
        return False
    return True


def _key_text(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name} ({key.key_size})"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def _hash_name(cert: x509.Certificate) -> str:
    algorithm = cert.signature_hash_algorithm
    return algorithm.name if algorithm is not None else "none"


def presented_names(info: CertInfo) -> str:
    """How the certificate names itself, as Exchange's "Presented Subject" would read."""
    subject = f"CN={info.common_name}" if info.common_name else info.subject or "(empty subject)"
    if info.sans:
        return f"{subject}; SAN: {', '.join(info.sans[:20])}"
    return f"{subject}; no subjectAltName"


def name_matches(info: CertInfo, name: str) -> bool:
    """RFC 6125 matching: SANs (wildcard in the left-most label only); CN only when no SAN."""
    wanted = name.strip().rstrip(".").lower()
    try:
        wanted_ip = ipaddress.ip_address(wanted.strip("[]"))
    except ValueError:
        wanted_ip = None
    candidates = info.sans if info.has_san else ((info.common_name,) if info.common_name else ())
    for candidate in candidates:
        value = candidate.strip().rstrip(".").lower()
        if wanted_ip is not None:
            try:
                if ipaddress.ip_address(value) == wanted_ip:
                    return True
            except ValueError:
                continue
            continue
        if value == wanted:
            return True
        if value.startswith("*.") and "." in wanted:
            head, _, rest = wanted.partition(".")
            if head and rest == value[2:] and rest.count(".") >= 1:
                return True
    return False


def _extended_usages(cert: x509.Certificate) -> list[x509.ObjectIdentifier] | None:
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _usage_problems(cert: x509.Certificate) -> list[str]:
    reasons: list[str] = []
    usages = _extended_usages(cert)
    if usages is not None and not (
        ExtendedKeyUsageOID.SERVER_AUTH in usages
        or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages
    ):
        names = ", ".join(getattr(u, "_name", u.dotted_string) for u in usages) or "none"
        reasons.append(f"its extended key usage ({names}) does not include serverAuth")
    key_usage = _key_usage(cert)
    if key_usage is not None and not (key_usage.digital_signature or key_usage.key_encipherment):
        reasons.append("its key usage allows neither digitalSignature nor keyEncipherment")
    if _is_ca(cert):
        reasons.append("it is marked as a CA certificate (basicConstraints CA:TRUE)")
    return reasons


def _weak_reasons(certs: Sequence[x509.Certificate]) -> list[str]:
    reasons: list[str] = []
    for index, cert in enumerate(certs):
        if _self_signed(cert) and index > 0:
            continue  # a root's own signature is not checked by anyone
        label = "the server certificate" if index == 0 else f"certificate {index + 1}"
        hash_name = _hash_name(cert)
        if hash_name in _WEAK_HASHES:
            reasons.append(f"{label} is signed with {hash_name.upper()}")
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey | dsa.DSAPublicKey) and key.key_size < 2048:
            reasons.append(f"{label} has a {key.key_size}-bit key (2048 is the minimum)")
        if isinstance(key, ec.EllipticCurvePublicKey) and key.key_size < 256:
            reasons.append(f"{label} has a {key.key_size}-bit EC key")
    return reasons


@dataclass(frozen=True)
class ChainVerdict:
    """The checks on one presented chain."""

    chain: tuple[CertInfo, ...]
    problems: tuple[ProbeProblem, ...]
    trusted: bool


def _trust_failure(
    certs: Sequence[x509.Certificate], roots: TrustRoots, when: dt.datetime
) -> str | None:
    """None when a path to a root exists (name, time and usage checked elsewhere)."""
    if not roots.certificates:
        return "no trust roots are loaded"
    builder = (
        PolicyBuilder()
        .store(Store(list(roots.certificates)))
        .time(when)
        .max_chain_depth(16)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=ExtensionPolicy.permit_all(),
        )
    )
    try:
        builder.build_client_verifier().verify(certs[0], list(certs[1:]))
    except VerificationError as exc:
        return str(exc)
    return None


def check_chain(
    ders: Sequence[bytes],
    *,
    host: str,
    address: str,
    probed_name: str | None,
    expect_name: str | None,
    roots: TrustRoots,
    now: dt.datetime | None = None,
) -> ChainVerdict:
    """Every check on the chain; each failure becomes its own problem."""
    now = now or dt.datetime.now(dt.UTC)
    certs, parse_errors = load_chain(ders)
    where = {"host": host, "address": address}
    at = place(host, address)
    problems: list[ProbeProblem] = []
    if not certs:
        detail = "; ".join(parse_errors) or "the server presented no certificate"
        problems.append(
            ProbeProblem(
                "tls.chain_untrusted",
                ERROR,
                f"{at} presented no usable certificate",
                f"{detail}. Exchange Online cannot validate the connection.",
                {**where, "detail": detail},
                ("Bind a valid certificate to the SMTP service.",),
                exo_code=EXO_CERT_CODE,
            )
        )
        return ChainVerdict((), tuple(problems), False)
    infos = tuple(describe(c) for c in certs)
    leaf, info = certs[0], infos[0]
    presented = presented_names(info)
    thumb = {"thumbprint": info.sha1}

    # Names: the connector's TlsDomain first (what Exchange Online checks), then the host.
    names: list[tuple[str, str]] = []
    if expect_name:
        names.append((expect_name, "expected TLS name (the connector's TlsDomain)"))
    if probed_name and (not expect_name or probed_name.lower() != expect_name.lower()):
        names.append((probed_name, "host name probed"))
    expect_ok = bool(expect_name) and name_matches(info, expect_name or "")
    for name, role in names:
        if name_matches(info, name):
            continue
        against_host = role.startswith("host")
        severity = WARNING if (against_host and expect_ok) else ERROR
        problems.append(
            ProbeProblem(
                "tls.certificate_name_mismatch",
                severity,
                f"Certificate on {at} does not match {name}",
                f"The {role} is {name}, but the certificate presents {presented}. "
                + (
                    "Exchange Online checks the connector's TlsDomain against the certificate "
                    "and defers with 4.4.317 SubjectMismatch."
                    if not against_host
                    else "A sender checking the host name would reject this certificate."
                ),
                {
                    **where,
                    "expected": name,
                    "presented": presented,
                    "checked_against": "tls_domain" if not against_host else "host",
                    **thumb,
                },
                (
                    f"Bind a certificate whose subjectAltName includes {name} to the receive "
                    "connector (TlsCertificateName) and re-run the Hybrid Configuration Wizard, "
                    "or correct TlsDomain on the outbound connector.",
                ),
                exo_code=EXO_CERT_CODE if not against_host else "",
            )
        )
    if not info.has_san and info.common_name:
        problems.append(
            ProbeProblem(
                "tls.certificate_cn_only",
                WARNING,
                f"Certificate on {at} names itself only in its CN",
                f"The certificate has no subjectAltName; its only name is CN={info.common_name}. "
                "Public CAs have not issued such certificates for years and strict validators "
                "reject them; replace it before relying on it.",
                {**where, "presented": presented, **thumb},
                ("Issue a certificate with the host names in subjectAltName.",),
                confidence=0.8,
            )
        )

    # Validity of the server certificate.
    if now > info.not_after:
        days = (now - info.not_after).days
        problems.append(
            ProbeProblem(
                "tls.certificate_expired",
                ERROR,
                f"Certificate on {at} expired {days} days ago",
                f"The certificate ({presented}) was valid until {_iso(info.not_after)}. "
                "Exchange Online defers with 4.4.317 CertificateExpired.",
                {**where, "not_after": _iso(info.not_after), "days_expired": days, **thumb},
                (
                    "Renew the certificate, enable it for SMTP on every hybrid server, and re-run "
                    "the Hybrid Configuration Wizard so TlsCertificateName names the new one.",
                ),
                exo_code=EXO_CERT_CODE,
            )
        )
    elif now < info.not_before:
        problems.append(
            ProbeProblem(
                "tls.certificate_not_yet_valid",
                ERROR,
                f"Certificate on {at} is not valid until {_iso(info.not_before)}",
                f"The certificate ({presented}) starts being valid at {_iso(info.not_before)}; "
                "until then it is rejected. Check the server's clock and the certificate.",
                {**where, "not_before": _iso(info.not_before), **thumb},
                ("Use a certificate that is already valid, or correct the issuing date/clock.",),
                exo_code=EXO_CERT_CODE,
            )
        )
    else:
        days_left = (info.not_after - now).days
        if days_left < EXPIRY_WARNING_DAYS:
            problems.append(
                ProbeProblem(
                    "tls.certificate_expiring_soon",
                    WARNING,
                    f"Certificate on {at} expires in {days_left} days",
                    f"The certificate ({presented}) expires {_iso(info.not_after)}. Renew it and "
                    "re-run the Hybrid Configuration Wizard afterwards.",
                    {**where, "not_after": _iso(info.not_after), "days_left": days_left, **thumb},
                    ("Renew the certificate now and plan the HCW run for the switch-over.",),
                    confidence=1.0,
                )
            )

    # Usage and strength.
    usage = _usage_problems(leaf)
    if usage:
        problems.append(
            ProbeProblem(
                "tls.certificate_usage_invalid",
                ERROR,
                f"Certificate on {at} is not usable for a TLS server",
                f"The certificate ({presented}) cannot serve TLS: {'; '.join(usage)}.",
                {**where, "detail": "; ".join(usage), **thumb},
                ("Issue the certificate from a web-server/TLS-server template (EKU serverAuth).",),
                exo_code=EXO_CERT_CODE,
            )
        )
    weak = _weak_reasons(certs)
    if weak:
        problems.append(
            ProbeProblem(
                "tls.certificate_weak",
                WARNING,
                f"Weak certificate on {at}",
                f"{'; '.join(weak)}.",
                {**where, "detail": "; ".join(weak), **thumb},
                ("Replace it with an RSA 2048+ or EC P-256+ certificate signed with SHA-256.",),
            )
        )

    # Chain and trust.
    trusted = True
    if info.self_signed:
        trusted = any(_same_cert(leaf, root) for root in roots.certificates)
        if not trusted:
            problems.append(
                ProbeProblem(
                    "tls.certificate_self_signed",
                    ERROR,
                    f"{at} presents a self-signed certificate",
                    f"The certificate ({presented}) is signed by itself, so Exchange Online cannot "
                    "trust it (4.4.317 UntrustedRoot). Often the server's own default certificate "
                    "is served because TlsCertificateName names a certificate that is gone.",
                    {**where, "presented": presented, **thumb},
                    (
                        "Bind the public CA certificate to the receive connector "
                        "(TlsCertificateName) and re-run the Hybrid Configuration Wizard.",
                    ),
                    exo_code=EXO_CERT_CODE,
                )
            )
    else:
        when = now if info.not_before <= now <= info.not_after else info.not_before
        failure = _trust_failure(certs, roots, when)
        if failure is not None:
            trusted = False
            problems.append(_chain_problem(certs, infos, roots, failure, host, address, thumb))
    return ChainVerdict(infos, tuple(problems), trusted)


def _same_cert(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a.fingerprint(hashes.SHA256()) == b.fingerprint(hashes.SHA256())


def _chain_problem(
    certs: Sequence[x509.Certificate],
    infos: Sequence[CertInfo],
    roots: TrustRoots,
    failure: str,
    host: str,
    address: str,
    thumb: dict[str, str],
) -> ProbeProblem:
    """Tell a missing intermediate from an untrusted root, as far as the chain allows."""
    where = {"host": host, "address": address}
    at = place(host, address)
    last = certs[-1]
    last_info = infos[-1]
    root_names = {r.subject for r in roots.certificates}
    issuer_is_root = last.issuer in root_names
    leaf = certs[0]
    if leaf.issuer not in root_names and all(c.subject != leaf.issuer for c in certs[1:]):
        detail = f"the issuer of the server certificate, {infos[0].issuer}, was not sent"
        if len(certs) > 1:
            detail += f"; the {len(certs) - 1} other certificate(s) sent belong to another chain"
        detail += " and it is not a trusted root"
        return ProbeProblem(
            "tls.chain_incomplete",
            ERROR,
            f"{at} does not send the intermediate certificate(s)",
            f"{detail[0].upper()}{detail[1:]}. Exchange Online does not fetch missing "
            "intermediates and defers with 4.4.317 UntrustedRoot.",
            {**where, "detail": detail, "missing_issuer": infos[0].issuer, **thumb},
            (
                "Install the CA's intermediate certificate(s) on every server (Local Computer "
                "> Intermediate Certification Authorities) so the full chain is sent.",
            ),
            exo_code=EXO_CERT_CODE,
        )
    if last_info.self_signed:
        detail = (
            f"the chain ends at {last_info.subject}, a root that is not trusted "
            f"(roots: {roots.source})"
        )
        return ProbeProblem(
            "tls.chain_untrusted",
            ERROR,
            f"Certificate chain on {at} ends at an untrusted root",
            f"The server sent {len(certs)} certificates; {detail}. Exchange Online defers "
            "with 4.4.317 UntrustedRoot.",
            {**where, "detail": detail, "verifier": failure, **thumb},
            ("Use a certificate from a public CA that Microsoft trusts.",),
            exo_code=EXO_CERT_CODE,
        )
    detail = (
        f"no path from {infos[0].subject} to a trusted root (roots: {roots.source}); the chain "
        f"ends at {last_info.subject}, issued by {last_info.issuer}"
    )
    if issuer_is_root:
        detail = f"the chain does not verify against the trusted root {last_info.issuer}: {failure}"
    return ProbeProblem(
        "tls.chain_untrusted",
        ERROR,
        f"Certificate chain on {at} is not trusted",
        f"{detail[0].upper()}{detail[1:]}. Exchange Online defers with 4.4.317 UntrustedRoot.",
        {**where, "detail": detail, "verifier": failure, **thumb},
        (
            "Use a certificate from a public CA that Microsoft trusts and send its full chain "
            "(server certificate and intermediates).",
        ),
        exo_code=EXO_CERT_CODE,
    )
