"""Exchange Online message trace exports: Get-MessageTrace(V2) and Get-MessageTraceDetail(V2).

Admins export these with `Export-Csv` (quoted, `,` or `;` with -UseCulture, maybe a `#TYPE`
line, dates in the exporting shell's culture) or with `ConvertTo-Json`. Exchange Online writes
UTC, so a value without an offset is read as UTC whatever `--timezone` says; only the day/month
order has to be worked out, per column, from the values. A trace row becomes a `TraceMessage`,
a detail row a `TraceEvent` whose `Detail` is parsed as a deferral reason when it is one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache

from mailflow_doctor.evidence.culturetime import DateOrderVote
from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.exotrace import (
    UTC_NOTE,
    TimeColumn,
    columns_of,
    console_rows,
    find_console_table,
    json_get,
    json_keys,
    json_objects,
    looks_like_json,
    note_unless_zoned,
    reason_for,
    table_columns,
    time_column,
    to_int,
)
from mailflow_doctor.evidence.records import TraceEvent, TraceMessage
from mailflow_doctor.evidence.registry import register_reader
from mailflow_doctor.evidence.tabular import Header, Picker, TableRow, normalise_name

MAX_EXTRA_CHARS = 512
_TRACE_COLUMNS = ("Received", "SenderAddress", "RecipientAddress", "Status")
_DETAIL_COLUMNS = ("Date", "Event", "Detail")
_DATE = ("Date", "DateTime")  # Microsoft Graph exchangeMessageTraceDetail says dateTime
_DETAIL = ("Detail", "Description")  # ... and description
# The columns each CSV row is read from, in the order the readers unpack them.
_TRACE_PICK = tuple(
    (name,)
    for name in (
        "Received",
        "SenderAddress",
        "RecipientAddress",
        "Subject",
        "Status",
        "MessageId",
        "MessageTraceId",
        "FromIP",
        "ToIP",
        "Size",
    )
)
_DETAIL_PICK = (
    _DATE,
    ("Event",),
    ("Action",),
    _DETAIL,
    ("Data",),
    ("MessageId",),
    ("MessageTraceId",),
    ("RecipientAddress",),
    ("SenderAddress",),
)
_MAPPED_TRACE = frozenset(
    normalise_name(name)
    for name in (
        *_TRACE_COLUMNS,
        "Subject",
        "MessageId",
        "MessageTraceId",
        "FromIP",
        "ToIP",
        "Size",
        "PSComputerName",
        "RunspaceId",
        "PSShowComputerName",
    )
)
_MAPPED_DETAIL = frozenset(
    normalise_name(name)
    for name in (
        *_DETAIL_COLUMNS,
        "DateTime",
        "Description",
        "Action",
        "Data",
        "MessageId",
        "MessageTraceId",
        "RecipientAddress",
        "SenderAddress",
        "PSComputerName",
        "RunspaceId",
        "PSShowComputerName",
    )
)


def _extra(pairs: Iterator[tuple[str, str]], mapped: frozenset[str]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (name, value[:MAX_EXTRA_CHARS])
        for name, value in pairs
        if value and normalise_name(name) not in mapped
    )


def _row_extra(row: TableRow, mapped: frozenset[str]) -> tuple[tuple[str, str], ...]:
    """Columns the record has no field for, without re-checking names on every row."""
    unmapped = _unmapped(row.header, mapped)
    if not unmapped:
        return ()
    names = row.header.names
    values = row.values
    width = len(values)
    return tuple(
        (names[i], values[i][:MAX_EXTRA_CHARS]) for i in unmapped if i < width and values[i]
    )


@lru_cache(maxsize=64)
def _unmapped(header: Header, mapped: frozenset[str]) -> tuple[int, ...]:
    """Positions of the columns whose names are not in `mapped` (once per file, not per row)."""
    return tuple(i for i, key in enumerate(header.keys) if key not in mapped)


def _when(
    column: TimeColumn, text: str, doc: Document, ctx: ReadContext, line: int
) -> datetime | None:
    when = column.parse(text) if text else None
    if text and when is None:
        ctx.warn(doc, line, f"time '{text[:60]}' is not a date this tool can read; left empty")
    return when


def _console_table(doc: Document) -> int | None:
    """Where a pasted Get-MessageTrace console table starts (its header line), if any."""
    lines = doc.head_lines(60)
    index = find_console_table(lines)
    if index is None:
        return None
    keys = {key for key, _ in table_columns(lines[index], lines[index + 1])}
    if {"received", "status"} <= keys and keys & {"senderaddress", "recipientaddress"}:
        return index
    return None


@register_reader
class MessageTraceReader:
    """Get-MessageTrace / Get-MessageTraceV2 output as CSV or JSON."""

    kind = "exo.message_trace"
    label = "Exchange Online message trace (Get-MessageTrace)"

    def sniff(self, doc: Document) -> int:
        if looks_like_json(doc):
            keys = json_keys(doc)
            wanted = {"received", "recipientaddress", "status"}
            return 90 if wanted <= keys else 0
        columns = columns_of(doc)
        if columns is None or not columns.header.has(*_TRACE_COLUMNS):
            return 75 if _console_table(doc) is not None else 0
        if columns.format_list:
            return 80
        return 95 if columns.header.has("MessageTraceId") else 85

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        if looks_like_json(doc):
            yield from self._read_json(doc, ctx)
            return
        columns = columns_of(doc)
        as_csv = columns is not None and columns.header.has(*_TRACE_COLUMNS)
        if not as_csv and _console_table(doc) is not None:
            yield from self._read_console(doc, ctx)
            return
        if columns is None:
            ctx.warn(doc, None, "no columns found; not read")
            return
        column = time_column(doc, columns, ("Received",), "Received", None, UTC_NOTE, ctx)
        pick = Picker(*_TRACE_PICK)
        for row in columns.rows(doc, ctx):
            yield self._message(row, pick(row), column, doc, ctx)

    def _read_console(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        """`Get-MessageTrace` as the console shows it (Format-Table), pasted as text."""
        vote = DateOrderVote()
        for row in console_rows(doc):
            vote.observe(row.cells.get("received", ""))
        order, order_note = vote.decide("Received")
        if order_note:
            ctx.warn(doc, None, order_note)
        note = "; ".join(n for n in (order_note, UTC_NOTE) if n)
        column = TimeColumn(order, None, note, order_note)
        for row in console_rows(doc):
            cells = row.cells
            yield TraceMessage(
                ref=doc.ref(row.line.number, row.line.text),
                received_utc=_when(column, cells.get("received", ""), doc, ctx, row.line.number),
                sender=cells.get("senderaddress", ""),
                recipient=cells.get("recipientaddress", ""),
                subject=cells.get("subject", ""),
                status=cells.get("status", ""),
                message_id=cells.get("messageid", ""),
                trace_id=cells.get("messagetraceid", ""),
                from_ip=cells.get("fromip", ""),
                to_ip=cells.get("toip", ""),
                size=to_int(cells.get("size", "")),
                time_assumed=note,
            )

    def _message(
        self,
        row: TableRow,
        cells: list[str],
        column: TimeColumn,
        doc: Document,
        ctx: ReadContext,
    ) -> TraceMessage:
        received, sender, recipient, subject, status, message_id, trace_id = cells[:7]
        from_ip, to_ip, size = cells[7:]
        return TraceMessage(
            ref=doc.ref(row.line, row.excerpt),
            received_utc=_when(column, received, doc, ctx, row.line),
            sender=sender,
            recipient=recipient,
            subject=subject,
            status=status,
            message_id=message_id,
            trace_id=trace_id,
            from_ip=from_ip,
            to_ip=to_ip,
            size=to_int(size),
            extra=_row_extra(row, _MAPPED_TRACE),
            time_assumed=column.note,
        )

    def _read_json(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        column = TimeColumn(None, None, UTC_NOTE)
        for line, obj in json_objects(doc, ctx):
            received_text = json_get(obj, "Received")
            received = _when(column, received_text, doc, ctx, line)
            yield TraceMessage(
                ref=doc.ref(line, f"{received_text} {json_get(obj, 'RecipientAddress')}"),
                received_utc=received,
                sender=json_get(obj, "SenderAddress"),
                recipient=json_get(obj, "RecipientAddress"),
                subject=json_get(obj, "Subject"),
                status=json_get(obj, "Status"),
                message_id=json_get(obj, "MessageId"),
                trace_id=json_get(obj, "MessageTraceId"),
                from_ip=json_get(obj, "FromIP"),
                to_ip=json_get(obj, "ToIP"),
                size=to_int(json_get(obj, "Size")),
                extra=_extra(
                    ((str(k), json_get(obj, str(k))) for k in obj if not str(k).startswith("__")),
                    _MAPPED_TRACE,
                ),
                time_assumed=note_unless_zoned(received_text, UTC_NOTE),
            )


@register_reader
class MessageTraceDetailReader:
    """Get-MessageTraceDetail / Get-MessageTraceDetailV2 output as CSV or JSON."""

    kind = "exo.message_trace_detail"
    label = "Exchange Online message trace detail (Get-MessageTraceDetail)"

    def sniff(self, doc: Document) -> int:
        if looks_like_json(doc):
            keys = json_keys(doc)
            if "event" not in keys or not keys & {"date", "datetime"}:
                return 0
            return 90 if keys & {"detail", "description"} else 0
        columns = columns_of(doc)
        if columns is None or columns.format_list:
            return 0  # pasted Format-List text is exo.message_trace_detail_text's
        header = columns.header
        if header.index("Event") is None or header.index(*_DATE) is None:
            return 0
        if header.index(*_DETAIL) is None:
            return 0
        if columns.header.has("Received") or columns.header.has("date_time_utc"):
            return 0
        return 95 if columns.header.has("Action") else 85

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        if looks_like_json(doc):
            yield from self._read_json(doc, ctx)
            return
        columns = columns_of(doc)
        if columns is None:
            ctx.warn(doc, None, "no columns found; not read")
            return
        column = time_column(doc, columns, _DATE, "Date", None, UTC_NOTE, ctx)
        pick = Picker(*_DETAIL_PICK)
        for row in columns.rows(doc, ctx):
            date, event, action, detail, data, message_id, trace_id, recipient, sender = pick(row)
            yield TraceEvent(
                ref=doc.ref(row.line, row.excerpt),
                time_utc=_when(column, date, doc, ctx, row.line),
                event=event,
                action=action,
                detail=detail,
                data=data,
                reason=reason_for(event, detail),
                message_id=message_id,
                trace_id=trace_id,
                recipient=recipient,
                sender=sender,
                time_assumed=column.note,
                extra=_row_extra(row, _MAPPED_DETAIL),
            )

    def _read_json(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        column = TimeColumn(None, None, UTC_NOTE)
        for line, obj in json_objects(doc, ctx):
            date_text = json_get(obj, *_DATE)
            event = json_get(obj, "Event")
            detail = json_get(obj, "Detail", "Description")
            yield TraceEvent(
                ref=doc.ref(line, f"{date_text} {event} {detail}"),
                time_utc=_when(column, date_text, doc, ctx, line),
                event=event,
                action=json_get(obj, "Action"),
                detail=detail,
                data=json_get(obj, "Data"),
                reason=reason_for(event, detail),
                message_id=json_get(obj, "MessageId"),
                trace_id=json_get(obj, "MessageTraceId"),
                recipient=json_get(obj, "RecipientAddress"),
                sender=json_get(obj, "SenderAddress"),
                time_assumed=note_unless_zoned(date_text, UTC_NOTE),
            )
