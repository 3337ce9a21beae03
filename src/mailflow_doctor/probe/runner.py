"""Run a probe: DNS, then every address at once, all within ONE overall deadline.

Each address is probed in its own thread; every socket operation is bounded by the step
timeout and by the overall deadline, and the runner stops waiting at the deadline, so the
report is always returned on time, however many addresses there are and however the servers
behave.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

from mailflow_doctor.probe import smtp as smtp_mod
from mailflow_doctor.probe import tcp
from mailflow_doctor.probe.certs import CertInfo, TrustRoots, check_chain, describe, load_chain
from mailflow_doctor.probe.dns import (
    NO_ANSWER,
    NOT_TRIED,
    NXDOMAIN,
    DnsError,
    DnsResult,
    HostAddresses,
    Lookup,
    PtrResult,
    ResolverSpec,
    is_address,
    resolve_host,
    resolve_target,
    reverse,
)
from mailflow_doctor.probe.problems import ERROR, INFO, WARNING, ProbeProblem, place

OUTDATED_TLS = {"SSLv3", "TLSv1", "TLSv1.1"}
DEADLINE_FACTOR = 4  # the whole probe ends within this many step timeouts


@dataclass(frozen=True)
class ProbeTarget:
    """What to probe: a name, an address, or both (an address Exchange Online tried for a name)."""

    name: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class ProbeOptions:
    port: int = 25
    resolver: ResolverSpec = field(default_factory=ResolverSpec)
    roots: TrustRoots | None = None  # None: certifi
    expect_name: str | None = None
    source: str | None = None
    step_timeout: float = 10.0
    total_timeout: float | None = None  # None: DEADLINE_FACTOR x step_timeout
    mail_domain: bool = True  # a name with MX records is a mail domain: probe its MX hosts
    reverse_dns: bool = True
    max_workers: int = 16
    now: dt.datetime | None = None  # the time certificates are judged at (tests)

    @property
    def total(self) -> float:
        return self.total_timeout or self.step_timeout * DEADLINE_FACTOR


@dataclass(frozen=True)
class AddressReport:
    """Everything seen at one address, and the problems found there."""

    host: str
    address: str
    port: int
    connect: str  # connected, refused, timeout, unreachable, reset, not_tried
    ms: int
    connect_detail: str = ""
    local_address: str = ""
    smtp: smtp_mod.SmtpResult | None = None
    chain: tuple[CertInfo, ...] = ()
    ptr: PtrResult | None = None
    problems: tuple[ProbeProblem, ...] = ()
    finished: bool = True


@dataclass(frozen=True)
class ProbeReport:
    target: str
    dns: tuple[DnsResult, ...]
    addresses: tuple[AddressReport, ...]
    problems: tuple[ProbeProblem, ...]
    roots_source: str
    elapsed_ms: int
    resolver: str = ""

    @property
    def local_addresses(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for report in self.addresses:
            if report.local_address:
                seen.setdefault(report.local_address, None)
        return tuple(seen)

    def vantage(self, source: str | None = None) -> str:
        where = ", ".join(self.local_addresses) or source or "this host"
        return f"probed from {where}, not from Exchange Online's addresses"


def probe(target: str, options: ProbeOptions) -> ProbeReport:
    """Probe TARGET (an address, a host name, or a mail domain whose MX hosts are probed)."""
    if is_address(target):
        address = str(ipaddress.ip_address(target.strip("[]")))
        return probe_many([ProbeTarget(address=address)], options, label=address)
    return probe_many([ProbeTarget(name=target)], options, label=target)


def probe_many(
    targets: Sequence[ProbeTarget], options: ProbeOptions, label: str | None = None
) -> ProbeReport:
    started = time.monotonic()
    deadline = started + options.total
    lookup = Lookup(options.resolver, options.step_timeout, deadline)
    roots = options.roots or TrustRoots.certifi()
    dns_results: list[DnsResult] = []
    jobs: list[tuple[str, str, str | None]] = []  # (host, address, name to check the cert for)
    problems: list[ProbeProblem] = []
    seen: set[tuple[str, str]] = set()
    for target in targets:
        if target.address:
            name = target.name.rstrip(".").lower() if target.name else None
            host = name or target.address
            if (host, target.address) not in seen:
                seen.add((host, target.address))
                jobs.append((host, target.address, name))
            if name:
                resolved = resolve_host(lookup, name)
                dns_results.append(
                    DnsResult(name, "host", lookup.describe(), (), (resolved,), resolved.errors)
                )
            else:
                dns_results.append(resolve_target(target.address, lookup))
            continue
        if not target.name:
            continue
        result = resolve_target(target.name, lookup, mail_domain=options.mail_domain)
        dns_results.append(result)
        problems.extend(dns_problems(result))
        for host, address in result.addresses():
            if (host, address) not in seen:
                seen.add((host, address))
                checked = None if is_address(host) else host
                jobs.append((host, address, checked))
    reports = _run_addresses(jobs, options, roots, lookup, deadline)
    for report in reports:
        problems.extend(report.problems)
    elapsed = round((time.monotonic() - started) * 1000)
    if label is None:
        label = ", ".join(t.name or t.address or "" for t in targets)
    return ProbeReport(
        label,
        tuple(dns_results),
        tuple(reports),
        tuple(problems),
        roots.source,
        elapsed,
        lookup.describe(),
    )


def _run_addresses(
    jobs: list[tuple[str, str, str | None]],
    options: ProbeOptions,
    roots: TrustRoots,
    lookup: Lookup,
    deadline: float,
) -> list[AddressReport]:
    if not jobs:
        return []
    pool = ThreadPoolExecutor(max_workers=max(1, min(options.max_workers, len(jobs))))
    futures: list[Future[AddressReport]] = [
        pool.submit(probe_address, host, address, name, options, roots, lookup, deadline)
        for host, address, name in jobs
    ]
    try:
        # A little grace for threads to hand back what they have; the deadline is theirs too.
        wait(futures, timeout=max(0.0, deadline - time.monotonic()) + 0.5)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    reports: list[AddressReport] = []
    for (host, address, _), future in zip(jobs, futures, strict=True):
        if future.done() and not future.cancelled() and future.exception() is None:
            reports.append(future.result())
            continue
        reason = "not finished by the overall deadline"
        if future.done() and not future.cancelled() and future.exception() is not None:
            error = future.exception()
            reason = f"the probe failed: {type(error).__name__}: {error}"
        reports.append(incomplete(host, address, options.port, reason))
    return reports


def incomplete(host: str, address: str, port: int, reason: str) -> AddressReport:
    """An address the probe could not finish: said plainly, never guessed as a failure."""
    at = place(host, address)
    return AddressReport(
        host,
        address,
        port,
        tcp.NOT_TRIED,
        0,
        reason,
        problems=(
            ProbeProblem(
                "probe.incomplete",
                WARNING,
                f"{at} was not fully probed",
                f"The probe of {address} was {reason}; raise --timeout to give it longer.",
                {"host": host, "address": address, "detail": reason},
            ),
        ),
        finished=False,
    )


def probe_address(
    host: str,
    address: str,
    cert_name: str | None,
    options: ProbeOptions,
    roots: TrustRoots,
    lookup: Lookup | None,
    deadline: float,
) -> AddressReport:
    """Connect, converse, judge the certificate, look up the PTR: one address, one report."""
    where = {"host": host, "address": address}
    at = place(host, address)
    budget = min(options.step_timeout, deadline - time.monotonic())
    if budget < min(options.step_timeout, 1.0) / 2:
        # Too little time left to tell a silent drop from a slow answer: do not guess.
        return incomplete(host, address, options.port, "left no time by the overall deadline")
    result, sock = tcp.connect(address, options.port, budget, options.source)
    ptr = None
    if lookup is not None and options.reverse_dns and time.monotonic() < deadline:
        ptr = reverse(lookup, address)
    base = AddressReport(
        host,
        address,
        options.port,
        result.outcome,
        result.ms,
        result.detail,
        result.local_address,
        ptr=ptr,
    )
    if sock is None:
        return replace(base, problems=tuple(connect_problems(result, where)))
    try:
        ehlo_name = f"[{result.local_address}]" if result.local_address else "[127.0.0.1]"
        if ":" in result.local_address:
            ehlo_name = f"[IPv6:{result.local_address}]"
        conversation = smtp_mod.converse(
            sock,
            ehlo_name=ehlo_name,
            server_name=cert_name,
            step_timeout=options.step_timeout,
            deadline=deadline,
        )
    finally:
        sock.close()
    problems = smtp_problems(conversation, where)
    connect = base.connect
    if conversation.failure_kind in (smtp_mod.R_CLOSED, smtp_mod.R_RESET):
        connect = tcp.RESET
    chain: tuple[CertInfo, ...] = ()
    tls = conversation.tls
    if tls is not None and tls.ok:
        if tls.version in OUTDATED_TLS:
            problems.append(
                ProbeProblem(
                    "tls.protocol_outdated",
                    ERROR,
                    f"{at} negotiated {tls.version}",
                    f"The server agreed only to {tls.version}. Exchange Online uses TLS 1.2 or "
                    "later and will fail the handshake (4.4.317 TLS negotiation failed).",
                    {**where, "version": tls.version},
                    ("Enable TLS 1.2 (and 1.3 where supported) for SMTP on the server.",),
                    exo_code="4.4.317",
                )
            )
        verdict = check_chain(
            tls.chain,
            host=host,
            address=address,
            probed_name=cert_name,
            expect_name=options.expect_name,
            roots=roots,
            now=options.now,
        )
        chain = verdict.chain
        problems.extend(verdict.problems)
    elif tls is not None and tls.chain:
        certs, _ = load_chain(tls.chain)
        chain = tuple(describe(c) for c in certs)
    return replace(base, connect=connect, smtp=conversation, chain=chain, problems=tuple(problems))


def connect_problems(result: tcp.ConnectResult, where: dict[str, str]) -> list[ProbeProblem]:
    address, port = where["address"], result.port
    at = place(where["host"], address)
    data = {**where, "target": address, "port": port, "ms": result.ms, "detail": result.detail}
    if result.outcome == tcp.REFUSED:
        return [
            ProbeProblem(
                "smtp.connection_refused",
                ERROR,
                f"{at} refused the connection on TCP {port}",
                f"The connection attempt was answered with a reset after {result.ms} ms: nothing "
                "listens there, or a firewall rejects this source. Exchange Online reports the "
                "same thing as 450 4.4.316 Connection refused (socket error 10061).",
                data,
                (
                    "Check that the Exchange transport service listens on port "
                    f"{port}, that NAT/port forwarding points at it, and that the firewall "
                    "permits every published Exchange Online Protection range.",
                ),
                confidence=0.7,
                exo_code="4.4.316",
            )
        ]
    if result.outcome == tcp.TIMEOUT:
        return [
            ProbeProblem(
                "smtp.connection_timeout",
                ERROR,
                f"{at} did not answer on TCP {port}",
                f"No answer to the connection attempt within {result.ms / 1000:.1f} s: a "
                "firewall drops it silently, the host is down, or routing is broken. Exchange "
                "Online reports this as 450 4.4.315 Connection timed out (socket error 10060).",
                data,
                (
                    "Check the firewall for a DROP rule on this port, the host's state and the "
                    "public address the name points to.",
                ),
                confidence=0.7,
                exo_code="4.4.315",
            )
        ]
    if result.outcome == tcp.UNREACHABLE:
        return [
            ProbeProblem(
                "smtp.host_unreachable",
                ERROR,
                f"{at} is unreachable from here",
                f"The connection failed at once: {result.detail or 'unreachable'} (an ICMP "
                "unreachable or administratively-prohibited answer, or no route). Exchange Online "
                "does not document how it reports this; expect 4.4.316 or 4.4.315.",
                data,
                (
                    "Check routes and any firewall rule that rejects with ICMP on the path to "
                    "this address.",
                ),
                confidence=0.6,
            )
        ]
    if result.outcome == tcp.NOT_TRIED:
        return [
            ProbeProblem(
                "probe.address_skipped",
                INFO,
                f"{address} was not probed",
                f"{result.detail}.",
                data,
            )
        ]
    return []


def smtp_problems(result: smtp_mod.SmtpResult, where: dict[str, str]) -> list[ProbeProblem]:
    at = place(where["host"], where["address"])
    step, kind = result.failure_step, result.failure_kind
    data: dict[str, object] = {**where, "target": where["address"]}
    if step:
        data.update(step=step, reason=kind, detail=result.failure_detail)
        if result.failure_excerpt:
            data["received"] = result.failure_excerpt
    problems: list[ProbeProblem] = []
    if kind in (smtp_mod.R_CLOSED, smtp_mod.R_RESET):
        how = "reset" if kind == smtp_mod.R_RESET else "closed"
        problems.append(
            ProbeProblem(
                "smtp.connection_reset",
                ERROR,
                f"{at} {how} the connection at the {step} step",
                f"TCP connected, then the server {how} the session before "
                f"{'its greeting' if step == 'banner' else 'answering ' + step}. Exchange Online "
                "reports this as 450 4.4.318 Connection was closed abruptly. Look for an SMTP "
                "inspection/IPS device or a failing transport service.",
                data,
                (
                    "Turn off SMTP inspection (fixup/ESMTP policy) for this traffic and check the "
                    "transport service and its event log.",
                ),
                confidence=0.7,
                exo_code="4.4.318",
            )
        )
    elif step == "banner" and kind == "rejected":
        problems.append(
            ProbeProblem(
                "smtp.service_refused",
                ERROR,
                f"{at} refused service in its greeting",
                f"The server greeted with '{result.failure_detail}' instead of 220. Exchange "
                "Online reports the remote text inside 4.4.317 Cannot connect to remote server.",
                data,
                ("Check the server's connection limits, back pressure or IP block lists.",),
                exo_code="4.4.317",
            )
        )
    elif step == "banner":
        problems.append(
            ProbeProblem(
                "smtp.banner_invalid",
                ERROR,
                f"{at} gave no valid SMTP greeting",
                f"No valid 220 greeting: {result.failure_detail} ({result.received} bytes "
                "received). Exchange Online gives up on such a server.",
                data,
                (
                    "Check what answers on this port: an SMTP proxy, another service, or an "
                    "overloaded server.",
                ),
            )
        )
    elif step == "EHLO" and kind == "rejected":
        problems.append(
            ProbeProblem(
                "smtp.ehlo_rejected",
                ERROR,
                f"{at} rejected EHLO",
                f"EHLO was answered with '{result.failure_detail}', so STARTTLS cannot be used.",
                data,
                ("Check the receive connector's settings for this source.",),
            )
        )
    elif step == "STARTTLS" and kind == "rejected":
        problems.append(
            ProbeProblem(
                "tls.starttls_rejected",
                ERROR,
                f"{at} offers STARTTLS but refused it",
                f"The STARTTLS command was answered with '{result.failure_detail}'. Usually the "
                "certificate for TLS is missing or its private key is unusable. Exchange Online "
                "defers with 4.4.317.",
                data,
                (
                    "Check the certificate named by the receive connector's TlsCertificateName "
                    "and its private key; re-run the Hybrid Configuration Wizard.",
                ),
                exo_code="4.4.317",
            )
        )
    elif step:
        problems.append(
            ProbeProblem(
                "smtp.reply_invalid",
                ERROR,
                f"{at} gave no valid reply to {step}",
                f"No valid reply to {step}: {result.failure_detail}.",
                data,
                ("Check what answers on this port (an SMTP proxy or inspection device?).",),
            )
        )
    if result.starttls == smtp_mod.NOT_OFFERED:
        problems.append(
            ProbeProblem(
                "tls.starttls_missing",
                ERROR,
                f"{at} does not offer STARTTLS",
                "The EHLO reply does not list STARTTLS, so no TLS is possible. Exchange Online's "
                "hybrid connector requires TLS and defers with 4.4.317 (451 5.7.3 STARTTLS is "
                "required). Typically TlsCertificateName names a certificate that was removed "
                "or renewed (event 12014), or a device in front strips STARTTLS.",
                {**data, "extensions": list(result.extensions)},
                (
                    "Enable the renewed certificate for SMTP, set TlsCertificateName on the "
                    "receive connector (or re-run the Hybrid Configuration Wizard), and turn off "
                    "any SMTP inspection that strips STARTTLS.",
                ),
                exo_code="4.4.317",
            )
        )
    tls = result.tls
    if tls is not None and not tls.ok:
        tls_data = {**data, "reason": tls.error_kind, "detail": tls.error}
        if tls.excerpt:
            tls_data["received"] = tls.excerpt
        problems.append(
            ProbeProblem(
                "tls.handshake_failed",
                ERROR,
                f"TLS handshake with {at} failed",
                f"STARTTLS was accepted, then the handshake failed: {tls.error}. This is not a "
                "missing STARTTLS. Exchange Online defers with 4.4.317 (TLS negotiation failed).",
                tls_data,
                (
                    "Check the certificate's private key, the TLS versions and ciphers enabled "
                    "(TLS 1.2 is required), and any device in front that inspects SMTP.",
                ),
                exo_code="4.4.317",
            )
        )
    return problems


def dns_problems(result: DnsResult) -> list[ProbeProblem]:
    """DNS failures as problems; an address target has none."""
    problems: list[ProbeProblem] = []
    if result.kind == "address":
        return problems
    if result.kind == "domain":
        if result.mx and all(m.exchange in ("", ".") for m in result.mx):
            problems.append(
                ProbeProblem(
                    "dns.null_mx",
                    ERROR,
                    f"{result.target} publishes a null MX: it accepts no mail",
                    f"The MX record of {result.target} is '0 .' (RFC 7505).",
                    {"name": result.target, "host": result.target, "address": ""},
                    ("Publish the real MX record.",),
                    exo_code="4.4.312",
                )
            )
            return problems
        working = [h for h in result.hosts if h.addresses]
        for host in result.hosts:
            if not host.addresses:
                problems.append(_resolution_problem(host, bool(working)))
        return problems
    for host in result.hosts:
        if not host.addresses:
            problems.append(_resolution_problem(host, False))
    if not result.hosts:
        error = result.errors[0] if result.errors else DnsError(result.target, "A", NXDOMAIN, "")
        problems.append(_resolution_problem(HostAddresses(result.target, (), (), (error,)), False))
    return problems


def _resolution_problem(host: HostAddresses, others_work: bool) -> ProbeProblem:
    errors = host.errors or (DnsError(host.name, "A", NO_ANSWER, "no address record"),)
    if all(e.kind == NOT_TRIED for e in errors):
        return ProbeProblem(
            "probe.incomplete",
            WARNING,
            f"{host.name} was not looked up",
            "The probe's overall deadline passed before this name was resolved; raise "
            "--timeout to give it longer.",
            {"host": host.name, "address": "", "name": host.name, "detail": errors[0].detail},
        )
    kinds = sorted({e.kind for e in errors})
    primary = errors[0]
    explain = {
        NXDOMAIN: "the name does not exist (NXDOMAIN): a typo, a deleted record or an expired "
        "domain",
        "servfail": "the DNS server failed (SERVFAIL): the zone's name servers are broken or "
        "DNSSEC fails",
        "refused": "the DNS server refused the query",
        "timeout": "the DNS server did not answer in time",
        NO_ANSWER: "the name exists but has no A or AAAA record",
    }.get(primary.kind, primary.detail)
    chain = f" (via {' -> '.join(host.cname_chain)})" if host.cname_chain else ""
    return ProbeProblem(
        "dns.resolution_failed",
        WARNING if others_work else ERROR,
        f"{host.name} does not resolve{chain}",
        f"Looking up {host.name} failed: {explain}. Exchange Online reports a smart host or MX "
        "that does not resolve as 450 4.4.312 DNS query failed.",
        {
            "name": host.name,
            "host": host.name,
            "address": "",
            "reason": primary.kind,
            "reasons": kinds,
            "cname_chain": list(host.cname_chain),
            "detail": "; ".join(e.detail for e in errors),
        },
        (
            f"Fix the DNS record of {host.name} with its DNS host, or correct the smart host on "
            "the outbound connector.",
        ),
        exo_code="4.4.312",
    )
