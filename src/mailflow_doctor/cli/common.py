"""What every command shares: output formats, writing output, exit codes, clean errors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


class OutputFormat(StrEnum):
    text = "text"
    json = "json"
    html = "html"
    markdown = "markdown"


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print a clear one-line error on stderr and exit (2 = usage or unreadable input)."""
    stderr_console().print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def write_output(text: str, output: Path | None) -> None:
    """Write to --output or stdout; stdout copes with any console encoding (Windows cp437)."""
    if output is not None:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8", newline="\n")
        except OSError as exc:
            fail(f"{output}: cannot write: {exc.strerror or exc}")
        return
    stream = sys.stdout
    try:
        stream.write(text)
    except UnicodeEncodeError:
        stream.buffer.write(text.encode(stream.encoding or "utf-8", errors="replace"))
    if not text.endswith("\n"):
        stream.write("\n")
    stream.flush()


@contextmanager
def friendly_errors(*expected: type[Exception]) -> Iterator[None]:
    """Turn the expected errors into one clear line on stderr and exit 2, never a traceback."""
    try:
        yield
    except typer.Exit:
        raise
    except expected as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)


def render_text(render: Callable[[Console], None], output: Path | None) -> None:
    """Render rich output to the terminal, or plain text to a file."""
    if output is None:
        render(Console(highlight=False, soft_wrap=False))
        return
    console = Console(record=True, width=120, file=open(_devnull(), "w"), color_system=None)  # noqa: SIM115
    render(console)
    write_output(console.export_text(), output)


def _devnull() -> str:
    import os

    return os.devnull
