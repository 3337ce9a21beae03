"""Message-trace details and NDRs as admins paste them: console text, EAC copies, bare reasons.

At 2 a.m. the evidence is often text copied from a console or a browser, not an export:
`Get-MessageTraceDetail | Format-List` (`Date : ...` blocks, long values wrapped onto indented
lines), `| Format-Table` (columns under a dashed line), the EAC "Message events" pane (date,
event and detail on separate lines), a lone `Reason: [{LED=...}]` string, or the "Diagnostic
information for administrators" block of an NDR. Each becomes `TraceEvent`s with the reason
parsed. Console and NDR times are Exchange Online's UTC; the EAC pane shows its own time zone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from mailflow_doctor.evidence.culturetime import parse_culture_time
from mailflow_doctor.evidence.document import Document, Line, ReadContext
from mailflow_doctor.evidence.exotrace import (
    TABLE_DASHES,
    UTC_NOTE,
    local_zone_note,
    reason_for,
    slice_row,
    table_columns,
)
from mailflow_doctor.evidence.reason import parse_reason
from mailflow_doctor.evidence.records import ParsedReason, TraceEvent
from mailflow_doctor.evidence.registry import register_reader
from mailflow_doctor.evidence.tabular import format_list_keys, normalise_name, read_format_list

MAX_CHUNK_LINES = 200
MAX_CHUNK_CHARS = 64 * 1024
EXCERPT_CHARS = 300

_REASON_START = re.compile(
    r"^\s*['\"]?\s*(?:(?P<event>Defer|Fail|Drop|Deliver)\s*:\s*)?(?:Reason\s*:\s*)?"
    r"(?:\[\{LED=|\{LED=)",
    re.IGNORECASE,
)
_CODE_START = re.compile(r"^\s*['\"]?[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}(?![\w.])")
_EVENT_WORD = re.compile(r"^[A-Z][A-Za-z ]{1,30}$")
_KNOWN_EVENTS = frozenset(
    {
        "receive",
        "submit",
        "send",
        "sendexternal",
        "deliver",
        "fail",
        "defer",
        "expand",
        "transfer",
        "resolve",
        "resolved",
        "drop",
        "spam",
        "malware",
        "quarantine",
        "redirect",
    }
)
_NDR_HOP = re.compile(
    r"^\s*(?P<date>\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\s+\d{1,2}:\d{2}(?::\d{2})?"
    r"(?:\s*[AaPp]\.?[Mm]\.?)?)\s+-\s+(?:Remote\s+)?Server\s+at\s+\S+",
)
_EVENT_FROM_PREFIX = re.compile(r"^\s*['\"]?\s*(?P<event>Defer|Fail|Drop|Deliver)\s*:", re.I)


def _event_for(reason: ParsedReason, text: str) -> str:
    prefix = _EVENT_FROM_PREFIX.match(text)
    if prefix:
        return prefix["event"].title()
    if reason.smtp_code:
        return {"4": "Defer", "5": "Fail"}.get(reason.smtp_code[0], "")
    return ""


def _mode(lines: list[str]) -> str:
    """Which pasted layout the head of the file shows ("" when none)."""
    if {"date", "event", "detail"} <= format_list_keys(lines):
        return "list"
    for index, line in enumerate(lines[:-1]):
        words = {normalise_name(word) for word in line.split()}
        if {"date", "event", "detail"} <= words and TABLE_DASHES.match(lines[index + 1]):
            return "table"
    stripped = [line.strip() for line in lines if line.strip()]
    for index, line in enumerate(stripped[:-1]):
        if parse_culture_time(line) is not None and _is_event(stripped[index + 1]):
            return "panel"
    if any(_REASON_START.match(line) for line in lines):
        return "reasons"
    if stripped and _CODE_START.match(stripped[0]):
        return "reasons"
    return ""


def _is_event(text: str) -> bool:
    return bool(_EVENT_WORD.match(text)) and normalise_name(text) in _KNOWN_EVENTS


@dataclass
class _Pending:
    line: int
    excerpt: str
    values: dict[str, str] = field(default_factory=dict)
    last_key: str = ""
    lines: int = 0


@register_reader
class TraceDetailTextReader:
    """Pasted Get-MessageTraceDetail output, EAC message events, and bare reason strings."""

    kind = "exo.message_trace_detail_text"
    label = "Exchange Online message trace detail (pasted text)"

    def sniff(self, doc: Document) -> int:
        mode = _mode(doc.head_lines(200))
        lines = doc.head_lines(200)
        scores = {"list": 85, "table": 85, "panel": 70}
        if mode == "reasons":
            return 60 if any(_REASON_START.match(line) for line in lines) else 40
        return scores.get(mode, 0)

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        mode = _mode(doc.head_lines(200))
        if mode == "list":
            yield from self._read_list(doc, ctx)
        elif mode == "table":
            yield from self._read_table(doc, ctx)
        elif mode == "panel":
            yield from self._read_panel(doc, ctx)
        else:
            yield from self._read_reasons(doc, ctx)

    # --- Format-List -----------------------------------------------------------------------

    def _read_list(self, doc: Document, ctx: ReadContext) -> Iterator[TraceEvent]:
        for row in read_format_list(doc, ctx):
            date_text = row.get("Date")
            when = parse_culture_time(date_text) if date_text else None
            if date_text and when is None:
                ctx.warn(doc, row.line, f"time '{date_text[:60]}' is not a date this tool can read")
            event = row.get("Event")
            detail = row.get("Detail")
            yield TraceEvent(
                ref=doc.ref(row.line, row.excerpt),
                time_utc=when,
                event=event,
                action=row.get("Action"),
                detail=detail,
                data=row.get("Data"),
                reason=reason_for(event, detail),
                message_id=row.get("MessageId"),
                trace_id=row.get("MessageTraceId"),
                recipient=row.get("RecipientAddress"),
                sender=row.get("SenderAddress"),
                time_assumed=UTC_NOTE,
            )

    # --- Format-Table ----------------------------------------------------------------------

    def _read_table(self, doc: Document, ctx: ReadContext) -> Iterator[TraceEvent]:
        header: str | None = None
        columns: list[tuple[str, int]] = []
        previous: str | None = None
        current: tuple[Line, dict[str, str]] | None = None
        for line in doc.lines():
            text = line.text.rstrip()
            if not columns:
                if previous is not None and TABLE_DASHES.match(text):
                    header = previous
                    columns = table_columns(header, text)
                previous = text
                continue
            if not text.strip():
                continue
            row = slice_row(text, columns)
            if current is not None and not row.get("date") and row.get("detail"):
                current[1]["detail"] = (current[1].get("detail", "") + " " + row["detail"])[
                    :MAX_CHUNK_CHARS
                ]
                continue
            if current is not None:
                yield self._from_row(current, doc, ctx)
            current = (line, row)
        if current is not None:
            yield self._from_row(current, doc, ctx)

    def _from_row(
        self, current: tuple[Line, dict[str, str]], doc: Document, ctx: ReadContext
    ) -> TraceEvent:
        line, row = current
        date_text = row.get("date", "")
        when = parse_culture_time(date_text) if date_text else None
        if date_text and when is None:
            ctx.warn(doc, line.number, f"time '{date_text[:60]}' is not a date this tool can read")
        event = row.get("event", "")
        detail = row.get("detail", "")
        return TraceEvent(
            ref=doc.ref(line.number, line.text),
            time_utc=when,
            event=event,
            action=row.get("action", ""),
            detail=detail,
            data=row.get("data", ""),
            reason=reason_for(event, detail),
            time_assumed=UTC_NOTE,
        )

    # --- EAC "Message events" pane ---------------------------------------------------------

    def _read_panel(self, doc: Document, ctx: ReadContext) -> Iterator[TraceEvent]:
        zone = ctx.timezone
        note = local_zone_note(zone, "EAC message event times")
        pending: _Pending | None = None
        for line in doc.lines():
            text = line.text.strip()
            if not text:
                continue
            when = parse_culture_time(text, None, zone) if len(text) <= 40 else None
            if when is not None:
                if pending is not None:
                    yield self._from_panel(pending, doc, note)
                pending = _Pending(line.number, text)
                pending.values["date"] = text
                pending.values["_utc"] = when.isoformat()
                continue
            if pending is None:
                continue
            if "event" not in pending.values:
                pending.values["event"] = text
            elif len(pending.values.get("detail", "")) < MAX_CHUNK_CHARS:
                pending.values["detail"] = (pending.values.get("detail", "") + " " + text).strip()
        if pending is not None:
            yield self._from_panel(pending, doc, note)

    def _from_panel(self, pending: _Pending, doc: Document, note: str) -> TraceEvent:
        values = pending.values
        event = values.get("event", "")
        detail = values.get("detail", "")
        return TraceEvent(
            ref=doc.ref(pending.line, f"{values.get('date', '')} {event} {detail}"),
            time_utc=datetime.fromisoformat(values["_utc"]),
            event=event,
            action="",
            detail=detail,
            data="",
            reason=reason_for(event, detail),
            time_assumed=note,
        )

    # --- bare reason strings ---------------------------------------------------------------

    def _read_reasons(self, doc: Document, ctx: ReadContext) -> Iterator[TraceEvent]:
        for first, text in _chunks(doc, ctx, _starts_reason):
            reason = parse_reason(text)
            yield TraceEvent(
                ref=doc.ref(first.number, first.text),
                time_utc=reason.last_retry_utc,
                event=_event_for(reason, text),
                action="",
                detail=text,
                data="",
                reason=reason,
                time_assumed="" if reason.last_retry_utc is None else UTC_NOTE,
            )


def _starts_reason(text: str) -> bool:
    return bool(_REASON_START.match(text) or _CODE_START.match(text))


def _chunks(
    doc: Document, ctx: ReadContext, starts: Callable[[str], bool]
) -> Iterator[tuple[Line, str]]:
    """Group lines into chunks, each starting at a line for which `starts(text)` is true."""
    first: Line | None = None
    parts: list[str] = []
    size = 0
    for line in doc.lines():
        text = line.text.rstrip()
        if starts(text):
            if first is not None:
                yield first, "\n".join(parts)
            first, parts, size = line, [text], len(text)
            continue
        if first is None or not text.strip():
            continue
        if len(parts) >= MAX_CHUNK_LINES or size > MAX_CHUNK_CHARS:
            ctx.warn(doc, line.number, "text too long to belong to the reason above; ignored")
            yield first, "\n".join(parts)
            first, parts, size = None, [], 0
            continue
        parts.append(text)
        size += len(text)
    if first is not None:
        yield first, "\n".join(parts)


@register_reader
class NdrTextReader:
    """The "Diagnostic information for administrators" block of an Exchange Online NDR."""

    kind = "exo.ndr_text"
    label = "Exchange Online NDR diagnostic text"

    def sniff(self, doc: Document) -> int:
        return 80 if any(_NDR_HOP.match(line) for line in doc.head_lines(400)) else 0

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        zone: tzinfo | None = ctx.timezone
        note = (
            "NDR hop times carry no zone; read as UTC (use --timezone if they are local)"
            if zone is None
            else f"NDR hop times carry no zone; read in {zone}"
        )
        for first, text in _chunks(doc, ctx, lambda line: bool(_NDR_HOP.match(line))):
            reason = parse_reason(text)
            hop = _NDR_HOP.match(first.text)
            when = parse_culture_time(hop["date"], None, zone) if hop else None
            yield TraceEvent(
                ref=doc.ref(first.number, first.text),
                time_utc=when,
                event=_event_for(reason, text),
                action="",
                detail=" ".join(text.split()),
                data="",
                reason=reason,
                time_assumed=note,
            )
