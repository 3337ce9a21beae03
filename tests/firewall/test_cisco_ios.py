"""Cisco IOS / IOS-XE access lists: hand-checked verdicts, samples, properties, remediation."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vendor_checks import EOP, mutated, parse, prove_remediation, sniffed_as, survives, table

from mailflow_doctor.firewall.evaluate import check_ranges, evaluate
from mailflow_doctor.firewall.model import DestinationView
from mailflow_doctor.firewall.registry import FirewallParseError
from mailflow_doctor.knowledge.ipranges import IPSet

EDGE = """\
hostname edge-rtr
!
object-group network EOP-EXTRA
 40.107.0.0 255.255.0.0
!
object-group network EOP-SMTP
 description Exchange Online Protection
 40.92.0.0 255.254.0.0
 group-object EOP-EXTRA
!
interface GigabitEthernet0/0
 description ISP uplink
 ip address 203.0.113.2 255.255.255.0
 ip access-group OUTSIDE-IN in
 ipv6 traffic-filter OUTSIDE6-IN in
 ip nat outside
!
interface GigabitEthernet0/1
 ip address 10.0.0.1 255.255.255.0
 ip access-group INSIDE-IN in
 ip nat inside
!
ip nat inside source static tcp 10.0.0.25 25 203.0.113.25 25 extendable
!
ip access-list extended INSIDE-IN
 permit ip any any
ip access-list extended OUTSIDE-IN
 10 deny ip 52.102.0.0 0.1.255.255 any log
 20 permit tcp object-group EOP-SMTP host 203.0.113.25 eq smtp
 30 permit tcp 52.100.0.0 0.3.255.255 host 203.0.113.25 eq smtp
 40 permit tcp any host 203.0.113.25 eq smtp established
 50 deny tcp 104.47.0.0 0.0.127.255 host 203.0.113.25 eq 443
 60 permit tcp 104.47.0.0 0.0.127.255 host 10.0.0.25 eq smtp
 70 deny ip any any log
!
ipv6 access-list OUTSIDE6-IN
 sequence 10 permit tcp 2a01:111:f400::/48 host 2001:db8::25 eq smtp
 sequence 20 deny ipv6 any any log
!
end
"""

GROUP_ONLY = """\
object-group network EOP-SMTP
 40.92.0.0 255.254.0.0
 40.107.0.0 255.255.0.0
!
interface Dialer1
 ip address negotiated
 ip access-group FROM-ISP in
!
ip access-list extended FROM-ISP
 permit tcp object-group EOP-SMTP host 198.51.100.25 eq 25
 permit tcp any any eq 443
 deny   ip any any log
"""

NUMBERED = """\
access-list 101 remark mail from Exchange Online
access-list 101 permit tcp 40.92.0.0 0.1.255.255 host 203.0.113.25 eq smtp
access-list 101 permit tcp 40.107.0.0 0.0.255.255 host 203.0.113.25 eq 25
access-list 101 deny   ip any any
"""


def test_edge_router_verdicts_hand_checked() -> None:
    result = parse("cisco-ios", EDGE)
    policy = result.policy
    assert policy.destination_view == DestinationView.PRE_NAT
    assert policy.acl_name == "OUTSIDE-IN"
    assert policy.smtp_hosts == ("203.0.113.25",)
    assert result.issues == ()
    verdicts = table(result, "203.0.113.25")
    assert verdicts == {
        "40.92.0.0/15": ("permitted",),  # object-group
        "40.107.0.0/16": ("permitted",),  # nested group-object
        "52.100.0.0/14": ("partial", "52.102.0.0/15"),  # seq 10 deny wins over seq 30
        # seq 50 is port 443, seq 60 names the inside address (IOS filters before NAT)
        "104.47.0.0/17": ("blocked", "104.47.0.0/17"),
    }
    check = check_ranges(policy, "203.0.113.25", EOP)
    blocked_by = {v.range: [o.line for o in v.deciding] for v in check.verdicts}
    assert blocked_by["52.100.0.0/14"] == [28, 30]  # the seq 10 deny, the seq 30 permit
    assert any("established" in note for note in check.notes)
    assert any("inside address 10.0.0.25/32" in note for note in policy.notes)


def test_ipv6_filter_on_the_same_interface() -> None:
    verdicts = table(parse("cisco-ios", EDGE), "2001:db8::25")
    assert verdicts == {
        "2a01:111:f400::/48": ("permitted",),
        "2a01:111:f403::/48": ("blocked", "2a01:111:f403::/48"),
    }


def test_acl_override_and_unknown_acl() -> None:
    inside = parse("cisco-ios", EDGE, acl="INSIDE-IN")
    assert set(v[0] for v in table(inside, "203.0.113.25").values()) == {"permitted"}
    with pytest.raises(FirewallParseError, match="NOPE"):
        parse("cisco-ios", EDGE, acl="NOPE")


def test_numbered_bare_acl_and_implicit_deny() -> None:
    result = parse("cisco-ios", NUMBERED)
    verdicts = table(result, "203.0.113.25")
    assert verdicts["40.92.0.0/15"] == ("permitted",)
    assert verdicts["40.107.0.0/16"] == ("permitted",)
    assert verdicts["52.100.0.0/14"] == ("blocked", "52.100.0.0/14")
    assert not result.policy.default_deny_logged


def test_non_contiguous_wildcard() -> None:
    text = "access-list 120 permit tcp 40.92.0.0 0.1.0.255 host 192.0.2.25 eq smtp\n"
    permitted = evaluate(parse("cisco-ios", text).policy, "192.0.2.25").permitted()
    assert permitted.cidrs() == ["40.92.0.0/24", "40.93.0.0/24"]


def test_port_operators_and_flags() -> None:
    text = """\
ip access-list extended T
 10 permit tcp 40.92.0.0 0.1.255.255 any range 20 30
 20 permit tcp 40.107.0.0 0.0.255.255 any gt 25
 30 permit tcp 52.100.0.0 0.3.255.255 any neq 443
 40 permit tcp 104.47.0.0 0.0.127.255 any lt 26 ack
 50 permit tcp 104.47.0.0 0.0.127.255 any match-all +syn -ack
"""
    verdicts = table(parse("cisco-ios", text), "192.0.2.25")
    assert verdicts["40.92.0.0/15"] == ("permitted",)
    assert verdicts["40.107.0.0/16"] == ("blocked", "40.107.0.0/16")  # gt 25 excludes 25
    assert verdicts["52.100.0.0/14"] == ("permitted",)
    assert verdicts["104.47.0.0/17"] == ("permitted",)  # ack entry skipped, +syn -ack matches


def test_unsupported_lines_become_issues() -> None:
    text = NUMBERED + "access-list 101 permit esp host any any\naccess-list 101 dynamic X\n"
    result = parse("cisco-ios", text)
    assert {line for line, _ in result.issues} == {5, 6}


def test_sniff_does_not_take_asa() -> None:
    assert sniffed_as(EDGE) == "cisco-ios"
    asa = (
        "ASA Version 9.8(2)\naccess-list outside_in extended permit tcp any host 1.2.3.4 eq smtp\n"
    )
    assert sniffed_as(asa) != "cisco-ios"


# ---- remediation ---------------------------------------------------------------------------


def test_remediation_before_the_blocking_entry() -> None:
    remedy, _ = prove_remediation("cisco-ios", EDGE, "203.0.113.25")
    assert remedy.lines == (
        "ip access-list extended OUTSIDE-IN",
        " 3 permit tcp 52.102.0.0 0.1.255.255 host 203.0.113.25 eq smtp",
        " 6 permit tcp 104.47.0.0 0.0.127.255 host 203.0.113.25 eq smtp",
    )


def test_remediation_ipv6() -> None:
    remedy, _ = prove_remediation("cisco-ios", EDGE, "2001:db8::25")
    assert remedy.lines == (
        "ipv6 access-list OUTSIDE6-IN",
        " sequence 15 permit tcp 2a01:111:f403::/48 host 2001:db8::25 eq smtp",
    )


def test_remediation_adds_to_the_object_group_in_use() -> None:
    remedy, _ = prove_remediation("cisco-ios", GROUP_ONLY, "198.51.100.25")
    assert remedy.lines == (
        "object-group network EOP-SMTP",
        " 52.100.0.0 255.252.0.0",
        " 104.47.0.0 255.255.128.0",
    )


def test_remediation_numbered_list() -> None:
    remedy, _ = prove_remediation("cisco-ios", NUMBERED, "203.0.113.25")
    assert remedy.lines[0] == "ip access-list extended 101"
    assert remedy.lines[1] == " 23 permit tcp 52.100.0.0 0.3.255.255 host 203.0.113.25 eq smtp"


def test_remediation_resequences_when_there_is_no_room() -> None:
    text = """\
ip access-list extended IN
 1 permit tcp 40.92.0.0 0.1.255.255 host 192.0.2.25 eq smtp
 2 deny ip any any
"""
    remedy, _ = prove_remediation("cisco-ios", text, "192.0.2.25")
    assert remedy.lines[0] == "ip access-list resequence IN 10 10"


# ---- samples and properties ---------------------------------------------------------------


def test_samples_parse(samples: Path) -> None:
    files = sorted((samples / "firewall-configs").glob("cisco_ios_*"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert sniffed_as(text) == "cisco-ios", path.name
        result = parse("cisco-ios", text)
        assert result.policy.rule_count() > 0
    aerleon = parse("cisco-ios", (samples / "firewall-configs" / files[-1].name).read_text())
    # permit tcp any host 200.1.1.4 eq 25 after the bogon denies
    permitted = evaluate(aerleon.policy, "200.1.1.4").permitted()
    assert IPSet.parse(*EOP[:4]).issubset(permitted)
    assert "192.0.2.7" not in permitted  # a bogon deny comes first


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(EDGE))
def test_parser_survives_mutations(text: str) -> None:
    survives("cisco-ios", text)


ACES = st.lists(
    st.tuples(
        st.sampled_from(["permit", "deny"]),
        st.integers(0, 255),
        st.integers(8, 24),
        st.sampled_from([None, 25, 443]),
    ),
    min_size=1,
    max_size=7,
)


@settings(max_examples=60, deadline=None)
@given(ACES, st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20))
def test_generated_acls_agree_with_a_naive_walk(aces, probes) -> None:
    lines = ["ip access-list extended GEN"]
    nets = []
    for action, octet, plen, port in aces:
        net = ipaddress.IPv4Network((octet << 24, plen), strict=False)
        nets.append((action, net, port))
        ports = f" eq {port}" if port else ""
        lines.append(f" {action} tcp {net.network_address} {net.hostmask} any{ports}")
    policy = parse("cisco-ios", "\n".join(lines) + "\n").policy
    permitted = evaluate(policy, "192.0.2.1", 25).permitted()
    for value in probes:
        address = ipaddress.IPv4Address(value)
        expected = False
        for action, net, port in nets:
            if address in net and port in (None, 25):
                expected = action == "permit"
                break
        assert (address in permitted) == expected


SHOW_OUTPUT = """\
Extended IP access list OUTSIDE-IN
    10 permit tcp 40.92.0.0 0.1.255.255 host 203.0.113.25 eq smtp (1523 matches)
    20 permit tcp 40.107.0.0 0.0.255.255 host 203.0.113.25 eq smtp
    30 deny ip any any log (98 matches)
IPv6 access list OUTSIDE6-IN
    permit tcp 2a01:111:f400::/48 host 2001:db8::25 eq smtp (12 matches) sequence 10
"""

BARE = """\
permit tcp 40.92.0.0 0.1.255.255 host 203.0.113.25 eq smtp
permit tcp 52.100.0.0 0.3.255.255 host 203.0.113.25 eq smtp
deny ip any any log
"""


def test_show_access_lists_output_and_bare_entries() -> None:
    shown = parse("cisco-ios", SHOW_OUTPUT)
    assert sniffed_as(SHOW_OUTPUT) == "cisco-ios"
    assert table(shown, "203.0.113.25")["40.92.0.0/15"] == ("permitted",)
    assert table(shown, "203.0.113.25")["52.100.0.0/14"] == ("blocked", "52.100.0.0/14")
    assert table(shown, "2001:db8::25")["2a01:111:f400::/48"] == ("permitted",)
    bare = parse("cisco-ios", BARE)
    assert sniffed_as(BARE) == "cisco-ios"
    assert table(bare, "203.0.113.25")["52.100.0.0/14"] == ("permitted",)
    assert table(bare, "203.0.113.25")["40.107.0.0/16"] == ("blocked", "40.107.0.0/16")
    prove_remediation("cisco-ios", SHOW_OUTPUT, "203.0.113.25")
    prove_remediation("cisco-ios", BARE, "203.0.113.25")


SERVICE_GROUPS = """\
object-group service MAIL
 tcp eq smtp
 tcp eq 587
object-group service WEB
 tcp eq www
 tcp-udp eq 443
ip access-list extended IN
 10 permit object-group WEB any host 192.0.2.25
 20 permit object-group MAIL 40.92.0.0 0.1.255.255 host 192.0.2.25
 30 deny object-group MAIL 40.107.0.0 0.0.255.255 any
 40 permit tcp any any
"""


def test_service_object_groups() -> None:
    result = parse("cisco-ios", SERVICE_GROUPS)
    verdicts = table(result, "192.0.2.25")
    assert verdicts["40.92.0.0/15"] == ("permitted",)
    assert verdicts["40.107.0.0/16"] == ("blocked", "40.107.0.0/16")
    assert verdicts["52.100.0.0/14"] == ("permitted",)
    assert table(result, "192.0.2.25", port=443)["40.107.0.0/16"] == ("permitted",)
    remedy, _ = prove_remediation("cisco-ios", SERVICE_GROUPS, "192.0.2.25")
    assert remedy.lines == (
        "ip access-list extended IN",
        " 25 permit tcp 40.107.0.0 0.0.255.255 host 192.0.2.25 eq smtp",
    )


def test_outbound_list_on_the_inside_interface_is_named() -> None:
    text = EDGE.replace(
        " ip access-group INSIDE-IN in\n",
        " ip access-group INSIDE-IN in\n ip access-group TO-SERVERS out\n",
    )
    notes = parse("cisco-ios", text).policy.notes
    assert any("TO-SERVERS" in note for note in notes)


def test_binding_to_an_undefined_list_permits_everything() -> None:
    text = GROUP_ONLY.replace("ip access-group FROM-ISP in", "ip access-group MISSING in")
    result = parse("cisco-ios", text)
    assert set(v[0] for v in table(result, "198.51.100.25").values()) == {"permitted"}
    assert any("MISSING, which is not defined" in note for note in result.policy.notes)


def test_subnet_mask_written_as_wildcard_is_explained() -> None:
    text = "access-list 110 permit tcp 40.92.0.0 255.254.0.0 host 192.0.2.25 eq smtp\n"
    result = parse("cisco-ios", text)
    assert "you probably meant 40.92.0.0 0.1.255.255" in result.issues[0][1]


def test_time_range_is_assumed_active_and_said_so() -> None:
    text = "access-list 130 permit tcp any host 192.0.2.25 eq smtp time-range BUSINESS\n"
    result = parse("cisco-ios", text)
    assert table(result, "192.0.2.25")["40.92.0.0/15"] == ("permitted",)
    assert any("time-range BUSINESS" in note for note in result.policy.notes)
