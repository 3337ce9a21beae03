"""Optional cleanup: every vendor names the objects that only hold retired EOP ranges."""

from __future__ import annotations

import test_allowlist as allow
import test_cisco_ios as ios
import test_fortigate as forti
import test_panos as pan
import test_pfsense as pf
import test_windows_firewall as win
from vendor_checks import EOP, parse, parser_for

from mailflow_doctor.firewall.evaluate import check_ranges
from mailflow_doctor.knowledge.ipranges import IPSet

RETIRED = IPSet.parse("65.55.88.0/24", "157.55.234.0/24")


def _cleanup(vendor: str, text: str, destination: str, published: tuple[str, ...] = EOP):
    result = parse(vendor, text)
    check = check_ranges(result.policy, destination, published, retired=RETIRED)
    assert check.stale_cidrs == ["65.55.88.0/24"]
    remedy = parser_for(vendor).remediate(text, result, check)
    assert remedy is not None
    return remedy


def test_allowlist() -> None:
    remedy = _cleanup("allowlist", allow.LIST, "192.0.2.25")
    assert remedy.cleanup == ("delete line 6: 65.55.88.0/24   # retired range, still here",)


def test_cisco_ios_group_entry_and_acl_entry() -> None:
    text = ios.GROUP_ONLY.replace(
        " 40.107.0.0 255.255.0.0\n", " 40.107.0.0 255.255.0.0\n 65.55.88.0 255.255.255.0\n"
    )
    remedy = _cleanup("cisco-ios", text, "198.51.100.25")
    assert remedy.cleanup == ("object-group network EOP-SMTP", " no 65.55.88.0 255.255.255.0")
    numbered = ios.NUMBERED + "access-list 101 permit tcp 65.55.88.0 0.0.0.255 any eq 25\n"
    numbered = numbered.replace("access-list 101 deny   ip any any\n", "") + (
        "access-list 101 deny   ip any any\n"
    )
    remedy = _cleanup("cisco-ios", numbered, "203.0.113.25")
    assert remedy.cleanup == ("ip access-list extended 101", " no 30")


def test_panos_group_member() -> None:
    text = pan.SET.replace(
        "set address-group EOP-inner static [ EOP-40.107 ]",
        "set address old-eop ip-netmask 65.55.88.0/24\n"
        "set address-group EOP-inner static [ EOP-40.107 old-eop ]",
    )
    remedy = _cleanup("panos", text, "203.0.113.25")
    assert remedy.cleanup == ("delete address-group EOP-inner static old-eop",)


def test_fortigate_group_member() -> None:
    text = forti.SIMPLE.replace(
        'config firewall addrgrp\n    edit "EOP-SMTP"\n        set member "EOP-40.92"',
        'config firewall addrgrp\n    edit "EOP-SMTP"\n        set member "EOP-40.92" "old"',
    ).replace(
        "config firewall address\n",
        'config firewall address\n    edit "old"\n        set subnet 65.55.88.0/24\n    next\n',
        1,
    )
    remedy = _cleanup("fortigate", text, "198.51.100.25")
    assert remedy.cleanup == (
        "config firewall addrgrp",
        '    edit "EOP-SMTP"',
        '        unselect member "old"',
        "    next",
        "end",
    )


def test_pfsense_alias_entry() -> None:
    text = pf.CONFIG.replace(
        "40.92.0.0/15 EOP_inner 52.100.0.0/15", "40.92.0.0/15 EOP_inner 65.55.88.0/24 52.100.0.0/15"
    )
    remedy = _cleanup("pfsense", text, "203.0.113.2")
    assert remedy.cleanup == (
        "alias EOP_SMTP: <address>40.92.0.0/15 EOP_inner 52.100.0.0/15 "
        "2a01:111:f400::/48</address>",
    )


def test_windows_allow_rule_entry_and_nothing_missing() -> None:
    text = win._block("SMTP", RemoteIP=",".join([*EOP, "65.55.88.0/24"]))
    remedy = _cleanup("windows-firewall", text, "192.0.2.25")
    assert remedy.lines == ()  # nothing is missing: only the optional cleanup
    assert remedy.cleanup == (
        'netsh advfirewall firewall set rule name="SMTP" new remoteip=' + ",".join(EOP),
    )
