"""The sniffers of the Cisco IOS, PAN-OS, FortiGate, pfSense, Windows and allow-list parsers:
each claims its own samples, none steals another vendor's, and hostile input stays cheap."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from vendor_checks import parser_for

from mailflow_doctor.firewall.registry import FirewallParseError, ParseOptions, best_parser

MINE = {
    "cisco_ios_": "cisco-ios",
    "panos_": "panos",
    "fortigate_": "fortigate",
    "fortios_": "fortigate",
    "pfsense_": "pfsense",
    "windows_": "windows-firewall",
}
VENDORS = ("cisco-ios", "panos", "fortigate", "pfsense", "windows-firewall", "allowlist")


def test_every_sample_goes_to_the_right_parser(samples: Path) -> None:
    for path in sorted((samples / "firewall-configs").iterdir()):
        text = path.read_text(encoding="utf-8", errors="replace")
        parser, _ = best_parser(text)
        winner = parser.vendor if parser is not None else None
        expected = next((v for prefix, v in MINE.items() if path.name.startswith(prefix)), None)
        if expected is not None:
            assert winner == expected, path.name
        else:
            assert winner not in VENDORS, f"{path.name} taken by {winner}"


HOSTILE = [
    "a" + " " * 200_000 + "b",
    "set address " + "[" * 50_000,
    "config firewall policy\n" + "edit 1\n" * 20_000,
    "<pfsense>" + "<filter>" * 2_000 + "</pfsense>",
    "Rule Name: x\n" + "RemoteIP: " + "1.2.3.4," * 50_000 + "\n",
    "ip access-list extended X\n permit tcp " + "host 1.1.1.1 " * 50_000 + "\n",
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><pfsense>&a;</pfsense>',
    "\x00\xff\ufeff" * 10_000,
]


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.timeout(60)
def test_hostile_input_is_cheap_and_never_crashes(vendor: str) -> None:
    parser = parser_for(vendor)
    for text in HOSTILE:
        started = time.perf_counter()
        assert 0 <= parser.sniff(text) <= 100
        with contextlib.suppress(FirewallParseError):
            parser.parse(text, "hostile.txt", ParseOptions())
        assert time.perf_counter() - started < 10, (vendor, text[:40])
