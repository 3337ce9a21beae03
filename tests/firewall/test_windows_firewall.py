"""Windows Defender Firewall: netsh and PowerShell exports, block-wins, profiles, remediation."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vendor_checks import EOP, mutated, parse, prove_remediation, sniffed_as, survives, table

from mailflow_doctor.firewall.evaluate import check_ranges, evaluate
from mailflow_doctor.firewall.model import Combine
from mailflow_doctor.knowledge.ipranges import IPSet

PAD = " " * 38


def _block(name: str, **fields: str) -> str:
    values = {
        "Enabled": "Yes",
        "Direction": "In",
        "Profiles": "Domain,Private,Public",
        "Grouping": "",
        "LocalIP": "Any",
        "RemoteIP": "Any",
        "Protocol": "TCP",
        "LocalPort": "25",
        "RemotePort": "Any",
        "Edge traversal": "No",
        "Action": "Allow",
        **fields,
    }
    lines = [f"{'Rule Name:':<38}{name}", "-" * 70]
    for label, value in values.items():
        first, *rest = value.split("\n")
        lines.append(f"{label + ':':<38}{first}".rstrip())
        lines += [f"{PAD}{more}" for more in rest]
    return "\n".join(lines) + "\n\n"


NETSH = (
    "\n"
    + _block(
        "MSExchangeFrontendTransport (TCP-In)",
        RemoteIP="40.92.0.0/15,40.107.0.0/16,52.100.0.0/15,\n2a01:111:f400::/48",
    )
    + _block(
        "Block bad senders",
        Profiles="Domain",
        RemoteIP="104.47.0.0/18,198.51.100.0/24",
        Action="Block",
    )
    + _block("Old SMTP allow-all", Enabled="No")
    + _block("Public profile SMTP", Profiles="Public")
    + _block("Remote Desktop - User Mode (TCP-In)", LocalPort="3389")
    + _block("SMTP from Internet keyword", RemoteIP="Internet")
    + _block("Exchange secure", Action="Bypass")
    + _block("RPC endpoint", LocalPort="RPC-EPMap")
    + "Ok.\n"
)

JSON_EXPORT = json.dumps(
    [
        {
            "Name": "MSExchangeFrontendTransport-TCP-In",
            "DisplayName": "MSExchangeFrontendTransport (TCP-In)",
            "Enabled": 1,
            "Direction": 1,
            "Action": 2,
            "Profile": 0,
            "Protocol": "TCP",
            "LocalPort": "25",
            "RemotePort": "Any",
            "LocalAddress": "Any",
            "RemoteAddress": [
                "40.92.0.0/255.254.0.0",
                "40.107.0.0/255.255.0.0",
                "52.100.0.0/255.252.0.0",
            ],
        },
        {
            "Name": "{6d5b0c3e-1111-4c2e-9f0a-5b8e2e6f7a10}",
            "DisplayName": "Block SMTP from everyone else",
            "Enabled": "True",
            "Direction": "Inbound",
            "Action": "Block",
            "Profile": "Domain, Private",
            "Protocol": "TCP",
            "LocalPort": "25",
            "RemotePort": "Any",
            "LocalAddress": "Any",
            "RemoteAddress": "Any",
        },
    ],
    indent=4,
)

CSV_EXPORT = (
    "#TYPE System.Management.Automation.PSCustomObject\n"
    '"Name";"DisplayName";"Enabled";"Direction";"Action";"Profile";"Protocol";"LocalPort";'
    '"RemotePort";"LocalAddress";"RemoteAddress"\n'
    '"RDP";"Remote Desktop";"True";"Inbound";"Allow";"Any";"TCP";"3389";"Any";"Any";"Any"\n'
    '"Weird";"Array export";"True";"Inbound";"Allow";"Any";"TCP";"25";"Any";"Any";'
    '"System.Object[]"\n'
)

FORMAT_LIST = """\

DisplayName   : MSExchangeFrontendTransport (TCP-In)
Enabled       : True
Direction     : Inbound
Action        : Allow
Profile       : Any
Protocol      : TCP
LocalPort     : 25
RemoteAddress : {40.92.0.0/255.254.0.0, 40.107.0.0/255.255.0.0, 52.100.0.0/255.252.0.0,
                104.47.0.0/255.255.128.0...}

"""

SCRIPT = """\
: hardening script for EXCH01
netsh advfirewall firewall add rule name="SMTP from EOP" dir=in action=allow protocol=TCP \
localport=25 remoteip=40.92.0.0/15,40.107.0.0/16 profile=domain
netsh advfirewall firewall add rule name="SMTP temp" dir=in action=allow protocol=TCP localport=25
netsh advfirewall firewall delete rule name="SMTP temp"
"""


def test_netsh_verdicts_hand_checked() -> None:
    result = parse("windows-firewall", NETSH)
    policy = result.policy
    assert policy.combine == Combine.BLOCK_WINS
    assert policy.acl_name == "domain"
    assert not policy.default_deny_logged
    assert table(result, "192.0.2.25") == {
        "40.92.0.0/15": ("permitted",),
        "40.107.0.0/16": ("permitted",),
        "52.100.0.0/14": ("partial", "52.102.0.0/15"),
        "104.47.0.0/17": ("blocked", "104.47.0.0/17"),  # block rule + default block
    }
    check = check_ranges(policy, "192.0.2.25", EOP)
    notes = " ".join(check.notes) + " ".join(policy.notes)
    assert "Internet" in notes
    assert "IPsec" in notes
    assert "other profiles" in notes


def test_block_wins_over_an_earlier_allow() -> None:
    result = parse("windows-firewall", JSON_EXPORT)
    assert set(v[0] for v in table(result, "192.0.2.25").values()) == {"blocked"}


def test_profile_choice() -> None:
    public = parse("windows-firewall", NETSH, acl="public")
    # On the Public profile "Public profile SMTP" (any source) applies; the block rule does not.
    assert set(v[0] for v in table(public, "192.0.2.25").values()) == {"permitted"}


def test_ipv6_continuation_line() -> None:
    assert table(parse("windows-firewall", NETSH), "2001:db8::25") == {
        "2a01:111:f400::/48": ("permitted",),
        "2a01:111:f403::/48": ("blocked", "2a01:111:f403::/48"),
    }


def test_csv_and_format_list_pitfalls_become_issues() -> None:
    csv_result = parse("windows-firewall", CSV_EXPORT)
    assert [line for line, _ in csv_result.issues] == [4]
    listed = parse("windows-firewall", FORMAT_LIST)
    assert "FormatEnumerationLimit" in listed.issues[0][1]
    # what is visible is still used
    assert table(listed, "192.0.2.25")["104.47.0.0/17"] == ("permitted",)


def test_netsh_script_with_delete() -> None:
    result = parse("windows-firewall", SCRIPT)
    assert [r.name for r in result.policy.chains["inbound"].rules] == ["SMTP from EOP"]
    assert table(result, "192.0.2.25")["40.107.0.0/16"] == ("permitted",)


def test_sniffing() -> None:
    for text in (NETSH, JSON_EXPORT, CSV_EXPORT, FORMAT_LIST, SCRIPT):
        assert sniffed_as(text) == "windows-firewall"


def test_remediation_netsh_narrows_block_and_widens_allow() -> None:
    remedy, _ = prove_remediation("windows-firewall", NETSH, "192.0.2.25")
    assert remedy.lines == (
        'netsh advfirewall firewall set rule name="Block bad senders" new remoteip=198.51.100.0/24',
        'netsh advfirewall firewall set rule name="MSExchangeFrontendTransport (TCP-In)" new '
        "remoteip=40.92.0.0/15,40.107.0.0/16,52.100.0.0/15,2a01:111:f400::/48,"
        "52.102.0.0/15,104.47.0.0/17",
    )


def test_remediation_json_block_rule_with_any() -> None:
    remedy, _ = prove_remediation("windows-firewall", JSON_EXPORT, "192.0.2.25")
    assert remedy.lines[0].startswith(
        "Set-NetFirewallRule -DisplayName 'Block SMTP from everyone else' -RemoteAddress '0.0.0.0-"
    )
    assert remedy.lines[1] == (
        "Set-NetFirewallRule -DisplayName 'MSExchangeFrontendTransport (TCP-In)' -RemoteAddress "
        "'40.92.0.0/255.254.0.0','40.107.0.0/255.255.0.0','52.100.0.0/255.252.0.0',"
        "'104.47.0.0/17'"
    )


def test_remediation_csv_new_rule_and_script_and_list() -> None:
    remedy, _ = prove_remediation("windows-firewall", CSV_EXPORT, "192.0.2.25")
    assert remedy.lines[-1].startswith(
        "New-NetFirewallRule -DisplayName 'Exchange Online SMTP (mailflow-doctor)'"
    )
    script, _ = prove_remediation("windows-firewall", SCRIPT, "192.0.2.25")
    assert script.lines[0].startswith('netsh advfirewall firewall set rule name="SMTP from EOP"')
    full_list = FORMAT_LIST.replace("104.47.0.0/255.255.128.0...}", "198.51.100.0/255.255.255.0}")
    listed, _ = prove_remediation("windows-firewall", full_list, "192.0.2.25")
    assert listed.lines[0].endswith("'198.51.100.0/255.255.255.0','104.47.0.0/17'")
    prove_remediation("windows-firewall", NETSH, "2001:db8::25")


def test_samples_parse(samples: Path) -> None:
    files = sorted((samples / "firewall-configs").glob("windows_*"))
    assert files
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert sniffed_as(text) == "windows-firewall", path.name
        result = parse("windows-firewall", text)
        # the sample's only rule is outbound: nothing inbound is allowed
        assert not evaluate(result.policy, "192.0.2.25").permitted()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(NETSH))
def test_netsh_parser_survives_mutations(text: str) -> None:
    survives("windows-firewall", text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(JSON_EXPORT))
def test_json_parser_survives_mutations(text: str) -> None:
    survives("windows-firewall", text)


RULES = st.lists(
    st.tuples(
        st.sampled_from(["Allow", "Block"]),
        st.integers(0, 255),
        st.integers(8, 24),
        st.booleans(),  # enabled
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=50, deadline=None)
@given(RULES, st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20))
def test_generated_rules_agree_with_block_wins(rules, probes) -> None:
    nets = [ipaddress.IPv4Network((o << 24, p), strict=False) for _, o, p, _ in rules]
    text = "".join(
        _block(f"r{i}", Action=action, RemoteIP=str(net), Enabled="Yes" if on else "No")
        for i, ((action, _, _, on), net) in enumerate(zip(rules, nets, strict=True))
    )
    permitted = evaluate(parse("windows-firewall", text).policy, "192.0.2.1").permitted()
    for value in probes:
        address = ipaddress.IPv4Address(value)
        hits = [a for (a, _, _, on), n in zip(rules, nets, strict=True) if on and address in n]
        expected = bool(hits) and "Block" not in hits
        assert (address in permitted) == expected
    assert permitted.issubset(IPSet.all_v4())


def _profiles(domain_state: str, domain_log: str) -> str:
    sections = []
    for name, state, log in (
        ("Domain", domain_state, domain_log),
        ("Private", "ON", "Disable"),
        ("Public", "ON", "Disable"),
    ):
        sections.append(
            f"{name} Profile Settings:\n"
            + "-" * 70
            + f"\nState                                 {state}\n"
            "Firewall Policy                       BlockInbound,AllowOutbound\n"
            "LocalFirewallRules                    N/A (GPO-store only)\n\n"
            "Logging:\n"
            "LogAllowedConnections                 Disable\n"
            f"LogDroppedConnections                 {log}\n"
            "FileName                              %systemroot%\\system32\\LogFiles\\Firewall\\"
            "pfirewall.log\n"
            "MaxFileSize                           4096\n\n"
        )
    return "".join(sections) + "Ok.\n\n"


def test_allprofiles_output_sets_logging_and_state() -> None:
    logged = parse("windows-firewall", _profiles("ON", "Enable") + NETSH)
    assert logged.policy.default_deny_logged
    assert table(logged, "192.0.2.25")["104.47.0.0/17"][0] == "blocked"
    public = parse("windows-firewall", _profiles("ON", "Enable") + NETSH, acl="public")
    assert not public.policy.default_deny_logged
    off = parse("windows-firewall", _profiles("OFF", "Disable") + NETSH)
    assert set(v[0] for v in table(off, "192.0.2.25").values()) == {"permitted"}
    assert any("OFF" in note for note in off.policy.notes)


def test_rules_that_require_ipsec_never_match_exchange_online() -> None:
    text = _block("IPsec only SMTP", Security="AuthenticateEncrypt") + _block(
        "Some SMTP", RemoteIP="40.92.0.0/15"
    )
    verdicts = table(parse("windows-firewall", text), "192.0.2.25")
    assert verdicts["40.92.0.0/15"] == ("permitted",)
    assert verdicts["40.107.0.0/16"] == ("blocked", "40.107.0.0/16")


def test_remediation_when_the_block_rule_shows_no_remote_ip_line() -> None:
    text = _block("Allow SMTP", RemoteIP="40.92.0.0/15") + _block(
        "Block SMTP", Action="Block"
    ).replace(f"{'RemoteIP:':<38}Any\n", "")
    remedy, _ = prove_remediation("windows-firewall", text, "192.0.2.25")
    assert remedy.lines[0].startswith('netsh advfirewall firewall set rule name="Block SMTP"')


def test_remote_ip_forms() -> None:
    text = _block(
        "Mixed forms", RemoteIP="40.92.0.0-40.93.255.255,LocalSubnet,40.107.0.0/255.255.0.0,DNS"
    )
    verdicts = table(parse("windows-firewall", text), "192.0.2.25")
    assert verdicts["40.92.0.0/15"] == ("permitted",)  # a range
    assert verdicts["40.107.0.0/16"] == ("permitted",)  # address/mask
    assert verdicts["52.100.0.0/14"] == ("blocked", "52.100.0.0/14")  # keywords are local nets
