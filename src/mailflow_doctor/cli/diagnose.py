"""`mailflow-doctor diagnose PATH...` and `mailflow-doctor demo`: evidence in, verdict out."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, timedelta, timezone, tzinfo
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from mailflow_doctor.cli.common import (
    EXIT_USAGE,
    OutputFormat,
    fail,
    render_text,
    stderr_console,
    write_output,
)
from mailflow_doctor.cli.typer_app import app
from mailflow_doctor.diagnose.bundle import Bundle, collect
from mailflow_doctor.diagnose.bundle import Progress as ProgressFn
from mailflow_doctor.diagnose.engine import Diagnosis, diagnose
from mailflow_doctor.evidence.intake import IntakeError
from mailflow_doctor.firewall.registry import ParseOptions
from mailflow_doctor.knowledge.endpoints import EndpointDataError, load
from mailflow_doctor.report import html, json_report, markdown, terminal

FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", help="text (terminal), json (the contract), html, markdown."),
]
OutputOption = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write the report to this file instead of stdout."),
]
EndpointsOption = Annotated[
    Path | None,
    typer.Option(
        "--endpoints",
        help="A Microsoft 365 endpoints JSON you downloaded; default: the bundled snapshot.",
        dir_okay=False,
    ),
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar and no warnings on stderr.")
]
TimezoneOption = Annotated[
    str | None,
    typer.Option(
        "--timezone",
        metavar="ZONE",
        help="Zone of logs written in local time without an offset (syslog, Windows "
        "firewall): an IANA name such as America/Toronto, UTC, or an offset like -05:00.",
    ),
]


def parse_timezone(text: str | None) -> tzinfo | None:
    """`UTC`, `+02:00` / `-0500`, or an IANA name; a clear error otherwise."""
    if text is None:
        return None
    value = text.strip()
    if value.upper() in ("UTC", "Z", "GMT"):
        return UTC
    if value[:1] in "+-" and value[1:].replace(":", "").isdigit():
        digits = value[1:].replace(":", "")
        if len(digits) in (2, 4):
            hours, minutes = int(digits[:2]), int(digits[2:] or 0)
            if hours <= 14 and minutes < 60:
                sign = -1 if value[0] == "-" else 1
                return timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    except ImportError:  # pragma: no cover
        fail(f"--timezone {text}: time zone support is not available; use an offset like -05:00")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        fail(
            f"--timezone {text}: unknown time zone (use an IANA name such as "
            "America/Toronto, UTC, or an offset like -05:00)"
        )


def _total_bytes(paths: list[Path]) -> int | None:
    """Bytes to read, for the progress bar; None when zips make the total unknowable."""
    total = 0
    for path in paths:
        if path.is_file():
            if path.suffix.lower() == ".zip":
                return None
            total += path.stat().st_size
            continue
        for root, _dirs, files in os.walk(path):
            for name in files:
                if name.lower().endswith(".zip"):
                    return None
                try:
                    total += (Path(root) / name).stat().st_size
                except OSError:
                    continue
    return total


@contextmanager
def progress_bar(paths: list[Path], quiet: bool) -> Iterator[ProgressFn | None]:
    """A byte-based bar on stderr, only in an interactive terminal and without --quiet."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    console = Console(stderr=True)
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("reading evidence", total=_total_bytes(paths))

        def advance(display: str, size: int) -> None:
            name = display if len(display) <= 40 else "..." + display[-37:]
            bar.update(task, advance=size, description=f"reading {name}")

        yield advance


def run(
    paths: list[Path],
    *,
    format: OutputFormat,
    output: Path | None,
    endpoints: Path | None,
    timezone_name: str | None,
    quiet: bool,
    options: dict[str, Any],
    acl: str | None = None,
    cwd: Path | None = None,
) -> None:
    """Read, diagnose, report, exit with the contract's status.

    `cwd` reads the paths relative to that folder, so that the demo's evidence is named
    `tailspin/...` rather than by its place inside the installation.
    """
    previous = Path.cwd()
    if endpoints is not None:
        endpoints = endpoints.absolute()  # named relative to where the user stands
    if cwd is not None:
        os.chdir(cwd)
    try:
        with _no_traceback():
            bundle = _read(paths, endpoints, timezone_name, quiet, options, acl)
    finally:
        if cwd is not None:
            os.chdir(previous)
    with _no_traceback():
        diagnosis = diagnose(bundle)
        _warn(diagnosis, format, quiet)
        emit(diagnosis, format, output)
    raise typer.Exit(diagnosis.exit_code)


@contextmanager
def _no_traceback() -> Iterator[None]:
    """A bug still ends in one clear line, not a traceback (MAILFLOW_DOCTOR_DEBUG=1 shows it)."""
    try:
        yield
    except (typer.Exit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if os.environ.get("MAILFLOW_DOCTOR_DEBUG"):
            raise
        fail(
            f"internal error: {type(exc).__name__}: {exc}. Please report this "
            "(run with MAILFLOW_DOCTOR_DEBUG=1 for details)."
        )


def _read(
    paths: list[Path],
    endpoints: Path | None,
    timezone_name: str | None,
    quiet: bool,
    options: dict[str, Any],
    acl: str | None,
) -> Bundle:
    for path in paths:
        if not path.exists():
            fail(f"{path}: no such file or folder")
        if not os.access(path, os.R_OK):
            fail(f"{path}: cannot be read (permission denied)")
    zone = parse_timezone(timezone_name)
    try:
        endpoint_list = load(endpoints)
    except EndpointDataError as exc:
        fail(str(exc))
    try:
        with progress_bar(paths, quiet) as advance:
            bundle = collect(
                paths,
                endpoint_list,
                options=ParseOptions(acl=acl),
                progress=advance,
                extra=options,
                timezone=zone,
            )
    except IntakeError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or 'input'}: cannot be read: {exc.strerror or exc}")
    if not bundle.files:
        # An empty folder (or one holding only skipped files) is a wrong path, not a verdict.
        given = ", ".join(str(p) for p in paths)
        fail(f"{given}: no files found to read; give the folder or zip that holds the evidence")
    unreadable = [f for f in bundle.files if f.kind in ("container", "binary") and f.warnings]
    if unreadable and len(unreadable) == len(bundle.files):
        first = unreadable[0]
        more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        fail(f"{first.path}: {first.warnings[0]}{more}; nothing could be read")
    return bundle


def _warn(diagnosis: Diagnosis, format: OutputFormat, quiet: bool) -> None:
    """File warnings go to stderr (stdout holds the one report document)."""
    if quiet:
        return
    console = stderr_console()
    read = [f for f in diagnosis.evidence if f.kind not in ("unrecognised", "binary", "container")]
    if not read:
        console.print(
            "warning: none of the files was recognised as evidence (message trace, SMTP logs, "
            "firewall configuration or deny log)",
            markup=False,
        )
    if format == OutputFormat.text:
        return  # the text report lists warnings in its evidence table
    for entry in diagnosis.evidence:
        for warning in entry.warnings[:5]:
            console.print(f"warning: {entry.path}: {warning}", markup=False)


def emit(diagnosis: Diagnosis, format: OutputFormat, output: Path | None) -> None:
    if format == OutputFormat.json:
        write_output(json_report.render(diagnosis), output)
    elif format == OutputFormat.html:
        write_output(html.render(diagnosis), output)
    elif format == OutputFormat.markdown:
        write_output(markdown.render(diagnosis), output)
    else:
        render_text(lambda console: terminal.render(diagnosis, console), output)


@app.command("diagnose")
def diagnose_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Evidence: files, folders (read recursively) or .zip bundles. Each file's "
            "kind is found from its content.",
            show_default=False,
            metavar="PATH",
        ),
    ],
    format: FormatOption = OutputFormat.text,
    output: OutputOption = None,
    endpoints: EndpointsOption = None,
    timezone_name: TimezoneOption = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="ADDRESS",
            help="The on-premises SMTP address EOP connects to (public or inside), when the "
            "trace does not show it.",
        ),
    ] = None,
    acl: Annotated[
        str | None,
        typer.Option("--acl", metavar="NAME", help="The firewall ACL / rule base to evaluate."),
    ] = None,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe",
            help="Also probe the SMTP targets seen in the evidence from this machine (DNS, "
            "TCP 25, STARTTLS, certificate).",
        ),
    ] = False,
    resolver: Annotated[
        str | None,
        typer.Option(
            "--resolver", metavar="HOST[:PORT]", help="DNS server for --probe (HOST[:PORT])."
        ),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Diagnose why mail from Exchange Online to on-premises is delayed or lost."""
    if to is not None:
        import ipaddress

        try:
            ipaddress.ip_address(to)
        except ValueError:
            fail(f"--to {to}: not an IP address")
    options: dict[str, Any] = {"to": to, "acl": acl, "probe": probe}
    if probe:
        options["probe_options"] = {"resolver": resolver}
    run(
        list(paths),
        format=format,
        output=output,
        endpoints=endpoints,
        timezone_name=timezone_name,
        quiet=quiet,
        options=options,
        acl=acl,
    )


@app.command("demo")
def demo_command(
    format: FormatOption = OutputFormat.text,
    output: OutputOption = None,
    endpoints: EndpointsOption = None,
    quiet: QuietOption = False,
) -> None:
    """Diagnose the bundled Tailspin Toys example (a firewall missing some EOP ranges)."""
    example = resources.files("mailflow_doctor").joinpath("examples/tailspin")
    with resources.as_file(example) as folder:
        if not Path(folder).is_dir():
            fail("the bundled example is missing from this installation", EXIT_USAGE)
        run(
            [Path("tailspin")],
            format=format,
            output=output,
            endpoints=endpoints,
            timezone_name=None,
            quiet=quiet,
            options={"to": None, "acl": None, "probe": False},
            cwd=Path(folder).parent,
        )
