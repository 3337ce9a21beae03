"""Zip bombs spread over nested zips: one unpacking budget for the whole run."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from mailflow_doctor.evidence import intake
from mailflow_doctor.evidence.intake import Intake

RECV_LINE = (
    b"2026-11-28T13:00:01.000Z,EX01\\Default Frontend EX01,08DE0A0B0C0D0E01,0,"
    b"10.1.1.25:25,40.107.12.34:40312,+,,\r\n"
)


def _inner_zip(name: str, size: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, RECV_LINE * (size // len(RECV_LINE)))
    return buffer.getvalue()


def test_nested_zips_share_one_budget(tmp_path: Path) -> None:
    outer = tmp_path / "evidence.zip"
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(5):
            archive.writestr(f"server{n}.zip", _inner_zip(f"RECV2026112813-{n}.LOG", 900_000))
    with Intake(max_zip_bytes=1_000_000) as bundle:
        documents = list(bundle.documents([outer]))
        unpacked = sum(doc.size for doc in documents)
        messages = [issue.message for issue in bundle.issues.issues]
    assert unpacked <= 1_000_000
    assert any("zip bomb" in m for m in messages), messages


def test_a_member_that_declares_too_much_is_not_unpacked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = tmp_path / "logs.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("RECV2026112813-1.LOG", RECV_LINE * 20_000)

    def must_not_unpack(*args: object) -> int:
        raise AssertionError("a member declaring more than the budget was unpacked")

    monkeypatch.setattr(intake, "_extract_capped", must_not_unpack)
    with Intake(max_zip_bytes=100_000) as bundle:
        assert list(bundle.documents([bomb])) == []
        messages = [issue.message for issue in bundle.issues.issues]
    assert any("zip bomb" in m and "RECV2026112813-1.LOG" in m for m in messages), messages
