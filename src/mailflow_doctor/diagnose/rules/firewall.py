"""Each parsed firewall policy against the published EOP ranges, to the address EOP tried.

The destination is the address the trace says Exchange Online tried (LastAttemptedIP; the
evaluator follows the firewall's NAT to the inside address), else `--to`, else the addresses
the configuration itself names as mail servers. Remediation lines come from the vendor's
parser and are shown only when applying them to the configuration and evaluating again closes
the gap: a fix that does not work is worse than none at 2 a.m.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from mailflow_doctor.diagnose.bundle import FirewallEvidence
from mailflow_doctor.diagnose.checks import Context, check
from mailflow_doctor.diagnose.facts import contradict
from mailflow_doctor.diagnose.model import Finding, Severity
from mailflow_doctor.diagnose.rules.trace import REFUSED, TIMEOUT, is_ip, plural
from mailflow_doctor.evidence.document import SourceRef
from mailflow_doctor.firewall.evaluate import EvaluationError, RangeCheck, check_ranges
from mailflow_doctor.firewall.model import Action, Origin
from mailflow_doctor.firewall.registry import ParseOptions, parsers
from mailflow_doctor.knowledge.ipranges import IPSet


def origin_ref(origin: Origin) -> SourceRef:
    return SourceRef(origin.path, origin.line, origin.text[:300])


def destinations(ctx: Context, fw: FirewallEvidence) -> list[str]:
    """Where EOP connects: --to, else the trace's LastAttemptedIP(s), else the config's hosts."""
    to = ctx.bundle.options.get("to")
    if isinstance(to, str) and to:
        return [to]
    from_trace = [ip for ip in ctx.facts.get("target_ips", []) if is_ip(ip)]
    if from_trace:
        return list(dict.fromkeys(from_trace))
    return [h for h in fw.result.policy.smtp_hosts if is_ip(h)]


def vendor_cleanup(fw: FirewallEvidence, result: RangeCheck) -> tuple[str, ...]:
    """The vendor's own lines to remove stale objects, when its parser writes them."""
    parser = parsers().get(fw.result.policy.vendor)
    if parser is None:
        return ()
    try:
        remedy = parser.remediate(fw.text, fw.result, result)
    except Exception:
        return ()
    return tuple(remedy.cleanup) if remedy is not None else ()


def verified_remediation(
    fw: FirewallEvidence, destination: str, result: RangeCheck, ctx: Context
) -> tuple[tuple[str, ...], str]:
    """Vendor lines that provably close the gap, or () and the reason they are not shown."""
    parser = parsers().get(fw.result.policy.vendor)
    if parser is None:
        return (), "no parser is registered for this vendor to write the lines"
    try:
        remedy = parser.remediate(fw.text, fw.result, result)
    except Exception as exc:
        return (), f"writing the vendor lines failed ({type(exc).__name__})"
    if remedy is None or not remedy.lines:
        return (), "the parser could not write lines for this configuration"
    if remedy.patched_text is None:
        return (), "the suggested lines could not be verified (no patched configuration)"
    try:
        options = ParseOptions(acl=ctx.bundle.options.get("acl"))
        patched = parser.parse(remedy.patched_text, fw.path, options)
        again = check_ranges(
            patched.policy,
            destination,
            ctx.bundle.endpoints.eop_smtp_cidrs(),
            ctx.bundle.endpoints.retired_eop,
        )
    except Exception as exc:
        return (), f"re-evaluating the patched configuration failed ({type(exc).__name__})"
    if again.missing & result.missing:
        return (), (
            "the vendor lines did not close the gap when re-evaluated "
            f"(still missing {', '.join(again.missing.cidrs()[:4])})"
        )
    return remedy.lines, remedy.explanation


@check("firewall.eop_ranges", order=20)
def firewall_eop_ranges(ctx: Context) -> Iterator[Finding]:
    endpoints = ctx.bundle.endpoints
    published = endpoints.eop_smtp_cidrs()
    missing_all = IPSet()
    permitted_all = IPSet()
    checks: list[tuple[FirewallEvidence, str, RangeCheck]] = []
    for fw in ctx.bundle.firewalls:
        policy = fw.result.policy
        targets = destinations(ctx, fw)
        if not targets:
            yield Finding(
                id="firewall.destination_unknown",
                severity=Severity.WARNING,
                title=f"Cannot tell which address {fw.path} protects for SMTP",
                summary=(
                    "Neither the message trace (LastAttemptedIP) nor the configuration names the "
                    "on-premises SMTP address, so the policy was not evaluated. Run again with "
                    "--to <public or inside address of the Exchange server>."
                ),
                confidence=1.0,
                data={"path": fw.path, "vendor": policy.vendor},
                evidence=(SourceRef(fw.path),),
                can_be_root_cause=False,
            )
            continue
        per_policy: list[Finding] = []
        for destination in targets:
            try:
                result = check_ranges(policy, destination, published, endpoints.retired_eop)
            except (EvaluationError, ValueError) as exc:
                yield Finding(
                    id="firewall.evaluation_failed",
                    severity=Severity.WARNING,
                    title=f"Could not evaluate {fw.path} for {destination}",
                    summary=str(exc),
                    confidence=1.0,
                    data={"path": fw.path, "vendor": policy.vendor, "destination": destination},
                    evidence=(SourceRef(fw.path),),
                    can_be_root_cause=False,
                )
                continue
            checks.append((fw, destination, result))
            missing_all = missing_all | result.missing
            permitted_all = permitted_all | (
                result.evaluation.permitted() & endpoints.eop_smtp_ranges()
            )
            per_policy.extend(_findings_for(ctx, fw, destination, result))
        yield from merge_same_verdict(per_policy)
    ctx.facts["firewall_checks"] = checks
    if checks:
        ctx.facts["firewall_missing"] = missing_all
        ctx.facts["firewall_permitted"] = permitted_all


_SAME_VERDICT_KEYS = {
    "firewall.eop_ranges_blocked": "missing_ranges",
    "firewall.eop_ranges_permitted_partially": "ranges",
    "firewall.stale_eop_objects": "stale_ranges",
}


def merge_same_verdict(findings: list[Finding]) -> Iterator[Finding]:
    """One finding per policy and verdict, naming every address it holds for.

    A policy judged for each address the trace names (or a host firewall, which does not
    look at the destination at all) gives the same verdict many times over; repeating it per
    address buries the report.
    """
    groups: dict[tuple[str, tuple[str, ...]], list[Finding]] = {}
    order: list[tuple[str, tuple[str, ...]] | Finding] = []
    for finding in findings:
        key_name = _SAME_VERDICT_KEYS.get(finding.id)
        if key_name is None:
            order.append(finding)
            continue
        key = (finding.id, tuple(str(v) for v in finding.data.get(key_name, [])))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(finding)
    for item in order:
        if isinstance(item, Finding):
            yield item
            continue
        group = groups[item]
        best = max(group, key=lambda f: f.confidence)
        if len(group) == 1:
            yield best
            continue
        addresses = list(dict.fromkeys(str(f.data.get("destination", "")) for f in group))
        others = [a for a in addresses if a and a != best.data.get("destination")]
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        refs = tuple(dict.fromkeys(r for f in group for r in f.evidence))
        count = plural(len(others), "other address", "other addresses")
        yield replace(
            best,
            summary=f"{best.summary} The same holds for {count} the evidence names ({shown}).",
            data={**best.data, "destinations": addresses},
            evidence=refs[:8],
        )


def _findings_for(
    ctx: Context, fw: FirewallEvidence, destination: str, result: RangeCheck
) -> Iterator[Finding]:
    policy = fw.result.policy
    evaluation = result.evaluation
    verdicts = result.verdicts
    common: dict[str, Any] = {
        "vendor": policy.vendor,
        "destination": destination,
        "effective_destination": evaluation.effective_destination,
        "acl": policy.acl_name,
        "path": fw.path,
    }
    nat_ref = (origin_ref(evaluation.nat_origin),) if evaluation.nat_origin else ()
    if result.missing:
        affected = [v for v in verdicts if v.verdict != "permitted"]
        missing = result.missing.cidrs()
        deciding = list(dict.fromkeys(o for v in affected for o in v.deciding if o is not None))
        blocking = [o for o in deciding if o.line is not None or o.text]
        permits = [
            d.origin
            for d in evaluation.decisions
            if d.action == Action.PERMIT and d.origin is not None
        ]
        refs = tuple(
            dict.fromkeys(
                [
                    *(origin_ref(o) for o in blocking),
                    *(origin_ref(o) for o in permits[:2]),
                    *nat_ref,
                ]
            )
        )
        actions = {a for v in affected for a in v.actions}
        codes = ctx.facts.get("deferral_codes") or {}
        refused = int(codes.get(REFUSED, 0))
        timeouts = int(codes.get(TIMEOUT, 0))
        per_target = ctx.facts.get("per_target", {})
        tally = per_target.get(destination, {})
        confidence = 0.75
        notes: list[str] = []
        if refused or timeouts:
            confidence += 0.15 if tally.get("refused") or tally.get("timeout") else 0.08
        if tally.get("delivered") and (tally.get("refused") or tally.get("timeout")):
            confidence += 0.03
        all_blocked = all(v.verdict == "blocked" for v in verdicts)
        if tally.get("refused") and not tally.get("delivered") and not all_blocked:
            confidence -= 0.25
            notes.append(
                "Every attempt to this address was refused, yet the policy permits some "
                "published ranges: something besides this gap refuses connections too."
            )
        if tally.get("delivered") and all_blocked:
            confidence -= 0.35
            notes.append(
                f"{tally['delivered']} deliveries to {destination} succeeded, yet this policy "
                "as evaluated blocks every published range: the NAT rule may be missing from "
                "the configuration given, or another ACL applies (try --to with the inside "
                "address, or --acl)."
            )
        cross = _action_cross_check(actions, refused, timeouts, policy.vendor)
        if cross:
            notes.append(cross[0])
            confidence -= cross[1]
        lines, why = verified_remediation(fw, destination, result, ctx)
        remediation: tuple[str, ...]
        if lines:
            remediation = lines
            notes.append(
                "The remediation lines were applied to a copy of the configuration and "
                "re-evaluated: every published range is then permitted."
            )
        else:
            remediation = (
                f"Permit TCP 25 to {destination}"
                + (
                    f" (inside address {evaluation.effective_destination})"
                    if evaluation.effective_destination != destination
                    else ""
                )
                + " from these Exchange Online Protection ranges: "
                + ", ".join(missing),
            )
            if why:
                notes.append(f"No vendor lines are shown: {why}.")
        skipped = len(ctx.bundle.endpoints.eop_smtp_cidrs()) - len(verdicts)
        if skipped > 0:
            other = "IPv6" if ":" not in destination else "IPv4"
            notes.append(
                f"The {skipped} published {other} ranges were not evaluated: the address "
                f"tried, {destination}, is {'IPv4' if other == 'IPv6' else 'IPv6'}. If the "
                f"smart host also has an {'AAAA' if other == 'IPv6' else 'A'} record, check "
                f"the {other} path too."
            )
        n_affected = len(affected)
        title = (
            f"Firewall blocks {n_affected} of {len(verdicts)} published Exchange Online "
            f"Protection ranges on TCP 25 ({', '.join(missing[:4])}"
            f"{', ...' if len(missing) > 4 else ''})"
        )
        summary = (
            f"{policy.vendor} policy {policy.acl_name or fw.path} does not permit "
            f"{', '.join(missing)} to reach {destination}:25"
            + (
                f" (translated to {evaluation.effective_destination})"
                if evaluation.effective_destination != destination
                else ""
            )
            + ". Exchange Online delivers from these ranges, so every attempt made from them "
            "fails while attempts from the permitted ranges succeed."
        )
        yield Finding(
            id="firewall.eop_ranges_blocked",
            severity=Severity.CRITICAL,
            title=title,
            summary=summary,
            confidence=max(0.3, min(confidence, 0.97)),
            data={
                "missing_ranges": missing,
                **common,
                "blocking_action": sorted(actions),
                "ranges": [v.to_json() for v in verdicts],
                "notes": [*notes, *result.notes],
            },
            evidence=refs,
            remediation=remediation,
            explains=(REFUSED, TIMEOUT),
        )
        partial = [v for v in verdicts if v.verdict == "partial"]
        if partial:
            yield Finding(
                id="firewall.eop_ranges_permitted_partially",
                severity=Severity.INFO,
                title=(
                    f"{len(partial)} published range{'s are' if len(partial) > 1 else ' is'} "
                    "only partly permitted"
                ),
                summary="; ".join(
                    f"{v.range}: permitted {', '.join(v.permitted)}, blocked {', '.join(v.blocked)}"
                    for v in partial
                )
                + ". An allow-list built from an older or narrower list (such as the SPF "
                "record's split) leaves such gaps.",
                confidence=1.0,
                data={
                    "ranges": [v.range for v in partial],
                    "detail": [v.to_json() for v in partial],
                    **common,
                },
                evidence=tuple(
                    dict.fromkeys(origin_ref(o) for v in partial for o in v.deciding if o)
                ),
                can_be_root_cause=False,
            )
    if result.stale:
        stale = result.stale.cidrs()
        stale_refs = tuple(
            dict.fromkeys(
                origin_ref(d.origin)
                for d in evaluation.deciding(result.stale)
                if d.action == Action.PERMIT and d.origin is not None
            )
        )
        yield Finding(
            id="firewall.stale_eop_objects",
            severity=Severity.WARNING,
            title=f"Firewall still permits {plural(len(stale), 'retired Exchange Online range')}",
            summary=(
                f"{', '.join(stale)} {'is' if len(stale) == 1 else 'are'} permitted on TCP 25 "
                "but no longer published for Exchange Online Protection. The allow-list was "
                "probably built from an old list; such leftovers often sit next to missing "
                "current ranges. Remove them once you have confirmed nothing else needs them."
            ),
            confidence=1.0,
            data={"stale_ranges": stale, **common},
            evidence=stale_refs,
            remediation=vendor_cleanup(fw, result)
            or (
                f"Remove {', '.join(stale)} from the TCP 25 allow-list once you have "
                "confirmed nothing else needs it.",
            ),
            can_be_root_cause=False,
        )
    if not result.missing:
        contradict(
            ctx.facts,
            "firewall.partial_allow_list_suspected",
            f"{fw.path} permits every published EOP range to {destination}:25.",
            (SourceRef(fw.path),),
            0.3,
        )


def _action_cross_check(
    actions: set[str], refused: int, timeouts: int, vendor: str
) -> tuple[str, float] | None:
    """Does the way the firewall blocks (drop vs reject) match the code Exchange Online saw?"""
    if not (refused or timeouts):
        return None
    drops = Action.DENY.value in actions
    rejects = Action.REJECT.value in actions
    if drops and not rejects and refused and not timeouts:
        hint = (
            " On Cisco ASA, `service resetinbound` makes denied inbound TCP answer with a reset."
            if vendor.startswith("cisco")
            else ""
        )
        return (
            "The blocking rule drops silently, which usually shows as 4.4.315 (timed out); "
            "Exchange Online reported 4.4.316 (refused), so a device on the path answers the "
            f"denied connections with a reset.{hint}",
            0.05,
        )
    if rejects and not drops and timeouts and not refused:
        return (
            "The blocking rule rejects (reset), which shows as 4.4.316 (refused); Exchange "
            "Online reported 4.4.315 (timed out), so something on the path drops silently "
            "before this firewall, or the address tried is not this firewall's.",
            0.1,
        )
    return None
