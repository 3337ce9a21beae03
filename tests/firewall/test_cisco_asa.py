"""Cisco ASA: running-config and bare ACLs into the policy model, verdicts, NAT, remediation.

Every expected verdict below was worked out by hand from the ASA's rules: first match in the
ACL bound inbound on the outside interface, implicit deny at its end, ACLs naming the real
(inside) address from 8.3 on.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vendor_checks import EOP, mutated, parse, prove_remediation, sniffed_as, survives, table

from mailflow_doctor.firewall.evaluate import check_ranges, evaluate
from mailflow_doctor.firewall.model import Action, DestinationView
from mailflow_doctor.firewall.registry import FirewallParseError, ParseOptions
from mailflow_doctor.firewall.vendors.cisco_asa import parse_config, remediate_text
from mailflow_doctor.knowledge.endpoints import load
from mailflow_doctor.knowledge.ipranges import IPSet

VENDOR = "cisco-asa"

# The Tailspin Toys edge firewall: the EOP group was built from an old list and lacks
# 40.107.0.0/16 and half of 52.100.0.0/14; it also still carries a retired 2018 range.
TAILSPIN = """\
: Saved
:
: Serial Number: JAD000000TT
: Hardware:   ASA5516, 8192 MB RAM, CPU Atom C2000 series 2416 MHz, 1 CPU (8 cores)
:
ASA Version 9.16(4)
!
hostname tt-edge-fw01
domain-name tailspintoys.ca
enable password ***** pbkdf2
names
name 10.0.0.25 EXCH01 description Exchange Server 2019, hybrid receive
!
interface GigabitEthernet1/1
 description Internet (ISP uplink)
 nameif outside
 security-level 0
 ip address 203.0.113.2 255.255.255.0
!
interface GigabitEthernet1/2
 description Server LAN
 nameif inside
 security-level 100
 ip address 10.0.0.1 255.255.255.0
!
ftp mode passive
clock timezone EST -5
object network EXCH
 host 10.0.0.25
 description Exchange hybrid receive connector (smtp.tailspintoys.ca)
object network EOP-40.92
 subnet 40.92.0.0 255.254.0.0
object network EOP-52.100
 subnet 52.100.0.0 255.254.0.0
object network EOP-104.47
 subnet 104.47.0.0 255.255.128.0
object network EOP-OLD-65.55.88
 subnet 65.55.88.0 255.255.255.0
object-group network EOP
 description Exchange Online Protection (from the 2018 list)
 network-object object EOP-40.92
 network-object object EOP-52.100
 network-object object EOP-104.47
 network-object object EOP-OLD-65.55.88
 network-object 2a01:111:f400::/48
access-list OUTSIDE_IN remark --- inbound mail from Exchange Online ---
access-list OUTSIDE_IN extended permit tcp object-group EOP object EXCH eq smtp
access-list OUTSIDE_IN remark --- OWA / Autodiscover ---
access-list OUTSIDE_IN extended permit tcp any4 object EXCH eq https
access-list OUTSIDE_IN extended permit icmp any4 any4 echo-reply
access-list OUTSIDE_IN extended deny ip any any log
pager lines 24
logging enable
logging timestamp
logging trap warnings
logging host inside 10.0.0.50
mtu outside 1500
mtu inside 1500
!
object network EXCH
 nat (inside,outside) static 203.0.113.25
access-group OUTSIDE_IN in interface outside
route outside 0.0.0.0 0.0.0.0 203.0.113.1 1
Cryptochecksum:00000000000000000000000000000000
: end
"""


def _line(text: str, fragment: str) -> int:
    """1-based number of the first line of `text` that contains `fragment`."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)


def _check(text: str, to: str, **options: str):  # type: ignore[no-untyped-def]
    result = parse(VENDOR, text, **options)
    return result, check_ranges(result.policy, to, EOP, port=25)


# ---- the classic case -----------------------------------------------------------------------


def test_tailspin_missing_ranges_through_nat() -> None:
    result, check = _check(TAILSPIN, "203.0.113.25")
    assert result.issues == ()
    policy = result.policy
    assert policy.vendor == VENDOR
    assert policy.acl_name == "OUTSIDE_IN"
    assert policy.destination_view == DestinationView.POST_NAT
    assert policy.smtp_hosts == ("203.0.113.25",)
    assert check.evaluation.effective_destination == "10.0.0.25"
    assert check.evaluation.nat_origin is not None
    assert check.evaluation.nat_origin.line == _line(TAILSPIN, "nat (inside,outside) static")
    assert table(result, "203.0.113.25") == {
        "40.92.0.0/15": ("permitted",),
        "40.107.0.0/16": ("blocked", "40.107.0.0/16"),
        "52.100.0.0/14": ("partial", "52.102.0.0/15"),
        "104.47.0.0/17": ("permitted",),
    }
    assert check.missing_cidrs == ["40.107.0.0/16", "52.102.0.0/15"]
    verdicts = {v.range: v for v in check.verdicts}
    # The explicit `deny ip any any log` decides the blocked part, and it drops silently.
    permit = _line(TAILSPIN, "permit tcp object-group EOP")
    deny = _line(TAILSPIN, "deny ip any any log")
    assert [o.line for o in verdicts["40.107.0.0/16"].deciding] == [deny]
    assert verdicts["40.107.0.0/16"].actions == ("deny",)
    assert [o.line for o in verdicts["52.100.0.0/14"].deciding] == [permit, deny]
    # Logging is on at warnings: the ASA logs its denies (106023).
    assert policy.default_deny_logged


def test_tailspin_stale_range_and_cleanup() -> None:
    endpoints = load()
    result = parse(VENDOR, TAILSPIN)
    check = check_ranges(
        result.policy, "203.0.113.25", endpoints.eop_smtp_cidrs(), endpoints.retired_eop
    )
    assert check.stale_cidrs == ["65.55.88.0/24"]
    remedy = remediate_text(TAILSPIN, result, check)
    assert remedy is not None
    # The stale range sits in an object inside the group: remove the group's reference.
    assert remedy.cleanup == (
        "object-group network EOP",
        " no network-object object EOP-OLD-65.55.88",
    )


def test_tailspin_remediation_adds_to_the_admins_group() -> None:
    remedy, after = prove_remediation(VENDOR, TAILSPIN, "203.0.113.25")
    assert remedy.lines == (
        "object-group network EOP",
        " network-object 40.107.0.0 255.255.0.0",
        " network-object 52.102.0.0 255.254.0.0",
    )
    assert "object-group EOP" in remedy.explanation
    assert remedy.patched_text is not None
    patched = remedy.patched_text.splitlines()
    # Inserted at the end of the group's block, before the ACL that uses it.
    at = patched.index(" network-object 40.107.0.0 255.255.0.0")
    assert patched[at - 1] == " network-object 2a01:111:f400::/48"
    assert patched[at + 2].startswith("access-list OUTSIDE_IN remark")
    assert {v.range for v in after.verdicts} == {
        "40.92.0.0/15",
        "40.107.0.0/16",
        "52.100.0.0/14",
        "104.47.0.0/17",
    }


def test_ipv6_destination_uses_the_v6_part_of_the_group() -> None:
    text = TAILSPIN.replace(
        "access-list OUTSIDE_IN extended permit tcp object-group EOP object EXCH eq smtp",
        "access-list OUTSIDE_IN extended permit tcp object-group EOP object EXCH eq smtp\n"
        "access-list OUTSIDE_IN extended permit tcp object-group EOP host 2001:db8:25::25 eq 25",
    )
    assert table(parse(VENDOR, text), "2001:db8:25::25") == {
        "2a01:111:f400::/48": ("permitted",),
        "2a01:111:f403::/48": ("blocked", "2a01:111:f403::/48"),
    }
    remedy, _ = prove_remediation(VENDOR, text, "2001:db8:25::25")
    assert " network-object 2a01:111:f403::/48" in remedy.lines


# ---- syntax ---------------------------------------------------------------------------------

FEATURES = """\
ASA Version 9.12(4)
!
interface Management0/0
 nameif management
 security-level 100
 ip address 192.168.99.1 255.255.255.0
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 198.51.100.2 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 ip address 10.1.0.1 255.255.0.0
!
name 10.1.0.25 MAILHOST
object network EOP_RANGE_1
 range 40.92.0.0 40.93.255.255
object network MS_FQDN
 fqdn v4 outlook-com.olc.protection.outlook.com
object-group network EOP_LEAF
 network-object 104.47.0.0 255.255.128.0
object-group network EOP_MID
 group-object EOP_LEAF
 network-object object EOP_RANGE_1
object-group network EOP_TOP
 group-object EOP_MID
 network-object 52.100.0.0 255.255.0.0
object-group service SMTP_SVC
 service-object tcp destination eq smtp
object-group service MAILPORTS tcp
 port-object eq smtp
 port-object eq 587
object-group protocol TCPUDP
 protocol-object tcp
 protocol-object udp
access-list OUTSIDE_IN remark first match wins
access-list OUTSIDE_IN extended deny tcp 52.100.128.0 255.255.128.0 any eq smtp
access-list OUTSIDE_IN extended permit object-group SMTP_SVC object-group EOP_TOP host MAILHOST
access-list OUTSIDE_IN extended permit tcp 40.107.0.0 255.255.0.0 host MAILHOST eq smtp inactive
access-list OUTSIDE_IN extended permit tcp object MS_FQDN host MAILHOST eq smtp
access-list OUTSIDE_IN extended permit object-group TCPUDP any6 host MAILHOST object-group MAILPORTS
access-list OUTSIDE_IN extended permit tcp 52.101.0.0 255.255.0.0 host MAILHOST range 20 30
access-list OUTSIDE_IN extended permit tcp 52.102.0.0 255.255.0.0 host MAILHOST gt 25
access-list OUTSIDE_IN extended permit tcp 52.103.0.0 255.255.0.0 host MAILHOST neq 80
access-list INSIDE_IN extended permit ip any any
access-group OUTSIDE_IN in interface outside
access-group INSIDE_IN in interface inside
"""


def test_nested_groups_inactive_fqdn_ports_and_deny_before_permit() -> None:
    result, check = _check(FEATURES, "10.1.0.25")
    assert result.issues == ()
    assert result.policy.acl_name == "OUTSIDE_IN"
    assert table(result, "10.1.0.25") == {
        # range object + nested group members
        "40.92.0.0/15": ("permitted",),
        # only the inactive ACE permits it
        "40.107.0.0/16": ("blocked", "40.107.0.0/16"),
        # 52.100.0.0/16 from the group, but the deny above it takes 52.100.128.0/17;
        # 52.101 needs ports 20-30 (25 is in); 52.102 needs > 25; 52.103 any port but 80
        "52.100.0.0/14": ("partial", "52.100.128.0/17", "52.102.0.0/16"),
        "104.47.0.0/17": ("permitted",),
    }
    # The FQDN object cannot be resolved offline: skipped, and said so.
    assert any("FQDN" in note and "offline" in note for note in check.notes)
    deny = _line(FEATURES, "extended deny tcp 52.100.128.0")
    verdicts = {v.range: v for v in check.verdicts}
    assert verdicts["52.100.0.0/14"].deciding[0].line == deny


def test_deny_before_permit_remediation_goes_above_it() -> None:
    remedy, _ = prove_remediation(VENDOR, FEATURES, "10.1.0.25")
    # Adding to the group would stay shadowed by the deny, so a new ACE goes above it: line 2
    # of the ACL (the remark is line 1; ASA counts remarks).
    assert remedy.lines[0] == "object-group network EOP_SMTP_SOURCES"
    assert remedy.lines[-1] == (
        "access-list OUTSIDE_IN line 2 extended permit tcp object-group EOP_SMTP_SOURCES "
        "host MAILHOST eq smtp"
    )
    assert "EOP_TOP is not enough" in remedy.explanation
    assert remedy.patched_text is not None
    patched = remedy.patched_text.splitlines()
    deny = patched.index(
        "access-list OUTSIDE_IN extended deny tcp 52.100.128.0 255.255.128.0 any eq smtp"
    )
    assert patched[deny - 1].startswith("access-list OUTSIDE_IN extended permit tcp object-group")


def test_any4_any6_and_families() -> None:
    text = """\
access-list OUTSIDE_IN extended permit tcp any6 any eq smtp
access-list OUTSIDE_IN extended permit tcp 40.92.0.0 255.254.0.0 any4 eq smtp
access-list OUTSIDE_IN extended deny ip any any
"""
    result = parse(VENDOR, text)
    v4 = table(result, "192.0.2.25")
    assert v4["40.92.0.0/15"] == ("permitted",)
    assert v4["104.47.0.0/17"] == ("blocked", "104.47.0.0/17")
    v6 = table(result, "2001:db8::25")
    assert set(v6) == {"2a01:111:f400::/48", "2a01:111:f403::/48"}
    assert all(verdict == ("permitted",) for verdict in v6.values())


def test_discontiguous_mask() -> None:
    text = "access-list foo extended permit ip 128.168.0.0 191.255.255.128 any\n"
    rule = parse(VENDOR, text).policy.chains["foo"].rules[0]
    assert "128.168.0.5" in rule.sources
    assert "192.168.0.5" in rule.sources  # the 64 bit is a "don't care" bit
    assert "128.168.0.128" not in rule.sources
    assert rule.sources.size() == 256


def test_show_access_list_output_with_hit_counts_and_expansion() -> None:
    text = """\
access-list cached ACL log flows: total 0, denied 0 (deny-flow-max 4096)
access-list OUTSIDE_IN; 3 elements; name hash: 0x1f2e3d4c
access-list OUTSIDE_IN line 1 extended permit tcp object-group EOP object EXCH eq smtp (hitcnt=1532) 0x8e7d6c5b
  access-list OUTSIDE_IN line 1 extended permit tcp 40.92.0.0 255.254.0.0 host 10.0.0.25 eq smtp (hitcnt=1000) 0x11111111
  access-list OUTSIDE_IN line 1 extended permit tcp 104.47.0.0 255.255.128.0 host 10.0.0.25 eq smtp (hitcnt=532) 0x22222222
access-list OUTSIDE_IN line 2 extended deny ip any any (hitcnt=77) 0x33333333
"""  # noqa: E501
    result = parse(VENDOR, text)
    assert table(result, "10.0.0.25") == {
        "40.92.0.0/15": ("permitted",),
        "40.107.0.0/16": ("blocked", "40.107.0.0/16"),
        "52.100.0.0/14": ("blocked", "52.100.0.0/14"),
        "104.47.0.0/17": ("permitted",),
    }
    assert result.policy.smtp_hosts == ("10.0.0.25",)


def test_bare_acl_with_undefined_group_is_reported_not_guessed() -> None:
    text = "access-list OUTSIDE_IN extended permit tcp object-group EOP object EXCH eq smtp\n"
    result = parse(VENDOR, text)
    check = check_ranges(result.policy, "10.0.0.25", EOP)
    assert check.missing_cidrs == [
        "40.92.0.0/15",
        "40.107.0.0/16",
        "52.100.0.0/14",
        "104.47.0.0/17",
    ]
    assert any("EOP is not defined" in note for note in check.notes)


def test_reset_inbound_turns_denies_into_refusals() -> None:
    text = TAILSPIN.replace("pager lines 24\n", "pager lines 24\nservice resetinbound\n")
    result, check = _check(text, "203.0.113.25")
    verdicts = {v.range: v for v in check.verdicts}
    assert verdicts["40.107.0.0/16"].actions == ("reject",)
    assert result.policy.chains["OUTSIDE_IN"].default == Action.REJECT
    assert any("4.4.316" in note for note in result.policy.notes)


def test_acl_choice_binding_override_and_ambiguity() -> None:
    assert parse(VENDOR, FEATURES).policy.acl_name == "OUTSIDE_IN"
    assert parse(VENDOR, FEATURES, acl="INSIDE_IN").policy.acl_name == "INSIDE_IN"
    with pytest.raises(FirewallParseError, match="no access-list named 'NOPE'"):
        parse(VENDOR, FEATURES, acl="NOPE")
    two = "access-list A extended permit ip any any\naccess-list B extended deny ip any any\n"
    with pytest.raises(FirewallParseError, match="--acl"):
        parse(VENDOR, two)
    assert parse(VENDOR, two, acl="B").policy.acl_name == "B"


def test_no_acl_on_outside_means_security_levels_deny_everything() -> None:
    text = FEATURES.replace("access-group OUTSIDE_IN in interface outside\n", "")
    result, check = _check(text, "10.1.0.25")
    assert result.policy.acl_name == ""
    assert all(v.verdict == "blocked" for v in check.verdicts)
    assert "no access-group" in (check.verdicts[0].deciding[0].text)
    remedy, _ = prove_remediation(VENDOR, text, "10.1.0.25")
    # OUTSIDE_IN exists (unbound), so a new ACL is made and bound to the outside interface.
    assert remedy.lines[-2].startswith("access-list OUTSIDE_IN_2 extended permit tcp ")
    assert remedy.lines[-1] == "access-group OUTSIDE_IN_2 in interface outside"


def test_global_acl_applies_after_the_interface_acl() -> None:
    text = """\
interface GigabitEthernet0/0
 nameif outside
 security-level 0
access-list OUTSIDE_IN extended deny tcp 40.107.0.0 255.255.0.0 any
access-list GLOBAL_ACL extended permit tcp 40.0.0.0 255.0.0.0 host 10.0.0.25 eq smtp
access-group OUTSIDE_IN in interface outside
access-group GLOBAL_ACL global
"""
    verdicts = table(parse(VENDOR, text), "10.0.0.25")
    assert verdicts["40.92.0.0/15"] == ("permitted",)
    assert verdicts["40.107.0.0/16"] == ("blocked", "40.107.0.0/16")


def test_twice_nat_inbound_and_object_nat_with_service() -> None:
    text = """\
ASA Version 9.8(4)
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 198.51.100.2 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
object network EXCH_REAL
 host 10.0.0.25
object network EXCH_PUBLIC
 host 198.51.100.25
object network EDGE_REAL
 host 10.0.0.26
 nat (inside,outside) static 198.51.100.26 service tcp smtp smtp
object network EXCH2_REAL
 host 10.0.0.27
object network EXCH2_PUBLIC
 host 198.51.100.27
access-list OUTSIDE_IN extended permit tcp 40.92.0.0 255.254.0.0 object EXCH_REAL eq smtp
access-list OUTSIDE_IN extended permit tcp 104.47.0.0 255.255.128.0 host 10.0.0.26 eq smtp
access-list OUTSIDE_IN extended permit tcp 52.100.0.0 255.252.0.0 host 10.0.0.27 eq smtp
access-group OUTSIDE_IN in interface outside
nat (outside,inside) source static any any destination static EXCH_PUBLIC EXCH_REAL
nat (inside,outside) source static EXCH2_REAL EXCH2_PUBLIC
nat (inside,outside) source static EXCH_REAL EXCH_PUBLIC inactive
"""
    result = parse(VENDOR, text)
    evaluation = evaluate(result.policy, "198.51.100.25", 25)
    assert evaluation.effective_destination == "10.0.0.25"
    assert evaluation.permitted().cidrs() == ["40.92.0.0/15"]
    edge = evaluate(result.policy, "198.51.100.26", 25)
    assert edge.effective_destination == "10.0.0.26"
    assert edge.permitted().cidrs() == ["104.47.0.0/17"]
    # The object NAT only maps port 25: port 443 to the public address is not translated.
    assert evaluate(result.policy, "198.51.100.26", 443).effective_destination == "198.51.100.26"
    assert evaluate(result.policy, "198.51.100.27", 25).permitted().cidrs() == ["52.100.0.0/14"]
    assert set(result.policy.smtp_hosts) >= {"198.51.100.25", "198.51.100.26", "198.51.100.27"}


def test_pre_83_static_means_acls_name_the_public_address() -> None:
    text = """\
ASA Version 8.2(5)
interface Ethernet0/0
 nameif outside
 security-level 0
access-list outside_access_in extended permit tcp 40.92.0.0 255.254.0.0 host 198.51.100.25 eq smtp
access-group outside_access_in in interface outside
static (inside,outside) tcp 198.51.100.25 smtp 10.0.0.25 smtp netmask 255.255.255.255
global (outside) 1 interface
nat (inside) 1 0.0.0.0 0.0.0.0
"""
    result = parse(VENDOR, text)
    assert result.issues == ()
    assert result.policy.destination_view == DestinationView.PRE_NAT
    assert table(result, "198.51.100.25")["40.92.0.0/15"] == ("permitted",)
    assert result.policy.smtp_hosts == ("198.51.100.25",)


def test_remediation_when_nothing_permits_smtp_inserts_before_the_final_deny() -> None:
    text = """\
interface GigabitEthernet0/0
 nameif outside
 security-level 0
object network MAIL
 host 10.0.0.25
access-list OUTSIDE_IN remark web only
access-list OUTSIDE_IN extended permit tcp any object MAIL eq https
access-list OUTSIDE_IN extended deny ip any any log
access-group OUTSIDE_IN in interface outside
"""
    remedy, _ = prove_remediation(VENDOR, text, "10.0.0.25")
    assert remedy.lines == (
        "object-group network EOP_SMTP_SOURCES",
        " network-object 40.92.0.0 255.254.0.0",
        " network-object 40.107.0.0 255.255.0.0",
        " network-object 52.100.0.0 255.252.0.0",
        " network-object 104.47.0.0 255.255.128.0",
        "access-list OUTSIDE_IN line 3 extended permit tcp object-group EOP_SMTP_SOURCES "
        "host 10.0.0.25 eq smtp",
    )


def test_unsupported_lines_become_issues_not_exceptions() -> None:
    text = """\
object-group network G
 network-object 300.1.1.1 255.255.255.0
 bogus-subcommand
access-list X extended permit tcp any host 10.0.0.25 eq notaport
access-list X extended permit frobnicate any any
access-list X extended permit tcp user DOMAIN\\bob any eq smtp
access-list X extended permit tcp any host 10.0.0.25 eq smtp
"""
    result = parse(VENDOR, text)
    lines = sorted(line or 0 for line, _ in result.issues)
    assert lines == [2, 3, 4, 5, 6]
    assert table(result, "10.0.0.25")["40.92.0.0/15"] == ("permitted",)


def test_group_cycles_and_deep_nesting_do_not_hang() -> None:
    text = "".join(
        f"object-group network G{i}\n group-object G{(i + 1) % 50}\n" for i in range(50)
    ) + ("access-list X extended permit tcp object-group G0 any eq smtp\n")
    result = parse(VENDOR, text)
    assert table(result, "10.0.0.25")["40.92.0.0/15"] == ("blocked", "40.92.0.0/15")


def test_sniff_claims_asa_not_ios() -> None:
    assert sniffed_as(TAILSPIN) == VENDOR
    assert sniffed_as("access-list 101 permit tcp any host 10.0.0.25 eq smtp\n") != VENDOR
    assert sniffed_as("access-list X extended permit tcp any any eq smtp\n") == VENDOR


# ---- properties -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(TAILSPIN))
def test_parser_survives_mutated_configs(text: str) -> None:
    survives(VENDOR, text)
    try:
        result = parse(VENDOR, text)
    except FirewallParseError:
        return
    check_ranges(result.policy, "203.0.113.25", EOP)


WORDS = st.sampled_from(
    [
        "access-list",
        "OUTSIDE_IN",
        "extended",
        "permit",
        "deny",
        "tcp",
        "ip",
        "any",
        "any4",
        "host",
        "object",
        "object-group",
        "eq",
        "range",
        "smtp",
        "25",
        "10.0.0.25",
        "255.255.0.0",
        "40.107.0.0",
        "2a01:111:f400::/48",
        "nat",
        "(inside,outside)",
        "static",
        "source",
        "destination",
        "line",
        "inactive",
        "log",
        "\t",
        "(",
        "network-object",
        " ",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(WORDS, max_size=14).map(" ".join), max_size=12).map("\n".join))
def test_parser_never_raises_on_random_acl_text(text: str) -> None:
    survives(VENDOR, text)


Net = tuple[int, int]  # (network int, prefix length)

_NETS = st.tuples(st.integers(0, 2**32 - 1), st.integers(4, 24)).map(
    lambda t: (t[0] >> (32 - t[1]) << (32 - t[1]), t[1])
)
_ADDR = st.one_of(
    st.just(("any", [])),
    st.just(("any4", [])),
    _NETS.map(lambda n: ("net", [n])),
    st.lists(_NETS, min_size=1, max_size=3).map(lambda ns: ("group", ns)),
)
_PORT = st.one_of(
    st.none(),
    st.sampled_from([("eq", 25, 25), ("eq", 80, 80), ("lt", 26, 0), ("gt", 25, 0), ("neq", 25, 0)]),
    st.tuples(st.just("range"), st.integers(1, 40), st.integers(1, 40)),
)
_ACE = st.tuples(
    st.sampled_from(["permit", "deny"]),
    st.sampled_from(["ip", "tcp", "udp"]),
    _ADDR,
    st.sampled_from(["target", "other", "any"]),
    _PORT,
    st.booleans(),
)


def _mask(plen: int) -> str:
    return str(ipaddress.IPv4Address((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF))


def _contains(net: Net, value: int) -> bool:
    base, plen = net
    return base <= value < base + (1 << (32 - plen))


def _port_ok(spec: tuple[str, int, int] | None, port: int) -> bool:
    if spec is None:
        return True
    op, a, b = spec
    return {
        "eq": port == a,
        "lt": port < a,
        "gt": port > a,
        "neq": port != a,
        "range": min(a, b) <= port <= max(a, b),
    }[op]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ACE, max_size=8), st.lists(st.integers(0, 2**32 - 1), max_size=20))
def test_generated_acls_agree_with_a_naive_walk(aces, probes) -> None:  # type: ignore[no-untyped-def]
    lines = ["interface Gi0/0", " nameif outside", " security-level 0"]
    for index, (_a, _p, (kind, nets), _d, _port, _i) in enumerate(aces):
        if kind == "group":
            lines.append(f"object-group network G{index}")
            lines.extend(f" network-object {ipaddress.IPv4Address(b)} {_mask(p)}" for b, p in nets)
    for index, (action, proto, (kind, nets), dst, port, inactive) in enumerate(aces):
        if kind in ("any", "any4"):
            src = kind
        elif kind == "net":
            src = f"{ipaddress.IPv4Address(nets[0][0])} {_mask(nets[0][1])}"
        else:
            src = f"object-group G{index}"
        dst_text = {"target": "host 10.0.0.25", "other": "host 10.0.0.26", "any": "any"}[dst]
        port_text = ""
        if port is not None and proto != "ip":
            op, a, b = port
            port_text = f" range {a} {b}" if op == "range" else f" {op} {a}"
        flag = " inactive" if inactive else ""
        lines.append(
            f"access-list OUTSIDE_IN extended {action} {proto} {src} {dst_text}{port_text}{flag}"
        )
    lines.append("access-group OUTSIDE_IN in interface outside")
    result = parse_config("\n".join(lines) + "\n", "gen.cfg", ParseOptions())
    assert result.issues == (), result.issues
    permitted = evaluate(result.policy, "10.0.0.25", 25).permitted()

    edges = [v for _, _, (_, nets), _, _, _ in aces for b, p in nets for v in (b, b - 1)]
    for value in [*probes, *(e % 2**32 for e in edges)]:
        expected = False
        for action, proto, (kind, nets), dst, port, inactive in aces:
            if inactive or proto == "udp" or dst == "other":
                continue
            if proto == "tcp" and not _port_ok(port, 25):
                continue
            if kind in ("net", "group") and not any(_contains(n, value) for n in nets):
                continue
            expected = action == "permit"
            break
        assert (str(ipaddress.IPv4Address(value)) in permitted) == expected, (value, lines)


# ---- conformance over the public samples ------------------------------------------------------

SAMPLE_ACL = {
    "cisco_asa_acl_aerleon_sample_multitarget.asa": "asa_in",
    "cisco_asa_batfish_asa-acl-object.cfg": "acl1",
    "cisco_asa_batfish_asa-service-object-inline.cfg": "ACL_ICMP",
}


def test_every_asa_sample_parses(samples: Path) -> None:
    files = sorted((samples / "firewall-configs").glob("cisco_asa_*"))
    assert len(files) >= 10
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert sniffed_as(text) == VENDOR, path.name
        options = {"acl": SAMPLE_ACL[path.name]} if path.name in SAMPLE_ACL else {}
        result = parse(VENDOR, text, **options)
        check = check_ranges(result.policy, "192.0.2.25", EOP)
        assert {v.verdict for v in check.verdicts} <= {"permitted", "partial", "blocked"}


def test_sample_verdicts_are_sensible(samples: Path) -> None:
    configs = samples / "firewall-configs"
    multitarget = (configs / "cisco_asa_acl_aerleon_sample_multitarget.asa").read_text()
    result = parse(VENDOR, multitarget, acl="asa_in")
    # `permit tcp any host 200.1.1.4 eq smtp` after bogon/reserved denies that miss EOP.
    assert set(result.policy.smtp_hosts) == {"200.1.1.4", "200.1.1.5"}
    assert all(v == ("permitted",) for v in table(result, "200.1.1.4").values())
    assert all(v[0] == "blocked" for v in table(result, "200.1.1.9").values())
    running = (configs / "cisco_asa_running-config_ciscoconfparse_sample_01.asa").read_text()
    result = parse(VENDOR, running)
    assert result.policy.acl_name == "OUTSIDE_in"
    assert all(v[0] == "blocked" for v in table(result, "192.0.2.5").values())
    nested = (configs / "cisco_asa_batfish_asa-nested-network-object-group.cfg").read_text()
    result = parse(VENDOR, nested)
    assert any(line == 19 for line, _ in result.issues)  # `object-group group network`


def test_tailspin_sample_covers_the_real_samples_style() -> None:
    # Same grammar as the samples: any real ASA keyword we use here must be understood.
    result = parse_config(TAILSPIN, "asa.cfg")
    assert result.policy.rule_count() == 4
    assert IPSet.parse("40.92.0.0/15").issubset(result.policy.chains["OUTSIDE_IN"].rules[0].sources)


PRE9_V6 = """\
ASA Version 8.4(7)
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 198.51.100.2 255.255.255.0
 ipv6 address 2001:db8::2/64
object service SMTP
 service tcp destination eq smtp
object-group service SVC
 service-object object SMTP
 service-object udp destination eq 53
time-range WORKHOURS
 periodic weekdays 8:00 to 18:00
access-list OUT extended permit object-group SVC 40.92.0.0 255.254.0.0 interface outside log 6 interval 300
access-list OUT extended permit object SMTP 104.47.0.0 255.255.128.0 interface outside time-range WORKHOURS
ipv6 access-list OUT6 permit tcp 2a01:111:f400::/48 host 2001:db8::25 eq smtp
ipv6 access-list OUT6 deny ip any any
access-group OUT in interface outside
access-group OUT6 in interface outside
"""  # noqa: E501


def test_pre9_ipv6_acl_bound_beside_the_ipv4_one_and_time_ranges() -> None:
    result = parse(VENDOR, PRE9_V6)
    assert result.issues == ()
    assert result.policy.acl_name == "OUT,OUT6"
    assert any("time-range WORKHOURS" in note for note in result.policy.notes)
    # `interface outside` is the ASA's own address; service objects give protocol and port.
    assert table(result, "198.51.100.2") == {
        "40.92.0.0/15": ("permitted",),
        "40.107.0.0/16": ("blocked", "40.107.0.0/16"),
        "52.100.0.0/14": ("blocked", "52.100.0.0/14"),
        "104.47.0.0/17": ("permitted",),
    }
    assert table(result, "2001:db8::25") == {
        "2a01:111:f400::/48": ("permitted",),
        "2a01:111:f403::/48": ("blocked", "2a01:111:f403::/48"),
    }
    remedy, _ = prove_remediation(VENDOR, PRE9_V6, "2001:db8::25")
    assert remedy.lines[-1] == (
        "ipv6 access-list OUT6 line 2 permit tcp object-group EOP_SMTP_SOURCES "
        "host 2001:db8::25 eq smtp"
    )


def test_twice_nat_with_port_translation_from_2525() -> None:
    text = """\
interface GigabitEthernet0/0
 nameif outside
 security-level 0
object network EXCH
 host 10.0.0.25
object network EXCH_PUBLIC
 host 198.51.100.25
object service SMTP_REAL
 service tcp source eq smtp
object service SMTP_MAPPED
 service tcp source eq 2525
access-list OUTSIDE_IN extended permit tcp 40.92.0.0 255.254.0.0 object EXCH eq smtp
access-group OUTSIDE_IN in interface outside
nat (inside,outside) source static EXCH EXCH_PUBLIC service SMTP_REAL SMTP_MAPPED
"""
    result = parse(VENDOR, text)
    assert result.issues == ()
    # Exchange Online connects to 198.51.100.25:2525; the ASA sends it to 10.0.0.25:25.
    moved = evaluate(result.policy, "198.51.100.25", 2525)
    assert (moved.effective_destination, moved.permitted().cidrs()) == (
        "10.0.0.25",
        ["40.92.0.0/15"],
    )
    # Port 25 on the public address is not translated, and nothing permits it.
    assert not evaluate(result.policy, "198.51.100.25", 25).permitted()


def test_group_opened_again_gains_members() -> None:
    text = """\
object-group network EOP
 network-object 40.92.0.0 255.254.0.0
access-list IN extended permit tcp object-group EOP host 10.0.0.25 eq smtp
object-group network EOP
 network-object 104.47.0.0 255.255.128.0
"""
    verdicts = table(parse(VENDOR, text), "10.0.0.25")
    assert verdicts["40.92.0.0/15"] == ("permitted",)
    assert verdicts["104.47.0.0/17"] == ("permitted",)


def test_remediation_never_widens_an_unrelated_group() -> None:
    text = """\
object-group network PARTNERS
 network-object 192.0.2.0 255.255.255.0
access-list IN extended permit tcp object-group PARTNERS host 10.0.0.25 eq smtp
access-list IN extended deny ip any any
"""
    remedy, _ = prove_remediation(VENDOR, text, "10.0.0.25")
    assert "object-group network PARTNERS" not in remedy.lines
    assert remedy.lines[0] == "object-group network EOP_SMTP_SOURCES"


def test_small_server_group_names_each_mail_server() -> None:
    text = """\
object-group network EXCH_SERVERS
 network-object host 10.0.0.25
 network-object host 10.0.0.26
access-list IN extended permit tcp 40.92.0.0 255.254.0.0 object-group EXCH_SERVERS eq smtp
access-list IN extended permit tcp any 10.9.0.0 255.255.0.0 eq smtp
"""
    assert parse(VENDOR, text).policy.smtp_hosts == ("10.0.0.25", "10.0.0.26")
