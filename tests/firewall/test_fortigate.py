"""FortiGate: hand-checked verdicts with VIPs, nested groups, order, samples, remediation."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vendor_checks import EOP, mutated, parse, prove_remediation, sniffed_as, survives, table

from mailflow_doctor.firewall.evaluate import check_ranges, evaluate
from mailflow_doctor.firewall.model import Action, DestinationView

EDGE = """\
#config-version=FGT60F-7.2.5-FW-build1517-230606:opmode=0:vdom=0:user=admin
config system global
    set hostname "FGT-EDGE"
end
config system interface
    edit "wan1"
        set vdom "root"
        set ip 203.0.113.2 255.255.255.0
        set type physical
        set role wan
    next
    edit "internal"
        set vdom "root"
        set ip 10.0.0.1 255.255.255.0
        set role lan
    next
    edit "dmz"
        set vdom "root"
        set ip 10.9.9.1 255.255.255.0
        set role dmz
    next
end
config firewall address
    edit "EOP-40.92"
        set subnet 40.92.0.0 255.254.0.0
    next
    edit "EOP-40.107"
        set subnet 40.107.0.0/16
    next
    edit "EOP-52.100"
        set type iprange
        set start-ip 52.100.0.0
        set end-ip 52.103.255.255
    next
    edit "EOP-52.103-hole"
        set subnet 52.103.0.0 255.255.0.0
    next
    edit "EOP-104-low"
        set subnet 104.47.0.0 255.255.192.0
    next
    edit "EOP-104"
        set subnet 104.47.0.0 255.255.128.0
    next
    edit "outlook-fqdn"
        set type fqdn
        set fqdn "mail.protection.outlook.com"
    next
end
config firewall address6
    edit "EOP6-f400"
        set ip6 2a01:111:f400::/48
    next
end
config firewall addrgrp
    edit "EOP-inner"
        set member "EOP-40.107"
    next
    edit "EOP-SMTP"
        set member "EOP-40.92" "EOP-inner" "EOP-52.100" "outlook-fqdn"
        set exclude enable
        set exclude-member "EOP-52.103-hole"
    next
end
config firewall addrgrp6
    edit "EOP6-SMTP"
        set member "EOP6-f400"
    next
end
config firewall vip
    edit "VIP-SMTP"
        set extip 203.0.113.25
        set mappedip "10.0.0.25"
        set extintf "wan1"
        set portforward enable
        set extport 25
        set mappedport 25
    next
    edit "VIP-SMTP-ALT"
        set extip 203.0.113.26
        set mappedip "10.0.0.25"
        set extintf "wan1"
        set portforward enable
        set extport 2525
        set mappedport 25
    next
end
config firewall vip6
    edit "VIP6-SMTP"
        set extip 2001:db8::25
        set mappedip 2001:db8:1::25
    next
end
config firewall policy
    edit 9
        set name "old-smtp-deny"
        set srcintf "wan1"
        set dstintf "internal"
        set srcaddr "all"
        set dstaddr "VIP-SMTP"
        set action deny
        set status disable
        set schedule "always"
        set service "SMTP"
    next
    edit 4
        set name "block-104-low"
        set srcintf "wan1"
        set dstintf "internal"
        set srcaddr "EOP-104-low"
        set dstaddr "VIP-SMTP"
        set action deny
        set send-deny-packet enable
        set schedule "always"
        set service "SMTP"
    next
    edit 2
        set name "EXO-to-Exchange"
        set srcintf "wan1"
        set dstintf "internal"
        set srcaddr "EOP-SMTP"
        set dstaddr "VIP-SMTP" "VIP-SMTP-ALT"
        set srcaddr6 "EOP6-SMTP"
        set dstaddr6 "VIP6-SMTP"
        set action accept
        set schedule "always"
        set service "SMTP"
        set logtraffic all
    next
    edit 3
        set name "wrong-dstintf"
        set srcintf "wan1"
        set dstintf "dmz"
        set srcaddr "EOP-104"
        set dstaddr "VIP-SMTP"
        set action accept
        set schedule "always"
        set service "SMTP"
    next
    edit 5
        set name "plain-all"
        set srcintf "wan1"
        set dstintf "internal"
        set srcaddr "all"
        set dstaddr "all"
        set action accept
        set schedule "always"
        set service "SMTP"
    next
end
"""

SIMPLE = """\
config firewall address
    edit "EOP-40.92"
        set subnet 40.92.0.0 255.254.0.0
    next
end
config firewall addrgrp
    edit "EOP-SMTP"
        set member "EOP-40.92"
    next
end
config firewall vip
    edit "VIP-SMTP"
        set extip 198.51.100.25
        set mappedip "10.1.1.25"
        set extintf "port1"
        set portforward enable
        set extport 25
        set mappedport 25
    next
end
config firewall policy
    edit 1
        set srcintf "port1"
        set dstintf "port2"
        set srcaddr "EOP-SMTP"
        set dstaddr "VIP-SMTP"
        set action accept
        set schedule "always"
        set service "SMTP"
    next
end
config log setting
    set fwpolicy-implicit-log enable
end
"""


def test_edge_verdicts_hand_checked() -> None:
    result = parse("fortigate", EDGE)
    policy = result.policy
    assert result.issues == ()
    assert policy.destination_view == DestinationView.PRE_NAT
    assert policy.inbound_interfaces is not None
    assert "wan1" in policy.inbound_interfaces
    assert not policy.default_deny_logged
    assert table(result, "203.0.113.25") == {
        "40.92.0.0/15": ("permitted",),
        "40.107.0.0/16": ("permitted",),  # nested group
        "52.100.0.0/14": ("partial", "52.103.0.0/16"),  # exclude-member
        # policy 4 (listed before 2) rejects the low half, policy 3 goes to the wrong dstintf,
        # policy 5 names "all", which does not match VIP traffic
        "104.47.0.0/17": ("blocked", "104.47.0.0/17"),
    }
    evaluation = evaluate(policy, "203.0.113.25")
    rejected = [d for d in evaluation.decisions if d.action == Action.REJECT]
    assert rejected[0].sources.cidrs() == ["104.47.0.0/18"]
    check = check_ranges(policy, "203.0.113.25", EOP)
    assert any("outlook-fqdn" in note for note in policy.notes)
    assert check.verdicts[0].deciding[0].text.startswith("edit 2")


def test_vip_port_translation_and_ipv6() -> None:
    result = parse("fortigate", EDGE)
    alt = table(result, "203.0.113.26", port=2525)
    assert alt["40.92.0.0/15"] == ("permitted",)
    assert table(result, "203.0.113.26", port=25)["40.92.0.0/15"] == ("blocked", "40.92.0.0/15")
    assert table(result, "2001:db8::25") == {
        "2a01:111:f400::/48": ("permitted",),
        "2a01:111:f403::/48": ("blocked", "2a01:111:f403::/48"),
    }


def test_plain_address_policy_still_matches_non_vip_destinations() -> None:
    result = parse("fortigate", EDGE)
    # 10.0.0.30 is on "internal": policy 5 (all -> all, SMTP) permits every source
    assert set(v[0] for v in table(result, "10.0.0.30").values()) == {"permitted"}


def test_implicit_log_setting_and_vdom() -> None:
    assert parse("fortigate", SIMPLE).policy.default_deny_logged
    wrapped = "config vdom\nedit root\n" + SIMPLE + "next\nend\n"
    result = parse("fortigate", wrapped)
    assert result.policy.acl_name == "root"
    assert table(result, "198.51.100.25")["40.92.0.0/15"] == ("permitted",)


def test_order_follows_listing_and_move() -> None:
    text = EDGE.replace("    edit 5\n", "    edit 5\n", 1) + (
        "config firewall policy\n    move 5 before 9\nend\n"
    )
    result = parse("fortigate", text)
    names = [r.name for r in result.policy.chains["firewall policy"].rules]
    assert names[0] == "policy 5"


def test_bad_lines_are_issues() -> None:
    result = parse("fortigate", SIMPLE + "garbage here\nnext\n")
    assert {line for line, _ in result.issues} >= {len(SIMPLE.splitlines()) + 1}


def test_remediation_new_policy_before_the_blocker() -> None:
    remedy, _ = prove_remediation("fortigate", EDGE, "203.0.113.25")
    assert "    move 10 before 4" in remedy.lines
    assert '        set srcaddr "EXO-SMTP-mailflow-doctor"' in remedy.lines


def test_remediation_ipv6() -> None:
    remedy, _ = prove_remediation("fortigate", EDGE, "2001:db8::25")
    assert "config firewall addrgrp6" in remedy.lines
    assert "        set ip6 2a01:111:f403::/48" in remedy.lines


def test_remediation_extends_group_in_use() -> None:
    remedy, _ = prove_remediation("fortigate", SIMPLE, "198.51.100.25")
    assert remedy.lines[-5:] == (
        "config firewall addrgrp",
        '    edit "EOP-SMTP"',
        '        append member "EXO-40.107.0.0-16" "EXO-52.100.0.0-14" "EXO-104.47.0.0-17"',
        "    next",
        "end",
    )
    wrapped = "config vdom\nedit root\n" + SIMPLE + "next\nend\n"
    remedy_vdom, _ = prove_remediation("fortigate", wrapped, "198.51.100.25")
    assert remedy_vdom.lines[:2] == ("config vdom", "edit root")


def test_samples_parse(samples: Path) -> None:
    files = sorted((samples / "firewall-configs").glob("forti*"))
    assert len(files) == 7
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert sniffed_as(text) == "fortigate", path.name
        result = parse("fortigate", text)
        assert all(line is None or line > 0 for line, _ in result.issues)
    batfish = parse(
        "fortigate",
        (samples / "firewall-configs" / "fortios_batfish_firewall_policy_addrgrp.conf").read_text(),
    )
    # grp1_child excludes addr1b (10.0.1.64/29); the service is custom_tcp_11
    permitted = evaluate(batfish.policy, "10.0.2.5", 11).permitted()
    assert permitted.cidrs() == [
        "10.0.1.0/26",
        "10.0.1.72/29",
        "10.0.1.80/28",
        "10.0.1.96/27",
        "10.0.1.128/25",
    ]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(EDGE))
def test_parser_survives_mutations(text: str) -> None:
    survives("fortigate", text)


POLICIES = st.lists(
    st.tuples(
        st.sampled_from(["accept", "deny"]),
        st.integers(0, 255),
        st.integers(8, 24),
        st.booleans(),  # disabled
        st.booleans(),  # srcaddr-negate
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=50, deadline=None)
@given(POLICIES, st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20))
def test_generated_policies_agree_with_a_naive_walk(policies, probes) -> None:
    lines = ["config firewall address"]
    nets = []
    for index, (_, octet, plen, _, _) in enumerate(policies):
        net = ipaddress.IPv4Network((octet << 24, plen), strict=False)
        nets.append(net)
        lines += [f'    edit "n{index}"', f"        set subnet {net}", "    next"]
    lines += ["end", "config firewall policy"]
    for index, (action, _, _, disabled, negate) in enumerate(policies):
        lines += [
            f"    edit {100 - index}",
            '        set srcintf "any"',
            '        set dstintf "any"',
            f'        set srcaddr "n{index}"',
            '        set dstaddr "all"',
            f"        set action {action}",
            '        set service "SMTP"',
        ]
        if disabled:
            lines.append("        set status disable")
        if negate:
            lines.append("        set srcaddr-negate enable")
        lines.append("    next")
    lines.append("end")
    permitted = evaluate(parse("fortigate", "\n".join(lines)).policy, "192.0.2.1").permitted()
    for value in probes:
        address = ipaddress.IPv4Address(value)
        expected = False
        for (action, _, _, disabled, negate), net in zip(policies, nets, strict=True):
            if not disabled and (address in net) != negate:
                expected = action == "accept"
                break
        assert (address in permitted) == expected


ROUTED = """\
config system interface
    edit "port1"
        set ip 198.51.100.2 255.255.255.0
    next
    edit "port2"
        set ip 10.1.1.1 255.255.255.0
    next
end
config router static
    edit 1
        set gateway 198.51.100.1
        set device "port1"
    next
end
config firewall policy
    edit 1
        set srcintf "port2"
        set dstintf "port1"
        set srcaddr "all"
        set dstaddr "all"
        set action deny
        set service "ALL"
    next
    edit 2
        set srcintf "port1"
        set dstintf "port2"
        set srcaddr "all"
        set dstaddr "all"
        set action accept
        set service "SMTP"
    next
end
"""


def test_default_route_tells_the_internet_side() -> None:
    routed = parse("fortigate", ROUTED)
    assert routed.policy.inbound_interfaces == frozenset({"port1", "any"})
    assert set(v[0] for v in table(routed, "192.0.2.25").values()) == {"permitted"}
    # Without the route nothing says which side is outside: the outbound deny then counts.
    unrouted = parse("fortigate", ROUTED.replace('        set device "port1"\n', ""))
    assert unrouted.policy.inbound_interfaces is None
    assert set(v[0] for v in table(unrouted, "192.0.2.25").values()) == {"blocked"}


def test_policies_for_authenticated_users_never_match_exchange_online() -> None:
    text = SIMPLE.replace(
        '        set service "SMTP"\n',
        '        set service "SMTP"\n        set groups "VPN-Users"\n',
    )
    result = parse("fortigate", text)
    assert table(result, "198.51.100.25")["40.92.0.0/15"] == ("blocked", "40.92.0.0/15")


CENTRAL = """\
config system settings
    set central-nat enable
end
config firewall vip
    edit "VIP-SMTP"
        set extip 203.0.113.25
        set mappedip "10.0.0.25"
        set extintf "wan1"
        set portforward enable
        set extport 2525
        set mappedport 25
    next
end
config firewall address
    edit "exch01"
        set subnet 10.0.0.25 255.255.255.255
    next
    edit "EOP-40.92"
        set subnet 40.92.0.0 255.254.0.0
    next
end
config firewall policy
    edit 1
        set srcintf "wan1"
        set dstintf "internal"
        set srcaddr "EOP-40.92"
        set dstaddr "exch01"
        set action accept
        set service "SMTP"
    next
end
"""


def test_central_nat_policies_name_the_mapped_address() -> None:
    result = parse("fortigate", CENTRAL)
    assert result.policy.destination_view == DestinationView.POST_NAT
    verdicts = table(result, "203.0.113.25", port=2525)  # public 2525 -> inside 25
    assert verdicts["40.92.0.0/15"] == ("permitted",)
    assert verdicts["40.107.0.0/16"] == ("blocked", "40.107.0.0/16")
    remedy, _ = prove_remediation("fortigate", CENTRAL, "203.0.113.25", port=2525)
    assert any("append srcaddr" in line for line in remedy.lines)
