"""The probe layer's own conclusions, kept plain so that the layer needs nothing above it.

The diagnose layer turns each `ProbeProblem` into a `Finding` with the same id, severity and
words; keeping this type free of `diagnose` imports lets the probe run on its own
(`mailflow-doctor probe`) and inside a diagnosis (`diagnose --probe`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CRITICAL = "critical"
ERROR = "error"
WARNING = "warning"
INFO = "info"


@dataclass(frozen=True)
class ProbeProblem:
    """One failure seen by a live probe, with where it was seen (`data.host`, `data.address`)."""

    id: str
    severity: str
    title: str
    summary: str
    data: dict[str, Any] = field(default_factory=dict)
    remediation: tuple[str, ...] = ()
    confidence: float = 0.9
    exo_code: str = ""  # what Exchange Online would report for this failure, when known

    @property
    def fails(self) -> bool:
        return self.severity in (CRITICAL, ERROR)


def place(host: str, address: str) -> str:
    """`mail.contoso.com (192.0.2.25)`, or just the address when that is what was probed."""
    return address if not host or host == address else f"{host} ({address})"


def safe_text(text: str, limit: int = 1000) -> str:
    """Text a server sent, made safe to print: control characters (ANSI escapes) become '?'."""
    cleaned = "".join(
        "?" if (ord(ch) < 32 or 127 <= ord(ch) < 160) and ch != "\t" else ch for ch in text
    )
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "..."
