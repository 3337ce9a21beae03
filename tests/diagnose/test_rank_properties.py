"""Ranking invariants over arbitrary candidate sets (hypothesis)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from mailflow_doctor.diagnose.engine import MIN_ROOT_SCORE, rank, score
from mailflow_doctor.diagnose.model import Finding, Severity

CODES = ["4.4.316", "4.4.315", "4.4.317", "4.7.320", "5.4.316"]

findings = st.lists(
    st.builds(
        Finding,
        id=st.sampled_from(["a.x", "b.y", "c.z", "d.w", "e.v"]),
        severity=st.sampled_from(list(Severity)),
        title=st.just("t"),
        summary=st.just("s"),
        confidence=st.floats(0, 1),
        can_be_root_cause=st.booleans(),
        explains=st.lists(st.sampled_from(CODES), max_size=3).map(tuple),
    ),
    max_size=8,
)
observed = st.dictionaries(st.sampled_from(CODES[:4]), st.integers(1, 50), max_size=4).map(Counter)


@given(findings, observed)
def test_rank_invariants(items: list[Finding], seen: Counter[str]) -> None:
    ranked, root = rank(items, seen)
    assert len(ranked) == len(items)
    roots = [f for f in ranked if f.root_cause]
    assert len(roots) <= 1
    if root is None:
        assert not roots
    else:
        assert ranked[0].id == root
        assert ranked[0].root_cause
        assert ranked[0].can_be_root_cause
        assert score(ranked[0], seen) >= MIN_ROOT_SCORE
        # Nothing that explains none of the observed codes wins while codes were observed.
        if seen:
            assert score(ranked[0], seen) > 0
        for other in ranked[1:]:
            if other.can_be_root_cause:
                assert other.ruled_out
                assert score(other, seen) <= score(ranked[0], seen)
    rest = [f for f in ranked if not f.root_cause]
    assert [f.severity.rank for f in rest] == sorted(f.severity.rank for f in rest)


addresses = st.lists(
    st.one_of(
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(str),
        st.sampled_from(["", "not-an-ip", "10.0.0.256"]),
    ),
    max_size=40,
)


@given(addresses)
def test_ipset_of_and_within_match_the_slow_way(items: list[str]) -> None:
    from mailflow_doctor.diagnose.facts import ipset_of, parse_address, within
    from mailflow_doctor.knowledge.ipranges import IPSet

    good = [a for a in items if parse_address(a) is not None] if items else []
    expected = IPSet.parse(*good) if good else IPSet()
    assert ipset_of(items) == expected
    half = IPSet.parse("0.0.0.0/1", "::/1")
    assert within(items, half) == {a for a in good if a in half}
