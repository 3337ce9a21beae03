"""`mailflow-doctor explain TEXT`: what a pasted status text means and what to check next."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mailflow_doctor.cli.common import (
    EXIT_FINDINGS,
    OutputFormat,
    fail,
    render_text,
    write_output,
)
from mailflow_doctor.cli.typer_app import app
from mailflow_doctor.report.explain_report import (
    MAX_INPUT_CHARS,
    explain_all,
    render_json,
    render_markdown,
    render_terminal,
)


def _read_input(text: str | None, file: Path | None) -> str:
    if file is not None:
        try:
            raw = file.read_bytes()[: MAX_INPUT_CHARS * 4]
        except OSError as exc:
            fail(f"{file}: cannot read: {exc.strerror or exc}")
        for codec in ("utf-8-sig", "utf-16", "cp1252"):
            if codec == "utf-16" and not raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                continue
            try:
                return raw.decode(codec)
            except UnicodeDecodeError:
                continue
        return raw.decode("utf-8", errors="replace")
    if text is None or text == "-":
        if sys.stdin is None or (text is None and sys.stdin.isatty()):
            fail("give the status text as an argument, '-' to read it from stdin, or --file")
        return sys.stdin.read(MAX_INPUT_CHARS * 4)
    return text


@app.command("explain")
def explain(
    text: Annotated[
        str | None,
        typer.Argument(
            help="The status text, NDR line, queue LastError or defer detail; '-' reads stdin.",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Read the text from this file.", dir_okay=False),
    ] = None,
    format: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.text,
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Explain a status code or error text: what happened on the wire, the likely causes
    ranked, the checks to run next (with the mailflow-doctor commands) and the fixes.

    Examples: mailflow-doctor explain "450 4.4.316 Connection refused [Message=Socket error code
    10061]"; mailflow-doctor explain 10060; Get-Queue | fl LastError | mailflow-doctor explain -
    """
    content = _read_input(text, file)
    if not content.strip():
        fail("the text to explain is empty")
    items = explain_all(content)
    if format == OutputFormat.json:
        write_output(render_json(items), output)
    elif format == OutputFormat.markdown:
        write_output(render_markdown(items), output)
    elif format == OutputFormat.html:
        fail("explain writes text, json or markdown; use --format markdown for a ticket")
    else:

        def render(console: Console) -> None:
            render_terminal(items, console)

        render_text(render, output)
    if not any(item.recognised for item in items):
        raise typer.Exit(EXIT_FINDINGS)
