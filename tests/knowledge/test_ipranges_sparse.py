"""The bisection paths of the IP set arithmetic (one operand much smaller than the other) give
exactly what the plain merge gives: checked against sets of single addresses."""

from __future__ import annotations

import ipaddress
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from mailflow_doctor.knowledge import ipranges
from mailflow_doctor.knowledge.ipranges import IPSet

# small universe: 0..255 as v4 addresses 10.0.0.x, so sets can be enumerated exactly
intervals = st.lists(
    st.tuples(st.integers(0, 255), st.integers(0, 8)).map(lambda t: (t[0], min(255, t[0] + t[1]))),
    max_size=60,
)


def _set(raw: list[tuple[int, int]]) -> IPSet:
    base = 0x0A000000
    return IPSet(ipranges._normalise((base + a, base + b) for a, b in raw), ())


def _members(s: IPSet) -> set[int]:
    return {x for a, b in s.v4 for x in range(a, b + 1)}


@settings(max_examples=400, deadline=None)
@given(intervals, intervals)
def test_sparse_paths_agree_with_plain_sets(
    a_raw: list[tuple[int, int]], b_raw: list[tuple[int, int]]
) -> None:
    a, b = _set(a_raw), _set(b_raw)
    for x, y in ((a, b), (b, a)):
        assert _members(x | y) == _members(x) | _members(y)
        assert _members(x & y) == _members(x) & _members(y)
        assert _members(x - y) == _members(x) - _members(y)
        # results stay canonical: sorted, disjoint, not adjacent
        for result in (x | y, x & y, x - y):
            pairs = result.v4
            assert all(p[0] <= p[1] for p in pairs)
            assert all(p[1] + 1 < q[0] for p, q in itertools.pairwise(pairs))


def test_union_with_nothing_still_sorts_and_merges() -> None:
    """Parsers build sets from raw intervals and rely on `| IPSet()` to make them canonical."""
    raw = IPSet(((30, 40), (10, 20), (15, 35)), ())
    assert (raw | IPSet()).v4 == ((10, 40),)
    assert (IPSet() | raw).v4 == ((10, 40),)


def test_many_single_ranges_against_one_stay_fast() -> None:
    many = IPSet.from_networks(
        ipaddress.IPv4Network(f"100.{i // 256}.{i % 256}.0/28") for i in range(20000)
    )
    one = IPSet.parse("100.10.0.0/16")
    assert (many - one).size() == many.size() - (many & one).size()
    assert (many | one).issubset(IPSet.parse("100.0.0.0/8"))
    for i in range(200):  # carve single blocks out of the big set, one at a time
        block = IPSet.parse(f"100.{i}.0.0/28")
        many = many - block
        assert not many & block
    assert many.size() == (20000 - 79) * 16  # 100.0.0.0 .. 100.78.0.0 were in the set


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 5), st.lists(st.tuples(st.integers(0, 255), st.integers(0, 40)), max_size=3))
def test_one_small_operand_takes_the_bisection_path(
    step: int, b_raw: list[tuple[int, int]]
) -> None:
    a = _set([(i, i) for i in range(0, 256, step)])  # 52..128 separate intervals
    b = _set([(lo, min(255, lo + n)) for lo, n in b_raw])
    assert len(b.v4) * ipranges._SPARSE < len(a.v4)
    for x, y in ((a, b), (b, a)):
        assert _members(x | y) == _members(x) | _members(y)
        assert _members(x & y) == _members(x) & _members(y)
        assert _members(x - y) == _members(x) - _members(y)
