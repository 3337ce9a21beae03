"""Exchange message tracking: raw MSGTRK* logs and Get-MessageTrackingLog exports.

The raw logs (MSGTRK, MSGTRKMS, MSGTRKMD, MSGTRKMA; Exchange 2010 to 2019/SE) are W3C-like CSV
with a `#Fields` line whose column set grew over the versions (21, 26, 27 and 30 fields), so
columns are always taken from the file, or from the field count when an excerpt has no header.
Their times are UTC. An admin who ran `Get-MessageTrackingLog` instead hands over Format-List
text or an Export-Csv file, whose `Timestamp` is the shell's *local* time in its culture; where
a RECEIVE event's `SourceContext` carries the session start in UTC, the offset is worked out
from it instead of being guessed. `source_context` and `internal_message_id` are kept as read:
they join an event to its SMTP protocol log session.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from mailflow_doctor.evidence.culturetime import DateOrder, DateOrderVote, parse_culture_time
from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.exchangelog import (
    TRACKING_FIELDS_BY_COUNT,
    iter_rows,
    parse_log_time,
    read_header,
    server_from_path,
    tracking_row_shape,
)
from mailflow_doctor.evidence.reason import parse_reason
from mailflow_doctor.evidence.records import LogSpan, ParsedReason, TrackingEvent
from mailflow_doctor.evidence.registry import register_reader
from mailflow_doctor.evidence.tabular import (
    TableRow,
    format_list_keys,
    read_format_list,
    read_rows,
    sniff_table,
)

KIND = "exchange.message_tracking"
VOTE_ROWS = 2000  # rows looked at before the date order of an export is decided
MAX_LIST_ITEMS = 500

_SOURCE_CONTEXT_TIME = re.compile(r";(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z);")
_STATUS_LIKE = re.compile(r"^\s*(?:\[?\{|[2-5]\d\d[ -]|[2-5]\.\d{1,3}\.\d{1,3})")
_ADDRESS_SPLIT = re.compile(r"[;,\s]+")


def split_outside_brackets(text: str, separator: str) -> list[str]:
    """Split on `separator` only where it is not inside `[...]`, `{...}` or `(...)`.

    `550 4.4.7 QUEUE.Expired;[{LRT=};{LED=...};{FQDN=};{IP=}]` is one recipient status.
    """
    parts: list[str] = []
    depth = 0
    start = 0
    width = len(separator)
    index = 0
    while index < len(text):
        char = text[index]
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth = max(0, depth - 1)
        elif depth == 0 and text.startswith(separator, index):
            parts.append(text[start:index])
            index += width
            start = index
            continue
        index += 1
    parts.append(text[start:])
    return parts


def split_statuses(text: str) -> list[str]:
    """Recipient statuses of a raw log (`;`-separated, brackets kept whole)."""
    if not text.strip():
        return []
    parts = split_outside_brackets(text, ";")
    # `550 4.4.7 QUEUE.Expired;<text>`: a part that does not start like a status belongs to
    # the one before it.
    merged: list[str] = []
    for part in parts:
        if merged and not _STATUS_LIKE.match(part) and part.strip().lower() not in _RCPT_KINDS:
            merged[-1] = f"{merged[-1]};{part}"
        else:
            merged.append(part)
    return [p.strip() for p in merged][:MAX_LIST_ITEMS]


_RCPT_KINDS = frozenset({"to", "cc", "bcc"})


def powershell_collection(text: str) -> list[str]:
    """`{a, b}` as Format-List shows a collection; a bare value is a one-item list."""
    value = text.strip()
    if value.startswith("{") and value.endswith("}"):
        value = value[1:-1]
    if not value.strip():
        return []
    return [p.strip() for p in split_outside_brackets(value, ", ") if p.strip()][:MAX_LIST_ITEMS]


def reason_from_statuses(statuses: Sequence[str]) -> ParsedReason | None:
    """The first recipient status that reads as an SMTP reply or a wrapped reason."""
    for status in statuses:
        if not _STATUS_LIKE.match(status):
            continue
        reason = parse_reason(status)
        if reason.smtp_code and reason.smtp_code[0] in "45":  # failures and deferrals only
            return reason
    return None


def _int(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isdigit() and len(text) < 19 else None


# --- raw MSGTRK logs --------------------------------------------------------------------------

# Events that this server logs as the client of a hop: `server-hostname` names the far end.
_CLIENT_SIDE_EVENTS = frozenset({"SEND", "SENDEXTERNAL", "HAREDIRECT", "TRANSFER"})


def _logging_server(event_id: str, client_host: str, server_host: str) -> str:
    """The server that wrote the row (its span is what tells log silence from a gap)."""
    if event_id.upper() in _CLIENT_SIDE_EVENTS:
        return client_host.split(".")[0] if client_host else ""
    return server_host.split(".")[0] if server_host else ""


@dataclass
class _Span:
    first: datetime
    last: datetime
    line: int
    rows: int = 0


def _read_raw(doc: Document, ctx: ReadContext, server_hint: str) -> Iterator[object]:
    spans: dict[str, _Span] = {}
    bad = 0
    index_cache: dict[tuple[str, ...], dict[str, int]] = {}
    for row in iter_rows(doc, ctx, layouts=TRACKING_FIELDS_BY_COUNT):
        columns = row.header.fields
        if not columns:
            bad += 1
            if bad <= 20:
                ctx.warn(doc, row.line, "row before any #Fields line and of no known width")
            continue
        positions = index_cache.get(columns)
        if positions is None:
            positions = {name: i for i, name in enumerate(columns)}
            index_cache[columns] = positions
        values = row.fields

        def get(
            name: str, values: list[str] = values, positions: dict[str, int] = positions
        ) -> str:
            index = positions.get(name)
            return values[index] if index is not None and index < len(values) else ""

        when = parse_log_time(get("date-time"))
        if when is None:
            bad += 1
            if bad <= 20:
                ctx.warn(doc, row.line, f"unreadable time {get('date-time')[:40]!r}; row skipped")
            continue
        recipients = [r for r in get("recipient-address").split(";") if r][:MAX_LIST_ITEMS]
        statuses = split_statuses(get("recipient-status"))
        if len(statuses) < len(recipients):
            statuses += [""] * (len(recipients) - len(statuses))
        server = _logging_server(get("event-id"), get("client-hostname"), get("server-hostname"))
        server = server or server_hint
        known = set(positions)
        extra = tuple(
            (name, get(name))
            for name in ("custom-data", "reference", "tenant-id", "schema-version")
            if name in known and get(name)
        )
        yield TrackingEvent(
            ref=doc.ref(row.line, row.text),
            time_utc=when,
            event_id=get("event-id").upper(),
            source=get("source").upper(),
            message_id=get("message-id"),
            internal_message_id=get("internal-message-id"),
            network_message_id=get("network-message-id"),
            sender=get("sender-address"),
            recipients=tuple(recipients),
            recipient_status=tuple(statuses),
            client_ip=get("client-ip"),
            client_hostname=get("client-hostname"),
            server_ip=get("server-ip"),
            server_hostname=get("server-hostname"),
            connector_id=get("connector-id"),
            source_context=get("source-context"),
            message_subject=get("message-subject"),
            related_recipient_address=get("related-recipient-address"),
            return_path=get("return-path"),
            total_bytes=_int(get("total-bytes")),
            directionality=get("directionality"),
            message_info=get("message-info"),
            original_client_ip=get("original-client-ip"),
            original_server_ip=get("original-server-ip"),
            reason=reason_from_statuses(statuses),
            extra=extra,
        )
        span = spans.get(server)
        if span is None:
            spans[server] = _Span(when, when, row.line, 1)
        else:
            span.rows += 1
            span.first = min(span.first, when)
            span.last = max(span.last, when)
    if bad > 20:
        ctx.warn(doc, None, f"{bad} rows in all could not be read")
    unnamed = spans.pop("", None)
    if unnamed is not None:  # rows without server-hostname belong to the file's one server
        if len(spans) == 1:
            span = next(iter(spans.values()))
            span.first, span.last = min(span.first, unnamed.first), max(span.last, unnamed.last)
            span.rows += unnamed.rows
            span.line = min(span.line, unnamed.line)
        else:
            spans[""] = unnamed
    for server, span in spans.items():
        yield LogSpan(doc.ref(span.line), KIND, server, span.first, span.last, span.rows)


# --- Get-MessageTrackingLog exports -----------------------------------------------------------


@dataclass
class _LocalTime:
    """How an export's local `Timestamp` values are turned into UTC."""

    order: DateOrder | None = None
    zone: tzinfo | None = None
    offset: timedelta | None = None
    note: str = ""
    warnings: list[str] = field(default_factory=list)

    def to_utc(self, text: str) -> datetime | None:
        if not text:
            return None
        if self.offset is not None:
            naive = parse_culture_time(text, self.order, None)
            return None if naive is None else naive - self.offset
        return parse_culture_time(text, self.order, self.zone)


def infer_offset(local_text: str, source_context: str) -> tuple[timedelta, DateOrder] | None:
    """The UTC offset of the exporting shell, from one event whose SourceContext holds UTC.

    A RECEIVE event's SourceContext is `<session>;<session start, UTC>;<n>` and its Timestamp
    is the same moment in local time (give or take the message's own seconds). Every field
    order is tried; the one that lands within 14 hours on a quarter-hour offset wins.
    """
    match = _SOURCE_CONTEXT_TIME.search(f";{source_context};")
    if not match:
        return None
    utc = parse_log_time(match.group(1))
    if utc is None:
        return None
    candidates: list[tuple[timedelta, DateOrder]] = []
    for order in (DateOrder.DMY, DateOrder.MDY, DateOrder.YMD):
        local = parse_culture_time(local_text, order, None)
        if local is None:
            continue
        delta = local - utc
        minutes = round(delta.total_seconds() / 60 / 15) * 15
        if abs(minutes) <= 14 * 60 and abs(delta.total_seconds() - minutes * 60) <= 120:
            candidates.append((timedelta(minutes=minutes), order))
    if len({c[0] for c in candidates}) == 1 or len(candidates) == 1:
        return candidates[0]
    return None


def _decide_local_time(rows: Sequence[TableRow], ctx: ReadContext) -> _LocalTime:
    vote = DateOrderVote()
    for row in rows:
        vote.observe(row.get("Timestamp"))
    order, why = vote.decide("Timestamp")
    for row in rows:
        found = infer_offset(row.get("Timestamp"), row.get("SourceContext"))
        if found is not None:
            offset, inferred_order = found
            hours = offset.total_seconds() / 3600
            return _LocalTime(
                order=inferred_order,
                offset=offset,
                note=f"Timestamp is the exporting shell's local time; UTC{hours:+g} worked out "
                "from a SourceContext that holds UTC",
            )
    if ctx.timezone is not None:
        note = f"Timestamp is the exporting shell's local time; read in {ctx.timezone}"
    else:
        note = (
            "Timestamp is the exporting shell's local time; read as UTC because no --timezone "
            "was given and no event showed the offset"
        )
    return _LocalTime(order=order, zone=ctx.timezone, note=note, warnings=[why] if why else [])


def _event_from_export(
    row: TableRow, doc: Document, times: _LocalTime, string_array: list[bool]
) -> TrackingEvent:
    def collection(*names: str) -> list[str]:
        raw = row.get(*names)
        if raw.startswith("System.") and raw.endswith("[]"):
            string_array[0] = True
            return []
        if raw.startswith("{") or "," not in raw:
            items = powershell_collection(raw)
        else:
            items = [p.strip() for p in split_outside_brackets(raw, ",") if p.strip()]
        if len(items) == 1 and " " in items[0] and "@" in items[0] and "[" not in items[0]:
            items = [p for p in _ADDRESS_SPLIT.split(items[0]) if p]  # -join ' ' flattening
        return items[:MAX_LIST_ITEMS]

    recipients = collection("Recipients", "RecipientAddress")
    statuses = collection("RecipientStatus")
    if len(statuses) < len(recipients):
        statuses += [""] * (len(recipients) - len(statuses))
    stamp = row.get("Timestamp", "TimeStamp", "Date")
    known = {
        "runspaceid",
        "timestamp",
        "eventid",
        "source",
        "messageid",
        "internalmessageid",
        "networkmessageid",
        "sender",
        "recipients",
        "recipientstatus",
        "clientip",
        "clienthostname",
        "serverip",
        "serverhostname",
        "connectorid",
        "sourcecontext",
        "messagesubject",
        "relatedrecipientaddress",
        "returnpath",
        "totalbytes",
        "directionality",
        "messageinfo",
        "originalclientip",
        "originalserverip",
    }
    extra = tuple(
        (name, value.strip())
        for name, key, value in zip(row.header.names, row.header.keys, row.values, strict=False)
        if key not in known and value.strip()
    )[:40]
    return TrackingEvent(
        ref=doc.ref(row.line, row.excerpt),
        time_utc=times.to_utc(stamp),
        event_id=row.get("EventId").upper(),
        source=row.get("Source").upper(),
        message_id=row.get("MessageId"),
        internal_message_id=row.get("InternalMessageId"),
        network_message_id=row.get("NetworkMessageId"),
        sender=row.get("Sender", "SenderAddress"),
        recipients=tuple(recipients),
        recipient_status=tuple(statuses),
        client_ip=row.get("ClientIp"),
        client_hostname=row.get("ClientHostname"),
        server_ip=row.get("ServerIp"),
        server_hostname=row.get("ServerHostname"),
        connector_id=row.get("ConnectorId"),
        source_context=row.get("SourceContext"),
        message_subject=row.get("MessageSubject"),
        related_recipient_address=row.get("RelatedRecipientAddress"),
        return_path=row.get("ReturnPath"),
        total_bytes=_int(row.get("TotalBytes")),
        directionality=row.get("Directionality"),
        message_info=row.get("MessageInfo"),
        original_client_ip=row.get("OriginalClientIp"),
        original_server_ip=row.get("OriginalServerIp"),
        reason=reason_from_statuses(statuses),
        time_assumed=times.note if stamp else "",
        extra=extra,
    )


def _read_export(doc: Document, ctx: ReadContext, rows: Iterator[TableRow]) -> Iterator[object]:
    buffered: list[TableRow] = []
    for row in rows:
        buffered.append(row)
        if len(buffered) >= VOTE_ROWS:
            break
    times = _decide_local_time(buffered, ctx)
    for warning in times.warnings:
        ctx.warn(doc, None, warning)
    string_array = [False]
    unreadable = 0

    def emit(row: TableRow) -> TrackingEvent | None:
        nonlocal unreadable
        if not (row.get("EventId") or row.get("MessageId") or row.get("Timestamp")):
            return None
        event = _event_from_export(row, doc, times, string_array)
        if row.get("Timestamp") and event.time_utc is None:
            unreadable += 1
            if unreadable <= 20:
                ctx.warn(doc, row.line, f"Timestamp {row.get('Timestamp')[:40]!r} is not a date")
        return event

    for row in buffered:
        event = emit(row)
        if event is not None:
            yield event
    for row in rows:
        event = emit(row)
        if event is not None:
            yield event
    if string_array[0]:
        ctx.warn(
            doc,
            None,
            "Recipients/RecipientStatus were exported as 'System.String[]' and are lost; export "
            "with Select-Object @{n='Recipients';e={$_.Recipients -join ';'}} to keep them",
        )


_EAC_KEYS = frozenset({"datetimeutc", "origintimestamputc"})


def _is_tracking_export(keys: set[str]) -> bool:
    return (
        "eventid" in keys
        and bool(keys & {"messageid", "internalmessageid"})
        and bool(keys & {"timestamp", "source", "sourcecontext"})
    )


@register_reader
class MessageTrackingReader:
    """MSGTRK* logs and Get-MessageTrackingLog Format-List / Export-Csv output."""

    kind = KIND
    label = "Exchange message tracking log"

    def sniff(self, doc: Document) -> int:
        return self._mode(doc)[1]

    def _mode(self, doc: Document) -> tuple[str, int]:
        lines = doc.head_lines(80)
        header = read_header(lines)
        if header is not None and header.log_type:
            return ("raw", 100) if header.is_tracking else ("", 0)
        shape = sniff_table(lines)
        if shape is not None and set(shape.header.keys) & _EAC_KEYS:
            return "", 0  # the EAC extended report: Exchange Online's own tracking, not ours
        if format_list_keys(lines) & _EAC_KEYS:
            return "", 0
        rows = [line.lstrip("\ufeff") for line in lines if line.strip()]
        data = [r for r in rows if not r.startswith("#")][:20]
        if data and sum(tracking_row_shape(r) for r in data) * 2 >= len(data):
            return "raw", 85
        keys = format_list_keys(lines)
        if _is_tracking_export(keys) and len(keys) >= 4:
            return "list", 90
        if shape is not None and _is_tracking_export(set(shape.header.keys)):
            return "csv", 90
        return "", 0

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        mode, _score = self._mode(doc)
        if mode == "raw":
            yield from _read_raw(doc, ctx, server_from_path(doc.display))
        elif mode == "list":
            yield from _read_export(doc, ctx, read_format_list(doc, ctx))
        elif mode == "csv":
            yield from _read_export(doc, ctx, read_rows(doc, ctx))
