"""From bundle to verdict: run every check, fold in corroboration, rank, pick the root cause.

The root cause is the finding that explains the deferrals Exchange Online actually reported.
Each candidate (a finding that `can_be_root_cause`) is scored by its confidence and by the
share of observed deferrals whose code it `explains`; a candidate that explains none of them
cannot win while deferrals exist. Evidence another check found for a finding (deny-log lines,
receive-log silence) raises its confidence; contradicting evidence lowers it. At most one
finding is the root cause; every other candidate says why it was not chosen. With no candidate
strong enough, the root cause is None: saying "not proven" beats guessing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from mailflow_doctor import __version__
from mailflow_doctor.diagnose.bundle import Bundle, FileSummary
from mailflow_doctor.diagnose.checks import Context, run_checks
from mailflow_doctor.diagnose.facts import (
    CONTRADICT_KEY,
    SUPPORT_KEY,
    describe_codes,
    normalise_code,
    notes,
    utc_iso,
)
from mailflow_doctor.diagnose.model import Finding, Severity

MIN_ROOT_SCORE = 0.35
# Exchange Online keeps message trace for at most 90 days: deferrals further apart than that
# cannot come from one export, so the files describe different incidents.
MAX_INCIDENT_SPAN = timedelta(days=90)
# One hybrid organisation's deferrals go to its own smart host(s); three or more unrelated
# domains among the targets means the files come from several organisations or mail flows.
MAX_TARGET_DOMAINS = 2
UNREAD_KINDS = frozenset({"unrecognised", "binary", "container"})
MAX_CONFIDENCE = 0.99
# A finding that a more specific one confirms is dropped when both are present.
SUBSUMED_BY: dict[str, tuple[str, ...]] = {
    "firewall.partial_allow_list_suspected": (
        "firewall.eop_ranges_blocked",
        "firewall.drops_from_eop",
    ),
}


@dataclass(frozen=True)
class EvidenceFile:
    """One file as the report lists it (the contract's `evidence` entries)."""

    path: str
    kind: str
    records: int
    first_utc: datetime | None
    last_utc: datetime | None
    warnings: tuple[str, ...]

    @classmethod
    def of(cls, summary: FileSummary) -> EvidenceFile:
        return cls(
            summary.path,
            summary.kind,
            summary.records,
            summary.first_utc,
            summary.last_utc,
            tuple(summary.warnings),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "records": self.records,
            "first_utc": utc_iso(self.first_utc),
            "last_utc": utc_iso(self.last_utc),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class Diagnosis:
    """The verdict: findings most important first, the root cause id, and what was read."""

    findings: tuple[Finding, ...]
    root_cause: str | None
    evidence: tuple[EvidenceFile, ...]
    endpoints: dict[str, str]
    generated_utc: datetime
    version: str = __version__
    observed_codes: tuple[tuple[str, int], ...] = ()

    @property
    def root(self) -> Finding | None:
        return next((f for f in self.findings if f.root_cause), None)

    def finding(self, finding_id: str) -> Finding | None:
        return next((f for f in self.findings if f.id == finding_id), None)

    @property
    def read_anything(self) -> bool:
        """Was any file recognised as evidence? (Otherwise "nothing wrong" would mislead.)"""
        return any(e.kind not in UNREAD_KINDS for e in self.evidence)

    @property
    def exit_code(self) -> int:
        """0: no critical/error finding; 1: at least one (the contract's exit status)."""
        return 1 if any(f.severity.fails for f in self.findings) else 0


def diagnose(bundle: Bundle, now: datetime | None = None) -> Diagnosis:
    """Run every registered check over the bundle and rank the findings."""
    ctx = Context(bundle)
    findings = run_checks(ctx)
    findings = apply_notes(findings, ctx.facts)
    findings = drop_subsumed(findings)
    observed: Counter[str] = Counter()
    for code, count in dict(ctx.facts.get("deferral_codes") or {}).items():
        normal = normalise_code(str(code))
        if normal and normal != "unknown":
            observed[normal] += int(count)
    supporters: dict[str, set[str]] = {}
    for note in notes(ctx.facts, SUPPORT_KEY):
        if note.source_id:
            supporters.setdefault(note.source_id, set()).add(note.finding_id)
    mixed = mixed_evidence(ctx.facts)
    if mixed is not None:
        findings.append(mixed)
    ranked, root_id = rank(
        findings, observed, supporters, no_root_reason=mixed.summary if mixed else None
    )
    return Diagnosis(
        findings=tuple(ranked),
        root_cause=root_id,
        evidence=tuple(EvidenceFile.of(f) for f in bundle.files),
        endpoints=bundle.endpoints.describe(),
        generated_utc=(now or datetime.now(UTC)).replace(microsecond=0),
        observed_codes=tuple(observed.most_common()),
    )


def apply_notes(findings: list[Finding], facts: dict[str, Any]) -> list[Finding]:
    """Fold corroborating and contradicting evidence into the findings it concerns."""
    result: list[Finding] = []
    support_notes = notes(facts, SUPPORT_KEY)
    against_notes = notes(facts, CONTRADICT_KEY)
    for finding in findings:
        mine = [n for n in support_notes if n.finding_id == finding.id]
        against = [n for n in against_notes if n.finding_id == finding.id]
        if not mine and not against:
            result.append(finding)
            continue
        confidence = finding.confidence
        confidence += sum(n.weight for n in mine)
        confidence -= sum(n.weight for n in against)
        data = dict(finding.data)
        # The same sentence can arrive from several checks; say it once.
        if mine:
            texts = [*data.get("corroboration", []), *(n.text for n in mine)]
            data["corroboration"] = list(dict.fromkeys(texts))
        if against:
            texts = [*data.get("contradiction", []), *(n.text for n in against)]
            data["contradiction"] = list(dict.fromkeys(texts))
        refs = list(finding.evidence)
        for note in [*mine, *against]:
            for ref in note.refs:
                if ref not in refs:
                    refs.append(ref)
        result.append(
            replace(
                finding,
                confidence=max(0.05, min(MAX_CONFIDENCE, confidence)),
                data=data,
                evidence=tuple(refs),
            )
        )
    return result


def drop_subsumed(findings: list[Finding]) -> list[Finding]:
    present = {f.id for f in findings}
    return [f for f in findings if not present.intersection(SUBSUMED_BY.get(f.id, ()))]


def _coverage(finding: Finding, observed: Counter[str]) -> float | None:
    total = sum(observed.values())
    if not total:
        return None
    explained = {normalise_code(c) for c in finding.explains}
    return sum(n for code, n in observed.items() if code in explained) / total


def score(finding: Finding, observed: Counter[str]) -> float:
    """How well a candidate accounts for what was seen (0: not at all)."""
    coverage = _coverage(finding, observed)
    if coverage is None:
        # No deferrals to explain: a serious finding may still be the cause of a reported
        # problem, but with less weight than one that explains the codes.
        return finding.confidence * 0.75 if finding.severity.fails else 0.0
    if coverage == 0:
        return 0.0
    return finding.confidence * (0.5 + 0.5 * coverage)


def _domain_of(target: str) -> str | None:
    """The last two labels of a host name (None for an address or a single label)."""
    name = target.strip().rstrip(".").lower()
    if not name or ":" in name or name.replace(".", "").isdigit():
        return None
    labels = name.split(".")
    return ".".join(labels[-2:]) if len(labels) >= 2 else None


def mixed_evidence(facts: dict[str, Any]) -> Finding | None:
    """A finding saying the files cannot be one incident, or None when they can be.

    Files from unrelated organisations or incidents (a folder of collected examples, several
    tickets' attachments) each hold some evidence; ranking them together would name one of
    them the root cause of everything, which is worse than naming none.
    """
    reasons: list[str] = []
    data: dict[str, Any] = {}
    window = facts.get("deferral_window")
    if isinstance(window, tuple) and len(window) == 2:
        first, last = window
        spans = isinstance(first, datetime) and isinstance(last, datetime)
        if spans and last - first > MAX_INCIDENT_SPAN:
            days = (last - first).days
            reasons.append(
                f"the deferrals span {days} days ({utc_iso(first)} to {utc_iso(last)}), "
                "longer than the 90 days Exchange Online keeps message trace"
            )
            data["window_utc"] = [utc_iso(first), utc_iso(last)]
    targets = [str(t) for t in facts.get("smtp_targets") or []]
    domains = sorted({d for d in (_domain_of(t) for t in targets) if d})
    if len(domains) > MAX_TARGET_DOMAINS:
        shown = ", ".join(domains[:6]) + (", ..." if len(domains) > 6 else "")
        reasons.append(
            f"Exchange Online was delivering to {len(domains)} unrelated domains ({shown})"
        )
        data["target_domains"] = domains
    if not reasons:
        return None
    return Finding(
        id="evidence.mixed_sources",
        severity=Severity.WARNING,
        title="The files describe several unrelated incidents; no single root cause is named",
        summary=(
            "The evidence cannot come from one outage: "
            + "; and ".join(reasons)
            + ". Each finding below holds for the files it cites, but none explains all of "
            "them. Diagnose each organisation's or incident's files on their own."
        ),
        confidence=1.0,
        data=data,
        can_be_root_cause=False,
    )


def rank(
    findings: list[Finding],
    observed: Counter[str],
    supporters: dict[str, set[str]] | None = None,
    no_root_reason: str | None = None,
) -> tuple[list[Finding], str | None]:
    """Order findings most important first; mark at most one root cause; explain the rest.

    With `no_root_reason` (the evidence is known not to be one incident) no root cause is
    named and every candidate carries that reason.
    """
    supporters = supporters or {}
    candidates = [f for f in findings if f.can_be_root_cause]
    scores = {id(f): score(f, observed) for f in candidates}
    root: Finding | None = None
    if candidates and no_root_reason is None:
        best = max(
            candidates,
            key=lambda f: (scores[id(f)], -f.severity.rank, f.confidence, len(f.evidence)),
        )
        if scores[id(best)] >= MIN_ROOT_SCORE:
            root = best
    result: list[Finding] = []
    for finding in findings:
        if finding is root:
            result.append(finding.with_root_cause(True))
        elif finding.can_be_root_cause and no_root_reason is not None:
            result.append(finding.with_root_cause(False, no_root_reason))
        elif finding.can_be_root_cause:
            text = ruled_out(finding, root, observed, scores[id(finding)], supporters)
            result.append(finding.with_root_cause(False, text))
        else:
            result.append(finding.with_root_cause(False, finding.ruled_out))

    def order(f: Finding) -> tuple[int, int, float, str]:
        return (0 if f.root_cause else 1, f.severity.rank, -f.confidence, f.id)

    result.sort(key=order)
    return result, root.id if root else None


def ruled_out(
    finding: Finding,
    root: Finding | None,
    observed: Counter[str],
    own_score: float,
    supporters: dict[str, set[str]],
) -> str:
    codes = describe_codes(code for code, _ in observed.most_common())
    coverage = _coverage(finding, observed)
    if root is not None and root.id in supporters.get(finding.id, set()):
        return f"Not a separate cause: this is evidence for {root.id}."
    if coverage == 0:
        would = describe_codes(normalise_code(c) or c for c in finding.explains)
        return (
            f"Does not explain the deferrals Exchange Online reported ({codes}); this cause "
            f"would show as {would}."
        )
    if root is None:
        if own_score and own_score < MIN_ROOT_SCORE:
            return (
                f"The evidence for it is too weak (confidence {finding.confidence:.2f}) "
                "to call it the cause."
            )
        return "The evidence does not single out one cause."
    root_cov = _coverage(root, observed)
    if coverage is not None and root_cov is not None and coverage < root_cov:
        total = sum(observed.values())
        return (
            f"Explains {round(coverage * total)} of {total} deferrals ({codes}); "
            f"{root.id} explains {round(root_cov * total)}."
        )
    return (
        f"Less supported by the evidence than {root.id} "
        f"(confidence {finding.confidence:.2f} against {root.confidence:.2f})."
    )


def severity_counts(diagnosis: Diagnosis) -> dict[Severity, int]:
    counts: dict[Severity, int] = dict.fromkeys(Severity, 0)
    for finding in diagnosis.findings:
        counts[finding.severity] += 1
    return counts
