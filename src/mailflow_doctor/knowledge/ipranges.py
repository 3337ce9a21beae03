"""Exact set arithmetic over IPv4 and IPv6 addresses.

Firewall verdicts must be right, not plausible: "which part of 52.100.0.0/14 does this ACL let
through" is answered with closed integer intervals, one sorted list per address family, and
turned back into the canonical CIDR list (collapsed, sorted, v4 before v6) that the output
contract demands. The set is immutable; every operation returns a new one.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

Family = Literal[4, 6]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

V4_MAX = (1 << 32) - 1
V6_MAX = (1 << 128) - 1

Interval = tuple[int, int]  # closed: (first, last)


class AddressParseError(ValueError):
    """Raised for text that is not an address, a CIDR, a mask pair or a range."""


def _normalise(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """Sort and merge overlapping or adjacent closed intervals."""
    ordered = sorted(i for i in intervals if i[0] <= i[1])
    merged: list[list[int]] = []
    for first, last in ordered:
        if merged and first <= merged[-1][1] + 1:
            if last > merged[-1][1]:
                merged[-1][1] = last
        else:
            merged.append([first, last])
    return tuple((a, b) for a, b in merged)


def _subtract(a: tuple[Interval, ...], b: tuple[Interval, ...]) -> tuple[Interval, ...]:
    if b and len(b) * _SPARSE < len(a):
        return _subtract_sparse(a, b)
    result: list[Interval] = []
    j = 0
    for first, last in a:
        cursor = first
        while j < len(b) and b[j][1] < cursor:
            j += 1
        k = j
        while k < len(b) and b[k][0] <= last:
            if b[k][0] > cursor:
                result.append((cursor, b[k][0] - 1))
            cursor = max(cursor, b[k][1] + 1)
            if cursor > last:
                break
            k += 1
        if cursor <= last:
            result.append((cursor, last))
    return tuple(result)


def _intersect(a: tuple[Interval, ...], b: tuple[Interval, ...]) -> tuple[Interval, ...]:
    if len(b) * _SPARSE < len(a):
        return _intersect_sparse(a, b)
    if len(a) * _SPARSE < len(b):
        return _intersect_sparse(b, a)
    result: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            result.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(result)


# When one operand has this many times more intervals than the other, walk only the small one
# and find its places in the big one by bisection: a firewall with thousands of one-range rules
# otherwise costs O(rules x intervals) in the evaluator.
_SPARSE = 8


def _first_touching(a: Sequence[Interval], value: int, start: int) -> int:
    """Index of the first interval of `a` (sorted, disjoint) from `start` on that ends >= value."""
    i = bisect_right(a, (value, V6_MAX + 1), start) - 1
    if i < start:
        return start
    return i if a[i][1] >= value else i + 1


def _intersect_sparse(
    big: tuple[Interval, ...], small: tuple[Interval, ...]
) -> tuple[Interval, ...]:
    result: list[Interval] = []
    pos = 0
    for lo, hi in small:
        i = _first_touching(big, lo, pos)
        while i < len(big) and big[i][0] <= hi:
            first, last = big[i]
            result.append((max(first, lo), min(last, hi)))
            if last > hi:
                break  # the same big interval may reach the next small one
            i += 1
        pos = i
    return tuple(result)


def _subtract_sparse(a: tuple[Interval, ...], b: tuple[Interval, ...]) -> tuple[Interval, ...]:
    out = list(a)
    pos = 0
    for lo, hi in b:
        i = _first_touching(out, lo, pos)
        j = i
        while j < len(out) and out[j][0] <= hi:
            j += 1
        if i < j:
            pieces: list[Interval] = []
            if out[i][0] < lo:
                pieces.append((out[i][0], lo - 1))
            if out[j - 1][1] > hi:
                pieces.append((hi + 1, out[j - 1][1]))
            out[i:j] = pieces
        pos = i
    return tuple(out)


def _interval_to_cidrs(first: int, last: int, bits: int) -> Iterator[tuple[int, int]]:
    """Yield (network int, prefix length) blocks covering [first, last] exactly, in order."""
    while first <= last:
        # Largest block aligned at `first` ...
        size = (first & -first).bit_length() - 1 if first else bits
        # ... that does not run past `last`.
        span = (last - first + 1).bit_length() - 1
        size = min(size, span)
        yield first, bits - size
        first += 1 << size


def parse_network(text: str) -> IPNetwork:
    """Parse `a.b.c.d`, `a.b.c.d/len`, `a.b.c.d mask` or an IPv6 form into a network.

    Host bits are cleared (firewalls do the same), so `10.1.2.3/24` is `10.1.2.0/24`.
    """
    raw = text.strip()
    if not raw:
        raise AddressParseError("empty address")
    parts = raw.split()
    try:
        if len(parts) == 2:
            return ipaddress.ip_network(f"{parts[0]}/{parts[1]}", strict=False)
        if len(parts) == 1:
            return ipaddress.ip_network(raw, strict=False)
    except ValueError as exc:
        raise AddressParseError(f"not an address or network: {raw!r}") from exc
    raise AddressParseError(f"not an address or network: {raw!r}")


@dataclass(frozen=True)
class IPSet:
    """An immutable set of IPv4 and IPv6 addresses held as merged closed intervals."""

    v4: tuple[Interval, ...] = field(default=())
    v6: tuple[Interval, ...] = field(default=())

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls) -> IPSet:
        return cls()

    @classmethod
    def universe(cls) -> IPSet:
        """Every IPv4 and IPv6 address (an `any` in a firewall rule)."""
        return cls(((0, V4_MAX),), ((0, V6_MAX),))

    @classmethod
    def all_v4(cls) -> IPSet:
        return cls(((0, V4_MAX),), ())

    @classmethod
    def all_v6(cls) -> IPSet:
        return cls((), ((0, V6_MAX),))

    @classmethod
    def from_networks(cls, networks: Iterable[IPNetwork | IPAddress]) -> IPSet:
        v4: list[Interval] = []
        v6: list[Interval] = []
        for net in networks:
            if isinstance(net, ipaddress.IPv4Address | ipaddress.IPv6Address):
                net = ipaddress.ip_network(net)
            interval = (int(net.network_address), int(net.broadcast_address))
            (v4 if net.version == 4 else v6).append(interval)
        return cls(_normalise(v4), _normalise(v6))

    @classmethod
    def parse(cls, *texts: str) -> IPSet:
        """Build from CIDR / address / `addr mask` / `first-last` strings."""
        result = cls()
        for text in texts:
            if "-" in text and "/" not in text:
                first_text, _, last_text = text.partition("-")
                result = result | cls.from_range(first_text.strip(), last_text.strip())
            else:
                result = result | cls.from_networks([parse_network(text)])
        return result

    @classmethod
    def from_range(cls, first: str | IPAddress, last: str | IPAddress) -> IPSet:
        """An inclusive address range such as ASA `range` or iptables `--src-range`."""
        try:
            a = ipaddress.ip_address(first) if isinstance(first, str) else first
            b = ipaddress.ip_address(last) if isinstance(last, str) else last
        except ValueError as exc:
            raise AddressParseError(f"not an address range: {first}-{last}") from exc
        if a.version != b.version:
            raise AddressParseError(f"range mixes IPv4 and IPv6: {a}-{b}")
        lo, hi = sorted((int(a), int(b)))
        if a.version == 4:
            return cls(((lo, hi),), ())
        return cls((), ((lo, hi),))

    @classmethod
    def from_wildcard(cls, address: str, wildcard: str) -> IPSet:
        """Cisco IOS `address wildcard` pairs, including non-contiguous wildcard bits.

        A contiguous wildcard is one block; a discontiguous one is expanded into the blocks it
        denotes (at most 2**16 of them, which covers every mask seen in practice).
        """
        try:
            addr = int(ipaddress.IPv4Address(address))
            wild = int(ipaddress.IPv4Address(wildcard))
        except ValueError as exc:
            raise AddressParseError(f"not an address/wildcard pair: {address} {wildcard}") from exc
        base = addr & ~wild & V4_MAX
        # Trailing contiguous ones form the block size; the other set bits are enumerated.
        low_bits = (wild + 1) & -(wild + 1)  # lowest zero bit of `wild` as a power of two
        block = low_bits - 1
        high = wild & ~block
        bits = [1 << i for i in range(32) if high >> i & 1]
        if len(bits) > 16:
            raise AddressParseError(f"wildcard {wildcard} is too fragmented to expand")
        intervals: list[Interval] = []
        for combo in range(1 << len(bits)):
            offset = 0
            for idx, bit in enumerate(bits):
                if combo >> idx & 1:
                    offset |= bit
            start = base | offset
            intervals.append((start, start | block))
        return cls(_normalise(intervals), ())

    # ---- algebra ---------------------------------------------------------------------------
    def __or__(self, other: IPSet) -> IPSet:
        return IPSet(_normalise(self.v4 + other.v4), _normalise(self.v6 + other.v6))

    def __and__(self, other: IPSet) -> IPSet:
        return IPSet(_intersect(self.v4, other.v4), _intersect(self.v6, other.v6))

    def __sub__(self, other: IPSet) -> IPSet:
        return IPSet(_subtract(self.v4, other.v4), _subtract(self.v6, other.v6))

    def complement(self) -> IPSet:
        return IPSet.universe() - self

    def __bool__(self) -> bool:
        return bool(self.v4 or self.v6)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            try:
                item = ipaddress.ip_address(item)
            except ValueError:
                return False
        if not isinstance(item, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        intervals = self.v4 if item.version == 4 else self.v6
        value = int(item)
        idx = bisect_right(intervals, (value, V6_MAX + 1)) - 1
        return idx >= 0 and intervals[idx][0] <= value <= intervals[idx][1]

    def issubset(self, other: IPSet) -> bool:
        return not (self - other)

    def overlaps(self, other: IPSet) -> bool:
        return bool(self & other)

    def only(self, family: Family) -> IPSet:
        return IPSet(self.v4, ()) if family == 4 else IPSet((), self.v6)

    def size(self) -> int:
        """Number of addresses (IPv4 and IPv6 added together)."""
        return sum(b - a + 1 for a, b in self.v4) + sum(b - a + 1 for a, b in self.v6)

    # ---- output ----------------------------------------------------------------------------
    def networks(self) -> list[IPNetwork]:
        """The canonical CIDR list: collapsed, sorted, IPv4 before IPv6."""
        result: list[IPNetwork] = []
        for first, last in self.v4:
            for net, plen in _interval_to_cidrs(first, last, 32):
                result.append(ipaddress.IPv4Network((net, plen)))
        for first, last in self.v6:
            for net, plen in _interval_to_cidrs(first, last, 128):
                result.append(ipaddress.IPv6Network((net, plen)))
        return result

    def cidrs(self) -> list[str]:
        return [str(n) for n in self.networks()]

    def __repr__(self) -> str:
        shown = self.cidrs()
        if len(shown) > 8:
            shown = [*shown[:8], f"... {len(shown) - 8} more"]
        return f"IPSet({shown})"


def canonical_cidrs(texts: Iterable[str]) -> list[str]:
    """Collapse and sort a list of CIDR strings into the contract's canonical form."""
    return IPSet.parse(*texts).cidrs()


def ip_sort_key(text: str) -> tuple[int, int, str]:
    """Sort key placing IPv4 before IPv6, then by numeric address; unparsable text last."""
    try:
        net = parse_network(text)
    except AddressParseError:
        return (9, 0, text)
    return (net.version, int(net.network_address), text)
