"""Deferral and failure reasons, as Exchange Online and on-premises Exchange write them, to facts.

One parser for every place a reason shows up: the `Detail` of a message-trace Defer/Fail event
(`Reason: [{LED=...};{MSG=...};{FQDN=...};{IP=...};{LRT=...}]. OutboundProxyTargetIP: ...`),
the bracketed fields inside LED (`[Message=...] [LastAttemptedServerName=...]
[LastAttemptedIP=ip:port] [SmtpSecurity=a;b] [<EOP server> <time> <session>]`), the lines of an
NDR's diagnostic block (`<date> - Server at <host> (<ip>) returned '...'`), a queue's LastError
(`451 4.4.397 ... -> 421 4.2.1 ... -> SocketConnectionRefused: Socket error code 10061`) and the
quoted replies nested inside proxy errors. Pasted text is forgiven: line wraps, `<br>` tags and
cut-off ends. `parse_reason` never raises; whatever it cannot read is still there in `raw`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache

from mailflow_doctor.evidence.culturetime import parse_culture_time
from mailflow_doctor.evidence.records import ParsedReason

MAX_REASON_CHARS = 16 * 1024  # reasons are a few hundred characters; more is pasted noise
MAX_DEPTH = 3
MAX_CHAIN = 12

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_PREFIX = re.compile(
    r"^(?:['\"`\s]+|(?:defer|fail|drop|deliver|receive|send|expand|submit|transfer|"
    r"reason|lasterror|recipientstatus|detail)\s*:\s*)+",
    re.IGNORECASE,
)
_DATE = r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\s+\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AaPp]\.?[Mm]\.?)?"
_HOP = re.compile(
    rf"(?:(?P<date>{_DATE})\s+-\s+)?(?<![\w.])(?:Remote\s+)?Server\s+at\s+(?P<host>[^\s()']+)"
    r"(?:\s+\((?P<ip>[^()\s]*)\))?\s+returned\s+'?",
)
_CODE = re.compile(r"^(?P<smtp>[2-5]\d\d)(?:[ -](?P<enh>[2-5]\.\d{1,3}\.\d{1,3}))?(?![\w.])")
_CODE_ANYWHERE = re.compile(
    r"(?<![\w.])(?P<smtp>[2-5]\d\d)[ -](?P<enh>[2-5]\.\d{1,3}\.\d{1,3})(?![\w.])"
)
_BRACE_KEY = re.compile(r"\{(?P<key>[A-Za-z][A-Za-z0-9 _-]{0,40})=")
_KEY_VALUE = re.compile(r"^\s*(?P<key>[A-Za-z][A-Za-z0-9 _-]{0,40}?)\s*=\s*(?P<value>.*)$", re.S)
_EOP_SERVER = re.compile(
    r"^\s*(?P<host>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
    r"(?:\s+(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z?))?"
    r"(?:\s+(?P<sid>[0-9A-Fa-f]{8,32}))?\s*$"
)
_PROXY_IP = re.compile(r"OutboundProxyTargetIP\s*:\s*(?P<v>[^\s]*)", re.IGNORECASE)
_PROXY_HOST = re.compile(r"OutboundProxyTargetHostName\s*:\s*(?P<v>[^\s]*)", re.IGNORECASE)
_SOCKET = re.compile(
    r"(?:Socket\s+error\s+code|Winsock\s+error\s+code|socket\s+error)\s*:?\s*(?P<n>\d{1,6})\b",
    re.IGNORECASE,
)
_WIN32 = re.compile(r"Win32\s+error\s+code\s*:?\s*(?P<n>\d{1,6})\b", re.IGNORECASE)
_THUMB = re.compile(r"Thumbprint\s*:?\s*(?P<t>[0-9A-Fa-f]{16,128})\b")
_CERT_ERROR = re.compile(
    r"\b(?P<e>SubjectMismatch|CertificateExpired|UntrustedRoot|RevocationOffline|"
    r"RevokedCertificate|PartialChain|ChainNotTrusted|UnknownExpectedTlsDomain|"
    r"CertificateValidationFailed)\b"
)
_EXPECTED = re.compile(
    r"Expected\s+Subject\s*:\s*(?P<v>[^\]]{0,300}?)\.?\s+Presented\s+Subject", re.I
)
_PRESENTED = re.compile(
    r"Presented\s+Subject\s*:\s*(?P<v>[^\]]{0,300}?)\.?(?:\s+Thumbprint|\s*\]|$)", re.I
)
_ENDPOINT = re.compile(r"last\s+endpoint\s+attempted\s+was\s+(?P<v>[^\s']+)", re.IGNORECASE)
_QUOTE_OPENS_REPLY = re.compile(r"['\"](?=[2-5]\d\d[ -][2-5]\.\d{1,3}\.\d{1,3}(?![\w.]))")
_AFTER_CLOSING_QUOTE = frozenset(" \t.,;:)]}'\"")
_CERT_WORDS = (
    "SubjectMismatch",
    "CertificateExpired",
    "UntrustedRoot",
    "Revocation",
    "RevokedCertificate",
    "PartialChain",
    "ChainNotTrusted",
    "UnknownExpectedTlsDomain",
    "CertificateValidationFailed",
)
_KEY_NOISE = re.compile(r"[\s_-]")
_BRACKET = re.compile(r"[\[\]]")
_EXPIRED = re.compile(r"\bMessage\s+expired\b|QUEUE\.Expired", re.IGNORECASE)

# Facts that a nested hop may know when the outer line does not (the target, the socket error).
_BACKFILL = (
    "socket_error",
    "win32_error",
    "fqdn",
    "ip",
    "port",
    "smtp_security",
    "eop_server",
    "eop_time_utc",
    "eop_session_id",
    "certificate_thumbprint",
    "certificate_error",
    "expected_subject",
    "presented_subject",
    "proxy_target_ip",
    "proxy_target_host",
)


def parse_reason(text: str) -> ParsedReason:
    """Read a deferral / failure reason into a `ParsedReason`. Never raises.

    `raw` is always `text`; fields that could not be read are None. Further replies found in
    the text (NDR hops after the first, ` -> ` chains, replies quoted inside a message) become
    `chain`, outermost first, and facts only a nested reply states are copied up.
    """
    try:
        fast = _parse_templated(text)
    except Exception:  # the shortcut failing must not cost what the general path can read
        fast = None
    if fast is not None:
        return fast
    try:
        return _parse_top(text)
    except Exception:  # a reason we cannot read must never cost the record
        return ParsedReason(raw=text if isinstance(text, str) else str(text))


def parse_reason_general(text: str) -> ParsedReason:
    """`parse_reason` without the templated fast path (for tests that compare the two)."""
    try:
        return _parse_top(text)
    except Exception:
        return ParsedReason(raw=text if isinstance(text, str) else str(text))


# --- fast path: the Exchange Online Detail shape with its per-attempt values templated ----
#
# Every deferral of one message (and of every message to the same target) repeats the same
# reason except for the EOP server bracket `[<host> <time> <session>]` that ends the LED and
# the `{LRT=<time>}` group. Those two are swapped for fixed placeholders, the rest is parsed
# once by the general path (and remembered), and the real values are put back. The swap is
# only done when the values are of a shape the general path cannot read anything else from
# (no words, quotes, braces, brackets or codes), and the template's result is only used when
# it shows that the placeholders were read exactly as the EOP bracket and the retry time.

_TEMPLATE_MAX_CHARS = 8 * 1024
_FAST_EOP = re.compile(  # the content of the bracket that ends the LED group: `[...]}`
    r"(?P<host>[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}) "
    r"(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z?) "
    r"(?P<sid>[0-9A-Fa-f]{8,32})"
)
_FAST_LRT = re.compile(r"\{LRT=(?P<v>[0-9/.: -]{6,30}(?:[AP]M)?)\}\]")
_FAST_HOP_WORDS = re.compile(r"erver\s+at\b")
_PH_HOST = "QZQZ0.eop-qzqz.prod.protection.outlook.com"
_PH_TS = "2000-01-02T03:04:05.000Z"
_PH_SID = "0FACE0FACE0FACE0"
_PH_EOP = f"{_PH_HOST} {_PH_TS} {_PH_SID}"
_PH_LRT = "1/1/2000 12:00:00 AM"
_PH_EOP_TIME = datetime(2000, 1, 2, 3, 4, 5, tzinfo=UTC)
_PH_LRT_TIME = datetime(2000, 1, 1, 0, 0, 0, tzinfo=UTC)
_PATCHED = ("eop_server", "eop_session_id", "eop_time_utc", "last_retry_utc", "raw")


@dataclass(frozen=True)
class _Template:
    """The general path's reading of a template, and which text fields hold a placeholder."""

    reason: ParsedReason
    text_fields: tuple[str, ...]
    field_indexes: tuple[int, ...]


def _parse_templated(text: str) -> ParsedReason | None:
    """The Exchange Online Detail shape read from a remembered template; None when not safe."""
    if len(text) > _TEMPLATE_MAX_CHARS or "{LRT=" not in text or "{LED=" not in text:
        return None
    close = text.find("]}")
    opening = text.rfind("[", 0, close) + 1 if close > 0 else 0
    eop = _FAST_EOP.fullmatch(text, opening, close) if opening > 0 else None
    if eop is not None and not _inert_host(eop["host"]):
        return None
    lrt = _FAST_LRT.search(text, close if eop is not None else 0)
    if lrt is None:
        return None
    lrt_text = lrt["v"]
    if eop is None:  # older exports: no EOP server bracket, only the LRT changes
        eop_text = ""
        template = "".join((text[: lrt.start("v")], _PH_LRT, text[lrt.end("v") :]))
    else:
        eop_text = text[opening:close]
        template = "".join(
            (
                text[:opening],
                _PH_EOP,
                text[close : lrt.start("v")],
                _PH_LRT,
                text[lrt.end("v") :],
            )
        )
    known = _template(template, eop is not None)
    if known is None:
        return None
    updates: dict[str, object] = {
        "raw": text,
        "last_retry_utc": parse_culture_time(lrt_text, None, UTC),
    }
    if eop is not None:
        eop_time = parse_culture_time(eop["ts"], None, UTC)
        if eop_time is None and known.reason.chain:
            return None  # the general path would copy a time up from the chain
        updates["eop_server"] = eop["host"]
        updates["eop_session_id"] = eop["sid"].upper()
        updates["eop_time_utc"] = eop_time
    reason = known.reason
    for name in known.text_fields:
        value = getattr(reason, name)
        updates[name] = value.replace(_PH_EOP, eop_text).replace(_PH_LRT, lrt_text)
    if known.field_indexes:
        fields = list(reason.fields)
        for index in known.field_indexes:
            key, value = fields[index]
            fields[index] = (key, value.replace(_PH_EOP, eop_text).replace(_PH_LRT, lrt_text))
        updates["fields"] = tuple(fields)
    return _copy_with(reason, updates)


def _copy_with(reason: ParsedReason, updates: dict[str, object]) -> ParsedReason:
    """`replace()` without re-running `__init__` over thirty fields (a sixth of the cost).

    ParsedReason is a plain frozen dataclass (no `__post_init__`, no slots), so a copy of its
    `__dict__` is an equal, equally frozen object; otherwise fall back to `replace()`.
    """
    if _PLAIN_RECORD:
        copy = object.__new__(ParsedReason)
        state = copy.__dict__
        state.update(reason.__dict__)
        state.update(updates)
        return copy
    return replace(reason, **updates)  # type: ignore[arg-type]


_PLAIN_RECORD = not hasattr(ParsedReason, "__post_init__") and not hasattr(
    ParsedReason, "__slots__"
)


@lru_cache(maxsize=1024)
def _inert_host(host: str) -> bool:
    """True when an EOP host name spells nothing the general path would read out of it.

    The host is the only templated value with letters enough for that: the time, the hex
    session id and the LRT cannot spell a word, a code or a placeholder.
    """
    low = host.lower()
    words = (
        "expired",
        "thumbprint",
        "socket",
        "winsock",
        "win32",
        "mismatch",
        "certificate",
        "untrusted",
        "revo",
        "chain",
        "unknownexpected",
        "outbound",
        "subject",
        "endpoint",
        "erver",
    )
    return not any(word in low for word in words) and _CODE_ANYWHERE.search(host) is None


def _inert_text(template: str, with_eop: bool) -> bool:
    """True when the text around the placeholders gives the general path nothing to read
    across them (a subject, an endpoint, a proxy target or an NDR hop whose value could run
    into a placeholder, a chain, markup) and holds no piece of a placeholder itself."""
    low = template.lower()
    rest = low.replace(_PH_LRT.lower(), "", 1)
    if with_eop:
        rest = rest.replace(_PH_EOP.lower(), "", 1)
    lrt_end = low.find(_PH_LRT.lower()) + len(_PH_LRT)
    return not (
        ("subject" in low and ("expected" in low or "presented" in low))  # bounded captures
        or "endpoint" in low
        or "->" in low
        or "<" in low
        or "\x00" in low
        or "qzqz" in rest
        or "0face" in rest
        or "1/1/2000" in rest
        or low.find("outbound", 0, lrt_end) >= 0
        or ("erver" in low and _FAST_HOP_WORDS.search(low))
    )


@lru_cache(maxsize=1024)
def _template(template: str, with_eop: bool) -> _Template | None:
    """Parse a template the general way; None when the placeholders were not read as such.

    Replies nested in the template (its chain) come from the text around the placeholders
    and are kept, as long as no piece of a placeholder ended up in them.
    """
    if not _inert_text(template, with_eop):
        return None
    reason = _parse_top(template)
    if reason.last_retry_utc != _PH_LRT_TIME or not _only_whole_placeholders(
        repr(reason.chain), whole=False
    ):
        return None
    if with_eop and (
        reason.eop_server != _PH_HOST
        or reason.eop_session_id != _PH_SID
        or reason.eop_time_utc != _PH_EOP_TIME
    ):
        return None
    patched = _PATCHED if with_eop else ("last_retry_utc", "raw")
    text_fields: list[str] = []
    for name in ParsedReason.__dataclass_fields__:
        value = getattr(reason, name)
        if name in patched or name == "chain" or not isinstance(value, str):
            continue
        if not _only_whole_placeholders(value):
            return None
        if _PH_EOP in value or _PH_LRT in value:
            text_fields.append(name)
    field_indexes: list[int] = []
    for index, (key, value) in enumerate(reason.fields):
        if not (_only_whole_placeholders(key) and _only_whole_placeholders(value)):
            return None
        if _PH_EOP in key:
            return None
        if _PH_EOP in value or _PH_LRT in value:
            field_indexes.append(index)
    return _Template(reason, tuple(text_fields), tuple(field_indexes))


def _only_whole_placeholders(value: str, whole: bool = True) -> bool:
    """True when no piece of a placeholder is left once the whole ones are taken out
    (with `whole=False`: when there is no placeholder, whole or in pieces, at all)."""
    rest = value.replace(_PH_EOP, "").replace(_PH_LRT, "") if whole else value
    return "QZQZ" not in rest and "1/1/2000" not in rest and "0FACE" not in rest


def split_endpoint(value: str, with_port: bool = False) -> tuple[str | None, int | None]:
    """`203.0.113.25:25` -> ("203.0.113.25", 25); `[2001:db8::1]:25` and bare IPs too.

    `with_port` says the text always ends in `:port` (LastAttemptedIP, "the last endpoint
    attempted was ..."), which settles `2001:db8::25:25` as address 2001:db8::25, port 25.
    Masked or invalid addresses (`72.x.x.x`, `xxx`) give (None, None).
    """
    value = value.strip().strip("'\"").rstrip(".,;")
    if not value:
        return None, None
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return _ip(host), _port(port)
    host, sep, port_text = value.rpartition(":")
    split = (_ip(host.rstrip(".")), _port(port_text)) if sep and port_text.isdigit() else None
    if with_port and split is not None and split[0] is not None and split[1] is not None:
        return split
    ip = _ip(value)
    if ip is not None:
        return ip, None
    if split is not None and split[0] is not None:
        return split
    return None, None


def _ip(text: str) -> str | None:
    return _ip_cached(text) if len(text) <= 64 else None


@lru_cache(maxsize=4096)
def _ip_cached(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def _port(text: str) -> int | None:
    if text.isdigit() and len(text) <= 5 and 0 < int(text) < 65536:
        return int(text)
    return None


def _normalise(text: str) -> str:
    text = text[:MAX_REASON_CHARS].replace("\x00", "")
    if "<" in text:
        text = _BR.sub(" ", text)
    return " ".join(text.split())


@dataclass
class _Acc:
    """Mutable collector for one reply while it is being read."""

    values: dict[str, object] = field(default_factory=dict)
    fields: list[tuple[str, str]] = field(default_factory=list)
    chain: list[ParsedReason] = field(default_factory=list)

    def put(self, name: str, value: object) -> None:
        if value is not None and value != "" and self.values.get(name) is None:
            self.values[name] = value


def _parse_top(text: str) -> ParsedReason:
    normal = _normalise(text)
    hops = list(_HOP.finditer(normal)) if "erver at" in normal else []
    if not hops:
        return _finish(text, normal, 0)
    first = _hop_reason(text, normal, hops, 0)
    extra: list[ParsedReason] = list(first.chain)
    for index in range(1, len(hops)):
        later = _hop_reason(None, normal, hops, index)
        extra.append(replace(later, chain=()))
        extra.extend(later.chain)
    return _backfill(replace(first, chain=_dedupe(extra)))


def _hop_reason(
    raw: str | None, normal: str, hops: list[re.Match[str]], index: int
) -> ParsedReason:
    hop = hops[index]
    end = hops[index + 1].start() if index + 1 < len(hops) else len(normal)
    body = normal[hop.end() : end].strip()
    if body.endswith("'"):
        body = body[:-1].rstrip()
    reason = _finish(raw if raw is not None else normal[hop.start() : end].strip(), body, 0)
    when = parse_culture_time(hop["date"], None, UTC) if hop["date"] else None
    reporter_ip, _ = split_endpoint(hop["ip"] or "")
    return replace(
        reason,
        reported_by=hop["host"],
        reported_by_ip=reporter_ip,
        reported_utc=when,
    )


def _dedupe(items: list[ParsedReason]) -> tuple[ParsedReason, ...]:
    seen: set[str] = set()
    out: list[ParsedReason] = []
    for item in items:
        key = _normalise(item.raw)
        if key in seen:
            continue
        seen.add(key)
        out.append(item)
        if len(out) >= MAX_CHAIN:
            break
    return tuple(out)


def _finish(raw: str, normal: str, depth: int) -> ParsedReason:
    acc = _Acc()
    _read(normal, acc, depth)
    values = acc.values
    reason = ParsedReason(
        raw=raw,
        smtp_code=_str(values.get("smtp_code")),
        enhanced_code=_str(values.get("enhanced_code")),
        text=_str(values.get("text")),
        message=_str(values.get("message")),
        socket_error=_int(values.get("socket_error")),
        fqdn=_str(values.get("fqdn")),
        ip=_str(values.get("ip")),
        port=_int(values.get("port")),
        last_retry_utc=_dt(values.get("last_retry_utc")),
        smtp_security=_str(values.get("smtp_security")),
        eop_server=_str(values.get("eop_server")),
        proxy_target_ip=_str(values.get("proxy_target_ip")),
        proxy_target_host=_str(values.get("proxy_target_host")),
        certificate_thumbprint=_str(values.get("certificate_thumbprint")),
        chain=_dedupe(acc.chain),
        fields=tuple(acc.fields),
        eop_time_utc=_dt(values.get("eop_time_utc")),
        eop_session_id=_str(values.get("eop_session_id")),
        win32_error=_int(values.get("win32_error")),
        certificate_error=_str(values.get("certificate_error")),
        expected_subject=_str(values.get("expected_subject")),
        presented_subject=_str(values.get("presented_subject")),
        inner=_str(values.get("inner")),
        expired=bool(values.get("expired")),
    )
    return _backfill(reason) if depth == 0 else reason


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dt(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _backfill(reason: ParsedReason) -> ParsedReason:
    updates: dict[str, object] = {}
    for name in _BACKFILL:
        if getattr(reason, name) is not None:
            continue
        for hop in reason.chain:
            value = getattr(hop, name)
            if value is not None:
                updates[name] = value
                break
    return replace(reason, **updates) if updates else reason  # type: ignore[arg-type]


def _read(text: str, acc: _Acc, depth: int) -> None:
    """Fill `acc` from one reply's normalised text."""
    body = _PREFIX.sub("", text)
    core = body
    braces = _brace_groups(body)
    if braces is not None:
        groups, _tail = braces
        core = ""
        for key, value in groups:
            acc.fields.append((key, value))
            _apply_brace(_key(key), value.strip(), acc)
            if _key(key) == "led":
                core = value.strip()
    _read_core(core, acc, depth)
    # Text anywhere in the reason (inside or after the braces) may hold these.
    whole = body
    proxies = (_PROXY_IP, "OutboundProxyTargetIP"), (_PROXY_HOST, None)
    for pattern, name in proxies if "outboundproxytarget" in body.lower() else ():
        match = pattern.search(whole)
        if not match:
            continue
        value = match["v"].rstrip(".,;")
        if name:
            acc.fields.append(("OutboundProxyTargetIP", value))
            ip, _ = split_endpoint(value)
            acc.put("proxy_target_ip", ip)
        else:
            acc.fields.append(("OutboundProxyTargetHostName", value))
            if _looks_like_host(value):
                acc.put("proxy_target_host", value)
    _read_facts(whole, acc)
    acc.put("ip", acc.values.get("proxy_target_ip"))
    host = acc.values.get("proxy_target_host")
    if host is not None:
        acc.put("fqdn", host)


def _looks_like_host(value: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?", value)) and value != ""


@lru_cache(maxsize=1024)
def _key(key: str) -> str:
    return _KEY_NOISE.sub("", key).lower()


def _brace_groups(body: str) -> tuple[list[tuple[str, str]], str] | None:
    """`[{K=v};{K=v}]tail` -> ([(K, v), ...], tail); None when the text has no such groups."""
    starts = [
        match
        for match in _BRACE_KEY.finditer(body)
        if match.start() == 0
        or body[match.start() - 1] == "["
        or body[max(0, match.start() - 2) : match.start()] == "};"
    ]
    if not starts or starts[0].start() > 2:
        return None
    groups: list[tuple[str, str]] = []
    tail = ""
    for index, match in enumerate(starts):
        value_start = match.end()
        if index + 1 < len(starts):
            # The next group starts after "};" - the value ends before that "}".
            value_end = starts[index + 1].start() - 2
            value = body[value_start : max(value_start, value_end)]
        else:
            rest = body[value_start:]
            close = rest.rfind("}]")
            if close >= 0:
                value, tail = rest[:close], rest[close + 2 :]
            elif rest.endswith("}"):
                value = rest[:-1]
            else:
                value = rest  # cut off: keep what there is
        groups.append((match["key"], value))
    return groups, tail


def _apply_brace(key: str, value: str, acc: _Acc) -> None:
    if key == "msg":
        if value:
            acc.values.setdefault("_msg", value)
    elif key in ("fqdn", "lastattemptedservername"):
        if _looks_like_host(value):
            acc.put("fqdn", value.rstrip("."))
    elif key in ("ip", "lastattemptedip"):
        ip, port = split_endpoint(value, with_port=key == "lastattemptedip")
        acc.put("ip", ip)
        acc.put("port", port)
    elif key == "lrt":
        acc.put("last_retry_utc", parse_culture_time(value, None, UTC))


def _read_core(core: str, acc: _Acc, depth: int) -> None:
    """The `<code> <enhanced> <text> [Key=value] ... [<server>](<inner>)` part of a reply."""
    parts = [part.strip() for part in core.split(" -> ")]
    core = parts[0]
    if depth < MAX_DEPTH:
        for part in parts[1:]:
            if part:
                _add_chain(part, acc, depth)
    match = _CODE.match(core)
    rest = core
    if match:
        acc.put("smtp_code", match["smtp"])
        acc.put("enhanced_code", match["enh"])
        rest = core[match.end() :].lstrip(" -")
    else:
        anywhere = _CODE_ANYWHERE.search(core)
        if anywhere:
            acc.put("smtp_code", anywhere["smtp"])
            acc.put("enhanced_code", anywhere["enh"])
    rest, inner = _trailing_parens(rest)
    if inner:
        acc.put("inner", inner)
        if depth < MAX_DEPTH and _CODE.match(inner):
            _add_chain(inner, acc, depth)
    text, brackets = _bracket_groups(rest)
    acc.put("text", text.strip().rstrip() or None)
    if "xpired" in core and _EXPIRED.search(core):
        acc.values["expired"] = True
    for content in brackets:
        kv = _KEY_VALUE.match(content)
        if kv:
            key, value = kv["key"].strip(), kv["value"].strip()
            acc.fields.append((key, value))
            _apply_bracket(_key(key), value, acc, depth)
            continue
        server = _EOP_SERVER.match(content)
        if server:
            acc.put("eop_server", server["host"])
            acc.put("eop_session_id", server["sid"].upper() if server["sid"] else None)
            if server["ts"]:
                acc.put("eop_time_utc", parse_culture_time(server["ts"], None, UTC))
    message = acc.values.pop("_msg", None)
    if isinstance(message, str):
        acc.put("message", message)
    if depth < MAX_DEPTH:
        for body in _quoted_replies(core):
            _add_chain(body, acc, depth)


def _quoted_replies(text: str) -> list[str]:
    """Replies quoted inside a reply (`with '451 4.4.0 ...'`, `responded with: "..."`).

    Found with plain scans, not one backtracking regex, so hostile text stays linear.
    """
    replies: list[str] = []
    resume = 0
    for opening in _QUOTE_OPENS_REPLY.finditer(text):
        if opening.start() < resume:
            continue  # inside a reply already taken; its own parse finds nested ones
        if len(replies) >= MAX_CHAIN:
            break
        quote, start = text[opening.start()], opening.end()
        search = start
        while True:
            end = text.find(quote, search)
            if end < 0:
                return replies
            follower = text[end + 1 : end + 2]
            if not follower or follower in _AFTER_CLOSING_QUOTE:
                replies.append(text[start:end])
                resume = end + 1
                break
            search = end + 1
    return replies


def _apply_bracket(key: str, value: str, acc: _Acc, depth: int) -> None:
    if key == "message":
        acc.put("message", value)
        if depth < MAX_DEPTH and _CODE.match(value):
            _add_chain(value, acc, depth)
    elif key == "lastattemptedservername":
        if _looks_like_host(value):
            acc.put("fqdn", value.rstrip("."))
    elif key in ("lastattemptedip", "ip"):
        ip, port = split_endpoint(value, with_port=key == "lastattemptedip")
        acc.put("ip", ip)
        acc.put("port", port)
    elif key == "smtpsecurity":
        acc.put("smtp_security", value)


def _add_chain(text: str, acc: _Acc, depth: int) -> None:
    if len(acc.chain) >= MAX_CHAIN:
        return
    nested = _finish(text, text, depth + 1)
    acc.chain.append(replace(nested, chain=()))
    acc.chain.extend(nested.chain)


def _trailing_parens(text: str) -> tuple[str, str | None]:
    """`abc(inner)` -> ("abc", "inner") when the text ends with a balanced parenthesis."""
    stripped = text.rstrip()
    if not stripped.endswith(")"):
        return text, None
    depth = 0
    for index in range(len(stripped) - 1, -1, -1):
        char = stripped[index]
        if char == ")":
            depth += 1
        elif char == "(":
            depth -= 1
            if depth == 0:
                if index == 0:
                    return text, None
                return stripped[:index], stripped[index + 1 : -1].strip()
    return text, None


def _bracket_groups(text: str) -> tuple[str, list[str]]:
    """Split `lead [a] [b=c]` into ("lead", ["a", "b=c"]); a cut-off last group is kept."""
    lead_end = None
    groups: list[str] = []
    depth = 0
    start = 0
    for match in _BRACKET.finditer(text):
        index = match.start()
        if text[index] == "[":
            if depth == 0:
                if lead_end is None:
                    lead_end = index
                start = index + 1
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                groups.append(text[start:index])
    if depth > 0:
        groups.append(text[start:])
    lead = text if lead_end is None else text[:lead_end]
    return lead, groups


def _read_facts(text: str, acc: _Acc) -> None:
    """Facts recognised by their words wherever they stand (cheap substring tests first)."""
    low = text.lower()
    if "socket error" in low or "winsock" in low:
        socket = _SOCKET.search(text)
        if socket:
            acc.put("socket_error", int(socket["n"]))
    if "win32" in low:
        win32 = _WIN32.search(text)
        if win32:
            acc.put("win32_error", int(win32["n"]))
    if "thumbprint" in low:
        thumb = _THUMB.search(text)
        if thumb:
            acc.put("certificate_thumbprint", thumb["t"].upper())
    if any(word in text for word in _CERT_WORDS):
        cert = _CERT_ERROR.search(text)
        if cert:
            acc.put("certificate_error", cert["e"])
    if "subject" in low:
        expected = _EXPECTED.search(text)
        if expected:
            acc.put("expected_subject", expected["v"].replace("\\*", "*").strip())
        presented = _PRESENTED.search(text)
        if presented:
            acc.put("presented_subject", presented["v"].strip())
    if "endpoint" in low:
        endpoint = _ENDPOINT.search(text)
        if endpoint:
            ip, port = split_endpoint(endpoint["v"], with_port=True)
            acc.put("ip", ip)
            acc.put("port", port)
    if "expired" in low and _EXPIRED.search(text):
        acc.values["expired"] = True
