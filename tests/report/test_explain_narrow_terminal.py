"""`explain` in an 80-column terminal: wrapped lines stay under their heading or number."""

from __future__ import annotations

import io

from rich.console import Console

from mailflow_doctor.report.explain_report import explain_all, render_terminal

DEFER = (
    "450 4.4.316 Connection refused [Message=Socket error code 10061] "
    "[LastAttemptedServerName=mail.tailspintoys.ca] [LastAttemptedIP=203.0.113.25:25] "
    "[AM6EUR05FT041.eop-eur05.prod.protection.outlook.com 2026-11-28T13:03:00.000Z "
    "08DE2F1A13030000]"
)


def _render(width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    render_terminal(explain_all(DEFER), console)
    return console.export_text().splitlines()


def test_wrapped_lines_keep_their_indent_at_80_columns() -> None:
    lines = _render(80)
    start = lines.index("Likely causes, most likely first")
    section = lines[start + 1 : lines.index("", start)]
    assert len(section) > 3
    for line in section:
        assert line.startswith("  "), line
        if not line.lstrip()[:1].isdigit():
            assert line.startswith("     "), f"continuation not under the text: {line!r}"
    wire = [i for i, line in enumerate(lines) if line.startswith("  On the wire:")]
    assert wire
    assert lines[wire[0] + 1].startswith("  ")
    assert all(len(line) <= 80 for line in lines)
