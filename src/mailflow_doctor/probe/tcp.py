"""TCP connect to port 25, classified the way Exchange Online would experience it.

A reset answering the SYN is what Exchange Online reports as 4.4.316 (socket error 10061), a
silent drop as 4.4.315 (10060), a session torn down after connecting as 4.4.318. An ICMP
unreachable has no documented Exchange Online code; it is reported as its own outcome.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from dataclasses import dataclass

CONNECTED = "connected"
REFUSED = "refused"
TIMEOUT = "timeout"
UNREACHABLE = "unreachable"
RESET = "reset"
NOT_TRIED = "not_tried"

# What Exchange Online reports for each outcome (a DNS failure is 4.4.312).
EXO_CODE = {REFUSED: "4.4.316", TIMEOUT: "4.4.315", RESET: "4.4.318"}
EXO_DNS_CODE = "4.4.312"

_REFUSED_ERRNOS = {errno.ECONNREFUSED, 10061}
_TIMEOUT_ERRNOS = {errno.ETIMEDOUT, 10060}
_UNREACHABLE_ERRNOS = {
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    getattr(errno, "EHOSTDOWN", -1),
    errno.EACCES,
    errno.EPERM,
    errno.EADDRNOTAVAIL,
    10065,
    10051,
    10064,
    10013,
}


@dataclass(frozen=True)
class ConnectResult:
    """How the TCP connect ended, how long it took and the local address used."""

    address: str
    port: int
    outcome: str  # connected, refused, timeout, unreachable, not_tried
    ms: int
    detail: str = ""
    errno: int | None = None
    local_address: str = ""

    @property
    def exo_code(self) -> str:
        return EXO_CODE.get(self.outcome, "")


class SourceAddressError(ValueError):
    """--source names an address this host cannot bind."""


def family_of(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def check_source(source: str) -> None:
    """Fail early, with a clear message, when --source cannot be used on this host."""
    try:
        family = family_of(source)
    except ValueError:
        raise SourceAddressError(f"--source {source!r} is not an IP address") from None
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((source, 0))
        except OSError as exc:
            raise SourceAddressError(
                f"--source {source}: this host cannot send from that address "
                f"({exc.strerror or exc})"
            ) from None


def classify_errno(code: int | None) -> str:
    if code in _REFUSED_ERRNOS:
        return REFUSED
    if code in _TIMEOUT_ERRNOS:
        return TIMEOUT
    return UNREACHABLE


def connect(
    address: str, port: int, timeout: float, source: str | None = None
) -> tuple[ConnectResult, socket.socket | None]:
    """Connect within `timeout` seconds; the socket is returned only when connected."""
    family = family_of(address)
    if source and family_of(source) != family:
        kind = "IPv6" if family == socket.AF_INET6 else "IPv4"
        return (
            ConnectResult(
                address, port, NOT_TRIED, 0, f"--source {source} cannot reach an {kind} address"
            ),
            None,
        )
    sock = socket.socket(family, socket.SOCK_STREAM)
    started = time.perf_counter()
    try:
        if source:
            sock.bind((source, 0))
        sock.settimeout(max(0.01, timeout))
        sock.connect((address, port))
    except TimeoutError:
        sock.close()
        return _result(address, port, TIMEOUT, started, "no answer to the connection attempt"), None
    except OSError as exc:
        sock.close()
        outcome = classify_errno(exc.errno)
        if isinstance(exc, ConnectionRefusedError):
            outcome = REFUSED
        detail = exc.strerror or str(exc)
        return _result(address, port, outcome, started, detail, exc.errno), None
    local = sock.getsockname()[0]
    return _result(address, port, CONNECTED, started, "", None, local), sock


def _result(
    address: str,
    port: int,
    outcome: str,
    started: float,
    detail: str,
    code: int | None = None,
    local: str = "",
) -> ConnectResult:
    ms = round((time.perf_counter() - started) * 1000)
    return ConnectResult(address, port, outcome, ms, detail, code, local)
