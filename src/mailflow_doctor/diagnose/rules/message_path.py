"""Follow messages across the evidence, and bring on-premises queue errors into the diagnosis.

A deferred message is one message id in the Exchange Online trace; the same id shows up in the
on-premises message tracking log once it arrives (RECEIVE, with the SMTP session's key in
source-context) and in the SmtpReceive session that carried it. Joining them tells, per
message, whether it ever reached on-premises, when, through which server and from which
Exchange Online address: the proof that a fix worked, or that some sources still fail. Queues
on the on-premises side (Get-Queue) in Retry carry their own LastError, explained with the
status-code knowledge and reported as a finding of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from mailflow_doctor.diagnose.checks import Context, check
from mailflow_doctor.diagnose.facts import support, utc_iso
from mailflow_doctor.diagnose.hybrid import Deferral, deferrals, walk
from mailflow_doctor.diagnose.model import Finding, Severity
from mailflow_doctor.evidence.document import SourceRef
from mailflow_doctor.evidence.records import QueueEntry, SmtpSession, TrackingEvent
from mailflow_doctor.knowledge.status_codes import load

MAX_PATHS = 25
TLS_WORDS = ("starttls", "tls", "certificate")


def _key(message_id: str) -> str:
    return message_id.strip().strip("<>").lower()


def _session_key(source_context: str) -> str:
    """`08DC1DB12C345BE5;2024-01-25T15:16:09.544Z;0` -> the session id."""
    return source_context.split(";", 1)[0].strip().upper()


@check("message.paths", order=70)
def message_paths(ctx: Context) -> Iterator[Finding]:
    yield from _paths(ctx)
    yield from _queues(ctx)


def _paths(ctx: Context) -> Iterator[Finding]:
    items = deferrals(ctx.bundle)
    by_message: dict[str, list[Deferral]] = {}
    for item in items:
        if item.event.message_id:
            by_message.setdefault(_key(item.event.message_id), []).append(item)
    if not by_message:
        return
    tracking: dict[str, list[TrackingEvent]] = {}
    for event in ctx.bundle.of(TrackingEvent):
        if event.message_id:
            tracking.setdefault(_key(event.message_id), []).append(event)
    sessions_by_id: dict[str, SmtpSession] = {}
    sessions_by_message: dict[str, SmtpSession] = {}
    for candidate in ctx.bundle.of(SmtpSession):
        if candidate.direction != "receive":
            continue
        sessions_by_id[candidate.session_id.upper()] = candidate
        for message_id in candidate.message_ids:
            sessions_by_message.setdefault(_key(message_id), candidate)
    if not tracking and not sessions_by_message:
        return
    paths: list[dict[str, Any]] = []
    arrived = 0
    refs: list[SourceRef] = []
    for message_id, defers in sorted(
        by_message.items(), key=lambda kv: min(_time(d.event.time_utc) for d in kv[1])
    ):
        received = [e for e in tracking.get(message_id, []) if e.event_id in ("RECEIVE", "DELIVER")]
        receive = next((e for e in received if e.event_id == "RECEIVE"), None)
        session = sessions_by_message.get(message_id)
        if session is None and receive is not None and receive.source_context:
            session = sessions_by_id.get(_session_key(receive.source_context))
        path: dict[str, Any] = {
            "message_id": message_id,
            "deferrals": len(defers),
            "codes": sorted({d.code for d in defers}),
            "first_deferral_utc": utc_iso(min(_time(d.event.time_utc) for d in defers)),
            "arrived_on_premises": bool(received or session),
        }
        if receive is not None:
            path["received_utc"] = utc_iso(receive.time_utc)
            path["server"] = receive.server_hostname
            refs.append(receive.ref)
        if any(e.event_id == "DELIVER" for e in received):
            path["delivered_to_mailbox"] = True
        if session is not None:
            path["session"] = session.session_id
            path["from_ip"] = session.remote_ip
            path["server"] = path.get("server") or session.server
            path["received_utc"] = path.get("received_utc") or utc_iso(session.start_utc)
            refs.append(session.ref)
        if path["arrived_on_premises"]:
            arrived += 1
        paths.append(path)
    total = len(paths)
    late = [p for p in paths if p["arrived_on_premises"]]
    from_ips = sorted({str(p["from_ip"]) for p in late if p.get("from_ip")})
    summary = (
        f"Of {total} messages Exchange Online deferred, {arrived} later reached on-premises"
        + (f" (from Exchange Online addresses {', '.join(from_ips[:6])})" if from_ips else "")
        + f" and {total - arrived} have no trace on-premises in the logs given."
    )
    ctx.facts["message_paths"] = paths
    yield Finding(
        id="trace.message_paths",
        severity=Severity.INFO,
        title=f"{arrived} of {total} deferred messages later arrived on-premises",
        summary=summary,
        confidence=0.9,
        data={"messages": total, "arrived": arrived, "paths": paths[:MAX_PATHS]},
        evidence=tuple(dict.fromkeys(refs))[:6],
        can_be_root_cause=False,
    )


_LATE = datetime(9999, 1, 1, tzinfo=UTC)


def _time(when: datetime | None) -> datetime:
    return when or _LATE


def _queues(ctx: Context) -> Iterator[Finding]:
    queues = [
        q
        for q in ctx.bundle.of(QueueEntry)
        if q.last_error.strip()
        and q.status.lower() in ("retry", "suspended", "ready", "active", "")
    ]
    queues = [q for q in queues if q.status.lower() in ("retry", "suspended") or q.reason]
    if not queues:
        return
    kb = load()
    listed: list[dict[str, Any]] = []
    codes: dict[str, None] = {}
    fixes: dict[str, None] = {}
    stuck = 0
    tls_related = False
    for queue in queues:
        reason = queue.reason
        entry = None
        inner_codes: list[str] = []
        if reason is not None:
            for hop in walk(reason):
                if hop.enhanced_code:
                    inner_codes.append(hop.enhanced_code)
                    codes[hop.enhanced_code] = None
            for code in reversed(inner_codes):  # the innermost reply says most
                entry = kb.by_enhanced(code) or entry
                if entry is not None:
                    break
            messages = kb.by_message(" ".join(reason.raw.split()))
            if messages:
                entry = messages[0]
            socket = next((h.socket_error for h in walk(reason) if h.socket_error), None)
            if socket is not None and not messages:
                entry = kb.by_socket(socket) or entry
        if entry is not None and entry.fixes:
            fixes[entry.fixes[0].text] = None
        stuck += queue.message_count or 0
        error = queue.last_error.strip()
        tls_related = tls_related or any(w in error.lower() for w in TLS_WORDS)
        listed.append(
            {
                "queue": queue.identity,
                "server": queue.server,
                "status": queue.status,
                "next_hop": queue.next_hop_domain,
                "messages": queue.message_count,
                "last_error": error[:500],
                "explained_as": entry.title if entry else "",
                "last_retry_utc": utc_iso(queue.last_retry_utc),
            }
        )
    hops = sorted({q.next_hop_domain for q in queues if q.next_hop_domain})
    first = listed[0]
    if tls_related:
        for finding_id in ("tls.starttls_missing", "tls.certificate_name_mismatch"):
            support(
                ctx.facts,
                finding_id,
                f"On-premises queue {first['queue']} also fails on TLS: "
                f"{first['last_error'][:160]}",
                (queues[0].ref,),
                0.02,
                source_id="queue.onprem_delivery_errors",
            )
    yield Finding(
        id="queue.onprem_delivery_errors",
        severity=Severity.ERROR
        if stuck or any(q.status.lower() == "retry" for q in queues)
        else Severity.WARNING,
        title=(
            f"{len(queues)} on-premises queue{'s' if len(queues) != 1 else ''} in retry"
            + (f" to {', '.join(hops[:3])}" if hops else "")
            + (f", {stuck} messages waiting" if stuck else "")
        ),
        summary=(
            f"Queue {first['queue']} ({first['status']}, next hop {first['next_hop'] or '?'}) "
            f"reports: {first['last_error'][:300]}"
            + (f" That is: {first['explained_as']}." if first["explained_as"] else "")
            + (
                f" {len(queues) - 1} more queue(s) are listed in the data."
                if len(queues) > 1
                else ""
            )
        ),
        confidence=0.85,
        data={"queues": listed[:30], "messages_waiting": stuck, "next_hops": hops},
        evidence=tuple(q.ref for q in queues[:5]),
        remediation=(
            *list(fixes)[:3],
            "After fixing, Retry-Queue -Identity <queue> and watch LastError clear.",
            'Explain any LastError in detail: mailflow-doctor explain "<LastError text>"',
        ),
        explains=tuple(codes),
    )
