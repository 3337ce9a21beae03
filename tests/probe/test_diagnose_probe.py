"""`diagnose --probe`: the targets in the trace are probed and the results become findings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from probekit import server_context, smtp_server

from conftest import LoopbackDns, Pki
from mailflow_doctor.diagnose.bundle import Bundle
from mailflow_doctor.diagnose.checks import Context, registered_checks
from mailflow_doctor.diagnose.rules.probe_results import probe_results, targets_from_evidence
from mailflow_doctor.evidence.document import SourceRef
from mailflow_doctor.evidence.records import ParsedReason, TraceEvent
from mailflow_doctor.knowledge.endpoints import load_bundled


def _deferral(line: int, fqdn: str, ip: str) -> TraceEvent:
    raw = (
        "450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch] "
        f"[LastAttemptedServerName={fqdn}] [LastAttemptedIP={ip}:25]"
    )
    return TraceEvent(
        ref=SourceRef("trace/MTDetail.csv", line),
        time_utc=datetime(2026, 11, 28, 1, line, tzinfo=UTC),
        event="Defer",
        action="",
        detail=raw,
        data="",
        reason=ParsedReason(raw=raw, enhanced_code="4.4.317", fqdn=fqdn, ip=ip, port=25),
    )


def _bundle(options: dict[str, object], *events: TraceEvent) -> Bundle:
    bundle = Bundle(endpoints=load_bundled(), options=dict(options))
    for event in events:
        bundle.add(event)
    return bundle


def test_check_is_registered_and_idle_without_the_flag() -> None:
    assert "probe.live" in {c.name for c in registered_checks()}
    ctx = Context(_bundle({}, _deferral(1, "mail.example.test", "127.0.0.1")))
    assert list(probe_results(ctx)) == []


def test_targets_pair_names_with_the_addresses_tried() -> None:
    ctx = Context(
        _bundle(
            {},
            _deferral(1, "mail.example.test", "127.0.0.1"),
            _deferral(2, "mail.example.test", "127.0.0.1"),
        )
    )
    ctx.facts["smtp_targets"] = ["mail.example.test", "127.0.0.1", "192.0.2.25"]
    targets = [(t.name, t.address) for t in targets_from_evidence(ctx)]
    assert targets == [
        ("mail.example.test", "127.0.0.1"),
        (None, "192.0.2.25"),
        ("mail.example.test", None),
    ]


def test_probe_against_the_connectors_tls_domain_and_a_stale_address(
    pki: Pki, loopback_dns: LoopbackDns, tmp_path: Path
) -> None:
    ca_file = tmp_path / "root.pem"
    ca_file.write_bytes(pki.root.pem())
    context = server_context(pki.intermediate.issue("mail.example.test"), tmp_path)
    with smtp_server(context) as port:
        ctx = Context(
            _bundle(
                {
                    "probe": True,
                    "probe_options": {
                        "resolver": f"127.0.0.1:{loopback_dns.port}",
                        "ca_file": str(ca_file),
                        "timeout": 2,
                        "port": port,
                    },
                },
                _deferral(1, "mail.example.test", "127.0.0.1"),
                _deferral(2, "mail.example.test", "127.0.0.9"),
            )
        )
        ctx.facts["expected_tls_name"] = "hybrid.contoso.test"
        findings = list(probe_results(ctx))
    by_id: dict[str, list[object]] = {}
    for finding in findings:
        by_id.setdefault(finding.id, []).append(finding)
    assert set(by_id) == {
        "tls.certificate_name_mismatch",
        "smtp.connection_refused",
        "dns.target_mismatch",
        "probe.summary",
    }
    (mismatch,) = [f for f in findings if f.id == "tls.certificate_name_mismatch"]
    assert mismatch.data["expected"] == "hybrid.contoso.test"
    assert mismatch.data["address"] == "127.0.0.1"
    assert mismatch.can_be_root_cause
    assert mismatch.explains == ("4.4.317",)
    assert "not from Exchange Online's addresses" in mismatch.data["vantage"]
    (refused,) = [f for f in findings if f.id == "smtp.connection_refused"]
    assert refused.data["address"] == "127.0.0.9"
    assert not refused.can_be_root_cause, "a refusal seen from here proves nothing about EOP"
    (stale,) = [f for f in findings if f.id == "dns.target_mismatch"]
    assert stale.data["tried"] == "127.0.0.9"
    assert stale.data["expected"] == ["127.0.0.1"]
    assert stale.severity.value == "error"
    assert "probe_report" in ctx.facts


def test_bad_options_are_reported_not_raised(loopback_dns: LoopbackDns) -> None:
    ctx = Context(
        _bundle(
            {
                "probe": True,
                "probe_options": {"resolver": "not-an-address", "ca_file": "/nonexistent.pem"},
            }
        )
    )
    ids = [f.id for f in probe_results(ctx)]
    assert ids == ["probe.options_invalid", "probe.options_invalid", "probe.no_targets"]


def test_the_probe_can_prove_the_root_cause_of_4_4_317(
    pki: Pki, loopback_dns: LoopbackDns, tmp_path: Path
) -> None:
    """Trace: 4.4.317 SubjectMismatch deferrals. Probe: the certificate lacks the TlsDomain."""
    from mailflow_doctor.diagnose.engine import diagnose

    ca_file = tmp_path / "root.pem"
    ca_file.write_bytes(pki.root.pem())
    context = server_context(pki.intermediate.issue("mail.example.test"), tmp_path)
    with smtp_server(context) as port:
        bundle = _bundle(
            {
                "probe": True,
                "probe_options": {
                    "resolver": f"127.0.0.1:{loopback_dns.port}",
                    "ca_file": str(ca_file),
                    "timeout": 2,
                    "port": port,
                    "expect_name": "hybrid.contoso.test",
                },
            },
            *(_deferral(line, "mail.example.test", "127.0.0.1") for line in range(1, 6)),
        )
        diagnosis = diagnose(bundle)
    assert diagnosis.root_cause == "tls.certificate_name_mismatch"
    assert diagnosis.exit_code == 1
