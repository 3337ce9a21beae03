"""The bundled example is exactly what its generator writes (so the two never drift apart)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "src" / "mailflow_doctor" / "examples" / "tailspin"
GENERATOR = REPO / "scripts" / "make_tailspin_example.py"


def test_generator_reproduces_the_bundled_example(tmp_path: Path) -> None:
    if not GENERATOR.exists():
        pytest.skip("scripts/ is not part of this source tree")
    spec = importlib.util.spec_from_file_location("make_tailspin_example", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name, None)
    module.main(tmp_path / "tailspin")
    written = sorted(
        p.relative_to(tmp_path / "tailspin")
        for p in (tmp_path / "tailspin").rglob("*")
        if p.is_file()
    )
    shipped = sorted(p.relative_to(EXAMPLE) for p in EXAMPLE.rglob("*") if p.is_file())
    assert written == shipped
    for relative in shipped:
        assert (tmp_path / "tailspin" / relative).read_bytes() == (
            EXAMPLE / relative
        ).read_bytes(), relative
    assert (tmp_path / "tailspin.md").read_bytes() == (EXAMPLE.parent / "tailspin.md").read_bytes()


def test_example_uses_only_documentation_and_published_addresses() -> None:
    """No real customer address leaks into the example: documentation, private or EOP ranges."""
    import ipaddress
    import re

    allowed = [
        ipaddress.ip_network(n)
        for n in (
            "192.0.2.0/24",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "10.0.0.0/8",
            "192.168.0.0/16",
            "40.92.0.0/15",
            "40.107.0.0/16",
            "52.100.0.0/14",
            "104.47.0.0/17",
            "65.55.88.0/24",
        )
    ]
    pattern = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
    for path in EXAMPLE.rglob("*"):
        if not path.is_file():
            continue
        for match in pattern.finditer(path.read_text(encoding="utf-8-sig")):
            try:
                address = ipaddress.ip_address(match.group(1))
            except ValueError:
                continue  # a version number such as 15.0.0.0 in the log header
            if str(address) in (
                "15.0.0.0",
                "255.255.255.0",
                "255.254.0.0",
                "255.255.128.0",
                "0.0.0.0",
                "255.255.0.0",
            ):
                continue
            assert any(address in net for net in allowed), f"{path.name}: {address}"
