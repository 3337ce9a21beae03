from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailflow_doctor.knowledge.ipranges import AddressParseError, IPSet, canonical_cidrs

V4 = st.builds(
    lambda addr, plen: ipaddress.IPv4Network((addr, plen), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
V6 = st.builds(
    lambda addr, plen: ipaddress.IPv6Network((addr, plen), strict=False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
NETS = st.lists(st.one_of(V4, V6), max_size=8)
PROBE = st.one_of(
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
)


def _members(nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network], addr: object) -> bool:
    return any(addr in n for n in nets)


@given(NETS, NETS, st.lists(PROBE, max_size=20))
def test_algebra_matches_membership(a, b, probes) -> None:
    sa, sb = IPSet.from_networks(a), IPSet.from_networks(b)
    # Probe the edges of every block too: that is where off-by-one errors live.
    edges = [n.network_address for n in a + b] + [n.broadcast_address for n in a + b]
    for addr in list(probes) + edges:
        in_a, in_b = _members(a, addr), _members(b, addr)
        assert (addr in (sa | sb)) == (in_a or in_b)
        assert (addr in (sa & sb)) == (in_a and in_b)
        assert (addr in (sa - sb)) == (in_a and not in_b)
        assert (addr in sa.complement()) == (not in_a)


@given(NETS)
def test_cidrs_are_canonical_and_exact(nets) -> None:
    s = IPSet.from_networks(nets)
    out = [ipaddress.ip_network(c) for c in s.cidrs()]
    expected = list(ipaddress.collapse_addresses([n for n in nets if n.version == 4])) + list(
        ipaddress.collapse_addresses([n for n in nets if n.version == 6])
    )
    assert out == expected
    assert IPSet.parse(*s.cidrs()) == s
    assert s.size() == sum(n.num_addresses for n in expected)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_range_equals_summarised_range(x, y) -> None:
    lo, hi = sorted((x, y))
    s = IPSet.from_range(str(ipaddress.IPv4Address(lo)), str(ipaddress.IPv4Address(hi)))
    expected = ipaddress.summarize_address_range(
        ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi)
    )
    assert s.cidrs() == [str(n) for n in expected]


@given(
    st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1).filter(lambda w: bin(w).count("1") <= 12)
)
def test_wildcard_matches_bitwise_definition(addr, wild) -> None:
    s = IPSet.from_wildcard(str(ipaddress.IPv4Address(addr)), str(ipaddress.IPv4Address(wild)))
    base = addr & ~wild & 0xFFFFFFFF
    assert s.size() == 2 ** bin(wild).count("1")
    for probe in (base, base | wild, addr):
        assert ipaddress.IPv4Address(probe) in s
    outside = base ^ (~wild & 0xFFFFFFFF & -(~wild & 0xFFFFFFFF))  # flip the lowest fixed bit
    if wild != 0xFFFFFFFF:
        assert ipaddress.IPv4Address(outside) not in s


def test_eop_gap_example() -> None:
    published = IPSet.parse("40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17")
    allowed = IPSet.parse("40.92.0.0/15", "104.47.0.0/17", "52.100.0.0/15")
    assert (published - allowed).cidrs() == ["40.107.0.0/16", "52.102.0.0/15"]


def test_parse_forms() -> None:
    assert IPSet.parse("10.1.2.3/24").cidrs() == ["10.1.2.0/24"]
    assert IPSet.parse("10.0.0.0 255.255.255.0").cidrs() == ["10.0.0.0/24"]
    assert IPSet.parse("10.0.0.1-10.0.0.6").cidrs() == [
        "10.0.0.1/32",
        "10.0.0.2/31",
        "10.0.0.4/31",
        "10.0.0.6/32",
    ]
    assert IPSet.parse("2a01:111:f400:0000::/48").cidrs() == ["2a01:111:f400::/48"]
    assert canonical_cidrs(["2a01::/16", "10.0.0.0/9", "10.128.0.0/9"]) == [
        "10.0.0.0/8",
        "2a01::/16",
    ]
    with pytest.raises(AddressParseError):
        IPSet.parse("not-an-address")
    with pytest.raises(AddressParseError):
        IPSet.from_range("10.0.0.1", "::1")


def test_contains_strings_and_garbage() -> None:
    s = IPSet.parse("40.107.0.0/16")
    assert "40.107.255.255" in s
    assert "40.108.0.0" not in s
    assert "garbage" not in s
    assert 5 not in s
