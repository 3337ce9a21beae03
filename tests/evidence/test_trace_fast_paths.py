"""The fast paths of the trace readers give exactly what the general paths give.

`parse_reason` reads the Exchange Online Detail shape from a remembered template with the
per-attempt values (EOP server bracket, LRT) put back, and `parse_culture_time` reads the two
common date shapes without the general pattern. Both must agree with the general path on
every input, including values built to trip the shortcut (codes, certificate words and
placeholder look-alikes inside the templated values).
"""

from __future__ import annotations

import re
from datetime import UTC, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow_doctor.evidence.culturetime import (
    DateOrder,
    parse_culture_time,
    parse_culture_time_general,
)
from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.exotrace import to_int
from mailflow_doctor.evidence.readers.exo_trace import _MAPPED_DETAIL, MAX_EXTRA_CHARS, _row_extra
from mailflow_doctor.evidence.reason import (
    _parse_templated,
    parse_reason,
    parse_reason_general,
)
from mailflow_doctor.evidence.tabular import Header, Picker, TableRow, normalise_name, read_rows

TAILSPIN = (
    "Reason: [{LED=450 4.4.316 Connection refused [Message=Socket error code 10061] "
    "[LastAttemptedServerName=smtp.tailspintoys.ca] [LastAttemptedIP=203.0.113.25:25] "
    "[SmtpSecurity=-2;-2] [BN1NAM02FT012.eop-nam02.prod.protection.outlook.com "
    "2026-11-28T21:03:11.000Z 08DB1DF24DB12D84]};{MSG=Socket error code 10061};"
    "{FQDN=smtp.tailspintoys.ca};{IP=203.0.113.25};{LRT=11/28/2026 9:03:11 PM}]. "
    "OutboundProxyTargetIP: 203.0.113.25. OutboundProxyTargetHostName: smtp.tailspintoys.ca"
)

# --- dates -------------------------------------------------------------------------------

_DIGITS = st.sampled_from(["0", "00", "1", "01", "12", "13", "28", "31", "32", "99", "2026", "026"])
_DATE_TEXT = st.builds(
    lambda a, sep, b, c, t, h, mi, s, frac, end: f"{a}{sep}{b}{sep}{c}{t}{h}:{mi}:{s}{frac}{end}",
    _DIGITS,
    st.sampled_from(["/", ".", "-"]),
    _DIGITS,
    _DIGITS,
    st.sampled_from([" ", "T", "  ", ", "]),
    st.sampled_from(["0", "00", "1", "9", "11", "12", "13", "23", "24"]),
    st.sampled_from(["00", "03", "59", "60"]),
    st.sampled_from(["00", "11", "59", "61"]),
    st.sampled_from(["", ".0", ".000", ".123456789", ",5"]),
    st.sampled_from(["", " AM", " PM", "Z", " Z", "am", " p.m.", " +02:00", " UTC"]),
)
_ORDERS = st.sampled_from([None, DateOrder.MDY, DateOrder.DMY, DateOrder.YMD])
_ZONES = st.sampled_from(
    [
        None,
        UTC,
        ZoneInfo("Europe/Berlin"),
        ZoneInfo("America/New_York"),
        timezone(timedelta(hours=-5)),
    ]
)


@settings(max_examples=600, deadline=None)
@given(_DATE_TEXT, _ORDERS, _ZONES)
def test_fast_date_agrees_with_the_general_path(
    text: str, order: DateOrder | None, zone: tzinfo | None
) -> None:
    assert parse_culture_time(text, order, zone) == parse_culture_time_general(text, order, zone)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789/.-: TZAPM", max_size=30), _ORDERS)
def test_fast_date_agrees_on_noise(text: str, order: DateOrder | None) -> None:
    assert parse_culture_time(text, order) == parse_culture_time_general(text, order)


# --- reasons -----------------------------------------------------------------------------

_HOSTS = st.one_of(
    st.sampled_from(
        [
            "BN1NAM02FT012.eop-nam02.prod.protection.outlook.com",
            "QUEUE.Expired.example",
            "queue.expired.example",
            "450-4.4.316.example",
            "450-4.4.316",
            "SubjectMismatch.example",
            "Thumbprint0123456789ABCDEF.example",
            "QZQZ0.eop-qzqz.prod.protection.outlook.com",
            "mail.server.at",
            "a.b",
        ]
    ),
    st.from_regex(r"\A[A-Za-z0-9-]{1,12}(\.[A-Za-z0-9-]{1,10}){1,4}\Z"),
)
_ISO = st.sampled_from(
    [
        "2026-11-28T21:03:11.000Z",
        "2026-13-28T21:03:11.000Z",
        "2000-01-02T03:04:05.000Z",
        "2026-02-29T00:00:00Z",
        "2026-11-28T21:03:11",
    ]
)
_SIDS = st.sampled_from(
    ["08DB1DF24DB12D84", "0face0face0face0", "0FACE0FACE0FACE0", "12345678", "ABCDEF"]
)
_LRT = st.sampled_from(
    [
        "11/28/2026 9:03:11 PM",
        "28/11/2026 21:03:11",
        "28.11.2026 21:03:11",
        "1/1/2000 12:00:00 AM",
        "13/13/2026 9:03:11 PM",
        "2026-11-28 21:03:11",
        "11/28/2026 9:03:11 PM}]",
        "",
        "soon",
    ]
)
_BRACKETS = st.sampled_from(
    [
        " [Message=Socket error code 10061]",
        " [Message=451 4.4.0 Primary target IP address responded with: 421 4.2.1 Unable]",
        " [LastAttemptedServerName=smtp.tailspintoys.ca]",
        " [LastAttemptedIP=203.0.113.25:25]",
        " [LastAttemptedIP=2001:db8::25:25]",
        " [SmtpSecurity=-2;-2]",
        " [smtp.tailspintoys.ca]",
        " [a.b 2026-11-28T21:03:11.000Z 0123456789AB]",
        " [Message=Thumbprint: 0123456789ABCDEF0123]",
        " [Message=SubjectMismatch]",
        " [Message=expired",
        " [Message=QZQZ]",
        " [Message=retried 1/1/2000 12:00:00 AM]",
        " [Message=QZQZ0.eop-qzqz.prod.protection.outlook.com 2000-01-02T03:04:05.000Z "
        "0FACE0FACE0FACE0]",
        " (inner)",
        " 'quoted",
        "'",
        " -> 421 4.2.1 x",
        " Server at x returned '",
        "",
    ]
)
_HEADS = st.sampled_from(
    [
        "450 4.4.316 Connection refused",
        "451 4.4.397 Error communicating with target host.",
        "550 5.4.316 Message expired, connection refused",
        "Connection refused 450 4.4.316",
        "LED text",
        "",
    ]
)
_MIDS = st.sampled_from(
    [
        ";{MSG=Socket error code 10061};{FQDN=smtp.tailspintoys.ca};{IP=203.0.113.25}",
        ";{MSG=};{FQDN=};{IP=}",
        ";{MSG=Presented Subject: CN=x};{FQDN=x}",
        ";{MSG=OutboundProxyTargetIP: }",
        ";{MSG=last endpoint attempted was }",
        ";{MSG=socket error}",
        ";{MSG=SubjectMismatch};{FQDN=hybrid.contoso.com};{IP=...}",
        ";{MSG=Thumbprint}",
        "",
    ]
)
_TAILS = st.sampled_from(
    [
        ". OutboundProxyTargetIP: 203.0.113.25. OutboundProxyTargetHostName: smtp.tailspintoys.ca",
        ". OutboundProxyTargetIP: ",
        ". Thumbprint: 0123456789ABCDEF0123",
        " {LRT=1/2/2026 1:00:00 PM}]",
        " retried 1/1/2000 12:00:00 AM",  # the placeholders themselves, in the real text
        "}]",
        "",
        " Expected Subject: a. Presented Subject: b",
    ]
)


@st.composite
def _detail(draw: st.DrawFn) -> str:
    head = draw(_HEADS) + "".join(draw(st.lists(_BRACKETS, max_size=4)))
    eop = draw(
        st.one_of(
            st.builds(lambda h, t, s: f" [{h} {t} {s}]", _HOSTS, _ISO, _SIDS),
            st.sampled_from(["", " [XXXEUR01FTXXX.eop-EUR01.prod.protection.outlook.com]"]),
        )
    )  # current exports end the LED with the EOP bracket; older ones have none
    prefix = draw(st.sampled_from(["Reason: [", "[", "Defer: Reason: [", "Reason:\n[", " "]))
    return f"{prefix}{{LED={head}{eop}}}{draw(_MIDS)};{{LRT={draw(_LRT)}}}]{draw(_TAILS)}"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_detail())
def test_templated_reason_agrees_with_the_general_path(text: str) -> None:
    assert parse_reason(text) == parse_reason_general(text)


def test_templated_path_is_taken_for_the_exchange_online_shape() -> None:
    # Without this the property above could pass with the shortcut never used.
    fast = _parse_templated(TAILSPIN)
    assert fast is not None
    assert fast == parse_reason_general(TAILSPIN)
    later = TAILSPIN.replace("21:03:11.000Z 08DB1DF24DB12D84", "22:04:12.000Z 08DB1DF24DB12D85")
    later = later.replace("9:03:11 PM", "10:04:12 PM")
    assert _parse_templated(later) == parse_reason_general(later)
    older = (  # an older export: no EOP server bracket, no [Message=...] fields
        "[{LED=450 4.4.316 Connection refused};{MSG=Socket error code 10061};"
        "{FQDN=smtp.tailspintoys.ca};{IP=};{LRT=3/16/2017 4:59:18 PM}]. OutboundProxyTargetIP: "
        "OutboundProxyTargetHostName: smtp.tailspintoys.ca"
    )
    assert _parse_templated(older) is not None
    assert _parse_templated(older) == parse_reason_general(older)
    nested = TAILSPIN.replace("Connection refused", "x [Message=451 5.7.3 STARTTLS is required]")
    assert _parse_templated(nested) is not None  # a chain from the text around is kept
    assert _parse_templated(nested) == parse_reason_general(nested)


# --- columns picked once per header ------------------------------------------------------

_NAMES = st.sampled_from(
    ["Date", "date", "DateTime", "Event", "Detail", "Description", "Recipient Address", "x", ""]
)
_ALIASES = st.lists(st.lists(_NAMES, min_size=1, max_size=3).map(tuple), min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_NAMES, min_size=1, max_size=6),
    st.lists(st.lists(st.sampled_from(["", " a ", "b", "  "]), max_size=8), max_size=4),
    _ALIASES,
)
def test_picker_agrees_with_row_get(
    names: list[str], rows: list[list[str]], aliases: list[tuple[str, ...]]
) -> None:
    header = Header(tuple(names))
    pick = Picker(*aliases)
    for line, values in enumerate(rows, 1):
        row = TableRow(line, tuple(values), header, "")
        assert pick(row) == [row.get(*group) for group in aliases]
    other = TableRow(1, ("z",) * 6, Header(tuple(reversed(names))), "")  # a new header
    assert pick(other) == [other.get(*group) for group in aliases]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_NAMES, min_size=1, max_size=6),
    st.lists(st.sampled_from(["", "v", "w" * 600]), max_size=8),
)
def test_extra_columns_agree_with_a_per_row_scan(names: list[str], values: list[str]) -> None:
    row = TableRow(1, tuple(values), Header(tuple(names)), "")
    expected = tuple(
        (name, value[:MAX_EXTRA_CHARS])
        for name, value in zip(row.header.names, row.values, strict=False)
        if value and normalise_name(name) not in _MAPPED_DETAIL
    )
    assert _row_extra(row, _MAPPED_DETAIL) == expected


@given(st.text(alphabet="0123456789 ,.'\u00a0\u202fx-", max_size=22))
def test_to_int_agrees_with_the_general_path(text: str) -> None:
    digits = re.sub(r"[\s,.'\u00a0\u202f]", "", text)
    expected = int(digits) if digits.isdigit() and len(digits) < 19 else None
    assert to_int(text) == expected


def test_long_fields_are_cut_on_one_line_and_across_lines(tmp_path: Path) -> None:
    # read_rows skips the length check for a line no longer than the limit; make sure the
    # check still runs for long single lines and for fields spanning several lines.
    path = tmp_path / "long.csv"
    path.write_text(
        'a,b\n"short","' + "x" * 30 + '"\n"multi\nline\nvalue here","ok"\n"s","t"\n',
        encoding="utf-8",
    )
    doc = Document.open(path)
    ctx = ReadContext()
    rows = list(read_rows(doc, ctx, max_field=12))
    assert [row.values for row in rows] == [
        ("short", "x" * 12),
        ("multi\nline\nv", "ok"),
        ("s", "t"),
    ]
    warnings = [issue for issue in ctx.issues.for_path(doc.display) if "was cut" in issue]
    assert len(warnings) == 2


@given(st.text(max_size=22))
def test_to_int_never_raises(text: str) -> None:
    """Superscripts and other non-decimal digits ("²") are not sizes, and never an error."""
    result = to_int(text)
    assert result is None or result >= 0


def test_to_int_rejects_superscripts() -> None:
    assert to_int("²") is None
    assert to_int("1²") is None
    assert to_int("12\u202f345") == 12345
