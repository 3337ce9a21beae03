"""The evaluator on hand-built policies whose answers were worked out by hand."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailflow_doctor.firewall.evaluate import check_ranges, evaluate
from mailflow_doctor.firewall.model import (
    Action,
    Chain,
    Combine,
    DestinationNat,
    Origin,
    Policy,
    PortSet,
    Rule,
)
from mailflow_doctor.knowledge.ipranges import IPSet

EOP = ["40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17", "2a01:111:f400::/48"]


def _o(line: int, text: str = "") -> Origin:
    return Origin("fw.cfg", line, text or f"rule {line}")


def _rule(action: Action, line: int, src: str | None = None, **kw: object) -> Rule:
    sources = IPSet.parse(src) if src else IPSet.universe()
    return Rule(action=action, origin=_o(line), sources=sources, **kw)  # type: ignore[arg-type]


def _policy(*rules: Rule, default: Action = Action.DENY, **kw: object) -> Policy:
    return Policy(
        vendor="test",
        path="fw.cfg",
        chains={"in": Chain("in", tuple(rules), default)},
        entries=("in",),
        **kw,  # type: ignore[arg-type]
    )


def test_first_match_with_earlier_deny_subtracted() -> None:
    tcp25 = {
        "protocol": "tcp",
        "dst_ports": PortSet.single(25),
        "destinations": IPSet.parse("192.0.2.25"),
    }
    policy = _policy(
        _rule(Action.DENY, 1, "40.107.128.0/17", **tcp25),
        _rule(Action.PERMIT, 2, "40.107.0.0/16", **tcp25),
        _rule(Action.PERMIT, 3, "52.100.0.0/15", **tcp25),
        _rule(Action.PERMIT, 4, "104.47.0.0/17", protocol="udp"),  # wrong protocol
        _rule(Action.PERMIT, 5, "40.92.0.0/15", protocol="tcp", dst_ports=PortSet.single(443)),
    )
    check = check_ranges(policy, "192.0.2.25", EOP)
    verdicts = {v.range: v for v in check.verdicts}
    assert verdicts["40.107.0.0/16"].verdict == "partial"
    assert verdicts["40.107.0.0/16"].blocked == ("40.107.128.0/17",)
    assert [o.line for o in verdicts["40.107.0.0/16"].deciding] == [1, 2]
    assert verdicts["52.100.0.0/14"].permitted == ("52.100.0.0/15",)
    assert verdicts["104.47.0.0/17"].verdict == "blocked"
    assert verdicts["104.47.0.0/17"].deciding[0].line is None  # the implicit deny
    assert check.missing_cidrs == [
        "40.92.0.0/15",
        "40.107.128.0/17",
        "52.102.0.0/15",
        "104.47.0.0/17",
    ]
    # The v6 range is not judged against a v4 endpoint.
    assert "2a01:111:f400::/48" not in verdicts


def test_nat_post_view_uses_real_address() -> None:
    nat = DestinationNat(IPSet.parse("203.0.113.25"), IPSet.parse("10.0.0.25"), _o(9, "nat"))
    policy = _policy(
        _rule(Action.PERMIT, 1, "40.92.0.0/15", destinations=IPSet.parse("10.0.0.25")),
        nat=(nat,),
    )
    evaluation = evaluate(policy, "203.0.113.25", 25)
    assert evaluation.effective_destination == "10.0.0.25"
    assert evaluation.permitted().cidrs() == ["40.92.0.0/15"]


def test_jump_return_and_multiple_entries() -> None:
    sub = Chain(
        "smtp",
        (
            _rule(Action.RETURN, 10, "40.107.0.0/17"),
            _rule(Action.PERMIT, 11, "40.107.0.0/16"),
        ),
        Action.RETURN,
    )
    first = Chain(
        "input",
        (
            _rule(Action.JUMP, 1, "40.0.0.0/8", target="smtp"),
            _rule(Action.PERMIT, 2, "40.107.0.0/17"),
        ),
        Action.DENY,
    )
    second = Chain("input2", (_rule(Action.REJECT, 20, "40.107.64.0/18"),), Action.PERMIT)
    policy = Policy(
        "test", "fw", {"input": first, "smtp": sub, "input2": second}, ("input", "input2")
    )
    evaluation = evaluate(policy, "192.0.2.1")
    assert evaluation.permitted().cidrs() == ["40.107.0.0/18", "40.107.128.0/17"]
    rejected = [d for d in evaluation.decisions if d.action == Action.REJECT]
    assert rejected[0].sources.cidrs() == ["40.107.64.0/18"]


def test_block_wins() -> None:
    policy = Policy(
        "windows",
        "fw",
        {
            "in": Chain(
                "in",
                (_rule(Action.PERMIT, 1, "40.0.0.0/8"), _rule(Action.DENY, 2, "40.107.0.0/16")),
                Action.DENY,
            )
        },
        ("in",),
        combine=Combine.BLOCK_WINS,
    )
    assert evaluate(policy, "192.0.2.1").permitted().cidrs() == [
        "40.0.0.0/10",
        "40.64.0.0/11",
        "40.96.0.0/13",
        "40.104.0.0/15",
        "40.106.0.0/16",
        "40.108.0.0/14",
        "40.112.0.0/12",
        "40.128.0.0/9",
    ]


def test_stale_objects_reported() -> None:
    policy = _policy(
        _rule(Action.PERMIT, 1, "65.55.88.0/24"), _rule(Action.PERMIT, 2, "40.92.0.0/15")
    )
    check = check_ranges(
        policy, "192.0.2.1", EOP, retired=IPSet.parse("65.55.88.0/24", "23.103.0.0/16")
    )
    assert check.stale_cidrs == ["65.55.88.0/24"]


BLOCKS = st.lists(
    st.tuples(
        st.sampled_from([Action.PERMIT, Action.DENY]), st.integers(0, 255), st.integers(8, 16)
    ),
    max_size=6,
)


@given(BLOCKS, st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=30))
def test_first_match_agrees_with_a_naive_walk(rules, probes) -> None:
    import ipaddress

    built = [
        _rule(action, i, str(ipaddress.IPv4Network((octet << 24, plen), strict=False)))
        for i, (action, octet, plen) in enumerate(rules)
    ]
    evaluation = evaluate(_policy(*built), "192.0.2.1")
    for value in probes:
        addr = ipaddress.IPv4Address(value)
        expected = False
        for rule in built:
            if addr in rule.sources:
                expected = rule.action == Action.PERMIT
                break
        assert (addr in evaluation.permitted()) == expected
