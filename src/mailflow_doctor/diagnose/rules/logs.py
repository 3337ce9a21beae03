"""SMTP receive logs against the deferral window: silence counts only where the logs cover it.

Protocol logging is on by default only for the Default Frontend connector and the logs are
circular, so "no session from that address" means something only when the logs of a server
span the deferral window (or, for logs that cover part of it, only over that part and only
when deferrals fall inside it). For the time covered, the sessions from Exchange Online
are sorted by the ranges they came from: sessions only from permitted ranges, and none from
the blocked ones, is the firewall gap seen from the inside.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from mailflow_doctor.diagnose.checks import Context, check
from mailflow_doctor.diagnose.facts import contradict, support, utc_iso, within
from mailflow_doctor.diagnose.model import Finding, Severity
from mailflow_doctor.evidence.document import SourceRef
from mailflow_doctor.evidence.records import LogSpan, SmtpSession
from mailflow_doctor.knowledge.ipranges import IPSet

JOIN_GAP = timedelta(minutes=65)  # hourly files: a quiet hour still joins its neighbours
EDGE_SLACK = timedelta(minutes=5)

Interval = tuple[datetime, datetime]


def merge(spans: list[Interval], gap: timedelta = JOIN_GAP) -> list[Interval]:
    """Join time intervals that overlap or lie within `gap` of each other."""
    merged: list[Interval] = []
    for first, last in sorted(spans):
        if merged and first - merged[-1][1] <= gap:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


def covers(intervals: list[Interval], window: Interval) -> bool:
    return any(a - EDGE_SLACK <= window[0] and window[1] <= b + EDGE_SLACK for a, b in intervals)


INTERNAL_PORTS = frozenset({2525, 475})  # Hub transport, mailbox transport delivery


def internal_only_files(sessions: list[SmtpSession]) -> set[str]:
    """Log files whose receive sessions all arrived on an internal transport port."""
    ports: dict[str, set[int | None]] = {}
    for session in sessions:
        if session.direction == "receive":
            ports.setdefault(session.ref.path, set()).add(session.local_port)
    return {path for path, seen in ports.items() if seen and seen <= INTERNAL_PORTS}


def is_receive(kind: str) -> bool:
    return "receive" in kind.lower() or "recv" in kind.lower()


@check("logs.coverage", order=40)
def logs_coverage(ctx: Context) -> Iterator[Finding]:
    window: Interval | None = ctx.facts.get("deferral_window")
    spans = [s for s in ctx.bundle.of(LogSpan) if is_receive(s.kind)]
    if window is None or not spans:
        return
    # Hub transport logs (FrontEnd proxying on port 2525) never see Exchange Online's
    # addresses; their silence would prove nothing, so only logs of port 25 receivers count.
    internal = internal_only_files(ctx.bundle.of(SmtpSession))
    spans = [s for s in spans if s.ref.path not in internal]
    if not spans:
        return
    per_server: dict[str, list[Interval]] = {}
    span_refs: dict[str, list[SourceRef]] = {}
    for span in spans:
        per_server.setdefault(span.server or span.ref.path, []).append(
            (span.first_utc, span.last_utc)
        )
        span_refs.setdefault(span.server or span.ref.path, []).append(span.ref)
    coverage = {server: merge(items) for server, items in per_server.items()}
    times: list[datetime] = list(ctx.facts.get("deferral_times") or window)
    judged: dict[str, list[Interval]] = {}
    for server, items in coverage.items():
        if covers(items, window):
            judged[server] = [window]
            continue
        overlaps = [
            (max(a - EDGE_SLACK, window[0]), min(b + EDGE_SLACK, window[1]))
            for a, b in items
            if a - EDGE_SLACK <= window[1] and b + EDGE_SLACK >= window[0]
        ]
        if any(lo <= t <= hi for t in times for lo, hi in overlaps):
            judged[server] = overlaps  # silence counts, but only over these intervals
    covered = sorted(s for s, items in coverage.items() if covers(items, window))
    uncovered = sorted(s for s in coverage if s not in covered)
    window_json = [utc_iso(window[0]), utc_iso(window[1])]
    covered_json = [
        {"server": server, "first": utc_iso(a), "last": utc_iso(b)}
        for server, items in sorted(coverage.items())
        for a, b in items
    ]
    if uncovered:
        all_gap = not judged
        partly = [s for s in uncovered if s in judged]
        partly_text = (
            f" Only the deferrals inside what {', '.join(partly)} logged are checked below."
            if partly
            else ""
        )
        yield Finding(
            id="logs.coverage_gap",
            severity=Severity.WARNING if all_gap else Severity.INFO,
            title=(
                "The SMTP receive logs do not cover the deferral window"
                if all_gap
                else f"Receive logs of {', '.join(uncovered)} do not cover the whole "
                "deferral window"
            ),
            summary=(
                f"The deferrals ran from {window_json[0]} to {window_json[1]}; the receive logs "
                f"of {', '.join(uncovered)} cover only part of that (or none), so their silence "
                "outside what they cover proves nothing. Collect the SmtpReceive logs of every "
                "hybrid server for the whole window (logging is on by default only for Default "
                f"Frontend).{partly_text}"
            ),
            confidence=1.0,
            data={"window_utc": window_json, "covered_utc": covered_json, "servers": uncovered},
            evidence=tuple(r for s in uncovered for r in span_refs[s][:2]),
            can_be_root_cause=False,
        )
    if not judged:
        return
    yield from _sessions(ctx, times, judged, span_refs)


def _sessions(
    ctx: Context,
    times: list[datetime],
    judged: dict[str, list[Interval]],
    span_refs: dict[str, list[SourceRef]],
) -> Iterator[Finding]:
    eop = ctx.bundle.endpoints.eop_smtp_ranges()
    eop_cidrs = ctx.bundle.endpoints.eop_smtp_cidrs()
    covered = sorted(judged)
    intervals = [iv for items in judged.values() for iv in items]
    first = min(lo for lo, _ in intervals)
    last = max(hi for _, hi in intervals)
    window_json = [utc_iso(first), utc_iso(last)]
    counted = sum(1 for t in times if any(lo <= t <= hi for lo, hi in intervals))
    partial = counted < len(times)

    def inside(server: str, when: datetime) -> bool:
        return any(lo - EDGE_SLACK <= when <= hi + EDGE_SLACK for lo, hi in judged.get(server, []))

    sessions = [
        s
        for s in ctx.bundle.of(SmtpSession)
        if s.direction == "receive"
        and s.start_utc is not None
        and (inside(s.server, s.start_utc) or inside(s.ref.path, s.start_utc))
    ]
    eop_remotes = within((s.remote_ip for s in sessions), eop)
    from_eop = [s for s in sessions if s.remote_ip in eop_remotes]
    seen_ranges = [c for c in eop_cidrs if within(eop_remotes, IPSet.parse(c))]
    suspects = IPSet()
    for key in ("firewall_missing", "drop_sources"):
        value = ctx.facts.get(key)
        if isinstance(value, IPSet):
            suspects = suspects | value
    suspect_remotes = within(eop_remotes, suspects)
    from_suspects = [s for s in from_eop if s.remote_ip in suspect_remotes]
    refs = tuple(r for s in covered for r in span_refs[s][:1])
    session_refs = tuple(dict.fromkeys(s.ref for s in from_eop[:3]))
    base = {
        "window_utc": window_json,
        "servers": covered,
        "deferrals_covered": counted,
        "deferrals": len(times),
        "eop_sessions": len(from_eop),
        "eop_ranges_seen": seen_ranges,
    }
    if suspects and not from_suspects:
        blocked = suspects.cidrs()
        seen_text = (
            f"{len(from_eop)} sessions from Exchange Online arrived, all from "
            f"{', '.join(seen_ranges)}"
            if from_eop
            else "no session from Exchange Online arrived at all"
        )
        scope = (
            f"cover {counted} of the {len(times)} deferrals ({window_json[0]} to {window_json[1]})"
            if partial
            else "cover the whole deferral window"
        )
        summary = (
            f"The receive logs of {', '.join(covered)} {scope}: "
            f"{seen_text}; none came from the blocked or denied sources "
            f"({', '.join(blocked[:4])}{', ...' if len(blocked) > 4 else ''})."
        )
        support(
            ctx.facts,
            "firewall.eop_ranges_blocked",
            summary,
            (*session_refs[:2], *refs[:1]),
            0.03,
            source_id="logs.eop_sessions_absent",
        )
        support(
            ctx.facts,
            "firewall.drops_from_eop",
            summary,
            refs[:1],
            0.03,
            source_id="logs.eop_sessions_absent",
        )
        yield Finding(
            id="logs.eop_sessions_absent",
            severity=Severity.INFO,
            title="No session from the blocked Exchange Online ranges reached Exchange",
            summary=summary,
            confidence=0.9,
            data={**base, "blocked_sources": blocked},
            evidence=(*refs, *session_refs),
            can_be_root_cause=False,
        )
    elif from_suspects:
        odd = sorted({s.remote_ip for s in from_suspects})
        contradict(
            ctx.facts,
            "firewall.eop_ranges_blocked",
            f"Receive logs show sessions from {', '.join(odd[:4])}, which the firewall analysis "
            "says are blocked: check that the configuration given is the one in the path.",
            tuple(s.ref for s in from_suspects[:3]),
            0.25,
        )
        yield Finding(
            id="logs.sessions_from_blocked_ranges",
            severity=Severity.WARNING,
            title="Exchange received sessions from ranges the firewall analysis says are blocked",
            summary=(
                f"{len(from_suspects)} sessions from {', '.join(odd[:4])} reached "
                f"{', '.join(covered)} during the deferral window, although the firewall "
                "policy or deny logs say these sources are blocked. The configuration given may "
                "not be the one in the path, or another route exists."
            ),
            confidence=0.8,
            data={**base, "sources": odd},
            evidence=tuple(s.ref for s in from_suspects[:3]),
            can_be_root_cause=False,
        )
    elif not from_eop:
        scope = (
            f"cover {counted} of the {len(times)} deferrals"
            if partial
            else "cover the whole deferral window"
        )
        text = (
            f"The receive logs of {', '.join(covered)} {scope} and hold no session from any "
            "Exchange Online address: the attempts did not reach Exchange."
        )
        for target in ("smtp.nothing_listening", "smtp.connection_timeout"):
            support(ctx.facts, target, text, refs[:1], 0.05, source_id="logs.eop_sessions_absent")
        yield Finding(
            id="logs.eop_sessions_absent",
            severity=Severity.INFO,
            title="No session from Exchange Online reached Exchange during the deferrals",
            summary=text,
            confidence=0.9,
            data=base,
            evidence=refs,
            can_be_root_cause=False,
        )
    elif len(seen_ranges) < len(eop_cidrs):
        text = (
            f"The receive logs of {', '.join(covered)} show {len(from_eop)} sessions from "
            f"Exchange Online during the deferrals, only from {', '.join(seen_ranges)}: "
            "some EOP ranges get through while deliveries are being refused."
        )
        support(
            ctx.facts,
            "firewall.partial_allow_list_suspected",
            text,
            session_refs[:2],
            0.1,
            source_id="logs.eop_sessions_absent",
        )
