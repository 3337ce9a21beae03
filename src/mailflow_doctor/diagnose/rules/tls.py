"""TLS between Exchange Online and the on-premises endpoint, proven from the evidence alone.

Two witnesses are matched: what Exchange Online reported in the trace's deferral reasons
(`[Message=451 5.7.3 STARTTLS is required to send mail]`, `SubjectMismatch ... Thumbprint: X`,
`CertificateExpired`, `UntrustedRoot`) and what the on-premises SmtpReceive protocol logs show
for the sessions Exchange Online did open (an EHLO reply without STARTTLS, the certificate each
server presented). One witness makes a finding; both make it near certain, and the logs name
the server, which is what tells "one of two hybrid servers" from "every server".
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from mailflow_doctor.diagnose.bundle import ref_list
from mailflow_doctor.diagnose.checks import Context, check
from mailflow_doctor.diagnose.facts import support, utc_iso
from mailflow_doctor.diagnose.hybrid import (
    CLOUD_CAPABILITIES,
    STARTTLS_RE,
    Deferral,
    certificate_names,
    covers,
    deferrals,
    eop_sessions,
    evidence_time,
    first_of,
    reason_text,
    thumbprints_match,
)
from mailflow_doctor.diagnose.model import Finding, Severity
from mailflow_doctor.evidence.document import SourceRef
from mailflow_doctor.evidence.records import SmtpSession, TlsCertificateSeen

TLS_CODES = ("4.4.317", "4.7.320", "5.4.317", "4.4.101")
MAX_LISTED = 10


def _refs(
    items: list[Deferral], sessions: list[SmtpSession], limit: int = 5
) -> tuple[SourceRef, ...]:
    refs: list[SourceRef] = []
    for item in items[:3]:
        ref = item.event.ref
        when = utc_iso(item.event.time_utc) or ""
        refs.append(SourceRef(ref.path, ref.line, f"{when} {item.event.event}: {item.text}"[:300]))
    refs.extend(ref_list(sessions, limit - len(refs)))
    return tuple(refs[:limit])


def _codes(items: list[Deferral]) -> tuple[str, ...]:
    codes: dict[str, None] = dict.fromkeys(TLS_CODES)
    codes.update(dict.fromkeys(i.code for i in items if i.code))
    return tuple(codes)


def _targets(items: list[Deferral]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        for value in (item.target_host, item.target_ip):
            if value:
                seen[value] = None
    return list(seen)


def _servers(sessions: list[SmtpSession]) -> list[str]:
    return sorted({s.server or s.connector or "?" for s in sessions})


def _window(items: list[Deferral]) -> tuple[datetime | None, datetime | None]:
    times = [i.event.time_utc for i in items if i.event.time_utc is not None]
    return (min(times), max(times)) if times else (None, None)


@check("tls.evidence", order=50)
def tls_evidence(ctx: Context) -> Iterator[Finding]:
    all_deferrals = deferrals(ctx.bundle)
    sessions = eop_sessions(ctx.bundle)
    yield from _starttls(ctx, all_deferrals, sessions)
    yield from _name_mismatch(ctx, all_deferrals, sessions)
    yield from _expired(ctx, all_deferrals, sessions)
    yield from _untrusted(all_deferrals)
    yield from _capabilities(ctx, sessions)


def _set_commands(ctx: Context, servers: list[str]) -> list[str]:
    """Set-ReceiveConnector lines naming the current certificate, when the exports tell both."""
    current = ctx.facts.get("current_certificate")
    labels: dict[str, str] = ctx.facts.get("landing_connectors") or {}
    if not isinstance(current, dict) or not labels:
        return []
    wanted = [labels[s.upper()] for s in servers if s.upper() in labels] or list(labels.values())
    return [
        f"Set-ReceiveConnector '{label}' -TlsCertificateName \"{current['name']}\"  "
        f"# certificate {current['thumbprint']}, valid until {current['not_after']}"
        for label in wanted
    ]


# ------------------------------------------------------------------------- STARTTLS missing


def _starttls(
    ctx: Context, items: list[Deferral], sessions: list[SmtpSession]
) -> Iterator[Finding]:
    trace_hits = [d for d in items if STARTTLS_RE.search(reason_text(d.reason))]
    without = [s for s in sessions if s.starttls_offered is False]
    offered = [s for s in sessions if s.starttls_offered is True]
    if not trace_hits and not without:
        return
    servers_without = _servers(without)
    servers_with = sorted(set(_servers(offered)) - set(servers_without))
    targets = _targets(trace_hits)
    config_cause: list[str] = ctx.facts.get("tls_certificate_name_broken", [])
    if trace_hits and without:
        confidence = 0.95
    elif without:
        confidence = 0.8
    else:
        confidence = 0.7
    if config_cause:
        confidence = min(0.97, confidence + 0.05)
    first, last = _window(trace_hits)
    parts = []
    if trace_hits:
        parts.append(
            f"Exchange Online deferred {len(trace_hits)} delivery attempts"
            + (f" to {', '.join(targets[:3])}" if targets else "")
            + " with '451 5.7.3 STARTTLS is required to send mail': its connector requires TLS "
            "and the on-premises server did not offer STARTTLS."
        )
    if without:
        parts.append(
            f"The SmtpReceive logs show {len(without)} Exchange Online sessions whose EHLO reply "
            f"had no STARTTLS on {', '.join(servers_without)}"
            + (f" (while {', '.join(servers_with)} offered it)" if servers_with else "")
            + "."
        )
    if config_cause:
        parts.append(
            "The receive connector's TlsCertificateName names a certificate that is not "
            f"installed ({', '.join(config_cause)}), so Exchange stops offering STARTTLS."
        )
    else:
        parts.append(
            "The usual reason is a renewed certificate without re-running the Hybrid "
            "Configuration Wizard: TlsCertificateName still names the old one (event 12014)."
        )
    target = (targets[0] if targets else "") or (servers_without[0] if servers_without else "")
    yield Finding(
        id="tls.starttls_missing",
        severity=Severity.CRITICAL if trace_hits else Severity.ERROR,
        title=(
            f"{target or 'The on-premises endpoint'} does not offer STARTTLS to Exchange Online"
        ),
        summary=" ".join(parts),
        confidence=confidence,
        data={
            "target": target,
            "targets": targets,
            "servers": servers_without,
            "servers_offering_starttls": servers_with,
            "deferrals": len(trace_hits),
            "sessions_without_starttls": len(without),
            "first_utc": utc_iso(first),
            "last_utc": utc_iso(last),
        },
        evidence=_refs(trace_hits, without),
        remediation=(
            *_set_commands(ctx, servers_without),
            "Re-run the Hybrid Configuration Wizard and choose the current certificate (newer "
            "versions offer 'Update Secure Mail Certificate for Connectors').",
            "Or by hand on every hybrid server: $c = Get-ExchangeCertificate -Thumbprint "
            "<new thumbprint>; Set-ReceiveConnector '<server>\\Default Frontend <server>' "
            '-TlsCertificateName "<I>$($c.Issuer)<S>$($c.Subject)"',
            "Make sure the new certificate is enabled for SMTP: Enable-ExchangeCertificate "
            "-Thumbprint <new thumbprint> -Services SMTP (answer No to replacing the default "
            "certificate).",
            f"Then check: mailflow-doctor probe {target or '<endpoint>'} --port 25 should show "
            "STARTTLS offered.",
        ),
        explains=_codes(trace_hits),
    )


# -------------------------------------------------------------------------- name mismatch


def _presented_by_server(sessions: list[SmtpSession]) -> dict[str, TlsCertificateSeen]:
    result: dict[str, TlsCertificateSeen] = {}
    for session in sessions:
        if session.certificate is not None:
            result.setdefault(session.server or session.connector or "?", session.certificate)
    return result


def _name_mismatch(
    ctx: Context, items: list[Deferral], sessions: list[SmtpSession]
) -> Iterator[Finding]:
    hits = [
        d
        for d in items
        if (first_of(d.reason, "certificate_error") or "").lower() == "subjectmismatch"
        or "subjectmismatch" in reason_text(d.reason).lower()
    ]
    expected = ""
    presented = ""
    thumbprint = ""
    for item in hits:
        expected = expected or first_of(item.reason, "expected_subject")
        presented = presented or first_of(item.reason, "presented_subject")
        thumbprint = thumbprint or first_of(item.reason, "certificate_thumbprint")
    expected = expected or str(ctx.facts.get("expected_tls_name") or "")
    by_server = _presented_by_server(sessions)
    bad_servers: list[str] = []
    good_servers: list[str] = []
    bad_sessions: list[SmtpSession] = []
    if expected:
        for server, cert in by_server.items():
            names = certificate_names(cert.subject, cert.sans)
            if covers(expected, names):
                good_servers.append(server)
            else:
                bad_servers.append(server)
        bad_sessions = [
            s
            for s in sessions
            if s.certificate is not None and (s.server or s.connector or "?") in bad_servers
        ]
    if thumbprint:
        for server, cert in by_server.items():
            if cert.thumbprint and thumbprints_match(cert.thumbprint, thumbprint):
                if server not in bad_servers:
                    bad_servers.append(server)
                if server in good_servers:
                    good_servers.remove(server)
    if not hits and not bad_servers:
        return
    bad_servers.sort()
    good_servers.sort()
    shown = by_server.get(bad_servers[0]) if bad_servers else None
    if shown is not None and not presented:
        presented = shown.subject
    if shown is not None and not thumbprint:
        thumbprint = shown.thumbprint
    intermittent = bool(good_servers) or _some_delivered(ctx, hits)
    confidence = 0.95 if hits and bad_servers else (0.75 if hits else 0.7)
    if hits and ctx.facts.get("tls_domain_not_on_certificate"):
        confidence = max(confidence, 0.9)  # the configuration says why the names differ
    config_servers: list[str] = ctx.facts.get("tls_certificate_name_unset", [])
    if config_servers and set(s.upper() for s in config_servers) & {s.upper() for s in bad_servers}:
        confidence = min(0.97, confidence + 0.03)
    where = f" on {', '.join(bad_servers)}" if bad_servers else ""
    summary = (
        f"Exchange Online expects a certificate for {expected or 'the TlsDomain name'}, but the "
        f"certificate presented{where} is {presented or 'another one'}"
        + (f" (thumbprint {thumbprint})" if thumbprint else "")
        + "."
    )
    if hits:
        summary += f" {len(hits)} delivery attempts were deferred with SubjectMismatch."
    if intermittent:
        summary += (
            " Other servers present the right certificate"
            + (f" ({', '.join(good_servers)})" if good_servers else "")
            + ", so mail fails only when Exchange Online lands on the wrong one: the failures "
            "come and go."
        )
    if config_servers:
        summary += (
            " The receive connector on "
            + ", ".join(config_servers)
            + " has no TlsCertificateName, so it presents its default certificate."
        )
    yield Finding(
        id="tls.certificate_name_mismatch",
        severity=Severity.CRITICAL if hits else Severity.ERROR,
        title=(
            f"The certificate presented{where} does not match {expected or 'the expected name'}"
            + (" (intermittent)" if intermittent else "")
        ),
        summary=summary,
        confidence=confidence,
        data={
            "expected": expected,
            "presented": presented,
            "thumbprint": thumbprint,
            "servers": bad_servers,
            "servers_ok": good_servers,
            "intermittent": intermittent,
            "deferrals": len(hits),
        },
        evidence=_refs(hits, bad_sessions),
        remediation=(
            *_set_commands(ctx, bad_servers),
            "On every hybrid server set the receive connector to the certificate that carries "
            f"{expected or 'the TlsDomain name'}: Set-ReceiveConnector "
            "'<server>\\Default Frontend <server>' -TlsCertificateName \"<I>issuer<S>subject\" "
            "(or re-run the Hybrid Configuration Wizard with all hybrid servers selected).",
            "Or make the Exchange Online outbound connector's TlsDomain match a name on the "
            "certificate: Set-OutboundConnector '<Outbound to ...>' -TlsDomain <name on cert>.",
        ),
        explains=_codes(hits),
    )


def _some_delivered(ctx: Context, hits: list[Deferral]) -> bool:
    per_target = ctx.facts.get("per_target") or {}
    for item in hits:
        for key in (item.target_ip, item.target_host):
            tally = per_target.get(key) if key else None
            if isinstance(tally, dict) and tally.get("delivered"):
                return True
    return False


# ------------------------------------------------------------------------------- expired


def _expired(ctx: Context, items: list[Deferral], sessions: list[SmtpSession]) -> Iterator[Finding]:
    hits = [
        d
        for d in items
        if (first_of(d.reason, "certificate_error") or "").lower() == "certificateexpired"
        or "certificateexpired" in reason_text(d.reason).lower()
    ]
    stale: list[SmtpSession] = []
    for session in sessions:
        cert = session.certificate
        when = session.start_utc or evidence_time(ctx.bundle, ctx.facts)
        if cert is not None and cert.not_after_utc is not None and cert.not_after_utc < when:
            stale.append(session)
    config_expired: list[str] = ctx.facts.get("tls_certificate_expired_configured", [])
    if not hits and not stale:
        return
    not_after = ""
    subject = ""
    thumbprint = first_of(hits[0].reason, "certificate_thumbprint") if hits else ""
    if stale:
        cert = stale[0].certificate
        assert cert is not None
        not_after = utc_iso(cert.not_after_utc) or ""
        subject = cert.subject
        thumbprint = thumbprint or cert.thumbprint
    subject = subject or (first_of(hits[0].reason, "presented_subject") if hits else "")
    servers = _servers(stale)
    confidence = 0.95 if hits and stale else (0.75 if hits else 0.8)
    if config_expired:
        confidence = min(0.97, confidence + 0.05)
    summary = (
        f"The certificate presented to Exchange Online ({subject or 'unknown subject'}"
        + (f", thumbprint {thumbprint}" if thumbprint else "")
        + ") "
        + (f"expired on {not_after}" if not_after else "has expired")
        + (f"; seen on {', '.join(servers)}" if servers else "")
        + "."
    )
    if hits:
        summary += f" Exchange Online deferred {len(hits)} attempts with CertificateExpired."
    if config_expired:
        summary += " The receive connector still names it: " + ", ".join(config_expired) + "."
    elif hits and not stale:
        summary += (
            " If Exchange's own certificate is current, a firewall or SMTP proxy in front of it "
            "may be presenting its own, older certificate."
        )
    yield Finding(
        id="tls.certificate_expired",
        severity=Severity.CRITICAL if hits else Severity.ERROR,
        title=f"The certificate presented to Exchange Online has expired ({subject or 'unknown'})",
        summary=summary,
        confidence=confidence,
        data={
            "not_after": not_after,
            "subject": subject,
            "thumbprint": thumbprint,
            "servers": servers,
            "deferrals": len(hits),
        },
        evidence=_refs(hits, stale),
        remediation=(
            "Install the renewed certificate with its private key and chain, enable it for SMTP "
            "(Enable-ExchangeCertificate -Services SMTP), then re-run the Hybrid Configuration "
            "Wizard so the connectors name it.",
            "If Exchange's certificate is current, find the device in front of Exchange that "
            "terminates TLS (SMTP proxy, firewall inspection) and renew or bypass it.",
        ),
        explains=_codes(hits),
    )


def _untrusted(items: list[Deferral]) -> Iterator[Finding]:
    hits = [
        d
        for d in items
        if (first_of(d.reason, "certificate_error") or "").lower()
        in ("untrustedroot", "partialchain", "chainnottrusted")
        or "untrustedroot" in reason_text(d.reason).lower()
    ]
    if not hits:
        return
    detail = first_of(hits[0].reason, "certificate_error") or "UntrustedRoot"
    targets = _targets(hits)
    yield Finding(
        id="tls.chain_untrusted",
        severity=Severity.CRITICAL,
        title="Exchange Online does not trust the on-premises certificate chain",
        summary=(
            f"Exchange Online deferred {len(hits)} attempts"
            + (f" to {', '.join(targets[:3])}" if targets else "")
            + f" with {detail}: it could not build the chain to a trusted root. The usual "
            "reason is a server that sends its certificate without the intermediates."
        ),
        confidence=0.8,
        data={"detail": detail, "targets": targets, "deferrals": len(hits)},
        evidence=_refs(hits, []),
        remediation=(
            "Import the issuing CA's intermediate certificates on every hybrid server so the "
            "full chain is sent; use a certificate from a public CA.",
            f"Check with: mailflow-doctor probe {targets[0] if targets else '<endpoint>'} "
            "--port 25 (the chain as presented is listed).",
        ),
        explains=_codes(hits),
    )


def _capabilities(ctx: Context, sessions: list[SmtpSession]) -> Iterator[Finding]:
    """EOP sessions that Exchange did not recognise as Exchange Online (TlsDomainCapabilities)."""
    judged = [s for s in sessions if s.tls_domain_status or s.tls_domain_capabilities]
    bad = [
        s
        for s in judged
        if not any(c in s.tls_domain_capabilities.lower() for c in CLOUD_CAPABILITIES)
    ]
    if not bad:
        return
    servers = _servers(bad)
    statuses = sorted({s.tls_domain_status or "?" for s in bad})
    text = (
        f"{len(bad)} of {len(judged)} Exchange Online sessions on {', '.join(servers)} were not "
        f"granted AcceptCloudServicesMail (TlsDomainCapabilities status {', '.join(statuses)})."
    )
    if ctx.facts.get("capabilities_missing_servers"):
        support(
            ctx.facts,
            "connector.tls_domain_capabilities_missing",
            text,
            ref_list(bad, 2),
            0.05,
        )
        return
    cmt = bool(ctx.facts.get("cmt_enabled"))
    yield Finding(
        id="connector.tls_domain_capabilities_missing",
        severity=Severity.ERROR if cmt else Severity.WARNING,
        title=f"Exchange Online is treated as anonymous on {', '.join(servers)}",
        summary=(
            text + " Mail from Exchange Online then loses its internal status and, with "
            "Centralized Mail Transport, relaying to the internet is refused (550 5.7.54). The "
            "receive connector those sessions land on needs TlsDomainCapabilities "
            "mail.protection.outlook.com:AcceptCloudServicesMail and a valid TlsCertificateName."
        ),
        confidence=0.7,
        data={
            "connector": bad[0].connector,
            "servers": servers,
            "statuses": statuses,
            "sessions": len(bad),
        },
        evidence=ref_list(bad, 4),
        remediation=(
            "Set-ReceiveConnector '<server>\\Default Frontend <server>' -TlsDomainCapabilities "
            "mail.protection.outlook.com:AcceptCloudServicesMail",
            "Or re-run the Hybrid Configuration Wizard with every hybrid server selected.",
        ),
        explains=("5.7.54", "5.7.1"),
    )
