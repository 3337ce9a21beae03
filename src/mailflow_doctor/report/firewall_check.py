"""`firewall check`: one policy against the published EOP ranges, as JSON and for a terminal.

The JSON follows the "firewall check" section of the output contract exactly for its required
keys (vendor, to, port, acl, endpoints, ranges, missing_ranges, stale_ranges) and adds keys of
its own (path, nat, notes, issues, remediation, other_targets) that scripts may ignore.

Without `--to`, the destination is found in the policy: the addresses the configuration names
as the mail server (the parser's `smtp_hosts`), NAT rules for the port, and single-host
destinations of permits for the port; those the policy lets the port reach come first. Nothing
is guessed beyond that: when the configuration names no host, the caller must ask for `--to`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mailflow_doctor.firewall.evaluate import (
    EvaluationError,
    RangeCheck,
    check_ranges,
    evaluate,
)
from mailflow_doctor.firewall.model import Action, DestinationView, Policy
from mailflow_doctor.firewall.registry import FirewallParser, ParseResult, Remediation
from mailflow_doctor.knowledge.endpoints import EndpointList
from mailflow_doctor.knowledge.ipranges import IPSet


class NoTargetError(ValueError):
    """The configuration does not say which host receives mail; the user must give --to."""


@dataclass(frozen=True)
class TargetCheck:
    """The published ranges checked against one destination."""

    to: str
    check: RangeCheck
    remediation: Remediation | None
    remediation_error: str = ""

    @property
    def has_gaps(self) -> bool:
        return bool(self.check.missing)


@dataclass(frozen=True)
class FirewallCheckReport:
    vendor: str
    path: str
    port: int
    policy: Policy
    endpoints: EndpointList
    targets: tuple[TargetCheck, ...]
    issues: tuple[tuple[int | None, str], ...] = ()
    discovered_from: str = "--to"
    notes: tuple[str, ...] = field(default=())

    @property
    def has_gaps(self) -> bool:
        return any(t.has_gaps for t in self.targets)


def _single(addresses: IPSet) -> str | None:
    if addresses.size() == 1:
        return str(addresses.networks()[0].network_address)
    return None


def candidate_targets(policy: Policy, port: int = 25) -> list[str]:
    """Addresses the policy names as the mail server, as Exchange Online would connect to them."""
    found: list[str] = list(policy.smtp_hosts)
    for nat in policy.nat:
        names_port = (nat.public_ports is not None and port in nat.public_ports) or (
            nat.private_port == port
        )
        host = _single(nat.public)
        if names_port and host:
            found.append(host)
    for chain in policy.chains.values():
        for rule in chain.rules:
            if rule.action != Action.PERMIT or not rule.enabled or rule.matches_nothing_reason:
                continue
            if not rule.matches_protocol("tcp") or rule.dst_ports is None:
                continue
            if port not in rule.dst_ports:
                continue
            host = _single(rule.destinations)
            if host is None:
                continue
            if policy.destination_view == DestinationView.POST_NAT:
                for nat in policy.nat:
                    if host in nat.private and _single(nat.public):
                        host = _single(nat.public) or host
                        break
            found.append(host)
    valid: list[str] = []
    for address in dict.fromkeys(found):
        try:
            valid.append(str(ipaddress.ip_address(address)))
        except ValueError:
            continue
    return list(dict.fromkeys(valid))


MAX_TARGETS = 8  # more named hosts than this: the admin should say which one with --to


def choose_targets(policy: Policy, port: int = 25) -> list[str]:
    """Named mail hosts that the policy lets the port reach; all named ones if none is reached."""
    candidates = candidate_targets(policy, port)[: MAX_TARGETS * 4]
    if not candidates:
        raise NoTargetError(
            f"{policy.path}: the configuration does not say which host receives mail on TCP "
            f"{port} (no NAT for the port, no object named like smtp/mail/exchange, no permit "
            "to a single host on the port); give the address Exchange Online connects to "
            "with --to ADDRESS"
        )
    reached: list[str] = []
    for address in candidates:
        try:
            if evaluate(policy, address, port).permitted():
                reached.append(address)
        except EvaluationError:
            continue
    return (reached or candidates)[:MAX_TARGETS]


def run_check(
    parser: FirewallParser,
    text: str,
    result: ParseResult,
    endpoints: EndpointList,
    to: str | None,
    port: int = 25,
) -> FirewallCheckReport:
    """Check every target; remediation comes from the vendor's parser and is verified there."""
    policy = result.policy
    if to is not None:
        targets = [to]
        discovered = "--to"
    else:
        targets = choose_targets(policy, port)
        discovered = "the configuration (named mail host, NAT or permit for the port)"
        named = len(candidate_targets(policy, port))
        if named > len(targets):
            discovered += (
                f"; {named} hosts are named, {len(targets)} checked: give the one Exchange "
                "Online connects to with --to"
            )
    published = endpoints.eop_smtp_cidrs()
    checks: list[TargetCheck] = []
    for target in targets:
        check = check_ranges(policy, target, published, endpoints.retired_eop, port=port)
        remediation: Remediation | None = None
        error = ""
        if check.missing or check.stale:
            try:
                remediation = parser.remediate(text, result, check)
            except Exception as exc:  # a vendor module's bug must not hide the verdict
                error = f"remediation could not be written: {exc}"
        checks.append(TargetCheck(target, check, remediation, error))
    notes: list[str] = list(policy.notes)
    families = {ipaddress.ip_address(t).version for t in targets}
    if families == {4}:
        notes.append(
            "IPv6 ranges were not checked: the destination is an IPv4 address "
            "(check the IPv6 address too if the MX has an AAAA record)"
        )
    return FirewallCheckReport(
        vendor=policy.vendor,
        path=policy.path,
        port=port,
        policy=policy,
        endpoints=endpoints,
        targets=tuple(checks),
        issues=result.issues,
        discovered_from=discovered,
        notes=tuple(dict.fromkeys(notes)),
    )


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def _blocking_actions(target: TargetCheck) -> list[str]:
    actions: dict[str, None] = {}
    for verdict in target.check.verdicts:
        for action in verdict.actions:
            actions[action] = None
    return list(actions)


def _target_json(report: FirewallCheckReport, target: TargetCheck) -> dict[str, object]:
    check = target.check
    evaluation = check.evaluation
    doc: dict[str, object] = {
        "vendor": report.vendor,
        "to": target.to,
        "port": report.port,
        "acl": report.policy.acl_name,
        "endpoints": {"source": report.endpoints.source, "version": report.endpoints.version},
        "ranges": [v.to_json() for v in check.verdicts],
        "missing_ranges": check.missing_cidrs,
        "stale_ranges": check.stale_cidrs,
        "path": report.path,
        "destination_in_rules": evaluation.effective_destination,
        "nat": evaluation.nat_origin.to_json() if evaluation.nat_origin else None,
        "blocked_by": _blocking_actions(target),
        "notes": [*report.notes, *check.notes],
    }
    remediation = target.remediation
    if remediation is not None:
        doc["remediation"] = {
            "lines": list(remediation.lines),
            "explanation": remediation.explanation,
            "verified": remediation.patched_text is not None and bool(remediation.lines),
            "warnings": list(remediation.warnings),
            "cleanup": list(remediation.cleanup),
        }
    elif target.remediation_error:
        doc["remediation"] = {"lines": [], "explanation": target.remediation_error}
    return doc


def to_json(report: FirewallCheckReport) -> dict[str, object]:
    """The contract's document for the first target; further targets under `other_targets`."""
    first, *others = report.targets
    doc = _target_json(report, first)
    doc["discovered_from"] = report.discovered_from
    doc["issues"] = [{"line": line, "message": message} for line, message in report.issues]
    if others:
        doc["other_targets"] = [_target_json(report, t) for t in others]
    return doc


# ---------------------------------------------------------------------------------------------
# Terminal
# ---------------------------------------------------------------------------------------------

_VERDICT_STYLE = {"permitted": "green", "partial": "yellow", "blocked": "bold red"}


def _rule_lines(target: TargetCheck, cidr: str) -> Text:
    verdict = next(v for v in target.check.verdicts if v.range == cidr)
    text = Text()
    for index, origin in enumerate(verdict.deciding):
        if index:
            text.append("\n")
        where = f"line {origin.line}: " if origin.line else ""
        text.append(where, style="dim")
        text.append(origin.text)
    return text


def render(report: FirewallCheckReport, console: Console) -> None:
    """Per target: a table of ranges with verdicts and deciding rules, then the fix."""
    endpoints = report.endpoints
    console.print(
        Text(
            f"Firewall {report.vendor}: {report.path}\n"
            f"Rule list: {report.policy.acl_name or '(none)'}   "
            f"Endpoints: {endpoints.source}, version {endpoints.version}   "
            f"Destination from: {report.discovered_from}"
        )
    )
    for target in report.targets:
        check = target.check
        evaluation = check.evaluation
        heading = f"TCP {report.port} to {target.to}"
        if evaluation.effective_destination != target.to and evaluation.nat_origin:
            heading += (
                f" (the rules see {evaluation.effective_destination} after NAT, "
                f"line {evaluation.nat_origin.line})"
            )
        table = Table(title=heading, title_justify="left", show_lines=True, expand=False)
        table.add_column("published range", no_wrap=True)
        table.add_column("verdict", no_wrap=True)
        table.add_column("blocked part")
        table.add_column("deciding rules")
        for verdict in check.verdicts:
            table.add_row(
                Text(verdict.range),
                Text(verdict.verdict, style=_VERDICT_STYLE[verdict.verdict]),
                Text(", ".join(verdict.blocked) or "-"),
                _rule_lines(target, verdict.range),
            )
        console.print(table)
        if check.missing:
            actions = _blocking_actions(target)
            how = (
                "refused with a reset (Exchange Online: 450 4.4.316 Connection refused)"
                if actions == ["reject"]
                else "dropped silently (Exchange Online: 4.4.315 timeout)"
                if actions == ["deny"]
                else "dropped or refused"
            )
            console.print(
                Text(
                    f"Blocked: {', '.join(check.missing_cidrs)}: mail from these Exchange Online "
                    f"addresses is {how}.",
                    style="bold red",
                )
            )
        else:
            console.print(Text("Every published range is permitted.", style="bold green"))
        if check.stale_cidrs:
            console.print(
                Text(
                    "Still permitted although no longer published for Exchange Online: "
                    + ", ".join(check.stale_cidrs),
                    style="yellow",
                )
            )
        _render_remediation(target, console)
    notes = list(report.notes)
    for target in report.targets:
        notes.extend(n for n in target.check.notes if n not in notes)
    if notes:
        console.print(Text("Notes:", style="bold"))
        for note in notes:
            console.print(Text(f"  - {note}"))
    if report.issues:
        console.print(Text(f"Lines not understood ({len(report.issues)}):", style="bold"))
        for line, message in report.issues[:20]:
            console.print(Text(f"  line {line}: {message}" if line else f"  {message}"))
        if len(report.issues) > 20:
            console.print(Text(f"  ... and {len(report.issues) - 20} more"))


def _render_remediation(target: TargetCheck, console: Console) -> None:
    remediation = target.remediation
    if target.remediation_error:
        console.print(Text(target.remediation_error, style="yellow"))
    if remediation is None:
        return
    if remediation.lines:
        body = Group(
            Text(remediation.explanation),
            Text(""),
            Text("\n".join(remediation.lines), style="bold"),
        )
        console.print(Panel(body, title="Change to make", title_align="left"))
    elif target.check.missing:
        console.print(Text(remediation.explanation, style="yellow"))
    for warning in remediation.warnings:
        console.print(Text(f"note: {warning}", style="dim"))
    if remediation.cleanup:
        console.print(
            Panel(
                Group(
                    Text("Optional: remove ranges Exchange Online no longer sends from."),
                    Text(""),
                    Text("\n".join(remediation.cleanup)),
                ),
                title="Clean-up (optional)",
                title_align="left",
            )
        )
