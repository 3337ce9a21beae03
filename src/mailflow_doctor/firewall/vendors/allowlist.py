"""A plain allow-list: one address, CIDR or range a line; everything not listed is blocked.

Admins often keep the "who may send us mail" list as a text file (or a PAN-OS EDL, which has
the same shape) and paste it instead of a whole configuration. The meaning is simple: the
listed sources are permitted on the port being checked, everything else is not. Nothing in
such a file says whether the device logs what it blocks, so the policy says it does not.
"""

from __future__ import annotations

from mailflow_doctor.firewall.evaluate import RangeCheck
from mailflow_doctor.firewall.model import Action, Chain, Origin, Policy, Rule
from mailflow_doctor.firewall.registry import (
    FirewallParseError,
    ParseOptions,
    ParseResult,
    Remediation,
    register_parser,
)
from mailflow_doctor.firewall.vendors._kit import (
    cleanup_only,
    finish,
    first_closing,
    gap_context,
    is_stale,
    try_parse_set,
    union_all,
)
from mailflow_doctor.knowledge.ipranges import IPSet

_MARKERS = ("#", ";", "//")
MAX_LINE = 4096
# First match over thousands of one-line rules is quadratic; long lists are judged in blocks
# of consecutive lines (all rules permit, so the verdicts are the same).
CHUNK_ABOVE = 256
MAX_BLOCKS = 64


def _chunked(rules: list[Rule], path: str) -> list[Rule]:
    size = -(-len(rules) // MAX_BLOCKS)  # ceiling: at most MAX_BLOCKS blocks
    blocks: list[Rule] = []
    for start in range(0, len(rules), size):
        part = rules[start : start + size]
        first, last = part[0].origin.line, part[-1].origin.line
        blocks.append(
            Rule(
                action=Action.PERMIT,
                origin=Origin(path, first, f"lines {first}-{last} of the allow-list"),
                sources=union_all(r.sources for r in part),
                name=f"lines {first}-{last}",
            )
        )
    return blocks


def _entry(line: str) -> str:
    """The address part of a line, without comments and surrounding blanks."""
    text = line[:MAX_LINE]
    cut = min((at for at in (text.find(m) for m in _MARKERS) if at >= 0), default=len(text))
    text = text[:cut].strip()
    if "-" in text:
        text = "-".join(part.strip() for part in text.split("-"))  # "a - b" ranges
    return text


def _parse_entry(text: str) -> IPSet | None:
    # A trailing description after whitespace is allowed: "40.92.0.0/15  EOP".
    first = text.split()[0] if text.split() else ""
    parsed = try_parse_set(text) or try_parse_set(first)
    return parsed


@register_parser
class AllowListParser:
    vendor = "allowlist"
    label = "Plain allow-list (one address, CIDR or range a line)"

    def sniff(self, text: str) -> int:
        total = hits = 0
        for line in text.splitlines()[:2000]:
            entry = _entry(line)
            if not entry:
                continue
            total += 1
            if _parse_entry(entry) is not None and len(entry.split()) <= 2:
                hits += 1
        if hits == 0 or total == 0:
            return 0
        share = hits / total
        if share < 0.8:
            return 0
        # Low on purpose: any real configuration format with its own markers scores higher.
        return 25 if share < 0.95 else 35

    def parse(self, text: str, path: str, options: ParseOptions) -> ParseResult:
        rules: list[Rule] = []
        issues: list[tuple[int | None, str]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            entry = _entry(line)
            if not entry:
                continue
            parsed = _parse_entry(entry)
            if parsed is None:
                issues.append((number, f"not an address, CIDR or range: {entry[:80]!r}"))
                continue
            rules.append(
                Rule(
                    action=Action.PERMIT,
                    origin=Origin(path, number, line.strip()[:200]),
                    sources=parsed,
                    name=entry.split()[0],
                )
            )
        if not rules:
            raise FirewallParseError(f"{path}: no address, CIDR or range found")
        if len(rules) > CHUNK_ABOVE:
            rules = _chunked(rules, path)
        chain = Chain(
            "allow-list",
            tuple(rules),
            Action.DENY,
            Origin(path, None, "everything not in the allow-list is blocked"),
            default_logged=False,
        )
        policy = Policy(
            vendor=self.vendor,
            path=path,
            chains={chain.name: chain},
            entries=(chain.name,),
            acl_name=path,
            notes=(
                "allow-list: the listed sources are permitted on the checked port; everything "
                "else is blocked. Whether the device logs what it blocks is unknown, so no log "
                "line is no proof that nothing was dropped.",
            ),
        )
        return ParseResult(policy, tuple(issues))

    def remediate(self, text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
        gap = gap_context(result.policy, check)
        cleanup = tuple(
            f"delete line {number}: {line.strip()}"
            for number, line in enumerate(text.splitlines(), start=1)
            if (entry := _entry(line))
            and (parsed := _parse_entry(entry)) is not None
            and is_stale(parsed, check.stale)
        )
        if not gap.missing:
            return cleanup_only(cleanup)
        lines = (
            "# Exchange Online Protection: Microsoft 365 endpoint set 10 (mailflow-doctor)",
            *gap.missing.cidrs(),
        )

        def reparse(patched: str) -> Policy:
            return self.parse(patched, result.policy.path, ParseOptions()).policy

        def append() -> tuple[tuple[str, ...], str, str]:
            newline = "\r\n" if "\r\n" in text else "\n"
            base = text if not text or text.endswith(("\n", "\r")) else text + newline
            patched = base + newline.join(lines) + newline
            return lines, patched, "Append the missing Exchange Online ranges to the allow-list."

        return finish(first_closing(reparse, gap, [append]), cleanup)
