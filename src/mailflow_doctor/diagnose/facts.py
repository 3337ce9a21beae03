"""Facts that checks hand to each other, and the words they share.

Checks run in order (`@check(name, order)`); earlier ones leave derived facts in `ctx.facts`
under the keys below so that later ones (and other helpers' checks) do not re-derive them:

- `deferral_window`: (first, last) UTC datetimes of the deferrals in the trace, or absent.
- `deferral_codes`: Counter of normalised codes (`4.4.316`, ...) over deferral events.
- `smtp_targets`: FQDNs and IPs Exchange Online tried (LastAttemptedServerName / IP), in order.
- `target_ips`: the IP addresses among them.
- `per_target`: {ip or fqdn: {"delivered": n, "refused": n, "timeout": n, "other": n}}.
- `firewall_missing`: IPSet of published EOP addresses some parsed firewall does not permit.
- `firewall_permitted`: IPSet of published EOP addresses the firewalls permit.
- `drop_sources`: IPSet of EOP sources seen in deny logs within the window.

Corroboration is recorded with `support()`: a later check that finds evidence for an earlier
finding (deny-log lines for a firewall gap, receive-log silence) adds a note and references;
the engine folds them into that finding and raises its confidence. `contradict()` does the
opposite.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from mailflow_doctor.evidence.document import SourceRef
from mailflow_doctor.knowledge.ipranges import IPSet

SUPPORT_KEY = "_support"
CONTRADICT_KEY = "_contradict"


@dataclass(frozen=True)
class Note:
    """A piece of corroborating (or contradicting) evidence for a finding id."""

    finding_id: str
    text: str
    refs: tuple[SourceRef, ...] = ()
    weight: float = 0.03
    source_id: str = ""  # the finding that provides it, if it is one


def support(
    facts: dict[str, Any],
    finding_id: str,
    text: str,
    refs: Iterable[SourceRef] = (),
    weight: float = 0.03,
    source_id: str = "",
) -> None:
    facts.setdefault(SUPPORT_KEY, []).append(Note(finding_id, text, tuple(refs), weight, source_id))


def contradict(
    facts: dict[str, Any],
    finding_id: str,
    text: str,
    refs: Iterable[SourceRef] = (),
    weight: float = 0.2,
) -> None:
    facts.setdefault(CONTRADICT_KEY, []).append(Note(finding_id, text, tuple(refs), weight))


def notes(facts: dict[str, Any], key: str) -> list[Note]:
    value = facts.get(key, [])
    return [n for n in value if isinstance(n, Note)]


@lru_cache(maxsize=1 << 18)
def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address parsed once however many records repeat it (logs repeat them a lot)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def within(addresses: Iterable[str], ranges: IPSet) -> set[str]:
    """The addresses (text) that lie in `ranges`, each distinct address parsed once."""
    found: set[str] = set()
    for text in set(addresses):
        address = parse_address(text) if text else None
        if address is not None and address in ranges:
            found.add(text)
    return found


def address_key(text: str) -> tuple[int, int, str]:
    """Sort key: IPv4 before IPv6, numerically; unparsable text last."""
    address = parse_address(text)
    if address is None:
        return (9, 0, text)
    return (address.version, int(address), "")


def ipset_of(addresses: Iterable[str]) -> IPSet:
    """An IPSet of single addresses, built in one pass (no per-address set union)."""
    v4: list[int] = []
    v6: list[int] = []
    for text in set(addresses):
        address = parse_address(text) if text else None
        if address is not None:
            (v4 if address.version == 4 else v6).append(int(address))
    return IPSet(_runs(v4), _runs(v6))


def _runs(values: list[int]) -> tuple[tuple[int, int], ...]:
    runs: list[list[int]] = []
    for value in sorted(values):
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    return tuple((a, b) for a, b in runs)


def utc_iso(when: datetime | None) -> str | None:
    """The contract's time form: ISO 8601 in UTC with a `Z`, to the second."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalise_code(code: str | None) -> str | None:
    """Fold the expiry form into the deferral it ends (5.4.316 -> 4.4.316) for ranking."""
    if not code:
        return None
    code = code.strip()
    if code.startswith("5.4.31") and len(code) == 7:
        return "4" + code[1:]
    return code


CODE_MEANING = {
    "4.4.316": "connection refused",
    "4.4.315": "connection timed out",
    "4.4.317": "cannot connect (TLS or the remote server's reply)",
    "4.4.318": "connection closed abruptly",
    "4.4.312": "DNS query failed",
    "4.7.320": "certificate validation failed",
}


def describe_codes(codes: Iterable[str]) -> str:
    parts = []
    for code in codes:
        meaning = CODE_MEANING.get(code)
        parts.append(f"{code} ({meaning})" if meaning else code)
    return ", ".join(parts) if parts else "no deferral code"
