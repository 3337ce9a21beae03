"""Checks and ranking over records built directly (no readers involved)."""

from __future__ import annotations

from collections import Counter

from diag_builders import (
    PERMITTED_EOP,
    PUBLIC,
    at,
    bundle,
    defer,
    drop,
    firewall,
    message,
    sent,
    session,
    span,
)

from mailflow_doctor.diagnose.engine import Diagnosis, diagnose, rank
from mailflow_doctor.diagnose.model import Finding, Severity
from mailflow_doctor.evidence.document import SourceRef
from mailflow_doctor.evidence.records import TraceEvent


def ids(diagnosis: Diagnosis) -> list[str]:
    return [f.id for f in diagnosis.findings]


def mixed_trace() -> list[object]:
    return [
        defer(10, msg="m1", line=2),
        defer(25, msg="m1", line=3),
        defer(40, msg="m3", line=6),
        sent(12, msg="m2", line=4),
        sent(30, msg="m4", line=7),
        message("Delivered", "m2"),
        message("Pending", "m1"),
    ]


# ---- trace -------------------------------------------------------------------------------


def test_trace_deferrals_summarises_codes_targets_and_window() -> None:
    result = diagnose(bundle(*mixed_trace()))
    summary = result.finding("trace.deferrals")
    assert summary is not None
    assert summary.data["by_code"] == {"4.4.316": 3}
    assert summary.data["targets"] == ["smtp.example.test", PUBLIC]
    assert summary.data["first_utc"] == "2026-11-27T21:10:00Z"
    assert summary.data["last_utc"] == "2026-11-27T21:40:00Z"
    assert summary.data["per_target"][PUBLIC] == {
        "delivered": 2,
        "refused": 3,
        "timeout": 0,
        "other": 0,
    }
    assert not summary.root_cause
    assert summary.evidence[0].path == "trace/detail.csv"


def test_mixed_delivered_and_refused_points_at_a_partial_allow_list() -> None:
    result = diagnose(bundle(*mixed_trace()))
    assert result.root_cause == "firewall.partial_allow_list_suspected"
    root = result.root
    assert root is not None
    assert 0.4 <= root.confidence <= 0.75  # moderate: no firewall file yet
    assert "firewall check" in " ".join(root.remediation)
    assert result.exit_code == 1


def test_all_refused_points_at_nothing_listening() -> None:
    result = diagnose(bundle(defer(1), defer(20, msg="m2"), message("Pending", "m1")))
    assert result.root_cause == "smtp.nothing_listening"
    assert result.root is not None
    assert result.root.data["target"] == PUBLIC
    assert "firewall.partial_allow_list_suspected" not in ids(result)


def test_timeouts_give_connection_timeout() -> None:
    result = diagnose(bundle(defer(1, code="4.4.315"), defer(9, code="4.4.315", msg="m2")))
    assert result.root_cause == "smtp.connection_timeout"


def test_no_evidence_no_root_cause() -> None:
    result = diagnose(bundle(message("Delivered", "m1")))
    assert result.root_cause is None
    assert result.findings == ()
    assert result.exit_code == 0


# ---- firewall ----------------------------------------------------------------------------


def test_firewall_gap_is_root_cause_with_exact_missing_ranges_and_verified_fix() -> None:
    result = diagnose(bundle(*mixed_trace(), firewalls=(firewall(*PERMITTED_EOP),)))
    assert result.root_cause == "firewall.eop_ranges_blocked"
    root = result.root
    assert root is not None
    assert root.data["missing_ranges"] == ["40.107.0.0/16", "52.102.0.0/15"]
    assert root.data["vendor"] == "unit-allowlist"
    assert root.remediation == ("40.107.0.0/16", "52.102.0.0/15")
    assert any("re-evaluated" in n for n in root.data["notes"])
    assert root.confidence >= 0.9
    # The trace's own suspicion is folded in as corroboration, not kept as a rival.
    assert "firewall.partial_allow_list_suspected" not in ids(result)
    assert any("succeeded" in c for c in root.data["corroboration"])
    # Evidence points at the deciding line (the default reject) and the permits.
    assert any(ref.line == 2 for ref in root.evidence)
    partial = result.finding("firewall.eop_ranges_permitted_partially")
    assert partial is not None
    assert partial.data["ranges"] == ["52.100.0.0/14"]
    assert result.findings[0].id == "firewall.eop_ranges_blocked"


def test_remediation_that_does_not_close_the_gap_is_not_shown() -> None:
    fw = firewall(*PERMITTED_EOP, extra="#broken-remedy\n")
    result = diagnose(bundle(*mixed_trace(), firewalls=(fw,)))
    root = result.root
    assert root is not None
    assert root.remediation != ("192.0.2.0/24",)
    assert "40.107.0.0/16" in root.remediation[0]
    assert any("did not close the gap" in n for n in root.data["notes"])


def test_stale_objects_found() -> None:
    fw = firewall(*PERMITTED_EOP, "65.55.88.0/24")
    result = diagnose(bundle(*mixed_trace(), firewalls=(fw,)))
    stale = result.finding("firewall.stale_eop_objects")
    assert stale is not None
    assert stale.data["stale_ranges"] == ["65.55.88.0/24"]
    assert stale.evidence[0].excerpt == "65.55.88.0/24"


def test_silent_drop_against_refused_codes_is_called_out() -> None:
    fw = firewall(*PERMITTED_EOP, action="deny")
    result = diagnose(bundle(*mixed_trace(), firewalls=(fw,)))
    root = result.root
    assert root is not None
    assert root.id == "firewall.eop_ranges_blocked"
    assert any("drops silently" in n for n in root.data["notes"])
    reject = diagnose(bundle(*mixed_trace(), firewalls=(firewall(*PERMITTED_EOP),)))
    assert reject.root is not None
    assert root.confidence < reject.root.confidence


def test_destination_from_to_option_without_trace() -> None:
    result = diagnose(bundle(firewalls=(firewall(*PERMITTED_EOP),), to="198.51.100.25"))
    root = result.root
    assert root is not None
    assert root.id == "firewall.eop_ranges_blocked"
    assert root.data["destination"] == "198.51.100.25"


def test_no_destination_is_said_plainly() -> None:
    result = diagnose(bundle(firewalls=(firewall(*PERMITTED_EOP),)))
    assert ids(result) == ["firewall.destination_unknown"]
    assert "--to" in result.findings[0].summary
    assert result.root_cause is None


def test_firewall_permitting_everything_weakens_the_suspicion() -> None:
    full = firewall("40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17")
    plain = diagnose(bundle(*mixed_trace()))
    checked = diagnose(bundle(*mixed_trace(), firewalls=(full,)))
    before = plain.finding("firewall.partial_allow_list_suspected")
    after = checked.finding("firewall.partial_allow_list_suspected")
    assert before is not None
    assert after is not None
    assert after.confidence < before.confidence
    assert "contradiction" in after.data


# ---- deny logs ---------------------------------------------------------------------------


def test_drops_from_eop_in_window_corroborate_the_gap() -> None:
    records = [
        *mixed_trace(),
        drop(10, "40.107.22.45", line=1),
        drop(25, "52.102.11.9", line=2),
        drop(300, "40.107.1.1", line=3),  # hours later: outside the window
        drop(12, "198.51.100.201", line=4),  # a scanner
        drop(13, "40.107.9.9", port=443, line=5),  # not SMTP
    ]
    result = diagnose(bundle(*records, firewalls=(firewall(*PERMITTED_EOP),)))
    drops = result.finding("firewall.drops_from_eop")
    assert drops is not None
    assert drops.data["count"] == 2
    assert drops.data["source_ranges"] == ["40.107.0.0/16", "52.100.0.0/14"]
    assert drops.data["first_utc"] == "2026-11-27T21:10:00Z"
    assert (
        drops.ruled_out == "Not a separate cause: this is evidence for firewall.eop_ranges_blocked."
    )
    unpublished = result.finding("firewall.drops_from_unpublished")
    assert unpublished is not None
    assert unpublished.data["sources"] == ["198.51.100.201"]
    root = result.root
    assert root is not None
    assert root.id == "firewall.eop_ranges_blocked"
    assert any("deny log" in c for c in root.data["corroboration"])


def test_stray_packets_of_unknown_connections_are_not_policy_denies() -> None:
    from dataclasses import replace

    stray = [replace(drop(10 + i, f"40.107.22.{i}"), action="no-connection") for i in range(5)]
    result = diagnose(bundle(*mixed_trace(), *stray))
    assert result.finding("firewall.drops_from_eop") is None


def test_drops_alone_can_be_the_cause() -> None:
    result = diagnose(bundle(*mixed_trace(), drop(10, "40.107.22.45"), drop(25, "52.102.11.9")))
    assert result.root_cause == "firewall.drops_from_eop"


def test_no_drop_log_is_not_proof() -> None:
    result = diagnose(bundle(*mixed_trace(), firewalls=(firewall(*PERMITTED_EOP),)))
    note = result.finding("firewall.drops_not_logged")
    assert note is not None
    assert "not proof" in note.summary


# ---- receive logs ------------------------------------------------------------------------


def test_logs_not_covering_window_give_coverage_gap_only() -> None:
    records = [*mixed_trace(), span("EX01", 50, 90), session("EX01", 55, "40.92.1.1")]
    result = diagnose(bundle(*records, firewalls=(firewall(*PERMITTED_EOP),)))
    gap = result.finding("logs.coverage_gap")
    assert gap is not None
    assert gap.severity == Severity.WARNING
    assert gap.data["window_utc"] == ["2026-11-27T21:10:00Z", "2026-11-27T21:40:00Z"]
    assert gap.data["covered_utc"] == [
        {"server": "EX01", "first": "2026-11-27T21:50:00Z", "last": "2026-11-27T22:30:00Z"}
    ]
    assert result.finding("logs.eop_sessions_absent") is None


def test_logs_covering_part_of_the_window_are_judged_over_that_part_only() -> None:
    records = [
        *mixed_trace(),  # deferrals at 21:10, 21:25, 21:40
        span("EX01", 20, 90),
        session("EX01", 22, "40.92.1.1"),
        session("EX01", 5, "40.107.9.9"),  # before the logs begin: cannot be there
    ]
    result = diagnose(bundle(*records, firewalls=(firewall(*PERMITTED_EOP),)))
    gap = result.finding("logs.coverage_gap")
    assert gap is not None
    assert gap.severity == Severity.INFO
    absent = result.finding("logs.eop_sessions_absent")
    assert absent is not None
    assert absent.data["deferrals_covered"] == 2
    assert absent.data["deferrals"] == 3
    assert absent.data["window_utc"] == ["2026-11-27T21:15:00Z", "2026-11-27T21:40:00Z"]
    assert "cover 2 of the 3 deferrals" in absent.summary


def test_hourly_files_join_into_coverage_and_silence_supports_the_gap() -> None:
    records = [
        *mixed_trace(),
        span("EX01", 0, 28, "EX01/RECV21.LOG"),
        span("EX01", 31, 59, "EX01/RECV22.LOG"),
        span("EX02", 0, 59),
        session("EX01", 12, "40.92.19.46"),
        session("EX02", 30, "104.47.18.105"),
        session("EX02", 31, "10.0.0.61"),
    ]
    result = diagnose(bundle(*records, firewalls=(firewall(*PERMITTED_EOP),)))
    absent = result.finding("logs.eop_sessions_absent")
    assert absent is not None
    assert absent.data["servers"] == ["EX01", "EX02"]
    assert absent.data["eop_sessions"] == 2
    assert absent.data["eop_ranges_seen"] == ["40.92.0.0/15", "104.47.0.0/17"]
    assert result.finding("logs.coverage_gap") is None
    root = result.root
    assert root is not None
    assert root.id == "firewall.eop_ranges_blocked"
    assert any("receive logs" in c for c in root.data["corroboration"])


def test_sessions_from_blocked_ranges_contradict_the_firewall() -> None:
    records = [*mixed_trace(), span("EX01", 0, 59), session("EX01", 15, "40.107.3.3")]
    result = diagnose(bundle(*records, firewalls=(firewall(*PERMITTED_EOP),)))
    assert result.finding("logs.sessions_from_blocked_ranges") is not None
    root = result.finding("firewall.eop_ranges_blocked")
    assert root is not None
    assert "contradiction" in root.data


# ---- ranking -----------------------------------------------------------------------------


def candidate(fid: str, confidence: float, explains: tuple[str, ...]) -> Finding:
    return Finding(
        id=fid,
        severity=Severity.ERROR,
        title=fid,
        summary=fid,
        confidence=confidence,
        explains=explains,
    )


def test_the_cause_explaining_the_codes_wins_over_a_more_confident_other() -> None:
    tls = candidate("tls.certificate_name_mismatch", 0.95, ("4.4.317",))
    fw = candidate("firewall.eop_ranges_blocked", 0.8, ("4.4.316", "4.4.315"))
    ranked, root = rank([tls, fw], Counter({"4.4.316": 9}))
    assert root == "firewall.eop_ranges_blocked"
    assert ranked[0].id == root
    assert ranked[0].root_cause
    loser = ranked[1]
    assert not loser.root_cause
    assert "Does not explain" in loser.ruled_out
    assert "4.4.316" in loser.ruled_out
    assert "4.4.317" in loser.ruled_out


def test_mixed_codes_the_larger_share_wins_and_says_so() -> None:
    tls = candidate("tls.starttls_missing", 0.9, ("4.4.317",))
    fw = candidate("firewall.eop_ranges_blocked", 0.9, ("4.4.316",))
    ranked, root = rank([tls, fw], Counter({"4.4.317": 8, "4.4.316": 2}))
    assert root == "tls.starttls_missing"
    other = next(f for f in ranked if f.id == "firewall.eop_ranges_blocked")
    assert other.ruled_out == (
        "Explains 2 of 10 deferrals (4.4.317 (cannot connect (TLS or the remote server's "
        "reply)), 4.4.316 (connection refused)); tls.starttls_missing explains 8."
    )


def test_expiry_codes_count_as_their_deferral() -> None:
    fw = candidate("firewall.eop_ranges_blocked", 0.9, ("4.4.316",))
    ranked, root = rank([fw], Counter({"4.4.316": 1}))
    assert root == "firewall.eop_ranges_blocked"
    from mailflow_doctor.diagnose.facts import normalise_code

    assert normalise_code("5.4.316") == "4.4.316"
    assert normalise_code("5.7.3") == "5.7.3"
    del ranked


def test_weak_evidence_gives_no_root_cause() -> None:
    weak = candidate("dns.target_mismatch", 0.3, ("4.4.316",))
    ranked, root = rank([weak], Counter({"4.4.316": 3}))
    assert root is None
    assert "too weak" in ranked[0].ruled_out


def test_at_most_one_root_cause_and_order() -> None:
    findings = [
        candidate("a.one", 0.9, ("4.4.316",)),
        candidate("b.two", 0.9, ("4.4.316",)),
        Finding("c.info", Severity.INFO, "c", "c", can_be_root_cause=False),
        Finding("d.crit", Severity.CRITICAL, "d", "d", can_be_root_cause=False),
    ]
    ranked, root = rank(findings, Counter({"4.4.316": 1}))
    assert sum(f.root_cause for f in ranked) == 1
    assert ranked[0].id == root
    assert [f.severity for f in ranked[1:]] == sorted(
        (f.severity for f in ranked[1:]), key=lambda s: s.rank
    )
    assert all(f.ruled_out for f in ranked if f.can_be_root_cause and not f.root_cause)


def test_without_deferrals_a_serious_finding_can_still_be_the_cause() -> None:
    ranked, root = rank([candidate("firewall.eop_ranges_blocked", 0.8, ("4.4.316",))], Counter())
    assert root == "firewall.eop_ranges_blocked"
    del ranked


def test_firewall_blocking_everything_beats_nothing_listening() -> None:
    records = [defer(1), defer(20, msg="m2"), message("Pending", "m1")]
    result = diagnose(bundle(*records, firewalls=(firewall("192.0.2.0/24"),)))
    assert result.root_cause == "firewall.eop_ranges_blocked"
    other = result.finding("smtp.nothing_listening")
    assert other is not None
    assert "Less supported" in other.ruled_out


def test_deliveries_through_a_policy_that_blocks_everything_lower_confidence() -> None:
    result = diagnose(bundle(*mixed_trace(), firewalls=(firewall("192.0.2.0/24"),)))
    blocked = result.finding("firewall.eop_ranges_blocked")
    assert blocked is not None
    assert blocked.confidence < 0.7
    assert any("NAT rule may be missing" in n for n in blocked.data["notes"])


def test_one_server_uncovered_is_info_and_the_other_is_still_judged() -> None:
    records = [
        *mixed_trace(),
        span("EX01", 0, 59),
        span("EX02", 35, 59),
        session("EX01", 12, "40.92.19.46"),
    ]
    result = diagnose(bundle(*records, firewalls=(firewall(*PERMITTED_EOP),)))
    gap = result.finding("logs.coverage_gap")
    assert gap is not None
    assert gap.severity == Severity.INFO
    assert gap.data["servers"] == ["EX02"]
    absent = result.finding("logs.eop_sessions_absent")
    assert absent is not None
    assert absent.data["servers"] == ["EX01", "EX02"]  # EX02 only over what it logged


def test_logs_silence_from_every_eop_address_supports_nothing_listening() -> None:
    records = [defer(1), defer(20, msg="m2"), span("EX01", 0, 59), session("EX01", 5, "10.0.0.9")]
    result = diagnose(bundle(*records))
    assert result.root_cause == "smtp.nothing_listening"
    root = result.root
    assert root is not None
    assert any("no session from any Exchange Online" in c for c in root.data["corroboration"])


def test_expiry_codes_are_reported_as_seen_and_ranked_as_their_deferral() -> None:
    expired = defer(60, code="5.4.316", msg="m9")
    result = diagnose(bundle(defer(1), expired, message("Failed", "m9")))
    summary = result.finding("trace.deferrals")
    assert summary is not None
    assert summary.data["by_code"] == {"4.4.316": 1, "5.4.316": 1}
    assert result.root_cause == "smtp.nothing_listening"
    assert result.root is not None
    assert result.root.data["refused"] == 2


def test_hub_logs_on_port_2525_do_not_count_as_coverage() -> None:
    from dataclasses import replace

    hub = replace(session("EX01", 10, "10.0.0.31"), local_port=2525)
    records = [defer(1), defer(20, msg="m2"), span("EX01", 0, 59), hub]
    result = diagnose(bundle(*records))
    assert result.finding("logs.eop_sessions_absent") is None
    assert result.finding("logs.coverage_gap") is None


def test_deliveries_named_by_host_meet_refusals_named_by_address() -> None:
    by_name = TraceEvent(
        ref=SourceRef("trace/detail.csv", 9, "Send external"),
        time_utc=at(30),
        event="Send external",
        action="",
        detail="Message sent to smtp.example.test using TLS1.2 with AES256",
        data="",
        message_id="m5",
    )
    result = diagnose(bundle(defer(1), defer(20, msg="m2"), by_name))
    assert result.root_cause == "firewall.partial_allow_list_suspected"


def test_one_dead_target_among_two_is_judged_per_target() -> None:
    elsewhere = TraceEvent(
        ref=SourceRef("trace/detail.csv", 9, "Send external"),
        time_utc=at(5),
        event="Send external",
        action="",
        detail="Message sent to mx2.example.test at 198.51.100.26 using TLS1.2 with AES256",
        data="",
        message_id="m3",
    )
    records = [defer(1), defer(20, msg="m2"), elsewhere]
    result = diagnose(bundle(*records))
    dead = result.finding("smtp.nothing_listening")
    assert dead is not None
    assert dead.data["target"] == PUBLIC
    # Deliveries that succeed only elsewhere also fit a changed public address; whichever
    # wins, the other says why it was not chosen.
    assert result.root_cause in ("smtp.nothing_listening", "dns.target_mismatch")
    loser = result.finding(
        "dns.target_mismatch" if result.root_cause == "smtp.nothing_listening" else dead.id
    )
    assert loser is None or loser.ruled_out


def test_old_reason_form_without_an_address_still_finds_target_and_gap() -> None:
    """2017-style `{FQDN=host};{IP=}`: the address comes from the deliveries to that host."""
    from dataclasses import replace

    def by_name(minute: float, msg: str) -> TraceEvent:
        event = defer(minute, msg=msg)
        assert event.reason is not None
        return replace(event, reason=replace(event.reason, ip=None, port=None))

    records = [by_name(10, "m1"), by_name(25, "m3"), sent(12, msg="m2"), sent(30, msg="m4")]
    result = diagnose(bundle(*records, firewalls=(firewall(*PERMITTED_EOP),)))
    assert result.root_cause == "firewall.eop_ranges_blocked"
    root = result.root
    assert root is not None
    assert root.data["destination"] == PUBLIC
    summary = result.finding("trace.deferrals")
    assert summary is not None
    assert summary.data["per_target"][PUBLIC]["refused"] == 2
