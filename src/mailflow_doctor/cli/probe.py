"""`mailflow-doctor probe TARGET`: DNS, TCP 25, STARTTLS and the certificate, live, from here."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mailflow_doctor.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    OutputFormat,
    fail,
    friendly_errors,
    render_text,
    write_output,
)
from mailflow_doctor.cli.typer_app import app
from mailflow_doctor.probe.certs import TrustRoots, TrustRootsError
from mailflow_doctor.probe.dns import ResolverSpec, ResolverSpecError
from mailflow_doctor.probe.problems import CRITICAL, ERROR
from mailflow_doctor.probe.runner import DEADLINE_FACTOR, ProbeOptions, probe
from mailflow_doctor.probe.tcp import SourceAddressError, check_source
from mailflow_doctor.report.probe_report import render_json, render_terminal

_LABEL = (
    "A host name, an IP address, or a mail domain (then its MX hosts are probed): "
    "e.g. the smart host of the outbound connector to on-premises."
)


def _valid_target(target: str) -> str:
    text = target.strip().rstrip(".")
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        pass
    else:
        return text.strip("[]")
    labels = text.split(".")
    if not text or len(text) > 253 or any(not 0 < len(label) < 64 for label in labels):
        fail(f"TARGET {target!r}: not a host name, mail domain or IP address")
    if any(not all(c.isalnum() or c in "-_*" for c in label) for label in labels):
        fail(f"TARGET {target!r}: not a host name, mail domain or IP address")
    return text


@app.command("probe")
def probe_command(
    target: Annotated[str, typer.Argument(help=_LABEL, show_default=False)],
    port: Annotated[int, typer.Option("--port", help="TCP port to probe.", min=1, max=65535)] = 25,
    resolver: Annotated[
        str | None,
        typer.Option("--resolver", help="DNS server to ask, HOST[:PORT]; default: the system's."),
    ] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(
            "--ca-file",
            help="PEM file of trusted roots (a private CA); default: the Mozilla roots (certifi).",
            dir_okay=False,
        ),
    ] = None,
    expect_name: Annotated[
        str | None,
        typer.Option(
            "--expect-name",
            help="The name the certificate must carry: the outbound connector's TlsDomain.",
        ),
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", help="Local address to connect from.")
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            help=f"Seconds allowed for each step (DNS, connect, each SMTP reply, the TLS "
            f"handshake); the whole probe ends within {DEADLINE_FACTOR}x this.",
            min=0.1,
            max=600,
        ),
    ] = 10.0,
    format: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.text,
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Probe an SMTP endpoint from this machine: DNS, TCP, STARTTLS and the certificate.

    Exit status: 0 nothing wrong, 1 a critical or error finding, 2 usage or unreadable input.
    """
    if format not in (OutputFormat.text, OutputFormat.json):
        fail("--format: probe writes text or json")
    name = _valid_target(target)
    with friendly_errors(ResolverSpecError, TrustRootsError, SourceAddressError):
        spec = ResolverSpec.parse(resolver)
        roots = TrustRoots.from_file(ca_file) if ca_file else None
        if source:
            check_source(source)
    options = ProbeOptions(
        port=port,
        resolver=spec,
        roots=roots,
        expect_name=expect_name.strip().rstrip(".") if expect_name else None,
        source=source,
        step_timeout=timeout,
    )
    report = probe(name, options)
    if format == OutputFormat.json:
        write_output(render_json(report, source), output)
    else:

        def render(console: Console) -> None:
            render_terminal(report, console, source)

        render_text(render, output)
    failing = any(p.severity in (CRITICAL, ERROR) for p in report.problems)
    raise typer.Exit(EXIT_FINDINGS if failing else EXIT_OK)
