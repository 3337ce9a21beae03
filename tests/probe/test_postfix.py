"""Postfix (a real MTA, as in front of many Exchange servers) on loopback, three listeners.

One postfix instance with its own configuration directory, started and stopped by the test:
port A sends the full chain, port B only the server certificate (intermediate missing), port C
offers no STARTTLS. Skips cleanly when postfix is not installed or we are not root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from probekit import free_port

from conftest import Pki
from mailflow_doctor.probe.runner import ProbeOptions, ProbeTarget, probe_many

pytestmark = pytest.mark.postfix

HOST = "mail.example.test"


def _postfix(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # postfix prints its errors only to a terminal or syslog; `script` gives it a terminal.
    command = " ".join(["postfix", "-c", str(folder), *args])
    return subprocess.run(
        ["script", "-qc", command, "/dev/null"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture(scope="module")
def postfix(pki: Pki) -> Iterator[dict[str, int]]:
    if shutil.which("postfix") is None or shutil.which("script") is None:
        pytest.skip("postfix is not installed (scripts/setup-tests.sh installs it)")
    if os.geteuid() != 0:
        pytest.skip("postfix needs root to start")
    folder = Path(tempfile.mkdtemp(prefix="mfd-postfix-"))
    folder.chmod(0o755)  # postfix daemons run as the postfix user and must reach the queue
    try:
        issued = pki.intermediate.issue(HOST)
        issued.write(folder, "full")
        leaf_only = replace(issued, chain=issued.chain[:1])
        leaf_only.write(folder, "leaf")
        (folder / "queue").mkdir()
        (folder / "data").mkdir()
        shutil.chown(folder / "data", "postfix")
        ports = {"full": free_port(), "leaf": free_port(), "plain": free_port()}
        (folder / "main.cf").write_text(
            "\n".join(
                [
                    "compatibility_level = 3.6",
                    f"queue_directory = {folder}/queue",
                    f"data_directory = {folder}/data",
                    "inet_interfaces = 127.0.0.1",
                    "inet_protocols = ipv4",
                    f"myhostname = {HOST}",
                    "mydestination =",
                    "smtpd_tls_security_level = may",
                    f"maillog_file = {folder}/postfix.log",
                    f"maillog_file_prefixes = {folder}",
                    "",
                ]
            )
        )
        services = [
            f"127.0.0.1:{ports['full']} inet n - n - - smtpd "
            f"-o smtpd_tls_chain_files={folder}/full.key,{folder}/full.crt",
            f"127.0.0.1:{ports['leaf']} inet n - n - - smtpd "
            f"-o smtpd_tls_chain_files={folder}/leaf.key,{folder}/leaf.crt",
            f"127.0.0.1:{ports['plain']} inet n - n - - smtpd -o smtpd_tls_security_level=none",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "proxymap unix - - n - - proxymap",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
            "",
        ]
        (folder / "master.cf").write_text("\n".join(services))
        started = _postfix(folder, "start")
        if started.returncode != 0:
            pytest.skip(f"postfix did not start: {started.stdout.strip()[-300:]}")
        for _ in range(100):
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", ports["plain"]), timeout=0.2).close()
                break
            time.sleep(0.1)
        yield ports
    finally:
        _postfix(folder, "stop")
        shutil.rmtree(folder, ignore_errors=True)


def _ids_at(port: int, options: ProbeOptions) -> tuple[list[str], str]:
    report = probe_many([ProbeTarget(HOST, "127.0.0.1")], replace(options, port=port))
    (address,) = report.addresses
    assert address.smtp is not None
    assert "Postfix" in address.smtp.banner
    return sorted(p.id for p in report.problems), address.smtp.starttls


def test_postfix_full_chain_is_clean(postfix: dict[str, int], options: ProbeOptions) -> None:
    assert _ids_at(postfix["full"], options) == ([], "offered")


def test_postfix_without_intermediate(postfix: dict[str, int], options: ProbeOptions) -> None:
    assert _ids_at(postfix["leaf"], options) == (["tls.chain_incomplete"], "offered")


def test_postfix_without_starttls(postfix: dict[str, int], options: ProbeOptions) -> None:
    assert _ids_at(postfix["plain"], options) == (["tls.starttls_missing"], "not_offered")


def test_postfix_against_the_connectors_tls_domain(
    postfix: dict[str, int], options: ProbeOptions
) -> None:
    ids, _ = _ids_at(postfix["full"], replace(options, expect_name="hybrid.contoso.test"))
    assert ids == ["tls.certificate_name_mismatch"]
