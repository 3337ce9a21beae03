"""`mailflow-doctor firewall check CONFIG`: which published EOP ranges the firewall lets in."""

from __future__ import annotations

import ipaddress
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mailflow_doctor.cli.common import EXIT_FINDINGS, EXIT_OK, fail, render_text, write_output
from mailflow_doctor.cli.typer_app import app
from mailflow_doctor.evidence.document import detect_encoding
from mailflow_doctor.firewall.evaluate import EvaluationError
from mailflow_doctor.firewall.registry import (
    FirewallParseError,
    FirewallParser,
    ParseOptions,
    best_parser,
    parsers,
)
from mailflow_doctor.knowledge.endpoints import EndpointDataError, load
from mailflow_doctor.report.firewall_check import NoTargetError, render, run_check, to_json

MAX_CONFIG_BYTES = 64 * 1024 * 1024

firewall_app = typer.Typer(
    help="Check a firewall configuration against the published Exchange Online ranges.",
    no_args_is_help=True,
)
app.add_typer(firewall_app, name="firewall")


class CheckFormat(StrEnum):
    text = "text"
    json = "json"


def read_config_text(path: Path) -> str:
    """The configuration as text (UTF-8, UTF-16 or cp1252; `-` reads stdin)."""
    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(MAX_CONFIG_BYTES + 1)
        else:
            if path.is_dir():
                fail(f"{path}: is a folder; give the configuration file itself")
            with path.open("rb") as handle:
                data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        fail(f"{path}: cannot read the configuration: {exc.strerror or exc}")
    if len(data) > MAX_CONFIG_BYTES:
        fail(f"{path}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MB; not a configuration")
    encoding, bom = detect_encoding(data[:65536])
    text = data[bom:].decode(encoding, errors="replace")
    if "\x00" in text[:65536]:
        fail(f"{path}: is a binary file, not a firewall configuration")
    if not text.strip():
        fail(f"{path}: is empty")
    return text


def pick_parser(text: str, path: Path, vendor: str | None) -> FirewallParser:
    known = parsers()
    if vendor:
        wanted = vendor.strip().lower()
        matches = [p for name, p in known.items() if name == wanted] or [
            p for name, p in known.items() if wanted in name
        ]
        if len(matches) != 1:
            fail(f"--vendor {vendor}: not one of {', '.join(sorted(known))}")
        return matches[0]
    parser, score = best_parser(text)
    if parser is None or score <= 0:
        fail(
            f"{path}: not recognised as a firewall configuration of any supported vendor "
            f"({', '.join(sorted(known))}); name it with --vendor"
        )
    return parser


@firewall_app.command("check")
def check(
    config: Annotated[
        Path,
        typer.Argument(
            help="The configuration (ASA `show running-config`, iptables-save, ...), or only "
            "the access-list lines; `-` reads standard input.",
            show_default=False,
        ),
    ],
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="The address Exchange Online connects to (public, before NAT). "
            "Default: the mail host the configuration names.",
        ),
    ] = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 25,
    acl: Annotated[
        str | None,
        typer.Option("--acl", help="The ACL / rule list to check (default: the inbound one)."),
    ] = None,
    endpoints: Annotated[
        Path | None,
        typer.Option(
            "--endpoints",
            help="A Microsoft 365 endpoints JSON you downloaded; default: the bundled snapshot.",
            dir_okay=False,
        ),
    ] = None,
    vendor: Annotated[
        str | None, typer.Option("--vendor", help="Force the vendor (default: detected).")
    ] = None,
    format: Annotated[CheckFormat, typer.Option("--format", "-f")] = CheckFormat.text,
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Per published Exchange Online range: permitted, partly permitted or blocked, and why.

    Exit status: 0 every range permitted, 1 some blocked, 2 usage or unreadable input.
    """
    if to is not None:
        try:
            to = str(ipaddress.ip_address(to.strip()))
        except ValueError:
            fail(f"--to {to}: not an IP address (give the address Exchange Online connects to)")
    text = read_config_text(config)
    parser = pick_parser(text, config, vendor)
    try:
        endpoint_list = load(endpoints)
    except EndpointDataError as exc:
        fail(str(exc))
    display = str(config) if str(config) != "-" else "<stdin>"
    try:
        result = parser.parse(text, display, ParseOptions(acl=acl))
        report = run_check(parser, text, result, endpoint_list, to, port)
    except (FirewallParseError, NoTargetError, EvaluationError) as exc:
        fail(str(exc))
    except typer.Exit:
        raise
    except Exception as exc:  # a parser bug must still end in one clear line
        fail(f"{display}: the {parser.vendor} parser failed ({type(exc).__name__}: {exc})")
    if format == CheckFormat.json:
        write_output(json.dumps(to_json(report), indent=2), output)
    else:
        render_text(lambda console: render(report, console), output)
    raise typer.Exit(EXIT_FINDINGS if report.has_gaps else EXIT_OK)
