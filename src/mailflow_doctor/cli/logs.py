"""`mailflow-doctor logs search`: which SMTP sessions came from (or went to) given addresses.

`--from eop --count` answers the first question of every EOP deferral case in seconds, over
a month of logs: did Exchange Online reach this server at all? The count runs on the fast
byte-level path; without `--count` the sessions are read in full and listed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mailflow_doctor.cli.common import (
    OutputFormat,
    fail,
    friendly_errors,
    render_text,
    stderr_console,
    write_output,
)
from mailflow_doctor.cli.logs_count import (
    PROTOCOL_KINDS,
    count_json,
    resolve_ranges,
    wants_eop,
)
from mailflow_doctor.cli.logs_count import protocol_docs as _protocol_docs
from mailflow_doctor.cli.typer_app import app
from mailflow_doctor.evidence.document import Document, IssueLog, ReadContext
from mailflow_doctor.evidence.intake import Intake, IntakeError
from mailflow_doctor.evidence.logsearch import RangeMatcher, SearchCount, count_sessions
from mailflow_doctor.evidence.readers.smtp_protocol import (
    read_sessions,
)
from mailflow_doctor.evidence.records import SmtpSession
from mailflow_doctor.knowledge.endpoints import EndpointDataError, EndpointList, load
from mailflow_doctor.knowledge.ipranges import AddressParseError, IPSet

logs_app = typer.Typer(help="Search Exchange SMTP protocol logs.", no_args_is_help=True)
app.add_typer(logs_app, name="logs")


class _Progress:
    """A byte progress bar on stderr, shown only in a terminal and without --quiet."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty() and total > 0
        self._bar = None
        if self.enabled:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self._bar = Progress(
                TextColumn("reading logs"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=stderr_console(),
                transient=True,
            )
            self._task = self._bar.add_task("logs", total=total)
            self._bar.start()

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, amount)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@logs_app.command("search")
def search(
    paths: Annotated[
        list[Path], typer.Argument(help="Log files, folders or .zip bundles.", show_default=False)
    ],
    sources: Annotated[
        list[str] | None,
        typer.Option(
            "--from",
            help="Remote addresses to look for: 'eop' (the published Exchange Online ranges), "
            "a CIDR, an address or a range; repeat or separate with commas. Default: eop.",
        ),
    ] = None,
    count: Annotated[
        bool, typer.Option("--count", help="Only count the matching sessions (fast path).")
    ] = False,
    endpoints: Annotated[
        Path | None,
        typer.Option(
            "--endpoints",
            help="A Microsoft 365 endpoints JSON you downloaded; default: the bundled snapshot.",
            dir_okay=False,
        ),
    ] = None,
    format: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.text,
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
    limit: Annotated[
        int, typer.Option("--limit", help="List at most this many sessions (0: all).")
    ] = 500,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs", "-j", help="Processes for --count over many files (0: one per CPU)."
        ),
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Find SMTP sessions whose remote IP lies in the given ranges (default: the EOP ranges)."""
    wanted = sources or ["eop"]
    endpoint_list: EndpointList | None = None
    with friendly_errors(EndpointDataError, AddressParseError):
        if wants_eop(wanted):
            endpoint_list = load(endpoints)
        ranges = resolve_ranges(wanted, endpoint_list)
    if not ranges:
        fail("--from names no addresses")
    if format in (OutputFormat.html, OutputFormat.markdown):
        fail("logs search writes text or json")
    issues = IssueLog()
    skipped: list[str] = []
    with friendly_errors(IntakeError), Intake(issues=issues) as intake:
        docs = list(_protocol_docs(intake, paths, skipped))
        total = sum(doc.size for doc, _ in docs)
        progress = _Progress(total, enabled=not quiet)
        try:
            if count:
                workers = jobs if jobs > 0 else (os.cpu_count() or 1)
                result = count_sessions(
                    (doc for doc, _ in docs),
                    ranges,
                    ReadContext(issues=issues),
                    progress=progress.advance if progress.enabled else None,
                    workers=workers,
                )
                progress.stop()
                result.skipped.extend(skipped)
                _print_count(result, ranges, endpoint_list, format, output)
                return
            sessions, total_sessions = _find_sessions(docs, ranges, issues, progress, limit)
        finally:
            progress.stop()
    _print_sessions(sessions, total_sessions, len(docs), skipped, ranges, format, output, issues)


def _find_sessions(
    docs: list[tuple[Document, str]],
    ranges: IPSet,
    issues: IssueLog,
    progress: _Progress,
    limit: int,
) -> tuple[list[SmtpSession], int]:
    matcher = RangeMatcher(ranges)
    ctx = ReadContext(issues=issues)
    hits: list[SmtpSession] = []
    seen = 0

    def wanted(endpoint: str) -> bool:
        return matcher.contains_endpoint(endpoint.encode("utf-8", "replace"))

    for doc, kind in docs:
        for record in read_sessions(doc, ctx, PROTOCOL_KINDS[kind], kind, keep_remote=wanted):
            if isinstance(record, SmtpSession) and matcher.contains_text(record.remote_ip):
                seen += 1
                if limit <= 0 or len(hits) < limit:
                    hits.append(record)
        progress.advance(doc.size)
    hits.sort(key=lambda s: (s.start_utc is None, s.start_utc, s.server))
    return hits, seen


def _print_count(
    result: SearchCount,
    ranges: IPSet,
    endpoint_list: EndpointList | None,
    format: OutputFormat,
    output: Path | None,
) -> None:
    if format != OutputFormat.json:
        write_output(str(result.sessions), output)
        return
    doc = count_json(result, ranges, endpoint_list)
    write_output(json.dumps(doc, indent=2), output)


def _session_json(session: SmtpSession) -> dict[str, object]:
    cert = session.certificate
    return {
        "start_utc": session.start_utc.isoformat() if session.start_utc else None,
        "end_utc": session.end_utc.isoformat() if session.end_utc else None,
        "server": session.server,
        "direction": session.direction,
        "connector": session.connector,
        "session_id": session.session_id,
        "remote_ip": session.remote_ip,
        "remote_port": session.remote_port,
        "local_ip": session.local_ip,
        "ehlo": session.ehlo,
        "starttls_offered": session.starttls_offered,
        "tls": session.tls_protocol if session.tls_negotiated else None,
        "certificate_subject": cert.subject if cert else None,
        "tls_domain_capabilities": session.tls_domain_capabilities or None,
        "outcome": session.outcome,
        "messages": len(session.message_ids),
        "source": session.ref.to_json(),
    }


def _print_sessions(
    sessions: list[SmtpSession],
    total: int,
    files: int,
    skipped: list[str],
    ranges: IPSet,
    format: OutputFormat,
    output: Path | None,
    issues: IssueLog,
) -> None:
    if format == OutputFormat.json:
        doc = {
            "sessions_total": total,
            "sessions_listed": len(sessions),
            "files": files,
            "ranges": ranges.cidrs(),
            "skipped_files": skipped,
            "warnings": [f"{i.path}: {i}" for i in issues.issues],
            "sessions": [_session_json(s) for s in sessions],
        }
        write_output(json.dumps(doc, indent=2), output)
        return

    def render(console: Console) -> None:
        # At 80 columns an address or outcome cut to "185.234.217…" is useless: fold instead.
        table = Table("time (UTC)")
        table.add_column("server", overflow="fold")
        table.add_column("remote IP", overflow="fold")
        table.add_column("EHLO", overflow="fold")
        table.add_column("TLS")
        table.add_column("outcome", overflow="fold")
        for s in sessions:
            when = s.start_utc.strftime("%Y-%m-%d %H:%M:%S") if s.start_utc else "?"
            if s.tls_negotiated:
                tls = s.tls_protocol or "yes"
            elif s.starttls_offered is False:
                tls = "not offered"
            else:
                tls = "no"
            cells = (when, s.server, s.remote_ip, s.ehlo, tls, s.outcome)
            table.add_row(*(Text(cell) for cell in cells))  # log text is never markup
        if sessions:
            console.print(table)
        shown = f" (first {len(sessions)} listed)" if len(sessions) < total else ""
        console.print(
            f"{total} session(s) from {', '.join(ranges.cidrs()[:6])}"
            f"{' ...' if len(ranges.cidrs()) > 6 else ''} in {files} protocol log file(s)"
            f"{shown}.",
            markup=False,
        )
        if skipped:
            console.print(f"{len(skipped)} file(s) were not SMTP protocol logs and were skipped.")
        for issue in issues.issues[:20]:
            console.print(f"warning: {issue.path}: {issue}", markup=False)

    render_text(render, output)
