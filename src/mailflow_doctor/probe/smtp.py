"""The SMTP conversation of a probe: banner, EHLO, STARTTLS and the TLS handshake.

Every read is bounded (line length, bytes per reply, bytes per handshake) and every step has a
deadline, so an endless banner, megabyte lines, a server that sends a byte a second or garbage
instead of TLS ends the step with a precise reason instead of hanging or eating memory.

The handshake runs over memory BIOs with certificate checks OFF: the chain the server
presents is captured whether or not it is valid, and judged afterwards (certs.py). A bad
certificate therefore never looks like "STARTTLS not supported".
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import time
import warnings
from dataclasses import dataclass
from typing import Any

from mailflow_doctor.probe.problems import safe_text

MAX_LINE = 4096  # bytes in one reply line (RFC 5321 allows 512; be generous, not unbounded)
MAX_REPLY = 64 * 1024  # bytes in one (multi-line) reply
MAX_HANDSHAKE = 512 * 1024  # bytes the server may send during the TLS handshake
MAX_CHAIN = 64  # certificates kept from the presented chain

OFFERED = "offered"
NOT_OFFERED = "not_offered"
FAILED = "failed"
NOT_TRIED = "not_tried"

# Why a read ended without a reply.
R_TIMEOUT = "timeout"
R_CLOSED = "closed"
R_RESET = "reset"
R_LINE_TOO_LONG = "line_too_long"
R_REPLY_TOO_BIG = "reply_too_big"
R_GARBAGE = "garbage"

_REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -]|$)(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]  # the text after the code, one entry per line

    @property
    def text(self) -> str:
        return f"{self.code} " + " / ".join(line for line in self.lines if line)


class ReadFailure(Exception):
    """A reply that never came, or came broken."""

    def __init__(self, kind: str, detail: str, received: int = 0, excerpt: str = "") -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.received = received
        self.excerpt = excerpt


def printable(data: bytes, limit: int = 60) -> str:
    """A short, safe excerpt of raw bytes for a report (no control characters)."""
    text = data[:limit].decode("latin-1")
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else "." for ch in text)
    return cleaned + ("..." if len(data) > limit else "")


class Channel:
    """A socket with deadlines and bounded buffering."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.received = 0

    def recv(self, deadline: float, limit: int = 16384) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReadFailure(R_TIMEOUT, "the step's deadline passed", self.received)
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(limit)
        except TimeoutError:
            raise ReadFailure(R_TIMEOUT, "the step's deadline passed", self.received) from None
        except ConnectionResetError:
            raise ReadFailure(R_RESET, "the server reset the connection", self.received) from None
        except OSError as exc:
            raise ReadFailure(R_RESET, exc.strerror or str(exc), self.received) from None
        self.received += len(data)
        return data

    def send(self, data: bytes, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReadFailure(R_TIMEOUT, "the step's deadline passed", self.received)
        self.sock.settimeout(remaining)
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise ReadFailure(R_TIMEOUT, "could not send within the deadline") from None
        except OSError as exc:
            kind = R_CLOSED if isinstance(exc, BrokenPipeError) else R_RESET
            raise ReadFailure(kind, exc.strerror or str(exc), self.received) from None

    def read_reply(self, deadline: float) -> Reply:
        """One SMTP reply, multi-line replies joined; bounded in line length and total size."""
        lines: list[str] = []
        code: int | None = None
        size = 0
        while True:
            newline = self.buffer.find(b"\n")
            if newline < 0:
                if len(self.buffer) > MAX_LINE:
                    raise ReadFailure(
                        R_LINE_TOO_LONG,
                        f"a reply line longer than {MAX_LINE} bytes",
                        self.received,
                        printable(bytes(self.buffer)),
                    )
                try:
                    data = self.recv(deadline)
                except ReadFailure as failure:
                    failure.excerpt = printable(bytes(self.buffer))
                    raise
                if not data:
                    raise ReadFailure(
                        R_CLOSED,
                        "the server closed the connection",
                        self.received,
                        printable(bytes(self.buffer)),
                    )
                self.buffer.extend(data)
                continue
            raw = bytes(self.buffer[:newline]).rstrip(b"\r")
            del self.buffer[: newline + 1]
            if len(raw) > MAX_LINE:
                raise ReadFailure(
                    R_LINE_TOO_LONG,
                    f"a reply line longer than {MAX_LINE} bytes",
                    self.received,
                    printable(raw),
                )
            size += len(raw) + 2
            if size > MAX_REPLY:
                raise ReadFailure(
                    R_REPLY_TOO_BIG,
                    f"a reply of more than {MAX_REPLY // 1024} KiB without an end",
                    self.received,
                    printable(raw),
                )
            match = _REPLY_LINE.match(raw)
            if match is None or (code is not None and int(match.group(1)) != code):
                raise ReadFailure(
                    R_GARBAGE, "a line that is not an SMTP reply", self.received, printable(raw)
                )
            code = int(match.group(1))
            lines.append(safe_text(match.group(3).decode("utf-8", errors="replace").strip()))
            if match.group(2) != b"-":
                return Reply(code, tuple(lines))


@dataclass(frozen=True)
class TlsResult:
    """The TLS handshake: version, cipher and the chain exactly as presented (DER, leaf first)."""

    version: str = ""
    cipher: str = ""
    chain: tuple[bytes, ...] = ()
    error_kind: str = ""  # "", timeout, closed, reset, not_tls, protocol, too_big
    error: str = ""
    received: int = 0
    excerpt: str = ""

    @property
    def ok(self) -> bool:
        return not self.error_kind


@dataclass(frozen=True)
class SmtpResult:
    """What the SMTP conversation showed; `failure_step` names where it stopped early."""

    banner: str = ""
    ehlo: str = ""
    extensions: tuple[str, ...] = ()
    starttls: str = NOT_TRIED
    starttls_reply: str = ""
    tls: TlsResult | None = None
    failure_step: str = ""  # "", banner, EHLO, STARTTLS
    failure_kind: str = ""  # a R_* kind, or "rejected" for a refusing reply
    failure_detail: str = ""
    failure_excerpt: str = ""
    received: int = 0


def tls_context() -> ssl.SSLContext:
    """A client context that completes the handshake with any certificate, as old as TLS 1.0.

    Validation happens afterwards on the captured chain; old protocol versions are allowed so
    that the report can say "this server only speaks TLS 1.0" instead of "handshake failed".
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings(), contextlib.suppress(ValueError, ssl.SSLError):
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def _chain_of(tls_object: ssl.SSLObject) -> tuple[bytes, ...]:
    """The presented chain, leaf first: public API on 3.13+, the same call on `_sslobj` before."""
    getter: Any = getattr(tls_object, "get_unverified_chain", None)
    if getter is None:
        inner = getattr(tls_object, "_sslobj", None)
        getter = getattr(inner, "get_unverified_chain", None)
    if getter is None:
        return ()
    try:
        chain = getter() or []
    except (ssl.SSLError, ValueError, AttributeError):
        return ()
    ders: list[bytes] = []
    for item in list(chain)[:MAX_CHAIN]:
        if isinstance(item, bytes | bytearray):
            ders.append(bytes(item))
        else:
            ders.append(item.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]
    return tuple(ders)


def handshake(channel: Channel, server_name: str | None, deadline: float) -> TlsResult:
    """Run the TLS handshake over the channel's socket with a hard deadline and byte cap."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_object = tls_context().wrap_bio(incoming, outgoing, server_hostname=server_name or None)
    if channel.buffer:
        incoming.write(bytes(channel.buffer))
        channel.buffer.clear()
    received = 0
    first_bytes = b""

    def failed(kind: str, detail: str) -> TlsResult:
        return TlsResult(
            chain=_chain_of(tls_object),
            error_kind=kind,
            error=detail,
            received=received,
            excerpt=printable(first_bytes, 40) if kind == "not_tls" else "",
        )

    while True:
        try:
            tls_object.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLEOFError:
            return failed("closed", "the server closed the connection during the TLS handshake")
        except ssl.SSLError as exc:
            with contextlib.suppress(ReadFailure):
                channel.send(outgoing.read(), deadline)  # the alert, so the server logs why
            reason = (exc.reason or str(exc)).lower().replace("_", " ")
            if received and not first_bytes.startswith((b"\x16", b"\x15")):
                return failed(
                    "not_tls", f"the server answered with something that is not TLS ({reason})"
                )
            if "excessive message size" in reason:
                return failed(
                    "too_big",
                    f"the server's handshake message (its certificate chain) is too large "
                    f"({received // 1024} KiB received)",
                )
            return failed("protocol", f"TLS error: {reason}")
        else:
            with contextlib.suppress(ReadFailure):
                channel.send(outgoing.read(), deadline)
            cipher = tls_object.cipher()
            return TlsResult(
                version=tls_object.version() or "",
                cipher=cipher[0] if cipher else "",
                chain=_chain_of(tls_object),
                received=received,
            )
        try:
            pending = outgoing.read()
            if pending:
                channel.send(pending, deadline)
            data = channel.recv(deadline)
        except ReadFailure as failure:
            if failure.kind == R_TIMEOUT:
                return failed(
                    "timeout",
                    f"the TLS handshake did not finish within the deadline ({received} bytes "
                    "received)",
                )
            return failed(failure.kind, f"the TLS handshake broke: {failure.detail}")
        if not data:
            incoming.write_eof()
            continue
        if len(first_bytes) < 40:
            first_bytes += data[: 40 - len(first_bytes)]
        received += len(data)
        if received > MAX_HANDSHAKE:
            return failed(
                "too_big",
                f"the server sent more than {MAX_HANDSHAKE // 1024} KiB during the TLS handshake",
            )
        incoming.write(data)


def converse(
    sock: socket.socket,
    *,
    ehlo_name: str,
    server_name: str | None,
    step_timeout: float,
    deadline: float,
) -> SmtpResult:
    """Banner, EHLO, STARTTLS and the handshake; each step ends by its own deadline."""
    channel = Channel(sock)

    def step_deadline() -> float:
        return min(deadline, time.monotonic() + step_timeout)

    def stopped(step: str, failure: ReadFailure, **known: Any) -> SmtpResult:
        return SmtpResult(
            failure_step=step,
            failure_kind=failure.kind,
            failure_detail=failure.detail,
            failure_excerpt=failure.excerpt,
            received=channel.received,
            **known,
        )

    try:
        banner = channel.read_reply(step_deadline())
    except ReadFailure as failure:
        return stopped("banner", failure)
    if banner.code != 220:
        return SmtpResult(
            banner=banner.text,
            failure_step="banner",
            failure_kind="rejected",
            failure_detail=banner.text,
            received=channel.received,
        )
    try:
        channel.send(f"EHLO {ehlo_name}\r\n".encode("ascii"), step_deadline())
        ehlo = channel.read_reply(step_deadline())
    except ReadFailure as failure:
        return stopped("EHLO", failure, banner=banner.text)
    if ehlo.code != 250:
        return SmtpResult(
            banner=banner.text,
            ehlo=ehlo.text,
            failure_step="EHLO",
            failure_kind="rejected",
            failure_detail=ehlo.text,
            received=channel.received,
        )
    extensions = tuple(line.split(" ", 1)[0].upper() for line in ehlo.lines[1:] if line)
    known: dict[str, Any] = {"banner": banner.text, "ehlo": ehlo.text, "extensions": extensions}
    if "STARTTLS" not in extensions:
        _quit(channel, step_deadline())
        return SmtpResult(starttls=NOT_OFFERED, received=channel.received, **known)
    try:
        channel.send(b"STARTTLS\r\n", step_deadline())
        reply = channel.read_reply(step_deadline())
    except ReadFailure as failure:
        return stopped("STARTTLS", failure, starttls=FAILED, **known)
    if reply.code != 220:
        _quit(channel, step_deadline())
        return SmtpResult(
            starttls=FAILED,
            starttls_reply=reply.text,
            failure_step="STARTTLS",
            failure_kind="rejected",
            failure_detail=reply.text,
            received=channel.received,
            **known,
        )
    tls = handshake(channel, server_name, step_deadline())
    return SmtpResult(
        starttls=OFFERED if tls.ok else FAILED,
        starttls_reply=reply.text,
        tls=tls,
        received=channel.received,
        **known,
    )


def _quit(channel: Channel, deadline: float) -> None:
    with contextlib.suppress(ReadFailure):
        channel.send(b"QUIT\r\n", min(deadline, time.monotonic() + 1.0))
