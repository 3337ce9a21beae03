"""The status-code knowledge base: well formed, sourced, and answering every kind of lookup."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mailflow_doctor.knowledge.status_codes import (
    KnowledgeError,
    code_key,
    data_text,
    describe_enhanced,
    load,
    parse,
)

# The contract's finding ids (spec/output-contract.md), both tables.
CONTRACT_IDS = {
    "trace.deferrals",
    "firewall.eop_ranges_blocked",
    "firewall.eop_ranges_permitted_partially",
    "firewall.stale_eop_objects",
    "firewall.drops_from_eop",
    "firewall.drops_from_unpublished",
    "smtp.nothing_listening",
    "smtp.connection_timeout",
    "logs.eop_sessions_absent",
    "logs.coverage_gap",
    "tls.starttls_missing",
    "tls.certificate_name_mismatch",
    "tls.certificate_expired",
    "tls.chain_untrusted",
    "dns.resolution_failed",
    "dns.target_mismatch",
    "connector.tls_certificate_name_mismatch",
    "routing.cmt_bypass",
    "smtp.connection_refused",
    "smtp.host_unreachable",
    "smtp.connection_reset",
    "smtp.banner_invalid",
    "tls.handshake_failed",
    "tls.chain_incomplete",
    "tls.certificate_self_signed",
    "tls.certificate_not_yet_valid",
    "tls.certificate_usage_invalid",
    "tls.certificate_weak",
}


def test_every_entry_and_point_has_sources_that_exist() -> None:
    kb = load()
    assert len(kb.entries) > 50
    for entry in kb.entries:
        assert entry.sources, entry.id
        assert all((entry.meaning, entry.on_the_wire, entry.title)), entry.id
        assert all((entry.causes, entry.checks, entry.fixes)), entry.id
        for point in (*entry.causes, *entry.checks, *entry.fixes):
            assert point.sources, (entry.id, point.text)
            for source in point.sources:
                assert source in kb.sources, (entry.id, source)


def test_every_referenced_finding_id_is_in_the_contract_or_declared_new() -> None:
    kb = load()
    unknown = kb.referenced_finding_ids() - CONTRACT_IDS - set(kb.new_finding_ids)
    assert not unknown
    # Declared new ids must not shadow contract ids, and must look like conclusions.
    assert not set(kb.new_finding_ids) & CONTRACT_IDS
    for finding_id in kb.new_finding_ids:
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", finding_id)


def test_contract_table_matches_the_spec_when_present() -> None:
    spec = Path(__file__).resolve().parents[2].parent / "shared" / "spec" / "output-contract.md"
    if not spec.exists():
        pytest.skip("../shared/spec is not present")
    ids = set(re.findall(r"^\| `([a-z]+\.[a-z_]+)` \|", spec.read_text(), re.MULTILINE))
    assert ids == CONTRACT_IDS


def test_sources_carry_titles_and_match_the_research_notes(samples: Path) -> None:
    research = samples.parent / "research" / "error-codes.yaml"
    known = yaml.safe_load(research.read_text(encoding="utf-8"))["sources"]
    kb = load()
    for source_id, source in kb.sources.items():
        assert source_id in known
        assert source.title == known[source_id]["title"]


def test_every_research_code_has_an_entry(samples: Path) -> None:
    research = yaml.safe_load(
        (samples.parent / "research" / "error-codes.yaml").read_text(encoding="utf-8")
    )
    kb = load()
    for item in research["codes"]:
        for code in re.findall(r"(?<![\d.])[245]\.\d{1,3}\.\d{1,3}(?![\dx])", str(item["code"])):
            assert kb.by_enhanced(code) is not None, code
    for item in research["socket_errors"]:
        assert kb.by_socket(int(item["code"])) is not None, item["code"]


@pytest.mark.parametrize(
    ("code", "entry_id"),
    [
        ("4.4.316", "4.4.316"),
        ("4.4.315", "4.4.315"),
        ("4.4.312", "4.4.312"),
        ("4.4.317", "4.4.317"),
        ("4.4.318", "4.4.318"),
        ("4.7.320", "4.7.320"),
        ("4.7.321", "4.7.321-4.7.325"),
        ("5.7.325", "4.7.321-4.7.325"),
        ("4.4.7", "4.4.7"),
        ("5.4.300", "5.4.300"),
        ("5.4.316", "5.4.31x"),
        ("4.4.397", "4.4.397"),
        ("4.4.395", "4.4.397"),
        ("4.4.101", "4.4.0"),
        ("4.7.600", "4.7.500-4.7.899"),
        ("4.7.860", "4.7.500-4.7.899"),
        ("5.7.509", "5.7.5xx-5.7.6xx"),
        ("5.7.64", "5.7.64"),
        ("5.7.3", "5.7.3"),
        ("5.7.51", "5.7.51"),
        ("5.7.54", "5.7.54"),
        ("5.7.57", "5.7.57"),
        ("5.7.750", "5.7.7xx"),
        ("5.1.10", "5.1.x"),
    ],
)
def test_lookup_by_enhanced_code(code: str, entry_id: str) -> None:
    entry = load().by_enhanced(code)
    assert entry is not None
    assert entry.id == entry_id


def test_unknown_codes_and_non_codes() -> None:
    kb = load()
    assert kb.by_enhanced("4.9.999") is None
    assert kb.by_enhanced("40.107.0.1") is None
    assert kb.by_enhanced("not a code") is None
    assert code_key("4.04.316") == (4, 4, 316)
    assert "network and routing" in describe_enhanced("4.4.999")
    assert "security or policy" in describe_enhanced("5.7.999")
    assert describe_enhanced("nonsense") == ""


def test_expiry_maps_back_to_its_deferral() -> None:
    kb = load()
    for expiry, deferral in [
        ("5.4.316", "4.4.316"),
        ("5.4.317", "4.4.317"),
        ("5.4.315", "4.4.315"),
    ]:
        entry = kb.deferral_for(expiry)
        assert entry is not None
        assert entry.id == deferral
    assert kb.deferral_for("4.4.316") is None


@pytest.mark.parametrize(
    ("number", "name"),
    [
        (10060, "WSAETIMEDOUT"),
        (10061, "WSAECONNREFUSED"),
        (10054, "WSAECONNRESET"),
        (10053, "WSAECONNABORTED"),
        (10051, "WSAENETUNREACH"),
        (10064, "WSAEHOSTDOWN"),
        (10065, "WSAEHOSTUNREACH"),
        (10013, "WSAEACCES"),
        (11001, "WSAHOST_NOT_FOUND"),
        (11002, "WSATRY_AGAIN"),
        (11004, "WSANO_DATA"),
        (995, "WSA_OPERATION_ABORTED"),
    ],
)
def test_lookup_by_socket_error(number: int, name: str) -> None:
    entry = load().by_socket(number)
    assert entry is not None
    assert entry.title.startswith(name)
    assert entry.on_the_wire


@pytest.mark.parametrize(
    ("text", "entry_id"),
    [
        ("[Message=SubjectMismatch Expected Subject: *.contoso.com.", "subject-mismatch"),
        ("CertificateExpired Expected Subject: a", "certificate-expired"),
        ("[Message=UntrustedRoot]", "untrusted-root"),
        ("451 5.7.3 STARTTLS is required to send mail", "starttls-required"),
        ("451 4.4.0 TLS negotiation failed with error ConnectionAborted", "tls-negotiation-failed"),
        ("451 4.4.0 Security status IllegalMessage", "tls-negotiation-failed"),
        (
            "Connection was closed abruptly (SuspiciousRemoteServerError)",
            "suspicious-remote-server",
        ),
        ("UnknownExpectedTlsDomain", "unknown-expected-tls-domain"),
        (
            "550-5.7.0 Connection refused - IB116. 40.107.107.122 Senderscore too low.",
            "remote-banner-reject",
        ),
    ],
)
def test_lookup_by_message_pattern(text: str, entry_id: str) -> None:
    assert entry_id in [entry.id for entry in load().by_message(text)]


def test_lookup_by_smtp_code() -> None:
    kb = load()
    assert getattr(kb.by_smtp("421"), "id", None) == "smtp-421"
    assert getattr(kb.by_smtp(451), "id", None) == "smtp-450"
    assert getattr(kb.by_smtp("554"), "id", None) == "smtp-550"
    assert kb.by_smtp("220") is None


def test_every_example_finds_its_own_entry() -> None:
    """Each example string in the data must lead back to the entry it illustrates."""
    kb = load()
    for entry in kb.entries:
        for example in entry.examples:
            hits = {e.id for e in kb.by_message(example)}
            for code in re.findall(r"(?<![\w.])[245]\.\d{1,3}\.\d{1,3}(?![\w.])", example):
                for hit in (kb.by_enhanced(code), kb.deferral_for(code)):
                    if hit:
                        hits.add(hit.id)
            for number in re.findall(r"(?:error code:?|code)\s+(\d{3,5})", example):
                hit = kb.by_socket(int(number))
                if hit:
                    hits.add(hit.id)
            if entry.kind == "smtp":
                hits.add(kb.by_smtp(example[:3]).id)  # type: ignore[union-attr]
            assert entry.id in hits, (entry.id, example)


def test_commands_use_known_placeholders_only() -> None:
    for entry in load().entries:
        for point in entry.checks:
            if point.command:
                assert point.command.startswith("mailflow-doctor ")
                assert set(re.findall(r"\{(\w+)\}", point.command)) <= {
                    "target",
                    "ip",
                    "port",
                    "evidence",
                }


def test_malformed_knowledge_is_refused() -> None:
    good = yaml.safe_load(data_text())
    broken = dict(good)
    broken["entries"] = [dict(good["entries"][0], sources=[])]
    with pytest.raises(KnowledgeError, match="no sources"):
        parse(yaml.safe_dump(broken))
    broken["entries"] = [dict(good["entries"][0], sources=["NOPE"])]
    with pytest.raises(KnowledgeError, match="unknown sources"):
        parse(yaml.safe_dump(broken))
    broken["entries"] = [dict(good["entries"][0], codes=["4.4"])]
    with pytest.raises(KnowledgeError, match="bad code"):
        parse(yaml.safe_dump(broken))
    with pytest.raises(KnowledgeError):
        parse("[unclosed")


def test_hybrid_checks_emit_only_known_finding_ids() -> None:
    """The ids the hybrid checks report are the contract's or declared new in the data."""
    rules = Path(__file__).resolve().parents[2] / "src" / "mailflow_doctor" / "diagnose" / "rules"
    kb = load()
    emitted: set[str] = set()
    for name in ("tls", "connectors", "dns_target", "routing", "message_path"):
        text = (rules / f"{name}.py").read_text(encoding="utf-8")
        emitted.update(re.findall(r'id="([a-z]+\.[a-z_]+)"', text))
    assert emitted
    assert emitted <= CONTRACT_IDS | set(kb.new_finding_ids), emitted - CONTRACT_IDS
    declared = set(kb.new_finding_ids)
    assert declared <= emitted  # nothing declared that no check reports
