"""The Microsoft 365 endpoint list and the EOP inbound SMTP set within it.

Exchange Online delivers to on-premises servers from the addresses of endpoint set 10 of the
Microsoft 365 IP Address and URL web service (serviceArea Exchange, TCP 25,
*.mail.protection.outlook.com). The set is found by its content, not by its id, so a downloaded
file from another instance or a future renumbering still works. A bundled snapshot keeps the
tool offline; `--endpoints FILE` takes the admin's own download (UTF-8 or UTF-16, with or
without BOM).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from mailflow_doctor.knowledge.ipranges import AddressParseError, IPSet, ip_sort_key

EndpointSource = Literal["bundled", "cache", "web", "file"]

EOP_SMTP_URL = "mail.protection.outlook.com"


class EndpointDataError(ValueError):
    """The endpoint file is not a Microsoft 365 endpoints document or lacks the EOP SMTP set."""


@dataclass(frozen=True)
class EndpointSet:
    """One record of the web service's /endpoints answer."""

    id: int
    service_area: str
    urls: tuple[str, ...]
    ips: tuple[str, ...]
    tcp_ports: frozenset[int]
    category: str
    required: bool

    @property
    def addresses(self) -> IPSet:
        return IPSet.parse(*self.ips)


@dataclass(frozen=True)
class EndpointList:
    """The whole list as loaded, with where it came from."""

    sets: tuple[EndpointSet, ...]
    source: EndpointSource
    instance: str
    version: str
    location: str
    retired_eop: IPSet = field(default_factory=IPSet)

    def eop_smtp_sets(self) -> tuple[EndpointSet, ...]:
        """The sets Exchange Online Protection delivers from on TCP 25 (set 10 today)."""
        return tuple(
            s
            for s in self.sets
            if s.service_area.lower() == "exchange"
            and 25 in s.tcp_ports
            and any(EOP_SMTP_URL in url.lower() for url in s.urls)
            and s.ips
        )

    def eop_smtp_ranges(self) -> IPSet:
        result = IPSet()
        for endpoint_set in self.eop_smtp_sets():
            result = result | endpoint_set.addresses
        return result

    def eop_smtp_cidrs(self) -> list[str]:
        """The published ranges as listed (not merged), in canonical order."""
        seen: dict[str, None] = {}
        for endpoint_set in self.eop_smtp_sets():
            for cidr in endpoint_set.ips:
                seen[IPSet.parse(cidr).cidrs()[0]] = None
        return sorted(seen, key=ip_sort_key)

    def describe(self) -> dict[str, str]:
        return {"source": self.source, "instance": self.instance, "version": self.version}


def parse_ports(text: object) -> frozenset[int]:
    """Parse the web service's port strings: `"25"`, `"143, 587, 993, 995"`, `"80,443"`, `"1-3"`."""
    ports: set[int] = set()
    if not isinstance(text, str):
        return frozenset()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        try:
            lo = int(first)
            hi = int(last) if last else lo
        except ValueError:
            continue
        if 0 <= lo <= hi <= 65535:
            ports.update(range(lo, hi + 1))
    return frozenset(ports)


def decode_json_bytes(data: bytes) -> Any:
    """Decode JSON saved as UTF-8 (with or without BOM) or UTF-16 (as PowerShell writes it)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16")
    elif len(data) > 1 and data[0] == 0 and data[1] != 0:
        text = data.decode("utf-16-be")
    elif len(data) > 1 and data[1] == 0 and data[0] != 0:
        text = data.decode("utf-16-le")
    else:
        text = data.decode("utf-8-sig")
    return json.loads(text)


def _sets_from_json(doc: Any, location: str) -> tuple[list[EndpointSet], str, str]:
    instance = "Worldwide"
    version = "unknown"
    records = doc
    if isinstance(doc, dict):
        instance = str(doc.get("instance", instance))
        version = str(doc.get("version", version))
        records = doc.get("endpoints", doc.get("value"))
    if not isinstance(records, list):
        raise EndpointDataError(
            f"{location}: not a Microsoft 365 endpoints list (expected a JSON array)"
        )
    sets: list[EndpointSet] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict) or "id" not in record:
            raise EndpointDataError(f"{location}: record {index} is not an endpoint set")
        ips = record.get("ips") or []
        good: list[str] = []
        for ip in ips:
            try:
                IPSet.parse(str(ip))
            except AddressParseError as exc:
                raise EndpointDataError(f"{location}: endpoint set {record['id']}: {exc}") from exc
            good.append(str(ip))
        sets.append(
            EndpointSet(
                id=int(record["id"]),
                service_area=str(record.get("serviceArea", "")),
                urls=tuple(str(u) for u in record.get("urls") or []),
                ips=tuple(good),
                tcp_ports=parse_ports(record.get("tcpPorts")),
                category=str(record.get("category", "")),
                required=bool(record.get("required", False)),
            )
        )
    return sets, instance, version


def _retired() -> IPSet:
    text = resources.files("mailflow_doctor.knowledge").joinpath("data/eop-retired-ranges.json")
    doc = json.loads(text.read_text(encoding="utf-8"))
    return IPSet.parse(*doc["ranges"])


def load_bundled() -> EndpointList:
    """The snapshot shipped with the tool."""
    ref = resources.files("mailflow_doctor.knowledge").joinpath("data/endpoints-worldwide.json")
    doc = json.loads(ref.read_text(encoding="utf-8"))
    sets, instance, version = _sets_from_json(doc, "bundled endpoints")
    return EndpointList(tuple(sets), "bundled", instance, version, "bundled", _retired())


def load_file(path: Path, version: str | None = None) -> EndpointList:
    """An endpoints JSON the admin downloaded (`/endpoints/Worldwide` answer, UTF-8 or UTF-16).

    The web service's answer carries no version; the caller may pass one, else `unknown`.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EndpointDataError(f"{path}: cannot read endpoints file: {exc.strerror}") from exc
    try:
        doc = decode_json_bytes(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EndpointDataError(f"{path}: {_not_json(data, exc)}") from exc
    sets, instance, file_version = _sets_from_json(doc, str(path))
    endpoint_list = EndpointList(
        tuple(sets), "file", instance, version or file_version, str(path), _retired()
    )
    if not endpoint_list.eop_smtp_sets():
        raise EndpointDataError(
            f"{path}: holds no Exchange Online Protection SMTP set "
            "(serviceArea Exchange, TCP 25, *.mail.protection.outlook.com)"
        )
    return endpoint_list


def _not_json(data: bytes, exc: Exception) -> str:
    """Say what the file is when it is one of the other lists admins keep as "the endpoints"."""
    head = data[:4096].replace(b"\x00", b"").decode("utf-8", "replace")
    if "<products" in head or "O365IPAddresses" in head:
        return (
            "the old O365IPAddresses.xml feed, which Microsoft retired in October 2018 (its "
            "ranges are out of date); save the JSON answer of the Microsoft 365 endpoints web "
            "service (/endpoints/worldwide) and give that file instead"
        )
    words = [w.strip(",;") for w in head.split() if w.strip(",;")][:20]
    if words and all(_is_network(w) for w in words):
        return (
            "a plain list of addresses, not the Microsoft 365 endpoints JSON; give the web "
            "service's JSON answer (/endpoints/worldwide), or leave --endpoints out to use the "
            "bundled snapshot"
        )
    return f"not valid JSON: {exc}"


def _is_network(text: str) -> bool:
    try:
        IPSet.parse(text)
    except (AddressParseError, ValueError):
        return False
    return True


def load(path: Path | None = None) -> EndpointList:
    return load_file(path) if path is not None else load_bundled()
