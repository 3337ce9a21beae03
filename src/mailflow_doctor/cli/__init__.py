"""The command line: thin wrappers that parse options and call the layers below."""

from __future__ import annotations

import sys

from mailflow_doctor.cli import diagnose as _diagnose  # noqa: F401
from mailflow_doctor.cli import endpoints as _endpoints  # noqa: F401  (registers commands)
from mailflow_doctor.cli import explain as _explain  # noqa: F401
from mailflow_doctor.cli import firewall as _firewall  # noqa: F401
from mailflow_doctor.cli import logs as _logs  # noqa: F401
from mailflow_doctor.cli import probe as _probe  # noqa: F401
from mailflow_doctor.cli.app import app


def main() -> None:
    """Console entry point: no traceback ever reaches the user."""
    try:
        app()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
