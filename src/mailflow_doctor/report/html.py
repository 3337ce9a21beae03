"""A self-contained HTML report: one file, no script, no external request, everything escaped.

The report is opened by whoever gets it attached to a ticket, so it must be inert whatever the
evidence holds: jinja2 autoescapes every value, the template is fixed (evidence is never
treated as a template), there is no JavaScript at all, and a strict Content-Security-Policy
forbids scripts, remote styles, images, fonts and connections even if something slipped
through. Styles are inline so the file renders the same offline and prints cleanly.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import jinja2

from mailflow_doctor.diagnose.engine import Diagnosis
from mailflow_doctor.diagnose.facts import utc_iso
from mailflow_doctor.diagnose.model import Finding

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)


SKIP_DATA = frozenset({"corroboration", "contradiction", "notes", "ranges", "detail", "per_target"})


def _short(value: Any) -> str:
    if isinstance(value, list | tuple):
        text = ", ".join(str(v) for v in value[:12])
        return text + (f", ... ({len(value)} in all)" if len(value) > 12 else "")
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in list(value.items())[:12])
    return str(value)


def data_items(finding: Finding) -> list[tuple[str, str]]:
    return [
        (key, _short(value))
        for key, value in finding.data.items()
        if key not in SKIP_DATA and value not in (None, "", [], {})
    ]


def range_rows(finding: Finding) -> list[dict[str, str]]:
    """Per-range verdicts of a firewall finding, as table rows."""
    rows = finding.data.get("ranges")
    if not isinstance(rows, list):
        return []
    out: list[dict[str, str]] = []
    for row in rows:
        if isinstance(row, dict) and "verdict" in row:
            out.append(
                {
                    "range": str(row.get("range", "")),
                    "verdict": str(row.get("verdict", "")),
                    "permitted": ", ".join(map(str, row.get("permitted") or [])) or "-",
                    "blocked": ", ".join(map(str, row.get("blocked") or [])) or "-",
                }
            )
    return out


_ENV = jinja2.Environment(
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_TEMPLATE = _ENV.from_string(
    resources.files("mailflow_doctor.report")
    .joinpath("templates/report.html.j2")
    .read_text(encoding="utf-8")
)


def render(diagnosis: Diagnosis) -> str:
    root = diagnosis.root
    headline = root.title if root else "no single root cause proven"
    return _TEMPLATE.render(
        d=diagnosis,
        root=root,
        headline=headline,
        csp=CSP,
        generated=utc_iso(diagnosis.generated_utc),
        pct=lambda v: f"{v:.0%}",
        iso=utc_iso,
        data_items=data_items,
        range_rows=range_rows,
    )
