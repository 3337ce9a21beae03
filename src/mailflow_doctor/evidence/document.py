"""A decoded evidence file: encoding detection, bounded line iteration, and read issues.

Admins hand us exports saved by PowerShell 5 (UTF-16LE with BOM), EAC downloads (UTF-16LE),
Excel re-saves (cp1252 or UTF-8 with BOM) and raw server logs (UTF-8, CRLF). Every reader gets
the same `Document`, so none of them has to guess encodings, and every line it yields is bounded
in length, so a hostile file with a gigabyte-long line cannot exhaust memory.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path

HEAD_BYTES = 64 * 1024
MAX_LINE_CHARS = 256 * 1024


@dataclass(frozen=True)
class SourceRef:
    """Where a record came from: the file as the user named it, and the 1-based line."""

    path: str
    line: int | None = None
    excerpt: str = ""

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "line": self.line, "excerpt": self.excerpt}

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True)
class ReadIssue:
    """A problem found while reading: the file and line, and what was wrong, in plain words."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.message}"


@dataclass
class IssueLog:
    """Collects read issues per file; capped so a broken file cannot flood the report."""

    limit_per_file: int = 50
    issues: list[ReadIssue] = field(default_factory=list)
    _counts: dict[str, int] = field(default_factory=dict)
    _suppressed: dict[str, int] = field(default_factory=dict)

    def add(self, path: str, line: int | None, message: str) -> None:
        count = self._counts.get(path, 0)
        self._counts[path] = count + 1
        if count < self.limit_per_file:
            self.issues.append(ReadIssue(path, line, message))
        else:
            self._suppressed[path] = self._suppressed.get(path, 0) + 1

    def for_path(self, path: str) -> list[str]:
        shown = [str(i) for i in self.issues if i.path == path]
        hidden = self._suppressed.get(path, 0)
        if hidden:
            shown.append(f"... and {hidden} more issues in this file")
        return shown


@dataclass
class ReadContext:
    """What a reader is given besides the file: where to report issues, and time hints.

    `timezone` is the user's `--timezone` for formats that log local time without an offset
    (syslog, Windows firewall, culture-formatted exports); `None` means UTC, and readers then
    say in `time_assumed` fields that they assumed it. `reference_utc` helps readers place
    syslog timestamps that carry no year.
    """

    issues: IssueLog = field(default_factory=IssueLog)
    timezone: tzinfo | None = None
    reference_utc: datetime | None = None

    def warn(self, doc: Document, line: int | None, message: str) -> None:
        self.issues.add(doc.display, line, message)


@dataclass(frozen=True)
class Line:
    number: int
    text: str
    truncated: bool = False


def detect_encoding(head: bytes) -> tuple[str, int]:
    """Return (codec, BOM length). Falls back to UTF-8; NUL patterns reveal BOM-less UTF-16."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", 2
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2
    sample = head[:4096]
    if len(sample) >= 4:
        even_nuls = sample[0::2].count(0)
        odd_nuls = sample[1::2].count(0)
        half = len(sample) // 2
        if odd_nuls > half * 0.6 and even_nuls < half * 0.1:
            return "utf-16-le", 0
        if even_nuls > half * 0.6 and odd_nuls < half * 0.1:
            return "utf-16-be", 0
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the sample's end is still UTF-8.
        if exc.start < len(sample) - 4:
            return "cp1252", 0
    return "utf-8", 0


@dataclass(frozen=True)
class Document:
    """One evidence file, ready to be sniffed and read."""

    path: Path
    display: str
    encoding: str
    bom: int
    size: int
    head: str

    @classmethod
    def open(cls, path: Path, display: str | None = None) -> Document:
        with path.open("rb") as handle:
            raw = handle.read(HEAD_BYTES)
        encoding, bom = detect_encoding(raw)
        head = raw[bom:].decode(encoding, errors="replace")
        if encoding.startswith("utf-8") and head.endswith("\ufffd"):
            head = head.rstrip("\ufffd")
        return cls(
            path=path,
            display=display or str(path),
            encoding=encoding,
            bom=bom,
            size=path.stat().st_size,
            head=head,
        )

    @property
    def is_binary(self) -> bool:
        """Text files never hold NULs once decoded; binaries (and zip members) do."""
        return "\x00" in self.head[:8192]

    def head_lines(self, count: int = 40) -> list[str]:
        """The first lines of the file, without line ends, for sniffers."""
        return self.head.splitlines()[:count]

    def lines(self, max_chars: int = MAX_LINE_CHARS) -> Iterator[Line]:
        """Yield every line (CRLF, LF or CR endings) with its number, each at most `max_chars`.

        Longer lines are cut and flagged `truncated`; the rest of the line is skipped without
        being held in memory.
        """
        with self.path.open("rb") as raw:
            raw.seek(self.bom)
            text = io.TextIOWrapper(raw, encoding=self.encoding, errors="replace", newline=None)
            number = 0
            while True:
                chunk = text.readline(max_chars)
                if not chunk:
                    return
                number += 1
                if chunk.endswith("\n"):
                    yield Line(number, chunk[:-1])
                    continue
                if len(chunk) < max_chars:  # the last line, without a line end
                    yield Line(number, chunk)
                    return
                # Overlong: discard up to the end of the line.
                while True:
                    rest = text.readline(max_chars)
                    if not rest or rest.endswith("\n"):
                        break
                yield Line(number, chunk, truncated=True)

    def ref(self, line: int | None, excerpt: str = "") -> SourceRef:
        return SourceRef(self.display, line, excerpt[:300])
