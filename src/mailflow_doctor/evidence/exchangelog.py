"""Exchange's W3C-like CSV logs: the `#` header block and the comma-separated rows after it.

SMTP protocol logs and message tracking logs share one writer: a `#Software/#Version/
#Log-type/#Date/#Fields` block (repeated mid-file when the transport service restarts), then
one event per line, RFC 4180 quoting only where a field holds a comma or a quote. Only a line
that *starts* with `#` is a header line: a `#` inside a row is data (pandas' `comment='#'`
silently corrupts these files). Files cut out of a larger log, or pasted from a forum, have no
header at all, so a row is also recognised by its shape (an ISO time first, a known number of
fields). Rows without quotes, the vast majority, are split with `str.split` (the fast path);
only rows holding a `"` go through the `csv` module.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import NamedTuple

from mailflow_doctor.evidence.document import Document, ReadContext

PROTOCOL_FIELDS: tuple[str, ...] = (
    "date-time",
    "connector-id",
    "session-id",
    "sequence-number",
    "local-endpoint",
    "remote-endpoint",
    "event",
    "data",
    "context",
)

_TRACKING_2010_RTM: tuple[str, ...] = (
    "date-time",
    "client-ip",
    "client-hostname",
    "server-ip",
    "server-hostname",
    "source-context",
    "connector-id",
    "source",
    "event-id",
    "internal-message-id",
    "message-id",
    "recipient-address",
    "recipient-status",
    "total-bytes",
    "recipient-count",
    "related-recipient-address",
    "reference",
    "message-subject",
    "sender-address",
    "return-path",
    "message-info",
)
TRACKING_FIELDS_2010: tuple[str, ...] = (
    *_TRACKING_2010_RTM,
    "directionality",
    "tenant-id",
    "original-client-ip",
    "original-server-ip",
    "custom-data",
)
TRACKING_FIELDS_2013: tuple[str, ...] = (
    *TRACKING_FIELDS_2010[:11],
    "network-message-id",
    *TRACKING_FIELDS_2010[11:],
)
TRACKING_FIELDS_2016: tuple[str, ...] = (
    *TRACKING_FIELDS_2013,
    "transport-traffic-type",
    "log-id",
    "schema-version",
)
TRACKING_FIELDS_BY_COUNT: dict[int, tuple[str, ...]] = {
    21: _TRACKING_2010_RTM,
    26: TRACKING_FIELDS_2010,
    27: TRACKING_FIELDS_2013,
    30: TRACKING_FIELDS_2016,
}

_ROW_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,7})?Z?,")
_EVENT_CHARS = frozenset("+-<>*")


@dataclass(frozen=True)
class LogHeader:
    """What the `#` block said; `fields` is empty until a `#Fields` line is seen."""

    software: str = ""
    version: str = ""
    log_type: str = ""
    date: str = ""
    fields: tuple[str, ...] = ()

    @property
    def is_protocol(self) -> bool:
        return "protocol log" in self.log_type.lower()

    @property
    def is_tracking(self) -> bool:
        return "message tracking" in self.log_type.lower()


def apply_header_line(header: LogHeader, line: str) -> LogHeader:
    """Fold one `#Key: value` line into the header; unknown keys are ignored."""
    key, _, value = line[1:].partition(":")
    key = key.strip().lower()
    value = value.strip()
    if key == "fields":
        return replace(header, fields=tuple(f.strip().lower() for f in value.split(",")))
    if key == "software":
        return replace(header, software=value)
    if key == "version":
        return replace(header, version=value)
    if key == "log-type":
        return replace(header, log_type=value)
    if key == "date":
        return replace(header, date=value)
    return header


def read_header(lines: Sequence[str]) -> LogHeader | None:
    """The header block at the top of `lines` (a sniffer's head), or None when there is none."""
    header: LogHeader | None = None
    for line in lines:
        text = line.lstrip("\ufeff")
        if not text.startswith("#"):
            if text.strip():
                break
            continue
        header = apply_header_line(header or LogHeader(), text)
    return header


def split_row(line: str) -> list[str]:
    """Split one log row into fields, as Exchange's writer quotes them. Never raises.

    Unquoted rows take the fast path; a row holding `"` is read by the csv module, and when
    even that fails (a stray quote, a NUL) the row is split on commas so nothing is lost.
    """
    if '"' not in line:
        return line.split(",")
    try:
        for row in csv.reader([line]):
            return row
    except csv.Error:
        pass
    return line.split(",")


def join_row(fields: Sequence[str]) -> str:
    """Write fields the way Exchange does: quote only a field holding a comma or a quote."""
    out: list[str] = []
    for value in fields:
        if "," in value or '"' in value or "\n" in value or "\r" in value:
            out.append('"' + value.replace('"', '""') + '"')
        else:
            out.append(value)
    return ",".join(out)


def parse_log_time(text: str) -> datetime | None:
    """`2023-01-11T15:59:51.433Z` (UTC, as every Exchange log writes it) to an aware datetime."""
    text = text.strip()
    if len(text) < 19 or text[4] != "-" or text[10] not in "T ":
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def looks_like_row(line: str) -> bool:
    """A data row starts with an ISO UTC time and a comma."""
    return _ROW_TIME.match(line) is not None


def protocol_row_shape(line: str) -> bool:
    """Is this header-less line a protocol-log row (9 fields, an event symbol in field 7)?"""
    if not looks_like_row(line):
        return False
    fields = split_row(line)
    return len(fields) >= 8 and fields[6] in _EVENT_CHARS and fields[2] != ""


def tracking_row_shape(line: str) -> bool:
    """Is this header-less line a message tracking row (21/26/27/30 fields, an event id)?"""
    if not looks_like_row(line):
        return False
    fields = split_row(line)
    layout = TRACKING_FIELDS_BY_COUNT.get(len(fields))
    if layout is None:
        return False
    event = fields[8]
    return event.isupper() and event.isalpha() and fields[7].isupper()


_LOG_NAME_SERVER = re.compile(
    r"^(?P<server>.+?)[_\-. ]+(?:RECV|SEND|MSGTRK[A-Z]{0,2})\d{6,10}", re.IGNORECASE
)
_GENERIC_DIRS = frozenset(
    {
        "transportroles",
        "logs",
        "frontend",
        "hub",
        "edge",
        "mailbox",
        "protocollog",
        "smtpreceive",
        "smtpsend",
        "messagetracking",
        "delivery",
        "submission",
        "v14",
        "v15",
        "exchange server",
        "microsoft",
        "program files",
        "evidence",
        "logs_export",
    }
)
_LOG_DIRS = frozenset(
    {
        "transportroles",
        "logs",
        "frontend",
        "hub",
        "edge",
        "protocollog",
        "smtpreceive",
        "smtpsend",
        "messagetracking",
    }
)


def server_from_path(display: str) -> str:
    """Guess the server from where the admin collected the file: `EX01/SmtpReceive/RECV...`.

    Returns "" when the path names no server (a bare file name, a default install path).
    """
    parts = [p for p in re.split(r"[\\/!]", display) if p]
    if not parts:
        return ""
    name_hint = _LOG_NAME_SERVER.match(parts[-1])
    if name_hint:
        return name_hint.group("server")
    folders = parts[:-1]
    for index, part in enumerate(folders):
        if part.lower() in _LOG_DIRS and index > 0:
            candidate = folders[index - 1]
            low = candidate.lower()
            if low in _GENERIC_DIRS or low.endswith(":") or low.startswith(("tmp", "mailflow-")):
                return ""
            return candidate
    return ""


class LogRow(NamedTuple):
    """One data row with its 1-based line number and the header in force where it was read.

    A named tuple rather than a dataclass: one is made per row, and this is the hot loop.
    """

    line: int
    fields: list[str]
    header: LogHeader
    text: str


def iter_rows(
    doc: Document,
    ctx: ReadContext,
    default_fields: tuple[str, ...] | None = None,
    layouts: dict[int, tuple[str, ...]] | None = None,
) -> Iterator[LogRow]:
    """Every data row of an Exchange log, with the header in force at that row.

    A `#` line only counts at the start of a line; a later `#Fields` replaces the earlier one
    (a restarted service can write a different field list). A row before any `#Fields` takes
    `default_fields`, or the layout in `layouts` that matches its field count. Cut and
    unreadable lines are reported once per line and skipped.
    """
    header = LogHeader()
    by_width: dict[int, LogHeader] = {}  # the header lent to header-less rows, per row width
    for line in doc.lines():
        text = line.text
        if line.number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        if line.truncated:
            ctx.warn(doc, line.number, "line longer than the reader's limit; skipped")
            continue
        if not text:
            continue
        if text[0] == "#":
            header = apply_header_line(header, text)
            by_width.clear()
            continue
        fields = split_row(text)
        in_force = header
        if not header.fields:
            lent = by_width.get(len(fields))
            if lent is None:
                layout = (layouts or {}).get(len(fields)) or default_fields
                lent = replace(header, fields=layout) if layout is not None else header
                by_width[len(fields)] = lent
            in_force = lent
        yield LogRow(line.number, fields, in_force, text)
