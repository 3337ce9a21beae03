"""The typer application that every command module attaches to."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="mailflow-doctor",
    help=(
        "Find out why mail from Exchange Online to on-premises Exchange is delayed or lost, "
        "prove it from the evidence, and say what to change."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _group() -> None:
    """Keep the app a command group even when only one command module is loaded."""
