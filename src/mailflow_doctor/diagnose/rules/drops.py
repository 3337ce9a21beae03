"""Firewall deny logs lined up with the deferrals: which EOP sources were dropped, and when.

A deny on TCP 25 from a published EOP range inside the deferral window is direct evidence of
the firewall gap; denies from other sources at the same time are most often internet scanners,
but are listed so that a Microsoft address missing from the endpoint list can be spotted.
Where the device does not log its default deny, the absence of log lines proves nothing.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime, timedelta

from mailflow_doctor.diagnose.bundle import ref_list
from mailflow_doctor.diagnose.checks import Context, check
from mailflow_doctor.diagnose.facts import (
    address_key,
    contradict,
    ipset_of,
    support,
    utc_iso,
    within,
)
from mailflow_doctor.diagnose.model import Finding, Severity
from mailflow_doctor.diagnose.rules.trace import REFUSED, TIMEOUT, plural
from mailflow_doctor.evidence.records import FirewallDrop
from mailflow_doctor.knowledge.ipranges import IPSet

WINDOW_SLACK = timedelta(minutes=30)
TCP = frozenset({"tcp", "6", ""})
# Log entries that are not a policy refusing a new connection: ASA 106015 is a stray packet of a
# connection the firewall no longer knows (asymmetric routing, a late RST), not a blocked SYN.
NOT_A_POLICY_DENY = frozenset({"no-connection"})


def in_window(when: datetime | None, window: tuple[datetime, datetime] | None) -> bool:
    if window is None:
        return True
    if when is None:
        return False
    return window[0] - WINDOW_SLACK <= when <= window[1] + WINDOW_SLACK


@check("firewall.drops", order=30)
def firewall_drops(ctx: Context) -> Iterator[Finding]:
    drops = [
        d
        for d in ctx.bundle.of(FirewallDrop)
        if d.dst_port == 25 and d.protocol.lower() in TCP and d.action not in NOT_A_POLICY_DENY
    ]
    window = ctx.facts.get("deferral_window")
    eop_cidrs = ctx.bundle.endpoints.eop_smtp_cidrs()
    eop = ctx.bundle.endpoints.eop_smtp_ranges()
    timed = [d for d in drops if in_window(d.time_utc, window)]
    eop_sources = within((d.src_ip for d in timed), eop)
    from_eop = [d for d in timed if d.src_ip in eop_sources]
    others = [d for d in timed if d.src_ip not in eop_sources]
    if from_eop:
        sources = ipset_of(eop_sources)
        ctx.facts["drop_sources"] = sources
        hit = [c for c in eop_cidrs if IPSet.parse(c).overlaps(sources)]  # a handful of ranges
        times = [d.time_utc for d in from_eop if d.time_utc is not None]
        first, last = (min(times), max(times)) if times else (None, None)
        assumed = sorted({d.time_assumed for d in from_eop if d.time_assumed})
        firsts: dict[str, FirewallDrop] = {}
        for entry in from_eop:
            firsts.setdefault(entry.src_ip, entry)
        one_per_source = list(firsts.values())
        refs = ref_list(one_per_source, limit=4)
        window_text = (
            " during the deferrals" if window is not None else " (no message trace to align with)"
        )
        summary = (
            f"{len(from_eop)} deny entries for TCP 25 from {len({d.src_ip for d in from_eop})} "
            f"Exchange Online addresses{window_text}, in {', '.join(hit)}. "
            "These are deliveries Exchange Online attempted and the firewall turned away."
        )
        permitted = ctx.facts.get("firewall_permitted")
        if isinstance(permitted, IPSet) and sources.overlaps(permitted):
            odd = (sources & permitted).cidrs()
            contradict(
                ctx.facts,
                "firewall.eop_ranges_blocked",
                f"Deny logs show drops from {', '.join(odd[:4])}, which the parsed policy "
                "permits: the device that logged them may not run this configuration.",
                refs,
                0.1,
            )
        support(
            ctx.facts,
            "firewall.eop_ranges_blocked",
            f"The firewall's deny log shows {len(from_eop)} TCP 25 denies from Exchange Online "
            f"addresses in {', '.join(hit)}{window_text}.",
            refs,
            0.03,
            source_id="firewall.drops_from_eop",
        )
        support(
            ctx.facts,
            "firewall.partial_allow_list_suspected",
            f"Deny logs show TCP 25 drops from Exchange Online addresses in {', '.join(hit)}.",
            refs,
            0.25,
            source_id="firewall.drops_from_eop",
        )
        yield Finding(
            id="firewall.drops_from_eop",
            severity=Severity.ERROR,
            title=(
                f"Firewall denied {plural(len(from_eop), 'SMTP connection')} from Exchange Online"
            ),
            summary=summary,
            confidence=0.85 if window is not None else 0.7,
            data={
                "count": len(from_eop),
                "source_ranges": hit,
                "sources": heapq.nsmallest(50, eop_sources, key=address_key),
                "destinations": sorted({d.dst_ip for d in from_eop}),
                "first_utc": utc_iso(first),
                "last_utc": utc_iso(last),
                "rules": sorted({d.rule for d in from_eop if d.rule}),
                "time_assumed": assumed,
            },
            evidence=refs,
            remediation=(
                "Permit TCP 25 from every published Exchange Online Protection range "
                f"({', '.join(eop_cidrs)}) to the Exchange endpoint.",
            ),
            explains=(REFUSED, TIMEOUT),
        )
    if others and window is not None:
        sources_other = sorted({d.src_ip for d in others}, key=address_key)
        yield Finding(
            id="firewall.drops_from_unpublished",
            severity=Severity.INFO,
            title=(
                f"{plural(len(others), 'TCP 25 deny', 'TCP 25 denies')} from outside the EOP ranges"
            ),
            summary=(
                f"{len(sources_other)} sources outside the published Exchange Online ranges "
                "were denied on TCP 25 during the deferral window. These are usually internet "
                "scanners; if any belongs to Microsoft, your endpoint list may be out of date "
                "(use --endpoints with a fresh download)."
            ),
            confidence=1.0,
            data={"count": len(others), "sources": sources_other[:50]},
            evidence=ref_list(others, limit=3),
            can_be_root_cause=False,
        )
    if not from_eop:
        yield from _silence(ctx, bool(drops))


def _silence(ctx: Context, have_logs: bool) -> Iterator[Finding]:
    """No deny lines from EOP: say what that does and does not prove."""
    missing = ctx.facts.get("firewall_missing")
    if not isinstance(missing, IPSet) or not missing:
        return
    unlogged = [fw.path for fw in ctx.bundle.firewalls if not fw.result.policy.default_deny_logged]
    if have_logs:
        text = (
            "The deny logs supplied hold no TCP 25 entry from Exchange Online in the deferral "
            "window."
        )
    else:
        text = "No firewall deny log was supplied."
    if unlogged:
        text += (
            f" The policy in {', '.join(unlogged)} does not log its default deny, so the "
            "absence of log lines is not proof that nothing was dropped."
        )
    else:
        text += " Check that logging was on and the log covers the deferral window."
    yield Finding(
        id="firewall.drops_not_logged",
        severity=Severity.INFO,
        title="No deny log confirms the blocked ranges",
        summary=text,
        confidence=1.0,
        data={"unlogged_policies": unlogged, "deny_log_supplied": have_logs},
        can_be_root_cause=False,
    )
