"""Hostile and broken servers: each ends within the deadline, bounded, with one precise finding."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from probekit import DAY, NOW, RawServer, TestCA, read_line

from mailflow_doctor.probe.runner import ProbeOptions, ProbeReport, ProbeTarget, probe_many

STEP = 1.0


def _probe(port: int, options: ProbeOptions, **changes: object) -> ProbeReport:
    opts = replace(options, port=port, step_timeout=STEP, **changes)  # type: ignore[arg-type]
    return probe_many([ProbeTarget("mail.example.test", "127.0.0.1")], opts)


def _ids(report: ProbeReport) -> list[str]:
    return sorted(p.id for p in report.problems)


def _greet_and_offer_starttls(conn: socket.socket) -> None:
    conn.sendall(b"220 hostile.example.test ESMTP\r\n")
    read_line(conn)  # EHLO
    conn.sendall(b"250-hostile.example.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
    read_line(conn)  # STARTTLS
    conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")


def test_endless_banner(options: ProbeOptions) -> None:
    def behave(conn: socket.socket, stop: threading.Event) -> None:
        line = b"220-" + b"x" * 70 + b"\r\n"
        while not stop.is_set():
            conn.sendall(line * 100)

    with RawServer(behave) as server:
        started = time.monotonic()
        report = _probe(server.port, options)
    assert time.monotonic() - started < STEP * 2
    assert _ids(report) == ["smtp.banner_invalid"]
    assert report.problems[0].data["reason"] == "reply_too_big"
    assert report.addresses[0].connect == "connected"


def test_megabyte_line(options: ProbeOptions) -> None:
    payload = b"220 " + b"A" * 1_000_000 + b"\r\n"  # built before memory is traced

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(payload)
        stop.wait(5)

    with RawServer(behave) as server:
        tracemalloc.start()
        report = _probe(server.port, options)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert _ids(report) == ["smtp.banner_invalid"]
    assert report.problems[0].data["reason"] == "line_too_long"
    assert peak < 500_000, "the probe must not buffer the whole megabyte line"


def test_a_byte_a_second(options: ProbeOptions) -> None:
    def behave(conn: socket.socket, stop: threading.Event) -> None:
        for byte in b"220 slow.example.test ESMTP\r\n":
            if stop.wait(0.4):
                return
            conn.sendall(bytes([byte]))

    with RawServer(behave) as server:
        started = time.monotonic()
        report = _probe(server.port, options)
        elapsed = time.monotonic() - started
    assert STEP * 0.9 < elapsed < STEP * 2
    assert _ids(report) == ["smtp.banner_invalid"]
    problem = report.problems[0]
    assert problem.data["reason"] == "timeout"
    assert problem.data["received"].startswith("22")


def test_silent_server(options: ProbeOptions) -> None:
    with RawServer(lambda conn, stop: stop.wait(5)) as server:
        report = _probe(server.port, options)
    assert _ids(report) == ["smtp.banner_invalid"]
    assert report.problems[0].data["reason"] == "timeout"


def test_closed_right_after_connect_is_a_reset(options: ProbeOptions) -> None:
    with RawServer(lambda conn, stop: None) as server:
        report = _probe(server.port, options)
    assert _ids(report) == ["smtp.connection_reset"]
    assert report.addresses[0].connect == "reset"
    assert report.problems[0].exo_code == "4.4.318"


def test_greeting_refuses_service(options: ProbeOptions) -> None:
    def behave(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"554 5.7.1 No SMTP service here\r\n")
        stop.wait(2)

    with RawServer(behave) as server:
        report = _probe(server.port, options)
    assert _ids(report) == ["smtp.service_refused"]


def test_garbage_instead_of_tls(options: ProbeOptions) -> None:
    def behave(conn: socket.socket, stop: threading.Event) -> None:
        _greet_and_offer_starttls(conn)
        conn.recv(4096)  # ClientHello
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        stop.wait(2)

    with RawServer(behave) as server:
        report = _probe(server.port, options)
    assert _ids(report) == ["tls.handshake_failed"]
    problem = report.problems[0]
    assert problem.data["reason"] == "not_tls"
    assert problem.data["received"].startswith("HTTP/1.1 400")
    assert report.addresses[0].smtp is not None
    assert report.addresses[0].smtp.starttls == "failed"


def test_closes_mid_handshake(options: ProbeOptions) -> None:
    def behave(conn: socket.socket, stop: threading.Event) -> None:
        _greet_and_offer_starttls(conn)
        conn.recv(4096)  # ClientHello, then hang up

    with RawServer(behave) as server:
        report = _probe(server.port, options)
    assert _ids(report) == ["tls.handshake_failed"]
    assert report.problems[0].data["reason"] in ("closed", "reset")


def test_handshake_that_never_finishes(options: ProbeOptions) -> None:
    def behave(conn: socket.socket, stop: threading.Event) -> None:
        _greet_and_offer_starttls(conn)
        conn.recv(4096)
        conn.sendall(b"\x16\x03\x03")  # the start of a record, and then nothing
        stop.wait(5)

    with RawServer(behave) as server:
        started = time.monotonic()
        report = _probe(server.port, options)
    assert time.monotonic() - started < STEP * 2
    assert _ids(report) == ["tls.handshake_failed"]
    assert report.problems[0].data["reason"] == "timeout"


def _long_chain(tmp_path: Path, length: int) -> tuple[Path, Path]:
    """A leaf under `length - 1` intermediates, each padded with a large extension."""
    root = TestCA("Chain Root")
    issuer_key, issuer_name = root.key, root.cert.subject
    certs: list[x509.Certificate] = []
    padding = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"p" * 600)
    key = ec.generate_private_key(ec.SECP256R1())
    for index in range(length):
        key = ec.generate_private_key(ec.SECP256R1())
        is_leaf = index == length - 1
        name = x509.Name(
            [
                x509.NameAttribute(
                    x509.NameOID.COMMON_NAME,
                    "mail.example.test" if is_leaf else f"Intermediate {index}",
                )
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - DAY)
            .not_valid_after(NOW + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=not is_leaf, path_length=None), True)
            .add_extension(padding, False)
        )
        certs.append(builder.sign(issuer_key, hashes.SHA256()))
        issuer_key, issuer_name = key, name
    cert_path, key_path = tmp_path / "long.crt", tmp_path / "long.key"
    cert_path.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in reversed(certs))
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_two_hundred_certificate_chain(tmp_path: Path, options: ProbeOptions) -> None:
    cert_path, key_path = _long_chain(tmp_path, 200)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        _greet_and_offer_starttls(conn)
        conn.settimeout(3)
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(100)

    with RawServer(behave) as server:
        tracemalloc.start()
        started = time.monotonic()
        report = _probe(server.port, options)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < STEP * 2
    assert peak < 4_000_000
    assert _ids(report) == ["tls.handshake_failed"]
    problem = report.problems[0]
    assert problem.data["reason"] == "too_big"
    assert "certificate chain" in problem.data["detail"]


@pytest.mark.parametrize("count", [40])
def test_many_addresses_end_by_the_overall_deadline(options: ProbeOptions, count: int) -> None:
    """40 silent servers on 127.0.0.2... with 16 workers cannot all finish: the deadline wins."""
    listeners: list[socket.socket] = []
    port = 0
    try:
        for index in range(count):
            sock = socket.socket()
            sock.bind((f"127.0.0.{index + 2}", port))
            port = sock.getsockname()[1]
            sock.listen(4)
            listeners.append(sock)
        targets = [ProbeTarget(address=f"127.0.0.{index + 2}") for index in range(count)]
        opts = replace(options, port=port, step_timeout=1.0, total_timeout=2.0)
        started = time.monotonic()
        report = probe_many(targets, opts)
        elapsed = time.monotonic() - started
    finally:
        for sock in listeners:
            sock.close()
    assert elapsed < 3.0, f"took {elapsed:.1f} s for a 2 s deadline"
    assert len(report.addresses) == count
    ids = {p.id for p in report.problems}
    assert ids <= {"smtp.banner_invalid", "probe.incomplete"}
    assert "smtp.banner_invalid" in ids


def test_starttls_refused_by_the_server(options: ProbeOptions) -> None:
    def behave(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"220 hostile.example.test ESMTP\r\n")
        read_line(conn)
        conn.sendall(b"250-hostile.example.test\r\n250 STARTTLS\r\n")
        read_line(conn)
        conn.sendall(b"454 4.7.0 TLS not available due to local problem\r\n")
        read_line(conn)

    with RawServer(behave) as server:
        report = _probe(server.port, options)
    assert _ids(report) == ["tls.starttls_rejected"]
    assert report.addresses[0].smtp is not None
    assert report.addresses[0].smtp.starttls == "failed"
    assert "454 4.7.0" in report.problems[0].data["detail"]


def test_megabyte_ehlo_reply(options: ProbeOptions) -> None:
    payload = b"250-" + b"B" * 1_000_000 + b"\r\n"

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"220 hostile.example.test ESMTP\r\n")
        read_line(conn)
        conn.sendall(payload)
        stop.wait(3)

    with RawServer(behave) as server:
        report = _probe(server.port, options)
    assert _ids(report) == ["smtp.reply_invalid"]
    assert report.problems[0].data["step"] == "EHLO"
    assert report.problems[0].data["reason"] == "line_too_long"


def test_escape_sequences_in_the_banner_are_neutralised(options: ProbeOptions) -> None:
    def behave(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"220 evil\x1b[2J\x1b]0;owned\x07 ESMTP\r\n")
        read_line(conn)
        conn.sendall(b"250 evil.example.test\r\n")
        read_line(conn)

    with RawServer(behave) as server:
        report = _probe(server.port, options)
    assert report.addresses[0].smtp is not None
    banner = report.addresses[0].smtp.banner
    assert "\x1b" not in banner
    assert "\x07" not in banner
    assert banner.startswith("220 evil?[2J")
    assert _ids(report) == ["tls.starttls_missing"]
