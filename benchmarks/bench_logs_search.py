"""Time `mailflow-doctor logs search --from eop --count` against two baselines, same files.

Baselines, run in this same session on the same (page-cached) files:
* `LC_ALL=C grep -c -F -f PATTERNS`: the literal `,a.b.c.` / `,2a01:111:f400:` prefixes that
  spell the published EOP ranges exactly in the remote-endpoint column (what an admin would
  type). grep counts rows, not sessions, so it is checked against our row count.
* a plain Python `csv.reader` loop: every row parsed, the remote IP checked (with a dict
  cache) against the same ranges, distinct (connector-id, session-id) pairs counted.

Every tool runs as its own process, timed wall-clock (startup included), best of `--runs`.
The script prints both ratios and exits 1 when the counts disagree.

    python benchmarks/bench_logs_search.py --size-mb 300          # generate, then time
    python benchmarks/bench_logs_search.py --data /tmp/logs       # time existing logs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CSV_LOOP = r"""
import csv, ipaddress, sys
from bisect import bisect_right
from pathlib import Path
from mailflow_doctor.knowledge.endpoints import load

ranges = load().eop_smtp_ranges()
tables = {4: ([a for a, _ in ranges.v4], ranges.v4), 6: ([a for a, _ in ranges.v6], ranges.v6)}
cache = {}

def inside(endpoint):
    host = (endpoint.rpartition(":")[0] if ":" in endpoint else endpoint).strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    starts, intervals = tables[address.version]
    i = bisect_right(starts, int(address)) - 1
    return i >= 0 and int(address) <= intervals[i][1]

sessions = set()
lines = 0
for path in sorted(Path(sys.argv[1]).rglob("*")):
    if not path.is_file() or not path.name.upper().startswith("RECV"):
        continue
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.reader(handle):
            if not row or row[0].startswith("#") or len(row) < 6:
                continue
            endpoint = row[5]
            hit = cache.get(endpoint)
            if hit is None:
                hit = cache[endpoint] = inside(endpoint)
            if hit:
                lines += 1
                sessions.add((row[1], row[2]))
print(len(sessions), lines)
"""

# The plainest loop an admin would write: no cache, `ipaddress` membership per row.
CSV_LOOP_NAIVE = r"""
import csv, ipaddress, sys
from pathlib import Path
from mailflow_doctor.knowledge.endpoints import load

networks = [ipaddress.ip_network(c) for c in load().eop_smtp_cidrs()]
sessions = set()
lines = 0
for path in sorted(Path(sys.argv[1]).rglob("*")):
    if not path.is_file() or not path.name.upper().startswith("RECV"):
        continue
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.reader(handle):
            if not row or row[0].startswith("#") or len(row) < 6:
                continue
            endpoint = row[5]
            host = (endpoint.rpartition(":")[0] if ":" in endpoint else endpoint).strip("[]")
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                continue
            if any(address in network for network in networks):
                lines += 1
                sessions.add((row[1], row[2]))
print(len(sessions), lines)
"""

CLI = "import sys; from mailflow_doctor.cli import main; sys.argv[0] = 'mailflow-doctor'; main()"


def grep_patterns() -> list[str]:
    """Literal prefixes that match exactly the EOP ranges in the remote-endpoint column."""
    from mailflow_doctor.knowledge.endpoints import load

    out: list[str] = []
    for cidr in load().eop_smtp_cidrs():
        network, _, length_text = cidr.partition("/")
        length = int(length_text)
        if ":" in cidr:
            if length != 48:
                raise SystemExit(f"no literal prefix for {cidr}")
            groups = network.rstrip(":").split(":")
            out.append("," + ":".join(groups[:3]) + ":")
            continue
        octets = [int(o) for o in network.split(".")]
        if length <= 16:
            for second in range(octets[1], octets[1] + 2 ** (16 - length)):
                out.append(f",{octets[0]}.{second}.")
        elif length <= 24:
            for third in range(octets[2], octets[2] + 2 ** (24 - length)):
                out.append(f",{octets[0]}.{octets[1]}.{third}.")
        else:
            raise SystemExit(f"no literal prefix for {cidr}")
    return out


def timed(command: list[str], runs: int, env: dict[str, str] | None = None) -> tuple[float, str]:
    best = float("inf")
    output = ""
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode not in (0, 1):
            raise SystemExit(f"{command[0]} failed: {done.stderr[-2000:]}")
        best = min(best, elapsed)
        output = done.stdout
    return best, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="existing folder of logs (else generate)")
    parser.add_argument("--size-mb", type=float, default=300.0)
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=0, help="--jobs for logs search (0: CPUs)")
    parser.add_argument("--keep", action="store_true", help="keep generated logs")
    parser.add_argument(
        "--naive", action="store_true", help="also time a csv loop without an IP cache (slow)"
    )
    args = parser.parse_args()

    made: Path | None = None
    data = args.data
    if data is None:
        from gen_logs import generate

        made = Path(tempfile.mkdtemp(prefix="mfd-bench-"))
        print(f"generating {args.size_mb:.0f} MB of SmtpReceive logs in {made} ...", flush=True)
        generate(made, args.size_mb, args.servers)
        data = made
    try:
        files = [p for p in data.rglob("*") if p.is_file() and p.name.upper().startswith("RECV")]
        size = sum(p.stat().st_size for p in files)
        print(f"{len(files)} files, {size / 1e6:.1f} MB")
        for path in files:  # warm the page cache so that every tool reads from memory
            path.read_bytes()

        ours_cmd = [sys.executable, "-c", CLI, "logs", "search", str(data), "--from", "eop"]
        ours_cmd += ["--count", "--format", "json", "--quiet", "--jobs", str(args.jobs)]
        ours1_cmd = [*ours_cmd[:-1], "1"]
        csv_cmd = [sys.executable, "-c", CSV_LOOP, str(data)]
        naive_cmd = [sys.executable, "-c", CSV_LOOP_NAIVE, str(data)]
        patterns = Path(tempfile.mkstemp(prefix="mfd-grep-", suffix=".txt")[1])
        patterns.write_text("\n".join(grep_patterns()) + "\n", encoding="ascii")
        grep = shutil.which("grep")
        grep_cmd = [grep or "grep", "-c", "-F", "-f", str(patterns), *map(str, sorted(files))]
        grep_env = {**os.environ, "LC_ALL": "C"}

        # Interleave the tools run by run, so that a busy spell on a shared machine does not
        # fall on one tool only; keep the best time of each.
        best: dict[str, float] = {}
        outputs: dict[str, str] = {}
        scans: list[tuple[float, float]] = []
        for _ in range(args.runs):
            for name, cmd, env in (
                ("ours", ours_cmd, None),
                ("ours1", ours1_cmd, None),
                ("grep", grep_cmd if grep else [], grep_env),
                ("csv", csv_cmd, None),
                ("naive", naive_cmd if args.naive else [], None),
            ):
                if not cmd:
                    continue
                elapsed, out = timed(cmd, 1, env)
                if name == "ours":
                    doc = json.loads(out)
                    scans.append((doc["elapsed_seconds"], doc["mb_per_second"]))
                if elapsed < best.get(name, float("inf")):
                    best[name], outputs[name] = elapsed, out
        patterns.unlink()
        startup = min(
            timed([sys.executable, "-c", "import mailflow_doctor.cli"], 1)[0]
            for _ in range(args.runs)
        )
        ours = json.loads(outputs["ours"])
        ours_time, ours1_time, csv_time = best["ours"], best["ours1"], best["csv"]
        scan_time, scan_rate = min(scans)
        grep_time = best.get("grep", float("nan"))
        grep_lines = -1
        if grep:
            grep_lines = sum(int(line.rpartition(":")[2]) for line in outputs["grep"].split())
        csv_sessions, csv_lines = (int(v) for v in outputs["csv"].split())

        mb = size / 1e6
        print()
        print(f"{'tool':<38}{'seconds':>9}{'MB/s':>9}  count")
        print(
            f"{'logs search --count (default jobs)':<38}{ours_time:9.2f}{mb / ours_time:9.1f}  "
            f"{ours['sessions']} sessions, {ours['lines']} rows"
        )
        print(f"{'logs search --count --jobs 1':<38}{ours1_time:9.2f}{mb / ours1_time:9.1f}")
        print(f"{'  (its scan alone, without start-up)':<38}{scan_time:9.2f}{scan_rate:9.1f}")
        print(f"{'  (importing the CLI, no work)':<38}{startup:9.2f}")
        print(
            f"{'grep -c -F -f prefixes':<38}{grep_time:9.2f}{mb / grep_time:9.1f}  "
            f"{grep_lines} rows"
        )
        print(
            f"{'python csv.reader loop':<38}{csv_time:9.2f}{mb / csv_time:9.1f}  "
            f"{csv_sessions} sessions, {csv_lines} rows"
        )
        if "naive" in best:
            naive_sessions, naive_lines = (int(v) for v in outputs["naive"].split())
            print(
                f"{'csv.reader loop, ipaddress per row':<38}{best['naive']:9.2f}"
                f"{mb / best['naive']:9.1f}  {naive_sessions} sessions, {naive_lines} rows"
            )
        print()
        if "naive" in best:
            print(f"speed-up over the naive csv loop: {best['naive'] / ours_time:.1f}x")
        print(
            f"speed-up over the csv.reader loop: {csv_time / ours_time:.1f}x "
            f"(--jobs 1: {csv_time / ours1_time:.1f}x; scan alone: {csv_time / scan_time:.1f}x; "
            "target >= 5x)"
        )
        print(
            f"ratio to grep: logs search takes {ours_time / grep_time:.1f}x grep's time "
            f"(--jobs 1: {ours1_time / grep_time:.1f}x)"
        )
        agree = ours["sessions"] == csv_sessions and ours["lines"] == csv_lines
        if grep:
            agree = agree and ours["lines"] == grep_lines
        if "naive" in best:
            agree = agree and (ours["sessions"], ours["lines"]) == (naive_sessions, naive_lines)
        print("counts agree" if agree else "COUNTS DISAGREE")
        if not agree:
            raise SystemExit(1)
    finally:
        if made is not None and not args.keep:
            shutil.rmtree(made, ignore_errors=True)


if __name__ == "__main__":
    main()
