"""DNS for a probe: MX in preference order, CNAME chains, A/AAAA, PTR with forward confirmation.

Exchange Online reports a failed smart-host lookup as 4.4.312, whatever the reason; the admin
needs to know which reason, so NXDOMAIN, SERVFAIL (or REFUSED), a timeout and an empty answer
are kept apart here.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import dns.reversename

NXDOMAIN = "nxdomain"
SERVFAIL = "servfail"
REFUSED = "refused"
TIMEOUT = "timeout"
NO_ANSWER = "no_answer"
FAILED = "error"
NOT_TRIED = "not_tried"  # the probe's overall deadline passed before this lookup


class ResolverSpecError(ValueError):
    """--resolver is not HOST or HOST:PORT with HOST an IP address."""


@dataclass(frozen=True)
class ResolverSpec:
    """The DNS server to ask; `host is None` means the system's configured resolvers."""

    host: str | None = None
    port: int = 53

    @classmethod
    def parse(cls, text: str | None) -> ResolverSpec:
        """Accept `192.0.2.53`, `192.0.2.53:5353`, `2001:db8::53` or `[2001:db8::53]:5353`."""
        if not text:
            return cls()
        value = text.strip()
        host, port = value, 53
        if value.startswith("["):
            inner, _, rest = value[1:].partition("]")
            host = inner
            if rest:
                if not rest.startswith(":"):
                    raise ResolverSpecError(f"--resolver {text!r}: expected [ADDRESS]:PORT")
                port = _port(rest[1:], text)
        elif value.count(":") == 1:
            host, _, port_text = value.partition(":")
            port = _port(port_text, text)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ResolverSpecError(
                f"--resolver {text!r}: give the DNS server as an IP address (HOST or HOST:PORT)"
            ) from None
        return cls(host, port)

    def describe(self, system_servers: tuple[str, ...] = ()) -> str:
        if self.host is None:
            listed = ", ".join(system_servers) or "none configured"
            return f"system ({listed})"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ResolverSpecError(f"--resolver {whole!r}: the port must be 1 to 65535")
    return int(text)


@dataclass(frozen=True)
class DnsError:
    """One failed lookup: which name and type, and the kind of failure."""

    name: str
    rdtype: str
    kind: str  # nxdomain, servfail, refused, timeout, no_answer, error, not_tried
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "type": self.rdtype, "error": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class MxRecord:
    preference: int
    exchange: str  # without the trailing dot; "" for a null MX ("0 .")


@dataclass(frozen=True)
class HostAddresses:
    """A host name with the CNAME chain followed and the addresses it resolved to."""

    name: str
    cname_chain: tuple[str, ...]  # every name after `name`, ending at the canonical name
    addresses: tuple[str, ...]  # IPv4 first, then IPv6, in answer order
    errors: tuple[DnsError, ...] = ()


@dataclass(frozen=True)
class PtrResult:
    address: str
    names: tuple[str, ...]
    confirms_forward: bool  # a PTR name resolves back to the address
    error: DnsError | None = None


@dataclass(frozen=True)
class DnsResult:
    """What DNS said about the target: its kind, the MX list, each host and every error."""

    target: str
    kind: str  # "address", "host" or "domain" (a mail domain: its MX hosts are probed)
    resolver: str
    mx: tuple[MxRecord, ...] = ()
    hosts: tuple[HostAddresses, ...] = ()
    errors: tuple[DnsError, ...] = ()

    def addresses(self) -> list[tuple[str, str]]:
        """(host name, address) pairs in probe order, each address once."""
        seen: set[str] = set()
        pairs: list[tuple[str, str]] = []
        for host in self.hosts:
            for address in host.addresses:
                if address not in seen:
                    seen.add(address)
                    pairs.append((host.name, address))
        return pairs


class Lookup:
    """A dnspython resolver bound to one server choice and one deadline."""

    def __init__(self, spec: ResolverSpec, timeout: float, deadline: float | None = None) -> None:
        self.spec = spec
        self.timeout = timeout
        self.deadline = deadline
        self.setup_error: str = ""
        if spec.host is None:
            try:
                self.resolver = dns.resolver.Resolver()
            except (dns.resolver.NoResolverConfiguration, OSError) as exc:
                self.resolver = dns.resolver.Resolver(configure=False)
                self.setup_error = f"no system DNS resolver configured ({exc})"
        else:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [spec.host]
            self.resolver.port = spec.port
        self.resolver.timeout = timeout
        self.resolver.lifetime = timeout
        self.resolver.cache = None

    def describe(self) -> str:
        servers = tuple(str(s) for s in self.resolver.nameservers)
        return self.spec.describe(servers)

    def _lifetime(self) -> float:
        if self.deadline is None:
            return self.timeout
        return max(0.05, min(self.timeout, self.deadline - time.monotonic()))

    def query(self, name: str, rdtype: str) -> tuple[dns.resolver.Answer | None, DnsError | None]:
        """One lookup; an empty answer comes back as a `no_answer` error, never an exception."""
        if self.setup_error:
            return None, DnsError(name, rdtype, FAILED, self.setup_error)
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return None, DnsError(
                name, rdtype, NOT_TRIED, "not looked up: the probe's overall deadline passed"
            )
        lifetime = self._lifetime()
        try:
            answer = self.resolver.resolve(
                name, rdtype, raise_on_no_answer=False, lifetime=lifetime, search=False
            )
        except dns.resolver.NXDOMAIN:
            return None, DnsError(name, rdtype, NXDOMAIN, f"{name} does not exist (NXDOMAIN)")
        except dns.resolver.NoNameservers as exc:
            return None, _server_failure(name, rdtype, exc)
        except dns.exception.Timeout:
            return None, DnsError(
                name, rdtype, TIMEOUT, f"no answer from {self.describe()} within {lifetime:.1f} s"
            )
        except dns.exception.DNSException as exc:
            return None, DnsError(name, rdtype, FAILED, f"{type(exc).__name__}: {exc}")
        except (OSError, ValueError) as exc:
            return None, DnsError(name, rdtype, FAILED, f"{type(exc).__name__}: {exc}")
        if answer.rrset is None:
            return answer, DnsError(
                name, rdtype, NO_ANSWER, f"{name} exists but has no {rdtype} record"
            )
        return answer, None


def _server_failure(name: str, rdtype: str, exc: dns.resolver.NoNameservers) -> DnsError:
    rcodes = {str(e[3]) for e in exc.kwargs.get("errors", []) if isinstance(e[3], str)}
    if "SERVFAIL" in rcodes:
        return DnsError(
            name, rdtype, SERVFAIL, f"the DNS server answered SERVFAIL for {name} {rdtype}"
        )
    if "REFUSED" in rcodes:
        return DnsError(name, rdtype, REFUSED, f"the DNS server refused the query for {name}")
    return DnsError(name, rdtype, FAILED, str(exc))


def _strip(name: dns.name.Name | str) -> str:
    return str(name).rstrip(".").lower()


def resolve_host(lookup: Lookup, name: str) -> HostAddresses:
    """A and AAAA of `name`, following CNAMEs; both lookups' errors kept."""
    chain: list[str] = []
    addresses: list[str] = []
    errors: list[DnsError] = []
    for rdtype in ("A", "AAAA"):
        answer, error = lookup.query(name, rdtype)
        if answer is not None:
            for cname in _cname_chain(answer):
                if cname not in chain:
                    chain.append(cname)
            if answer.rrset is not None:
                addresses.extend(r.to_text() for r in answer.rrset)
        if error is not None:
            errors.append(error)
    if addresses:
        # An empty AAAA next to a working A (or the reverse) is normal, not an error.
        errors = [e for e in errors if e.kind != NO_ANSWER]
    return HostAddresses(_strip(name), tuple(chain), tuple(addresses), tuple(errors))


def _cname_chain(answer: dns.resolver.Answer) -> list[str]:
    result: list[str] = []
    chaining = getattr(answer, "chaining_result", None)
    for rrset in getattr(chaining, "cnames", []) or []:
        for rdata in rrset:
            result.append(_strip(rdata.target))
    return result


def reverse(lookup: Lookup, address: str) -> PtrResult:
    """PTR of an address, and whether one of its names resolves back to the address."""
    answer, error = lookup.query(dns.reversename.from_address(address).to_text(), "PTR")
    if error is not None or answer is None or answer.rrset is None:
        return PtrResult(address, (), False, error)
    names = tuple(_strip(r.target) for r in answer.rrset)
    confirms = False
    for name in names[:4]:
        host = resolve_host(lookup, name)
        if any(_same_address(a, address) for a in host.addresses):
            confirms = True
            break
    return PtrResult(address, names, confirms)


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def resolve_target(
    target: str,
    lookup: Lookup,
    *,
    mail_domain: bool = True,
) -> DnsResult:
    """Work out what to probe for TARGET: an address as is, a mail domain's MX hosts, or a host.

    With `mail_domain` true a name with MX records is treated as a mail domain (its MX hosts
    are probed); otherwise, or without MX records, the name itself is resolved as a host.
    """
    resolver = lookup.describe()
    if is_address(target):
        address = str(ipaddress.ip_address(target.strip("[]")))
        return DnsResult(
            address, "address", resolver, hosts=(HostAddresses(address, (), (address,)),)
        )
    name = _strip(target)
    errors: list[DnsError] = []
    if mail_domain:
        answer, error = lookup.query(name, "MX")
        if error is not None and error.kind == NXDOMAIN:
            return DnsResult(name, "host", resolver, errors=(error,))
        if error is not None and error.kind != NO_ANSWER:
            errors.append(error)
        if answer is not None and answer.rrset is not None:
            records = sorted(
                (MxRecord(int(r.preference), _strip(r.exchange)) for r in answer.rrset),
                key=lambda m: (m.preference, m.exchange),
            )
            hosts: list[HostAddresses] = []
            for record in records:
                if record.exchange in ("", "."):
                    continue  # null MX (RFC 7505): the domain accepts no mail
                host = resolve_host(lookup, record.exchange)
                hosts.append(host)
                errors.extend(host.errors)
            return DnsResult(name, "domain", resolver, tuple(records), tuple(hosts), tuple(errors))
    host = resolve_host(lookup, name)
    errors.extend(host.errors)
    return DnsResult(name, "host", resolver, (), (host,), tuple(errors))
