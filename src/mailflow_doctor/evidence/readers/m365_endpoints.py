"""A Microsoft 365 endpoints list (the web service's JSON) dropped into the evidence folder.

Admins save `endpoints.office.com/endpoints/worldwide` (often with PowerShell's Out-File, so
UTF-16) next to their logs. It is not evidence of what happened, and the diagnosis does not
switch lists silently because one lies in a folder: the file is named for what it is, and the
warning says how to judge the firewall against it (`--endpoints FILE`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from mailflow_doctor.evidence.document import Document, ReadContext
from mailflow_doctor.evidence.registry import register_reader

KIND = "endpoints.m365"
# The keys every endpoint set of the web service carries.
_SET_KEYS = ("id", "serviceArea")
_ADDRESS_KEYS = re.compile(r'"(ips|urls)"\s*:\s*\[')


@register_reader
class M365EndpointsReader:
    kind = KIND
    label = "Microsoft 365 endpoints list (endpoints web service JSON)"

    def sniff(self, doc: Document) -> int:
        head = doc.head.lstrip("\ufeff \t\r\n")
        if not head.startswith("["):
            return 0
        if all(f'"{key}"' in head for key in _SET_KEYS) and _ADDRESS_KEYS.search(head):
            return 90
        return 0

    def read(self, doc: Document, ctx: ReadContext) -> Iterator[object]:
        inside_zip = "!" in doc.display
        how = (
            "extract it and give it with --endpoints FILE"
            if inside_zip
            else f"--endpoints {doc.display}"
        )
        ctx.warn(
            doc,
            None,
            "a Microsoft 365 endpoints list, not evidence of the outage; firewalls were "
            f"judged against the list named at the end of the report. To use this one: {how}",
        )
        yield from ()
