"""Property tests for the probe's parsers: SMTP replies, --resolver, certificate name matching."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from mailflow_doctor.probe.certs import CertInfo, name_matches
from mailflow_doctor.probe.dns import ResolverSpec, ResolverSpecError
from mailflow_doctor.probe.smtp import MAX_LINE, Channel, ReadFailure, Reply

_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _read(data: bytes) -> Reply | ReadFailure:
    left, right = socket.socketpair()
    try:
        right.sendall(data)
        right.shutdown(socket.SHUT_WR)
        try:
            return Channel(left).read_reply(time.monotonic() + 2)
        except ReadFailure as failure:
            return failure
    finally:
        left.close()
        right.close()


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_give_a_reply_or_a_named_failure(data: bytes) -> None:
    result = _read(data)
    if isinstance(result, Reply):
        assert 200 <= result.code <= 599
        assert all("\x1b" not in line for line in result.lines)
    else:
        assert result.kind in {"closed", "garbage", "line_too_long", "reply_too_big", "reset"}


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([220, 250, 421, 454, 554]),
    st.lists(st.text(alphabet="abcdefghij -.", max_size=40), min_size=1, max_size=6),
)
def test_multiline_replies_are_joined(code: int, texts: list[str]) -> None:
    lines = [f"{code}-{t}" for t in texts[:-1]] + [f"{code} {texts[-1]}"]
    result = _read(("\r\n".join(lines) + "\r\n").encode())
    assert isinstance(result, Reply)
    assert result.code == code
    assert list(result.lines) == [t.strip() for t in texts]


def test_line_cap() -> None:
    result = _read(b"220 " + b"x" * (MAX_LINE + 10) + b"\r\n")
    assert isinstance(result, ReadFailure)
    assert result.kind == "line_too_long"


@given(st.text(max_size=60))
def test_resolver_spec_parses_or_says_why(text: str) -> None:
    message = ""
    try:
        spec = ResolverSpec.parse(text)
    except ResolverSpecError as exc:
        message = str(exc)
    if message:
        assert "--resolver" in message
    else:
        if spec.host is not None:
            ipaddress.ip_address(spec.host)
            assert 0 < spec.port < 65536


@given(st.ip_addresses(), st.integers(min_value=1, max_value=65535))
def test_resolver_spec_round_trips(address: ipaddress.IPv4Address, port: int) -> None:
    spec = ResolverSpec(str(address), port)
    assert ResolverSpec.parse(spec.describe()) == spec


_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)


def _info(*sans: str, cn: str = "") -> CertInfo:
    return CertInfo(
        subject=f"CN={cn}",
        issuer="CN=x",
        common_name=cn,
        sans=sans,
        has_san=bool(sans),
        not_before=_EPOCH,
        not_after=_EPOCH,
        sha256="",
        sha1="",
        self_signed=False,
        is_ca=False,
        key="EC",
        signature_hash="sha256",
    )


@given(st.lists(_label, min_size=2, max_size=4), _label, _label)
def test_wildcard_covers_exactly_one_label(labels: list[str], extra: str, other: str) -> None:
    domain = ".".join(labels)
    wildcard = _info(f"*.{domain}")
    assert name_matches(wildcard, f"{extra}.{domain}".upper())
    assert not name_matches(wildcard, domain)
    assert not name_matches(wildcard, f"{other}.{extra}.{domain}")


@given(st.lists(_label, min_size=2, max_size=4))
def test_cn_counts_only_without_san(labels: list[str]) -> None:
    name = ".".join(labels)
    assert name_matches(_info(cn=name), name)
    assert not name_matches(_info("other.invalid", cn=name), name)
