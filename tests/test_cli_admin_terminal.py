"""The CLI as an admin meets it: `logs search` at 80 columns, `diagnose` of an empty folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXE = Path(sys.executable).parent / "mailflow-doctor"

RECV = """\
#Software: Microsoft Exchange Server
#Version: 15.02.1544.004
#Log-type: SMTP Receive Protocol Log
#Date: 2026-11-28T13:00:00.000Z
#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,\
event,data,context
2026-11-28T13:00:01.000Z,EX01\\Default Frontend EX01,08DE0A0B0C0D0E01,0,10.100.100.25:25,\
2001:db8:4a1:100::2f0:61061,+,,
2026-11-28T13:00:01.010Z,EX01\\Default Frontend EX01,08DE0A0B0C0D0E01,1,10.100.100.25:25,\
2001:db8:4a1:100::2f0:61061,*,SMTPSubmit SMTPAcceptAnySender SMTPAcceptAuthoritativeDomainSender \
AcceptRoutingHeaders,Set Session Permissions
2026-11-28T13:00:01.020Z,EX01\\Default Frontend EX01,08DE0A0B0C0D0E01,2,10.100.100.25:25,\
2001:db8:4a1:100::2f0:61061,>,"220 EX01.tailspintoys.ca Microsoft ESMTP MAIL Service ready",
2026-11-28T13:00:01.300Z,EX01\\Default Frontend EX01,08DE0A0B0C0D0E01,3,10.100.100.25:25,\
2001:db8:4a1:100::2f0:61061,<,EHLO relay-fw-outside-interface.tailspintoys.ca,
2026-11-28T13:00:31.300Z,EX01\\Default Frontend EX01,08DE0A0B0C0D0E01,4,10.100.100.25:25,\
2001:db8:4a1:100::2f0:61061,-,,Remote(ConnectionReset)
"""


def test_addresses_are_not_cut_at_80_columns(tmp_path: Path) -> None:
    if not EXE.exists():
        pytest.skip("mailflow-doctor is not installed in this environment")
    log = tmp_path / "RECV2026112813-1.LOG"
    log.write_text(RECV, encoding="utf-8")
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    result = subprocess.run(
        [str(EXE), "logs", "search", str(log), "--from", "2001:db8::/32", "--quiet"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "1 session(s)" in result.stdout
    assert "…" not in result.stdout, result.stdout  # nothing cut short
    assert "2f0" in result.stdout, result.stdout  # the end of the address is there
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_diagnose_of_an_empty_folder_is_a_usage_error(tmp_path: Path) -> None:
    """Exit 2 and say so: an empty folder is a wrong path, not 'nothing could be judged'."""
    if not EXE.exists():
        pytest.skip("mailflow-doctor is not installed in this environment")
    empty = tmp_path / "evidence"
    empty.mkdir()
    result = subprocess.run(
        [str(EXE), "diagnose", str(empty), "--format", "json"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{empty}: no files found" in result.stderr
    assert "Traceback" not in result.stderr
