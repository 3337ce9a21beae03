"""Fixtures for the live-probe tests: one test PKI and one loopback DNS zone per session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from probekit import TestCA, Zone, dns_server

from mailflow_doctor.probe.certs import TrustRoots
from mailflow_doctor.probe.dns import ResolverSpec
from mailflow_doctor.probe.runner import ProbeOptions


@dataclass
class Pki:
    root: TestCA
    intermediate: TestCA
    roots: TrustRoots


@pytest.fixture(scope="session")
def pki() -> Pki:
    root = TestCA()
    from cryptography import x509

    certs = tuple(x509.load_pem_x509_certificates(root.pem()))
    return Pki(root, root.intermediate(), TrustRoots(certs, "test root"))


@dataclass
class LoopbackDns:
    zone: Zone
    port: int

    @property
    def spec(self) -> ResolverSpec:
        return ResolverSpec("127.0.0.1", self.port)


@pytest.fixture(scope="session")
def loopback_dns() -> Iterator[LoopbackDns]:
    """Names under example.test: every host the SMTP tests probe resolves to 127.0.0.1."""
    from dnslib import A

    zone = Zone()
    for name in ("mail.example.test", "smtp.example.test", "other.example.test"):
        zone.add(name, "A", A("127.0.0.1"))
    with dns_server(zone) as port:
        yield LoopbackDns(zone, port)


@pytest.fixture
def options(pki: Pki, loopback_dns: LoopbackDns) -> ProbeOptions:
    """Short timeouts, the test root as the only trust anchor, DNS on loopback."""
    return ProbeOptions(
        resolver=loopback_dns.spec, roots=pki.roots, step_timeout=2.0, reverse_dns=False
    )
