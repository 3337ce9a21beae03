"""`--endpoints` given one of the other lists admins keep: the message says what it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailflow_doctor.knowledge.endpoints import EndpointDataError, load_file

LEGACY_XML = """\
<?xml version="1.0" encoding="utf-8"?>
<products updated="6/2/2018">
  <product name="EOP">
    <addresslist type="IPv4">
      <address>40.92.0.0/15</address>
      <address>40.107.0.0/16</address>
    </addresslist>
  </product>
</products>
"""

PLAIN_LIST = "40.92.0.0/15\n40.107.0.0/16  \n52.100.0.0/14\n104.47.0.0/17\n"


def test_the_retired_xml_feed_is_named(tmp_path: Path) -> None:
    path = tmp_path / "O365IPAddresses.xml"
    path.write_bytes(LEGACY_XML.replace("\n", "\r\n").encode("utf-8"))
    with pytest.raises(EndpointDataError, match="retired in October 2018") as info:
        load_file(path)
    assert str(path) in str(info.value)


def test_a_plain_address_list_is_named(tmp_path: Path) -> None:
    path = tmp_path / "eop-ipv4.txt"
    path.write_text(PLAIN_LIST, encoding="utf-8")
    with pytest.raises(EndpointDataError, match="plain list of addresses"):
        load_file(path)


def test_other_broken_json_still_says_where(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    path.write_text('[{"id": 10, "serviceArea": "Exchange",', encoding="utf-8")
    with pytest.raises(EndpointDataError, match="not valid JSON"):
        load_file(path)
