"""Turn the paths an admin gives us (files, folders, .zip bundles) into documents.

Zip bundles are hostile until proven otherwise: members are extracted one by one into a private
temporary directory, names with `..`, absolute paths or drive letters are refused, and the total
unpacked size and member count are capped while extracting (the declared sizes in a zip header
can lie), so a zip bomb stops at the cap instead of filling the disk.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from mailflow_doctor.evidence.document import Document, IssueLog

MAX_ZIP_TOTAL_BYTES = 2 * 1024**3
MAX_ZIP_MEMBERS = 20_000
MAX_ZIP_DEPTH = 2
SKIPPED_SUFFIXES = frozenset({".exe", ".dll", ".png", ".jpg", ".jpeg", ".gif", ".pdf", ".docx"})


class IntakeError(ValueError):
    """A path the user named cannot be used at all (missing, unreadable)."""


@dataclass
class Intake:
    """Collects documents from paths; owns the temp dir that zip members are extracted to."""

    issues: IssueLog = field(default_factory=IssueLog)
    max_zip_bytes: int = MAX_ZIP_TOTAL_BYTES
    max_zip_members: int = MAX_ZIP_MEMBERS
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    # Bytes unpacked from every zip so far: one budget for the whole run, so zips nested in
    # a zip (each just under the cap) cannot multiply it.
    _unpacked: int = 0

    def __enter__(self) -> Intake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _tmpdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mailflow-doctor-")
        return Path(self._tmp.name)

    def documents(self, paths: list[Path]) -> Iterator[Document]:
        for path in paths:
            if not path.exists():
                raise IntakeError(f"{path}: no such file or folder")
            yield from self._walk(path, display_root=None, depth=0)

    def _walk(self, path: Path, display_root: str | None, depth: int) -> Iterator[Document]:
        display = display_root or str(path)
        if path.is_symlink() and display_root is not None:
            return
        if path.is_dir():
            try:
                children = sorted(path.iterdir())
            except OSError as exc:
                self.issues.add(display, None, f"cannot list folder: {exc.strerror}")
                return
            for child in children:
                if child.name.startswith(".") and child.is_dir():
                    continue
                child_display = f"{display.rstrip('/')}/{child.name}"
                yield from self._walk(child, child_display, depth)
            return
        if not path.is_file():
            return
        try:
            if zipfile.is_zipfile(path):
                yield from self._zip(path, display, depth)
                return
            if path.suffix.lower() in SKIPPED_SUFFIXES:
                return
            doc = Document.open(path, display)
        except OSError as exc:
            self.issues.add(display, None, f"cannot read file: {exc.strerror or exc}")
            return
        yield doc

    def _zip(self, path: Path, display: str, depth: int) -> Iterator[Document]:
        if depth >= MAX_ZIP_DEPTH:
            self.issues.add(display, None, "zip nested too deeply; not opened")
            return
        target = Path(tempfile.mkdtemp(dir=self._tmpdir()))
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, NotImplementedError, ValueError) as exc:
            self.issues.add(display, None, f"not a readable zip file: {exc}")
            return
        with archive:
            members = archive.infolist()
            if len(members) > self.max_zip_members:
                self.issues.add(
                    display,
                    None,
                    f"zip holds {len(members)} members; only the first "
                    f"{self.max_zip_members} are read",
                )
                members = members[: self.max_zip_members]
            extracted: list[tuple[Path, str]] = []
            for info in members:
                if info.is_dir():
                    continue
                safe = _safe_member_name(info.filename)
                if safe is None:
                    self.issues.add(
                        display, None, f"zip member {info.filename!r} has an unsafe path; skipped"
                    )
                    continue
                if info.flag_bits & 0x1:
                    self.issues.add(display, None, f"zip member {safe} is encrypted; skipped")
                    continue
                dest = target.joinpath(*PurePosixPath(safe).parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                remaining = self.max_zip_bytes - self._unpacked
                try:
                    # A member that admits to being too big is refused without unpacking it.
                    too_big = info.file_size > remaining
                    written = None if too_big else _extract_capped(archive, info, dest, remaining)
                except (
                    zipfile.BadZipFile,
                    OSError,
                    EOFError,
                    NotImplementedError,
                    zlib.error,
                ) as exc:
                    self.issues.add(display, None, f"zip member {safe} is damaged: {exc}")
                    continue
                if written is None:
                    self.issues.add(
                        display,
                        None,
                        f"the zip files unpack to more than {_size(self.max_zip_bytes)} in all "
                        f"(a zip bomb?); stopped at {safe}",
                    )
                    dest.unlink(missing_ok=True)
                    break
                self._unpacked += written
                extracted.append((dest, f"{display}!{safe}"))
        for dest, member_display in extracted:
            yield from self._walk_member(dest, member_display, depth)

    def _walk_member(self, dest: Path, display: str, depth: int) -> Iterator[Document]:
        try:
            if zipfile.is_zipfile(dest):
                yield from self._zip(dest, display, depth + 1)
                return
            if dest.suffix.lower() in SKIPPED_SUFFIXES:
                return
            yield Document.open(dest, display)
        except OSError as exc:
            self.issues.add(display, None, f"cannot read file: {exc.strerror or exc}")


def _size(count: int) -> str:
    return f"{count // 1024**2} MiB" if count >= 1024**2 else f"{count // 1024} KiB"


def _safe_member_name(name: str) -> str | None:
    """The member's relative POSIX path, or None when it would escape the extraction dir."""
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":"):
        return None
    parts = [p for p in cleaned.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    if any(os.sep in p or (os.altsep and os.altsep in p) for p in parts):
        return None
    return "/".join(parts)


def _extract_capped(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, remaining: int
) -> int | None:
    """Copy one member, counting real bytes; None when the cap would be passed."""
    written = 0
    with archive.open(info) as src, dest.open("wb") as out:
        while True:
            chunk = src.read(1024 * 1024)
            if not chunk:
                return written
            written += len(chunk)
            if written > remaining:
                return None
            out.write(chunk)
