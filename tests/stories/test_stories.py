"""Look-alike causes, end to end: each evidence set must yield its own root cause.

Every story is a folder an admin could hand over (message trace, SmtpReceive logs, connector
and certificate exports, a firewall configuration); the full diagnosis reads it by content and
must name the cause that explains the deferrals actually seen, and say why the others were
ruled out. The firewall story (the bundled Tailspin Toys example) must still win where the
firewall is the cause, even when healthy connector and certificate exports are added.
"""

from __future__ import annotations

import filecmp
import sys
from importlib import resources
from pathlib import Path

import pytest

from mailflow_doctor.diagnose.bundle import collect
from mailflow_doctor.diagnose.engine import Diagnosis, diagnose
from mailflow_doctor.knowledge.endpoints import load

STORIES = Path(__file__).resolve().parents[1] / "fixtures" / "stories"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import build_fixtures  # noqa: E402


def run(*paths: Path) -> Diagnosis:
    bundle = collect(list(paths), load())
    for summary in bundle.files:
        assert summary.kind != "unrecognised", summary.path
        assert not summary.warnings, (summary.path, summary.warnings)
    return diagnose(bundle)


def tailspin() -> Path:
    root = resources.files("mailflow_doctor") / "examples" / "tailspin"
    path = Path(str(root))
    if not path.is_dir():
        pytest.skip("the bundled Tailspin example is not present")
    return path


def test_certificate_renewed_without_rerunning_the_wizard() -> None:
    diagnosis = run(STORIES / "cert_renewed_no_hcw")
    assert diagnosis.root_cause == "tls.starttls_missing"
    root = diagnosis.finding("tls.starttls_missing")
    assert root is not None
    assert root.data["target"] == "mail.contoso.com"
    assert root.data["servers"] == ["EX01", "EX02"]
    assert root.data["deferrals"] == 24
    problems = {
        str(f.data["problem"]): f
        for f in diagnosis.findings
        if f.id == "connector.tls_certificate_name_mismatch"
    }
    assert set(problems) == {"not_installed", "send_not_installed"}
    connector = problems["not_installed"]
    assert sorted(connector.data["connectors"]) == [
        "EX01\\Default Frontend EX01",
        "EX02\\Default Frontend EX02",
    ]
    assert "R3" in connector.data["configured"]
    assert connector.ruled_out.startswith("Not a separate cause")
    assert root.remediation[0].startswith(
        "Set-ReceiveConnector 'EX01\\Default Frontend EX01' -TlsCertificateName "
        f'"<I>{build_fixtures.R11}<S>CN=mail.contoso.com"'
    )
    # The on-premises side of the same renewal: mail to Exchange Online waits in the queue.
    queue = diagnosis.finding("queue.onprem_delivery_errors")
    assert queue is not None
    assert queue.data["messages_waiting"] == 14
    assert queue.data["queues"][0]["explained_as"] == "Send connector certificate not found"
    assert "4.7.5" in queue.explains
    assert not queue.root_cause
    assert queue.ruled_out


def test_subject_mismatch_on_one_of_two_servers_is_intermittent() -> None:
    diagnosis = run(STORIES / "subject_mismatch_one_server")
    assert diagnosis.root_cause == "tls.certificate_name_mismatch"
    root = diagnosis.finding("tls.certificate_name_mismatch")
    assert root is not None
    assert root.data["expected"] == "mail.contoso.com"
    assert root.data["presented"] == "CN=EX02"
    assert root.data["servers"] == ["EX02"]
    assert root.data["servers_ok"] == ["EX01"]
    assert root.data["intermittent"] is True
    assert "intermittent" in root.title
    assert root.remediation[0].startswith("Set-ReceiveConnector 'EX02\\Default Frontend EX02'")
    unset = diagnosis.finding("connector.tls_certificate_name_mismatch")
    assert unset is not None
    assert unset.data["problem"] == "unset"
    assert unset.data["connector"] == "EX02\\Default Frontend EX02"
    paths = diagnosis.finding("trace.message_paths")
    assert paths is not None
    assert paths.data["arrived"] == paths.data["messages"] == 5
    assert all(p["server"] == "EX01" for p in paths.data["paths"])
    assert all(p["session"] and p["received_utc"] for p in paths.data["paths"])


def test_expired_certificate() -> None:
    diagnosis = run(STORIES / "expired_certificate")
    assert diagnosis.root_cause == "tls.certificate_expired"
    root = diagnosis.finding("tls.certificate_expired")
    assert root is not None
    assert root.data["not_after"] == "2026-11-20T07:59:59Z"
    assert root.data["thumbprint"] == build_fixtures.OLD_THUMB
    assert root.data["servers"] == ["EX01"]
    assert diagnosis.finding("tls.starttls_missing") is None
    assert diagnosis.finding("tls.certificate_name_mismatch") is None


def test_public_ip_changed() -> None:
    diagnosis = run(STORIES / "public_ip_changed")
    assert diagnosis.root_cause == "dns.target_mismatch"
    root = diagnosis.finding("dns.target_mismatch")
    assert root is not None
    assert root.data["tried"] == ["198.51.100.77"]
    assert root.data["expected"] == ["203.0.113.25"]
    assert root.explains == ("4.4.315",)
    firewall = diagnosis.finding("firewall.eop_ranges_blocked")
    if firewall is not None:  # judged for the stale address: ruled out, and says why
        assert not firewall.root_cause
        assert firewall.ruled_out
        assert any("no longer" in t or "now answers" in t for t in firewall.data["contradiction"])
    timeout = diagnosis.finding("smtp.connection_timeout")
    if timeout is not None:
        assert "dns.target_mismatch" in timeout.ruled_out


def test_cmt_bypassed() -> None:
    diagnosis = run(STORIES / "cmt_bypassed")
    assert diagnosis.root_cause == "routing.cmt_bypass"
    root = diagnosis.finding("routing.cmt_bypass")
    assert root is not None
    assert root.data["via_onprem"] == 3
    assert len(root.data["direct"]) == 9
    assert "detail" in root.data
    assert diagnosis.exit_code == 1


def test_firewall_story_still_wins() -> None:
    diagnosis = run(tailspin())
    assert diagnosis.root_cause == "firewall.eop_ranges_blocked"


def test_firewall_story_wins_with_healthy_connectors_and_certificates() -> None:
    diagnosis = run(tailspin(), STORIES / "tailspin_healthy_config")
    assert diagnosis.root_cause == "firewall.eop_ranges_blocked"
    ids = {f.id for f in diagnosis.findings}
    assert not ids & {
        "tls.starttls_missing",
        "tls.certificate_name_mismatch",
        "tls.certificate_expired",
        "connector.tls_certificate_name_mismatch",
        "connector.tls_domain_mismatch",
        "dns.target_mismatch",
        "routing.cmt_bypass",
    }


@pytest.mark.parametrize(
    ("story", "root"),
    [
        ("cert_renewed_no_hcw", "tls.starttls_missing"),
        ("subject_mismatch_one_server", "tls.certificate_name_mismatch"),
        ("expired_certificate", "tls.certificate_expired"),
        ("public_ip_changed", "dns.target_mismatch"),
    ],
)
def test_every_other_candidate_says_why_it_was_ruled_out(story: str, root: str) -> None:
    diagnosis = run(STORIES / story)
    assert diagnosis.root_cause == root
    for finding in diagnosis.findings:
        if finding.id != root and finding.can_be_root_cause:
            assert finding.ruled_out, finding.id


def test_fixtures_are_what_the_builder_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_fixtures, "OUT", tmp_path)
    build_fixtures.main()
    for story in build_fixtures.STORIES:
        compared = filecmp.dircmp(tmp_path / story, STORIES / story)
        stack = [compared]
        while stack:
            current = stack.pop()
            assert not current.left_only, story
            assert not current.right_only, story
            assert not current.diff_files, (story, current.diff_files)
            stack.extend(current.subdirs.values())
