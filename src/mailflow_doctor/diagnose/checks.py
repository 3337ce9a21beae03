"""The check registry and the engine that runs every check over a bundle.

A check is a function from the bundle (and the facts earlier checks derived) to findings.
Checks live one per module in `diagnose/rules/`, each registered with `@check`, so adding one
is one new module plus its tests. A check that crashes is reported as a warning finding; it
never takes the other checks down with it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mailflow_doctor.diagnose.bundle import Bundle
from mailflow_doctor.diagnose.model import Finding, Severity


@dataclass
class Context:
    """Shared state for one diagnosis: the bundle and derived facts checks hand to each other."""

    bundle: Bundle
    facts: dict[str, Any] = field(default_factory=dict)


CheckFn = Callable[[Context], Iterable[Finding]]


@dataclass(frozen=True)
class Check:
    name: str
    order: int
    run: CheckFn


_CHECKS: dict[str, Check] = {}


def check(name: str, order: int = 50) -> Callable[[CheckFn], CheckFn]:
    """Register a check. Lower `order` runs first (derived facts before their consumers)."""

    def decorate(fn: CheckFn) -> CheckFn:
        if name in _CHECKS:
            raise ValueError(f"two checks registered as {name}")
        _CHECKS[name] = Check(name, order, fn)
        return fn

    return decorate


_loaded = False


def registered_checks() -> list[Check]:
    global _loaded
    if not _loaded:
        _loaded = True
        from mailflow_doctor.diagnose import rules

        for module in pkgutil.iter_modules(rules.__path__):
            importlib.import_module(f"{rules.__name__}.{module.name}")
    return sorted(_CHECKS.values(), key=lambda c: (c.order, c.name))


def run_checks(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    for registered in registered_checks():
        try:
            findings.extend(registered.run(ctx))
        except Exception as exc:
            findings.append(
                Finding(
                    id="internal.check_failed",
                    severity=Severity.WARNING,
                    title=f"Check {registered.name} failed",
                    summary=f"{type(exc).__name__}: {exc}. The other checks ran; "
                    "please report this.",
                    can_be_root_cause=False,
                )
            )
    return findings
