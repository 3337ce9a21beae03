"""Collect the evidence: every file recognised by content and read into one bundle.

Evidence readers and firewall parsers sit side by side one layer down, so the choice between
them is made here: whichever claims the file most surely reads it. A file that nobody claims is
listed as unrecognised; a file that fails to read is reported with its name and the rest of the
evidence is still used.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, TypeVar

from mailflow_doctor.evidence.document import Document, IssueLog, ReadContext, SourceRef
from mailflow_doctor.evidence.intake import Intake
from mailflow_doctor.evidence.records import LogSpan
from mailflow_doctor.evidence.registry import best_reader
from mailflow_doctor.firewall.registry import (
    FirewallParseError,
    ParseOptions,
    ParseResult,
    best_parser,
)
from mailflow_doctor.knowledge.endpoints import EndpointList

T = TypeVar("T")

MAX_CONFIG_BYTES = 64 * 1024 * 1024
Progress = Callable[[str, int], None]  # (display path, bytes done) after each file


@dataclass
class FileSummary:
    """One file as the report lists it (the contract's `evidence` entries)."""

    path: str
    kind: str
    records: int = 0
    first_utc: datetime | None = None
    last_utc: datetime | None = None
    warnings: list[str] = field(default_factory=list)
    size: int = 0

    def note_time(self, when: datetime | None) -> None:
        if when is None:
            return
        if self.first_utc is None or when < self.first_utc:
            self.first_utc = when
        if self.last_utc is None or when > self.last_utc:
            self.last_utc = when


@dataclass(frozen=True)
class FirewallEvidence:
    """A parsed firewall configuration with the text it came from (remediation patches it)."""

    result: ParseResult
    text: str
    path: str


@dataclass
class Bundle:
    """Everything read, grouped by record type, plus the endpoint list in use."""

    endpoints: EndpointList
    files: list[FileSummary] = field(default_factory=list)
    records: dict[type, list[Any]] = field(default_factory=lambda: defaultdict(list))
    firewalls: list[FirewallEvidence] = field(default_factory=list)
    issues: IssueLog = field(default_factory=IssueLog)
    options: dict[str, Any] = field(default_factory=dict)

    def of(self, kind: type[T]) -> list[T]:
        return list(self.records.get(kind, []))

    def add(self, record: object) -> None:
        self.records[type(record)].append(record)

    def spans(self) -> list[LogSpan]:
        return self.of(LogSpan)


def _record_time(record: object) -> datetime | None:
    for name in ("time_utc", "received_utc", "start_utc", "first_utc"):
        value = getattr(record, name, None)
        if isinstance(value, datetime):
            return value
    return None


def read_document(
    doc: Document, bundle: Bundle, options: ParseOptions, ctx: ReadContext
) -> FileSummary:
    """Read one document into the bundle; never raises for bad content."""
    summary = FileSummary(doc.display, "unrecognised", size=doc.size)
    if doc.is_binary:
        summary.kind = "binary"
        summary.warnings.append("binary file; not read")
        return summary
    reader, reader_score = best_reader(doc)
    parser, parser_score = (None, 0)
    if doc.size <= MAX_CONFIG_BYTES:
        parser, parser_score = best_parser(doc.head)
    if parser is not None and parser_score >= reader_score:
        summary.kind = f"firewall.{parser.vendor}"
        try:
            text = "\n".join(line.text for line in doc.lines())
            result = parser.parse(text, doc.display, options)
        except FirewallParseError as exc:
            # The report already names the file; some parsers start their message with it.
            message = str(exc).removeprefix(f"{doc.display}: ")
            bundle.issues.add(doc.display, None, message)
        except Exception as exc:
            bundle.issues.add(
                doc.display, None, f"could not parse as {parser.label}: {type(exc).__name__}: {exc}"
            )
        else:
            for line, message in result.issues:
                bundle.issues.add(doc.display, line, message)
            summary.records = result.policy.rule_count()
            bundle.firewalls.append(FirewallEvidence(result, text, doc.display))
    elif reader is not None:
        summary.kind = reader.kind
        try:
            for record in reader.read(doc, ctx):
                bundle.add(record)
                summary.records += 0 if isinstance(record, LogSpan) else 1
                summary.note_time(_record_time(record))
        except Exception as exc:
            bundle.issues.add(
                doc.display,
                None,
                f"stopped reading after {summary.records} records: {type(exc).__name__}: {exc}",
            )
    summary.warnings.extend(bundle.issues.for_path(doc.display))
    return summary


def collect(
    paths: Iterable[Path],
    endpoints: EndpointList,
    options: ParseOptions | None = None,
    progress: Progress | None = None,
    extra: dict[str, Any] | None = None,
    timezone: tzinfo | None = None,
) -> Bundle:
    """Read every path (files, folders, zips) into a bundle."""
    bundle = Bundle(endpoints=endpoints, options=dict(extra or {}))
    parse_options = options or ParseOptions()
    ctx = ReadContext(issues=bundle.issues, timezone=timezone)
    with Intake(issues=bundle.issues) as intake:
        for doc in intake.documents(list(paths)):
            summary = read_document(doc, bundle, parse_options, ctx)
            bundle.files.append(summary)
            if progress is not None:
                progress(doc.display, doc.size)
        # Issues about containers (zips, folders) that are not files of their own.
        listed = {f.path for f in bundle.files}
        for issue in bundle.issues.issues:
            if issue.path not in listed:
                warnings = bundle.issues.for_path(issue.path)
                bundle.files.append(FileSummary(issue.path, "container", warnings=warnings))
                listed.add(issue.path)
    return bundle


def ref_list(records: Iterable[Any], limit: int = 5) -> tuple[SourceRef, ...]:
    """The first `limit` distinct source references of some records, for a finding's evidence."""
    seen: dict[SourceRef, None] = {}
    for record in records:
        ref = getattr(record, "ref", None)
        if isinstance(ref, SourceRef) and ref not in seen:
            seen[ref] = None
            if len(seen) >= limit:
                break
    return tuple(seen)
