"""The registry of firewall configuration parsers.

A parser names its vendor, says from the text how sure it is that the configuration is its
own (0 = not mine, 100 = certain), parses it into a `Policy`, and writes remediation in its own
syntax. Adding a vendor is one module in `firewall/vendors/` with one `@register_parser` class,
plus its tests.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, TypeVar

from mailflow_doctor.firewall.evaluate import RangeCheck
from mailflow_doctor.firewall.model import Policy


class FirewallParseError(ValueError):
    """The configuration cannot be parsed at all. Line-level problems go to `ParseResult.issues`."""


@dataclass(frozen=True)
class ParseOptions:
    """What the user told us about the policy: which ACL / rule base, which interface."""

    acl: str | None = None
    interface: str | None = None


@dataclass(frozen=True)
class ParseResult:
    policy: Policy
    issues: tuple[tuple[int | None, str], ...] = ()  # (line, message): unsupported or bad lines


@dataclass(frozen=True)
class Remediation:
    """Lines to add, where, and the patched configuration text that proves they work."""

    lines: tuple[str, ...]
    explanation: str
    patched_text: str | None = None  # the config with the lines applied, re-parsed to verify
    warnings: tuple[str, ...] = field(default=())
    cleanup: tuple[str, ...] = field(default=())  # optional: remove stale (no longer EOP) objects


class FirewallParser(Protocol):
    vendor: ClassVar[str]
    label: ClassVar[str]

    def sniff(self, text: str) -> int:
        """0 when the text is not this vendor's configuration; up to 100 when certain."""
        ...

    def parse(self, text: str, path: str, options: ParseOptions) -> ParseResult:
        """Parse into the policy model; raise FirewallParseError only when nothing is usable."""
        ...

    def remediate(self, text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
        """The vendor lines that permit `check.missing`, applied to `text` in `patched_text`."""
        ...


_PARSERS: dict[str, FirewallParser] = {}
P = TypeVar("P")


def register_parser(cls: type[P]) -> type[P]:
    instance = cls()
    vendor = instance.vendor  # type: ignore[attr-defined]
    if vendor in _PARSERS:
        raise ValueError(f"two firewall parsers registered for {vendor}")
    _PARSERS[vendor] = instance  # type: ignore[assignment]
    return cls


_loaded = False


def parsers() -> dict[str, FirewallParser]:
    global _loaded
    if not _loaded:
        _loaded = True
        from mailflow_doctor.firewall import vendors

        for module in pkgutil.iter_modules(vendors.__path__):
            importlib.import_module(f"{vendors.__name__}.{module.name}")
    return dict(_PARSERS)


def best_parser(text: str) -> tuple[FirewallParser | None, int]:
    best: FirewallParser | None = None
    best_score = 0
    for parser in parsers().values():
        try:
            score = parser.sniff(text)
        except Exception:
            score = 0
        if score > best_score:
            best, best_score = parser, score
    return best, best_score
