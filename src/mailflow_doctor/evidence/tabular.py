"""CSV intake for PowerShell and EAC exports, as admins actually hand them over.

`Export-Csv` quotes every field and, in Windows PowerShell 5.1 without `-NoTypeInformation`,
starts with a `#TYPE ...` line; `-UseCulture` and Excel re-saves in European locales use `;`;
some tools write tabs; Excel may add a `sep=;` line. Fields may hold delimiters and line breaks
inside quotes. This module finds the delimiter from the header, matches column names however
they are cased or spaced (`RecipientAddress`, `recipient_address`, `Recipient Address`), and
streams rows with the line each starts on, so a record can point at its evidence even after a
multi-line field. A quote that is never closed costs one warning and one row, not the file.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from mailflow_doctor.evidence.document import Document, Line, ReadContext

DELIMITERS = (",", ";", "\t")
MAX_FIELD_CHARS = 64 * 1024
MAX_ROW_LINES = 200
MAX_ROW_CHARS = 1024 * 1024
EXCERPT_CHARS = 300
MAX_LEAD_LINES = 20  # blank, #TYPE and sep= lines allowed before the header

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_SEP_LINE = re.compile(r"^\s*\"?sep=(?P<d>.)\"?\s*$", re.IGNORECASE)


def normalise_name(name: str) -> str:
    """Column key: letters and digits, lower case (`Recipient_Address` -> `recipientaddress`)."""
    if len(name) > 120:  # no real column name is this long; do not let it into the cache
        return _NOT_ALNUM.sub("", clean_name(name).lower())
    return _normalise_short(name)


@lru_cache(maxsize=4096)
def _normalise_short(name: str) -> str:
    return _NOT_ALNUM.sub("", clean_name(name).lower())


def clean_name(name: str) -> str:
    """A header name as shown to people: without BOM, NULs, stray quotes or padding."""
    return name.replace("\ufeff", "").replace("\x00", "").strip().strip('"').strip()


@dataclass(frozen=True)
class Header:
    """The column names of a table, with case- and space-insensitive lookup."""

    names: tuple[str, ...]
    keys: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _positions: dict[str, int] = field(init=False, repr=False, compare=False)
    _lookups: dict[tuple[str, ...], int | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = tuple(normalise_name(name) for name in self.names)
        positions: dict[str, int] = {}
        for position, key in enumerate(keys):
            positions.setdefault(key, position)  # a repeated name: the first one counts
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "_positions", positions)
        object.__setattr__(self, "_lookups", {})

    def index(self, *aliases: str) -> int | None:
        """Position of the first alias present (aliases are matched normalised)."""
        lookups = self._lookups
        if aliases in lookups:
            return lookups[aliases]
        found: int | None = None
        for alias in aliases:
            found = self._positions.get(normalise_name(alias))
            if found is not None:
                break
        if len(lookups) < 256:  # readers ask with a few constant alias lists
            lookups[aliases] = found
        return found

    def has(self, *names: str) -> bool:
        """True when every name is a column."""
        return all(self.index(name) is not None for name in names)

    def __hash__(self) -> int:
        return hash(self.names)


@dataclass(frozen=True)
class TableShape:
    """What the first lines say about a table: delimiter, header and where it stands."""

    delimiter: str
    header: Header
    header_line: int  # 1-based physical line of the header
    type_line: str = ""  # the `#TYPE ...` line of Export-Csv, when present


@dataclass(frozen=True)
class TableRow:
    """One data row: its values, the 1-based line it starts on, and a short excerpt."""

    line: int
    values: tuple[str, ...]
    header: Header
    excerpt: str
    lines: int = 1  # physical lines the row spans

    def get(self, *aliases: str) -> str:
        """The stripped value of the first alias that is a column, else ""."""
        index = self.header.index(*aliases)
        values = self.values
        if index is None or index >= len(values):
            return ""
        return values[index].strip()

    def as_dict(self) -> dict[str, str]:
        return dict(zip(self.header.names, self.values, strict=False))


class Picker:
    """The stripped values of a fixed set of columns, looked up once per header, not per row.

    `Picker(("Date", "DateTime"), ("Event",))(row)` gives the same values as
    `(row.get("Date", "DateTime"), row.get("Event"))`: CSV rows share one header, so the
    positions are found on the first row and reused while the header stays the same object.
    """

    def __init__(self, *columns: tuple[str, ...]) -> None:
        self._columns = columns
        self._header: Header | None = None
        self._positions: tuple[int, ...] = ()

    def __call__(self, row: TableRow) -> list[str]:
        header = row.header
        if header is not self._header:
            self._positions = tuple(
                -1 if (index := header.index(*aliases)) is None else index
                for aliases in self._columns
            )
            self._header = header
        values = row.values
        width = len(values)
        return [values[i].strip() if 0 <= i < width else "" for i in self._positions]


def _count_outside_quotes(line: str, char: str) -> int:
    count = 0
    quoted = False
    for current in line:
        if current == '"':
            quoted = not quoted
        elif current == char and not quoted:
            count += 1
    return count


def sniff_delimiter(header_line: str) -> str:
    """The delimiter that splits the header line most often; `,` when none does."""
    best, best_count = ",", 0
    for candidate in DELIMITERS:
        count = _count_outside_quotes(header_line, candidate)
        if count > best_count:
            best, best_count = candidate, count
    return best


def sniff_table(lines: Sequence[str]) -> TableShape | None:
    """Read the shape of a table from its first lines (e.g. `doc.head_lines()`); None if empty."""
    type_line = ""
    forced: str | None = None
    for number, raw in enumerate(lines, 1):
        text = raw.replace("\x00", "")
        if number == 1:
            text = text.lstrip("\ufeff")
        if not text.strip():
            continue
        if text.startswith("#TYPE"):
            type_line = text.strip()
            continue
        sep = _SEP_LINE.match(text)
        if sep and forced is None:
            forced = sep["d"]
            continue
        delimiter = forced or sniff_delimiter(text)
        try:
            names = next(csv.reader([text], delimiter=delimiter))
        except (csv.Error, StopIteration):
            return None
        cleaned = tuple(clean_name(name) for name in names)
        if not any(cleaned):
            return None
        return TableShape(delimiter, Header(cleaned), number, type_line)
    return None


class _RowTooLong(Exception):
    """Raised from inside the line feed when one row swallows too many lines."""


class _Feed:
    """Feeds lines to csv.reader and remembers which lines the current row consumed."""

    def __init__(self, lines: Iterator[Line], doc: Document, ctx: ReadContext) -> None:
        self._source = lines
        self._replay: deque[Line] = deque()
        self.doc = doc
        self.ctx = ctx
        self.consumed: list[Line] = []
        self.chars = 0
        self.warned_nul = False
        self.last_warned = 0

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        line = self._replay.popleft() if self._replay else next(self._source)
        consumed = self.consumed
        consumed.append(line)
        text = line.text
        self.chars += len(text)
        if len(consumed) > MAX_ROW_LINES or self.chars > MAX_ROW_CHARS:
            raise _RowTooLong
        if line.truncated and line.number > self.last_warned:
            self.last_warned = line.number
            self.ctx.warn(
                self.doc, line.number, f"line is longer than {len(text)} characters; cut there"
            )
        if "\x00" in text:
            text = text.replace("\x00", "")
            if not self.warned_nul:
                self.warned_nul = True
                self.ctx.warn(
                    self.doc,
                    line.number,
                    "NUL characters removed (the file may be UTF-16 saved with the wrong encoding)",
                )
        return text + "\n"

    def start_row(self) -> None:
        self.consumed = []
        self.chars = 0

    def replay_after_first(self) -> Line | None:
        """Give back all but the first consumed line; return the first (to skip it)."""
        if not self.consumed:
            return None
        first, rest = self.consumed[0], self.consumed[1:]
        self._replay.extendleft(reversed(rest))
        self.consumed = []
        self.chars = 0
        return first


def _single_line(line: Line, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line.text.replace("\x00", "")], delimiter=delimiter), [])
    except csv.Error:
        return [line.text]


def _raise_field_limit() -> None:
    # The csv module's limit is process-wide; raise it (never lower it) so that a long but
    # legitimate field (an EAC message_info) is read, and let our own bounds cut it.
    if csv.field_size_limit() < MAX_ROW_CHARS:
        csv.field_size_limit(MAX_ROW_CHARS)


def read_rows(
    doc: Document, ctx: ReadContext, max_field: int = MAX_FIELD_CHARS
) -> Generator[TableRow, None, None]:
    """Stream the data rows of `doc` after its header. Never raises for bad content.

    Problems (rows with the wrong number of fields, unclosed quotes, overlong fields) are
    reported with their line through `ctx.warn`, and reading goes on with the next row.
    """
    _raise_field_limit()
    source = doc.lines()
    seen: list[str] = []
    shape: TableShape | None = None
    for line in source:
        seen.append(line.text)
        shape = sniff_table(seen)
        if shape is not None or len(seen) >= MAX_LEAD_LINES:
            break
    if shape is None:
        ctx.warn(doc, None, "no header line found; not read as a table")
        return
    header = shape.header
    width = len(header.names)
    feed = _Feed(source, doc, ctx)
    reader = csv.reader(feed, delimiter=shape.delimiter)
    while True:
        feed.start_row()
        try:
            values = next(reader)
        except StopIteration:
            return
        except _RowTooLong:
            first = feed.replay_after_first()
            if first is None:
                return
            ctx.warn(
                doc,
                first.number,
                f"a quoted field starting on this line is not closed within {MAX_ROW_LINES} "
                "lines; the row is skipped and reading goes on with the next line",
            )
            reader = csv.reader(feed, delimiter=shape.delimiter)
            continue
        except csv.Error as exc:
            number = feed.consumed[0].number if feed.consumed else None
            ctx.warn(doc, number, f"row could not be read as CSV ({exc}); skipped")
            reader = csv.reader(feed, delimiter=shape.delimiter)
            continue
        consumed = feed.consumed
        if not consumed:
            continue
        start = consumed[0].number
        if not values or (len(values) == 1 and not values[0].strip()):
            continue
        if len(consumed) > 1 and (len(values) != width or consumed[0].truncated):
            # A stray quote (or a line cut inside a quoted field) swallowed the lines below
            # it: read them again as their own rows.
            first = feed.replay_after_first()
            ctx.warn(
                doc,
                start,
                f"unbalanced quote: the row runs over {len(consumed)} lines and has "
                f"{len(values)} of {width} fields; the lines below are read again on their own",
            )
            reader = csv.reader(feed, delimiter=shape.delimiter)
            values = _single_line(first, shape.delimiter) if first is not None else []
            consumed = consumed[:1]
        if len(values) != width:
            ctx.warn(
                doc,
                start,
                f"row has {len(values)} fields, the header has {width}; "
                + ("missing ones read as empty" if len(values) < width else "extra ones ignored"),
            )
        # A field is never longer than the line it came from: one short line needs no check.
        short = len(consumed) == 1 and len(consumed[0].text) <= max_field
        if not short and max(map(len, values), default=0) > max_field:
            values = [value[:max_field] for value in values]
            ctx.warn(doc, start, f"a field longer than {max_field} characters was cut")
        first_text = consumed[0].text
        if "\x00" in first_text:
            first_text = first_text.replace("\x00", "")
        yield TableRow(start, tuple(values), header, first_text[:EXCERPT_CHARS], len(consumed))


# --- Format-List text ------------------------------------------------------------------------

_FL_KEY = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_\-]{0,60})\s+:(?:\s(?P<value>.*))?$")


def format_list_keys(lines: Sequence[str]) -> set[str]:
    """Normalised property names of `Format-List` text in `lines` (for sniffers)."""
    return {
        normalise_name(match["key"]) for line in lines if (match := _FL_KEY.match(line.rstrip()))
    }


def read_format_list(
    doc: Document, ctx: ReadContext, max_field: int = MAX_FIELD_CHARS
) -> Generator[TableRow, None, None]:
    """Stream the objects of pasted `Format-List` output as rows (one per object).

    A property line is `Name : value` (names padded so the colons align). Lines that are not
    property lines continue the previous value: the console wraps long values onto indented
    lines, and web pages re-wrap them without the indent and add blank lines between
    properties. The console breaks at a space when it can (the space is lost) and mid-word
    only when a line is full, so a continuation is joined without a space only after a line
    of the full console width. An object ends where a property name repeats. Never raises.
    """
    width = max((len(line.rstrip()) for line in doc.head_lines(5000)), default=0)
    previous_length = 0
    names: list[str] = []
    values: list[str] = []
    seen: set[str] = set()
    start: Line | None = None
    cut = False

    def finish() -> TableRow | None:
        if start is None or not names:
            return None
        return TableRow(
            start.number,
            tuple(values),
            Header(tuple(names)),
            start.text[:EXCERPT_CHARS],
        )

    for line in doc.lines():
        text = line.text.replace("\x00", "").rstrip()
        if not text.strip():
            continue
        full_before = previous_length >= width
        previous_length = len(text)
        match = _FL_KEY.match(text)
        if match:
            key = normalise_name(match["key"])
            if key in seen:
                row = finish()
                if row is not None:
                    yield row
                names, values, seen, start = [], [], set(), None
            if start is None:
                start = line
            seen.add(key)
            names.append(match["key"])
            values.append((match["value"] or "").strip()[:max_field])
        elif values:
            if len(values[-1]) + len(text) < max_field:
                hard_break = full_before and not (
                    values[-1].endswith("]") and text.lstrip().startswith("[")
                )
                glue = "" if hard_break else " "
                values[-1] = f"{values[-1]}{glue}{text.strip()}".strip()
            elif not cut:
                cut = True
                ctx.warn(doc, line.number, f"a value longer than {max_field} characters was cut")
    row = finish()
    if row is not None:
        yield row
