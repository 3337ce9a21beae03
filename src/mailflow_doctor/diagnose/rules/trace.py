"""What the message trace says: which deliveries were deferred, with which code, to where.

This check runs first and leaves the deferral window, the codes and the targets in
`ctx.facts` (see diagnose/facts.py) for every later check. From the trace alone it can already
tell apart three shapes of the same symptom (error-codes.md section 8):

- some deliveries to one target succeed while others are refused (4.4.316): EOP sends from many
  addresses, so an allow-list missing some of them fails only part of the time;
- every delivery to the target is refused: nothing listens, NAT is wrong, or all of EOP is
  blocked;
- attempts time out (4.4.315): a silent drop, a wrong address, or a host that is down.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from mailflow_doctor.diagnose.bundle import ref_list
from mailflow_doctor.diagnose.checks import Context, check
from mailflow_doctor.diagnose.facts import describe_codes, normalise_code, support, utc_iso
from mailflow_doctor.diagnose.model import Finding, Severity
from mailflow_doctor.evidence.document import SourceRef
from mailflow_doctor.evidence.records import TraceEvent, TraceMessage

DEFERRAL_EVENTS = frozenset({"defer", "fail", "deferred", "failed"})
DELIVERY_EVENTS = frozenset({"send external", "deliver", "send", "sendexternal", "delivered"})
_SENT_AT = re.compile(r"\bsent to (?P<host>[^\s,]+)(?: at (?P<ip>[0-9A-Fa-f:.]+))?", re.I)
REFUSED = "4.4.316"
DETAIL_EXPORT = (
    "Get-MessageTraceV2 -StartDate (Get-Date).AddDays(-2) -EndDate (Get-Date) -Status Pending "
    "| Get-MessageTraceDetailV2 | Export-Csv MessageTraceDetail.csv -NoTypeInformation "
    "-Encoding UTF8",
)
TIMEOUT = "4.4.315"


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_deferral(event: TraceEvent) -> bool:
    name = event.event.strip().lower()
    if name in DEFERRAL_EVENTS:
        return True
    code = event.reason.code if event.reason else None
    return bool(
        code and code[:2] in ("4.", "5.") and name not in DELIVERY_EVENTS and code[2] != "1"
    )


def event_ref(event: TraceEvent) -> SourceRef:
    """Point at the trace row, showing the event and its reason rather than the raw CSV row."""
    when = utc_iso(event.time_utc) or ""
    text = event.detail or (event.reason.raw if event.reason else "")
    return SourceRef(event.ref.path, event.ref.line, f"{when} {event.event}: {text}"[:300])


def event_refs(events: list[TraceEvent], limit: int = 3) -> tuple[SourceRef, ...]:
    return ref_list([_Ref(event_ref(e)) for e in events], limit)


@dataclass(frozen=True)
class _Ref:
    ref: SourceRef


@dataclass
class TargetTally:
    delivered: int = 0
    refused: int = 0
    timeout: int = 0
    other: int = 0
    refused_refs: list[TraceEvent] = field(default_factory=list)

    def to_json(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "refused": self.refused,
            "timeout": self.timeout,
            "other": self.other,
        }


def _target_of(event: TraceEvent) -> str:
    reason = event.reason
    if reason is None:
        return ""
    return reason.ip or reason.proxy_target_ip or reason.fqdn or reason.proxy_target_host or ""


def _delivery_pair(event: TraceEvent) -> tuple[str, str]:
    """(host, ip) from "Message sent to HOST at IP ..."; either may be empty."""
    match = _SENT_AT.search(event.detail or "")
    if not match:
        return "", ""
    return match.group("host") or "", match.group("ip") or ""


def _aliases(deferrals: list[TraceEvent], events: list[TraceEvent]) -> dict[str, str]:
    """Host name (lower case) -> the IP address Exchange Online reached it at."""
    aliases: dict[str, str] = {}
    for event in deferrals:
        reason = event.reason
        if reason is None:
            continue
        ip = reason.ip or reason.proxy_target_ip
        for host in (reason.fqdn, reason.proxy_target_host):
            if host and ip and is_ip(ip):
                aliases.setdefault(host.lower(), ip)
    for event in events:
        if event.event.strip().lower() in DELIVERY_EVENTS:
            host, ip = _delivery_pair(event)
            if host and ip and is_ip(ip):
                aliases.setdefault(host.lower(), ip)
    return aliases


@check("trace.deferrals", order=10)
def trace_deferrals(ctx: Context) -> Iterator[Finding]:
    events = ctx.bundle.of(TraceEvent)
    messages = ctx.bundle.of(TraceMessage)
    deferrals = [e for e in events if is_deferral(e)]
    by_code: Counter[str] = Counter()  # as reported
    normalised: Counter[str] = Counter()  # 5.4.316 folded into 4.4.316, for ranking
    targets: dict[str, None] = {}
    tallies: dict[str, TargetTally] = {}
    times: list[datetime] = []
    # A name Exchange Online tried maps to the address it reached (FQDN + LastAttemptedIP, or
    # "sent to HOST at IP"), so deliveries and refusals logged one by name and the other by
    # address meet in one tally, and the firewall is judged for the address.
    aliases = _aliases(deferrals, events)

    def canon(target: str) -> str:
        return aliases.get(target.lower(), target)

    for event in deferrals:
        seen_code = (event.reason.code if event.reason else None) or "unknown"
        by_code[seen_code] += 1  # as reported; ranking folds 5.4.316 into 4.4.316
        code = normalise_code(seen_code) or "unknown"
        normalised[code] += 1
        reason = event.reason
        if reason is not None:
            for value in (reason.fqdn, reason.ip, reason.proxy_target_host, reason.proxy_target_ip):
                if value:
                    targets[value] = None
        if event.time_utc is not None:
            times.append(event.time_utc)
        tally = tallies.setdefault(canon(_target_of(event)), TargetTally())
        if code == REFUSED:
            tally.refused += 1
            tally.refused_refs.append(event)
        elif code == TIMEOUT:
            tally.timeout += 1
        else:
            tally.other += 1
    # Deliveries: from detail events when present, else from the summary's ToIP.
    delivered_ids: set[str] = set()
    for event in events:
        if event.event.strip().lower() in DELIVERY_EVENTS:
            host, ip = _delivery_pair(event)
            target = canon(ip or host)
            if target:
                tallies.setdefault(target, TargetTally()).delivered += 1
                delivered_ids.add(event.message_id or event.trace_id)
    for message in messages:
        key = message.message_id or message.trace_id
        if message.status.lower() == "delivered" and message.to_ip and key not in delivered_ids:
            tallies.setdefault(message.to_ip, TargetTally()).delivered += 1
    pending = [m for m in messages if m.status.lower() in ("pending", "failed", "deferred")]

    ctx.facts["smtp_targets"] = list(targets)
    ctx.facts["target_ips"] = list(dict.fromkeys(canon(t) for t in targets if is_ip(canon(t))))
    ctx.facts["deferral_codes"] = normalised
    ctx.facts["per_target"] = {k: v.to_json() for k, v in tallies.items() if k}
    if times:
        ctx.facts["deferral_window"] = (min(times), max(times))
        ctx.facts["deferral_times"] = sorted(times)
    if not deferrals and not pending:
        return
    first, last = (min(times), max(times)) if times else (None, None)
    deferred_messages = {e.message_id or e.trace_id for e in deferrals} - {""}
    if deferrals:
        codes_text = describe_codes(code for code, _ in by_code.most_common())
        for_messages = f" for {len(deferred_messages)} messages" if deferred_messages else ""
        to_targets = ", to " + ", ".join(list(targets)[:4]) if targets else ""
        summary = (
            f"Exchange Online deferred {len(deferrals)} delivery attempts{for_messages}"
            f" between {utc_iso(first)} and {utc_iso(last)}: {codes_text}{to_targets}."
        )
    else:
        summary = (
            f"The message trace lists {len(pending)} messages as Pending or Failed, but no "
            "deferral detail; export Get-MessageTraceDetail for them to see the reason."
        )
    yield Finding(
        id="trace.deferrals",
        severity=Severity.WARNING,
        title=(
            f"{plural(len(deferrals) or len(pending), 'deferred delivery', 'deferred deliveries')}"
            " in the message trace"
        ),
        summary=summary,
        confidence=1.0,
        data={
            "by_code": dict(by_code.most_common()),
            "targets": list(targets),
            "first_utc": utc_iso(first),
            "last_utc": utc_iso(last),
            "messages_deferred": len(deferred_messages),
            "messages_pending": len(pending),
            "per_target": {k: v.to_json() for k, v in tallies.items() if k},
        },
        evidence=event_refs(deferrals, 3) if deferrals else ref_list(pending, limit=3),
        remediation=() if deferrals else DETAIL_EXPORT,
        can_be_root_cause=False,
    )
    yield from _shape_findings(ctx, tallies, by_code)


def _shape_findings(
    ctx: Context, tallies: dict[str, TargetTally], by_code: Counter[str]
) -> Iterator[Finding]:
    """Partial refusal, total refusal and timeouts, judged per target."""
    named = {k: t for k, t in tallies.items() if k}
    for target, tally in named.items():
        refs = event_refs(tally.refused_refs, 3)
        if tally.refused and tally.delivered:
            share = tally.refused / (tally.refused + tally.delivered)
            text = (
                f"{plural(tally.delivered, 'delivery', 'deliveries')} to {target} succeeded "
                f"while {plural(tally.refused, 'attempt')} to the same address "
                f"{'was' if tally.refused == 1 else 'were'} refused (4.4.316)"
            )
            for confirmed in ("firewall.eop_ranges_blocked", "firewall.drops_from_eop"):
                support(ctx.facts, confirmed, text + ".", refs, 0.04)
            yield Finding(
                id="firewall.partial_allow_list_suspected",
                severity=Severity.ERROR,
                title=f"Only some Exchange Online deliveries to {target} are refused",
                summary=(
                    f"{text}. Exchange Online delivers from many addresses, so a firewall or "
                    "allow-list that lacks some published EOP ranges refuses only the attempts "
                    "made from those ranges. Give the firewall configuration to confirm which "
                    "ranges are missing."
                ),
                confidence=0.6 if share < 0.95 else 0.5,
                data={
                    "target": target,
                    "delivered": tally.delivered,
                    "refused": tally.refused,
                },
                evidence=refs,
                remediation=(
                    f"Compare the TCP 25 allow-list in front of {target} with the published "
                    "Exchange Online Protection ranges (`mailflow-doctor endpoints show`).",
                    "Then run: mailflow-doctor firewall check <your firewall config> "
                    f"--to {target}",
                ),
                explains=(REFUSED,),
            )
        elif tally.refused and not tally.delivered:
            yield Finding(
                id="smtp.nothing_listening",
                severity=Severity.ERROR,
                title=f"Every delivery attempt to {target} was refused",
                summary=(
                    f"All {tally.refused} attempts Exchange Online made to {target} were refused "
                    "(4.4.316, socket error 10061) and none succeeded. Something answers with a "
                    "reset for every source: no service listening on TCP 25, a wrong NAT or "
                    "port forward, or a firewall that refuses all of Exchange Online."
                ),
                confidence=0.65,
                data={"target": target, "refused": tally.refused},
                evidence=refs,
                remediation=(
                    f"From outside your network, test TCP 25 on {target}; on the Exchange "
                    "server check the MSExchangeFrontEndTransport service and that the receive "
                    "connector listens on port 25 (netstat -ano | findstr :25).",
                    "Check the NAT / port forward from the public address to the Exchange "
                    "server and the firewall rule that permits Exchange Online on TCP 25.",
                ),
                explains=(REFUSED,),
            )
        if tally.timeout:
            partial = tally.delivered > 0
            yield Finding(
                id="smtp.connection_timeout",
                severity=Severity.ERROR,
                title=f"Delivery attempts to {target} time out",
                summary=(
                    f"{tally.timeout} attempts to {target} timed out (4.4.315, no answer to the "
                    "connection request)"
                    + (
                        f" while {tally.delivered} deliveries succeeded: a firewall silently "
                        "dropping some Exchange Online ranges fits this pattern."
                        if partial
                        else ": a silent drop, a wrong public address or a host that is down."
                    )
                ),
                confidence=0.6 if partial else 0.65,
                data={"target": target, "timeouts": tally.timeout, "delivered": tally.delivered},
                evidence=event_refs(
                    [
                        e
                        for e in ctx.bundle.of(TraceEvent)
                        if e.reason and normalise_code(e.reason.code) == TIMEOUT
                    ],
                    3,
                ),
                remediation=(
                    f"Check that {target} is the current public address of the hybrid "
                    "endpoint, that the server is up, and that the firewall permits all "
                    "Exchange Online Protection ranges on TCP 25 (a DROP rule gives timeouts).",
                ),
                explains=(TIMEOUT,),
            )
    del by_code
