"""The bundled example through the real readers, with parts of the evidence left out.

An admin rarely has everything at 2 a.m.; each subset must still lead to the right conclusion
with the confidence the evidence deserves.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailflow_doctor.diagnose.bundle import collect
from mailflow_doctor.diagnose.engine import Diagnosis, diagnose
from mailflow_doctor.knowledge.endpoints import load_bundled

EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "mailflow_doctor" / "examples" / "tailspin"
TRACE = EXAMPLE / "trace"
FIREWALL = EXAMPLE / "firewall"
CONFIG = FIREWALL / "tsp-fw01-running-config.txt"
SYSLOG = FIREWALL / "tsp-fw01-syslog.log"
LOGS = [EXAMPLE / "TSP-EX01", EXAMPLE / "TSP-EX02"]


def run(*paths: Path, **options: object) -> Diagnosis:
    return diagnose(collect(list(paths), load_bundled(), extra=dict(options)))


def test_everything_names_the_gap_with_high_confidence() -> None:
    result = run(EXAMPLE)
    assert result.root_cause == "firewall.eop_ranges_blocked"
    assert result.root is not None
    assert result.root.confidence >= 0.95


def test_trace_only_suspects_a_partial_allow_list() -> None:
    result = run(TRACE)
    assert result.root_cause == "firewall.partial_allow_list_suspected"
    root = result.root
    assert root is not None
    assert root.data["target"] == "203.0.113.25"
    assert root.data["delivered"] > 0
    assert root.data["refused"] > 0
    assert root.confidence < 0.8


def test_trace_and_receive_logs_strengthen_the_suspicion() -> None:
    alone = run(TRACE)
    with_logs = run(TRACE, *LOGS)
    assert with_logs.root_cause == "firewall.partial_allow_list_suspected"
    assert alone.root is not None
    assert with_logs.root is not None
    assert with_logs.root.confidence > alone.root.confidence
    assert any("only from" in c for c in with_logs.root.data["corroboration"])


def test_trace_and_deny_log_without_config_blame_the_drops() -> None:
    result = run(TRACE, SYSLOG)
    assert result.root_cause == "firewall.drops_from_eop"
    root = result.root
    assert root is not None
    assert root.data["source_ranges"] == ["40.107.0.0/16", "52.100.0.0/14"]


def test_config_alone_needs_a_destination_or_finds_it_in_the_config() -> None:
    result = run(CONFIG, to="203.0.113.25")
    assert result.root_cause == "firewall.eop_ranges_blocked"
    assert result.root is not None
    assert result.root.data["missing_ranges"] == ["40.107.0.0/16", "52.102.0.0/15"]
    assert result.root.data["effective_destination"] == "10.0.0.25"


def test_logs_covering_one_hour_are_a_gap_and_judged_for_that_hour(tmp_path: Path) -> None:
    partial = tmp_path / "logs"
    for server in ("TSP-EX01", "TSP-EX02"):
        source = EXAMPLE / server / "FrontEnd" / "ProtocolLog" / "SmtpReceive"
        target = partial / server
        target.mkdir(parents=True)
        shutil.copy(source / "RECV2026112721-1.LOG", target)
    result = run(TRACE, partial, CONFIG)
    gap = result.finding("logs.coverage_gap")
    assert gap is not None
    assert gap.data["window_utc"] == ["2026-11-27T21:10:06Z", "2026-11-27T23:22:48Z"]
    assert {c["server"] for c in gap.data["covered_utc"]} == {"TSP-EX01", "TSP-EX02"}
    absent = result.finding("logs.eop_sessions_absent")
    assert absent is not None  # judged over 21:10-21:59 only
    assert 0 < absent.data["deferrals_covered"] < absent.data["deferrals"]
    assert result.root_cause == "firewall.eop_ranges_blocked"


@pytest.mark.parametrize("acl", ["INSIDE_OUT"])
def test_the_wrong_acl_is_doubted(acl: str) -> None:
    """Deliveries succeed, yet the ACL chosen would block every range: say so."""
    from mailflow_doctor.firewall.registry import ParseOptions

    bundle = collect([TRACE, CONFIG], load_bundled(), options=ParseOptions(acl=acl))
    result = diagnose(bundle)
    blocked = result.finding("firewall.eop_ranges_blocked")
    if blocked is None:
        pytest.skip("the ASA parser does not evaluate a non-inbound ACL")
    assert blocked.confidence < 0.7
