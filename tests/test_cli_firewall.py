"""`mailflow-doctor firewall check` as an admin runs it: files, pasted ACLs, JSON, exit codes."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mailflow_doctor.cli import app

EXE = Path(sys.executable).parent / "mailflow-doctor"

ASA = """\
ASA Version 9.16(4)
hostname tt-edge-fw01
interface GigabitEthernet1/1
 nameif outside
 security-level 0
 ip address 203.0.113.2 255.255.255.0
interface GigabitEthernet1/2
 nameif inside
 security-level 100
 ip address 10.0.0.1 255.255.255.0
object network EXCH
 host 10.0.0.25
object-group network EOP
 network-object 40.92.0.0 255.254.0.0
 network-object 52.100.0.0 255.254.0.0
 network-object 104.47.0.0 255.255.128.0
 network-object 65.55.88.0 255.255.255.0
access-list OUTSIDE_IN remark inbound mail from Exchange Online [EOP]
access-list OUTSIDE_IN extended permit tcp object-group EOP object EXCH eq smtp
access-list OUTSIDE_IN extended deny ip any any log
object network EXCH
 nat (inside,outside) static 203.0.113.25
access-group OUTSIDE_IN in interface outside
"""
MISSING = ["40.107.0.0/16", "52.102.0.0/15"]

CONTRACT_KEYS = {
    "vendor",
    "to",
    "port",
    "acl",
    "endpoints",
    "ranges",
    "missing_ranges",
    "stale_ranges",
}


def invoke(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, ["firewall", "check", *args], input=stdin)


def write(tmp_path: Path, text: str, name: str = "asa.cfg") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def assert_contract(doc: dict[str, Any]) -> None:
    """The "firewall check" section of the output contract."""
    assert set(doc) >= CONTRACT_KEYS
    assert set(doc["endpoints"]) == {"source", "version"}
    assert isinstance(doc["port"], int)
    union: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for entry in doc["ranges"]:
        assert set(entry) == {"range", "verdict", "permitted", "blocked", "deciding_rules"}
        assert entry["verdict"] in {"permitted", "partial", "blocked"}
        whole = ipaddress.ip_network(entry["range"])
        parts = [ipaddress.ip_network(c) for c in entry["permitted"] + entry["blocked"]]
        assert sum(p.num_addresses for p in parts) == whole.num_addresses
        assert all(p.subnet_of(whole) for p in parts)  # type: ignore[arg-type]
        for key in ("permitted", "blocked"):
            collapsed = [
                str(n)
                for n in ipaddress.collapse_addresses(ipaddress.ip_network(c) for c in entry[key])
            ]
            assert entry[key] == collapsed
        assert entry["verdict"] == (
            "permitted"
            if not entry["blocked"]
            else "blocked"
            if not entry["permitted"]
            else "partial"
        )
        for rule in entry["deciding_rules"]:
            assert set(rule) == {"path", "line", "text"}
        union.update(ipaddress.ip_network(c) for c in entry["blocked"])
    expected = [str(n) for n in ipaddress.collapse_addresses(sorted(union))]  # type: ignore[type-var]
    assert doc["missing_ranges"] == expected


def test_json_per_contract_with_gaps_exit_1(tmp_path: Path) -> None:
    config = write(tmp_path, ASA)
    result = invoke(str(config), "--format", "json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert_contract(doc)
    assert doc["vendor"] == "cisco-asa"
    assert doc["to"] == "203.0.113.25"
    assert doc["port"] == 25
    assert doc["acl"] == "OUTSIDE_IN"
    assert doc["endpoints"]["source"] == "bundled"
    assert doc["missing_ranges"] == MISSING
    assert doc["stale_ranges"] == ["65.55.88.0/24"]
    assert doc["destination_in_rules"] == "10.0.0.25"
    blocked = {r["range"]: r for r in doc["ranges"]}["40.107.0.0/16"]
    assert blocked["deciding_rules"] == [
        {
            "path": str(config),
            "line": 20,
            "text": "access-list OUTSIDE_IN extended deny ip any any log",
        }
    ]
    assert doc["remediation"]["verified"] is True
    assert doc["remediation"]["lines"] == [
        "object-group network EOP",
        " network-object 40.107.0.0 255.255.0.0",
        " network-object 52.102.0.0 255.254.0.0",
    ]
    assert doc["remediation"]["cleanup"] == [
        "object-group network EOP",
        " no network-object 65.55.88.0 255.255.255.0",
    ]


def test_fixed_config_exits_0(tmp_path: Path) -> None:
    fixed = ASA.replace(
        " network-object 104.47.0.0 255.255.128.0\n",
        " network-object 104.47.0.0 255.255.128.0\n"
        " network-object 40.107.0.0 255.255.0.0\n"
        " network-object 52.102.0.0 255.254.0.0\n",
    )
    result = invoke(str(write(tmp_path, fixed)), "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["missing_ranges"] == []
    assert all(r["verdict"] == "permitted" for r in doc["ranges"])


def test_text_output_table_and_remediation(tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    result = invoke(str(write(tmp_path, ASA)), "--output", str(out))
    assert result.exit_code == 1
    text = out.read_text(encoding="utf-8")
    assert "40.107.0.0/16" in text
    assert "blocked" in text
    assert "partial" in text
    assert "network-object 40.107.0.0 255.255.0.0" in text
    assert "4.4.315" in text  # a silent drop: Exchange Online times out
    # Config text is shown literally, never read as rich markup.
    assert "line 20: access-list OUTSIDE_IN extended deny ip any any log" in text


def test_to_and_port_and_acl_options(tmp_path: Path) -> None:
    config = write(tmp_path, ASA)
    inside = json.loads(invoke(str(config), "--to", "10.0.0.25", "--format", "json").stdout)
    assert inside["to"] == "10.0.0.25"
    assert inside["missing_ranges"] == MISSING
    web = json.loads(
        invoke(str(config), "--to", "203.0.113.25", "--port", "443", "-f", "json").stdout
    )
    assert web["port"] == 443
    assert all(r["verdict"] == "blocked" for r in web["ranges"])
    result = invoke(str(config), "--acl", "NOPE")
    assert result.exit_code == 2
    assert "NOPE" in result.output


def test_bare_acl_pasted_on_stdin_and_in_a_file(tmp_path: Path) -> None:
    acl = (
        "access-list outside_access_in extended permit tcp 40.92.0.0 255.254.0.0 "
        "host 198.51.100.25 eq smtp\n"
        "access-list outside_access_in extended permit tcp 104.47.0.0 255.255.128.0 "
        "host 198.51.100.25 eq 25\n"
    )
    result = invoke("-", "--format", "json", stdin=acl)
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["to"] == "198.51.100.25"
    assert doc["acl"] == "outside_access_in"
    assert doc["missing_ranges"] == ["40.107.0.0/16", "52.100.0.0/14"]
    assert doc["remediation"]["lines"][-1] == (
        "access-list outside_access_in line 2 extended permit tcp object-group EOP_SMTP_SOURCES "
        "host 198.51.100.25 eq smtp"
    )
    from_file = invoke(str(write(tmp_path, acl, "pasted.txt")), "--format", "json")
    assert json.loads(from_file.stdout)["missing_ranges"] == doc["missing_ranges"]


def test_without_a_named_host_asks_for_to(tmp_path: Path) -> None:
    acl = "access-list OUTSIDE_IN extended permit tcp any any eq smtp\n"
    result = invoke(str(write(tmp_path, acl)))
    assert result.exit_code == 2
    assert "--to" in result.output
    ok = invoke(str(write(tmp_path, acl)), "--to", "192.0.2.25", "-f", "json")
    assert ok.exit_code == 0
    doc = json.loads(ok.stdout)
    assert any("from any source" in n for n in doc["notes"])


def test_several_mail_hosts_are_all_checked(tmp_path: Path) -> None:
    acl = (
        "access-list IN extended permit tcp any host 198.51.100.25 eq smtp\n"
        "access-list IN extended permit tcp 40.92.0.0 255.254.0.0 host 198.51.100.26 eq smtp\n"
    )
    result = invoke(str(write(tmp_path, acl)), "-f", "json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["to"] == "198.51.100.25"
    assert doc["missing_ranges"] == []
    assert [t["to"] for t in doc["other_targets"]] == ["198.51.100.26"]
    assert doc["other_targets"][0]["missing_ranges"] == [
        "40.107.0.0/16",
        "52.100.0.0/14",
        "104.47.0.0/17",
    ]


def test_endpoints_file_in_utf16(tmp_path: Path) -> None:
    endpoints = [
        {
            "id": 10,
            "serviceArea": "Exchange",
            "urls": ["*.mail.protection.outlook.com"],
            "ips": ["40.92.0.0/15", "104.47.0.0/17"],
            "tcpPorts": "25",
            "category": "Allow",
            "required": True,
        }
    ]
    path = tmp_path / "endpoints.json"
    path.write_bytes(json.dumps(endpoints).encode("utf-16"))
    result = invoke(str(write(tmp_path, ASA)), "--endpoints", str(path), "-f", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["endpoints"]["source"] == "file"
    assert [r["range"] for r in doc["ranges"]] == ["40.92.0.0/15", "104.47.0.0/17"]


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "cannot read"),
        (b"", [], "empty"),
        (b"\x00\x01\x02PK\x03\x04" * 100, [], "binary"),
        (b"hello world\nthis is not a firewall\n", [], "not recognised"),
        (ASA.encode(), ["--to", "smtp.tailspintoys.ca"], "not an IP address"),
        (ASA.encode(), ["--vendor", "checkpoint-9000"], "--vendor"),
        (ASA.encode(), ["--endpoints", "{missing}"], "cannot read endpoints"),
        (
            b"access-list A extended permit ip any any\naccess-list B extended deny ip any any\n",
            [],
            "--acl",
        ),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    tmp_path: Path, content: bytes | None, args: list[str], message: str
) -> None:
    path = tmp_path / "fw.cfg"
    if content is not None:
        path.write_bytes(content)
    args = [a.replace("{missing}", str(tmp_path / "nope.json")) for a in args]
    result = invoke(str(path), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    if content is None or message in ("empty", "binary", "not recognised"):
        assert str(path) in result.output


def test_hostile_config_is_handled(tmp_path: Path) -> None:
    hostile = (
        "access-list OUTSIDE_IN remark [bold red]<script>alert(1)</script>[/]\n"
        + "access-list OUTSIDE_IN extended permit tcp any host 198.51.100.25 eq smtp "
        + "x" * 200_000
        + "\n"
        + "object-group network "
        + "A" * 5000
        + "\n"
        + "\udcff\n".encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    )
    result = invoke(str(write(tmp_path, hostile)), "-f", "json")
    assert result.exit_code in (0, 1), result.output
    doc = json.loads(result.stdout)
    assert doc["issues"]  # the overlong line is reported
    text = invoke(str(write(tmp_path, hostile)), "--output", str(tmp_path / "o.txt"))
    assert text.exit_code in (0, 1)


def test_real_console_script(tmp_path: Path) -> None:
    if not EXE.exists():
        pytest.skip("mailflow-doctor is not installed in this environment")
    config = write(tmp_path, ASA)
    done = subprocess.run(
        [str(EXE), "firewall", "check", str(config), "--format", "json"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["missing_ranges"] == MISSING
    missing = subprocess.run(
        [str(EXE), "firewall", "check", str(tmp_path / "absent.cfg")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert missing.returncode == 2
    assert "absent.cfg" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_many_named_hosts_are_capped_and_the_admin_is_told(tmp_path: Path) -> None:
    acl = "".join(
        f"access-list IN extended permit tcp 40.92.0.0 255.254.0.0 host 198.51.100.{i} eq smtp\n"
        for i in range(1, 21)
    )
    doc = json.loads(invoke(str(write(tmp_path, acl)), "-f", "json").stdout)
    assert 1 + len(doc["other_targets"]) == 8
    assert "20 hosts are named, 8 checked" in doc["discovered_from"]
