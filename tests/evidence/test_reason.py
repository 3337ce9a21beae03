"""The deferral / failure reason parser on every form Exchange writes, and on anything else."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow_doctor.evidence.reason import parse_reason, split_endpoint

TAILSPIN = (
    "Reason: [{LED=450 4.4.316 Connection refused [Message=Socket error code 10061] "
    "[LastAttemptedServerName=smtp.tailspintoys.ca] [LastAttemptedIP=203.0.113.25:25] "
    "[SmtpSecurity=-2;-2] [BN1NAM02FT012.eop-nam02.prod.protection.outlook.com "
    "2026-11-28T21:03:11.000Z 08DB1DF24DB12D84]};{MSG=Socket error code 10061};"
    "{FQDN=smtp.tailspintoys.ca};{IP=203.0.113.25};{LRT=11/28/2026 9:03:11 PM}]. "
    "OutboundProxyTargetIP: 203.0.113.25. OutboundProxyTargetHostName: smtp.tailspintoys.ca"
)


def test_current_exo_defer_detail_gives_every_fact() -> None:
    reason = parse_reason(TAILSPIN)
    assert reason.raw == TAILSPIN
    assert (reason.smtp_code, reason.enhanced_code, reason.code) == ("450", "4.4.316", "4.4.316")
    assert reason.text == "Connection refused"
    assert reason.message == "Socket error code 10061"
    assert reason.socket_error == 10061
    assert (reason.fqdn, reason.ip, reason.port) == ("smtp.tailspintoys.ca", "203.0.113.25", 25)
    assert reason.smtp_security == "-2;-2"
    assert reason.eop_server == "BN1NAM02FT012.eop-nam02.prod.protection.outlook.com"
    assert reason.eop_time_utc == datetime(2026, 11, 28, 21, 3, 11, tzinfo=UTC)
    assert reason.eop_session_id == "08DB1DF24DB12D84"
    assert reason.last_retry_utc == datetime(2026, 11, 28, 21, 3, 11, tzinfo=UTC)
    assert reason.proxy_target_ip == "203.0.113.25"
    assert reason.proxy_target_host == "smtp.tailspintoys.ca"
    assert ("LastAttemptedIP", "203.0.113.25:25") in reason.fields
    assert reason.chain == ()
    assert not reason.expired


def test_old_form_keeps_the_inner_reason_in_msg() -> None:
    reason = parse_reason(
        "Reason: [{LED=450 4.7.320 Certificate validation failed};{MSG=SubjectMismatch};"
        "{FQDN=hybrid.tailspintoys.ca};{IP=203.0.113.25};{LRT=4/14/2017 1:07:17 PM}]"
    )
    assert reason.code == "4.7.320"
    assert reason.text == "Certificate validation failed"
    assert reason.message == "SubjectMismatch"
    assert reason.certificate_error == "SubjectMismatch"
    assert reason.fqdn == "hybrid.tailspintoys.ca"
    assert reason.ip == "203.0.113.25"
    assert reason.port is None
    assert reason.last_retry_utc == datetime(2017, 4, 14, 13, 7, 17, tzinfo=UTC)


def test_subject_mismatch_gives_subjects_and_thumbprint() -> None:
    reason = parse_reason(
        "Reason: [{LED=450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch "
        "Expected Subject: mail.tailspintoys.ca. Presented Subject: CN=EX01. Thumbprint: "
        "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567.] [LastAttemptedServerName=mail.tailspintoys.ca]"
        " [LastAttemptedIP=203.0.113.25:25] [SmtpSecurity=-1;-1] "
        "[MW2NAM12FT041.eop-nam12.prod.protection.outlook.com 2026-11-28T21:03:11.123Z "
        "08DB1DF24DB12D85]};{MSG=};{FQDN=mail.tailspintoys.ca};{IP=203.0.113.25};"
        "{LRT=11/28/2026 9:05:00 PM}]"
    )
    assert reason.code == "4.4.317"
    assert reason.certificate_error == "SubjectMismatch"
    assert reason.expected_subject == "mail.tailspintoys.ca"
    assert reason.presented_subject == "CN=EX01"
    assert reason.certificate_thumbprint == "0A1B2C3D4E5F60718293A4B5C6D7E8F901234567"
    assert reason.smtp_security == "-1;-1"


def test_on_premises_chain_is_split_and_socket_error_copied_up() -> None:
    reason = parse_reason(
        "451 4.4.397 Error communicating with target host. -> 421 4.2.1 Unable to connect -> "
        "SocketTimedout: Socket error code 10060"
    )
    assert reason.code == "4.4.397"
    assert [hop.code for hop in reason.chain] == ["4.2.1", None]
    assert reason.chain[1].socket_error == 10060
    assert reason.socket_error == 10060
    assert reason.codes == ("4.4.397", "4.2.1")


def test_ndr_hops_become_a_chain_with_the_target_copied_up() -> None:
    text = (
        "11/28/2026 9:58:12 PM - Server at SJ0PR04MB7504.namprd04.prod.outlook.com returned "
        "'550 5.4.316 Message expired, connection refused(Socket error code 10061)'\n"
        "11/28/2026 9:48:53 PM - Server at smtp.tailspintoys.ca (203.0.113.25) returned "
        "'450 4.4.316 Connection refused [Message=Socket error code 10061] "
        "[LastAttemptedServerName=smtp.tailspintoys.ca] [LastAttemptedIP=203.0.113.25:25] "
        "[BN1NAM02FT012.eop-nam02.prod.protection.outlook.com](Socket error code 10061)'"
    )
    reason = parse_reason(text)
    assert reason.code == "5.4.316"
    assert reason.expired
    assert reason.text == "Message expired, connection refused"
    assert reason.inner == "Socket error code 10061"
    assert reason.reported_by == "SJ0PR04MB7504.namprd04.prod.outlook.com"
    assert reason.reported_utc == datetime(2026, 11, 28, 21, 58, 12, tzinfo=UTC)
    assert reason.chain[0].code == "4.4.316"
    assert reason.chain[0].reported_by_ip == "203.0.113.25"
    assert (reason.ip, reason.port, reason.fqdn) == ("203.0.113.25", 25, "smtp.tailspintoys.ca")
    assert reason.socket_error == 10061


def test_proxy_error_keeps_nested_replies() -> None:
    reason = parse_reason(
        "450 4.4.101 Proxy session setup failed on Frontend with '451 4.4.0 Primary target IP "
        'address responded with "451 5.7.3 STARTTLS is required to send mail." Attempted '
        "failover to alternate host, but that did not succeed. The last endpoint attempted was "
        "203.0.113.25:25'."
    )
    assert reason.codes == ("4.4.101", "4.4.0", "5.7.3")
    assert (reason.ip, reason.port) == ("203.0.113.25", 25)


def test_pasted_text_with_line_breaks_and_html_breaks() -> None:
    reason = parse_reason(
        "Reason: [{LED=450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch "
        "Expected<br><br>Subject: *.contoso.com. Presented Subject: CN=EX01. Thumbprint:\r\n"
        "D0AC2FC63B9C5798828B45D849BE8D33.] [LastAttemptedServerName=mail.contoso.com]"
    )
    assert reason.certificate_thumbprint == "D0AC2FC63B9C5798828B45D849BE8D33"
    assert reason.expected_subject == "*.contoso.com"
    assert reason.fqdn == "mail.contoso.com"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.25:25", ("203.0.113.25", 25)),
        ("203.0.113.25", ("203.0.113.25", None)),
        ("[2001:db8::25]:25", ("2001:db8::25", 25)),
        ("2001:db8::25", ("2001:db8::25", None)),
        ("72.x.x.x.:25", (None, None)),
        ("xxx", (None, None)),
        ("203.0.113.25:99999", ("203.0.113.25", None)),
        ("", (None, None)),
        ("2001:db8::25:25", ("2001:db8::25:25", None)),
    ],
)
def test_split_endpoint(value: str, expected: tuple[str | None, int | None]) -> None:
    assert split_endpoint(value) == expected


def test_split_endpoint_when_a_port_always_follows() -> None:
    assert split_endpoint("2001:db8::25:25", with_port=True) == ("2001:db8::25", 25)
    assert split_endpoint("203.0.113.25:25", with_port=True) == ("203.0.113.25", 25)
    assert split_endpoint("203.0.113.25", with_port=True) == ("203.0.113.25", None)
    reason = parse_reason("450 4.4.316 Connection refused [LastAttemptedIP=2001:db8::25:25]")
    assert (reason.ip, reason.port) == ("2001:db8::25", 25)


@settings(deadline=None)
@given(
    address=st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    port=st.integers(1, 65535),
)
def test_split_endpoint_round_trip(address: object, port: int) -> None:
    text = str(address)
    assert split_endpoint(text) == (text, None)
    assert split_endpoint(f"{text}:{port}", with_port=True) == (text, port)
    bracketed = f"[{text}]:{port}" if ":" in text else f"{text}:{port}"
    assert split_endpoint(bracketed) == (text, port)


def test_queue_last_error_form() -> None:
    reason = parse_reason(
        "[{LRT=15-01-21 23:50:05};{LED=450 4.7.0 Proxy session setup failed on Frontend with "
        "'451 4.4.0 Primary target IP address responded with: \"451 4.4.0 Security status "
        'InvalidToken." Attempted failover to alternate host, but that did not succeed. The '
        "last endpoint attempted was 2001:db8::1:25'};{FQDN=MAILSERVER.DOMAIN.LOCAL};"
        "{IP=192.168.12.4}]"
    )
    assert reason.code == "4.7.0"
    assert reason.codes == ("4.7.0", "4.4.0")
    assert [hop.text for hop in reason.chain][-1] == "Security status InvalidToken."
    assert reason.fqdn == "MAILSERVER.DOMAIN.LOCAL"
    assert reason.ip == "192.168.12.4"
    assert reason.last_retry_utc == datetime(2021, 1, 15, 23, 50, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Reason: [{LED=",
        "[{",
        "{LED=}",
        "Server at  returned '",
        "1/1/2026 1:00:00 PM - Server at x returned '999 9.9.999 nonsense(",
        "[[[[[[[[[[",
        "((((((((()",
        "\x00\x00\x00 450 4.4.316",
        "-> -> -> ->",
        # Shapes that make backtracking parsers quadratic (they must stay instant here).
        "'450 4.4.316 " * 1300,
        "Expected Subject: " * 1000,
        "[{LED=" + "};{A=" * 3000,
        "1/1/2026 1:00:00 PM - Server at x returned '" * 400,
        "450 4.4.316 x" + "(" * 8000 + ")" * 8000,
    ],
)
def test_odd_input_is_kept_raw(text: str) -> None:
    reason = parse_reason(text)
    assert reason.raw == text


def test_long_and_hostile_input_is_bounded() -> None:
    text = "450 4.4.316 Connection refused [Message=" + "<script>alert(1)</script>" * 400_000
    reason = parse_reason(text)
    assert reason.code == "4.4.316"
    assert reason.raw == text


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_never_raises_on_any_text(text: str) -> None:
    assert parse_reason(text).raw == text


_PIECES = st.sampled_from(
    [
        "[{LED=",
        "};{",
        "}]",
        "{MSG=",
        "{FQDN=",
        "{IP=",
        "{LRT=",
        "[Message=",
        "]",
        "[",
        "(",
        ")",
        " -> ",
        "'",
        '"',
        "450 4.4.316 ",
        "Socket error code 10061",
        "LastAttemptedIP=203.0.113.25:25",
        "OutboundProxyTargetIP: ",
        "11/28/2026 9:03:11 PM - Server at x (203.0.113.1) returned '",
        "Thumbprint: ",
        "Expected Subject: ",
        "Presented Subject: ",
        "2026-11-28T21:03:11.000Z",
        "\n",
        " ",
    ]
)


@settings(deadline=None, max_examples=400)
@given(st.lists(_PIECES, max_size=30).map("".join))
def test_never_raises_on_reason_like_noise(text: str) -> None:
    assert parse_reason(text).raw == text


_HOST = st.from_regex(r"\A[a-z][a-z0-9]{0,10}(\.[a-z][a-z0-9]{0,10}){1,3}\Z")
_WORDS = st.from_regex(r"\A[A-Z][a-z]{1,12}( [a-z]{1,12}){0,4}\Z")
_IPV4 = st.tuples(*[st.integers(1, 254)] * 4).map(lambda t: ".".join(map(str, t)))
_TIMES = st.datetimes(
    min_value=datetime(2015, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))


def _us(when: datetime) -> str:
    hour = when.hour % 12 or 12
    ampm = "PM" if when.hour >= 12 else "AM"
    return f"{when.month}/{when.day}/{when.year} {hour}:{when.minute:02d}:{when.second:02d} {ampm}"


@settings(deadline=None, max_examples=120)
@given(
    code=st.sampled_from(["450 4.4.316", "450 4.4.315", "450 4.4.317", "451 4.7.320"]),
    text=_WORDS,
    socket=st.integers(10000, 11999),
    host=_HOST,
    ip=_IPV4,
    port=st.integers(1, 65535),
    security=st.sampled_from(["-1;-1", "-2;-2", "0;0"]),
    eop=_HOST,
    session=st.from_regex(r"\A[0-9A-F]{16}\Z"),
    eop_time=_TIMES,
    lrt=_TIMES,
    proxy=st.booleans(),
)
def test_round_trip_of_generated_exo_reasons(
    code: str,
    text: str,
    socket: int,
    host: str,
    ip: str,
    port: int,
    security: str,
    eop: str,
    session: str,
    eop_time: datetime,
    lrt: datetime,
    proxy: bool,
) -> None:
    led = (
        f"{code} {text} [Message=Socket error code {socket}] [LastAttemptedServerName={host}] "
        f"[LastAttemptedIP={ip}:{port}] [SmtpSecurity={security}] "
        f"[{eop} {eop_time.strftime('%Y-%m-%dT%H:%M:%S')}.000Z {session}]"
    )
    detail = f"Reason: [{{LED={led}}};{{MSG=}};{{FQDN={host}}};{{IP={ip}}};{{LRT={_us(lrt)}}}]"
    if proxy:
        detail += f". OutboundProxyTargetIP: {ip}. OutboundProxyTargetHostName: {host}"
    reason = parse_reason(detail)
    smtp, enhanced = code.split()
    assert (reason.smtp_code, reason.enhanced_code) == (smtp, enhanced)
    assert reason.text == text
    assert reason.message == f"Socket error code {socket}"
    assert reason.socket_error == socket
    assert (reason.fqdn, reason.ip, reason.port) == (host, ip, port)
    assert reason.smtp_security == security
    assert reason.eop_server == eop
    assert reason.eop_session_id == session
    assert reason.eop_time_utc == eop_time
    assert reason.last_retry_utc == lrt
    assert reason.proxy_target_ip == (ip if proxy else None)
    assert reason.proxy_target_host == (host if proxy else None)


@settings(deadline=None, max_examples=100)
@given(
    hops=st.lists(
        st.tuples(st.integers(400, 599), st.integers(0, 9), st.integers(0, 999), _WORDS),
        min_size=1,
        max_size=5,
        unique_by=lambda hop: hop[:3],  # the chain lists each distinct reply once
    ),
    socket=st.integers(10000, 11999),
)
def test_round_trip_of_generated_chains(hops: list[tuple[int, int, int, str]], socket: int) -> None:
    parts = [f"{c} {c // 100}.{a}.{b} {words}" for c, a, b, words in hops]
    text = " -> ".join([*parts, f"SocketError: Socket error code {socket}"])
    reason = parse_reason(text)
    expected = [f"{c // 100}.{a}.{b}" for c, a, b, _ in hops]
    assert [reason.code, *(hop.code for hop in reason.chain)] == [*expected, None]
    assert reason.text == hops[0][3]
    assert reason.socket_error == socket


@settings(deadline=None, max_examples=150)
@given(
    expired_at=_TIMES,
    tried_at=_TIMES,
    eop=_HOST,
    target=_HOST,
    ip=_IPV4,
    code=st.sampled_from(["4.4.316", "4.4.315", "4.4.317"]),
    socket=st.integers(10000, 11999),
    wrap=st.integers(0, 3),
)
def test_round_trip_of_generated_ndr_blocks(
    expired_at: datetime,
    tried_at: datetime,
    eop: str,
    target: str,
    ip: str,
    code: str,
    socket: int,
    wrap: int,
) -> None:
    final = "5" + code[1:]
    inner = f"Socket error code {socket}"
    text = (
        f"{_us(expired_at)} - Server at {eop} returned '550 {final} Message expired, "
        f"connection refused({inner})'\n"
        f"{_us(tried_at)} - Server at {target} ({ip}) returned '450 {code} Connection refused "
        f"[Message={inner}] [LastAttemptedServerName={target}] [LastAttemptedIP={ip}:25] "
        f"[BN1NAM02FT012.eop-nam02.prod.protection.outlook.com]({inner})'"
    )
    if wrap:  # pasted from a mail client that wraps long lines
        words = text.split(" ")
        text = " ".join(
            word + ("\n" if i % (5 + wrap) == 4 else "") for i, word in enumerate(words)
        )
        text = text.replace("\n ", "\n")
    reason = parse_reason(text)
    assert (reason.code, reason.expired, reason.inner) == (final, True, inner)
    assert (reason.reported_by, reason.reported_utc) == (eop, expired_at)
    hop = reason.chain[0]
    assert (hop.code, hop.reported_by, hop.reported_by_ip, hop.reported_utc) == (
        code,
        target,
        ip,
        tried_at,
    )
    assert (reason.ip, reason.port, reason.fqdn, reason.socket_error) == (ip, 25, target, socket)


# --- conformance over the public samples -------------------------------------------------

SAMPLE_CODES = {
    "exo_connector_validation_4.4.101_kb2989382.txt": "4.4.101",
    "exo_event_defer_detail_4.4.316_rmilne_2018_truncated.txt": "4.4.316",
    "exo_event_defer_detail_4.4.316_truncated_qa1377740.txt": "4.4.316",
    "exo_event_defer_detail_4.4.316_userquoted_qa218686.txt": "4.4.316",
    "exo_event_defer_detail_4.4.317_subjectmismatch_ms_jp_blog.txt": "4.4.317",
    "exo_event_defer_detail_4.4.317_tls_answersms_2023.txt": "4.4.317",
    "exo_event_defer_detail_4.7.23_full_qa2149611.txt": "4.7.23",
    "exo_hcw_connector_validation_4.4.316_csharpcorner.txt": "4.4.316",
    "ndr_exo_4.4.312_dns_2019.txt": "5.4.312",
    "ndr_exo_4.4.317_5.4.317_socketerror_serverfault_1091875.txt": "5.4.317",
    "ndr_exo_4.4.317_lastattemptedip_smtpsecurity_2026.txt": "5.4.317",
    "ndr_exo_4.4.317_starttls_required_2020.txt": "5.4.317",
    "ndr_onprem_451_4.4.0_primary_target_qa_2020.txt": "4.4.0",
    "queue_lasterror_onprem_to_exo_socketrefused_qa336454.txt": "4.4.397",
    "queue_lasterror_onprem_to_exo_supertekboy_2017.txt": "4.4.0",
}


@pytest.mark.parametrize(("name", "code"), sorted(SAMPLE_CODES.items()))
def test_every_reason_sample_gives_its_code(samples: Path, name: str, code: str) -> None:
    text = (samples / "exchange" / name).read_text(encoding="utf-8")
    assert parse_reason(text).code == code


def test_sample_facts(samples: Path) -> None:
    folder = samples / "exchange"

    def read(name: str) -> str:
        return (folder / name).read_text(encoding="utf-8")

    refused = parse_reason(read("exo_event_defer_detail_4.4.316_truncated_qa1377740.txt"))
    assert refused.socket_error == 10061
    quoted = parse_reason(read("exo_event_defer_detail_4.4.316_userquoted_qa218686.txt"))
    assert (quoted.socket_error, quoted.fqdn) == (10061, "Hybrid.ourdomain.com")
    spf = parse_reason(read("exo_event_defer_detail_4.7.23_full_qa2149611.txt"))
    assert (spf.ip, spf.fqdn) == ("203.42.22.10", "extmail.bigpond.com")
    assert spf.last_retry_utc == datetime(2025, 1, 21, 3, 45, 12, tzinfo=UTC)
    tls = parse_reason(read("exo_event_defer_detail_4.4.317_tls_answersms_2023.txt"))
    assert tls.eop_server == "DM6NAM12FT012.eop-nam12.prod.protection.outlook.com"
    assert tls.smtp_security == "-2;-2"
    assert "4.4.0" in tls.codes
    winsock = parse_reason(read("ndr_exo_4.4.317_lastattemptedip_smtpsecurity_2026.txt"))
    assert (winsock.socket_error, winsock.win32_error) == (995, 995)
    assert (winsock.ip, winsock.port) == ("199.255.45.85", 25)
    starttls = parse_reason(read("ndr_exo_4.4.317_starttls_required_2020.txt"))
    assert "5.7.3" in starttls.codes
    assert starttls.ip == "50.251.172.148"
    queue = parse_reason(read("queue_lasterror_onprem_to_exo_socketrefused_qa336454.txt"))
    assert queue.socket_error == 10061
    assert queue.reported_by_ip == "52.47.64.127"
    mismatch = parse_reason(read("exo_event_defer_detail_4.4.317_subjectmismatch_ms_jp_blog.txt"))
    assert mismatch.certificate_thumbprint == "D0AC2FC63B9C5798828B45D849BE8D33"
    assert mismatch.presented_subject == "CN=ExchangeServer01"


def test_kb_lastError_strings_each_give_a_code(samples: Path) -> None:
    path = samples / "exchange" / "getqueue_lasterror_strings_ms_kb.txt"
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    codes = [parse_reason(line).codes for line in lines]
    assert codes == [("4.4.0", "4.7.0"), ("4.4.0", "4.4.1")]
