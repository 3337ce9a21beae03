"""`logs search --count` without typer and rich: the part of the command that must start fast.

Counting a month of logs takes about a second, and typer (with its pydantic coercion) and rich
cost a quarter of that before any work starts. So the console entry point hands a plain
`logs search PATH... --count` here first: the options are read with a small strict parser and
the count is printed as the typer command would print it. Anything else (help, an option this
parser does not know, a value it cannot read, any error, a progress bar to draw, --output) is
declined, and the typer command runs as usual and reports the problem in its own words.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from mailflow_doctor.evidence.document import Document, IssueLog, ReadContext
from mailflow_doctor.evidence.intake import Intake
from mailflow_doctor.evidence.logsearch import SearchCount, count_sessions
from mailflow_doctor.evidence.readers.smtp_protocol import (
    RECEIVE,
    SEND,
    SmtpReceiveLogReader,
    SmtpSendLogReader,
)
from mailflow_doctor.knowledge.endpoints import EndpointDataError, EndpointList, load
from mailflow_doctor.knowledge.ipranges import AddressParseError, IPSet

PROTOCOL_KINDS = {RECEIVE: "receive", SEND: "send"}


def resolve_ranges(sources: list[str], endpoints: EndpointList | None) -> IPSet:
    """`eop` (the published EOP SMTP ranges in use) and any CIDRs, addresses or ranges."""
    result = IPSet()
    for source in sources:
        for part in source.split(","):
            part = part.strip()
            if not part:
                continue
            if part.lower() == "eop":
                if endpoints is None:
                    raise EndpointDataError("no endpoint list loaded")
                result = result | endpoints.eop_smtp_ranges()
                continue
            try:
                result = result | IPSet.parse(part)
            except AddressParseError as exc:
                raise AddressParseError(
                    f"--from {part!r}: not 'eop', an address, a CIDR or a range"
                ) from exc
    return result


def wants_eop(sources: list[str]) -> bool:
    return any(part.strip().lower() == "eop" for s in sources for part in s.split(","))


def protocol_docs(
    intake: Intake, paths: list[Path], skipped: list[str]
) -> Iterator[tuple[Document, str]]:
    """The SMTP protocol logs among the inputs, with their kind; the rest goes to `skipped`."""
    # Only the two protocol log readers, built here: loading every reader module would cost
    # more start-up than sniffing a month of logs.
    protocol_readers: dict[str, SmtpReceiveLogReader | SmtpSendLogReader] = {
        RECEIVE: SmtpReceiveLogReader(),
        SEND: SmtpSendLogReader(),
    }
    for doc in intake.documents(paths):
        if doc.is_binary:
            skipped.append(doc.display)
            continue
        # Only the protocol log sniffers are asked: this command reads nothing else.
        scores = {kind: protocol_readers[kind].sniff(doc) for kind in PROTOCOL_KINDS}
        kind = max(scores, key=lambda k: scores[k])
        if scores[kind] < 50:
            skipped.append(doc.display)
            continue
        yield doc, kind


def count_json(
    result: SearchCount, ranges: IPSet, endpoint_list: EndpointList | None
) -> dict[str, object]:
    """The `--count --format json` document."""
    doc: dict[str, object] = {
        "sessions": result.sessions,
        "lines": result.lines,
        "files": result.files,
        "bytes": result.bytes_read,
        "elapsed_seconds": round(result.elapsed, 4),
        "sessions_per_second": round(result.sessions_per_second, 1),
        "mb_per_second": round(result.mb_per_second, 1),
        "ranges": ranges.cidrs(),
        "skipped_files": result.skipped,
        "slow_path_files": result.slow_path_files,
    }
    if endpoint_list is not None:
        doc["endpoints"] = endpoint_list.describe()
    return doc


class _Declined(Exception):
    """Not a plain count: the typer command takes it."""


def _parse(argv: list[str]) -> tuple[list[Path], list[str], str, int, Path | None, bool]:
    """paths, --from values, format, jobs, --endpoints, --count; raises _Declined."""
    paths: list[Path] = []
    sources: list[str] = []
    fmt, jobs, endpoints, count, quiet = "text", 0, None, False, False
    valued = {"--from", "--endpoints", "--format", "-f", "--jobs", "-j", "--limit"}
    words = iter(argv)
    for word in words:
        if word == "--":
            paths.extend(Path(rest) for rest in words)
            break
        name, eq, value = word.partition("=")
        if word in ("--count",):
            count = True
        elif word in ("--quiet", "-q"):
            quiet = True
        elif (name in valued and name.startswith("--")) or word in valued:
            if not eq:
                value = next(words, "")
                if not value or value.startswith("-"):
                    raise _Declined
            if name == "--from":
                sources.append(value)
            elif name == "--endpoints":
                endpoints = Path(value)
            elif name in ("--format", "-f"):
                fmt = value
            elif name in ("--jobs", "-j", "--limit"):
                if not value.isdigit():
                    raise _Declined
                jobs = int(value) if name != "--limit" else jobs
        elif word.startswith("-") or not word:
            raise _Declined
        else:
            paths.append(Path(word))
    if not count or not paths or fmt not in ("text", "json"):
        raise _Declined
    if not quiet and sys.stderr.isatty():
        raise _Declined  # a progress bar is wanted: rich draws it
    return paths, sources or ["eop"], fmt, jobs, endpoints, count


def run(argv: list[str]) -> bool:
    """Count for `logs search ARGV`, print as the typer command does; False if declined."""
    try:
        paths, sources, fmt, jobs, endpoints, _ = _parse(argv)
        endpoint_list = load(endpoints) if wants_eop(sources) else None
        ranges = resolve_ranges(sources, endpoint_list)
        if not ranges:
            raise _Declined
        issues = IssueLog()
        skipped: list[str] = []
        with Intake(issues=issues) as intake:
            docs = [doc for doc, _ in protocol_docs(intake, paths, skipped)]
            workers = jobs if jobs > 0 else (os.cpu_count() or 1)
            result = count_sessions(docs, ranges, ReadContext(issues=issues), workers=workers)
    except (_Declined, Exception):  # any problem: the typer command reports it properly
        return False
    result.skipped.extend(skipped)
    text = str(result.sessions)
    if fmt == "json":
        text = json.dumps(count_json(result, ranges, endpoint_list), indent=2)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    return True
