"""The probe report: the contract's "probe" JSON document and a terminal rendering.

Both state the vantage point first: a probe from this machine proves what this machine can
reach, not what Exchange Online's addresses can reach.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mailflow_doctor.diagnose.model import Finding
from mailflow_doctor.diagnose.rules.probe_results import to_finding
from mailflow_doctor.probe.dns import DnsResult
from mailflow_doctor.probe.runner import AddressReport, ProbeReport

_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "cyan"}


def findings_of(report: ProbeReport) -> list[Finding]:
    """Most important first; the probe's own order within a severity."""
    findings = [to_finding(p) for p in report.problems]
    return sorted(findings, key=lambda f: f.severity.rank)


def _dns_json(results: tuple[DnsResult, ...], resolver: str) -> dict[str, Any]:
    mx: list[dict[str, Any]] = []
    addresses: list[str] = []
    errors: list[dict[str, str]] = []
    hosts: list[dict[str, Any]] = []
    for result in results:
        mx.extend({"preference": m.preference, "host": m.exchange or "."} for m in result.mx)
        for host in result.hosts:
            hosts.append(
                {
                    "name": host.name,
                    "cname_chain": list(host.cname_chain),
                    "addresses": list(host.addresses),
                }
            )
            addresses.extend(a for a in host.addresses if a not in addresses)
        seen: set[tuple[str, str, str]] = set()
        for error in result.errors:
            key = (error.name, error.rdtype, error.kind)
            if key not in seen:
                seen.add(key)
                errors.append(error.to_json())
    return {
        "resolver": resolver,
        "mx": mx,
        "addresses": addresses,
        "errors": errors,
        "hosts": hosts,
    }


def _address_json(report: AddressReport) -> dict[str, Any]:
    smtp = report.smtp
    tls = smtp.tls if smtp else None
    entry: dict[str, Any] = {
        "address": report.address,
        "port": report.port,
        "connect": report.connect,
        "ms": report.ms,
        "banner": smtp.banner if smtp else "",
        "starttls": smtp.starttls if smtp else "not_tried",
        "tls": {"version": tls.version, "cipher": tls.cipher} if tls and tls.ok else None,
        "chain": [c.to_json() for c in report.chain],
        "host": report.host,
    }
    if report.ptr is not None:
        entry["ptr"] = {
            "names": list(report.ptr.names),
            "confirms_forward": report.ptr.confirms_forward,
        }
    return entry


def to_document(report: ProbeReport, source: str | None = None) -> dict[str, Any]:
    """The contract's probe document (key order as in the contract)."""
    return {
        "target": report.target,
        "vantage": report.vantage(source),
        "dns": _dns_json(report.dns, report.resolver),
        "addresses": [_address_json(a) for a in report.addresses],
        "findings": [_plain(f.to_json()) for f in findings_of(report)],
    }


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def render_json(report: ProbeReport, source: str | None = None) -> str:
    return json.dumps(to_document(report, source), indent=2, ensure_ascii=False) + "\n"


def render_terminal(report: ProbeReport, console: Console, source: str | None = None) -> None:
    """What an admin reads at 2 a.m.: where it was probed from, what answered, what is wrong."""
    console.print(f"[bold]Probe of {escape(report.target)}[/]")
    console.print(
        f"[yellow]Vantage: {escape(report.vantage(source))}.[/] A firewall may treat Exchange "
        "Online's addresses differently; certificate and STARTTLS results hold for any sender."
    )
    dns = _dns_json(report.dns, report.resolver)
    if dns["mx"]:
        mx = ", ".join(f"{m['preference']} {m['host']}" for m in dns["mx"])
        console.print(f"MX: {escape(mx)}")
    for host in dns["hosts"]:
        chain = f" (CNAME {' -> '.join(host['cname_chain'])})" if host["cname_chain"] else ""
        found = ", ".join(host["addresses"]) or "no address"
        console.print(f"DNS: {escape(host['name'])}{escape(chain)} -> {escape(found)}")
    console.print(f"Resolver: {escape(dns['resolver'])}")
    if report.addresses:
        table = Table("host", "address", "connect", "ms", "STARTTLS", "TLS")
        for address in report.addresses:
            smtp = address.smtp
            tls = smtp.tls if smtp else None
            table.add_row(
                escape(address.host),
                escape(f"{address.address}:{address.port}"),
                address.connect,
                str(address.ms),
                smtp.starttls if smtp else "not_tried",
                escape(tls.version) if tls and tls.ok else "",
            )
        console.print(table)
    for address in report.addresses:
        if address.smtp and address.smtp.banner:
            console.print(f"{escape(address.address)} banner: {escape(address.smtp.banner)}")
        tls = address.smtp.tls if address.smtp else None
        if tls and tls.ok:
            console.print(
                f"{escape(address.address)} TLS: {escape(tls.version)} {escape(tls.cipher)}"
            )
        for index, cert in enumerate(address.chain):
            label = "certificate" if index == 0 else f"  chain {index + 1}"
            sans = f", SAN {', '.join(cert.sans[:8])}" if cert.sans else ""
            console.print(
                f"{escape(address.address)} {label}: {escape(cert.subject)}{escape(sans)}, "
                f"valid {cert.not_before:%Y-%m-%d} to {cert.not_after:%Y-%m-%d}, "
                f"issuer {escape(cert.issuer)}"
            )
    findings = findings_of(report)
    if not findings:
        console.print(
            "[green]No problem found from here.[/] This does not prove that Exchange Online can "
            "connect: check the firewall against the published ranges "
            "(`mailflow-doctor firewall check`)."
        )
        return
    for finding in findings:
        style = _STYLE.get(finding.severity.value, "")
        console.print(
            f"[{style}]{finding.severity.value.upper()}[/] [bold]{escape(finding.title)}[/]"
            f" ({finding.id})"
        )
        console.print(f"  {escape(finding.summary)}")
        for step in finding.remediation:
            console.print(f"  Fix: {escape(step)}")
