"""Helpers shared by the vendor parser tests: EOP ranges, verdict tables, remediation proof."""

from __future__ import annotations

from hypothesis import strategies as st

from mailflow_doctor.firewall.evaluate import RangeCheck, check_ranges
from mailflow_doctor.firewall.registry import (
    FirewallParseError,
    FirewallParser,
    ParseOptions,
    ParseResult,
    Remediation,
    best_parser,
    parsers,
)

EOP = (
    "40.92.0.0/15",
    "40.107.0.0/16",
    "52.100.0.0/14",
    "104.47.0.0/17",
    "2a01:111:f400::/48",
    "2a01:111:f403::/48",
)


def parser_for(vendor: str) -> FirewallParser:
    return parsers()[vendor]


def parse(vendor: str, text: str, **options: str) -> ParseResult:
    return parser_for(vendor).parse(text, "fw.cfg", ParseOptions(**options))


def sniffed_as(text: str) -> str | None:
    parser, _ = best_parser(text)
    return parser.vendor if parser is not None else None


def table(result: ParseResult, destination: str, port: int = 25) -> dict[str, tuple[str, ...]]:
    """range -> ("permitted"|"partial"|"blocked", *blocked parts)"""
    check = check_ranges(result.policy, destination, EOP, port=port)
    return {v.range: (v.verdict, *v.blocked) for v in check.verdicts}


def prove_remediation(
    vendor: str, text: str, destination: str, port: int = 25, **options: str
) -> tuple[Remediation, RangeCheck]:
    """Remediate, then re-parse the patched text and re-evaluate: the gap must be closed."""
    parser = parser_for(vendor)
    result = parser.parse(text, "fw.cfg", ParseOptions(**options))
    before = check_ranges(result.policy, destination, EOP, port=port)
    assert before.missing, "the test configuration should have a gap"
    remedy = parser.remediate(text, result, before)
    assert remedy is not None
    assert remedy.lines
    assert remedy.patched_text is not None
    assert not remedy.warnings, remedy.warnings
    again = parser.parse(remedy.patched_text, "fw.cfg", ParseOptions(**options))
    after = check_ranges(again.policy, destination, EOP, port=port)
    assert not after.missing, after.missing_cidrs
    assert all(v.verdict == "permitted" for v in after.verdicts)
    return remedy, after


def survives(vendor: str, text: str) -> None:
    """The parser returns a result or a FirewallParseError, never another exception."""
    try:
        result = parse(vendor, text)
    except FirewallParseError:
        return
    for line, message in result.issues:
        assert line is None or line >= 1
        assert message


@st.composite
def mutated(draw: st.DrawFn, base: str) -> str:
    """A realistic configuration with lines dropped, duplicated, cut or salted with junk."""
    lines = base.splitlines()
    for _ in range(draw(st.integers(0, 6))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["drop", "dup", "cut", "junk", "swap"]))
        if kind == "drop":
            lines.pop(index)
        elif kind == "dup":
            lines.insert(index, lines[index])
        elif kind == "cut":
            line = lines[index]
            lines[index] = line[: draw(st.integers(0, max(len(line) - 1, 0)))]
        elif kind == "junk":
            lines.insert(index, draw(st.text(max_size=40)))
        else:
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
    return "\n".join(lines)
