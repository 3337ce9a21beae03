"""Helpers shared by the Exchange Online message-trace readers (CSV, JSON, EAC, pasted text).

Kept out of the reader modules so that each reader stays one short class: time columns read
with the order the whole column implies, JSON exports walked object by object with their line,
and the event vocabulary of the EAC reports mapped to the trace's status words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo

from mailflow_doctor.evidence.culturetime import DateOrder, DateOrderVote, parse_culture_time
from mailflow_doctor.evidence.document import Document, Line, ReadContext
from mailflow_doctor.evidence.reason import parse_reason
from mailflow_doctor.evidence.records import ParsedReason
from mailflow_doctor.evidence.tabular import (
    Header,
    TableRow,
    format_list_keys,
    normalise_name,
    read_format_list,
    read_rows,
    sniff_table,
)

MAX_JSON_BYTES = 128 * 1024 * 1024
MAX_JSON_VALUE_CHARS = 64 * 1024
UTC_NOTE = "no time zone in the file; read as UTC, as Exchange Online writes it"
_REASON_EVENTS = frozenset({"defer", "fail", "drop", "deferred", "failed", "dsn", "badmail"})
_CODE = re.compile(r"(?<![\w.])[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}(?![\w.])")


@dataclass(frozen=True)
class Columns:
    """The columns a file offers, as CSV (`Export-Csv`) or as pasted `Format-List` text."""

    header: Header
    format_list: bool

    def rows(self, doc: Document, ctx: ReadContext) -> Generator[TableRow, None, None]:
        return read_format_list(doc, ctx) if self.format_list else read_rows(doc, ctx)


def columns_of(doc: Document) -> Columns | None:
    """Find the columns from the head of the file; None when it is neither CSV nor a list."""
    lines = doc.head_lines(400)
    keys = format_list_keys(lines)
    if len(keys) >= 3:
        return Columns(Header(tuple(sorted(keys))), True)
    shape = sniff_table(lines)
    return Columns(shape.header, False) if shape is not None else None


@dataclass(frozen=True)
class TimeColumn:
    """How to read one time column of a file: field order, zone, and what was assumed."""

    order: DateOrder | None
    zone: tzinfo | None
    note: str
    warning: str = ""  # the day/month order had to be assumed or is contradictory

    def parse(self, text: str) -> datetime | None:
        return parse_culture_time(text, self.order, self.zone)


def time_column(
    doc: Document,
    columns: Columns,
    aliases: tuple[str, ...],
    label: str,
    zone: tzinfo | None,
    zone_note: str,
    ctx: ReadContext | None = None,
    siblings: tuple[str, ...] = ("StartDate", "EndDate"),
) -> TimeColumn:
    """Decide the day/month order of a time column from its values (a first, cheap pass).

    Columns written by the same shell in the same culture (`siblings`: PowerShell's
    StartDate/EndDate) vote too, so `03/04/2026` is settled by an `EndDate` of `28/11/2026`.
    The pass stops at the first value that settles the order; `zone` is where values without
    an offset are read (None = UTC) and `zone_note` says why. When the order had to be
    assumed, `ctx` (if given) gets a warning for the file.
    """
    vote = DateOrderVote()
    rows = columns.rows(doc, ReadContext())
    present = [name for name in siblings if columns.header.index(name) is not None]
    try:
        for row in rows:
            vote.observe(row.get(*aliases))
            for name in present:
                vote.observe(row.get(name))
            if vote.day_first_seen or vote.month_first_seen or vote.year_first_seen:
                break
    finally:
        rows.close()
    order, order_note = vote.decide(label)
    if order_note and ctx is not None:
        ctx.warn(doc, None, order_note)
    note = "; ".join(note for note in (order_note, zone_note) if note)
    return TimeColumn(order, zone, note, order_note)


_HAS_ZONE = re.compile(r"(?:Z|[+-]\d{2}:?\d{2}|\)/?)\s*$")


def note_unless_zoned(text: str, note: str) -> str:
    """`note` for a time that carries no zone of its own; "" when it says its zone."""
    return "" if _HAS_ZONE.search(text) else note


def local_zone_note(zone: tzinfo | None, what: str) -> str:
    """The note for a format that holds local time: which zone it was read in."""
    if zone is None:
        return f"{what} are local time without a zone; read as UTC (use --timezone)"
    return f"{what} are local time; read in {zone}"


def reason_for(event: str, detail: str) -> ParsedReason | None:
    """Parse the detail as a reason when the event or its text says it is one."""
    if not detail:
        return None
    if event.strip().lower() in _REASON_EVENTS or "LED=" in detail or _CODE.search(detail):
        return parse_reason(detail)
    return None


_DIGIT_GROUPING = re.compile(r"[\s,.'\u00a0\u202f]")


def to_int(text: str) -> int | None:
    """A size as exported, with culture digit grouping; None for anything else.

    `isdecimal`, not `isdigit`: superscripts such as "²" are digits to Python but not numbers
    `int()` can read, and a size column must never raise.
    """
    if text.isdecimal():  # nearly every size: nothing for the pattern below to take out
        return int(text) if len(text) < 19 else None
    digits = _DIGIT_GROUPING.sub("", text)
    return int(digits) if digits.isdecimal() and len(digits) < 19 else None


def json_objects(doc: Document, ctx: ReadContext) -> Iterator[tuple[int, dict[str, object]]]:
    """Every object of a JSON export with its line: an array, JSON lines, or OData wrappers.

    ConvertTo-Json writes one array; log shippers write one object per line; the Reporting
    Web Service wraps results in `{"d": {"results": [...]}}` or `{"value": [...]}`.
    """
    if doc.size > MAX_JSON_BYTES:
        ctx.warn(doc, None, f"JSON file larger than {MAX_JSON_BYTES // 2**20} MB; not read")
        return
    # Read whole, not line by line: `ConvertTo-Json -Compress` puts everything on one line.
    with doc.path.open("rb") as raw:
        raw.seek(doc.bom)
        text = raw.read(MAX_JSON_BYTES).decode(doc.encoding, errors="replace")
    decoder = json.JSONDecoder()
    position = 0
    line = 1
    length = len(text)
    while position < length:
        while position < length and text[position] in " \t\r\n,[]\ufeff":
            if text[position] == "\n":
                line += 1
            position += 1
        if position >= length:
            return
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            bad_line = line + text.count("\n", position, exc.pos)
            ctx.warn(doc, bad_line, f"not valid JSON here ({exc.msg}); skipped to the next line")
            next_break = text.find("\n", exc.pos)
            if next_break < 0:
                return
            line = bad_line + 1
            position = next_break + 1
            continue
        yield from _unwrap(value, line)
        line += text.count("\n", position, end)
        position = end


def _unwrap(value: object, line: int) -> Iterator[tuple[int, dict[str, object]]]:
    if isinstance(value, list):
        for item in value:
            yield from _unwrap(item, line)
        return
    if not isinstance(value, dict):
        return
    lowered = {normalise_name(str(key)): item for key, item in value.items()}
    for wrapper in ("d", "value", "results"):
        inner = lowered.get(wrapper)
        if isinstance(inner, list | dict) and len(value) <= 3:
            yield from _unwrap(inner, line)
            return
    yield line, value


def json_get(obj: dict[str, object], *aliases: str) -> str:
    """A JSON value by case/space-insensitive key, as text ("" for null or missing)."""
    wanted = {normalise_name(alias) for alias in aliases}
    for key, value in obj.items():
        if normalise_name(str(key)) in wanted:
            if value is None:
                return ""
            if isinstance(value, str):
                return value[:MAX_JSON_VALUE_CHARS]
            if isinstance(value, bool):
                return str(value)
            if isinstance(value, int | float):
                return str(value)
            return json.dumps(value)[:4096]
    return ""


def json_keys(doc: Document) -> set[str]:
    """The normalised keys quoted in the head of a JSON file (for sniffers)."""
    return {
        normalise_name(key) for key in re.findall(r'"([A-Za-z_][A-Za-z0-9_ ]{0,40})"\s*:', doc.head)
    }


def looks_like_json(doc: Document) -> bool:
    head = doc.head.lstrip("\ufeff \t\r\n")
    return head.startswith(("{", "["))


EAC_STATUS = {
    "deliver": "Delivered",
    "send": "Delivered",
    "sendexternal": "Delivered",
    "fail": "Failed",
    "defer": "Pending",
    "expand": "Expanded",
    "quarantined": "Quarantined",
    "filteredasspam": "FilteredAsSpam",
    "receive": "Pending",
    "submit": "Pending",
}


def status_from_events(events: list[str]) -> str:
    """The trace status word for a recipient's event list (`Receive, Defer` -> `Pending`)."""
    for event in reversed(events):
        key = normalise_name(event)
        if key in EAC_STATUS:
            return EAC_STATUS[key]
    return events[-1].strip() if events else ""


def split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split on `separator` where it is not inside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


# --- console tables (Format-Table output pasted as text) ---

TABLE_DASHES = re.compile(r"^\s*-{2,}(?:\s+-{2,})*\s*$")


def table_columns(header: str, dashes: str) -> list[tuple[str, int]]:
    """Format-Table columns: (name key, start position) from the dashed line under the header."""
    columns: list[tuple[str, int]] = []
    for match in re.finditer(r"-+", dashes):
        name = header[match.start() : match.end()].strip()
        if not name:  # a dashed line longer than its header
            name = (header[match.start() :].split() or [""])[0]
        columns.append((normalise_name(name), match.start()))
    return columns


def slice_row(text: str, columns: list[tuple[str, int]]) -> dict[str, str]:
    row: dict[str, str] = {}
    for index, (name, start) in enumerate(columns):
        end = columns[index + 1][1] if index + 1 < len(columns) else len(text)
        row[name] = text[start:end].strip() if start < len(text) else ""
    return row


@dataclass(frozen=True)
class ConsoleRow:
    """One row of a pasted console table: its first line and its cells by column key."""

    line: Line
    cells: dict[str, str]


def find_console_table(lines: list[str]) -> int | None:
    """Index of a header line that has a dashed line under it, or None."""
    for index in range(len(lines) - 1):
        if lines[index].strip() and TABLE_DASHES.match(lines[index + 1]):
            return index
    return None


def console_rows(doc: Document) -> Iterator[ConsoleRow]:
    """Rows of the first console table in `doc`; wrapped lines (`-Wrap`) join their row."""
    previous: str | None = None
    columns: list[tuple[str, int]] = []
    current: ConsoleRow | None = None
    for line in doc.lines():
        text = line.text.rstrip()
        if not columns:
            if previous is not None and previous.strip() and TABLE_DASHES.match(text):
                columns = table_columns(previous, text)
            previous = text
            continue
        if not text.strip():
            continue
        cells = slice_row(text, columns)
        if current is not None and not cells.get(columns[0][0]):
            for key, value in cells.items():  # a wrapped continuation of the row above
                if value and len(current.cells.get(key, "")) < MAX_JSON_VALUE_CHARS:
                    current.cells[key] = f"{current.cells.get(key, '')} {value}".strip()
            continue
        if current is not None:
            yield current
        current = ConsoleRow(line, cells)
    if current is not None:
        yield current
