"""The diagnosis as the output contract's JSON document (spec/output-contract.md).

Scripts depend on this shape: keys, order, canonical CIDRs and `...Z` times. Values a check put
in `data` that JSON cannot carry (datetimes, sets, IP sets) are converted here so that a new
check can never make the report fail.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from mailflow_doctor.diagnose.engine import Diagnosis
from mailflow_doctor.diagnose.facts import utc_iso
from mailflow_doctor.knowledge.ipranges import IPSet

TOOL = "mailflow-doctor"


def _plain(value: Any) -> Any:
    """Make `data` values JSON-safe: datetimes to `...Z`, IP sets to canonical CIDR lists."""
    if isinstance(value, datetime):
        return utc_iso(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, IPSet):
        return value.cidrs()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return _plain(to_json())
    return str(value)


def to_document(diagnosis: Diagnosis) -> dict[str, Any]:
    """The contract's document as a dict (key order as in the contract)."""
    return {
        "tool": TOOL,
        "version": diagnosis.version,
        "generated_utc": utc_iso(diagnosis.generated_utc),
        "endpoints": {
            "source": diagnosis.endpoints.get("source", "bundled"),
            "instance": diagnosis.endpoints.get("instance", "Worldwide"),
            "version": diagnosis.endpoints.get("version", "unknown"),
        },
        "evidence": [f.to_json() for f in diagnosis.evidence],
        "root_cause": diagnosis.root_cause,
        "findings": [_plain(f.to_json()) for f in diagnosis.findings],
    }


def render(diagnosis: Diagnosis) -> str:
    return json.dumps(to_document(diagnosis), indent=2, ensure_ascii=False) + "\n"
