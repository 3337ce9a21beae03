"""The one evaluator: which sources reach DESTINATION:PORT/tcp, and which rule decides each.

Everything but the source address is fixed (destination, port, protocol, inbound interface),
so each rule reduces to a set of sources, and a whole policy reduces to a partition of the
address space into pieces with the action and the rule that decided them. First match,
implicit deny, earlier denies subtracted from later permits, jumps and returns, and several
base chains all follow from interval arithmetic; nothing is sampled.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from mailflow_doctor.firewall.model import (
    Action,
    Chain,
    Combine,
    DestinationView,
    Origin,
    Policy,
    Rule,
)
from mailflow_doctor.knowledge.ipranges import IPSet, ip_sort_key

MAX_DEPTH = 64
Verdict = Literal["permitted", "partial", "blocked"]


class EvaluationError(ValueError):
    """The policy cannot be evaluated (missing chain, jump loop)."""


@dataclass(frozen=True)
class Decision:
    """A piece of the source space and what the policy does with it."""

    sources: IPSet
    action: Action
    origin: Origin | None
    chain: str
    implicit: bool = False  # decided by a chain default, not by a rule


@dataclass(frozen=True)
class Evaluation:
    """Every source's fate for one destination, port and protocol."""

    policy: Policy
    destination: str
    effective_destination: str  # after NAT, as the rules see it
    port: int
    protocol: str
    decisions: tuple[Decision, ...]
    accepted: IPSet
    nat_origin: Origin | None = None
    skipped_rules: tuple[tuple[Origin, str], ...] = ()

    def permitted(self) -> IPSet:
        """Sources that every entry chain accepts."""
        return self.accepted

    def blocked(self) -> IPSet:
        return IPSet.universe() - self.permitted()

    def deciding(self, sources: IPSet) -> list[Decision]:
        """Decisions that cover part of `sources`, in evaluation order."""
        return [d for d in self.decisions if d.sources.overlaps(sources)]


@dataclass(frozen=True)
class RangeVerdict:
    range: str
    verdict: Verdict
    permitted: tuple[str, ...]
    blocked: tuple[str, ...]
    deciding: tuple[Origin, ...]
    actions: tuple[str, ...]  # actions that block parts: "deny" (silent drop) / "reject"

    def to_json(self) -> dict[str, object]:
        return {
            "range": self.range,
            "verdict": self.verdict,
            "permitted": list(self.permitted),
            "blocked": list(self.blocked),
            "deciding_rules": [o.to_json() for o in self.deciding],
        }


@dataclass(frozen=True)
class RangeCheck:
    """The published ranges checked against one policy."""

    evaluation: Evaluation
    verdicts: tuple[RangeVerdict, ...]
    missing: IPSet
    stale: IPSet
    notes: tuple[str, ...] = field(default=())

    @property
    def missing_cidrs(self) -> list[str]:
        return self.missing.cidrs()

    @property
    def stale_cidrs(self) -> list[str]:
        return self.stale.cidrs()


def _implicit_origin(policy: Policy, chain: Chain) -> Origin:
    if chain.default_origin is not None:
        return chain.default_origin
    return Origin(
        policy.path,
        None,
        f"implicit {chain.default.value} at the end of {chain.name} (traffic that matches no rule)",
    )


class _Evaluator:
    def __init__(
        self,
        policy: Policy,
        destination: str,
        port: int,
        protocol: str,
        original: tuple[str, int] | None = None,
    ) -> None:
        self.policy = policy
        self.destination = destination
        self.port = port
        self.protocol = protocol
        # The destination before NAT, for entry chains that run ahead of it (`Chain.pre_nat`).
        self.post_nat = (destination, port)
        self.pre_nat = original or (destination, port)
        self.skipped: list[tuple[Origin, str]] = []
        try:
            self.dst_version = ipaddress.ip_address(destination).version
        except ValueError as exc:
            raise EvaluationError(f"not an IP address: {destination!r}") from exc

    def applies(self, rule: Rule) -> bool:
        """Does the rule match everything but the source?"""
        if not rule.enabled:
            return False
        if rule.matches_nothing_reason:
            self.skipped.append((rule.origin, rule.matches_nothing_reason))
            return False
        if self.destination not in rule.destinations:
            return False
        if not rule.matches_protocol(self.protocol):
            return False
        if rule.dst_ports is not None and self.port not in rule.dst_ports:
            return False
        if rule.src_ports is not None and not _any_ephemeral(rule):
            return False
        inbound = self.policy.inbound_interfaces
        return not (
            rule.in_interfaces is not None
            and inbound is not None
            and not (rule.in_interfaces & inbound)
        )

    def run(self, name: str, pending: IPSet, depth: int) -> tuple[list[Decision], IPSet]:
        """Evaluate `pending` sources through a chain; return decisions and returned sources."""
        if depth > MAX_DEPTH:
            raise EvaluationError(f"chain jumps nest deeper than {MAX_DEPTH} (a loop at {name}?)")
        chain = self.policy.chains.get(name)
        if chain is None:
            raise EvaluationError(f"rule jumps to chain {name!r}, which the policy does not define")
        decisions: list[Decision] = []
        returned = IPSet()
        for rule in chain.rules:
            if not pending:
                break
            if not self.applies(rule):
                continue
            hit = pending & rule.sources
            if not hit:
                continue
            if rule.action.terminal:
                decisions.append(Decision(hit, rule.action, rule.origin, chain.name))
                pending = pending - hit
            elif rule.action in (Action.JUMP, Action.GOTO):
                if rule.target is None:
                    raise EvaluationError(f"{rule.origin.text!r}: jump without a target chain")
                sub, back = self.run(rule.target, hit, depth + 1)
                decisions.extend(sub)
                pending = pending - hit
                if rule.action == Action.JUMP:
                    pending = pending | back
                else:
                    returned = returned | back
            elif rule.action == Action.RETURN:
                returned = returned | hit
                pending = pending - hit
        if pending:
            if chain.default.terminal:
                decisions.append(
                    Decision(
                        pending,
                        chain.default,
                        _implicit_origin(self.policy, chain),
                        chain.name,
                        True,
                    )
                )
            else:
                returned = returned | pending
        return decisions, returned

    def run_entry(self, name: str, pending: IPSet) -> list[Decision]:
        chain = self.policy.chains.get(name)
        self.destination, self.port = (
            self.pre_nat if chain is not None and chain.pre_nat else self.post_nat
        )
        try:
            decisions, returned = self.run(name, pending, 0)
        finally:
            self.destination, self.port = self.post_nat
        if returned:
            # A RETURN in an entry chain applies the chain's policy.
            chain = self.policy.chains[name]
            action = chain.default if chain.default.terminal else Action.PERMIT
            decisions.append(
                Decision(returned, action, _implicit_origin(self.policy, chain), name, True)
            )
        return decisions

    def block_wins(self, name: str, pending: IPSet) -> list[Decision]:
        """Windows Defender Firewall: a matching block rule beats every allow rule."""
        chain = self.policy.chains[name]
        decisions: list[Decision] = []
        for wanted in (
            (Action.DENY, Action.REJECT),
            (Action.PERMIT,),
        ):
            for rule in chain.rules:
                if rule.action not in wanted or not pending or not self.applies(rule):
                    continue
                hit = pending & rule.sources
                if hit:
                    decisions.append(Decision(hit, rule.action, rule.origin, name))
                    pending = pending - hit
        if pending:
            decisions.append(
                Decision(pending, chain.default, _implicit_origin(self.policy, chain), name, True)
            )
        return decisions


def _any_ephemeral(rule: Rule) -> bool:
    """A source-port condition matches client traffic only when it admits ephemeral ports."""
    assert rule.src_ports is not None
    return 49152 in rule.src_ports and 65535 in rule.src_ports


def effective_destination(
    policy: Policy, destination: str, port: int, protocol: str
) -> tuple[str, int, Origin | None]:
    """The destination the rules are written against: after NAT for post-NAT vendors."""
    if policy.destination_view == DestinationView.POST_NAT:
        for nat in policy.nat:
            translated = nat.translate(destination, port, protocol)
            if translated is not None:
                return translated[0], translated[1], nat.origin
    return destination, port, None


def evaluate(
    policy: Policy,
    destination: str,
    port: int = 25,
    protocol: str = "tcp",
    sources: IPSet | None = None,
) -> Evaluation:
    """Partition `sources` (default: every address) by what the policy does with them."""
    pending = sources if sources is not None else IPSet.universe()
    effective, effective_port, nat_origin = effective_destination(
        policy, destination, port, protocol
    )
    entries = policy.entries
    if nat_origin is not None:
        for nat in policy.nat:
            if nat.origin == nat_origin and nat.entries:
                entries = nat.entries
                break
    evaluator = _Evaluator(policy, effective, effective_port, protocol, (destination, port))
    # Traffic of one family never matches rules of the other: keep only the family of the target.
    pending = pending.only(4 if evaluator.dst_version == 4 else 6)
    decisions: list[Decision] = []
    for entry in entries:
        if not pending:
            break
        entry_chain = policy.chains.get(entry)
        if entry_chain is not None and entry_chain.family not in (None, evaluator.dst_version):
            continue
        if policy.combine == Combine.BLOCK_WINS:
            entry_decisions = evaluator.block_wins(entry, pending)
        else:
            entry_decisions = evaluator.run_entry(entry, pending)
        # One merge for all permits: a union per decision is quadratic with many rules.
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for decision in entry_decisions:
            if decision.action == Action.PERMIT:
                v4.extend(decision.sources.v4)
                v6.extend(decision.sources.v6)
        accepted = IPSet(tuple(v4), tuple(v6)) | IPSet()
        # An earlier entry chain that merely lets traffic pass by its policy (an empty raw
        # PREROUTING, an nftables chain with policy accept) decided nothing: drop that from
        # the record once a later chain has judged the same traffic.
        decisions = [
            d
            for d in decisions
            if not (d.implicit and d.action == Action.PERMIT and d.sources.issubset(pending))
        ]
        decisions.extend(entry_decisions)
        pending = accepted
    if not policy.entries:
        raise EvaluationError("the policy has no rule list to evaluate")
    unique_skipped = tuple(dict.fromkeys(evaluator.skipped))
    if policy.established is not None and pending:
        # The handshake's ACK and the session's data must pass too (stateless rules, or
        # `--syn` / `ct state new` accepts without an ESTABLISHED accept): a source is let in
        # only where both the SYN and the packets after it are accepted.
        follow = evaluate(policy.established, destination, port, protocol, sources=pending)
        kept = follow.accepted
        decisions = [
            d if d.action != Action.PERMIT else replace(d, sources=d.sources & kept)
            for d in decisions
            if d.action != Action.PERMIT or d.sources.overlaps(kept)
        ]
        decisions.extend(d for d in follow.decisions if d.action != Action.PERMIT)
        pending = kept
        unique_skipped = tuple(dict.fromkeys((*unique_skipped, *follow.skipped_rules)))
    return Evaluation(
        policy,
        destination,
        effective,
        port,
        protocol,
        tuple(decisions),
        pending,
        nat_origin,
        unique_skipped,
    )


def check_ranges(
    policy: Policy,
    destination: str,
    published: Iterable[str],
    retired: IPSet | None = None,
    port: int = 25,
) -> RangeCheck:
    """Per published range: permitted, partial or blocked, the blocked part, and who decided.

    Published ranges of the other address family than `destination` are judged against the
    policy for that family only when the policy NATs or permits that family; otherwise they are
    reported blocked, because Exchange Online cannot reach a v4 address from a v6 source.
    """
    ranges = sorted(dict.fromkeys(published), key=ip_sort_key)
    evaluation = evaluate(policy, destination, port)
    permitted_all = evaluation.permitted()
    verdicts: list[RangeVerdict] = []
    missing = IPSet()
    notes: list[str] = []
    for cidr in ranges:
        block = IPSet.parse(cidr)
        same_family = bool(block.only(_family(destination)))
        if not same_family:
            # Published v6 ranges with a v4 endpoint (or the reverse) cannot be used to reach it:
            # not a firewall gap, and not reported as one.
            continue
        allowed = block & permitted_all
        denied = block - allowed
        if not denied:
            verdict: Verdict = "permitted"
        elif not allowed:
            verdict = "blocked"
        else:
            verdict = "partial"
        deciding = tuple(
            dict.fromkeys(
                d.origin
                for d in evaluation.deciding(block)
                if d.origin and (d.action != Action.PERMIT or d.sources.overlaps(allowed))
            )
        )
        actions = tuple(
            dict.fromkeys(
                d.action.value for d in evaluation.deciding(denied) if d.action != Action.PERMIT
            )
        )
        verdicts.append(
            RangeVerdict(
                cidr, verdict, tuple(allowed.cidrs()), tuple(denied.cidrs()), deciding, actions
            )
        )
        missing = missing | denied
    stale = IPSet()
    if retired is not None:
        current = IPSet.parse(*ranges) if ranges else IPSet()
        stale = (permitted_all & retired) - current
        # An "any" permit is not a stale object: only report when the permit is narrower
        # than the whole address space.
        if permitted_all.only(_family(destination)) == IPSet.universe().only(_family(destination)):
            stale = IPSet()
            notes.append(f"the policy permits TCP {port} to {destination} from any source")
    for origin, reason in evaluation.skipped_rules:
        notes.append(f"{origin.path}:{origin.line}: rule skipped: {reason}")
    return RangeCheck(evaluation, tuple(verdicts), missing, stale, tuple(notes))


def _family(address: str) -> Literal[4, 6]:
    return 4 if ipaddress.ip_address(address).version == 4 else 6
