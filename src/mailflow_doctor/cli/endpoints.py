"""`mailflow-doctor endpoints show`: the EOP ranges in use, their version and source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mailflow_doctor.cli.common import OutputFormat, friendly_errors, render_text, write_output
from mailflow_doctor.cli.typer_app import app
from mailflow_doctor.knowledge.endpoints import EndpointDataError, load

endpoints_app = typer.Typer(help="The Microsoft 365 endpoint list in use.", no_args_is_help=True)
app.add_typer(endpoints_app, name="endpoints")

EndpointsOption = Annotated[
    Path | None,
    typer.Option(
        "--endpoints",
        help="A Microsoft 365 endpoints JSON you downloaded (/endpoints/Worldwide); "
        "default: the bundled snapshot.",
        dir_okay=False,
    ),
]


@endpoints_app.command("show")
def show(
    endpoints: EndpointsOption = None,
    format: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.text,
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """Print the Exchange Online Protection SMTP ranges (endpoint set 10, TCP 25) in use."""
    with friendly_errors(EndpointDataError):
        endpoint_list = load(endpoints)
    sets = endpoint_list.eop_smtp_sets()
    if format == OutputFormat.json:
        doc = {
            "endpoints": {**endpoint_list.describe(), "location": endpoint_list.location},
            "eop_smtp_sets": [
                {
                    "id": s.id,
                    "urls": list(s.urls),
                    "tcp_ports": sorted(s.tcp_ports),
                    "ips": list(s.ips),
                }
                for s in sets
            ],
            "ranges": endpoint_list.eop_smtp_cidrs(),
        }
        write_output(json.dumps(doc, indent=2), output)
        return

    def render(console: Console) -> None:
        console.print(
            f"Microsoft 365 endpoints, instance {endpoint_list.instance}, "
            f"version {endpoint_list.version} ({endpoint_list.source}: {endpoint_list.location})"
        )
        for endpoint_set in sets:
            console.print(
                f"Endpoint set {endpoint_set.id}: Exchange Online Protection inbound SMTP, "
                f"TCP {','.join(str(p) for p in sorted(endpoint_set.tcp_ports))}, "
                f"{', '.join(endpoint_set.urls)}"
            )
        table = Table("range", "family", "addresses")
        for cidr in endpoint_list.eop_smtp_cidrs():
            family = "IPv6" if ":" in cidr else "IPv4"
            size = 2 ** ((128 if ":" in cidr else 32) - int(cidr.split("/")[1]))
            table.add_row(
                cidr, family, f"{size:,}" if family == "IPv4" else f"2^{size.bit_length() - 1}"
            )
        console.print(table)
        console.print(
            "These are the sources Exchange Online delivers from; the on-premises firewall must "
            "permit all of them on TCP 25 to the hybrid receive endpoint."
        )

    render_text(render, output)
