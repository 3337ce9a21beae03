"""Explain a pasted status text: which codes it holds, what they mean on the wire, what to do.

Admins paste whatever they have: a message-trace Defer detail, an NDR's diagnostic block, a
queue's LastError, a connector-validation error, or just "4.4.316". The text is read with the
one reason parser (`evidence.reason.parse_reason`) and, as a safety net, scanned for every
enhanced code, socket error and known sub-message, so that nothing the knowledge base knows is
missed even in a mangled paste. Causes are ranked so that the most specific evidence in the text
(the sub-message, the socket error, the innermost reply) decides which of a code's many causes
comes first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from mailflow_doctor import __version__
from mailflow_doctor.evidence.reason import parse_reason
from mailflow_doctor.evidence.records import ParsedReason
from mailflow_doctor.knowledge.status_codes import (
    Entry,
    KnowledgeBase,
    Point,
    code_key,
    describe_enhanced,
    load,
)

MAX_INPUT_CHARS = 64 * 1024
MAX_CAUSES = 6
MAX_CHECKS = 8
MAX_FIXES = 6

_ENHANCED_ANYWHERE = re.compile(r"(?<![\w.])([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)(?!\w)")
_SOCKET_ANYWHERE = re.compile(
    r"(?:Socket\s+error\s+code|Winsock\s+error\s+code|Win32\s+error\s+code|socket\s+error)"
    r"\s*:?\s*(\d{3,6})\b",
    re.IGNORECASE,
)
_BARE_NUMBER = re.compile(r"^\s*(\d{3,5})\s*$")
_LINE_START_CODE = re.compile(r"^\s*#?\s*[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}")
_HOP_LINE = re.compile(r"Server\s+at\s+\S+.*\s+returned\s", re.IGNORECASE)
_EXPIRY_CODES = ("4.4.7", "5.4.300")


@dataclass(frozen=True)
class Found:
    """One code, socket error or sub-message found in the text, and where it sat."""

    label: str  # "450 4.4.317", "10061", "SubjectMismatch"
    role: str  # outer, expiry, inner, socket, message, smtp
    entry: Entry | None
    generic: str = ""  # what the code's class and subject say, when no entry knows it
    depth: int = 0  # 0 for the outermost reply, more for replies nested inside it


@dataclass(frozen=True)
class RankedPoint:
    text: str
    findings: tuple[str, ...]
    sources: tuple[str, ...]
    command: str = ""
    from_entry: str = ""


@dataclass(frozen=True)
class Explanation:
    """Everything `explain` says about one status text."""

    text: str
    reason: ParsedReason
    headline: str
    found: tuple[Found, ...]
    causes: tuple[RankedPoint, ...]
    checks: tuple[RankedPoint, ...]
    fixes: tuple[RankedPoint, ...]
    facts: tuple[tuple[str, str], ...]
    source_ids: tuple[str, ...]
    occurrences: int = 1  # identical explanations of several pasted lines are shown once

    @property
    def recognised(self) -> bool:
        return any(item.entry is not None or item.generic for item in self.found)

    @property
    def primary(self) -> Found | None:
        return self.found[0] if self.found else None

    def finding_ids(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for cause in self.causes:
            seen.update(dict.fromkeys(cause.findings))
        return tuple(seen)


def split_texts(text: str) -> list[str]:
    """Separate several pasted reasons (one per line) but keep an NDR block or a wrap together."""
    lines = [line for line in text.splitlines() if line.strip()]
    reasons = [line for line in lines if "LED=" in line]
    if len(reasons) >= 2 and all(line.count("LED=") == 1 for line in reasons):
        # Many Defer rows (a pasted trace, a CSV): one reason per line.
        return [line.strip() for line in reasons]
    if len(lines) < 2 or _HOP_LINE.search(text):
        return [text.strip()]
    if all(_LINE_START_CODE.match(line) for line in lines):
        return [line.strip() for line in lines]
    return [text.strip()]


def _walk(reason: ParsedReason, depth: int = 0) -> Iterator[tuple[ParsedReason, int]]:
    yield reason, depth
    for hop in reason.chain:
        yield from _walk(hop, depth + 1)


def _normal_code(code: str) -> str:
    key = code_key(code)
    return ".".join(str(part) for part in key) if key else code


def _collect(text: str, reason: ParsedReason, kb: KnowledgeBase) -> list[Found]:
    found: list[Found] = []
    seen: set[str] = set()

    def add_code(code: str, smtp: str | None, role: str, depth: int) -> None:
        normal = _normal_code(code)
        if normal in seen or normal.startswith("2."):
            return
        seen.add(normal)
        entry = kb.by_enhanced(normal)
        label = f"{smtp} {normal}" if smtp else normal
        if normal in _EXPIRY_CODES or kb.deferral_for(normal) is not None:
            role = "expiry"
        generic = "" if entry else describe_enhanced(normal)
        found.append(Found(label, role, entry, generic, depth))

    def add_socket(number: int) -> None:
        label = str(number)
        if label in seen:
            return
        seen.add(label)
        found.append(Found(label, "socket", kb.by_socket(number)))

    for hop, depth in _walk(reason):
        if hop.enhanced_code:
            add_code(hop.enhanced_code, hop.smtp_code, "outer" if depth == 0 else "inner", depth)
        if hop.socket_error is not None:
            add_socket(hop.socket_error)
    # The safety net: codes and socket errors anywhere in the text, in reading order.
    for match in _ENHANCED_ANYWHERE.finditer(text):
        add_code(match.group(1), None, "inner" if found else "outer", 9 if found else 0)
    for match in _SOCKET_ANYWHERE.finditer(text):
        add_socket(int(match.group(1)))
    bare = _BARE_NUMBER.match(text)
    if bare and not found:
        number = int(bare.group(1))
        if kb.by_socket(number) is not None:
            add_socket(number)
        else:
            entry = kb.by_smtp(bare.group(1))
            if entry is not None:
                seen.add(bare.group(1))
                found.append(Found(bare.group(1), "smtp", entry))
    for entry in kb.by_message(" ".join(text.split())):  # wrapped pastes
        if entry.kind == "socket" and entry.socket_codes:
            add_socket(entry.socket_codes[0])
        elif entry.kind == "enhanced" and entry.codes:
            # A known wording without its code (an NDR's user text, for instance).
            if all(f.entry is not entry for f in found):
                add_code(entry.codes[0], None, "inner" if found else "outer", 9 if found else 0)
        elif entry.id not in seen:
            seen.add(entry.id)
            found.append(Found(entry.title, "message", entry))
    if not found and reason.smtp_code:
        entry = kb.by_smtp(reason.smtp_code)
        if entry is not None:
            found.append(Found(reason.smtp_code, "smtp", entry))
    return _order(found, kb)


def _order(found: list[Found], kb: KnowledgeBase) -> list[Found]:
    """Put the code that names the failure first: a deferral beats its expiry wrapper.

    After the lead come the sub-messages and socket errors (the most specific evidence), then
    the nested replies, the expiry wrappers and the bare SMTP codes.
    """
    lead: Found | None = None
    for expiry in (f for f in found if f.role == "expiry"):
        deferral = kb.deferral_for(expiry.label.split()[-1])
        if deferral is None:
            continue
        match = [f for f in found if f.entry is deferral and f.role != "expiry"]
        if match:
            lead = match[0]
        else:
            lead = Found(deferral.codes[0], "inner", deferral, depth=1)
            found.append(lead)
        break
    if lead is None:
        codes = [f for f in found if f.role in ("outer", "inner")]
        known = [f for f in codes if f.entry is not None]
        lead = min(known or codes, key=lambda f: f.depth, default=None)
    if lead is None:
        expiries = [f for f in found if f.role == "expiry"]
        lead = expiries[0] if expiries else None
    rank = {"message": 0, "socket": 1, "inner": 2, "outer": 2, "expiry": 3, "smtp": 4}
    return sorted(
        found,
        key=lambda f: (0 if f is lead else 1, rank.get(f.role, 5), f.depth, found.index(f)),
    )


def _fill(command: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        command = command.replace("{" + key + "}", value)
    return command


def _rank_points(
    groups: Iterable[tuple[Entry, tuple[Point, ...], int]],
    signals: set[str],
    values: dict[str, str],
    limit: int,
    focused: bool = False,
) -> tuple[RankedPoint, ...]:
    """Rank the points of several entries; `focused` keeps only points the evidence supports."""
    scored: list[tuple[int, int, RankedPoint]] = []
    texts: set[str] = set()
    order = 0
    claims: list[tuple[str, frozenset[str]]] = []
    for entry, points, bonus in groups:
        for point in points:
            # The same cause worded for another code (its findings already covered by a cause
            # listed from another entry), or the same command again, adds nothing.
            claim = frozenset(point.findings)
            covered = any(other != entry.id and claim <= seen for other, seen in claims)
            if point.text in texts or (claim and covered):
                continue
            if focused and bonus == 0 and not signals & set(point.findings):
                continue
            command = _fill(point.command, values) if point.command else ""
            if command and any(command == other.command for *_, other in scored):
                continue
            texts.add(point.text)
            if claim:
                claims.append((entry.id, claim))
            score = bonus + (2 if signals & set(point.findings) else 0)
            scored.append(
                (
                    -score,
                    order,
                    RankedPoint(
                        text=point.text,
                        findings=point.findings,
                        sources=point.sources,
                        command=command,
                        from_entry=entry.id,
                    ),
                )
            )
            order += 1
    scored.sort(key=lambda item: (item[0], item[1]))
    return tuple(item[2] for item in scored[:limit])


def _facts(reason: ParsedReason) -> list[tuple[str, str]]:
    facts: dict[str, str] = {}
    names = (
        ("fqdn", "server tried"),
        ("ip", "address tried"),
        ("port", "port"),
        ("proxy_target_host", "proxy target host"),
        ("proxy_target_ip", "proxy target address"),
        ("eop_server", "Exchange Online server"),
        ("eop_time_utc", "Exchange Online attempt (UTC)"),
        ("last_retry_utc", "last retry (UTC)"),
        ("smtp_security", "SmtpSecurity"),
        ("certificate_error", "certificate error"),
        ("expected_subject", "expected certificate name"),
        ("presented_subject", "presented certificate subject"),
        ("certificate_thumbprint", "certificate thumbprint"),
        ("reported_by", "reported by"),
    )
    for hop, _depth in _walk(reason):
        for attr, label in names:
            value = getattr(hop, attr, None)
            if value is None or value == "" or label in facts:
                continue
            if isinstance(value, datetime):
                value = value.strftime("%Y-%m-%d %H:%M:%SZ")
            facts[label] = str(value)
    return list(facts.items())


def _headline(found: list[Found], reason: ParsedReason) -> str:
    if not found:
        return "No status code, socket error or known message was recognised in this text."
    lead = found[0]
    title = lead.entry.title if lead.entry else lead.generic
    head = f"{lead.label}: {title}"
    detail = [f.entry.title for f in found[1:] if f.role == "message" and f.entry is not None]
    sockets = [f for f in found if f.role == "socket" and f.entry is not None]
    if detail:
        head += f" ({'; '.join(detail)})"
    elif sockets and sockets[0] is not lead and sockets[0].entry is not None:
        head += f" (socket error {sockets[0].label}, {sockets[0].entry.title})"
    expired = reason.expired or any(f.role == "expiry" for f in found)
    if expired and lead.role != "expiry":
        head += "; the message has since expired"
    return head


def explain_text(text: str, kb: KnowledgeBase | None = None) -> Explanation:
    """Explain one status text."""
    kb = kb or load()
    text = text[:MAX_INPUT_CHARS]
    reason = parse_reason(text)
    found = _collect(text, reason, kb)
    # The specific evidence (sub-message, socket error) says which causes of a code apply.
    signals: set[str] = set()
    for item in found:
        if item.entry is not None and item.role in ("message", "socket"):
            signals.update(item.entry.findings)
    target = reason.fqdn or reason.proxy_target_host or reason.ip or ""
    for hop, _ in _walk(reason):
        target = target or hop.fqdn or hop.ip or ""
    ip = reason.ip or reason.proxy_target_ip or ""
    values = {
        "target": target or "YOUR-HYBRID-ENDPOINT",
        "ip": ip or (target if target and target[0].isdigit() else "PUBLIC-IP"),
        "port": str(reason.port or 25),
        "evidence": "EVIDENCE-FOLDER",
    }
    # Causes: the most specific evidence first (sub-messages, socket errors, nested replies),
    # then the lead code, then the rest (expiry wrappers, bare SMTP codes). A sub-message or
    # socket error also lifts the causes of the other codes that it points to.
    has_specific = any(f.role in ("message", "socket") for f in found)
    bonus_by_role = {"message": 3, "socket": 2, "inner": 0 if has_specific else 1}
    groups: list[tuple[Entry, int]] = []
    lead = found[0] if found else None
    if lead is not None and lead.entry is not None:
        groups.append((lead.entry, 0))
    implied = set(lead.entry.related) if lead is not None and lead.entry is not None else set()
    for item in found[1:]:
        if item.entry is not None and all(item.entry is not g[0] for g in groups):
            # A socket error the lead code always carries (4.4.316 and 10061) adds no focus.
            bonus = 0 if item.entry.id in implied else bonus_by_role.get(item.role, 0)
            groups.append((item.entry, bonus))
    groups.sort(key=lambda g: -g[1])
    # A sub-message names the failure; the code's other causes would only distract.
    focused = any(f.role == "message" and f.entry is not None for f in found)
    causes = _rank_points(
        ((e, e.causes, b) for e, b in groups), signals, values, MAX_CAUSES, focused
    )
    lead_findings = {f for c in causes[:2] for f in c.findings}
    checks = _rank_points(
        ((e, e.checks, b) for e, b in groups), signals | lead_findings, values, MAX_CHECKS
    )
    fixes = _rank_points(
        ((e, e.fixes, b) for e, b in groups), signals | lead_findings, values, MAX_FIXES
    )
    source_ids: dict[str, None] = {}
    for point in (*causes, *checks, *fixes):
        source_ids.update(dict.fromkeys(point.sources))
    if found and found[0].entry is not None:
        source_ids.update(dict.fromkeys(found[0].entry.sources))
    return Explanation(
        text=text,
        reason=reason,
        headline=_headline(found, reason),
        found=tuple(found),
        causes=causes,
        checks=checks,
        fixes=fixes,
        facts=tuple(_facts(reason)),
        source_ids=tuple(source_ids),
    )


MAX_PARTS = 2000


def explain_all(text: str, kb: KnowledgeBase | None = None) -> list[Explanation]:
    """Explain every reason in the text; the same explanation for several lines is shown once."""
    kb = kb or load()
    grouped: dict[tuple[str, ...], Explanation] = {}
    for part in split_texts(text)[:MAX_PARTS]:
        if not part.strip():
            continue
        item = explain_text(part, kb)
        key = (item.headline, *(f.label for f in item.found))
        if key in grouped:
            grouped[key] = replace(grouped[key], occurrences=grouped[key].occurrences + 1)
        else:
            grouped[key] = item
    return list(grouped.values())


# ------------------------------------------------------------------------------- rendering


def _point_json(point: RankedPoint) -> dict[str, Any]:
    result: dict[str, Any] = {"text": point.text, "sources": list(point.sources)}
    if point.findings:
        result["findings"] = list(point.findings)
    if point.command:
        result["command"] = point.command
    return result


def explanation_json(item: Explanation, kb: KnowledgeBase | None = None) -> dict[str, Any]:
    kb = kb or load()
    return {
        "input": item.text,
        "recognised": item.recognised,
        "headline": item.headline,
        "occurrences": item.occurrences,
        "codes": [
            {
                "code": f.label,
                "role": f.role,
                "entry": f.entry.id if f.entry else None,
                "title": f.entry.title if f.entry else f.generic,
                "meaning": f.entry.meaning if f.entry else f.generic,
                "on_the_wire": f.entry.on_the_wire if f.entry else "",
            }
            for f in item.found
        ],
        "facts": dict(item.facts),
        "likely_causes": [_point_json(p) for p in item.causes],
        "checks": [_point_json(p) for p in item.checks],
        "fixes": [_point_json(p) for p in item.fixes],
        "finding_ids": list(item.finding_ids()),
        "sources": [
            {
                "id": sid,
                "title": kb.sources[sid].title,
                "url": kb.sources[sid].url,
                "kind": kb.sources[sid].kind,
            }
            for sid in item.source_ids
            if sid in kb.sources
        ],
    }


def render_json(items: list[Explanation]) -> str:
    kb = load()
    document = {
        "tool": "mailflow-doctor",
        "version": __version__,
        "explanations": [explanation_json(item, kb) for item in items],
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def _indented(console: Console, markup: str, level: int = 2) -> None:
    """Print with wrapped lines kept under their indent (80-column terminals)."""
    console.print(Padding(Text.from_markup(markup), (0, 0, 0, level), expand=False))


def _numbered(console: Console, index: int, markup: str) -> None:
    """`  1. text` with the wrapped lines hanging under the text, not under the number."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    grid.add_row(f"{index}.", Text.from_markup(markup))
    console.print(Padding(grid, (0, 0, 0, 2), expand=False))


def render_terminal(items: list[Explanation], console: Console) -> None:
    kb = load()
    for number, item in enumerate(items):
        if number:
            console.print()
        console.print(f"[bold]{escape(item.headline)}[/]")
        if item.occurrences > 1:
            console.print(f"({item.occurrences} of the pasted lines say this)")
        if not item.recognised:
            console.print(
                "Paste the whole line (for example the Detail of a Defer event in the message "
                "trace, the 'Remote server returned' lines of an NDR, or a queue's LastError)."
            )
            continue
        for found in item.found:
            title = found.entry.title if found.entry else found.generic
            console.print(
                f"\n[bold cyan]{escape(found.label)}[/] [dim]({found.role})[/] {escape(title)}"
            )
            if found.entry is not None:
                _indented(console, f"On the wire: {escape(found.entry.on_the_wire)}")
                _indented(console, f"Meaning: {escape(found.entry.meaning)}")
        if item.facts:
            console.print("\n[bold]From the text[/]")
            for label, value in item.facts:
                _indented(console, f"{escape(label)}: {escape(value)}")
        sections = (
            ("Likely causes, most likely first", item.causes),
            ("Checks to run next", item.checks),
            ("Fixes", item.fixes),
        )
        for title, points in sections:
            if not points:
                continue
            console.print(f"\n[bold]{title}[/]")
            for index, point in enumerate(points, 1):
                _numbered(console, index, escape(point.text))
                if point.command:
                    _indented(console, f"[green]$ {escape(point.command)}[/]", 5)
                if point.findings and title.startswith("Likely"):
                    _indented(console, f"[dim]findings: {', '.join(point.findings)}[/]", 5)
        known = [sid for sid in item.source_ids if sid in kb.sources and sid != "INF"][:8]
        if known:
            console.print("\n[bold]Sources[/]")
            for sid in known:
                source = kb.sources[sid]
                where = f" {source.url}" if source.url else ""
                console.print(f"  [dim]{escape(sid)}[/] {escape(source.title)}{escape(where)}")


def render_markdown(items: list[Explanation]) -> str:
    kb = load()
    out: list[str] = []
    for item in items:
        out.append(f"## {item.headline}\n")
        for found in item.found:
            title = found.entry.title if found.entry else found.generic
            out.append(f"- **{found.label}** ({found.role}): {title}")
            if found.entry is not None:
                out.append(f"  - On the wire: {found.entry.on_the_wire}")
        for title, points in (
            ("Likely causes", item.causes),
            ("Checks", item.checks),
            ("Fixes", item.fixes),
        ):
            if points:
                out.append(f"\n### {title}\n")
                for index, point in enumerate(points, 1):
                    line = f"{index}. {point.text}"
                    if point.command:
                        line += f" `{point.command}`"
                    out.append(line)
        refs = [kb.sources[s] for s in item.source_ids if s in kb.sources and s != "INF"]
        if refs:
            out.append("\n### Sources\n")
            out.extend(f"- {s.id}: {s.title} {s.url}".rstrip() for s in refs)
        out.append("")
    return "\n".join(out)
