"""Defects found by running the whole tool over a mixed folder, as an admin at 2 a.m. would.

Each test builds its own realistic input: an evidence folder that also holds a README, a zip
with hostile member names, an ASA configuration whose ACL cannot be chosen, and message
traces of two unrelated organisations from different years.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from rich.console import Console

from mailflow_doctor.diagnose.bundle import collect
from mailflow_doctor.diagnose.engine import Diagnosis, diagnose
from mailflow_doctor.firewall.registry import best_parser, parsers
from mailflow_doctor.knowledge.endpoints import load_bundled
from mailflow_doctor.report import html, markdown, terminal

README = """\
# Evidence we collected for ticket 48213

| file | what it is |
|---|---|
| `fw/rules.cmd` | the `netsh advfirewall firewall add rule name=SMTP remoteip=40.107.0.0/16 \
localport=25 protocol=tcp action=allow` line we ran on EX01 |
| `fw/nft.txt` | `table inet filter { chain input { type filter hook input priority 0; \
policy drop; } }` from the relay |
| `fw/config.xml` | pfSense `config.xml` with `<filter>`, each `<rule>` has an `<interface>` |
"""

NETSH_SCRIPT = """\
@echo off
rem SMTP from Exchange Online to EX01
netsh advfirewall firewall add rule name="SMTP from EOP" dir=in action=allow protocol=TCP \
localport=25 remoteip=40.92.0.0/15,40.107.0.0/16,52.100.0.0/14,104.47.0.0/17
"""

PROMPT_SESSION = """\
C:\\Windows\\system32> netsh advfirewall firewall add rule name="SMTP" dir=in action=allow \
protocol=TCP localport=25 remoteip=40.107.0.0/16
Ok.
"""

ASA_TWO_ACLS = """\
ASA Version 9.8(2)
hostname edge-fw
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 198.51.100.2 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 10.1.1.1 255.255.255.0
access-list SMTP_IN extended permit tcp 40.107.0.0 255.255.0.0 host 10.1.1.25 eq smtp
access-list MGMT_IN extended permit tcp host 192.0.2.10 host 10.1.1.1 eq ssh
"""

RECV_LOG = """\
#Software: Microsoft Exchange Server
#Version: 15.02.1544.004
#Log-type: SMTP Receive Protocol Log
#Date: 2026-11-28T10:00:00.000Z
#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,\
event,data,context
2026-11-28T10:00:01.000Z,EX01\\Default Frontend EX01,08DE0A0B0C0D0E0F,0,10.1.1.25:25,\
40.107.12.34:40312,+,,
"""


def _ndr(when: str, lrt: str, host: str, ip: str, code: str, message: str) -> str:
    return (
        "Diagnostic information for administrators:\n\n"
        "Generating server: AM6PR04MB5000.eurprd04.prod.outlook.com\n\n"
        f"{lrt} - Server at {host} ({ip}) returned '450 {code} {message} "
        f"[LastAttemptedServerName={host}] [LastAttemptedIP={ip}:25] [SmtpSecurity=-2;-2] "
        f"[AM6EUR05FT041.eop-eur05.prod.protection.outlook.com {when} 08DE2F1A13030000]'\n"
    )


def run(*paths: Path) -> Diagnosis:
    return diagnose(collect(list(paths), load_bundled()))


def test_a_readme_that_quotes_firewall_lines_is_not_read_as_a_firewall(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")
    scores = {vendor: parser.sniff(README) for vendor, parser in parsers().items()}
    assert scores == dict.fromkeys(scores, 0)
    result = run(readme)
    assert [e.kind for e in result.evidence] == ["unrecognised"]
    assert not any(f.id.startswith("firewall.") for f in result.findings)


def test_netsh_in_command_position_is_still_recognised() -> None:
    for text in (NETSH_SCRIPT, PROMPT_SESSION):
        parser, score = best_parser(text)
        assert parser is not None, text
        assert parser.vendor == "windows-firewall", text
        assert score >= 50


def test_every_unsafe_zip_member_is_reported(tmp_path: Path) -> None:
    bundle = tmp_path / "evidence.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("../../outside.txt", "x")
        archive.writestr("/etc/cron.d/evil", "x")
        archive.writestr("logs\\..\\..\\win.txt", "x")
        archive.writestr("logs/RECV2026112810-1.LOG", RECV_LOG)
    result = run(bundle)
    container = [e for e in result.evidence if e.kind == "container"]
    assert len(container) == 1
    warnings = "\n".join(container[0].warnings)
    for name in ("../../outside.txt", "/etc/cron.d/evil", "win.txt"):
        assert name in warnings
    assert any(e.kind == "exchange.smtp_receive" for e in result.evidence)


def test_a_firewall_warning_names_the_file_once(tmp_path: Path) -> None:
    config = tmp_path / "edge-fw.cfg"
    config.write_text(ASA_TWO_ACLS, encoding="utf-8")
    result = run(config)
    (entry,) = result.evidence
    assert entry.kind == "firewall.cisco-asa"
    assert entry.warnings, "the ambiguous ACL choice must be reported"
    assert all(str(config) not in w for w in entry.warnings), entry.warnings
    assert any("--acl" in w for w in entry.warnings)


def test_traces_of_unrelated_incidents_name_no_root_cause(tmp_path: Path) -> None:
    (tmp_path / "ndr_2021.txt").write_text(
        _ndr(
            "2021-03-02T08:15:00.000Z",
            "3/2/2021 8:15:00 AM",
            "mail.fabrikam.com",
            "203.0.113.25",
            "4.4.316",
            "Connection refused [Message=Socket error code 10061]",
        ),
        encoding="utf-8",
    )
    (tmp_path / "ndr_2026.txt").write_text(
        _ndr(
            "2026-11-28T13:03:00.000Z",
            "11/28/2026 1:03:00 PM",
            "smtp.tailspintoys.ca",
            "198.51.100.77",
            "4.4.317",
            "Cannot connect to remote server [Message=451 5.7.3 STARTTLS is required to send mail]",
        ),
        encoding="utf-8",
    )
    result = run(tmp_path)
    assert result.root_cause is None
    mixed = result.finding("evidence.mixed_sources")
    assert mixed is not None
    assert "90 days" in mixed.summary
    candidates = [f for f in result.findings if f.can_be_root_cause]
    assert candidates
    assert all("one outage" in f.ruled_out for f in candidates)


def test_one_incident_keeps_its_root_cause(tmp_path: Path) -> None:
    for minute in (3, 23, 43):
        (tmp_path / f"ndr_{minute}.txt").write_text(
            _ndr(
                f"2026-11-28T13:{minute:02d}:00.000Z",
                f"11/28/2026 1:{minute:02d}:00 PM",
                "smtp.tailspintoys.ca",
                "203.0.113.25",
                "4.4.316",
                "Connection refused [Message=Socket error code 10061]",
            ),
            encoding="utf-8",
        )
    result = run(tmp_path)
    assert result.finding("evidence.mixed_sources") is None


IPTABLES_HOST = """\
# Generated by iptables-save v1.8.9 on Fri Nov 27 22:10:01 2026
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -s 40.107.0.0/16 -p tcp -m tcp --dport 25 -j ACCEPT
-A INPUT -s 104.47.0.0/17 -p tcp -m tcp --dport 25 -j ACCEPT
COMMIT
# Completed on Fri Nov 27 22:10:01 2026
"""


def test_one_policy_gives_one_finding_for_every_address_tried(tmp_path: Path) -> None:
    (tmp_path / "iptables-save.txt").write_text(IPTABLES_HOST, encoding="utf-8")
    for n, ip in enumerate(("203.0.113.25", "203.0.113.26", "203.0.113.27")):
        (tmp_path / f"ndr_{n}.txt").write_text(
            _ndr(
                f"2026-11-28T13:0{n}:00.000Z",
                f"11/28/2026 1:0{n}:00 PM",
                f"mx{n}.tailspintoys.ca",
                ip,
                "4.4.316",
                "Connection refused [Message=Socket error code 10061]",
            ),
            encoding="utf-8",
        )
    result = run(tmp_path)
    blocked = [f for f in result.findings if f.id == "firewall.eop_ranges_blocked"]
    assert len(blocked) == 1, [f.data.get("destination") for f in blocked]
    (finding,) = blocked
    assert finding.data["missing_ranges"] == ["40.92.0.0/15", "52.100.0.0/14"]
    assert sorted(finding.data["destinations"]) == [
        "203.0.113.25",
        "203.0.113.26",
        "203.0.113.27",
    ]
    assert "2 other addresses" in finding.summary


def _two_incidents(folder: Path) -> Diagnosis:
    for n, (when, lrt, host, ip) in enumerate(
        (
            (
                "2021-03-02T08:15:00.000Z",
                "3/2/2021 8:15:00 AM",
                "mail.fabrikam.com",
                "203.0.113.25",
            ),
            (
                "2026-11-28T13:03:00.000Z",
                "11/28/2026 1:03:00 PM",
                "mx.tailspintoys.ca",
                "198.51.100.7",
            ),
        )
    ):
        (folder / f"ndr_{n}.txt").write_text(
            _ndr(
                when,
                lrt,
                host,
                ip,
                "4.4.316",
                "Connection refused [Message=Socket error code 10061]",
            ),
            encoding="utf-8",
        )
    return run(folder)


def test_every_report_says_why_no_root_cause_is_named(tmp_path: Path) -> None:
    result = _two_incidents(tmp_path)
    assert result.root_cause is None
    console = Console(width=80, record=True, color_system=None)
    terminal.render(result, console)
    text = console.export_text()
    verdict = text.split("╰")[0]
    assert "unrelated incidents" in verdict
    assert "90 days" in verdict
    assert "unrelated incidents" in markdown.render(result).split("## Findings")[0]
    assert "unrelated incidents" in html.render(result).split("Findings (")[0]


def test_a_corroborating_sentence_is_said_once(tmp_path: Path) -> None:
    for n in range(3):
        (tmp_path / f"ndr_{n}.txt").write_text(
            _ndr(
                f"2026-11-28T13:0{n}:00.000Z",
                f"11/28/2026 1:0{n}:00 PM",
                "mx.tailspintoys.ca",
                "198.51.100.7",
                "4.4.316",
                "Connection refused [Message=Socket error code 10061]",
            ),
            encoding="utf-8",
        )
    (tmp_path / "edge.cfg").write_text(
        ASA_TWO_ACLS.replace(
            "access-list MGMT_IN",
            "access-group SMTP_IN in interface outside\n"
            "object network EX01\n host 10.1.1.25\n nat (inside,outside) "
            "static 203.0.113.25 service tcp smtp smtp\naccess-list MGMT_IN",
        ),
        encoding="utf-8",
    )
    result = run(tmp_path)
    for finding in result.findings:
        for key in ("corroboration", "contradiction"):
            texts = finding.data.get(key, [])
            assert len(texts) == len(set(texts)), (finding.id, texts)


ENDPOINTS_JSON = """\
[
  {
    "id": 1,
    "serviceArea": "Exchange",
    "serviceAreaDisplayName": "Exchange Online",
    "urls": ["outlook.office.com", "outlook.office365.com"],
    "ips": ["13.107.6.152/31", "2603:1006::/40"],
    "tcpPorts": "80,443",
    "expressRoute": true,
    "category": "Optimize",
    "required": true
  },
  {
    "id": 10,
    "serviceArea": "Exchange",
    "serviceAreaDisplayName": "Exchange Online",
    "urls": ["*.mail.protection.outlook.com"],
    "ips": ["40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17"],
    "tcpPorts": "25",
    "expressRoute": false,
    "category": "Allow",
    "required": false
  }
]
"""

TRACE_JSON = """\
[
  {
    "Received": "2026-11-28T13:03:00",
    "SenderAddress": "ana.ruiz@fabrikam.com",
    "RecipientAddress": "sales@tailspintoys.ca",
    "Subject": "Order 4471",
    "Status": "Pending",
    "ToIP": null,
    "FromIP": "198.51.100.40",
    "Size": 48213,
    "MessageId": "<DB9PR04MB7300@eurprd04.prod.outlook.com>",
    "MessageTraceId": "7e2a0000-5b1c-4d3e-8f9a-0b1c2d3e0000"
  }
]
"""


def test_an_endpoints_list_in_the_folder_is_named_for_what_it_is(tmp_path: Path) -> None:
    saved = tmp_path / "endpoints.json"
    # As PowerShell's Out-File writes it: UTF-16LE with a BOM, CRLF.
    saved.write_bytes(b"\xff\xfe" + ENDPOINTS_JSON.replace("\n", "\r\n").encode("utf-16-le"))
    (tmp_path / "trace.json").write_text(TRACE_JSON, encoding="utf-8")
    result = run(tmp_path)
    kinds = {Path(e.path).name: e for e in result.evidence}
    assert kinds["endpoints.json"].kind == "endpoints.m365"
    assert any("--endpoints" in w for w in kinds["endpoints.json"].warnings)
    assert kinds["trace.json"].kind != "endpoints.m365"


ASA_NAT = """\
ASA Version 9.8(2)
hostname edge-fw
interface GigabitEthernet0/0
 nameif outside
 security-level 0
 ip address 198.51.100.2 255.255.255.0
interface GigabitEthernet0/1
 nameif inside
 security-level 100
 ip address 10.1.1.1 255.255.255.0
object network EX01
 host 10.1.1.25
 nat (inside,outside) static {public} service tcp smtp smtp
access-list OUTSIDE_IN extended permit tcp any host 10.1.1.25 eq smtp
access-group OUTSIDE_IN in interface outside
"""


def _refused_to(folder: Path, host: str, ip: str) -> None:
    for n in range(3):
        (folder / f"ndr_{n}.txt").write_text(
            _ndr(
                f"2026-11-28T13:0{n}:00.000Z",
                f"11/28/2026 1:0{n}:00 PM",
                host,
                ip,
                "4.4.316",
                "Connection refused [Message=Socket error code 10061]",
            ),
            encoding="utf-8",
        )


def test_an_ip_smart_host_is_not_told_to_update_an_a_record(tmp_path: Path) -> None:
    _refused_to(tmp_path, "198.51.100.77", "198.51.100.77")
    (tmp_path / "edge.cfg").write_text(ASA_NAT.format(public="203.0.113.25"), encoding="utf-8")
    mismatch = run(tmp_path).finding("dns.target_mismatch")
    assert mismatch is not None
    assert "A record of 198.51.100.77" not in " ".join(mismatch.remediation)
    assert "-SmartHosts 203.0.113.25" in mismatch.remediation[0]
    assert "(198.51.100.77)" not in mismatch.summary


def test_a_nat_to_a_private_address_is_not_the_endpoint_eop_should_use(tmp_path: Path) -> None:
    _refused_to(tmp_path, "mail.tailspintoys.ca", "203.0.113.25")
    (tmp_path / "core.cfg").write_text(ASA_NAT.format(public="192.168.50.25"), encoding="utf-8")
    assert run(tmp_path).finding("dns.target_mismatch") is None
