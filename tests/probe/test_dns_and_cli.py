"""DNS against a real server on loopback (dnslib), and the `probe` command end to end."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from dnslib import AAAA, CNAME, MX, TXT, A
from probekit import server_context, smtp_server
from typer.testing import CliRunner

from conftest import LoopbackDns, Pki
from mailflow_doctor.cli import app
from mailflow_doctor.probe.dns import Lookup, ResolverSpec, ResolverSpecError, resolve_target
from mailflow_doctor.probe.runner import ProbeOptions, probe


@pytest.fixture(scope="module")
def zone(loopback_dns: LoopbackDns) -> LoopbackDns:
    z = loopback_dns.zone
    z.add("example.test", "MX", MX("mx2.example.test", 20))
    z.add("example.test", "MX", MX("mx1.example.test", 10))
    z.add("mx1.example.test", "A", A("127.0.0.1"))
    z.add("mx2.example.test", "CNAME", CNAME("mx2-real.example.test"))
    z.add("mx2-real.example.test", "A", A("127.0.0.1"))
    z.add("mx2-real.example.test", "AAAA", AAAA("::1"))
    z.add("noaddr.example.test", "TXT", TXT("v=spf1 -all"))
    z.add("dangling.test", "MX", MX("gone.example.test", 10))
    z.add("dangling.test", "MX", MX("mx1.example.test", 20))
    z.add("nomail.test", "MX", MX(".", 0))
    z.add("maildomain.test", "MX", MX("mx1.example.test", 10))
    z.servfail.add("broken.example.test")
    z.silent.add("silent.example.test")
    return loopback_dns


def _lookup(zone: LoopbackDns, timeout: float = 1.0) -> Lookup:
    return Lookup(zone.spec, timeout)


def test_mail_domain_mx_in_preference_order_with_cname_chain(zone: LoopbackDns) -> None:
    result = resolve_target("example.test", _lookup(zone))
    assert result.kind == "domain"
    assert [(m.preference, m.exchange) for m in result.mx] == [
        (10, "mx1.example.test"),
        (20, "mx2.example.test"),
    ]
    mx2 = result.hosts[1]
    assert mx2.cname_chain == ("mx2-real.example.test",)
    assert mx2.addresses == ("127.0.0.1", "::1")
    assert result.addresses() == [
        ("mx1.example.test", "127.0.0.1"),
        ("mx2.example.test", "::1"),
    ]
    assert result.errors == ()
    assert result.resolver == f"127.0.0.1:{zone.port}"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("missing.example.test", "nxdomain"),
        ("broken.example.test", "servfail"),
        ("noaddr.example.test", "no_answer"),
    ],
)
def test_failures_are_told_apart(zone: LoopbackDns, name: str, kind: str) -> None:
    result = resolve_target(name, _lookup(zone))
    assert result.hosts == () or result.hosts[0].addresses == ()
    assert {e.kind for e in result.errors} == {kind}
    report = probe(name, ProbeOptions(resolver=zone.spec, step_timeout=1.0, reverse_dns=False))
    (problem,) = report.problems
    assert problem.id == "dns.resolution_failed"
    assert problem.data["reason"] == kind
    assert problem.exo_code == "4.4.312"
    assert report.addresses == ()


def test_timeout_is_its_own_kind(zone: LoopbackDns) -> None:
    started = time.monotonic()
    result = resolve_target("silent.example.test", _lookup(zone, timeout=0.5))
    assert time.monotonic() - started < 3
    assert "timeout" in {e.kind for e in result.errors}


def test_one_dangling_mx_is_a_warning_when_another_works(zone: LoopbackDns) -> None:
    report = probe(
        "dangling.test",
        ProbeOptions(resolver=zone.spec, step_timeout=1.0, reverse_dns=False, port=9),
    )
    dns_problems = [p for p in report.problems if p.id.startswith("dns.")]
    assert [(p.id, p.severity, p.data["name"]) for p in dns_problems] == [
        ("dns.resolution_failed", "warning", "gone.example.test")
    ]


def test_null_mx(zone: LoopbackDns) -> None:
    report = probe("nomail.test", ProbeOptions(resolver=zone.spec, step_timeout=1.0))
    assert [p.id for p in report.problems] == ["dns.null_mx"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.53", ResolverSpec("192.0.2.53", 53)),
        ("192.0.2.53:5353", ResolverSpec("192.0.2.53", 5353)),
        ("2001:db8::53", ResolverSpec("2001:db8::53", 53)),
        ("[2001:db8::53]:5353", ResolverSpec("2001:db8::53", 5353)),
        (None, ResolverSpec()),
    ],
)
def test_resolver_spec(text: str | None, expected: ResolverSpec) -> None:
    assert ResolverSpec.parse(text) == expected


@pytest.mark.parametrize("text", ["dns.example.test", "192.0.2.53:0", "192.0.2.53:x", "[::1]x"])
def test_resolver_spec_rejects(text: str) -> None:
    with pytest.raises(ResolverSpecError):
        ResolverSpec.parse(text)


def test_ptr_and_forward_confirmation(zone: LoopbackDns, options: ProbeOptions) -> None:
    from dnslib import PTR

    zone.zone.add("1.0.0.127.in-addr.arpa", "PTR", PTR("mx1.example.test"))
    report = probe("127.0.0.1", replace(options, reverse_dns=True, port=9))
    (address,) = report.addresses
    assert address.ptr is not None
    assert address.ptr.names == ("mx1.example.test",)
    assert address.ptr.confirms_forward


def test_cli_json_for_a_mail_domain(
    zone: LoopbackDns, pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_file = tmp_path / "root.pem"
    ca_file.write_bytes(pki.root.pem())
    context = server_context(pki.intermediate.issue("mx1.example.test"), tmp_path)
    with smtp_server(context) as port:
        result = CliRunner().invoke(
            app,
            [
                "probe",
                "maildomain.test",
                "--resolver",
                f"127.0.0.1:{zone.port}",
                "--port",
                str(port),
                "--ca-file",
                str(ca_file),
                "--expect-name",
                "hybrid.contoso.test",
                "--timeout",
                "2",
                "--format",
                "json",
            ],
        )
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert list(doc) == ["target", "vantage", "dns", "addresses", "findings"]
    assert doc["target"] == "maildomain.test"
    assert doc["vantage"] == "probed from 127.0.0.1, not from Exchange Online's addresses"
    assert doc["dns"]["mx"] == [{"preference": 10, "host": "mx1.example.test"}]
    assert doc["dns"]["addresses"] == ["127.0.0.1"]
    (address,) = doc["addresses"]
    assert address["connect"] == "connected"
    assert address["starttls"] == "offered"
    assert address["tls"]["version"] in ("TLSv1.2", "TLSv1.3")
    assert address["chain"][0]["subject"] == "CN=mx1.example.test"
    assert address["chain"][0]["sans"] == ["mx1.example.test"]
    assert address["chain"][0]["not_after"].endswith("Z")
    assert len(address["chain"][0]["sha256"]) == 64
    (finding,) = doc["findings"]
    assert finding["id"] == "tls.certificate_name_mismatch"
    assert finding["root_cause"] is False
    assert finding["data"]["expected"] == "hybrid.contoso.test"
    assert finding["data"]["host"] == "mx1.example.test"
    assert finding["data"]["address"] == "127.0.0.1"
    assert set(finding) >= {"severity", "confidence", "title", "summary", "evidence", "remediation"}


def test_cli_text_clean_run_states_the_vantage(zone: LoopbackDns, pki: Pki, tmp_path: Path) -> None:
    ca_file = tmp_path / "root.pem"
    ca_file.write_bytes(pki.root.pem())
    context = server_context(pki.intermediate.issue("mx1.example.test"), tmp_path)
    out = tmp_path / "probe.txt"
    with smtp_server(context) as port:
        result = CliRunner().invoke(
            app,
            [
                "probe",
                "mx1.example.test",
                "--resolver",
                f"127.0.0.1:{zone.port}",
                "--port",
                str(port),
                "--ca-file",
                str(ca_file),
                "--timeout",
                "2",
                "--output",
                str(out),
            ],
        )
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert "not from Exchange Online's addresses" in text
    assert "No problem found from here" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["probe", "bad name!"], "not a host name"),
        (["probe", "mail.example.test", "--resolver", "dns.example.test"], "IP address"),
        (["probe", "mail.example.test", "--source", "192.0.2.250"], "cannot send from"),
        (["probe", "mail.example.test", "--ca-file", "/nonexistent/ca.pem"], "cannot read"),
    ],
)
def test_cli_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_cli_source_address_is_the_vantage(zone: LoopbackDns, tmp_path: Path) -> None:
    with smtp_server(None) as port:
        result = CliRunner().invoke(
            app,
            ["probe", "127.0.0.1", "--port", str(port), "--source", "127.0.0.2",
             "--resolver", f"127.0.0.1:{zone.port}", "--timeout", "2", "--format", "json"],
        )  # fmt: skip
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["vantage"] == "probed from 127.0.0.2, not from Exchange Online's addresses"
    assert doc["dns"]["addresses"] == ["127.0.0.1"]
    assert [f["id"] for f in doc["findings"]] == ["tls.starttls_missing"]


def test_every_mx_address_is_probed_at_once(
    zone: LoopbackDns, pki: Pki, tmp_path: Path, options: ProbeOptions
) -> None:
    """example.test: mx1 -> 127.0.0.1 (listening), mx2 -> CNAME -> 127.0.0.1 and ::1."""
    context = server_context(pki.intermediate.issue("*.example.test"), tmp_path)
    with smtp_server(context) as port:
        report = probe("example.test", replace(options, port=port))
    rows = [(a.host, a.address, a.connect) for a in report.addresses]
    assert rows[0] == ("mx1.example.test", "127.0.0.1", "connected")
    assert rows[1][:2] == ("mx2.example.test", "::1")
    # aiosmtpd listens on 127.0.0.1 only: ::1 refuses (or is unreachable without IPv6).
    assert rows[1][2] in ("refused", "unreachable")
    ids = sorted(p.id for p in report.problems)
    assert ids in (["smtp.connection_refused"], ["smtp.host_unreachable"])
    assert report.problems[0].data["host"] == "mx2.example.test"


def test_dns_that_eats_the_deadline_leaves_no_guessed_timeouts(zone: LoopbackDns) -> None:
    zone.zone.add("slowmx.test", "MX", MX("silent.example.test", 10))
    zone.zone.add("slowmx.test", "MX", MX("mx1.example.test", 20))
    opts = ProbeOptions(
        resolver=zone.spec, step_timeout=1.0, total_timeout=1.5, reverse_dns=False, port=9
    )
    started = time.monotonic()
    report = probe("slowmx.test", opts)
    assert time.monotonic() - started < 3.0
    found = {(p.id, p.data.get("name")) for p in report.problems}
    assert found == {
        ("dns.resolution_failed", "silent.example.test"),
        ("probe.incomplete", "mx1.example.test"),
    }
