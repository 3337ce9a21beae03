"""The terminal report: the verdict first, then each finding with its proof and fix.

Read at 2 a.m. in an 80-column window: the root cause sits in a panel at the top, remediation
lines are printed bare (no borders, no wrapping marks) so they can be copied, and every piece
of text that came from the evidence is escaped so that a subject line holding `[red]` cannot
restyle or fake the report.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mailflow_doctor.diagnose.engine import Diagnosis
from mailflow_doctor.diagnose.facts import utc_iso
from mailflow_doctor.diagnose.model import Finding, Severity

STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.ERROR: "red",
    Severity.WARNING: "yellow",
    Severity.INFO: "cyan",
}
MAX_EVIDENCE = 6
MAX_EXCERPT = 240


def indent(text: Text | Table, level: int = 3) -> Padding:
    """Keep wrapped lines under their heading."""
    return Padding(text, (0, 0, 0, level))


def shorten(text: str, limit: int = MAX_EXCERPT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _t(text: object) -> str:
    """Escape evidence text for rich markup."""
    return escape(str(text))


def verdict_panel(diagnosis: Diagnosis) -> Panel:
    root = diagnosis.root
    mixed = diagnosis.finding("evidence.mixed_sources")
    if root is None and mixed is not None:
        body = Text.assemble((mixed.title + "\n", "bold"), mixed.summary)
        return Panel(body, title="Verdict", border_style="yellow")
    if root is None:
        body = Text.assemble(
            (
                "No single root cause is proven by this evidence.\n"
                if diagnosis.findings
                else "No problem found.\n"
                if diagnosis.read_anything
                else "Nothing could be judged.\n",
                "bold",
            ),
            (
                "See the findings below; add the firewall configuration, its deny log, the "
                "message trace detail or the SMTP receive logs to narrow it down."
                if diagnosis.findings
                else "Nothing wrong was found in the evidence given."
                if diagnosis.read_anything
                else "None of the files was recognised as evidence: give the message trace, "
                "the SMTP receive logs, the firewall configuration or its deny log."
            ),
        )
        return Panel(
            body, title="Verdict", border_style="green" if not diagnosis.findings else "yellow"
        )
    lines: list[Any] = [
        Text.from_markup(f"[bold]{_t(root.title)}[/bold]"),
        Text(""),
        Text(root.summary),
        Text(""),
        Text.from_markup(
            f"root cause: [bold]{_t(root.id)}[/bold]   confidence {root.confidence:.0%}   "
            f"severity {root.severity.value}"
        ),
    ]
    missing = root.data.get("missing_ranges")
    if isinstance(missing, list) and missing:
        lines.append(Text("missing ranges: " + ", ".join(str(m) for m in missing)))
    return Panel(Group(*lines), title="Verdict", border_style=STYLE[root.severity])


VERDICT_STYLE = {"blocked": "bold red", "partial": "yellow", "permitted": "green"}


def range_table(finding: Finding) -> Table | None:
    """Per-range verdicts of a firewall finding."""
    rows = finding.data.get("ranges")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "verdict" in r for r in rows):
        return None
    if not rows:
        return None
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    table.add_column("range", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("blocked", overflow="fold")
    for row in rows:
        verdict = str(row.get("verdict", ""))
        table.add_row(
            Text(str(row.get("range", ""))),
            Text(verdict, style=VERDICT_STYLE.get(verdict, "")),
            Text(", ".join(map(str, row.get("blocked") or [])) or "-"),
        )
    return table


def render_finding(finding: Finding, console: Console, number: int) -> None:
    style = STYLE[finding.severity]
    marker = " ROOT CAUSE" if finding.root_cause else ""
    heading = Text(f"{number}. ")
    heading.append(f"[{finding.severity.value.upper()}]{marker} ", style=style)
    heading.append(finding.title, style="bold")
    console.print(heading)
    console.print(indent(Text(f"{finding.id} · confidence {finding.confidence:.0%}", "dim")))
    console.print(indent(Text(finding.summary)))
    labels = {"corroboration": "also shown by", "contradiction": "against", "notes": "note"}
    for key, label in labels.items():
        values = finding.data.get(key)
        if isinstance(values, list):
            for value in values:
                line = Text(f"{label}: ", style="bold" if key != "notes" else "dim")
                line.append(str(value), style="dim" if key == "notes" else "")
                console.print(indent(line, 5))
    if finding.ruled_out:
        console.print(indent(Text(f"not the root cause: {finding.ruled_out}", "dim")))
    ranges = range_table(finding)
    if ranges is not None:
        console.print(indent(ranges))
    if finding.evidence:
        console.print(indent(Text("evidence", "bold")))
        for ref in finding.evidence[:MAX_EVIDENCE]:
            where = f"{ref.path}:{ref.line}" if ref.line else ref.path
            console.print(indent(Text(where, "cyan"), 5))
            if ref.excerpt:
                console.print(indent(Text(shorten(ref.excerpt)), 7))
        if len(finding.evidence) > MAX_EVIDENCE:
            more = len(finding.evidence) - MAX_EVIDENCE
            console.print(indent(Text(f"... and {more} more"), 5))
    if finding.remediation:
        console.print(indent(Text("what to change (copy these lines):", "bold")))
        for command in finding.remediation:
            # Bare, unindented, unwrapped lines: a triple click copies exactly the command.
            console.print(Text(command), soft_wrap=True)
    console.print()


def short_span(first: datetime | None, last: datetime | None) -> str:
    """`11-27 21:00-23:59` (UTC), or with both dates when the span crosses midnight."""
    if first is None or last is None:
        return ""
    a, b = first.astimezone(UTC), last.astimezone(UTC)
    if a.date() == b.date():
        return f"{a:%Y-%m-%d}\n{a:%H:%M}-{b:%H:%M}"
    return f"{a:%Y-%m-%d %H:%M}\n{b:%Y-%m-%d %H:%M}"


def evidence_table(diagnosis: Diagnosis) -> Table:
    table = Table(title="Evidence read", title_justify="left", expand=False, show_lines=False)
    table.add_column("file", overflow="fold", ratio=5)
    table.add_column("kind", overflow="fold", ratio=3)
    table.add_column("records", justify="right", no_wrap=True)
    table.add_column("UTC", no_wrap=True)
    for entry in diagnosis.evidence:
        cell = Text(entry.path)
        for warning in entry.warnings[:3]:
            cell.append(f"\n  ! {warning}", style="yellow")
        if len(entry.warnings) > 3:
            cell.append(f"\n  ! ... {len(entry.warnings) - 3} more warnings", style="yellow")
        table.add_row(
            cell,
            Text(entry.kind),
            str(entry.records),
            Text(short_span(entry.first_utc, entry.last_utc)),
        )
    return table


def render(diagnosis: Diagnosis, console: Console) -> None:
    console.print(verdict_panel(diagnosis))
    console.print()
    for number, finding in enumerate(diagnosis.findings, 1):
        render_finding(finding, console, number)
    console.print(evidence_table(diagnosis))
    endpoints = diagnosis.endpoints
    console.print(
        Text(
            f"Exchange Online ranges: Microsoft 365 endpoints {endpoints.get('instance', '')} "
            f"version {endpoints.get('version', '')} ({endpoints.get('source', '')}). "
            f"Generated {utc_iso(diagnosis.generated_utc)} by mailflow-doctor {diagnosis.version}.",
            style="dim",
        )
    )
