"""A Markdown report to paste into a ticket.

Ticket systems render Markdown and often raw HTML inside it, so evidence text is escaped for
both: Markdown punctuation gets a backslash, `<`, `>` and `&` become entities, and excerpts and
remediation sit in fenced code blocks whose fence is longer than any backtick run inside.
"""

from __future__ import annotations

import re

from mailflow_doctor.diagnose.engine import Diagnosis
from mailflow_doctor.diagnose.facts import utc_iso
from mailflow_doctor.diagnose.model import Finding

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_LINE_START = re.compile(r"^(\s*)(#{1,6}|[+-]|\d{1,9}[.)])(?=\s|$)")


def esc(text: object) -> str:
    """Escape text for inline Markdown and for HTML that a renderer may let through.

    Only what can start formatting is escaped (emphasis, code, links, tables, HTML, and list
    or heading markers at the start), so addresses like 40.107.0.0/16 stay readable as text.
    """
    value = str(text).replace("\r", " ").replace("\n", " ")
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    value = _MD_SPECIAL.sub(r"\\\1", value)
    return _LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), value)


def fence(lines: list[str], info: str = "text") -> str:
    """A fenced block that the content cannot close early."""
    longest = max((len(m) for line in lines for m in re.findall(r"`+", line)), default=0)
    marker = "`" * max(3, longest + 1)
    return "\n".join([f"{marker}{info}", *lines, marker])


def _finding(finding: Finding, number: int) -> list[str]:
    badge = " **(root cause)**" if finding.root_cause else ""
    out = [
        f"### {number}. {esc(finding.title)}",
        "",
        f"`{finding.id}` · {finding.severity.value} · confidence {finding.confidence:.0%}{badge}",
        "",
        esc(finding.summary),
        "",
    ]
    for key, label in (
        ("corroboration", "Also shown by"),
        ("contradiction", "Against"),
        ("notes", "Notes"),
    ):
        values = finding.data.get(key)
        if isinstance(values, list) and values:
            out.append(f"**{label}:**")
            out.extend(f"- {esc(v)}" for v in values)
            out.append("")
    if finding.ruled_out:
        out += [f"*Not the root cause:* {esc(finding.ruled_out)}", ""]
    if finding.evidence:
        out.append("**Evidence:**")
        out.append("")
        for ref in finding.evidence[:8]:
            where = f"{ref.path}:{ref.line}" if ref.line else ref.path
            out.append(f"- {esc(where)}")
            if ref.excerpt:
                out.append("")
                out.extend("  " + line for line in fence([ref.excerpt]).splitlines())
        out.append("")
    if finding.remediation:
        out += ["**What to change:**", "", fence(list(finding.remediation)), ""]
    return out


def render(diagnosis: Diagnosis) -> str:
    root = diagnosis.root
    out = ["# Exchange Online to on-premises mail flow diagnosis", ""]
    if root is not None:
        out += [
            f"**Root cause:** {esc(root.title)} (`{root.id}`, confidence {root.confidence:.0%})",
            "",
            esc(root.summary),
            "",
        ]
        missing = root.data.get("missing_ranges")
        if isinstance(missing, list) and missing:
            out += ["Missing ranges: " + ", ".join(f"`{m}`" for m in missing), ""]
    elif (mixed := diagnosis.finding("evidence.mixed_sources")) is not None:
        out += [f"**{esc(mixed.title)}.**", "", esc(mixed.summary), ""]
    elif diagnosis.findings:
        out += ["**No single root cause is proven by this evidence.**", ""]
    elif diagnosis.read_anything:
        out += ["**Nothing wrong was found in the evidence given.**", ""]
    else:
        out += ["**None of the files was recognised as evidence.**", ""]
    out += [f"## Findings ({len(diagnosis.findings)})", ""]
    for number, finding in enumerate(diagnosis.findings, 1):
        out += _finding(finding, number)
    out += [
        f"## Evidence read ({len(diagnosis.evidence)} files)",
        "",
        "| file | kind | records | first (UTC) | last (UTC) |",
        "|---|---|---:|---|---|",
    ]
    for entry in diagnosis.evidence:
        out.append(
            f"| {esc(entry.path)} | {esc(entry.kind)} | {entry.records} | "
            f"{utc_iso(entry.first_utc) or ''} | {utc_iso(entry.last_utc) or ''} |"
        )
    warned = [e for e in diagnosis.evidence if e.warnings]
    if warned:
        out += ["", "**Read warnings:**", ""]
        for entry in warned:
            for warning in entry.warnings[:5]:
                out.append(f"- {esc(entry.path)}: {esc(warning)}")
    out += [
        "",
        f"*mailflow-doctor {diagnosis.version}, generated {utc_iso(diagnosis.generated_utc)}; "
        f"Microsoft 365 endpoints {esc(diagnosis.endpoints.get('instance', ''))} version "
        f"{esc(diagnosis.endpoints.get('version', ''))} "
        f"({esc(diagnosis.endpoints.get('source', ''))}).*",
        "",
    ]
    return "\n".join(out)
