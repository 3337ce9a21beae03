"""The one registry of evidence readers.

A reader names the kind of evidence it reads (`exo.message_trace_detail`, ...), says from a
file's first lines how sure it is that the file is of its kind (0 = not mine, 100 = certain),
and turns the file into typed records. Adding a format is one new module with one
`@register_reader` class, plus its tests; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar, Protocol, TypeVar

from mailflow_doctor.evidence.document import Document, ReadContext


class Reader(Protocol):
    """What every evidence reader provides."""

    kind: ClassVar[str]
    label: ClassVar[str]

    def sniff(self, doc: Document) -> int:
        """0 when the file is not of this kind; up to 100 when certain."""
        ...

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        """Yield typed records; report problems via `ctx.warn` with the line; never raise."""
        ...


_READERS: dict[str, Reader] = {}
R = TypeVar("R")


def register_reader(cls: type[R]) -> type[R]:
    """Class decorator: instantiate the reader and register it under its `kind`."""
    instance = cls()
    kind = instance.kind  # type: ignore[attr-defined]
    if kind in _READERS:
        raise ValueError(f"two readers registered for {kind}")
    _READERS[kind] = instance  # type: ignore[assignment]
    return cls


def readers() -> dict[str, Reader]:
    load_builtin_readers()
    return dict(_READERS)


def best_reader(doc: Document) -> tuple[Reader | None, int]:
    """The reader with the highest sniff score, or None when no reader wants the file."""
    best: Reader | None = None
    best_score = 0
    for reader in readers().values():
        try:
            score = reader.sniff(doc)
        except Exception:
            score = 0
        if score > best_score:
            best, best_score = reader, score
    return best, best_score


_loaded = False


def load_builtin_readers() -> None:
    """Import every reader module in `mailflow_doctor.evidence.readers` once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib
    import pkgutil

    from mailflow_doctor.evidence import readers as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
