"""On-premises Exchange queues: Get-Queue Format-List text and Export-Csv, and bare LastErrors.

A queue in Retry towards `<tenant>.mail.onmicrosoft.com`, or a FrontEnd proxy queue whose
LastError says `Primary target IP address responded with ...`, is the on-premises half of a
hybrid mail-flow story. Each queue becomes a `QueueEntry` whose LastError is read by the one
reason parser. Queue times (`LastRetryTime` ...) are the server's local time in the shell's
culture (`15-01-21 23:50:05`, `2019/11/4 13:31:03`): the day/month order is decided over all
the times in the file, the zone is `--timezone` (else UTC, and the entry says so). Admins
also paste just the LastError line into a ticket; such a file is read as one queue entry
without identity.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime

from mailflow_doctor.evidence.culturetime import DateOrder, DateOrderVote, parse_culture_time
from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.reason import parse_reason
from mailflow_doctor.evidence.records import QueueEntry
from mailflow_doctor.evidence.registry import register_reader
from mailflow_doctor.evidence.tabular import (
    Header,
    TableRow,
    format_list_keys,
    normalise_name,
    read_format_list,
    read_rows,
    sniff_table,
)

KIND = "exchange.get_queue"
MAX_QUEUES = 100_000
TIME_FIELDS = ("LastRetryTime", "NextRetryTime", "FirstRetryTime")
QUEUE_KEYS = frozenset(
    {
        "identity",
        "queueidentity",
        "deliverytype",
        "status",
        "messagecount",
        "nexthopdomain",
        "lasterror",
        "nexthopconnector",
        "tlsdomain",
        "retrycount",
        "lastretrytime",
    }
)
# Texts that only on-premises transport writes into a queue's LastError.
_ONPREM_ERROR = re.compile(
    r"Primary target IP address responded with|Attempted failover to alternate host|"
    r"Error communicating with target host|SocketConnectionRefused|SocketConnectionTimedOut|"
    r"Proxy session setup failed|The last endpoint attempted was|\b4\.4\.397\b|\b4\.4\.395\b",
    re.IGNORECASE,
)
# ... and texts only Exchange Online writes: such a paste is a message trace detail, not a queue.
_EXO_ONLY = re.compile(
    r"\b4\.4\.(?:101|31[0-9])\b|\b4\.7\.32[0-5]\b|LastAttemptedIP|OutboundProxyTarget|"
    r"\{MSG=|\[Message=",
    re.IGNORECASE,
)
_KNOWN = frozenset(
    {
        "identity",
        "queueidentity",
        "deliverytype",
        "status",
        "messagecount",
        "nexthopdomain",
        "nexthopconnector",
        "tlsdomain",
        "lasterror",
        "retrycount",
        "lastretrytime",
        "nextretrytime",
        "firstretrytime",
        "deferredmessagecount",
        "runspaceid",
        "serveridentity",
        "pscomputername",
    }
)


def _int(text: str) -> int | None:
    cleaned = text.strip().replace(",", "").replace(".", "").replace("\u00a0", "")
    return int(cleaned) if cleaned.isdigit() and len(cleaned) < 19 else None


def _is_queue_table(keys: set[str]) -> bool:
    return "deliverytype" in keys and len(keys & QUEUE_KEYS) >= 3


def _time_order(rows: Sequence[TableRow]) -> tuple[DateOrder | None, str]:
    vote = DateOrderVote()
    for row in rows:
        for name in TIME_FIELDS:
            vote.observe(row.get(name))
    return vote.decide("LastRetryTime")


def _entry(row: TableRow, doc: Document, ctx: ReadContext, order: DateOrder | None) -> QueueEntry:
    identity = row.get("Identity", "QueueIdentity")
    server = identity.partition("\\")[0] if "\\" in identity else ""
    server = server or row.get("ServerIdentity", "PSComputerName")  # Get-QueueDigest, remoting
    last_error = row.get("LastError")
    zone = ctx.timezone

    def when(name: str) -> datetime | None:
        text = row.get(name)
        if not text:
            return None
        value = parse_culture_time(text, order, zone)
        if value is None:
            ctx.warn(doc, row.line, f"{name} {text[:40]!r} is not a date this tool can read")
        return value

    times = {name: when(name) for name in TIME_FIELDS}
    assumed = ""
    if any(times.values()):
        assumed = (
            f"queue times are the server's local time; read in {zone}"
            if zone is not None
            else "queue times are the server's local time; read as UTC (no --timezone given)"
        )
    extra = tuple(
        (name, value.strip())
        for name, key, value in zip(row.header.names, row.header.keys, row.values, strict=False)
        if key not in _KNOWN and value.strip()
    )[:40]
    return QueueEntry(
        ref=doc.ref(row.line, row.excerpt),
        identity=identity,
        server=server,
        delivery_type=row.get("DeliveryType"),
        status=row.get("Status"),
        message_count=_int(row.get("MessageCount")),
        next_hop_domain=row.get("NextHopDomain"),
        next_hop_connector=row.get("NextHopConnector"),
        tls_domain=row.get("TlsDomain"),
        last_error=last_error,
        reason=parse_reason(last_error) if last_error else None,
        retry_count=_int(row.get("RetryCount")),
        last_retry_utc=times["LastRetryTime"],
        next_retry_utc=times["NextRetryTime"],
        first_retry_utc=times["FirstRetryTime"],
        deferred_message_count=_int(row.get("DeferredMessageCount")),
        time_assumed=assumed,
        extra=extra,
    )


def _read_table(doc: Document, ctx: ReadContext, rows: Iterator[TableRow]) -> Iterator[QueueEntry]:
    buffered: list[TableRow] = []
    for row in rows:
        if len(buffered) >= MAX_QUEUES:
            ctx.warn(doc, row.line, f"more than {MAX_QUEUES:,} queues; the rest is not read")
            break
        if row.get("DeliveryType", "Identity", "NextHopDomain", "LastError", "Status"):
            buffered.append(row)
    order, why = _time_order(buffered)
    if why:
        ctx.warn(doc, None, why)
    for row in buffered:
        yield _entry(row, doc, ctx, order)


_DASHES = re.compile(r"^\s*-+(?:\s+-+)+\s*$")


def _table_header(lines: Sequence[str]) -> int | None:
    """Index of the header line of `Get-Queue` default (Format-Table) output, if any."""
    for index in range(len(lines) - 1):
        if _DASHES.match(lines[index + 1]):
            words = {normalise_name(w) for w in lines[index].split()}
            if "deliverytype" in words and len(words & QUEUE_KEYS) >= 3:
                return index
    return None


def _read_format_table(doc: Document, ctx: ReadContext) -> Iterator[TableRow]:
    """Rows of the default table view. Columns are placed by the dashes under the header;
    the console cuts long values with `...`, which is kept (and said) rather than guessed."""
    header_line: str | None = None
    starts: list[int] = []
    names: list[str] = []
    header: Header | None = None
    previous = ""
    warned = False
    for line in doc.lines():
        text = line.text.replace("\x00", "").rstrip()
        if header is None:
            if _DASHES.match(text) and previous:
                header_line = previous
                starts = [m.start() for m in re.finditer(r"-+", text)]
                names = [
                    header_line[a:b].strip()
                    for a, b in zip(starts, [*starts[1:], None], strict=False)
                ]
                header = Header(tuple(names))
            previous = text
            continue
        if not text.strip():
            continue
        if text.lstrip().startswith(("[PS]", "PS ")) or _DASHES.match(text):
            continue
        values = [
            text[a:b].strip() if a < len(text) else ""
            for a, b in zip(starts, [*starts[1:], None], strict=False)
        ]
        if not warned and any(v.endswith(("...", "\u2026")) for v in values):
            warned = True
            ctx.warn(
                doc,
                line.number,
                "the table view cut some values ('...') and shows no LastError; "
                "Get-Queue | Format-List gives the whole queue",
            )
        yield TableRow(line.number, tuple(values), header, text[:300])


def _bare_errors(lines: Sequence[str]) -> list[tuple[int, str]]:
    """Lines of a pasted LastError (or several): each one that on-premises transport wrote."""
    found: list[tuple[int, str]] = []
    for number, line in enumerate(lines, 1):
        text = line.strip().strip("'\"")
        if text and _ONPREM_ERROR.search(text):
            found.append((number, text))
    return found


@register_reader
class GetQueueReader:
    """Get-Queue (and Get-QueueDigest) output: Format-List, Export-Csv, or a pasted LastError."""

    kind = KIND
    label = "Exchange Get-Queue output"

    def _mode(self, doc: Document) -> tuple[str, int]:
        lines = doc.head_lines(120)
        if _is_queue_table(format_list_keys(lines)):
            return "list", 90
        shape = sniff_table(lines)
        if shape is not None and _is_queue_table(set(shape.header.keys)):
            return "csv", 90
        if _table_header(lines) is not None:
            return "table", 85
        # A short paste of LastError lines: nothing else in it.
        content = [line for line in lines if line.strip()]
        if (
            0 < len(content) <= 20
            and len(_bare_errors(content)) == len(content)
            and not any(_EXO_ONLY.search(line) for line in content)
        ):
            return "bare", 65
        return "", 0

    def sniff(self, doc: Document) -> int:
        return self._mode(doc)[1]

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        mode, _score = self._mode(doc)
        if mode == "list":
            yield from _read_table(doc, ctx, read_format_list(doc, ctx))
        elif mode == "csv":
            yield from _read_table(doc, ctx, read_rows(doc, ctx))
        elif mode == "table":
            yield from _read_table(doc, ctx, _read_format_table(doc, ctx))
        elif mode == "bare":
            for line in doc.lines():
                text = line.text.strip().strip("'\"")
                if text and _ONPREM_ERROR.search(text):
                    yield QueueEntry(
                        ref=doc.ref(line.number, text),
                        identity="",
                        last_error=text,
                        reason=parse_reason(text),
                    )
