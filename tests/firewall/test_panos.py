"""PAN-OS: set, XML and brace formats; zones, NAT, EDLs, negation; samples; remediation."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vendor_checks import EOP, mutated, parse, prove_remediation, sniffed_as, survives, table

from mailflow_doctor.firewall.evaluate import check_ranges, evaluate
from mailflow_doctor.firewall.model import Action, DestinationView
from mailflow_doctor.knowledge.ipranges import IPSet

SET = """\
set deviceconfig system hostname pa-edge
set network interface ethernet ethernet1/1 layer3 ip 203.0.113.2/24
set network interface ethernet ethernet1/2 layer3 ip 10.0.0.1/24
set network interface ethernet ethernet1/3 layer3 ip 10.9.9.1/24
set zone untrust network layer3 ethernet1/1
set zone trust network layer3 ethernet1/2
set zone dmz network layer3 ethernet1/3
set address exch01 ip-netmask 10.0.0.25
set address exch01-public ip-netmask 203.0.113.25
set address exch01-v6 ip-netmask 2001:db8::25
set address EOP-40.92 ip-netmask 40.92.0.0/15
set address EOP-40.107 ip-netmask 40.107.0.0/16
set address EOP-52.100 ip-range 52.100.0.0-52.101.255.255
set address EOP6-f400 ip-netmask 2a01:111:f400::/48
set address outlook-fqdn fqdn mail.protection.outlook.com
set address-group EOP-inner static [ EOP-40.107 ]
set address-group EOP-SMTP static [ EOP-40.92 EOP-inner EOP-52.100 EOP6-f400 outlook-fqdn ]
set external-list M365-EDL type ip url https://example.invalid/eop.txt
set service tcp-25 protocol tcp port 25
set rulebase nat rules smtp-in from untrust
set rulebase nat rules smtp-in to untrust
set rulebase nat rules smtp-in source any
set rulebase nat rules smtp-in destination exch01-public
set rulebase nat rules smtp-in service tcp-25
set rulebase nat rules smtp-in destination-translation translated-address exch01
set rulebase security rules old-deny disabled yes
set rulebase security rules old-deny from untrust
set rulebase security rules old-deny to trust
set rulebase security rules old-deny source any
set rulebase security rules old-deny destination any
set rulebase security rules old-deny service any
set rulebase security rules old-deny application any
set rulebase security rules old-deny action deny
set rulebase security rules block-edl from untrust
set rulebase security rules block-edl to trust
set rulebase security rules block-edl source M365-EDL
set rulebase security rules block-edl destination any
set rulebase security rules block-edl service any
set rulebase security rules block-edl application any
set rulebase security rules block-edl action deny
set rulebase security rules deny-104 from untrust
set rulebase security rules deny-104 to trust
set rulebase security rules deny-104 source 104.47.0.0/18
set rulebase security rules deny-104 destination exch01-public
set rulebase security rules deny-104 service tcp-25
set rulebase security rules deny-104 application any
set rulebase security rules deny-104 action reset-client
set rulebase security rules smtp-to-dmz from untrust
set rulebase security rules smtp-to-dmz to dmz
set rulebase security rules smtp-to-dmz source any
set rulebase security rules smtp-to-dmz destination exch01-public
set rulebase security rules smtp-to-dmz service application-default
set rulebase security rules smtp-to-dmz application smtp
set rulebase security rules smtp-to-dmz action allow
set rulebase security rules allow-eop from untrust
set rulebase security rules allow-eop to trust
set rulebase security rules allow-eop source EOP-SMTP
set rulebase security rules allow-eop destination [ exch01-public exch01-v6 ]
set rulebase security rules allow-eop service application-default
set rulebase security rules allow-eop application [ smtp ]
set rulebase security rules allow-eop action allow
set rulebase security rules web-any from untrust
set rulebase security rules web-any to trust
set rulebase security rules web-any source any
set rulebase security rules web-any destination exch01-public
set rulebase security rules web-any service any
set rulebase security rules web-any application web-browsing
set rulebase security rules web-any action allow
set rulebase security rules not-52 from untrust
set rulebase security rules not-52 to trust
set rulebase security rules not-52 source 52.0.0.0/8
set rulebase security rules not-52 negate-source yes
set rulebase security rules not-52 destination exch01-public
set rulebase security rules not-52 service tcp-25
set rulebase security rules not-52 application any
set rulebase security rules not-52 action drop
"""

XML = """\
<?xml version="1.0"?>
<config version="10.2.0">
  <devices>
    <entry name="localhost.localdomain">
      <vsys>
        <entry name="vsys1">
          <address>
            <entry name="mail-public">
              <ip-netmask>198.51.100.25</ip-netmask>
            </entry>
            <entry name="EOP-40.92">
              <ip-netmask>40.92.0.0/15</ip-netmask>
            </entry>
          </address>
          <address-group>
            <entry name="EOP-SMTP">
              <static>
                <member>EOP-40.92</member>
              </static>
            </entry>
            <entry name="by-tag">
              <dynamic>
                <filter>'exo'</filter>
              </dynamic>
            </entry>
          </address-group>
          <rulebase>
            <security>
              <rules>
                <entry name="allow-eop">
                  <from><member>untrust</member></from>
                  <to><member>trust</member></to>
                  <source><member>EOP-SMTP</member></source>
                  <destination><member>mail-public</member></destination>
                  <service><member>application-default</member></service>
                  <application><member>smtp</member></application>
                  <action>allow</action>
                </entry>
                <entry name="tagged">
                  <from><member>untrust</member></from>
                  <to><member>trust</member></to>
                  <source><member>by-tag</member></source>
                  <destination><member>any</member></destination>
                  <service><member>any</member></service>
                  <application><member>any</member></application>
                  <action>allow</action>
                </entry>
                <entry name="deny-all">
                  <from><member>any</member></from>
                  <to><member>any</member></to>
                  <source><member>any</member></source>
                  <destination><member>any</member></destination>
                  <service><member>any</member></service>
                  <application><member>any</member></application>
                  <action>deny</action>
                  <log-end>yes</log-end>
                </entry>
              </rules>
            </security>
          </rulebase>
        </entry>
      </vsys>
    </entry>
  </devices>
</config>
"""


def test_set_format_verdicts_hand_checked() -> None:
    result = parse("panos", SET)
    policy = result.policy
    assert result.issues == ()
    assert policy.destination_view == DestinationView.PRE_NAT
    assert policy.inbound_interfaces == frozenset({"untrust", "any"})
    assert policy.smtp_hosts == ("203.0.113.25",)
    assert not policy.default_deny_logged
    assert table(result, "203.0.113.25") == {
        "40.92.0.0/15": ("permitted",),
        "40.107.0.0/16": ("permitted",),  # nested static group
        "52.100.0.0/14": ("partial", "52.102.0.0/15"),  # range object covers /15 only
        "104.47.0.0/17": ("blocked", "104.47.0.0/17"),  # reset-client, then negated drop
    }
    evaluation = evaluate(policy, "203.0.113.25")
    by_action = {d.action: d.sources.cidrs() for d in evaluation.decisions if not d.implicit}
    assert IPSet.parse("104.47.0.0/18").issubset(IPSet.parse(*by_action[Action.REJECT]))
    check = check_ranges(policy, "203.0.113.25", EOP)
    assert any("M365-EDL" in note and "skipped" in note for note in check.notes)
    assert any("outlook-fqdn" in note for note in policy.notes)


def test_ipv6_and_the_zone_after_nat() -> None:
    result = parse("panos", SET)
    assert table(result, "2001:db8::25") == {
        "2a01:111:f400::/48": ("permitted",),
        "2a01:111:f403::/48": ("blocked", "2a01:111:f403::/48"),
    }
    # smtp-to-dmz names the public address but NAT sends it to trust: it never matches.
    deciding = {
        o.text.split(":")[0]
        for d in evaluate(result.policy, "203.0.113.25").decisions
        if (o := d.origin) is not None
    }
    assert "rule smtp-to-dmz" not in deciding


def test_xml_format_dynamic_group_and_logged_deny() -> None:
    result = parse("panos", XML)
    assert result.policy.acl_name == "security"
    verdicts = table(result, "198.51.100.25")
    assert verdicts["40.92.0.0/15"] == ("permitted",)
    assert verdicts["40.107.0.0/16"] == ("blocked", "40.107.0.0/16")
    check = check_ranges(result.policy, "198.51.100.25", EOP)
    assert any("by-tag" in n and "dynamic address group" in n for n in check.notes)
    rule_lines = [r.origin.line for r in result.policy.chains["security"].rules]
    assert rule_lines == [30, 39, 48]


def test_sniffing() -> None:
    assert sniffed_as(SET) == "panos"
    assert sniffed_as(XML) == "panos"


def test_remediation_set_new_rule_before_the_blocker() -> None:
    remedy, _ = prove_remediation("panos", SET, "203.0.113.25")
    assert remedy.lines[-1] == "move rulebase security rules EXO-SMTP-in before deny-104"
    assert "set address EXO-104.47.0.0_17 ip-netmask 104.47.0.0/17" in remedy.lines


def test_remediation_set_extends_group_for_ipv6() -> None:
    remedy, _ = prove_remediation("panos", SET, "2001:db8::25")
    assert remedy.lines[-1] == "set address-group EOP-SMTP static [ EXO-2a01-111-f403--_48 ]"


def test_remediation_xml_extends_group() -> None:
    remedy, _ = prove_remediation("panos", XML, "198.51.100.25")
    assert remedy.lines[-1].startswith("set address-group EOP-SMTP static [ EXO-40.107.0.0_16")


def test_remediation_xml_new_rule_before_blocker() -> None:
    text = XML.replace(
        '<entry name="allow-eop">',
        '<entry name="early-deny">\n'
        "                  <source><member>40.107.0.0/16</member></source>\n"
        "                  <action>drop</action>\n"
        "                </entry>\n"
        '                <entry name="allow-eop">',
    )
    remedy, _ = prove_remediation("panos", text, "198.51.100.25")
    assert remedy.lines[-1] == "move rulebase security rules EXO-SMTP-in before early-deny"


def test_samples_parse(samples: Path) -> None:
    files = sorted((samples / "firewall-configs").glob("panos_*"))
    assert len(files) == 9
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert sniffed_as(text) == "panos", path.name
        parse("panos", text)
    rules = parse(
        "panos", (samples / "firewall-configs" / "panos_batfish_security-rules.cfg").read_text()
    )
    # z2 (10.0.2.0/24) is allowed TCP 1234; z3 (10.0.3.0/24) is blocked by BLOCK_TCP_1234.
    assert evaluate(rules.policy, "10.0.2.5", 1234).permitted() == IPSet.all_v4()
    assert not evaluate(rules.policy, "10.0.3.5", 1234).permitted()
    edl = parse(
        "panos", (samples / "firewall-configs" / "panos_batfish_external-list.cfg").read_text()
    )
    assert edl.policy.chains["security"].rules[0].unresolved == ("MY_LIST (external dynamic list)",)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(SET))
def test_set_parser_survives_mutations(text: str) -> None:
    survives("panos", text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(XML))
def test_xml_parser_survives_mutations(text: str) -> None:
    survives("panos", text)


RULES = st.lists(
    st.tuples(
        st.sampled_from(["allow", "deny", "drop", "reset-both"]),
        st.integers(0, 255),
        st.integers(8, 24),
        st.booleans(),  # negate-source
        st.booleans(),  # disabled
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=50, deadline=None)
@given(RULES, st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20))
def test_generated_rulebases_agree_with_a_naive_walk(rules, probes) -> None:
    lines = []
    nets = []
    for index, (action, octet, plen, negate, disabled) in enumerate(rules):
        net = ipaddress.IPv4Network((octet << 24, plen), strict=False)
        nets.append(net)
        prefix = f"set rulebase security rules r{index}"
        lines += [
            f"{prefix} from any",
            f"{prefix} to any",
            f"{prefix} source {net}",
            f"{prefix} destination any",
            f"{prefix} service any",
            f"{prefix} application any",
            f"{prefix} action {action}",
        ]
        if negate:
            lines.append(f"{prefix} negate-source yes")
        if disabled:
            lines.append(f"{prefix} disabled yes")
    permitted = evaluate(parse("panos", "\n".join(lines)).policy, "192.0.2.1").permitted()
    for value in probes:
        address = ipaddress.IPv4Address(value)
        expected = False
        for (action, _, _, negate, disabled), net in zip(rules, nets, strict=True):
            if not disabled and (address in net) != negate:
                expected = action == "allow"
                break
        assert (address in permitted) == expected


BARE_RULES = """\
set rulebase security rules inbound-smtp from untrust
set rulebase security rules inbound-smtp to dmz
set rulebase security rules inbound-smtp source [ 40.92.0.0/15 40.107.0.0/16 ]
set rulebase security rules inbound-smtp destination 198.51.100.25
set rulebase security rules inbound-smtp application any
set rulebase security rules inbound-smtp service service-smtp
set rulebase security rules inbound-smtp action allow
set rulebase security rules web from untrust
set rulebase security rules web to dmz
set rulebase security rules web source any
set rulebase security rules web destination 198.51.100.25
set rulebase security rules web application any
set rulebase security rules web service tcp-443
set rulebase security rules web action allow
"""


def test_bare_rules_without_objects() -> None:
    assert sniffed_as(BARE_RULES) == "panos"
    result = parse("panos", BARE_RULES)
    verdicts = table(result, "198.51.100.25")
    assert verdicts["40.107.0.0/16"] == ("permitted",)
    assert verdicts["52.100.0.0/14"] == ("blocked", "52.100.0.0/14")  # tcp-443 is not SMTP
    assert any("service-smtp is not defined" in note for note in result.policy.notes)
    remedy, _ = prove_remediation("panos", BARE_RULES, "198.51.100.25")
    assert remedy.lines[-1] == (
        "set rulebase security rules inbound-smtp source [ EXO-52.100.0.0_14 EXO-104.47.0.0_17 ]"
    )


PANORAMA = """\
set device-group branch post-rulebase security rules deny-all from any
set device-group branch post-rulebase security rules deny-all to any
set device-group branch post-rulebase security rules deny-all source any
set device-group branch post-rulebase security rules deny-all destination any
set device-group branch post-rulebase security rules deny-all service any
set device-group branch post-rulebase security rules deny-all application any
set device-group branch post-rulebase security rules deny-all action deny
set device-group branch pre-rulebase security rules eop from any
set device-group branch pre-rulebase security rules eop to any
set device-group branch pre-rulebase security rules eop source 40.92.0.0/15
set device-group branch pre-rulebase security rules eop destination any
set device-group branch pre-rulebase security rules eop service any
set device-group branch pre-rulebase security rules eop application any
set device-group branch pre-rulebase security rules eop action allow
"""


def test_panorama_pre_rules_come_before_post_rules() -> None:
    verdicts = table(parse("panos", PANORAMA), "198.51.100.25")
    assert verdicts["40.92.0.0/15"] == ("permitted",)
    assert verdicts["40.107.0.0/16"] == ("blocked", "40.107.0.0/16")


ROUTED = """\
set network interface ethernet ethernet1/1 layer3 ip 198.51.100.2/24
set network interface ethernet ethernet1/2 layer3 ip 10.1.1.1/24
set zone outer network layer3 ethernet1/1
set zone inner network layer3 ethernet1/2
set network virtual-router default routing-table ip static-route dflt destination 0.0.0.0/0
set network virtual-router default routing-table ip static-route dflt interface ethernet1/1
set rulebase security rules out-deny from inner
set rulebase security rules out-deny to outer
set rulebase security rules out-deny source any
set rulebase security rules out-deny destination any
set rulebase security rules out-deny service any
set rulebase security rules out-deny application any
set rulebase security rules out-deny action deny
set rulebase security rules in-smtp from outer
set rulebase security rules in-smtp to any
set rulebase security rules in-smtp source any
set rulebase security rules in-smtp destination 192.0.2.25
set rulebase security rules in-smtp service tcp-25
set rulebase security rules in-smtp application any
set rulebase security rules in-smtp action allow
"""


def test_default_route_tells_the_untrust_zone() -> None:
    routed = parse("panos", ROUTED)
    assert routed.policy.inbound_interfaces == frozenset({"outer", "any"})
    assert set(v[0] for v in table(routed, "192.0.2.25").values()) == {"permitted"}
    unrouted = parse("panos", ROUTED.replace("static-route dflt interface", "static-route x y"))
    assert set(v[0] for v in table(unrouted, "192.0.2.25").values()) == {"blocked"}


def test_rules_for_identified_users_never_match_exchange_online() -> None:
    text = BARE_RULES.replace(
        "set rulebase security rules inbound-smtp action allow",
        "set rulebase security rules inbound-smtp action allow\n"
        "set rulebase security rules inbound-smtp source-user [ corp\\\\mailadmins ]",
    )
    verdicts = table(parse("panos", text), "198.51.100.25")
    assert verdicts["40.92.0.0/15"] == ("blocked", "40.92.0.0/15")


def test_overridden_default_rules() -> None:
    logged = BARE_RULES + (
        "set rulebase default-security-rules rules interzone-default log-end yes\n"
    )
    result = parse("panos", logged)
    assert result.policy.default_deny_logged
    allowing = BARE_RULES + (
        "set rulebase default-security-rules rules interzone-default action allow\n"
    )
    verdicts = table(parse("panos", allowing), "198.51.100.25")
    assert set(v[0] for v in verdicts.values()) == {"permitted"}


def test_remediation_xml_for_a_host_no_rule_names_yet() -> None:
    remedy, _ = prove_remediation("panos", XML, "192.0.2.25")
    assert "set service service-smtp-mfd protocol tcp port 25" in remedy.lines
    assert remedy.lines[-1] == "move rulebase security rules EXO-SMTP-in before deny-all"


BRACE = """\
#RANCID-CONTENT-TYPE: paloalto
config {
  devices {
    localhost.localdomain {
      vsys {
        vsys1 {
          address {
            eop-40.92 {
              ip-netmask 40.92.0.0/15;
            }
            "mail server" {
              ip-netmask 198.51.100.25;
            }
          }
          address-group {
            EOP-SMTP {
              static [ eop-40.92 ];
            }
          }
          rulebase {
            security {
              rules {
                allow-eop {
                  from untrust;
                  to trust;
                  source EOP-SMTP;
                  destination "mail server";
                  service any;
                  application smtp;
                  action allow;
                }
              }
            }
          }
        }
      }
    }
  }
}
"""


def test_brace_format_and_its_remediation() -> None:
    assert sniffed_as(BRACE) == "panos"
    result = parse("panos", BRACE)
    verdicts = table(result, "198.51.100.25")
    assert verdicts["40.92.0.0/15"] == ("permitted",)
    assert verdicts["40.107.0.0/16"] == ("blocked", "40.107.0.0/16")
    remedy, _ = prove_remediation("panos", BRACE, "198.51.100.25")
    assert remedy.lines[-1].startswith("set address-group EOP-SMTP static [ EXO-40.107.0.0_16")
