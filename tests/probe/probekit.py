"""Real parts for the probe tests: a test CA, SMTP servers on loopback, a DNS server on loopback.

Certificates are built with cryptography (EC P-256 keys: fast), each broken variant the way a
real server would present it. Every server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass
class Issued:
    """A certificate with its key and the chain a server sends (leaf first)."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    chain: list[x509.Certificate] = field(default_factory=list)

    def write(self, folder: Path, stem: str) -> tuple[Path, Path]:
        cert_path, key_path = folder / f"{stem}.crt", folder / f"{stem}.key"
        cert_path.write_bytes(
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)
        )
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


class TestCA:
    """A root CA (optionally with an intermediate) that issues server certificates."""

    __test__ = False

    def __init__(self, name: str = "Probe Test Root CA", parent: TestCA | None = None) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.parent = parent
        issuer_key = parent.key if parent else self.key
        issuer_name = parent.cert.subject if parent else _name(name)
        ski = x509.SubjectKeyIdentifier.from_public_key(self.key.public_key())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(issuer_name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - 400 * DAY)
            .not_valid_after(NOW + 3650 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
        )
        if parent:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
                critical=False,
            )
        self.cert = builder.sign(issuer_key, hashes.SHA256())

    def intermediate(self, name: str = "Probe Test Intermediate CA") -> TestCA:
        return TestCA(name, parent=self)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        *names: str,
        cn: str | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        eku: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.SERVER_AUTH,),
        san: bool = True,
        send_chain: bool = True,
    ) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn or names[0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or NOW - 30 * DAY)
            .not_valid_after(not_after or NOW + 335 * DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        )
        if san and names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        chain = [cert]
        if send_chain:
            ca: TestCA | None = self
            while ca is not None and ca.parent is not None:
                chain.append(ca.cert)
                ca = ca.parent
        return Issued(cert, key, chain)


def self_signed(name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + 365 * DAY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key, [cert])


def server_context(issued: Issued, folder: Path, stem: str = "server") -> ssl.SSLContext:
    cert_path, key_path = issued.write(folder, stem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def smtp_server(tls_context: ssl.SSLContext | None) -> Iterator[int]:
    """aiosmtpd on 127.0.0.1; STARTTLS offered when a TLS context is given."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    port = free_port()
    controller = Controller(
        Sink(),
        hostname="127.0.0.1",
        port=port,
        tls_context=tls_context,
        require_starttls=False,
        ident="ESMTP probe-test",
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


class RawServer:
    """A TCP server on 127.0.0.1 that runs `behave(conn)` per connection, for hostile servers."""

    def __init__(self, behave: Callable[[socket.socket, threading.Event], None]) -> None:
        self.behave = behave
        self.stop = threading.Event()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.workers: list[threading.Thread] = []

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            worker = threading.Thread(target=self._run, args=(conn,), daemon=True)
            worker.start()
            self.workers.append(worker)

    def _run(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.behave(conn, self.stop)

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(2)
        for worker in self.workers:
            worker.join(2)


def read_line(conn: socket.socket, limit: int = 4096) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = conn.recv(1)
        if not chunk:
            break
        data += chunk
    return data


# ---- DNS on loopback -------------------------------------------------------------------------


class Zone:
    """A tiny authoritative zone for dnslib: records, SERVFAIL names and names that never answer."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[Any]] = {}
        self.servfail: set[str] = set()
        self.silent: set[str] = set()
        self.names: set[str] = set()

    def add(self, name: str, rtype: str, rdata: Any) -> None:
        key = (name.rstrip(".").lower(), rtype)
        self.records.setdefault(key, []).append(rdata)
        self.names.add(key[0])


@contextlib.contextmanager
def dns_server(zone: Zone) -> Iterator[int]:
    """dnslib's DNSServer on 127.0.0.1 (UDP), quiet, answering from `zone`."""
    from dnslib import QTYPE, RCODE, RR, DNSRecord
    from dnslib.server import BaseResolver, DNSLogger, DNSServer

    class ZoneResolver(BaseResolver):  # type: ignore[misc]
        def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
            from dnslib import DNSError

            reply = request.reply()
            qname = str(request.q.qname).rstrip(".").lower()
            qtype = QTYPE[request.q.qtype]
            if qname in zone.silent:
                raise DNSError("silent name: no reply")
            if qname in zone.servfail:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            name = qname
            for _ in range(8):
                cnames = zone.records.get((name, "CNAME"))
                if not cnames or qtype == "CNAME":
                    break
                reply.add_answer(RR(name + ".", QTYPE.CNAME, rdata=cnames[0], ttl=60))
                name = str(cnames[0].label).rstrip(".").lower()
            for rdata in zone.records.get((name, qtype), []):
                reply.add_answer(RR(name + ".", getattr(QTYPE, qtype), rdata=rdata, ttl=60))
            if not reply.rr and name not in zone.names:
                reply.header.rcode = RCODE.NXDOMAIN
            return reply

    port = free_port()
    logger = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    server = DNSServer(ZoneResolver(), port=port, address="127.0.0.1", logger=logger)
    server.start_thread()
    try:
        yield port
    finally:
        server.stop()
        server.server.server_close()
