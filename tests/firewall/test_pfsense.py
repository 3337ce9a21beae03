"""pfSense / OPNsense config.xml: rule order, aliases, NAT, floating rules, samples, remediation."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vendor_checks import EOP, mutated, parse, prove_remediation, sniffed_as, survives, table

from mailflow_doctor.firewall.evaluate import check_ranges, evaluate
from mailflow_doctor.firewall.model import Action, DestinationView
from mailflow_doctor.knowledge.ipranges import IPSet

CONFIG = """\
<?xml version="1.0"?>
<pfsense>
\t<version>23.3</version>
\t<interfaces>
\t\t<wan>
\t\t\t<enable></enable>
\t\t\t<if>igb0</if>
\t\t\t<ipaddr>203.0.113.2</ipaddr>
\t\t\t<subnet>24</subnet>
\t\t\t<ipaddrv6>2001:db8::2</ipaddrv6>
\t\t\t<subnetv6>64</subnetv6>
\t\t\t<blockpriv></blockpriv>
\t\t\t<blockbogons></blockbogons>
\t\t</wan>
\t\t<lan>
\t\t\t<if>igb1</if>
\t\t\t<ipaddr>10.0.0.1</ipaddr>
\t\t\t<subnet>24</subnet>
\t\t</lan>
\t</interfaces>
\t<aliases>
\t\t<alias>
\t\t\t<name>EOP_inner</name>
\t\t\t<type>network</type>
\t\t\t<address>40.107.0.0/16</address>
\t\t\t<descr></descr>
\t\t\t<detail><![CDATA[EOP]]></detail>
\t\t</alias>
\t\t<alias>
\t\t\t<name>EOP_SMTP</name>
\t\t\t<type>network</type>
\t\t\t<address>40.92.0.0/15 EOP_inner 52.100.0.0/15 2a01:111:f400::/48</address>
\t\t\t<descr><![CDATA[Exchange Online]]></descr>
\t\t\t<detail><![CDATA[a||b||c||d]]></detail>
\t\t</alias>
\t\t<alias>
\t\t\t<name>M365_feed</name>
\t\t\t<type>urltable</type>
\t\t\t<url>https://example.invalid/eop.txt</url>
\t\t\t<updatefreq>1</updatefreq>
\t\t\t<address></address>
\t\t</alias>
\t\t<alias>
\t\t\t<name>exch_hosts</name>
\t\t\t<type>host</type>
\t\t\t<address>10.0.0.25 2001:db8::25</address>
\t\t</alias>
\t\t<alias>
\t\t\t<name>mail_ports</name>
\t\t\t<type>port</type>
\t\t\t<address>25 587</address>
\t\t</alias>
\t</aliases>
\t<nat>
\t\t<rule>
\t\t\t<source><any></any></source>
\t\t\t<destination><network>wanip</network><port>25</port></destination>
\t\t\t<protocol>tcp</protocol>
\t\t\t<target>10.0.0.25</target>
\t\t\t<local-port>25</local-port>
\t\t\t<interface>wan</interface>
\t\t\t<descr><![CDATA[SMTP to Exchange]]></descr>
\t\t\t<associated-rule-id>nat_5f1</associated-rule-id>
\t\t</rule>
\t</nat>
\t<filter>
\t\t<rule>
\t\t\t<type>block</type>
\t\t\t<interface>wan,lan</interface>
\t\t\t<floating>yes</floating>
\t\t\t<quick>yes</quick>
\t\t\t<direction>in</direction>
\t\t\t<ipprotocol>inet</ipprotocol>
\t\t\t<protocol>tcp</protocol>
\t\t\t<source><address>104.47.0.0/18</address></source>
\t\t\t<destination><any></any></destination>
\t\t\t<descr><![CDATA[block 104.47 low]]></descr>
\t\t</rule>
\t\t<rule>
\t\t\t<type>pass</type>
\t\t\t<interface>wan</interface>
\t\t\t<ipprotocol>inet</ipprotocol>
\t\t\t<protocol>tcp</protocol>
\t\t\t<source><any></any></source>
\t\t\t<destination><address>10.0.0.25</address><port>25</port></destination>
\t\t\t<disabled></disabled>
\t\t\t<descr><![CDATA[old allow all]]></descr>
\t\t</rule>
\t\t<rule>
\t\t\t<type>pass</type>
\t\t\t<interface>wan</interface>
\t\t\t<ipprotocol>inet</ipprotocol>
\t\t\t<protocol>tcp</protocol>
\t\t\t<source><address>M365_feed</address></source>
\t\t\t<destination><address>10.0.0.25</address><port>25</port></destination>
\t\t\t<descr><![CDATA[feed]]></descr>
\t\t</rule>
\t\t<rule>
\t\t\t<type>pass</type>
\t\t\t<interface>wan</interface>
\t\t\t<ipprotocol>inet46</ipprotocol>
\t\t\t<protocol>tcp</protocol>
\t\t\t<source><address>EOP_SMTP</address></source>
\t\t\t<destination><address>exch_hosts</address><port>mail_ports</port></destination>
\t\t\t<associated-rule-id>nat_5f1</associated-rule-id>
\t\t\t<log></log>
\t\t\t<descr><![CDATA[NAT SMTP to Exchange]]></descr>
\t\t</rule>
\t\t<rule>
\t\t\t<type>reject</type>
\t\t\t<interface>wan</interface>
\t\t\t<ipprotocol>inet</ipprotocol>
\t\t\t<protocol>tcp</protocol>
\t\t\t<source><address>52.0.0.0/8</address><not></not></source>
\t\t\t<destination><address>exch_hosts</address><port>25</port></destination>
\t\t\t<descr><![CDATA[reject the rest]]></descr>
\t\t</rule>
\t\t<rule>
\t\t\t<type>block</type>
\t\t\t<interface>wan</interface>
\t\t\t<floating>yes</floating>
\t\t\t<direction>any</direction>
\t\t\t<ipprotocol>inet</ipprotocol>
\t\t\t<source><address>52.102.0.0/15</address></source>
\t\t\t<destination><any></any></destination>
\t\t\t<descr><![CDATA[floating block, not quick]]></descr>
\t\t</rule>
\t\t<rule>
\t\t\t<type>pass</type>
\t\t\t<interface>wan</interface>
\t\t\t<floating>yes</floating>
\t\t\t<direction>in</direction>
\t\t\t<ipprotocol>inet</ipprotocol>
\t\t\t<source><address>52.102.0.0/16</address></source>
\t\t\t<destination><any></any></destination>
\t\t\t<descr><![CDATA[floating pass, not quick, last match wins]]></descr>
\t\t</rule>
\t</filter>
</pfsense>
"""

SIMPLE = """\
<?xml version="1.0"?>
<opnsense>
  <interfaces>
    <wan><if>vtnet0</if><ipaddr>dhcp</ipaddr></wan>
  </interfaces>
  <aliases/>
  <syslog><nologdefaultblock>1</nologdefaultblock></syslog>
  <filter>
    <rule>
      <type>pass</type>
      <interface>wan</interface>
      <ipprotocol>inet</ipprotocol>
      <protocol>tcp</protocol>
      <source><address>40.92.0.0/15</address></source>
      <destination><address>192.168.50.25</address><port>25</port></destination>
    </rule>
  </filter>
</opnsense>
"""


def test_verdicts_hand_checked() -> None:
    result = parse("pfsense", CONFIG)
    policy = result.policy
    assert result.issues == ()
    assert policy.destination_view == DestinationView.POST_NAT
    assert policy.smtp_hosts == ("203.0.113.2",)
    assert policy.default_deny_logged
    assert table(result, "203.0.113.2") == {
        "40.92.0.0/15": ("permitted",),
        "40.107.0.0/16": ("permitted",),  # nested alias
        "52.100.0.0/14": ("partial", "52.103.0.0/16"),  # non-quick floating: last match wins
        "104.47.0.0/17": ("blocked", "104.47.0.0/17"),  # floating quick block, negated reject
    }
    evaluation = evaluate(policy, "203.0.113.2")
    assert evaluation.effective_destination == "10.0.0.25"
    actions = {d.action for d in evaluation.deciding(IPSet.parse("104.47.0.0/17"))}
    assert actions == {Action.DENY, Action.REJECT}
    check = check_ranges(policy, "203.0.113.2", EOP)
    assert any("M365_feed (urltable alias)" in note for note in check.notes)


def test_ipv6_and_private_sources() -> None:
    result = parse("pfsense", CONFIG)
    assert table(result, "2001:db8::25") == {
        "2a01:111:f400::/48": ("permitted",),
        "2a01:111:f403::/48": ("blocked", "2a01:111:f403::/48"),
    }
    assert "10.1.2.3" not in evaluate(result.policy, "203.0.113.2").permitted()  # blockpriv


def test_opnsense_dhcp_wan_and_unlogged_default() -> None:
    result = parse("pfsense", SIMPLE)
    assert not result.policy.default_deny_logged
    assert table(result, "192.168.50.25")["40.92.0.0/15"] == ("permitted",)
    assert sniffed_as(SIMPLE) == "pfsense"


def test_remediation_floating_blocker() -> None:
    remedy, _ = prove_remediation("pfsense", CONFIG, "203.0.113.2")
    assert "  <floating>yes</floating>" in remedy.lines
    assert "  <address>52.103.0.0/16 104.47.0.0/17</address>" in remedy.lines


def test_remediation_extends_alias_for_ipv6() -> None:
    remedy, _ = prove_remediation("pfsense", CONFIG, "2001:db8::25")
    assert remedy.lines == (
        "<address>40.92.0.0/15 EOP_inner 52.100.0.0/15 2a01:111:f400::/48 "
        "2a01:111:f403::/48</address>",
    )


def test_remediation_with_empty_aliases() -> None:
    remedy, _ = prove_remediation("pfsense", SIMPLE, "192.168.50.25")
    assert remedy.patched_text is not None
    assert "<name>EXO_SMTP_mailflow_doctor</name>" in remedy.patched_text


def test_samples_parse(samples: Path) -> None:
    files = sorted((samples / "firewall-configs").glob("pfsense_*"))
    assert len(files) == 2
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert sniffed_as(text) == "pfsense", path.name
        result = parse("pfsense", text)
        assert result.policy.rule_count() > 0
    rules = parse(
        "pfsense",
        (samples / "firewall-configs" / "pfsense_config_pfsensible_rule_config.xml").read_text(),
    )
    # "test_rule" passes TCP from any to any on WAN; the port forward maps wanip:22022 -> :22
    assert evaluate(rules.policy, "198.51.100.9", 25).permitted() == IPSet.all_v4()
    forwarded = evaluate(rules.policy, "192.168.240.137", 22022)
    assert forwarded.effective_destination == "10.255.1.20"
    assert forwarded.nat_origin is not None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(CONFIG))
def test_parser_survives_mutations(text: str) -> None:
    survives("pfsense", text)


RULES = st.lists(
    st.tuples(
        st.sampled_from(["pass", "block", "reject"]),
        st.integers(0, 255),
        st.integers(8, 24),
        st.booleans(),  # <not/>
        st.booleans(),  # disabled
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=50, deadline=None)
@given(RULES, st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20))
def test_generated_rules_agree_with_a_naive_walk(rules, probes) -> None:
    body = []
    nets = []
    for kind, octet, plen, negate, disabled in rules:
        net = ipaddress.IPv4Network((octet << 24, plen), strict=False)
        nets.append(net)
        body.append(
            f"<rule><type>{kind}</type><interface>wan</interface><protocol>tcp</protocol>"
            f"<source><address>{net}</address>{'<not/>' if negate else ''}</source>"
            f"<destination><any/><port>25</port></destination>"
            f"{'<disabled/>' if disabled else ''}</rule>"
        )
    text = "<pfsense><filter>" + "\n".join(body) + "</filter></pfsense>"
    permitted = evaluate(parse("pfsense", text).policy, "192.0.2.1").permitted()
    for value in probes:
        address = ipaddress.IPv4Address(value)
        expected = False
        for (kind, _, _, negate, disabled), net in zip(rules, nets, strict=True):
            if not disabled and (address in net) != negate:
                expected = kind == "pass"
                break
        assert (address in permitted) == expected


FRAGMENT = """\
<rule>
    <type>pass</type>
    <interface>wan</interface>
    <protocol>tcp</protocol>
    <source><address>40.92.0.0/15</address></source>
    <destination><address>10.0.0.25</address><port>25</port></destination>
</rule>
<rule>
    <type>block</type>
    <interface>wan</interface>
    <source><address>40.107.0.0/16</address></source>
    <destination><any/></destination>
</rule>
"""


def test_pasted_rules_without_the_rest_of_config_xml() -> None:
    assert sniffed_as(FRAGMENT) == "pfsense"
    result = parse("pfsense", FRAGMENT)
    verdicts = table(result, "10.0.0.25")
    assert verdicts["40.92.0.0/15"] == ("permitted",)
    assert verdicts["40.107.0.0/16"] == ("blocked", "40.107.0.0/16")
    assert [r.origin.line for r in result.policy.chains["wan"].rules] == [1, 8]
    prove_remediation("pfsense", FRAGMENT, "10.0.0.25")


def test_default_block_logging_switch_differs_between_pfsense_and_opnsense() -> None:
    empty_switch = "<syslog><nologdefaultblock></nologdefaultblock></syslog>"
    pf = CONFIG.replace("\t<filter>", f"\t{empty_switch}\n\t<filter>", 1)
    assert not parse("pfsense", pf).policy.default_deny_logged  # isset() on pfSense
    opn = SIMPLE.replace("<nologdefaultblock>1</nologdefaultblock>", "<nologdefaultblock/>")
    assert parse("pfsense", opn).policy.default_deny_logged  # empty() on OPNsense


def test_port_forward_set_to_pass_needs_no_filter_rule() -> None:
    text = CONFIG.replace(
        "<associated-rule-id>nat_5f1</associated-rule-id>\n\t\t</rule>\n\t</nat>",
        "<associated-rule-id>pass</associated-rule-id>\n\t\t</rule>\n\t</nat>",
    )
    verdicts = table(parse("pfsense", text), "203.0.113.2")
    # rdr pass: every source not blocked by blockpriv reaches 10.0.0.25:25
    assert verdicts["104.47.0.0/17"] == ("permitted",)
    assert verdicts["52.100.0.0/14"] == ("permitted",)


def test_remediation_when_config_xml_has_no_filter_rules_yet() -> None:
    text = SIMPLE.split("  <filter>")[0] + "</opnsense>\n"
    assert set(v[0] for v in table(parse("pfsense", text), "192.168.50.25").values()) == {"blocked"}
    remedy, _ = prove_remediation("pfsense", text, "192.168.50.25")
    assert remedy.patched_text is not None
    assert "<filter>" in remedy.patched_text
