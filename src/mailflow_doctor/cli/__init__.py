"""The command line: thin wrappers that parse options and call the layers below.

Command modules register themselves on the shared typer app when imported. The console entry
point imports only the module of the command being run (all of them for `--help` or an unknown
word), so `logs search` does not pay for the HTML, DNS and X.509 libraries that `diagnose` and
`probe` load: start-up time counts when searching many log files.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

# First command word -> module in this package that registers it.
COMMAND_MODULES: dict[str, str] = {
    "diagnose": "diagnose",
    "demo": "diagnose",
    "endpoints": "endpoints",
    "explain": "explain",
    "firewall": "firewall",
    "logs": "logs",
    "probe": "probe",
}

_registered: set[str] = set()


def register(modules: set[str] | None = None) -> None:
    """Import (and so register) the named command modules, or all of them."""
    for module in sorted(modules or set(COMMAND_MODULES.values())):
        if module not in _registered:
            importlib.import_module(f"{__name__}.{module}")
            _registered.add(module)


def modules_for(argv: list[str]) -> set[str] | None:
    """The modules a command line needs; None (all) for help, completion or a typo."""
    words = [a for a in argv if not a.startswith("-")]
    if not words or any(a in ("--help", "-h") for a in argv[:1]):
        return None
    module = COMMAND_MODULES.get(words[0])
    return {module} if module else None


def __getattr__(name: str) -> Any:
    """`from mailflow_doctor.cli import app` (tests, embedding) gets every command registered."""
    if name == "app":
        from mailflow_doctor.cli.typer_app import app

        register()
        return app
    raise AttributeError(name)


def main() -> None:
    """Console entry point: no traceback ever reaches the user."""
    argv = sys.argv[1:]
    try:
        if argv[:2] == ["logs", "search"] and "--count" in argv:
            # A plain count skips typer and rich (a quarter of its run time); it declines
            # anything unusual, which then runs through the typer command below.
            from mailflow_doctor.cli.logs_count import run

            if run(argv[2:]):
                return
        from mailflow_doctor.cli.typer_app import app  # typer loads here, not for a plain count

        register(modules_for(argv))
        app()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
