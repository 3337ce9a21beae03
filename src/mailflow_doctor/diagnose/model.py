"""Findings: the conclusions the tool draws, in the shape of the output contract."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from mailflow_doctor.evidence.document import SourceRef


class Severity(StrEnum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"critical": 0, "error": 1, "warning": 2, "info": 3}[self.value]

    @property
    def fails(self) -> bool:
        """Severities that make the command exit 1."""
        return self in (Severity.CRITICAL, Severity.ERROR)


@dataclass(frozen=True)
class Finding:
    """One conclusion with its evidence and what to do about it.

    `id` names a conclusion from the contract's table (`firewall.eop_ranges_blocked`, ...).
    `explains` lists the deferral codes this finding accounts for; ranking uses it to pick the
    root cause that explains what Exchange Online actually reported.
    """

    id: str
    severity: Severity
    title: str
    summary: str
    confidence: float = 0.5
    data: dict[str, Any] = field(default_factory=dict)
    evidence: tuple[SourceRef, ...] = ()
    remediation: tuple[str, ...] = ()
    root_cause: bool = False
    can_be_root_cause: bool = True
    explains: tuple[str, ...] = ()
    ruled_out: str = ""  # why this was not chosen as the root cause, when it was not

    def with_root_cause(self, value: bool, ruled_out: str = "") -> Finding:
        return replace(self, root_cause=value, ruled_out=ruled_out)

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "id": self.id,
            "severity": self.severity.value,
            "root_cause": self.root_cause,
            "confidence": round(self.confidence, 2),
            "title": self.title,
            "summary": self.summary,
            "data": self.data,
            "evidence": [ref.to_json() for ref in self.evidence],
            "remediation": list(self.remediation),
        }
        if self.ruled_out:
            result["ruled_out"] = self.ruled_out
        return result
