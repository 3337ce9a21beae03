"""CSV intake: delimiters, #TYPE lines, quoted line breaks, line numbers, broken input."""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.tabular import (
    Header,
    normalise_name,
    read_rows,
    sniff_delimiter,
    sniff_table,
)


def _doc(tmp_path: Path, data: bytes, name: str = "export.csv") -> Document:
    path = tmp_path / name
    path.write_bytes(data)
    return Document.open(path)


def _read(doc: Document) -> tuple[list[tuple[int, tuple[str, ...]]], list[str]]:
    ctx = ReadContext()
    rows = [(row.line, row.values) for row in read_rows(doc, ctx)]
    return rows, [str(issue) for issue in ctx.issues.issues]


def test_export_csv_with_type_line_crlf_and_quoted_newlines(tmp_path: Path) -> None:
    text = (
        "#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace\r\n"
        '"Received","SenderAddress","Subject","Status"\r\n'
        '"11/28/2026 9:03:11 PM","a@fabrikam.com","one","Delivered"\r\n'
        '"11/28/2026 9:04:11 PM","b@fabrikam.com","two\r\nlines, and ""quotes""","Pending"\r\n'
        '"11/28/2026 9:05:11 PM","c@fabrikam.com","three","Failed"\r\n'
    )
    rows, issues = _read(_doc(tmp_path, text.encode("utf-8")))
    assert issues == []
    assert [line for line, _ in rows] == [3, 4, 6]
    assert rows[1][1][2] == 'two\nlines, and "quotes"'
    assert rows[2][1][3] == "Failed"


def test_semicolon_utf16_with_bom_and_header_lookup(tmp_path: Path) -> None:
    text = (
        '"Received";"Sender Address";"recipient_address";"Status"\r\n'
        '"28.11.2026 21:03:11";"a@fabrikam.com";"x@tailspintoys.ca";"Zugestellt; ok"\r\n'
    )
    doc = _doc(tmp_path, codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    ctx = ReadContext()
    (row,) = list(read_rows(doc, ctx))
    assert row.header.names == ("Received", "Sender Address", "recipient_address", "Status")
    assert row.get("SenderAddress") == "a@fabrikam.com"
    assert row.get("RecipientAddress") == "x@tailspintoys.ca"
    assert row.get("STATUS") == "Zugestellt; ok"
    assert row.get("Missing", "received") == "28.11.2026 21:03:11"
    assert row.get("nothing") == ""
    assert row.line == 2


def test_tab_and_excel_sep_line(tmp_path: Path) -> None:
    rows, _ = _read(_doc(tmp_path, b"a\tb\n1\t2\n"))
    assert rows == [(2, ("1", "2"))]
    rows, _ = _read(_doc(tmp_path, b"sep=;\na;b,c\n1;2,3\n", "sep.csv"))
    assert rows == [(3, ("1", "2,3"))]


def test_sniff_delimiter_counts_outside_quotes() -> None:
    assert sniff_delimiter('"a,b,c";"d";"e"') == ";"
    assert sniff_delimiter("a,b;c,d") == ","
    assert sniff_delimiter("single") == ","
    assert sniff_delimiter("a\tb\tc;d") == "\t"


def test_sniff_table_skips_bom_type_and_blank_lines() -> None:
    shape = sniff_table(["\ufeff", "#TYPE x", "", '"A b";"C_d"'])
    assert shape is not None
    assert (shape.delimiter, shape.header_line, shape.type_line) == (";", 4, "#TYPE x")
    assert shape.header.keys == ("ab", "cd")
    assert sniff_table(["", "  "]) is None


def test_header_normalisation() -> None:
    header = Header(("Message Trace Id", "sender_address", "\ufeffReceived"))
    assert normalise_name("Message-Trace_ID") == "messagetraceid"
    assert header.index("MessageTraceId") == 0
    assert header.index("SenderAddress") == 1
    assert header.has("received", "sender address")
    assert not header.has("received", "status")


def test_wrong_field_counts_are_reported_and_padded(tmp_path: Path) -> None:
    rows, issues = _read(_doc(tmp_path, b"a,b,c\n1,2\n1,2,3,4\n5,6,7\n"))
    assert [line for line, _ in rows] == [2, 3, 4]
    assert any("line 2: row has 2 fields, the header has 3" in issue for issue in issues)
    assert any("line 3: row has 4 fields" in issue for issue in issues)


def test_unclosed_quote_costs_one_row_only(tmp_path: Path) -> None:
    body = 'a,b,c\n1,"broken,3\n4,5,6\n7,8,9\n'
    rows, issues = _read(_doc(tmp_path, body.encode()))
    assert (3, ("4", "5", "6")) in rows
    assert (4, ("7", "8", "9")) in rows
    assert any("line 2: unbalanced quote" in issue for issue in issues)


def test_unclosed_quote_over_many_lines_is_bounded(tmp_path: Path) -> None:
    lines = ["a,b", '1,"never closed'] + [f"{n},{n}" for n in range(500)]
    rows, issues = _read(_doc(tmp_path, "\n".join(lines).encode()))
    assert rows[-1] == (502, ("499", "499"))
    assert len(rows) == 500
    assert any("line 2: a quoted field starting on this line is not closed" in i for i in issues)


def test_nul_bytes_and_huge_lines_and_script(tmp_path: Path) -> None:
    huge = "x" * (10 * 1024 * 1024)
    data = (
        f"Subject,Status\n<script>alert(1)</script>,Delivered\n{huge},Pending\na\x00b,Failed\n"
    ).encode()
    rows, issues = _read(_doc(tmp_path, data))
    assert rows[0] == (2, ("<script>alert(1)</script>", "Delivered"))
    assert rows[1][0] == 3
    assert len(rows[1][1][0]) <= 64 * 1024
    assert rows[2] == (4, ("ab", "Failed"))
    assert any("line 3: line is longer than" in issue for issue in issues)
    assert any("NUL characters removed" in issue for issue in issues)


def test_no_header(tmp_path: Path) -> None:
    rows, issues = _read(_doc(tmp_path, b"\n\n"))
    assert rows == []
    assert issues == ["no header line found; not read as a table"]


_CELL = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
    max_size=30,
)


@settings(
    deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.lists(_CELL, min_size=3, max_size=3), max_size=12),
    delimiter=st.sampled_from([",", ";", "\t"]),
    crlf=st.booleans(),
)
def test_round_trip_of_csv_written_by_the_csv_module(
    tmp_path: Path, rows: list[list[str]], delimiter: str, crlf: bool
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(
        buffer, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator="\r\n" if crlf else "\n"
    )
    writer.writerow(["Col A", "Col B", "Col C"])
    expected_lines = []
    line = 2
    for row in rows:
        writer.writerow(row)
        expected_lines.append(line)
        line += 1 + sum(cell.count("\n") for cell in row)
    doc = _doc(tmp_path, buffer.getvalue().encode("utf-8"), "rt.csv")
    ctx = ReadContext()
    got = list(read_rows(doc, ctx))
    # Line breaks inside quoted cells are normalised to "\n" (universal newlines).
    assert [r.values for r in got] == [tuple(c.replace("\r", "\n") for c in r) for r in rows]
    assert [r.line for r in got] == expected_lines
    assert ctx.issues.issues == []


@settings(
    deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=600))
def test_never_raises_on_any_bytes(tmp_path: Path, data: bytes) -> None:
    doc = _doc(tmp_path, data, "fuzz.csv")
    for row in read_rows(doc, ReadContext()):
        assert row.line >= 1
