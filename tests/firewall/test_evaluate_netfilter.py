"""Evaluator features the Linux firewalls need: per-family entry chains, chains that run before
destination NAT, NAT-specific entry chains, and pass-through accepts that decide nothing."""

from __future__ import annotations

from mailflow_doctor.firewall.evaluate import evaluate
from mailflow_doctor.firewall.model import (
    Action,
    Chain,
    DestinationNat,
    Origin,
    Policy,
    PortSet,
    Rule,
)
from mailflow_doctor.knowledge.ipranges import IPSet


def _o(line: int) -> Origin:
    return Origin("fw", line, f"line {line}")


def _deny(line: int, sources: str, destination: str | None = None) -> Rule:
    return Rule(
        Action.DENY,
        _o(line),
        sources=IPSet.parse(sources),
        destinations=IPSet.parse(destination) if destination else IPSet.universe(),
    )


NAT = DestinationNat(
    public=IPSet.parse("203.0.113.25"),
    private=IPSet.parse("10.0.0.25"),
    origin=_o(1),
    public_ports=PortSet.single(25),
    protocol="tcp",
    entries=("pre", "forward"),
)


def _policy() -> Policy:
    return Policy(
        vendor="test",
        path="fw",
        chains={
            # runs before DNAT: sees 203.0.113.25
            "pre": Chain(
                "pre", (_deny(2, "40.92.0.0/16", "203.0.113.25"),), Action.PERMIT, pre_nat=True
            ),
            "input": Chain("input", (_deny(3, "40.107.0.0/16"),), Action.PERMIT, family=4),
            "input6": Chain("input6", (), Action.DENY, family=6),
            # after DNAT: a rule naming the public address never matches here
            "forward": Chain(
                "forward",
                (_deny(4, "52.100.0.0/14", "203.0.113.25"), _deny(5, "104.47.0.0/17", "10.0.0.25")),
                Action.PERMIT,
            ),
        },
        entries=("pre", "input", "input6"),
        nat=(NAT,),
    )


def test_translated_traffic_takes_the_nat_entries_and_pre_nat_sees_the_public_address() -> None:
    evaluation = evaluate(_policy(), "203.0.113.25", 25)
    blocked = evaluation.blocked()
    assert "40.92.1.1" in blocked  # pre-NAT chain, public address
    assert "52.100.1.1" not in blocked  # forward rule names the public address: no match
    assert "104.47.1.1" in blocked  # forward rule names the inside address
    assert "40.107.1.1" not in blocked  # input is not on the forwarded path
    assert evaluation.effective_destination == "10.0.0.25"


def test_untranslated_traffic_takes_the_policy_entries_of_its_family() -> None:
    v4 = evaluate(_policy(), "203.0.113.1", 25)
    assert "40.107.1.1" in v4.blocked()
    assert "40.92.1.1" not in v4.blocked()  # the pre-NAT rule names 203.0.113.25 only
    assert {d.chain for d in v4.decisions} <= {"pre", "input"}
    v6 = evaluate(_policy(), "2001:db8::25", 25)
    assert not v6.permitted()
    assert {d.chain for d in v6.decisions} == {"input6"}


def test_pass_through_accepts_are_not_reported_as_decisions() -> None:
    evaluation = evaluate(_policy(), "203.0.113.25", 25)
    implicit_permits = [d for d in evaluation.decisions if d.implicit and d.action == Action.PERMIT]
    assert [d.chain for d in implicit_permits] == ["forward"]
