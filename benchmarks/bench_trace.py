"""Time the message-trace readers against a plain `csv.reader` loop over the same file.

Generates a Get-MessageTraceDetail Export-Csv (en-US dates, `#TYPE` line, every field quoted,
3 of 8 events a 4.4.316 deferral with the full bracketed reason) and a Get-MessageTrace
export, then reads each with its mailflow-doctor reader (typed records, culture dates,
reasons parsed) and with a bare `csv.reader` loop that only splits fields. Prints records per
second and the ratio reader/csv in the same run (best of `--runs` for each, alternated); the
ratio is what to track, not the seconds. Targets: Detail within 6x, trace within 4x. Times are
CPU seconds of this process (`time.process_time`), so other jobs on a shared machine move
them less than wall-clock time.

    python benchmarks/bench_trace.py --rows 50000 --runs 3
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.registry import best_reader

DEFER = (
    "Reason: [{{LED=450 4.4.316 Connection refused [Message=Socket error code 10061] "
    "[LastAttemptedServerName=smtp.tailspintoys.ca] [LastAttemptedIP=203.0.113.25:25] "
    "[SmtpSecurity=-2;-2] [BN1NAM02FT0{n:02d}.eop-nam02.prod.protection.outlook.com "
    "{iso}.000Z 08DD0F2A{n:08X}]}};{{MSG=Socket error code 10061}};{{FQDN=smtp.tailspintoys.ca}};"
    "{{IP=203.0.113.25}};{{LRT={us}}}]. OutboundProxyTargetIP: 203.0.113.25. "
    "OutboundProxyTargetHostName: smtp.tailspintoys.ca"
)


def _us(when: datetime) -> str:
    hour = when.hour % 12 or 12
    return f"{when.month}/{when.day}/{when.year} {hour}:{when:%M:%S} {when:%p}"


def _quote(values: list[str]) -> str:
    return ",".join('"' + v.replace('"', '""') + '"' for v in values)


def generate(folder: Path, rows: int) -> tuple[Path, Path]:
    start = datetime(2026, 11, 28, 12, 0, 0)
    detail = folder / "detail.csv"
    trace = folder / "trace.csv"
    with detail.open("w", encoding="utf-8", newline="") as out:
        out.write(
            "#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTraceDetail\r\n"
        )
        out.write(
            _quote(
                [
                    "MessageId",
                    "MessageTraceId",
                    "RecipientAddress",
                    "SenderAddress",
                    "Date",
                    "Event",
                    "Action",
                    "Detail",
                    "Data",
                ]
            )
            + "\r\n"
        )
        for n in range(rows):
            when = start + timedelta(seconds=n)
            kind = n % 8
            event, text = "Receive", "Message received by: BN1PR11MB0001.namprd11.prod.outlook.com"
            if kind in (2, 4, 6):
                event = "Defer"
                text = DEFER.format(n=n % 100, iso=f"{when:%Y-%m-%dT%H:%M:%S}", us=_us(when))
            elif kind == 7:
                event, text = (
                    "Send external",
                    "Message sent to smtp.tailspintoys.ca at 203.0.113.25",
                )
            out.write(
                _quote(
                    [
                        f"<m{n // 8}@fabrikam.com>",
                        f"6f1c{n // 8:08x}",
                        "ap@tailspintoys.ca",
                        "billing@contoso.com",
                        _us(when),
                        event,
                        "",
                        text,
                        "",
                    ]
                )
                + "\r\n"
            )
    with trace.open("w", encoding="utf-8", newline="") as out:
        out.write(
            _quote(
                [
                    "Received",
                    "SenderAddress",
                    "RecipientAddress",
                    "Subject",
                    "Status",
                    "ToIP",
                    "FromIP",
                    "Size",
                    "MessageTraceId",
                    "MessageId",
                ]
            )
            + "\r\n"
        )
        for n in range(rows):
            when = start + timedelta(seconds=n)
            out.write(
                _quote(
                    [
                        _us(when),
                        "billing@contoso.com",
                        "ap@tailspintoys.ca",
                        f"Invoice {n}",
                        "Pending" if n % 3 else "Delivered",
                        "203.0.113.25",
                        "198.51.100.20",
                        str(1000 + n),
                        f"6f1c{n:08x}",
                        f"<m{n}@x>",
                    ]
                )
                + "\r\n"
            )
    return detail, trace


def time_reader(path: Path) -> tuple[int, float]:
    doc = Document.open(path)
    reader, _ = best_reader(doc)
    assert reader is not None
    begin = time.process_time()
    count = sum(1 for _ in reader.read(doc, ReadContext()))
    return count, time.process_time() - begin


def time_csv(path: Path) -> tuple[int, float]:
    begin = time.process_time()
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle)
        count = sum(1 for row in rows if row and not row[0].startswith("#TYPE")) - 1  # header
    return count, time.process_time() - begin


TARGETS = {"detail.csv": 6.0, "trace.csv": 4.0}  # reader time / csv.reader time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3, help="best of N for both timings")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-") as tmp:
        for path in generate(Path(tmp), args.rows):
            # Alternate the two so that a busy spell on a shared machine hits both alike.
            ours_runs, plain_runs = [], []
            for _ in range(max(1, args.runs)):
                records, ours = time_reader(path)
                rows, plain = time_csv(path)
                ours_runs.append(ours)
                plain_runs.append(plain)
            ours, plain = min(ours_runs), min(plain_runs)
            target = TARGETS[path.name]
            print(
                f"{path.name}: {records} records in {ours:.2f}s ({records / ours:,.0f}/s); "
                f"csv.reader {rows} rows in {plain:.3f}s; ratio {ours / plain:.1f}x "
                f"(target <= {target:.0f}x; best of {len(ours_runs)})"
            )


if __name__ == "__main__":
    main()
