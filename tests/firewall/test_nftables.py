"""nftables parsing (text and the JSON that `nft -j list ruleset` printed for the same ruleset),
evaluation against the EOP ranges and remediation, checked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailflow_doctor.firewall.evaluate import check_ranges
from mailflow_doctor.firewall.registry import (
    FirewallParseError,
    ParseOptions,
    best_parser,
)
from mailflow_doctor.firewall.vendors.nftables import parse_nftables, remediate_nftables
from mailflow_doctor.knowledge.ipranges import IPSet

DATA = Path(__file__).parent / "data"
GATEWAY_TEXT = (DATA / "nft_gateway.nft").read_text(encoding="utf-8")
# Printed by nft 1.0.6 (`nft -j list ruleset`) after loading nft_gateway.nft into a namespace.
GATEWAY_JSON = (DATA / "nft_gateway.json").read_text(encoding="utf-8")

EOP_V4 = ["40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17"]
EOP_V6 = ["2a01:111:f400::/48", "2a01:111:f403::/48"]
EOP = EOP_V4 + EOP_V6

# The Exchange server is the host itself; the admin keeps EOP in a set; a second table with a
# lower priority (runs first) drops a range, and the inet table's input chain has the accepts.
HOST = """\
table inet filter {
	set eop {
		type ipv4_addr
		flags interval
		elements = { 40.92.0.0/15, 40.107.0.0/16, 104.47.0.0/17 }
	}
	chain input {
		type filter hook input priority 0; policy drop;
		ct state { established, related } accept
		tcp flags != syn ct state new drop
		iif lo accept
		ip saddr @eop tcp dport smtp ct state new accept
		ip6 saddr { 2a01:111:f400::/48, 2a01:111:f403::/48 } tcp dport 25 accept
		tcp dport 25 log prefix "DROP-SMTP: " drop
	}
}
table ip early {
	chain input {
		type filter hook input priority -10; policy accept;
		ip saddr != { 40.0.0.0/8, 104.0.0.0/8, 198.51.100.0/24 } tcp dport 25 reject
	}
}
"""


def _verdicts(
    text: str, destination: str, **options: str
) -> dict[str, tuple[str, tuple[str, ...]]]:
    result = parse_nftables(text, "nftables.conf", ParseOptions(**options))
    check = check_ranges(result.policy, destination, EOP)
    return {v.range: (v.verdict, v.blocked) for v in check.verdicts}


GATEWAY_EXPECTED = {
    "40.92.0.0/15": ("permitted", ()),
    "40.107.0.0/16": ("partial", ("40.107.200.0/24",)),  # fail2ban's table, priority filter+10
    "52.100.0.0/14": ("partial", ("52.101.0.0/16", "52.103.0.0/16")),  # raw drop; vmap continue
    "104.47.0.0/17": ("partial", ("104.47.64.0/18",)),  # reject with tcp reset
}


@pytest.mark.parametrize("text", [GATEWAY_TEXT, GATEWAY_JSON], ids=["text", "json"])
def test_gateway_verdicts_through_dnat_and_several_base_chains(text: str) -> None:
    assert _verdicts(text, "203.0.113.25") == GATEWAY_EXPECTED


@pytest.mark.parametrize("text", [GATEWAY_TEXT, GATEWAY_JSON], ids=["text", "json"])
def test_gateway_actions_and_deciding_rules(text: str) -> None:
    result = parse_nftables(text, "nftables.conf", ParseOptions())
    check = check_ranges(result.policy, "203.0.113.25", EOP)
    by_range = {v.range: v for v in check.verdicts}
    assert by_range["104.47.0.0/17"].actions == ("reject",)
    assert by_range["40.107.0.0/16"].actions == ("deny",)
    assert check.evaluation.effective_destination == "10.0.0.25"
    assert result.policy.inbound_interfaces == frozenset({"eth0"})
    texts = " | ".join(o.text for o in by_range["52.100.0.0/14"].deciding)
    assert "52.101.0.0/16" in texts
    assert "policy drop" in texts


@pytest.mark.parametrize("text", [GATEWAY_TEXT, GATEWAY_JSON], ids=["text", "json"])
def test_gateway_ipv6_on_the_forward_hook(text: str) -> None:
    v6 = _verdicts(text, "2001:db8::25", acl="forward")
    assert v6["2a01:111:f400::/48"] == ("permitted", ())
    assert v6["2a01:111:f403::/48"] == ("blocked", ("2a01:111:f403::/48",))
    # Without DNAT or acl=forward, the address is taken to be the host's own: input drops it.
    assert {v for v, _ in _verdicts(text, "2001:db8::25").values()} == {"blocked"}


def test_text_line_numbers_point_at_the_rule() -> None:
    result = parse_nftables(GATEWAY_TEXT, "nftables.conf", ParseOptions())
    check = check_ranges(result.policy, "203.0.113.25", EOP)
    by_range = {v.range: v for v in check.verdicts}
    reject = [o for o in by_range["104.47.0.0/17"].deciding if "reject" in o.text]
    assert reject[0].line == 47
    assert reject[0].text == "ip saddr 104.47.64.0/18 reject with tcp reset"


def test_host_priorities_negated_anonymous_set_and_tcp_flags() -> None:
    verdicts = _verdicts(HOST, "192.0.2.25")
    assert verdicts["40.92.0.0/15"] == ("permitted", ())
    assert verdicts["40.107.0.0/16"] == ("permitted", ())
    # 52.x is rejected by the earlier table before the inet table's drop would see it.
    assert verdicts["52.100.0.0/14"] == ("blocked", ("52.100.0.0/14",))
    assert verdicts["104.47.0.0/17"] == ("permitted", ())
    v6 = _verdicts(HOST, "2001:db8::25")
    assert set(v6.values()) == {("permitted", ())}


def test_sniffing_text_and_json() -> None:
    for text in (GATEWAY_TEXT, GATEWAY_JSON, HOST):
        parser, _ = best_parser(text)
        assert parser is not None
        assert parser.vendor == "nftables"


def test_add_rule_commands_are_a_ruleset_too() -> None:
    text = (
        "add table inet fw\n"
        "add chain inet fw input { type filter hook input priority 0 ; policy drop ; }\n"
        "add rule inet fw input ip saddr { 40.92.0.0/15, 52.100.0.0/14 } tcp dport 25 accept\n"
        "insert rule inet fw input ip saddr 52.102.0.0/16 drop\n"
    )
    verdicts = _verdicts(text, "192.0.2.25")
    assert verdicts["40.92.0.0/15"] == ("permitted", ())
    assert verdicts["52.100.0.0/14"] == ("partial", ("52.102.0.0/16",))
    assert verdicts["40.107.0.0/16"] == ("blocked", ("40.107.0.0/16",))


COMMANDS = (
    "add table inet fw\n"
    "add chain inet fw input { type filter hook input priority 0 ; policy drop ; }\n"
    "add chain inet fw smtp\n"
    "add rule inet fw input tcp dport 25 goto smtp\n"
    "add rule inet fw smtp ip saddr { 40.92.0.0/15, 52.100.0.0/14 } accept\n"
    "insert rule inet fw smtp ip saddr 52.102.0.0/16 drop\n"
)


@pytest.mark.parametrize(
    ("text", "destination"),
    [
        (GATEWAY_TEXT, "203.0.113.25"),
        (GATEWAY_JSON, "203.0.113.25"),
        (HOST, "192.0.2.25"),
        (COMMANDS, "192.0.2.25"),
    ],
    ids=["gateway-text", "gateway-json", "host", "add-rule-commands"],
)
def test_remediation_closes_the_gap(text: str, destination: str) -> None:
    result = parse_nftables(text, "nftables.conf", ParseOptions())
    check = check_ranges(result.policy, destination, EOP)
    assert check.missing
    remedy = remediate_nftables(text, result, check)
    assert remedy is not None
    assert remedy.patched_text is not None
    assert remedy.lines
    assert all(line.startswith("nft ") for line in remedy.lines)
    patched = parse_nftables(remedy.patched_text, "nftables.conf", ParseOptions())
    assert not check_ranges(patched.policy, destination, EOP).missing, remedy.patched_text


def test_remediation_adds_to_the_admins_set() -> None:
    text = HOST.replace("priority -10; policy accept;", "priority -10; policy accept;\n").replace(
        "ip saddr != { 40.0.0.0/8, 104.0.0.0/8, 198.51.100.0/24 } tcp dport 25 reject", ""
    )
    result = parse_nftables(text, "nftables.conf", ParseOptions())
    check = check_ranges(result.policy, "192.0.2.25", EOP)
    remedy = remediate_nftables(text, result, check)
    assert remedy is not None
    assert remedy.lines == ("nft add element inet filter eop { 52.100.0.0/14 }",)
    assert "elements = { 52.100.0.0/14, 40.92.0.0/15" in (remedy.patched_text or "")


def test_remediation_of_json_keeps_json() -> None:
    result = parse_nftables(GATEWAY_JSON, "ruleset.json", ParseOptions())
    check = check_ranges(result.policy, "203.0.113.25", EOP)
    remedy = remediate_nftables(GATEWAY_JSON, result, check)
    assert remedy is not None
    assert "nftables" in json.loads(remedy.patched_text or "{}")


def test_samples_parse(samples: Path) -> None:
    folder = samples / "firewall-configs"
    files = sorted(p for p in folder.glob("nftables*") if p.suffix in (".nft", ".json"))
    assert len(files) == 7
    for path in files:
        text = path.read_text(encoding="utf-8")
        parser, _ = best_parser(text)
        assert parser is not None, path.name
        assert parser.vendor == "nftables", path.name
        result = parse_nftables(text, path.name, ParseOptions())
        check_ranges(result.policy, "192.0.2.25", EOP)


def test_sample_verdicts_by_hand(samples: Path) -> None:
    folder = samples / "firewall-configs"
    for name in (
        "nftables_nftables-rs_workstation.nft",
        "nftables_json_nftables-rs_workstation.json",
    ):
        # input policy drop; only ssh is open
        text = (folder / name).read_text()
        assert {v for v, _ in _verdicts(text, "192.0.2.25").values()} == {"blocked"}
    for name in (
        "nftables_nftables-rs_nftables-init.nft",
        "nftables_json_nftables-rs_nftables-init.json",
    ):
        # policy accept; the @blackhole set is empty, smtp is not touched
        text = (folder / name).read_text()
        assert {v for v, _ in _verdicts(text, "192.0.2.25").values()} == {"permitted"}
    # aerleon: two input base chains on one hook in table ip: root1 (policy drop) jumps to
    # allow-anything (ct state new accept), so new SYNs pass both; root6 accepts tcp too.
    aerleon = (folder / "nftables_aerleon_sample_nftables.nft").read_text()
    assert {v for v, _ in _verdicts(aerleon, "192.0.2.25").values()} == {"permitted"}


_LINES = GATEWAY_TEXT.splitlines() + HOST.splitlines()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_LINES),
            st.sampled_from(_LINES).map(lambda line: line[: len(line) // 2]),
            st.text(max_size=40),
            st.sampled_from(_LINES).map(lambda line: line.replace(" ", " { ", 1)),
            st.sampled_from(_LINES).map(lambda line: line.replace("/", "/9", 1)),
            st.just("}"),
        ),
        max_size=40,
    )
)
def test_text_parser_never_raises_on_mutated_input(lines: list[str]) -> None:
    try:
        result = parse_nftables("\n".join(lines), "fuzz", ParseOptions())
    except FirewallParseError:
        return
    check_ranges(result.policy, "192.0.2.25", EOP_V4)


_JSON_OBJECTS = json.loads(GATEWAY_JSON)["nftables"]


def _mutate(obj: object) -> object:
    """Replace numbers with words and addresses with garbage, keeping the JSON shape."""
    if isinstance(obj, dict):
        return {k: _mutate(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mutate(v) for v in obj]
    if isinstance(obj, int):
        return "x"
    if isinstance(obj, str) and any(c.isdigit() for c in obj):
        return obj.replace("0", ":/")
    return obj


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_JSON_OBJECTS),
            st.dictionaries(st.sampled_from(["rule", "chain", "set", "match"]), st.none()),
            st.sampled_from(_JSON_OBJECTS).map(_mutate),
        ),
        max_size=30,
    )
)
def test_json_parser_never_raises_on_mutated_input(objects: list[object]) -> None:
    try:
        result = parse_nftables(json.dumps({"nftables": objects}), "fuzz.json", ParseOptions())
    except FirewallParseError:
        return
    check_ranges(result.policy, "192.0.2.25", EOP_V4)


def test_cleanup_names_set_elements_and_rules_with_only_retired_ranges() -> None:
    retired = IPSet.parse("65.55.88.0/24", "157.55.234.0/24")
    text = (
        HOST.replace(
            "elements = { 40.92.0.0/15, 40.107.0.0/16, 104.47.0.0/17 }",
            "elements = { 40.92.0.0/15, 40.107.0.0/16, 104.47.0.0/17, 157.55.234.0/24 }",
        )
        .replace(
            "\t\tiif lo accept\n",
            "\t\tiif lo accept\n\t\tip saddr 65.55.88.0/24 tcp dport 25 accept\n",
        )
        .replace("40.0.0.0/8, ", "40.0.0.0/8, 65.0.0.0/8, 157.0.0.0/8, ")
    )
    result = parse_nftables(text, "nftables.conf", ParseOptions())
    check = check_ranges(result.policy, "192.0.2.25", EOP, retired=retired)
    assert check.stale_cidrs == ["65.55.88.0/24", "157.55.234.0/24"]
    remedy = remediate_nftables(text, result, check)
    assert remedy is not None
    assert remedy.cleanup == (
        "nft delete element inet filter eop { 157.55.234.0/24 }",
        "delete line 12: ip saddr 65.55.88.0/24 tcp dport 25 accept",
    )


@pytest.mark.parametrize(
    "text",
    [
        "table ip t { chain c { " + "{ " * 20_000 + "\n",
        '{"nftables": ' + "[" * 50_000 + "]" * 50_000 + "}",
        "{" * 50_000,
        "\x00\xff\ufeff" * 10_000,
    ],
    ids=["nested-braces", "nested-json", "only-braces", "binary"],
)
def test_hostile_input_is_refused_cleanly(text: str) -> None:
    with pytest.raises(FirewallParseError):
        parse_nftables(text, "hostile", ParseOptions())
