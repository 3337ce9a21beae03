"""The status-code knowledge base: what each code, socket error and sub-message means.

The knowledge lives as data in `data/status-codes.yaml` (reviewable, every statement sourced);
this module loads it into frozen, typed records and answers lookups by enhanced status code
(`4.4.316`, including ranges such as `4.7.500-4.7.699`), by basic SMTP reply code (`450`), by
Windows socket error (`10061`) and by message pattern (`SubjectMismatch`, `STARTTLS is
required`). It imports nothing else of ours, so every layer may use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

ENHANCED_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")

# RFC 3463: what the class and the subject of an enhanced code say on their own.
_CLASSES = {
    "2": "success",
    "4": "temporary failure (the sender keeps the message and retries)",
    "5": "permanent failure (the sender gives up and returns the message)",
}
_SUBJECTS = {
    "0": "other or undefined status",
    "1": "addressing (the sender or recipient address)",
    "2": "the recipient's mailbox",
    "3": "the receiving mail system",
    "4": "network and routing (connecting to the next hop)",
    "5": "the SMTP conversation itself",
    "6": "message content or media",
    "7": "security or policy (TLS, certificates, authentication, relay permission)",
}


class KnowledgeError(ValueError):
    """The knowledge file is malformed (a packaging or editing mistake, caught by the tests)."""


@dataclass(frozen=True)
class Source:
    """Where a statement comes from."""

    id: str
    kind: str  # ms-doc, ms-blog, forum, third-party, inference
    title: str
    url: str = ""
    where: str = ""


@dataclass(frozen=True)
class Point:
    """One cause, check or fix, with its sources and the findings that prove it."""

    text: str
    sources: tuple[str, ...]
    findings: tuple[str, ...] = ()
    command: str = ""  # a mailflow-doctor command line with {target}/{ip}/{port}/{evidence}


@dataclass(frozen=True)
class Entry:
    """One code (or family of codes), socket error or sub-message."""

    id: str
    kind: str  # "enhanced", "socket", "message" or "smtp"
    title: str
    meaning: str
    on_the_wire: str
    sources: tuple[str, ...]
    codes: tuple[str, ...] = ()
    ranges: tuple[tuple[str, str], ...] = ()
    smtp_codes: tuple[str, ...] = ()
    expiry_codes: tuple[str, ...] = ()
    socket_codes: tuple[int, ...] = ()
    pattern: re.Pattern[str] | None = None
    direction: str = ""
    causes: tuple[Point, ...] = ()
    checks: tuple[Point, ...] = ()
    fixes: tuple[Point, ...] = ()
    findings: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()

    def all_findings(self) -> tuple[str, ...]:
        """Every finding id the entry or its causes refer to, in first-seen order."""
        seen: dict[str, None] = dict.fromkeys(self.findings)
        for point in (*self.causes, *self.checks, *self.fixes):
            seen.update(dict.fromkeys(point.findings))
        return tuple(seen)

    def all_sources(self) -> tuple[str, ...]:
        seen: dict[str, None] = dict.fromkeys(self.sources)
        for point in (*self.causes, *self.checks, *self.fixes):
            seen.update(dict.fromkeys(point.sources))
        return tuple(seen)


def code_key(code: str) -> tuple[int, int, int] | None:
    """`4.4.316` -> (4, 4, 316); None when the text is not an enhanced status code."""
    match = ENHANCED_RE.match(code.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def describe_enhanced(code: str) -> str:
    """What an enhanced code's class and subject say, for codes the knowledge base lacks."""
    match = ENHANCED_RE.match(code.strip())
    if match is None:
        return ""
    klass = _CLASSES.get(match.group(1), "unknown class")
    subject = _SUBJECTS.get(match.group(2), "an unassigned subject")
    return f"{klass}; the subject is {subject}"


@dataclass(frozen=True)
class KnowledgeBase:
    """All entries, with lookups."""

    entries: tuple[Entry, ...]
    sources: dict[str, Source]
    new_finding_ids: dict[str, str]

    def get(self, entry_id: str) -> Entry | None:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        return None

    def by_enhanced(self, code: str) -> Entry | None:
        """The entry for an enhanced status code: exact code first, then a listed range."""
        key = code_key(code)
        if key is None:
            return None
        normal = ".".join(str(part) for part in key)
        for entry in self.entries:
            if entry.kind == "enhanced" and normal in entry.codes:
                return entry
        for entry in self.entries:
            for low, high in entry.ranges:
                low_key, high_key = code_key(low), code_key(high)
                if low_key is not None and high_key is not None and low_key <= key <= high_key:
                    return entry
        return None

    def deferral_for(self, expiry_code: str) -> Entry | None:
        """The deferral entry whose expiry form is `expiry_code` (5.4.316 -> 4.4.316)."""
        key = code_key(expiry_code)
        if key is None:
            return None
        normal = ".".join(str(part) for part in key)
        for entry in self.entries:
            if normal in entry.expiry_codes:
                return entry
        return None

    def by_smtp(self, code: str | int) -> Entry | None:
        """The entry for a basic SMTP reply code (421, 450, 550 ...)."""
        text = str(code).strip()
        for entry in self.entries:
            if entry.kind == "smtp" and text in entry.smtp_codes:
                return entry
        if text[:1] == "4":
            return self.get("smtp-450")
        if text[:1] == "5":
            return self.get("smtp-550")
        return None

    def by_socket(self, code: int) -> Entry | None:
        for entry in self.entries:
            if code in entry.socket_codes:
                return entry
        return None

    def by_message(self, text: str) -> list[Entry]:
        """Sub-message entries whose pattern occurs in `text`, in knowledge-base order."""
        return [
            entry
            for entry in self.entries
            if entry.pattern is not None and entry.pattern.search(text) is not None
        ]

    def referenced_finding_ids(self) -> set[str]:
        found: set[str] = set()
        for entry in self.entries:
            found.update(entry.all_findings())
        return found


def _strings(value: Any, where: str, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise KnowledgeError(f"{where}: {name} must be a list")
    return tuple(str(item) for item in value)


def _points(value: Any, where: str, name: str) -> tuple[Point, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise KnowledgeError(f"{where}: {name} must be a list")
    points: list[Point] = []
    for index, item in enumerate(value):
        at = f"{where} {name}[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise KnowledgeError(f"{at}: needs a text")
        sources = _strings(item.get("sources"), at, "sources")
        if not sources:
            raise KnowledgeError(f"{at}: has no sources")
        points.append(
            Point(
                text=" ".join(item["text"].split()),
                sources=sources,
                findings=_strings(item.get("findings"), at, "findings"),
                command=str(item.get("command") or ""),
            )
        )
    return tuple(points)


def _entry(raw: Any, index: int) -> Entry:
    if not isinstance(raw, dict) or "id" not in raw:
        raise KnowledgeError(f"entry {index}: needs an id")
    entry_id = str(raw["id"])
    where = f"entry {entry_id}"
    kind = str(raw.get("kind", ""))
    if kind not in ("enhanced", "socket", "message", "smtp"):
        raise KnowledgeError(f"{where}: unknown kind {kind!r}")
    sources = _strings(raw.get("sources"), where, "sources")
    if not sources:
        raise KnowledgeError(f"{where}: has no sources")
    ranges: list[tuple[str, str]] = []
    for text in _strings(raw.get("ranges"), where, "ranges"):
        low, _, high = text.partition("-")
        if code_key(low) is None or code_key(high) is None:
            raise KnowledgeError(f"{where}: bad range {text!r}")
        ranges.append((low, high))
    codes = _strings(raw.get("codes"), where, "codes")
    for code in (*codes, *_strings(raw.get("expiry_codes"), where, "expiry_codes")):
        if code_key(code) is None:
            raise KnowledgeError(f"{where}: bad code {code!r}")
    pattern = raw.get("pattern")
    try:
        compiled = re.compile(str(pattern)) if pattern else None
    except re.error as exc:
        raise KnowledgeError(f"{where}: bad pattern: {exc}") from exc
    return Entry(
        id=entry_id,
        kind=kind,
        title=str(raw.get("title", "")),
        meaning=" ".join(str(raw.get("meaning", "")).split()),
        on_the_wire=" ".join(str(raw.get("on_the_wire", "")).split()),
        sources=sources,
        codes=codes,
        ranges=tuple(ranges),
        smtp_codes=_strings(raw.get("smtp_codes"), where, "smtp_codes"),
        expiry_codes=_strings(raw.get("expiry_codes"), where, "expiry_codes"),
        socket_codes=tuple(int(c) for c in raw.get("socket_codes") or ()),
        pattern=compiled,
        direction=str(raw.get("direction", "")),
        causes=_points(raw.get("causes"), where, "causes"),
        checks=_points(raw.get("checks"), where, "checks"),
        fixes=_points(raw.get("fixes"), where, "fixes"),
        findings=_strings(raw.get("findings"), where, "findings"),
        related=_strings(raw.get("related"), where, "related"),
        examples=_strings(raw.get("examples"), where, "examples"),
    )


def parse(text: str) -> KnowledgeBase:
    """Build the knowledge base from YAML text; every cited source must be defined."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KnowledgeError(f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise KnowledgeError("the knowledge file must be a mapping")
    sources: dict[str, Source] = {}
    for source_id, item in (raw.get("sources") or {}).items():
        if not isinstance(item, dict) or not item.get("title"):
            raise KnowledgeError(f"source {source_id}: needs a title")
        sources[str(source_id)] = Source(
            id=str(source_id),
            kind=str(item.get("kind", "")),
            title=str(item["title"]),
            url=str(item.get("url", "")),
            where=str(item.get("where", "")),
        )
    entries = tuple(_entry(item, index) for index, item in enumerate(raw.get("entries") or []))
    ids = [entry.id for entry in entries]
    if len(set(ids)) != len(ids):
        raise KnowledgeError("two entries share an id")
    for entry in entries:
        unknown = [s for s in entry.all_sources() if s not in sources]
        if unknown:
            raise KnowledgeError(f"entry {entry.id}: unknown sources {', '.join(unknown)}")
    new_ids = {str(k): " ".join(str(v).split()) for k, v in (raw.get("finding_ids") or {}).items()}
    return KnowledgeBase(entries=entries, sources=sources, new_finding_ids=new_ids)


def data_text() -> str:
    return (
        resources.files("mailflow_doctor.knowledge")
        .joinpath("data/status-codes.yaml")
        .read_text(encoding="utf-8")
    )


@cache
def load() -> KnowledgeBase:
    """The bundled knowledge base (parsed once per process)."""
    return parse(data_text())


def load_file(path: Path) -> KnowledgeBase:
    return parse(path.read_text(encoding="utf-8"))
