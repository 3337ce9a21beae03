"""Plain allow-lists: verdicts, comments, sniffing that does not steal real formats, remediation."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vendor_checks import (
    EOP,
    mutated,
    parse,
    parser_for,
    prove_remediation,
    sniffed_as,
    survives,
    table,
)

from mailflow_doctor.firewall.evaluate import check_ranges, evaluate
from mailflow_doctor.firewall.registry import FirewallParseError

LIST = """\
# Exchange Online inbound SMTP sources (copied from the old firewall)
40.92.0.0/15
40.107.0.0/16   ; EOP
52.100.0.0/15
52.102.0.0 - 52.102.255.255
65.55.88.0/24   # retired range, still here
2a01:111:f400::/48

"""


def test_verdicts_hand_checked() -> None:
    result = parse("allowlist", LIST)
    assert result.issues == ()
    verdicts = table(result, "192.0.2.25")
    assert verdicts == {
        "40.92.0.0/15": ("permitted",),
        "40.107.0.0/16": ("permitted",),
        "52.100.0.0/14": ("partial", "52.103.0.0/16"),
        "104.47.0.0/17": ("blocked", "104.47.0.0/17"),
    }
    assert table(result, "2001:db8::25") == {
        "2a01:111:f400::/48": ("permitted",),
        "2a01:111:f403::/48": ("blocked", "2a01:111:f403::/48"),
    }


def test_bad_lines_are_issues_not_errors() -> None:
    result = parse("allowlist", LIST + "not-an-address\n300.1.1.1\n")
    assert [line for line, _ in result.issues] == [9, 10]
    with pytest.raises(FirewallParseError):
        parse("allowlist", "# only comments\n\n")


def test_sniffing_is_modest() -> None:
    assert sniffed_as(LIST) == "allowlist"
    assert parser_for("allowlist").sniff("hostname x\ninterface Gi0/0\n 10.0.0.1\n") == 0


def test_does_not_steal_samples(samples: Path) -> None:
    allow = parser_for("allowlist")
    for path in sorted((samples / "firewall-configs").iterdir()):
        text = path.read_text(encoding="utf-8", errors="replace")
        assert allow.sniff(text) <= 25, path.name


def test_remediation_appends_missing_ranges() -> None:
    remedy, _ = prove_remediation("allowlist", LIST, "192.0.2.25")
    assert remedy.lines[1:] == ("52.103.0.0/16", "104.47.0.0/17")
    assert remedy.patched_text is not None
    assert remedy.patched_text.startswith(LIST)
    remedy6, _ = prove_remediation("allowlist", LIST, "2001:db8::25")
    assert remedy6.lines[1:] == ("2a01:111:f403::/48",)


@settings(max_examples=60, deadline=None)
@given(mutated(LIST))
def test_parser_survives_mutations(text: str) -> None:
    survives("allowlist", text)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)), min_size=1, max_size=8),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
)
def test_generated_lists_agree_with_membership(entries, probes) -> None:
    nets = [ipaddress.IPv4Network((value, plen), strict=False) for value, plen in entries]
    policy = parse("allowlist", "\n".join(str(n) for n in nets)).policy
    permitted = evaluate(policy, "192.0.2.1").permitted()
    for value in probes:
        address = ipaddress.IPv4Address(value)
        assert (address in permitted) == any(address in n for n in nets)


def test_long_lists_are_judged_in_blocks_with_the_same_verdicts() -> None:
    filler = [f"100.64.{i // 16}.{(i % 16) * 16}/28" for i in range(600)]
    text = "\n".join([*filler[:300], "40.92.0.0/15", *filler[300:], "104.47.0.0/18"]) + "\n"
    result = parse("allowlist", text)
    assert len(result.policy.chains["allow-list"].rules) <= 64
    verdicts = table(result, "192.0.2.25")
    assert verdicts["40.92.0.0/15"] == ("permitted",)
    assert verdicts["104.47.0.0/17"] == ("partial", "104.47.64.0/18")
    check = check_ranges(result.policy, "192.0.2.25", EOP)
    assert check.verdicts[0].deciding[0].text.startswith("lines ")
    prove_remediation("allowlist", text, "192.0.2.25")
