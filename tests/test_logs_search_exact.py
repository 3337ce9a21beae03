"""The exact row regex of `logs search --count` decides every endpoint as the careful check does.

For the usual spellings the regex alone says in or out (no Python per row), so it must agree
with `RangeMatcher.contains_endpoint` on every address near and inside the ranges, however the
address and port are written; unusual spellings must be captured for the careful check.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow_doctor.evidence.document import Document
from mailflow_doctor.evidence.logsearch import RangeMatcher, count_sessions
from mailflow_doctor.knowledge.endpoints import load
from mailflow_doctor.knowledge.ipranges import IPSet

EOP = load().eop_smtp_ranges()


def regex_says_inside(matcher: RangeMatcher, endpoint: str) -> bool:
    """What the fast path concludes for one row with this remote-endpoint."""
    pattern = matcher.compiled_exact_pattern()
    assert pattern is not None
    row = f"\n2026-11-28T14:00:00.000Z,EX01\\Default,08DE0001,3,10.0.0.5:25,{endpoint},+,,\r\n"
    found = pattern.findall(row.encode())
    assert len(found) <= 1
    if not found:
        return False
    key, unusual = found[0]
    assert key == b"EX01\\Default,08DE0001"
    return not unusual or matcher.contains_endpoint(unusual)


def spellings(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]:
    """The ways a log could write this address (usual ones first)."""
    if address.version == 4:
        text = str(address)
        return [text, "[" + text + "]", ".".join(o.zfill(3) for o in text.split("."))]
    full = address.exploded
    short = ":".join(group.lstrip("0") or "0" for group in full.split(":"))
    return [
        address.compressed,
        short,  # every group, no leading zeros
        full,  # leading zeros
        address.compressed.upper(),
        "[" + address.compressed + "]",
    ]


def near(ranges: IPSet) -> st.SearchStrategy[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Addresses at, just inside and just outside the edges of the ranges, and random ones."""
    edges: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for intervals, top, make in (
        (ranges.v4, 2**32 - 1, ipaddress.IPv4Address),
        (ranges.v6, 2**128 - 1, ipaddress.IPv6Address),
    ):
        for lo, hi in intervals:
            for value in (lo - 1, lo, lo + 1, (lo + hi) // 2, hi - 1, hi, hi + 1):
                if 0 <= value <= top:
                    edges.append(make(value))
    return st.one_of(st.sampled_from(edges), st.ip_addresses())


PORTS = st.sampled_from([":25", ":61234", ":0", "", ":", ":x", ":25:26"])


@settings(max_examples=400, deadline=None)
@given(near(EOP), st.integers(min_value=0, max_value=4), PORTS)
def test_eop_regex_agrees_with_exact_check(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, form: int, port: str
) -> None:
    matcher = RangeMatcher(EOP)
    forms = spellings(address)
    endpoint = forms[form % len(forms)] + port
    assert regex_says_inside(matcher, endpoint) == matcher.contains_endpoint(endpoint.encode())


@st.composite
def cidr_sets(draw: st.DrawFn) -> IPSet:
    """A few random networks: whole and partial octets, IPv6 /16-/128, sometimes both."""
    parts: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if draw(st.booleans()):
            address = draw(st.ip_addresses(v=4))
            length = draw(st.integers(min_value=0, max_value=32))
        else:
            address = draw(st.ip_addresses(v=6))
            length = draw(st.sampled_from([16, 20, 32, 47, 48, 64, 120, 128]))
        parts.append(str(ipaddress.ip_network(f"{address}/{length}", strict=False)))
    return IPSet.parse(*parts)


@settings(max_examples=150, deadline=None)
@given(cidr_sets(), st.data())
def test_random_ranges_regex_agrees_with_exact_check(ranges: IPSet, data: st.DataObject) -> None:
    matcher = RangeMatcher(ranges)
    if matcher.compiled_exact_pattern() is None:
        return  # not spelled exactly: the superset path with a check per endpoint is used
    for _ in range(10):
        address = data.draw(near(ranges))
        forms = spellings(address)
        endpoint = forms[data.draw(st.integers(0, len(forms) - 1))] + data.draw(PORTS)
        inside = matcher.contains_endpoint(endpoint.encode())
        assert regex_says_inside(matcher, endpoint) == inside, (ranges.cidrs(), endpoint)


def test_eop_is_spelled_exactly_and_unusable_ranges_fall_back() -> None:
    assert RangeMatcher(EOP).compiled_exact_pattern() is not None
    assert RangeMatcher(IPSet.parse("0.0.0.0/0")).compiled_exact_pattern() is not None
    # A zero leading group has more than one usual spelling (`2001:db8:0:1::` and
    # `2001:db8::1:0:0:0:0`): no exact regex, the checked superset path instead.
    assert RangeMatcher(IPSet.parse("2001:db8::/48")).compiled_exact_pattern() is None
    assert RangeMatcher(IPSet.parse("::/0")).compiled_exact_pattern() is None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["EX01\\A", "Outbound, to EOP", '"q"uoted']),
            st.sampled_from(["08DE01", "08DE02", "08DE03"]),
            st.sampled_from(
                [
                    "40.92.1.1:25",
                    "[40.92.1.1]:25",  # unusual, inside: captured and accepted
                    "[104.47.200.1]:25",  # unusual, outside: the file is counted carefully
                    "104.47.200.1:25",
                    "2a01:111:f400:0:0:0:0:1:25",
                    "2A01:111:F403::1:25",
                    "2a01:111:f401::1:25",
                    "10.0.0.9:25",
                ]
            ),
        ),
        max_size=20,
    ),
    st.sampled_from([EOP, IPSet.parse("2001:db8::/48", "40.92.0.0/15")]),
)
def test_file_counts_equal_row_parse(
    tmp_path: Path, rows: list[tuple[str, str, str]], ranges: IPSet
) -> None:
    from mailflow_doctor.evidence.exchangelog import join_row

    path = tmp_path / "RECV.LOG"
    lines = [
        join_row(["2026-11-28T14:00:00.000Z", conn, sid, "1", "10.0.0.5:25", ep, "+", "", ""])
        for conn, sid, ep in rows
    ]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    matcher = RangeMatcher(ranges)
    sessions = {(conn, sid) for conn, sid, ep in rows if matcher.contains_endpoint(ep.encode())}
    inside = sum(matcher.contains_endpoint(ep.encode()) for _, _, ep in rows)
    fast = count_sessions([Document.open(path)], ranges)
    assert fast.slow_path_files == []
    assert (fast.sessions, fast.lines) == (len(sessions), inside)
