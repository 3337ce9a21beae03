"""`diagnose --probe`: probe the SMTP targets Exchange Online tried, and fold in what was seen.

Runs only when the bundle's options ask for it (`probe: true`). Targets come from the trace
check's `smtp_targets` fact, paired with names from the trace reasons (LastAttemptedServerName
with LastAttemptedIP), so the certificate is judged against the name Exchange Online used and,
when known, the connector's TlsDomain (`expected_tls_name` fact). A live probe runs from this
machine, not from Exchange Online's addresses; every finding says so.

Options read from `bundle.options["probe_options"]` (all optional): `resolver` ("HOST[:PORT]"),
`ca_file` (PEM path), `timeout` (seconds per step), `port` (default 25), `source` (address to
bind), `expect_name` (used when the evidence does not name a TlsDomain).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mailflow_doctor.diagnose.checks import Context, check
from mailflow_doctor.diagnose.model import Finding, Severity
from mailflow_doctor.evidence.records import TraceEvent
from mailflow_doctor.probe.certs import TrustRoots, TrustRootsError
from mailflow_doctor.probe.dns import ResolverSpec, ResolverSpecError, is_address
from mailflow_doctor.probe.problems import ProbeProblem
from mailflow_doctor.probe.runner import ProbeOptions, ProbeReport, ProbeTarget, probe_many

MAX_TARGETS = 16
# Live findings that describe the endpoint itself (true from anywhere) may be a root cause;
# connection failures seen from here may not, because EOP connects from other addresses.
_ROOT_CAPABLE = ("tls.", "dns.")


def to_finding(problem: ProbeProblem, vantage: str = "") -> Finding:
    """A probe problem as a diagnosis finding: same id, severity, words and data."""
    data: dict[str, Any] = dict(problem.data)
    if problem.exo_code:
        data.setdefault("exchange_online_code", problem.exo_code)
    if vantage:
        data.setdefault("vantage", vantage)
    return Finding(
        id=problem.id,
        severity=Severity(problem.severity),
        title=problem.title,
        summary=problem.summary,
        confidence=problem.confidence,
        data=data,
        remediation=problem.remediation,
        can_be_root_cause=problem.id.startswith(_ROOT_CAPABLE),
        explains=(problem.exo_code,) if problem.exo_code else (),
    )


def _is_ip(text: str) -> bool:
    return is_address(text)


def targets_from_evidence(ctx: Context) -> list[ProbeTarget]:
    """(name, address) pairs Exchange Online tried, then names and addresses seen alone."""
    pairs: dict[tuple[str | None, str | None], None] = {}
    paired_names: set[str] = set()
    paired_ips: set[str] = set()
    for event in ctx.bundle.of(TraceEvent):
        reason = event.reason
        if reason is None:
            continue
        name = (reason.fqdn or reason.proxy_target_host or "").strip().rstrip(".").lower()
        address = (reason.ip or reason.proxy_target_ip or "").strip()
        if name and _is_ip(name):
            name, address = "", address or name
        if address and not _is_ip(address):
            address = ""
        if name or address:
            pairs.setdefault((name or None, address or None), None)
            if name:
                paired_names.add(name)
            if address:
                paired_ips.add(address)
    for target in ctx.facts.get("smtp_targets", []) or []:
        text = str(target).strip().rstrip(".").lower()
        if not text:
            continue
        if _is_ip(text) and text not in paired_ips:
            pairs.setdefault((None, text), None)
        elif not _is_ip(text) and text not in paired_names:
            pairs.setdefault((text, None), None)
    targets = [ProbeTarget(name, address) for name, address in pairs]
    # A name also gets its current addresses probed: Exchange Online may be trying an old one.
    names = {t.name for t in targets if t.name}
    extra = [ProbeTarget(name=n) for n in sorted(names) if ProbeTarget(name=n) not in targets]
    targets.extend(extra)
    return targets[:MAX_TARGETS]


def _options(ctx: Context, problems: list[Finding]) -> ProbeOptions:
    raw: dict[str, Any] = dict(ctx.bundle.options.get("probe_options") or {})
    resolver = ResolverSpec()
    try:
        resolver = ResolverSpec.parse(raw.get("resolver"))
    except ResolverSpecError as exc:
        problems.append(_option_warning(str(exc)))
    roots = None
    if raw.get("ca_file"):
        try:
            roots = TrustRoots.from_file(Path(raw["ca_file"]))
        except TrustRootsError as exc:
            problems.append(_option_warning(f"{exc}; using the certifi roots instead"))
    expect = ctx.facts.get("expected_tls_name") or raw.get("expect_name") or None
    timeout = float(raw.get("timeout") or 10.0)
    return ProbeOptions(
        port=int(raw.get("port") or 25),
        resolver=resolver,
        roots=roots,
        expect_name=str(expect) if expect else None,
        source=raw.get("source") or None,
        step_timeout=timeout,
        mail_domain=False,  # a connector's smart host is a host, not a mail domain
    )


def _option_warning(text: str) -> Finding:
    return Finding(
        id="probe.options_invalid",
        severity=Severity.WARNING,
        title="A probe option was not usable",
        summary=text,
        can_be_root_cause=False,
    )


@check("probe.live", order=90)
def probe_results(ctx: Context) -> Iterator[Finding]:
    if not ctx.bundle.options.get("probe"):
        return
    notes: list[Finding] = []
    options = _options(ctx, notes)
    yield from notes
    targets = targets_from_evidence(ctx)
    if not targets:
        yield Finding(
            id="probe.no_targets",
            severity=Severity.INFO,
            title="Nothing to probe: the evidence names no SMTP target",
            summary="No host or address that Exchange Online tried was found in the evidence. "
            "Run `mailflow-doctor probe HOST` with the smart host of the outbound connector.",
            can_be_root_cause=False,
        )
        return
    report = probe_many(targets, options)
    ctx.facts["probe_report"] = report
    vantage = report.vantage(options.source)
    for problem in report.problems:
        yield to_finding(problem, vantage)
    yield from _target_mismatches(targets, report)
    yield _summary(report, vantage)


def _target_mismatches(targets: list[ProbeTarget], report: ProbeReport) -> Iterator[Finding]:
    """The address Exchange Online tried is not what the name resolves to now."""
    current: dict[str, tuple[str, ...]] = {}
    for result in report.dns:
        for host in result.hosts:
            if host.addresses:
                current[host.name] = host.addresses
    for target in targets:
        if not (target.name and target.address) or target.name not in current:
            continue
        now = current[target.name]
        if any(_same(target.address, a) for a in now):
            continue
        split = all(_private(a) for a in now) and not _private(target.address)
        yield Finding(
            id="dns.target_mismatch",
            severity=Severity.INFO if split else Severity.ERROR,
            title=f"Exchange Online tried {target.address} for {target.name}, "
            f"which now resolves to {', '.join(now)}",
            summary=(
                f"{target.name} resolves here to private addresses ({', '.join(now)}): this looks "
                "like split DNS, so this machine cannot tell what Exchange Online resolves."
                if split
                else f"The address Exchange Online connected to ({target.address}) is not among "
                f"the current addresses of {target.name} ({', '.join(now)}). A changed public "
                "IP, a stale DNS record or a wrong smart host sends the mail to the wrong place."
            ),
            confidence=0.4 if split else 0.75,
            data={
                "tried": target.address,
                "expected": list(now),
                "host": target.name,
                "address": target.address,
                "resolver": report.dns[0].resolver if report.dns else "",
            },
            remediation=(
                f"Make the public DNS record of {target.name} point at the current public "
                "address of the hybrid endpoint, or correct the smart host on the outbound "
                "connector (re-run the Hybrid Configuration Wizard).",
            ),
            can_be_root_cause=not split,
        )


def _same(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def _private(text: str) -> bool:
    try:
        return not ipaddress.ip_address(text).is_global
    except ValueError:
        return False


def _summary(report: ProbeReport, vantage: str) -> Finding:
    """What the probe saw at each address, so the diagnosis shows the live picture."""
    rows = [
        {
            "host": a.host,
            "address": a.address,
            "port": a.port,
            "connect": a.connect,
            "ms": a.ms,
            "starttls": a.smtp.starttls if a.smtp else "not_tried",
            "tls_version": a.smtp.tls.version if a.smtp and a.smtp.tls else "",
            "certificate": a.chain[0].subject if a.chain else "",
        }
        for a in report.addresses
    ]
    return Finding(
        id="probe.summary",
        severity=Severity.INFO,
        title=f"Live probe of {len(rows)} address(es), {vantage}",
        summary="A connection from this machine says nothing about what Exchange Online's "
        "addresses can reach: a firewall may treat them differently. Certificate and STARTTLS "
        "results hold for any sender.",
        confidence=1.0,
        data={"vantage": vantage, "addresses": rows, "elapsed_ms": report.elapsed_ms},
        can_be_root_cause=False,
    )
