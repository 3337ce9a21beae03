"""Hostile evidence stays inert in every report format; the HTML report is self-contained."""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import pytest
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "diagnose"))

from diag_builders import at, bundle, defer, message, sent

from mailflow_doctor.diagnose.bundle import FileSummary
from mailflow_doctor.diagnose.engine import Diagnosis, diagnose
from mailflow_doctor.evidence.document import SourceRef
from mailflow_doctor.evidence.records import TraceEvent
from mailflow_doctor.report import html, json_report, markdown, terminal

SCRIPT = "<script>alert(1)</script>"
TEMPLATE = "{{7*7}}"
MARKUP = "[red]x[/red]"
HOSTILE = f"Invoice {SCRIPT} {TEMPLATE} {MARKUP} <img src=x onerror=alert(2)> `` ```"


def hostile_diagnosis() -> Diagnosis:
    evil = TraceEvent(
        ref=SourceRef("trace/detail.csv", 9, HOSTILE),
        time_utc=at(5),
        event="Defer",
        action="",
        detail=f"Reason: [{{LED=450 4.4.316 Connection refused}}] {HOSTILE}",
        data="",
        reason=defer(5).reason,
        message_id="evil",
    )
    b = bundle(
        evil,
        defer(20, msg="m1"),
        sent(25, msg="m2"),
        message("Delivered", "m2", subject=HOSTILE),
    )
    b.files.append(
        FileSummary(
            f"evidence/{SCRIPT}.csv",
            "exo.message_trace_detail",
            3,
            at(0),
            at(30),
            [f"line 4: {HOSTILE}"],
        )
    )
    return diagnose(b, now=datetime(2026, 11, 28, 22, 0, tzinfo=UTC))


def test_hostile_text_reaches_the_report_at_all() -> None:
    diagnosis = hostile_diagnosis()
    doc = json_report.to_document(diagnosis)
    text = json.dumps(doc)
    assert "onerror" in text  # otherwise the escaping tests below prove nothing


def test_json_keeps_text_exact() -> None:
    doc = json.loads(json_report.render(hostile_diagnosis()))
    excerpts = [r["excerpt"] for f in doc["findings"] for r in f["evidence"]]
    assert any(HOSTILE in e for e in excerpts)
    assert doc["evidence"][0]["path"] == f"evidence/{SCRIPT}.csv"
    assert doc["generated_utc"] == "2026-11-28T22:00:00Z"


def test_html_is_inert_and_self_contained() -> None:
    page = html.render(hostile_diagnosis())
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert TEMPLATE in page
    assert "&lt;/script&gt; {{7*7}} [red]x[/red]" in page  # not rendered as a template
    assert MARKUP in page
    # No external requests of any kind.
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "@import" not in page
    assert "url(" not in page
    assert "<link" not in page.lower()
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert csp is not None
    policy = unescape(csp.group(1))
    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # falls back to 'none'


def test_markdown_is_inert() -> None:
    text = markdown.render(hostile_diagnosis())
    outside_fences = re.sub(r"(`{3,})[^\n]*\n.*?\n[ \t]*\1(?!`)", "", text, flags=re.S)
    assert "<script" not in outside_fences
    assert "<img" not in outside_fences
    assert "&lt;script&gt;" in outside_fences
    assert "\\[red\\]x\\[/red\\]" in outside_fences
    # Fences are long enough that a backtick run in the evidence cannot close them early.
    for match in re.finditer(r"^([ \t]*)(`{3,})text$", text, re.M):
        fence = match.group(2)
        body_end = text.index("\n" + match.group(1) + fence + "\n", match.end())
        body = text[match.end() : body_end]
        assert fence not in body


@pytest.mark.parametrize("width", [80, 120])
def test_terminal_does_not_interpret_markup_from_evidence(width: int) -> None:
    console = Console(record=True, width=width, color_system=None, file=open(os.devnull, "w"))  # noqa: SIM115
    terminal.render(hostile_diagnosis(), console)
    out = console.export_text()
    assert MARKUP in out.replace("\n", "")
    assert SCRIPT in out.replace("\n", "").replace(" ", "") or "alert(1)" in out


def test_terminal_markup_would_have_been_eaten_without_escaping() -> None:
    """Guard for the test above: rich does consume `[red]` when not escaped."""
    console = Console(record=True, width=80, color_system=None, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(MARKUP)
    assert MARKUP not in console.export_text()


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("40.107.0.0/16 (x)", "40.107.0.0/16 (x)"),
        ("# not a heading", "\\# not a heading"),
        ("1. not a list", "\\1. not a list"),
        ("- not a bullet", "\\- not a bullet"),
        ("a*b_c|d", "a\\*b\\_c\\|d"),
        ("[link](http://x)", "\\[link\\](http://x)"),
        ("<b>&", "&lt;b&gt;&amp;"),
        ("two\nlines", "two lines"),
    ],
)
def test_markdown_escape_cases(raw: str, escaped: str) -> None:
    assert markdown.esc(raw) == escaped
