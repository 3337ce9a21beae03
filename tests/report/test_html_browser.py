"""The HTML report opened in a real browser (Debian chromium): no request, no script, no error.

Opens the report from file:// exactly as an admin double-clicking an attachment would, records
every request the page makes (only the file itself is allowed), listens for console errors and
for any dialog or script execution a hostile subject line could cause, and saves a screenshot
(in the temp dir, mailflow-doctor-screenshots/, for a human to look at).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_report_escaping import hostile_diagnosis

from mailflow_doctor.report import html

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUT = Path(tempfile.gettempdir()) / "mailflow-doctor-screenshots"


def _playwright() -> object:
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip("Debian chromium (/usr/bin/chromium) is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed")
    return sync_playwright


def open_report(page_html: str, tmp_path: Path, shot: str) -> dict[str, list[str]]:
    sync_playwright = _playwright()
    report = tmp_path / "report.html"
    report.write_text(page_html, encoding="utf-8")
    seen: dict[str, list[str]] = {"requests": [], "console": [], "dialogs": [], "errors": []}
    with sync_playwright() as p:  # type: ignore[operator]
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.on(
                "console",
                lambda m: (
                    seen["console"].append(f"{m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))

            def on_dialog(dialog: object) -> None:
                seen["dialogs"].append(str(getattr(dialog, "message", "")))
                dialog.dismiss()  # type: ignore[attr-defined]

            page.on("dialog", on_dialog)
            page.goto(report.as_uri())
            page.wait_for_load_state("load")
            seen["scripts"] = [str(page.evaluate("document.scripts.length"))]
            seen["title"] = [page.title()]
            seen["text"] = [page.inner_text("body")]
            OUT.mkdir(exist_ok=True)
            page.screenshot(path=str(OUT / shot), full_page=True)
        finally:
            browser.close()
    seen["uri"] = [report.as_uri()]
    return seen


@pytest.mark.browser
def test_demo_report_in_chromium(tmp_path: Path) -> None:
    import subprocess

    exe = Path(sys.executable).parent / "mailflow-doctor"
    result = subprocess.run(
        [str(exe), "demo", "--format", "html"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    seen = open_report(result.stdout, tmp_path, "demo-report.png")
    assert seen["requests"] == seen["uri"]
    assert seen["console"] == []
    assert seen["errors"] == []
    assert seen["scripts"] == ["0"]
    assert "Firewall blocks 2 of 4" in seen["title"][0]
    assert "52.102.0.0/15" in seen["text"][0]


@pytest.mark.browser
def test_hostile_evidence_stays_inert_in_chromium(tmp_path: Path) -> None:
    seen = open_report(html.render(hostile_diagnosis()), tmp_path, "hostile-report.png")
    assert seen["requests"] == seen["uri"]  # the <img src=x> did not load: it is text
    assert seen["dialogs"] == []  # alert(1) / alert(2) never ran
    assert seen["errors"] == []
    assert seen["console"] == []
    assert seen["scripts"] == ["0"]
    body = seen["text"][0]
    assert "<script>alert(1)</script>" in body  # shown as text, exactly
    assert "{{7*7}}" in body
    assert "[red]x[/red]" in body
