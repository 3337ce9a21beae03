"""EAC downloadable message-trace reports: enhanced summary and extended (UTF-16LE CSV).

The enhanced summary has one row per message with `recipient_status` holding every recipient
and its events (`addr##Receive, Defer;addr2##Receive, Deliver`); each recipient becomes a
`TraceMessage` with the status its last event implies. The extended report has one row per
transport event (MSGTRK-like: `event_id` DEFER, SENDEXTERNAL, ...); each becomes a `TraceEvent`,
with `recipient_status` parsed as the deferral reason for DEFER/FAIL rows. Times are in the
`*_utc` columns (ISO with `Z`). The summary's "Export results" of the UI table (Date, Sender,
Recipient, Subject, Status) is read too; its dates are shown in the EAC's time zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.exotrace import (
    UTC_NOTE,
    Columns,
    TimeColumn,
    columns_of,
    local_zone_note,
    note_unless_zoned,
    reason_for,
    split_outside_quotes,
    status_from_events,
    time_column,
    to_int,
)
from mailflow_doctor.evidence.records import TraceEvent, TraceMessage
from mailflow_doctor.evidence.registry import register_reader
from mailflow_doctor.evidence.tabular import TableRow

MAX_RECIPIENTS_PER_ROW = 1000
MAX_EXTRA_CHARS = 512
_SUMMARY = ("sender_address", "recipient_status", "message_id")
_SUMMARY_TIME = ("origin_timestamp_utc", "origin_timestamp")
_UI_SUMMARY = ("Date", "Sender", "Recipient", "Subject", "Status")
_EXTENDED = ("date_time_utc", "event_id", "recipient_address")
_EXTENDED_EXTRA = (
    "source",
    "source_context",
    "connector_id",
    "server_hostname",
    "server_ip",
    "client_hostname",
    "client_ip",
    "original_client_ip",
    "original_server_ip",
    "directionality",
    "total_bytes",
    "network_message_id",
)


def _time(
    column: TimeColumn, row: TableRow, aliases: tuple[str, ...], doc: Document, ctx: ReadContext
) -> datetime | None:
    text = row.get(*aliases)
    when = column.parse(text) if text else None
    if text and when is None:
        ctx.warn(doc, row.line, f"time '{text[:60]}' is not a date this tool can read; left empty")
    return when


@register_reader
class EacSummaryReportReader:
    """EAC enhanced summary report (and the summary's "Export results")."""

    kind = "exo.eac_summary_report"
    label = "Exchange Online EAC message trace summary report"

    def sniff(self, doc: Document) -> int:
        columns = columns_of(doc)
        if columns is None:
            return 0
        header = columns.header
        if header.has(*_SUMMARY) and header.index(*_SUMMARY_TIME) is not None:
            return 80 if columns.format_list else 95
        if header.has(*_UI_SUMMARY) and not header.has("Event") and not columns.format_list:
            return 70
        return 0

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        columns = columns_of(doc)
        if columns is None:
            ctx.warn(doc, None, "no columns found; not read")
            return
        if columns.header.index(*_SUMMARY_TIME) is None:
            yield from self._read_ui_export(doc, ctx, columns)
            return
        column = time_column(
            doc, columns, _SUMMARY_TIME, "origin_timestamp_utc", None, UTC_NOTE, ctx
        )
        for row in columns.rows(doc, ctx):
            received = _time(column, row, _SUMMARY_TIME, doc, ctx)
            note = note_unless_zoned(row.get(*_SUMMARY_TIME), column.note)
            extra_common = tuple(
                (name, row.get(name)[:MAX_EXTRA_CHARS])
                for name in ("directionality", "connector_id", "delivery_priority")
                if row.get(name)
            )
            recipients = [
                part for part in split_outside_quotes(row.get("recipient_status"), ";") if part
            ]
            if len(recipients) > MAX_RECIPIENTS_PER_ROW:
                ctx.warn(
                    doc,
                    row.line,
                    f"{len(recipients)} recipients in one row; the first "
                    f"{MAX_RECIPIENTS_PER_ROW} are read",
                )
                recipients = recipients[:MAX_RECIPIENTS_PER_ROW]
            if not recipients:
                recipients = [""]
            for part in recipients:
                address, _, events_text = part.partition("##")
                events = [event.strip() for event in events_text.split(",") if event.strip()]
                yield TraceMessage(
                    ref=doc.ref(row.line, row.excerpt),
                    received_utc=received,
                    sender=row.get("sender_address"),
                    recipient=address.strip(),
                    subject=row.get("message_subject"),
                    status=status_from_events(events),
                    message_id=row.get("message_id"),
                    trace_id=row.get("network_message_id"),
                    from_ip=row.get("original_client_ip"),
                    size=to_int(row.get("total_bytes")),
                    extra=(("events", ", ".join(events)), *extra_common),
                    time_assumed=note,
                )

    def _read_ui_export(
        self, doc: Document, ctx: ReadContext, columns: Columns
    ) -> Iterator[object]:
        zone_note = local_zone_note(ctx.timezone, "EAC summary dates")
        column = time_column(doc, columns, ("Date",), "Date", ctx.timezone, zone_note, ctx)
        for row in columns.rows(doc, ctx):
            yield TraceMessage(
                ref=doc.ref(row.line, row.excerpt),
                received_utc=_time(column, row, ("Date",), doc, ctx),
                sender=row.get("Sender"),
                recipient=row.get("Recipient"),
                subject=row.get("Subject"),
                status=row.get("Status"),
                message_id=row.get("MessageId", "Message ID"),
                trace_id=row.get("MessageTraceId", "Message trace ID"),
                time_assumed=column.note,
            )


@register_reader
class EacExtendedReportReader:
    """EAC extended report: one row per transport event."""

    kind = "exo.eac_extended_report"
    label = "Exchange Online EAC message trace extended report"

    def sniff(self, doc: Document) -> int:
        columns = columns_of(doc)
        if columns is None or not columns.header.has(*_EXTENDED):
            return 0
        # `date_time_utc` is the EAC's own name; message tracking exports share the other
        # columns (event_id, source, message_id), so this reader must outbid theirs.
        return 95 if columns.header.has("source") else 85

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        columns = columns_of(doc)
        if columns is None:
            ctx.warn(doc, None, "no columns found; not read")
            return
        column = time_column(doc, columns, ("date_time_utc",), "date_time_utc", None, UTC_NOTE, ctx)
        for row in columns.rows(doc, ctx):
            when = _time(column, row, ("date_time_utc",), doc, ctx)
            note = note_unless_zoned(row.get("date_time_utc"), column.note)
            event = row.get("event_id")
            recipients = split_outside_quotes(row.get("recipient_address"), ";")
            statuses = _statuses(row.get("recipient_status"), len(recipients))
            extra = tuple(
                (name, row.get(name)[:MAX_EXTRA_CHARS]) for name in _EXTENDED_EXTRA if row.get(name)
            )
            for index, recipient in enumerate(recipients[:MAX_RECIPIENTS_PER_ROW]):
                status = statuses[index] if index < len(statuses) else ""
                yield TraceEvent(
                    ref=doc.ref(row.line, row.excerpt),
                    time_utc=when,
                    event=event,
                    action=row.get("source"),
                    detail=status,
                    data=row.get("custom_data")[:MAX_EXTRA_CHARS],
                    reason=reason_for(event, status),
                    message_id=row.get("message_id"),
                    trace_id=row.get("network_message_id"),
                    recipient=recipient.strip(),
                    sender=row.get("sender_address"),
                    subject=row.get("message_subject"),
                    time_assumed=note,
                    extra=extra,
                )


def _statuses(text: str, recipients: int) -> list[str]:
    """Align `recipient_status` with the recipients: split on `;` only outside `[...]`/quotes.

    A single recipient keeps the whole text (a reason holds `;` inside `[{...};{...}]`).
    """
    if recipients <= 1:
        return [text]
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char in "[{" and not quoted:
            depth += 1
        elif char in "]}" and not quoted and depth > 0:
            depth -= 1
        if char == ";" and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts
