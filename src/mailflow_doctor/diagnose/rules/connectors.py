"""Hybrid connector and certificate configuration against each other.

The Hybrid Configuration Wizard ties four things together: the Exchange Online outbound
connector (SmartHosts, TlsDomain), the Default Frontend receive connector on every hybrid server
(TlsCertificateName, TlsDomainCapabilities), the installed certificate (names, dates, SMTP) and
the on-premises send connector to Exchange Online. A certificate renewal, a server added later
or a hand edit breaks one link; this check finds which. It runs before the TLS check and leaves
what it found in `ctx.facts` so that the TLS findings can say why the server behaves as seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

from mailflow_doctor.diagnose.checks import Context, check
from mailflow_doctor.diagnose.facts import support, utc_iso
from mailflow_doctor.diagnose.hybrid import (
    certificate_matches_name,
    certificate_names,
    covers,
    evidence_time,
    has_cloud_capability,
    hybrid_config,
    hybrid_outbound,
    landing_connectors,
    normalise_dn,
    parse_certificate_name,
    same_server,
)
from mailflow_doctor.diagnose.model import Finding, Severity
from mailflow_doctor.evidence.document import SourceRef
from mailflow_doctor.evidence.records import CertificateInfo, ConnectorConfig
from mailflow_doctor.knowledge.ipranges import AddressParseError, IPSet

TLS_CODES = ("4.4.317", "4.7.320", "5.4.317")
ONPREM_TO_EXO_CODES = ("4.7.5", "5.7.64", "5.7.51")
CAPABILITY = "mail.protection.outlook.com:AcceptCloudServicesMail"


def _cert_json(cert: CertificateInfo) -> dict[str, object]:
    return {
        "thumbprint": cert.thumbprint,
        "subject": cert.subject,
        "issuer": cert.issuer,
        "names": list(cert.sans),
        "not_after": utc_iso(cert.not_after_utc),
        "services": list(cert.services),
        "server": cert.server,
    }


def _certificates_on(server: str, certs: list[CertificateInfo]) -> list[CertificateInfo]:
    """Certificates exported from `server`; exports without a server count for every server."""
    return [c for c in certs if not c.server or not server or same_server(c.server, server)]


def _valid(cert: CertificateInfo, when: datetime) -> bool:
    if cert.not_after_utc is not None and cert.not_after_utc < when:
        return False
    return not (cert.not_before_utc is not None and cert.not_before_utc > when)


@check("connector.config", order=45)
def connector_config(ctx: Context) -> Iterator[Finding]:
    bundle = ctx.bundle
    connectors = bundle.of(ConnectorConfig)
    certs = bundle.of(CertificateInfo)
    hybrid = hybrid_config(bundle)
    outbound = hybrid_outbound(bundle)
    when = evidence_time(bundle, ctx.facts)
    if outbound is not None:
        if outbound.tls_domain:
            ctx.facts["expected_tls_name"] = outbound.tls_domain
        ctx.facts["connector_smart_hosts"] = list(outbound.smart_hosts)
        ctx.facts["cmt_enabled"] = bool(outbound.route_all_via_onprem)
    if not connectors and not certs:
        return
    landing = landing_connectors(bundle)
    hybrid_servers = [s.upper() for s in (hybrid.receiving_transport_servers if hybrid else ())]
    broken: list[str] = []
    unset: list[str] = []
    expired_named: list[str] = []
    configured_certs: list[CertificateInfo] = []

    per_connector: list[Finding] = []
    for server in sorted(set(landing) | set(hybrid_servers)):
        connector = landing.get(server)
        if connector is None:
            continue  # the server's connectors were not exported; nothing to judge
        on_server = _certificates_on(connector.server, certs)
        finding = _receive_connector(ctx, connector, on_server, hybrid, when)
        if finding is not None:
            per_connector.append(finding)
            reason = str(finding.data.get("problem", ""))
            label = f"{connector.server}\\{connector.name}"
            if reason == "unset":
                unset.append(connector.server)
            elif reason == "not_installed":
                broken.append(label)
            elif reason == "expired":
                expired_named.append(label)
        named = [
            c
            for c in on_server
            if connector.tls_certificate_name
            and certificate_matches_name(c, connector.tls_certificate_name)
        ]
        configured_certs.extend(c for c in named if _valid(c, when))
        if landing and not has_cloud_capability(connector):
            per_connector.append(_capability_finding(ctx, connector, hybrid_servers))
            ctx.facts.setdefault("capabilities_missing_servers", []).append(connector.server)
    yield from merge_same(per_connector)
    ctx.facts["landing_connectors"] = {
        c.server.upper(): f"{c.server}\\{c.name}" for c in landing.values()
    }
    current = _current_certificate(certs, str(ctx.facts.get("expected_tls_name") or ""), when)
    if current is not None:
        ctx.facts["current_certificate"] = {
            "name": f"<I>{current.issuer}<S>{current.subject}",
            "thumbprint": current.thumbprint,
            "not_after": utc_iso(current.not_after_utc),
        }
    ctx.facts["tls_certificate_name_broken"] = broken
    ctx.facts["tls_certificate_name_unset"] = unset
    ctx.facts["tls_certificate_expired_configured"] = expired_named
    for label in broken:
        support(
            ctx.facts,
            "tls.starttls_missing",
            f"The receive connector {label} names a certificate that is not installed.",
            weight=0.02,
            source_id="connector.tls_certificate_name_mismatch",
        )
    for server in unset:
        support(
            ctx.facts,
            "tls.certificate_name_mismatch",
            f"The receive connector on {server} has no TlsCertificateName.",
            weight=0.02,
            source_id="connector.tls_certificate_name_mismatch",
        )
    for label in expired_named:
        support(
            ctx.facts,
            "tls.certificate_expired",
            f"The receive connector {label} names only expired certificates.",
            weight=0.02,
            source_id="connector.tls_certificate_name_mismatch",
        )
    if outbound is not None:
        for finding in _tls_domain(outbound, configured_certs, certs, when):
            ctx.facts["tls_domain_not_on_certificate"] = outbound.tls_domain
            support(
                ctx.facts,
                "tls.certificate_name_mismatch",
                f"The outbound connector expects {outbound.tls_domain}, which is on none of "
                "the certificates the receive connectors use.",
                (outbound.ref,),
                0.02,
                source_id=finding.id,
            )
            yield finding
        yield from _smart_hosts(ctx, outbound)
    for send in (c for c in connectors if c.kind == "send" and c.enabled is not False):
        finding = _send_connector(send, certs, when)
        if finding is not None:
            yield finding


def merge_same(findings: list[Finding]) -> Iterator[Finding]:
    """One finding per conclusion: the same problem on several servers is listed together."""
    groups: dict[tuple[str, str], list[Finding]] = {}
    for finding in findings:
        key = (finding.id, str(finding.data.get("problem", "")))
        groups.setdefault(key, []).append(finding)
    for group in groups.values():
        first = group[0]
        if len(group) == 1:
            yield replace(first, data={**first.data, "connectors": [first.data.get("connector")]})
            continue
        labels = [str(f.data.get("connector")) for f in group]
        servers = [str(f.data.get("server")) for f in group]
        refs: dict[SourceRef, None] = {}
        for finding in group:
            refs.update(dict.fromkeys(finding.evidence))
        yield replace(
            first,
            title=first.title.replace(labels[0], ", ".join(labels))
            .replace("Receive connector ", "Receive connectors ")
            .replace(" names ", " name ")
            .replace(" has no ", " have no ")
            .replace(" does not grant ", " do not grant "),
            summary=first.summary + f" The same holds for {', '.join(labels[1:])}.",
            confidence=max(f.confidence for f in group),
            data={**first.data, "connectors": labels, "servers": servers},
            evidence=tuple(refs)[:8],
        )


def _receive_connector(
    ctx: Context,
    connector: ConnectorConfig,
    on_server: list[CertificateInfo],
    hybrid: object,
    when: datetime,
) -> Finding | None:
    label = f"{connector.server}\\{connector.name}"
    configured = connector.tls_certificate_name
    installed = [_cert_json(c) for c in on_server if "SMTP" in {s.upper() for s in c.services}]
    base: dict[str, object] = {
        "connector": label,
        "configured": configured,
        "installed": installed,
        "server": connector.server,
    }
    hcw_name = getattr(hybrid, "tls_certificate_name", "") or ""
    if not configured:
        return Finding(
            id="connector.tls_certificate_name_mismatch",
            severity=Severity.ERROR,
            title=f"Receive connector {label} has no TlsCertificateName",
            summary=(
                f"Exchange Online lands on {label}, which has no TlsCertificateName, so it "
                "presents the server's default certificate (often the self-signed one) and "
                "Exchange Online rejects it with SubjectMismatch"
                + (f"; the Hybrid Configuration Wizard set {hcw_name}" if hcw_name else "")
                + ". With several hybrid servers, mail fails only when Exchange Online lands "
                "on this one."
            ),
            confidence=0.8,
            data={**base, "problem": "unset", "hcw_configured": hcw_name},
            evidence=(connector.ref,),
            remediation=(
                f"Set-ReceiveConnector '{label}' -TlsCertificateName "
                f'"{hcw_name or "<I>issuer<S>subject of the hybrid certificate"}"',
                "Or re-run the Hybrid Configuration Wizard with every hybrid server selected.",
            ),
            explains=TLS_CODES,
        )
    if not on_server:
        return None  # no certificate export for this server: cannot judge
    named = [c for c in on_server if certificate_matches_name(c, configured)]
    issuer, subject = parse_certificate_name(configured)
    if not named:
        return Finding(
            id="connector.tls_certificate_name_mismatch",
            severity=Severity.CRITICAL,
            title=f"Receive connector {label} names a certificate that is not installed",
            summary=(
                f"TlsCertificateName on {label} is {configured}, but no certificate with that "
                f"issuer and subject is installed on {connector.server or 'the server'} "
                f"(installed: {', '.join(_describe(c) for c in on_server) or 'none'}). "
                "Exchange then stops offering STARTTLS to Exchange Online (event 12014), and "
                "Exchange Online defers with 451 5.7.3 STARTTLS is required. This is what a "
                "certificate renewal without re-running the Hybrid Configuration Wizard leaves."
            ),
            confidence=0.85,
            data={**base, "problem": "not_installed"},
            evidence=(connector.ref, *[c.ref for c in on_server[:3]]),
            remediation=_rename_remedy(label, on_server, when),
            explains=(*TLS_CODES, "4.4.101", "5.7.3"),
        )
    valid = [c for c in named if _valid(c, when)]
    if not valid:
        latest = max(named, key=lambda c: c.not_after_utc or when)
        return Finding(
            id="connector.tls_certificate_name_mismatch",
            severity=Severity.CRITICAL,
            title=f"Receive connector {label} names only expired certificates",
            summary=(
                f"TlsCertificateName on {label} ({configured}) matches certificates that have "
                f"all expired (latest until {utc_iso(latest.not_after_utc)}), so the server "
                "presents an expired certificate and Exchange Online rejects it "
                "(CertificateExpired)."
            ),
            confidence=0.85,
            data={**base, "problem": "expired", "not_after": utc_iso(latest.not_after_utc)},
            evidence=(connector.ref, latest.ref),
            remediation=_rename_remedy(label, on_server, when),
            explains=TLS_CODES,
        )
    if not any("SMTP" in {s.upper() for s in c.services} for c in valid) and all(
        c.services for c in valid
    ):
        return Finding(
            id="connector.certificate_not_enabled_for_smtp",
            severity=Severity.WARNING,
            title=f"The certificate that {label} names is not enabled for SMTP",
            summary=(
                f"{subject} (issuer {issuer or 'not given'}) is installed and valid but its "
                "services do not include SMTP. Exchange uses it for the receive connector "
                "anyway, but a later 'Enable-ExchangeCertificate' or renewal may change that."
            ),
            confidence=0.6,
            data={**base, "problem": "not_smtp"},
            evidence=(connector.ref, valid[0].ref),
            remediation=(
                f"Enable-ExchangeCertificate -Thumbprint {valid[0].thumbprint} -Services SMTP "
                "(answer No to replacing the default SMTP certificate).",
            ),
            can_be_root_cause=False,
        )
    if hcw_name and not _same_configured(hcw_name, configured):
        return Finding(
            id="connector.tls_certificate_name_mismatch",
            severity=Severity.WARNING,
            title=f"Receive connector {label} names another certificate than the wizard set",
            summary=(
                f"{label} uses {configured}, the Hybrid Configuration Wizard configured "
                f"{hcw_name}. Both work only if Exchange Online's TlsDomain is on both "
                "certificates; re-run the wizard so that they agree."
            ),
            confidence=0.5,
            data={**base, "problem": "differs_from_hcw", "hcw_configured": hcw_name},
            evidence=(connector.ref,),
            remediation=("Re-run the Hybrid Configuration Wizard.",),
            can_be_root_cause=False,
        )
    return None


def _current_certificate(
    certs: list[CertificateInfo], expected: str, when: datetime
) -> CertificateInfo | None:
    """The valid certificate that carries the expected name and lasts longest (the one to use)."""
    usable = [
        c
        for c in certs
        if _valid(c, when)
        and not (c.is_self_signed or c.subject == c.issuer)
        and (not expected or covers(expected, certificate_names(c.subject, c.sans)))
    ]
    usable.sort(key=lambda c: c.not_after_utc or when, reverse=True)
    return usable[0] if usable else None


def _describe(cert: CertificateInfo) -> str:
    until = utc_iso(cert.not_after_utc)
    return f"{cert.subject} from {cert.issuer}" + (f" until {until}" if until else "")


def _same_configured(a: str, b: str) -> bool:
    ai, asub = parse_certificate_name(a)
    bi, bsub = parse_certificate_name(b)
    return normalise_dn(ai) == normalise_dn(bi) and normalise_dn(asub) == normalise_dn(bsub)


def _rename_remedy(label: str, on_server: list[CertificateInfo], when: datetime) -> tuple[str, ...]:
    current = [
        c for c in on_server if _valid(c, when) and "SMTP" in {s.upper() for s in c.services}
    ]
    current.sort(key=lambda c: c.not_after_utc or when, reverse=True)
    steps = []
    if current:
        best = current[0]
        steps.append(
            f"Set-ReceiveConnector '{label}' -TlsCertificateName "
            f'"<I>{best.issuer}<S>{best.subject}"  # certificate {best.thumbprint}, valid until '
            f"{utc_iso(best.not_after_utc)}"
        )
    steps.append(
        "Better: re-run the Hybrid Configuration Wizard and pick the current certificate, so the "
        "receive and send connectors on every hybrid server are updated together."
    )
    return tuple(steps)


def _capability_finding(
    ctx: Context, connector: ConnectorConfig, hybrid_servers: list[str]
) -> Finding:
    label = f"{connector.server}\\{connector.name}"
    cmt = bool(ctx.facts.get("cmt_enabled"))
    return Finding(
        id="connector.tls_domain_capabilities_missing",
        severity=Severity.ERROR if cmt else Severity.WARNING,
        title=f"{label} does not grant Exchange Online its cloud mail capability",
        summary=(
            f"Exchange Online sessions land on {label}, whose TlsDomainCapabilities lack "
            f"{CAPABILITY}. Mail from Exchange Online is then treated as anonymous internet "
            "mail: it loses its internal status and, with Centralized Mail Transport, relaying "
            "to the internet is refused (550 5.7.54 / 5.7.1)."
            + (
                f" The Hybrid Configuration Wizard lists {connector.server} as a hybrid server."
                if connector.server.upper() in hybrid_servers
                else ""
            )
        ),
        confidence=0.75,
        data={
            "connector": label,
            "server": connector.server,
            "capabilities": list(connector.tls_domain_capabilities),
        },
        evidence=(connector.ref,),
        remediation=(
            f"Set-ReceiveConnector '{label}' -TlsDomainCapabilities {CAPABILITY}",
            "Or re-run the Hybrid Configuration Wizard with this server selected.",
        ),
        explains=("5.7.54", "5.7.1"),
    )


def _tls_domain(
    outbound: ConnectorConfig,
    configured: list[CertificateInfo],
    certs: list[CertificateInfo],
    when: datetime,
) -> Iterator[Finding]:
    if not outbound.tls_domain or outbound.tls_settings.lower() != "domainvalidation":
        return
    pool = configured or [c for c in certs if _valid(c, when) and "SMTP" in c.services]
    if not pool:
        return
    if any(covers(outbound.tls_domain, certificate_names(c.subject, c.sans)) for c in pool):
        return
    names = sorted({n for c in pool for n in certificate_names(c.subject, c.sans)})
    yield Finding(
        id="connector.tls_domain_mismatch",
        severity=Severity.CRITICAL,
        title=(
            f"Outbound connector TlsDomain {outbound.tls_domain} is on no certificate the "
            "on-premises servers present"
        ),
        summary=(
            f"The Exchange Online connector {outbound.name} validates the on-premises "
            f"certificate against {outbound.tls_domain} (TlsSettings DomainValidation), but the "
            f"certificate{'s' if len(pool) > 1 else ''} the receive connectors use carr"
            f"{'y' if len(pool) > 1 else 'ies'} {', '.join(names[:6])}. Every TLS session then "
            "fails with SubjectMismatch (450 4.4.317)."
        ),
        confidence=0.85 if configured else 0.6,
        data={
            "connector": outbound.name,
            "tls_domain": outbound.tls_domain,
            "certificate_names": names,
            "thumbprints": [c.thumbprint for c in pool],
        },
        evidence=(outbound.ref, *[c.ref for c in pool[:2]]),
        remediation=(
            f"Set-OutboundConnector '{outbound.name}' -TlsDomain <a name on the certificate, "
            f"e.g. {names[0] if names else 'mail.contoso.com'}>",
            "Or re-run the Hybrid Configuration Wizard so that the connector and the "
            "certificate agree.",
        ),
        explains=TLS_CODES,
    )


def _smart_hosts(ctx: Context, outbound: ConnectorConfig) -> Iterator[Finding]:
    tried = [t for t in ctx.facts.get("smtp_targets", []) or [] if t]
    if not tried or not outbound.smart_hosts:
        return
    hosts = {h.lower().rstrip(".") for h in outbound.smart_hosts}
    networks = IPSet.empty()
    for host in outbound.smart_hosts:
        try:
            networks = networks | IPSet.parse(host)
        except (AddressParseError, ValueError):
            continue
    stray = []
    for target in tried:
        low = target.lower().rstrip(".")
        if low in hosts:
            continue
        try:
            if IPSet.parse(target).issubset(networks) and networks:
                continue
        except (AddressParseError, ValueError):
            stray.append(target)
            continue
    names = [t for t in stray if not t.replace(".", "").isdigit()]
    if not names:
        return
    yield Finding(
        id="connector.smart_host_mismatch",
        severity=Severity.WARNING,
        title=f"Exchange Online tried {', '.join(names[:3])}, not the connector's smart host",
        summary=(
            f"The deferrals name {', '.join(names[:5])} as the server tried, but the outbound "
            f"connector {outbound.name} delivers to {', '.join(outbound.smart_hosts)}. Another "
            "connector (or MX routing) carries this mail; check which with "
            "Get-OutboundConnectorReport -Domain <recipient domain>."
        ),
        confidence=0.6,
        data={"tried": names, "smart_hosts": list(outbound.smart_hosts)},
        evidence=(outbound.ref,),
        remediation=(
            "Get-OutboundConnector | fl Name,Enabled,ConnectorType,RecipientDomains,SmartHosts,"
            "UseMXRecord,IsTransportRuleScoped",
        ),
        can_be_root_cause=False,
    )


def _send_connector(
    send: ConnectorConfig, certs: list[CertificateInfo], when: datetime
) -> Finding | None:
    to_cloud = any(
        "mail.onmicrosoft.com" in a.lower() or "protection.outlook.com" in a.lower()
        for a in (*send.address_spaces, *send.smart_hosts, send.tls_domain)
    )
    if not to_cloud or not send.tls_certificate_name or not certs:
        return None
    servers = send.source_transport_servers or ("",)
    missing = []
    for server in servers:
        on_server = _certificates_on(server, certs)
        if not on_server:
            continue
        if not any(
            certificate_matches_name(c, send.tls_certificate_name) and _valid(c, when)
            for c in on_server
        ):
            missing.append(server or "the server")
    if not missing:
        return None
    return Finding(
        id="connector.tls_certificate_name_mismatch",
        severity=Severity.ERROR,
        title=f"Send connector {send.name} names a certificate that is missing or expired",
        summary=(
            f"The send connector to Exchange Online ({send.name}) presents "
            f"{send.tls_certificate_name}, which is not installed and valid on "
            f"{', '.join(missing)}. Mail from on-premises to Exchange Online then waits in the "
            "queue with 454 4.7.5, or Exchange Online cannot attribute it (550 5.7.64)."
        ),
        confidence=0.8,
        data={
            "connector": send.name,
            "configured": send.tls_certificate_name,
            "installed": [_cert_json(c) for c in certs if "SMTP" in c.services][:6],
            "servers": missing,
            "problem": "send_not_installed",
        },
        evidence=(send.ref,),
        remediation=(
            f"Set-SendConnector '{send.name}' -TlsCertificateName \"<I>issuer<S>subject\" of "
            "the current certificate, or re-run the Hybrid Configuration Wizard.",
        ),
        explains=ONPREM_TO_EXO_CODES,
    )
