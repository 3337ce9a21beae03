"""nftables: `nft list ruleset` text and `nft -j list ruleset` JSON.

Both forms are brought to the JSON shape (tables, chains, sets, maps, rules with `expr`
lists) and turned into the policy model by one builder. What a new inbound TCP SYN to port 25
meets: every base chain of type `filter` on hook prerouting, then input (delivered locally) or
forward (DNATed to another host), in priority order across all tables of family ip, ip6 and
inet. Each base chain must accept (an accept ends only that chain; a drop anywhere is final),
which is `Combine.ALL_MUST_ACCEPT`. Prerouting chains with a priority below the dnat chain's
(default dstnat, -100) see the public destination; everything later sees the translated one.

Choices the ruleset cannot make for us, documented here and in `Policy.notes`:
- Traffic that is not DNATed is evaluated on the input hook (the host is the mail server);
  `ParseOptions.acl="forward"` evaluates it on the forward hook instead.
- The inbound interface is `ParseOptions.interface`, else the `iifname` of the dnat rule for
  port 25, else the one most often named on rules for TCP 25, else the only non-loopback one.
- A new SYN has conntrack state `new`; `limit rate` is assumed not exceeded, `limit rate over`
  not reached; `fib ... oif missing` (reverse path) is assumed to pass; `oif`/`oifname` are
  assumed to match (the interface towards the mail server).
- Traffic that falls to a base chain's policy is not logged unless a `log` rule precedes it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from mailflow_doctor.firewall.evaluate import Evaluation, RangeCheck, evaluate
from mailflow_doctor.firewall.model import (
    ANY_PROTOCOL,
    Action,
    Chain,
    DestinationNat,
    Origin,
    Policy,
    PortSet,
    Rule,
)
from mailflow_doctor.firewall.registry import (
    FirewallParseError,
    ParseOptions,
    ParseResult,
    Remediation,
    register_parser,
)
from mailflow_doctor.firewall.vendors._kit import (
    cleanup_only,
    insert_until_closed,
    judging_follow_up,
    judging_follow_up_packets,
    mentions_packet_state,
    packet_flags,
    packet_state,
    reject_action,
)
from mailflow_doctor.knowledge.ipranges import AddressParseError, IPSet

PRIORITY_NAMES = {
    "raw": -300,
    "mangle": -150,
    "dstnat": -100,
    "filter": 0,
    "security": 50,
    "srcnat": 100,
    "out": 100,
    "dstnat_bridge": -300,
}
SERVICES = {
    "smtp": 25,
    "ssh": 22,
    "http": 80,
    "https": 443,
    "submission": 587,
    "smtps": 465,
    "submissions": 465,
    "domain": 53,
    "imap": 143,
    "imap2": 143,
    "imaps": 993,
    "pop3": 110,
    "pop3s": 995,
    "ftp": 21,
    "telnet": 23,
    "ntp": 123,
    "snmp": 161,
}
PROTOCOL_NUMBERS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}
TCP_FLAGS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ecn": 64, "cwr": 128}


def _is_tcp_reset(body: object) -> bool:
    return isinstance(body, dict) and body.get("type") == "tcp reset"


VERDICTS = ("accept", "drop", "reject", "jump", "goto", "return", "continue", "queue")
NO_INTERFACE = "<inbound interface not named in the ruleset>"
MAX_NESTING = 32  # real rulesets nest table > chain > set > element: four or five levels
HOOK_ORDER = {"prerouting": 0, "input": 1, "forward": 1}

Json = Any


# ---- text -> JSON shape -------------------------------------------------------------------


class _Group(list[Any]):
    """A `{ ... }` group in the token stream."""


@dataclass
class _Tok:
    text: str
    line: int
    quoted: bool = False


_WORD = re.compile(r'"(?:[^"\\]|\\.)*"|[{};\n]|#[^\n]*|[^\s{};"#]+|\S')


def _tokens(text: str) -> list[_Tok]:
    result: list[_Tok] = []
    line = 1
    text = text.replace("\\\n", " ")
    for match in _WORD.finditer(text):
        word = match.group(0)
        if word == "\n":
            result.append(_Tok("\n", line))
            line += 1
            continue
        if word.startswith("#"):
            continue
        if word.startswith('"'):
            result.append(_Tok(word[1:-1], line, True))
        else:
            result.append(_Tok(word, line))
    return result


def _statements(tokens: list[_Tok], start: int) -> tuple[list[list[Any]], int]:
    """Split a block body into statements; nested `{}` become `_Group`s. Returns (stmts, end)."""
    statements: list[list[Any]] = []
    current: list[Any] = []
    index = start
    while index < len(tokens):
        tok = tokens[index]
        if tok.text == "}" and not tok.quoted:
            if current:
                statements.append(current)
            return statements, index + 1
        if tok.text in ("\n", ";") and not tok.quoted:
            if current:
                statements.append(current)
                current = []
            index += 1
            continue
        if tok.text == "{" and not tok.quoted:
            inner, index = _group(tokens, index + 1)
            current.append(inner)
            continue
        current.append(tok)
        index += 1
    if current:
        statements.append(current)
    return statements, index


def _group(tokens: list[_Tok], start: int) -> tuple[_Group, int]:
    """The raw contents of a `{ ... }` (newlines kept as separators), nested groups kept."""
    items = _Group()
    index = start
    while index < len(tokens):
        tok = tokens[index]
        if tok.text == "}" and not tok.quoted:
            return items, index + 1
        if tok.text == "{" and not tok.quoted:
            inner, index = _group(tokens, index + 1)
            items.append(inner)
            continue
        items.append(tok)
        index += 1
    return items, index


def _is_block(stmt: list[Any]) -> bool:
    return bool(stmt) and isinstance(stmt[-1], _Group)


def _words(stmt: list[Any]) -> list[str]:
    return [t.text for t in stmt if isinstance(t, _Tok)]


@dataclass
class _TextParse:
    path: str
    objects: list[dict[str, Json]] = field(default_factory=list)
    issues: list[tuple[int | None, str]] = field(default_factory=list)
    defines: dict[str, Any] = field(default_factory=dict)


def _substitute(items: list[Any], defines: dict[str, Any]) -> list[Any]:
    result: list[Any] = []
    for item in items:
        if isinstance(item, _Tok) and item.text.startswith("$") and item.text[1:] in defines:
            value = defines[item.text[1:]]
            plain_list = isinstance(value, list) and not isinstance(value, _Group)
            result.extend(value if plain_list else [value])
        elif isinstance(item, _Group):
            result.append(_Group(_substitute(list(item), defines)))
        else:
            result.append(item)
    return result


def text_to_json(
    text: str, path: str
) -> tuple[list[dict[str, Json]], list[tuple[int | None, str]]]:
    parse = _TextParse(path)
    tokens = _tokens(text)
    depth = deepest = 0
    for tok in tokens:
        if not tok.quoted and tok.text in ("{", "}"):
            depth = depth + 1 if tok.text == "{" else max(depth - 1, 0)
            deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        raise FirewallParseError(f"{path}: braces nest {deepest} deep; not an nftables ruleset")
    statements, _ = _statements(tokens, 0)
    for stmt in statements:
        _top(stmt, parse)
    return parse.objects, parse.issues


def _line_of(stmt: list[Any]) -> int | None:
    for item in stmt:
        if isinstance(item, _Tok):
            return item.line
        if isinstance(item, _Group):
            found = _line_of(list(item))
            if found:
                return found
    return None


def _top(stmt: list[Any], parse: _TextParse) -> None:
    words = _words(stmt)
    if not words:
        return
    line = _line_of(stmt)
    head = words[0]
    if head == "define" and len(stmt) >= 4:
        parse.defines[words[1]] = stmt[3] if len(stmt) == 4 else stmt[3:]
        return
    if head in ("flush", "delete", "include", "list", "destroy"):
        return
    if head in ("add", "create", "insert", "replace") and len(words) >= 2:
        _command(stmt[1:], parse, insert=head == "insert")
        return
    if head == "table":
        family, name = _family_name(words[1:])
        parse.objects.append({"table": {"family": family, "name": name}})
        if _is_block(stmt):
            _table_body(list(stmt[-1]), family, name, parse)
        return
    if head in ("chain", "rule", "set", "map", "element"):
        _command(stmt, parse, insert=False)
        return
    parse.issues.append((line, f"statement not understood: {' '.join(words)[:100]!r}"))


def _family_name(words: list[str]) -> tuple[str, str]:
    families = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
    if words and words[0] in families:
        return words[0], words[1] if len(words) > 1 else ""
    return "ip", words[0] if words else ""


def _command(stmt: list[Any], parse: _TextParse, insert: bool) -> None:
    """`add rule inet filter input tcp dport 25 accept` and friends."""
    words = _words(stmt)
    kind = words[0]
    rest = stmt[1:]
    rest_words = words[1:]
    line = _line_of(stmt)
    family, table = _family_name(rest_words)
    skip = (
        2 if rest_words and rest_words[0] in ("ip", "ip6", "inet", "arp", "bridge", "netdev") else 1
    )
    if kind == "table":
        parse.objects.append({"table": {"family": family, "name": table}})
        if _is_block(stmt):
            _table_body(list(stmt[-1]), family, table, parse)
        return
    body = rest[skip:]
    body_words = _words(body)
    if not body_words:
        return
    name = body_words[0]
    if kind == "chain":
        chain: dict[str, Json] = {"family": family, "table": table, "name": name, "_line": line}
        if _is_block(body):
            for inner in _statements_of(body[-1]):
                _chain_setting(inner, chain)
        parse.objects.append({"chain": chain})
    elif kind == "rule":
        items = body[1:]
        if (
            items
            and isinstance(items[0], _Tok)
            and items[0].text in ("position", "index", "handle")
        ):
            items = items[2:]
        _rule(items, family, table, name, parse, insert)
    elif kind in ("set", "map"):
        obj: dict[str, Json] = {"family": family, "table": table, "name": name, "_line": line}
        if _is_block(body):
            _set_body(list(body[-1]), obj, parse)
        parse.objects.append({kind: obj})
    elif kind == "element" and _is_block(body):
        parse.objects.append(
            {
                "element": {
                    "family": family,
                    "table": table,
                    "name": name,
                    "elem": [_value(e) for e in _elements(body[-1])],
                }
            }
        )


def _statements_of(group: _Group) -> list[list[Any]]:
    tokens_like: list[Any] = list(group)
    statements: list[list[Any]] = []
    current: list[Any] = []
    for item in tokens_like:
        if isinstance(item, _Tok) and not item.quoted and item.text in ("\n", ";"):
            if current:
                statements.append(current)
            current = []
        else:
            current.append(item)
    if current:
        statements.append(current)
    return statements


def _table_body(items: list[Any], family: str, table: str, parse: _TextParse) -> None:
    for stmt in _statements_of(_Group(items)):
        words = _words(stmt)
        if not words:
            continue
        kind = words[0]
        line = _line_of(stmt)
        if kind == "chain" and len(words) >= 2:
            chain: dict[str, Json] = {
                "family": family,
                "table": table,
                "name": words[1],
                "_line": line,
            }
            parse.objects.append({"chain": chain})
            if _is_block(stmt):
                for inner in _statements_of(stmt[-1]):
                    if not _chain_setting(inner, chain):
                        _rule(inner, family, table, words[1], parse, False)
        elif kind in ("set", "map") and len(words) >= 2:
            obj: dict[str, Json] = {
                "family": family,
                "table": table,
                "name": words[1],
                "_line": line,
            }
            if _is_block(stmt):
                _set_body(list(stmt[-1]), obj, parse)
            parse.objects.append({kind: obj})
        elif kind in ("flags", "comment"):
            continue
        elif kind in ("counter", "quota", "limit", "ct", "flowtable", "secmark", "synproxy"):
            continue  # named stateful objects: they do not filter
        else:
            parse.issues.append(
                (line, f"table statement not understood: {' '.join(words)[:100]!r}")
            )


def _chain_setting(stmt: list[Any], chain: dict[str, Json]) -> bool:
    words = _words(stmt)
    if not words:
        return True
    if words[0] == "type" and "hook" in words:
        chain["type"] = words[1] if len(words) > 1 else "filter"
        chain["hook"] = (
            words[words.index("hook") + 1] if words.index("hook") + 1 < len(words) else ""
        )
        if "priority" in words:
            chain["prio"] = _priority(words[words.index("priority") + 1 :])
        if "policy" in words:
            chain["policy"] = words[words.index("policy") + 1].rstrip(";")
        return True
    if words[0] == "policy" and len(words) >= 2:
        chain["policy"] = words[1]
        return True
    return words[0] in ("comment", "devices", "device", "flags")


def _priority(words: list[str]) -> int:
    """`0`, `-150`, `filter`, `mangle - 5`, `dstnat + 10`."""

    def number(word: str) -> int | None:
        word = word.rstrip(";")
        if word in PRIORITY_NAMES:
            return PRIORITY_NAMES[word]
        try:
            return int(word)
        except ValueError:
            return None

    if not words:
        return 0
    base = number(words[0]) or 0
    if len(words) >= 3 and words[1] in ("+", "-"):
        offset = number(words[2]) or 0
        return base + offset if words[1] == "+" else base - offset
    return base


def _set_body(items: list[Any], obj: dict[str, Json], parse: _TextParse) -> None:
    for stmt in _statements_of(_Group(items)):
        words = _words(stmt)
        if not words:
            continue
        if words[0] == "type":
            types = " ".join(words[1:])
            key, _, data = types.partition(":")
            obj["type"] = key.strip()
            if data:
                obj["map"] = data.strip()
        elif words[0] == "typeof":
            obj["type"] = "typeof " + " ".join(words[1:])
        elif words[0] == "flags":
            obj["flags"] = [f.strip() for f in ",".join(words[1:]).split(",") if f.strip()]
        elif words[0] == "elements" and _is_block(stmt):
            obj["elem"] = [_value(e) for e in _elements(stmt[-1])]
            obj["_elements_line"] = _line_of(stmt)


def _elements(group: _Group) -> list[list[Any]]:
    """Split a `{ a, b : c, d }` group into elements (token lists)."""
    elements: list[list[Any]] = []
    current: list[Any] = []
    for item in group:
        if isinstance(item, _Group):
            current.append(item)
            continue
        if item.text == "\n" and not item.quoted:
            continue
        if item.quoted:
            current.append(item)
            continue
        parts = item.text.split(",")
        for index, part in enumerate(parts):
            if part:
                current.append(_Tok(part, item.line))
            if index < len(parts) - 1 and current:
                elements.append(current)
                current = []
    if current:
        elements.append(current)
    return elements


def _value(element: list[Any]) -> Json:
    """One element: a scalar, a `key : value` pair (maps), or a nested set."""
    texts = [t for t in element if not (isinstance(t, _Tok) and t.text in ("timeout", "expires"))]
    if any(isinstance(t, _Tok) and t.text == ":" and not t.quoted for t in texts):
        position = next(i for i, t in enumerate(texts) if isinstance(t, _Tok) and t.text == ":")
        key = _scalar(texts[:position])
        data = _scalar(texts[position + 1 :])
        return [key, data]
    # IPv6 "a : b" never has spaces; "10.0.0.0/8 : accept" always does (nft prints them).
    return _scalar(texts)


def _scalar(items: list[Any]) -> Json:
    if not items:
        return None
    first = items[0]
    if isinstance(first, _Group):
        return {"set": [_value(e) for e in _elements(first)]}
    text = first.text
    if text in ("accept", "drop", "continue", "return"):
        return {text: None}
    if text in ("jump", "goto") and len(items) > 1 and isinstance(items[1], _Tok):
        return {text: {"target": items[1].text}}
    if text.isdigit():
        return int(text)
    return text


_OPS = ("==", "!=", "<", ">", "<=", ">=", "eq", "ne", "lt", "gt", "le", "ge")
_OP_WORDS = {"eq": "==", "ne": "!=", "lt": "<", "gt": ">", "le": "<=", "ge": ">="}
_PAYLOAD_PROTOCOLS = ("ip", "ip6", "tcp", "udp", "th", "sctp", "dccp", "udplite", "icmp", "icmpv6")
_META_KEYS = {
    "iif",
    "iifname",
    "oif",
    "oifname",
    "l4proto",
    "nfproto",
    "mark",
    "protocol",
    "iiftype",
    "oiftype",
    "skuid",
    "skgid",
    "pkttype",
    "cpu",
    "iifgroup",
    "oifgroup",
    "cgroup",
    "length",
    "priority",
}
_STOP = {"counter", "log", "comment", "limit", "meta", "ct", *VERDICTS, "dnat", "snat"}


def _rule(
    items: list[Any], family: str, table: str, chain: str, parse: _TextParse, insert: bool
) -> None:
    items = _substitute(items, parse.defines)
    line = _line_of(items)
    text = " ".join(_render(i) for i in items)
    exprs: list[Json] = []
    index = 0
    try:
        while index < len(items):
            index = _expr(items, index, exprs)
    except (IndexError, ValueError) as exc:
        exprs.append({"_unknown": f"{text} ({exc})"})
    rule: dict[str, Json] = {
        "family": family,
        "table": table,
        "chain": chain,
        "expr": exprs,
        "_line": line,
        "_text": text,
    }
    if insert:
        rule["_insert"] = True
    parse.objects.append({"rule": rule})


def _render(item: Any) -> str:
    if isinstance(item, _Group):
        inner = " ".join(_render(i) for i in item if not (isinstance(i, _Tok) and i.text == "\n"))
        return "{ " + inner + " }"
    assert isinstance(item, _Tok)
    return f'"{item.text}"' if item.quoted else item.text


def _word(items: list[Any], index: int) -> str:
    if index < len(items) and isinstance(items[index], _Tok):
        return str(items[index].text)
    return ""


def _operand(items: list[Any], index: int) -> tuple[Json, int]:
    item = items[index]
    if isinstance(item, _Group):
        return {"set": [_value(e) for e in _elements(item)]}, index + 1
    text = item.text
    if not item.quoted and "," in text:
        return {"set": [p for p in text.split(",") if p]}, index + 1
    if text.isdigit():
        return int(text), index + 1
    return text, index + 1


def _match(left: Json, items: list[Any], index: int, exprs: list[Json]) -> int:
    op = "=="
    word = _word(items, index)
    if word in _OPS:
        op = _OP_WORDS.get(word, word)
        index += 1
    if _word(items, index) == "vmap":
        data, index = _operand(items, index + 1)
        exprs.append({"vmap": {"key": left, "data": data}})
        return index
    if _word(items, index) == "set":  # `meta mark set 1`: a statement, not a match
        _, index = _operand(items, index + 1)
        exprs.append({"mangle": {"key": left}})
        return index
    if _word(items, index) == ".":
        raise ValueError("concatenations are not supported")
    right, index = _operand(items, index)
    exprs.append({"match": {"op": op, "left": left, "right": right}})
    return index


def _expr(items: list[Any], index: int, exprs: list[Json]) -> int:
    word = _word(items, index)
    nxt = _word(items, index + 1)
    if word in _PAYLOAD_PROTOCOLS and word in ("tcp",) and nxt == "flags":
        return _tcp_flags(items, index + 2, exprs)
    if word in _PAYLOAD_PROTOCOLS and nxt and nxt not in _OPS and nxt not in _STOP:
        return _match({"payload": {"protocol": word, "field": nxt}}, items, index + 2, exprs)
    if word == "meta" and nxt in _META_KEYS:
        return _match({"meta": {"key": nxt}}, items, index + 2, exprs)
    if word in _META_KEYS and word not in ("priority", "length", "protocol", "mark", "cpu"):
        return _match({"meta": {"key": word}}, items, index + 1, exprs)
    if word == "mark":
        return _match({"meta": {"key": "mark"}}, items, index + 1, exprs)
    if word == "ct" and nxt:
        return _match({"ct": {"key": nxt}}, items, index + 2, exprs)
    if word == "fib":
        end = index + 1
        parts = []
        while (
            end < len(items)
            and _word(items, end) not in VERDICTS
            and _word(items, end) not in ("counter", "log")
        ):
            parts.append(_render(items[end]))
            end += 1
        exprs.append({"fib": " ".join(parts)})
        return end
    if word == "counter":
        index += 1
        while _word(items, index) in ("packets", "bytes", "name"):
            index += 2
        exprs.append({"counter": None})
        return index
    if word == "log":
        index += 1
        log: dict[str, Json] = {}
        while _word(items, index) in (
            "prefix",
            "level",
            "flags",
            "group",
            "snaplen",
            "queue-threshold",
        ):
            key = _word(items, index)
            log[key] = _word(items, index + 1)
            index += 2
            if key == "flags":
                while _word(items, index) in (
                    "all",
                    "tcp",
                    "ip",
                    "skuid",
                    "ether",
                    "sequence,options",
                    "options",
                ):
                    index += 1
        exprs.append({"log": log})
        return index
    if word == "comment":
        exprs.append({"_comment": _word(items, index + 1)})
        return index + 2
    if word == "limit":
        index += 1
        over = False
        if _word(items, index) == "rate":
            index += 1
        if _word(items, index) == "over":
            over = True
            index += 1
        while (
            index < len(items)
            and _word(items, index) not in _STOP
            and _word(items, index) not in _PAYLOAD_PROTOCOLS
        ):
            index += 1
        exprs.append({"limit": {"inv": over}})
        return index
    if word in ("accept", "drop", "continue", "return"):
        exprs.append({word: None})
        return index + 1
    if word in ("jump", "goto"):
        exprs.append({word: {"target": nxt}})
        return index + 2
    if word == "reject":
        index += 1
        expr: dict[str, Json] = {}
        if _word(items, index) == "with":
            kind = _word(items, index + 1)
            if kind == "tcp":
                expr = {"type": "tcp reset"}
                index += 3
            else:
                expr = {"type": kind, "expr": _word(items, index + 3)}
                index += 4 if _word(items, index + 2) == "type" else 3
        exprs.append({"reject": expr or None})
        return index
    if word == "queue":
        exprs.append({"queue": None})
        return len(items)
    if word in ("dnat", "snat", "redirect", "masquerade"):
        index += 1
        if _word(items, index) in ("ip", "ip6"):
            index += 1
        spec = ""
        if _word(items, index) == "to":
            spec = _word(items, index + 1)
            index += 2
        exprs.append({word: {"_spec": spec}})
        while index < len(items) and _word(items, index) not in ("counter", "log", "comment"):
            index += 1
        return index
    if word in ("notrack", "flow", "tproxy", "dup", "fwd", "synproxy", "quota", "osf"):
        exprs.append({"_other": word})
        return len(items) if word in ("flow", "dup", "fwd", "tproxy", "quota", "osf") else index + 1
    if word == "iif" or word == "oif":
        return _match({"meta": {"key": word}}, items, index + 1, exprs)
    if word == "ether" or word == "vlan":
        exprs.append({"_unknown": f"{word} {nxt}"})
        return _skip_match(items, index + 2)
    if word == "@nh" or word.startswith("@"):
        exprs.append({"_unknown": word})
        return _skip_match(items, index + 1)
    raise ValueError(f"expression {word!r} not understood")


def _skip_match(items: list[Any], index: int) -> int:
    if _word(items, index) in _OPS:
        index += 1
    return index + 1


def _tcp_flags(items: list[Any], index: int, exprs: list[Json]) -> int:
    """`tcp flags syn`, `tcp flags & (syn|ack) == syn`, `tcp flags syn / syn,ack`, `!= syn`."""
    mask = 0xFF
    op = "=="
    parts: list[str] = []
    while index < len(items):
        word = _word(items, index)
        if isinstance(items[index], _Group):
            exprs.append({"_tcpflags": {"op": op, "mask": mask, "set": True}})
            return index + 1
        if word in _STOP or word in _PAYLOAD_PROTOCOLS or word == "":
            break
        parts.append(word)
        index += 1
    text = " ".join(parts).replace("(", " ").replace(")", " ")
    tokens = text.split()
    value_words: list[str] = []
    position = 0
    if tokens and tokens[0] == "&":
        mask_words: list[str] = []
        position = 1
        while position < len(tokens) and tokens[position] not in _OPS:
            mask_words.append(tokens[position])
            position += 1
        mask = _flags_value(" ".join(mask_words))
    if position < len(tokens) and tokens[position] in _OPS:
        op = _OP_WORDS.get(tokens[position], tokens[position])
        position += 1
    value_words = tokens[position:]
    if "/" in value_words:
        slash = value_words.index("/")
        mask = _flags_value(" ".join(value_words[slash + 1 :]))
        value_words = value_words[:slash]
        value = _flags_value(" ".join(value_words))
        exprs.append({"_tcpflags": {"op": op, "mask": mask, "value": value}})
        return index
    value = _flags_value(" ".join(value_words))
    if mask == 0xFF and op == "==" and "|" not in " ".join(value_words):
        # `tcp flags syn` tests that SYN is set (nft: flags & syn == syn)
        mask = value
    exprs.append({"_tcpflags": {"op": op, "mask": mask, "value": value}})
    return index


def _flags_value(text: str) -> int:
    value = 0
    for name in re.split(r"[|,\s]+", text):
        if not name:
            continue
        if name in TCP_FLAGS:
            value |= TCP_FLAGS[name]
        elif name.startswith("0x"):
            value |= int(name, 16)
        elif name.isdigit():
            value |= int(name)
        else:
            raise ValueError(f"tcp flag {name!r} not understood")
    return value


# ---- JSON shape -> policy -------------------------------------------------------------------


@dataclass
class _Ruleset:
    path: str
    options: ParseOptions
    tables: list[tuple[str, str]] = field(default_factory=list)
    chains: dict[tuple[str, str, str], dict[str, Json]] = field(default_factory=dict)
    sets: dict[tuple[str, str, str], dict[str, Json]] = field(default_factory=dict)
    rules: dict[tuple[str, str, str], list[dict[str, Json]]] = field(default_factory=dict)
    issues: list[tuple[int | None, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    resolved: dict[tuple[str, str, str], IPSet] = field(default_factory=dict)  # named sets


def _load(objects: list[dict[str, Json]], path: str, options: ParseOptions) -> _Ruleset:
    rs = _Ruleset(path, options)
    for obj in objects:
        if not isinstance(obj, dict) or len(obj) != 1:
            continue
        kind, body = next(iter(obj.items()))
        if not isinstance(body, dict):
            continue
        family = str(body.get("family", "ip"))
        table = str(body.get("table", body.get("name", "")))
        if kind == "table":
            rs.tables.append((family, str(body.get("name", ""))))
        elif kind == "chain":
            key = (family, table, str(body.get("name", "")))
            merged = rs.chains.setdefault(key, {})
            merged.update({k: v for k, v in body.items() if v is not None})
            rs.rules.setdefault(key, [])
        elif kind in ("set", "map"):
            key = (family, table, str(body.get("name", "")))
            entry = dict(body)
            entry["_kind"] = kind
            rs.sets[key] = entry
        elif kind == "element":
            key = (family, table, str(body.get("name", "")))
            target = rs.sets.setdefault(key, {"name": key[2], "_kind": "set", "elem": []})
            target["elem"] = list(target.get("elem") or []) + list(body.get("elem") or [])
        elif kind == "rule":
            key = (family, table, str(body.get("chain", "")))
            rules = rs.rules.setdefault(key, [])
            if body.get("_insert"):
                rules.insert(0, body)
            else:
                rules.append(body)
            rs.chains.setdefault(key, {"family": family, "table": table, "name": key[2]})
    return rs


def _family_universe(family: str) -> IPSet:
    if family == "ip":
        return IPSet.all_v4()
    if family == "ip6":
        return IPSet.all_v6()
    return IPSet.universe()


def _unwrap(value: Json) -> Json:
    if isinstance(value, dict) and "elem" in value and isinstance(value["elem"], dict):
        return _unwrap(value["elem"].get("val"))
    return value


def _addresses(value: Json, rs: _Ruleset, family: str, table: str) -> IPSet:
    value = _unwrap(value)
    if isinstance(value, str):
        if value.startswith("@"):
            key = (family, table, value[1:])
            cached = rs.resolved.get(key)
            if cached is not None:
                return cached
            found = rs.sets.get(key)
            if found is None:
                raise KeyError(value[1:])
            keys = []
            for element in found.get("elem") or []:
                element = _unwrap(element)
                if isinstance(element, list):  # a map's key
                    element = element[0]
                keys.append(element)
            rs.resolved[key] = _union_of(keys, rs, family, table)
            return rs.resolved[key]
        return IPSet.parse(value)
    if isinstance(value, dict):
        if "prefix" in value:
            prefix = value["prefix"]
            return IPSet.parse(f"{prefix['addr']}/{prefix['len']}")
        if "range" in value:
            first, last = value["range"]
            return IPSet.from_range(str(first), str(last))
        if "set" in value:
            return _union_of(value["set"], rs, family, table)
    if isinstance(value, list) and len(value) == 2:
        return _addresses(value[0], rs, family, table)
    raise ValueError(f"not an address: {value!r}")


def _union_of(elements: list[Json], rs: _Ruleset, family: str, table: str) -> IPSet:
    """All elements in one merge (a union per element is quadratic on big sets)."""
    v4: list[tuple[int, int]] = []
    v6: list[tuple[int, int]] = []
    for element in elements:
        part = _addresses(element, rs, family, table)
        v4.extend(part.v4)
        v6.extend(part.v6)
    return IPSet(tuple(v4), tuple(v6)) | IPSet()


def _port_value(value: Json) -> int:
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    if text in SERVICES:
        return SERVICES[text]
    return int(text)


def _ports(value: Json, rs: _Ruleset, family: str, table: str) -> PortSet:
    value = _unwrap(value)
    if isinstance(value, str) and value.startswith("@"):
        found = rs.sets.get((family, table, value[1:]))
        if found is None:
            raise KeyError(value[1:])
        return _ports({"set": found.get("elem") or []}, rs, family, table)
    if isinstance(value, dict) and "set" in value:
        ranges: list[tuple[int, int]] = []
        for element in value["set"]:
            ranges.extend(_ports(element, rs, family, table).ranges)
        return PortSet.of(*ranges)
    if isinstance(value, dict) and "range" in value:
        lo, hi = (_port_value(v) for v in value["range"])
        return PortSet.of((lo, hi))
    if isinstance(value, str) and "-" in value:
        lo_text, _, hi_text = value.partition("-")
        return PortSet.of((_port_value(lo_text), _port_value(hi_text)))
    if isinstance(value, list) and len(value) == 2:
        return _ports(value[0], rs, family, table)
    port = _port_value(value)
    return PortSet.of((port, port))


def _words_of(value: Json, rs: _Ruleset, family: str, table: str) -> list[str]:
    value = _unwrap(value)
    if isinstance(value, str) and value.startswith("@"):
        found = rs.sets.get((family, table, value[1:]))
        return [str(_unwrap(e)) for e in (found or {}).get("elem") or []]
    if isinstance(value, dict) and "set" in value:
        return [w for e in value["set"] for w in _words_of(e, rs, family, table)]
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _compare(op: str, matched: bool) -> bool:
    return not matched if op == "!=" else matched


def _interface_matches(pattern: str, name: str) -> bool:
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return pattern == name


@dataclass
class _Built:
    rules: list[Rule]
    dnat: tuple[str, IPSet, PortSet | None, str] | None = None  # (spec, dests, ports, proto)
    in_interface: list[str] | None = None


class _RuleBuilder:
    def __init__(self, rs: _Ruleset, family: str, table: str, inbound: str) -> None:
        self.rs = rs
        self.family = family
        self.table = table
        self.inbound = inbound

    def build(self, rule: dict[str, Json], origin: Origin) -> _Built:
        universe = _family_universe(self.family)
        sources = universe
        destinations = universe
        protocol = ANY_PROTOCOL
        dst_ports: PortSet | None = None
        never = False
        cannot = ""
        unresolved: list[str] = []
        logs = False
        action: Action | None = None
        target: str | None = None
        vmap: list[tuple[IPSet, Action, str | None, PortSet | None]] | None = None
        in_iface_ok = True
        in_iface_named = False
        dnat: tuple[str, IPSet, PortSet | None, str] | None = None
        for expr in rule.get("expr") or []:
            if not isinstance(expr, dict) or not expr:
                continue
            kind, body = next(iter(expr.items()))
            try:
                if kind == "match":
                    op = str(body.get("op", "=="))
                    left = body.get("left")
                    right = body.get("right")
                    outcome = self._match(left, op, right)
                    if outcome is None:
                        continue
                    what, value = outcome
                    if what == "saddr":
                        sources = sources & value
                    elif what == "daddr":
                        destinations = destinations & value
                    elif what == "proto":
                        protocol = value
                    elif what == "dport":
                        dst_ports = (
                            value if dst_ports is None else _intersect_ports(dst_ports, value)
                        )
                    elif what == "never":
                        never = never or bool(value)
                    elif what == "iif":
                        in_iface_named = True
                        in_iface_ok = in_iface_ok and bool(value)
                elif kind == "vmap":
                    key = body.get("key")
                    data = body.get("data")
                    vmap = self._vmap(key, data)
                elif kind in ("accept", "drop"):
                    action = Action.PERMIT if kind == "accept" else Action.DENY
                elif kind == "reject":
                    action = reject_action(_is_tcp_reset(body))
                elif kind in ("jump", "goto"):
                    action = Action.JUMP if kind == "jump" else Action.GOTO
                    target = str(body.get("target"))
                elif kind == "return":
                    action = Action.RETURN
                elif kind == "queue":
                    cannot = "hands packets to a user-space program (queue)"
                elif kind == "log":
                    logs = True
                elif kind == "limit":
                    if isinstance(body, dict) and body.get("inv"):
                        never = True
                elif kind == "fib":
                    if "missing" in str(body):
                        never = True
                elif kind == "_tcpflags":
                    if body.get("set"):
                        continue
                    flags = sum(TCP_FLAGS[f.lower()] for f in packet_flags())
                    value = flags & int(body["mask"])
                    wanted = int(body["value"])
                    ok = {
                        "==": value == wanted,
                        "!=": value != wanted,
                        "<": value < wanted,
                        ">": value > wanted,
                        "<=": value <= wanted,
                        ">=": value >= wanted,
                    }.get(str(body["op"]), True)
                    never = never or not ok
                elif kind == "dnat":
                    spec = str(body.get("_spec", "")) if isinstance(body, dict) else ""
                    if not spec and isinstance(body, dict):
                        spec = _json_nat_spec(body)
                    dnat = (spec, destinations, dst_ports, protocol)
                elif kind == "redirect":
                    dnat = ("redirect", destinations, dst_ports, protocol)
                elif kind == "_unknown":
                    cannot = f"uses {body!r}, which cannot be evaluated offline"
            except KeyError as exc:
                unresolved.append(str(exc.args[0]))
                cannot = f"refers to the set @{exc.args[0]}, which the ruleset does not define"
            except (ValueError, TypeError, AddressParseError) as exc:
                cannot = f"an expression could not be read ({exc})"
                self.rs.issues.append((origin.line, f"{origin.text[:80]!r}: {exc}"))
        if never or not in_iface_ok:
            sources = IPSet()
        in_interfaces = frozenset({self.inbound}) if in_iface_named else None

        def make(verdict: Action, members: IPSet, jump: str | None, ports: PortSet | None) -> Rule:
            return Rule(
                action=verdict,
                origin=origin,
                sources=members,
                destinations=destinations,
                protocol=protocol,
                dst_ports=ports,
                in_interfaces=in_interfaces,
                target=jump,
                logs=logs,
                unresolved=tuple(unresolved),
                matches_nothing_reason=cannot,
                name=str(rule.get("handle", "")),
            )

        rules: list[Rule] = []
        if vmap is not None:
            for members, verdict, vtarget, vports in vmap:
                ports = dst_ports
                if vports is not None:
                    ports = vports if ports is None else _intersect_ports(ports, vports)
                rules.append(make(verdict, sources & members, vtarget, ports))
        if action is not None:
            rules.append(make(action, sources, target, dst_ports))
        elif vmap is None:
            rules.append(make(Action.CONTINUE, sources, None, dst_ports))
        if dnat is not None and (never or not in_iface_ok):
            dnat = None
        return _Built(rules, dnat)

    def _match(self, left: Json, op: str, right: Json) -> tuple[str, Any] | None:
        if not isinstance(left, dict):
            raise ValueError(f"match on {left!r}")
        if "payload" in left:
            protocol = str(left["payload"].get("protocol"))
            fld = str(left["payload"].get("field"))
            if protocol in ("ip", "ip6") and fld in ("saddr", "daddr"):
                universe = IPSet.all_v4() if protocol == "ip" else IPSet.all_v6()
                value = _addresses(right, self.rs, self.family, self.table) & universe
                if op == "!=":
                    value = universe - value
                elif op not in ("==", "in"):
                    raise ValueError(f"address comparison {op!r} not supported")
                return ("saddr" if fld == "saddr" else "daddr"), value
            if protocol in ("ip", "ip6") and fld in ("protocol", "nexthdr"):
                family = IPSet.all_v4() if protocol == "ip" else IPSet.all_v6()
                words = _words_of(right, self.rs, self.family, self.table)
                names = {PROTOCOL_NUMBERS.get(w, w) for w in words}
                if _compare(op, "tcp" in names):
                    return "saddr", family
                return "never", True
            if protocol in ("ip", "ip6"):
                family = IPSet.all_v4() if protocol == "ip" else IPSet.all_v6()
                return "saddr", family  # other header fields: assume they match
            if protocol in ("tcp", "th") and fld == "dport":
                ports = _ports(right, self.rs, self.family, self.table)
                if op == "!=":
                    ports = ports.negated()
                elif op in ("<", ">", "<=", ">="):
                    ports = _port_compare(op, _port_value(right))
                return "dport", ports
            if protocol in ("tcp", "th") and fld == "sport":
                ports = _ports(right, self.rs, self.family, self.table)
                if op == "!=":
                    ports = ports.negated()
                ephemeral = 49152 in ports and 65535 in ports
                return "never", not ephemeral
            if protocol == "tcp":
                return "proto", "tcp"
            # udp, sctp, icmp ...: a TCP packet never matches
            return "never", True
        if "meta" in left:
            key = str(left["meta"].get("key"))
            if key == "protocol":
                ethertypes = set(_words_of(right, self.rs, self.family, self.table))
                value = IPSet()
                if _compare(op, "ip" in ethertypes):
                    value = value | IPSet.all_v4()
                if _compare(op, "ip6" in ethertypes):
                    value = value | IPSet.all_v6()
                return "saddr", value
            if key == "l4proto":
                words = _words_of(right, self.rs, self.family, self.table)
                names = {PROTOCOL_NUMBERS.get(w, w) for w in words}
                return "never", not _compare(op, "tcp" in names)
            if key == "nfproto":
                protos = set(_words_of(right, self.rs, self.family, self.table))
                v4 = _compare(op, "ipv4" in protos)
                v6 = _compare(op, "ipv6" in protos)
                value = IPSet()
                if v4:
                    value = value | IPSet.all_v4()
                if v6:
                    value = value | IPSet.all_v6()
                return "saddr", value
            if key in ("iif", "iifname"):
                words = _words_of(right, self.rs, self.family, self.table)
                hit = any(_interface_matches(w, self.inbound) for w in words)
                return "iif", _compare(op, hit)
            if key in ("oif", "oifname", "oiftype", "oifgroup"):
                return None
            if key == "mark":
                words = _words_of(right, self.rs, self.family, self.table)
                zero = any(w in ("0", "0x0", "0x00000000") for w in words)
                return "never", not _compare(op, zero)
            if key == "pkttype":
                words = _words_of(right, self.rs, self.family, self.table)
                return "never", not _compare(op, "host" in words)
            if key in ("skuid", "skgid", "cgroup"):
                return "never", True
            if key in ("iiftype",):
                return None
            raise ValueError(f"meta {key} not supported")
        if "ct" in left:
            key = str(left["ct"].get("key"))
            if key == "state":
                states = {w.lower() for w in _words_of(right, self.rs, self.family, self.table)}
                return "never", not _compare(op, packet_state().lower() in states)
            if key == "status":
                status = {w.lower() for w in _words_of(right, self.rs, self.family, self.table)}
                # `ct status dnat`: taken to hold (the translated connection being checked)
                return "never", not _compare(op, "dnat" in status)
            if key == "mark":
                words = _words_of(right, self.rs, self.family, self.table)
                zero = any(w in ("0", "0x0", "0x00000000") for w in words)
                return "never", not _compare(op, zero)
            if key == "direction":
                directions = set(_words_of(right, self.rs, self.family, self.table))
                return "never", not _compare(op, "original" in directions)
            raise ValueError(f"ct {key} not supported")
        raise ValueError(f"match on {next(iter(left))!r} not supported")

    def _vmap(
        self, key: Json, data: Json
    ) -> list[tuple[IPSet, Action, str | None, PortSet | None]]:
        if isinstance(data, str) and data.startswith("@"):
            found = self.rs.sets.get((self.family, self.table, data[1:]))
            if found is None:
                raise KeyError(data[1:])
            elements = found.get("elem") or []
        elif isinstance(data, dict) and "set" in data:
            elements = data["set"]
        else:
            raise ValueError("verdict map not understood")
        result: list[tuple[IPSet, Action, str | None, PortSet | None]] = []
        for element in elements:
            element = _unwrap(element)
            if not isinstance(element, list) or len(element) != 2:
                continue
            element_key, verdict = element
            outcome = self._match(key, "==", element_key)
            if outcome is None:
                continue
            what, value = outcome
            ports: PortSet | None = None
            if what == "saddr":
                members = value
            elif what == "dport":
                members, ports = _family_universe(self.family), value
            elif what == "iif":
                members = _family_universe(self.family) if value else IPSet()
            elif what == "never":
                members = IPSet() if value else _family_universe(self.family)
            else:
                continue
            action, target = _verdict(verdict)
            result.append((members, action, target, ports))
        return result


def _port_compare(op: str, value: int) -> PortSet:
    if op == "<":
        return PortSet.of((0, max(value - 1, 0)))
    if op == "<=":
        return PortSet.of((0, value))
    if op == ">":
        return PortSet.of((min(value + 1, 65535), 65535))
    return PortSet.of((value, 65535))


def _intersect_ports(a: PortSet, b: PortSet) -> PortSet:
    ranges = [
        (max(lo1, lo2), min(hi1, hi2))
        for lo1, hi1 in a.ranges
        for lo2, hi2 in b.ranges
        if max(lo1, lo2) <= min(hi1, hi2)
    ]
    return PortSet.of(*ranges) if ranges else PortSet(((1, 0),))


def _verdict(value: Json) -> tuple[Action, str | None]:
    if isinstance(value, str):
        value = {value: None}
    if isinstance(value, dict) and value:
        kind, body = next(iter(value.items()))
        if kind == "accept":
            return Action.PERMIT, None
        if kind == "drop":
            return Action.DENY, None
        if kind == "reject":
            return reject_action(_is_tcp_reset(body)), None
        if kind in ("jump", "goto"):
            target = body.get("target") if isinstance(body, dict) else body
            return (Action.JUMP if kind == "jump" else Action.GOTO), str(target)
        if kind == "return":
            return Action.RETURN, None
        if kind == "continue":
            return Action.CONTINUE, None
    raise ValueError(f"verdict {value!r} not understood")


def _json_nat_spec(body: dict[str, Json]) -> str:
    addr = body.get("addr")
    port = body.get("port")
    if isinstance(addr, str):
        return f"{addr}:{port}" if port else addr
    if port:
        return f":{port}"
    return ""


def _prio(info: dict[str, Json]) -> int:
    value = info.get("prio", 0)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return _priority(value.split())
    return 0


def _chain_id(family: str, table: str, name: str) -> str:
    return f"{family} {table} {name}"


def _scan_interfaces(rs: _Ruleset) -> tuple[str, str]:
    if rs.options.interface:
        return rs.options.interface, "given with --interface"
    smtp: Counter[str] = Counter()
    named: Counter[str] = Counter()
    for (family, table, chain), rules in rs.rules.items():
        chain_info = rs.chains.get((family, table, chain), {})
        for rule in rules:
            exprs = [e for e in rule.get("expr") or [] if isinstance(e, dict)]
            names: list[str] = []
            negated = False
            port25 = False
            is_dnat = any("dnat" in e for e in exprs)
            for expr in exprs:
                body = expr.get("match")
                if not isinstance(body, dict):
                    continue
                left = body.get("left")
                if (
                    isinstance(left, dict)
                    and "meta" in left
                    and left["meta"].get("key") in ("iif", "iifname")
                ):
                    names = _words_of(body.get("right"), rs, family, table)
                    negated = body.get("op") == "!="
                if (
                    isinstance(left, dict)
                    and "payload" in left
                    and left["payload"].get("field") == "dport"
                ):
                    try:
                        port25 = 25 in _ports(body.get("right"), rs, family, table)
                    except (ValueError, KeyError, TypeError):
                        port25 = False
            if negated or not names:
                continue
            for name in names:
                if name == "lo" or name.endswith("*"):
                    continue
                if is_dnat and port25 and chain_info.get("type") == "nat":
                    return name, "the dnat rule for port 25 names it"
                named[name] += 1
                if port25:
                    smtp[name] += 1
    if smtp:
        return smtp.most_common(1)[0][0], "rules for TCP 25 name it most often"
    if len(named) == 1:
        return next(iter(named)), "it is the only interface the rules name"
    return NO_INTERFACE, ""


def _origin(rs: _Ruleset, rule: dict[str, Json]) -> Origin:
    text = rule.get("_text")
    if not isinstance(text, str):
        text = _render_json(rule)
    line = rule.get("_line")
    return Origin(rs.path, line if isinstance(line, int) else None, text)


def _render_json(rule: dict[str, Json]) -> str:
    """A short nft-like rendering of a JSON rule, for reports."""
    parts: list[str] = []
    for expr in rule.get("expr") or []:
        if not isinstance(expr, dict) or not expr:
            continue
        kind, body = next(iter(expr.items()))
        if kind == "match" and isinstance(body, dict):
            left = body.get("left")
            name = ""
            if isinstance(left, dict):
                inner = next(iter(left.values()))
                if isinstance(inner, dict):
                    name = " ".join(str(v) for v in inner.values())
            op = "" if body.get("op") in ("==", "in") else f"{body.get('op')} "
            parts.append(f"{name} {op}{_render_value(body.get('right'))}")
        elif kind in ("jump", "goto") and isinstance(body, dict):
            parts.append(f"{kind} {body.get('target')}")
        elif kind in ("counter", "_comment", "mangle"):
            continue
        else:
            parts.append(kind)
    handle = rule.get("handle")
    chain = f"{rule.get('family')} {rule.get('table')} {rule.get('chain')}"
    suffix = f" (chain {chain}, handle {handle})" if handle is not None else f" (chain {chain})"
    return " ".join(parts) + suffix


def _render_value(value: Json) -> str:
    value = _unwrap(value)
    if isinstance(value, dict):
        if "prefix" in value:
            return f"{value['prefix']['addr']}/{value['prefix']['len']}"
        if "range" in value:
            return f"{value['range'][0]}-{value['range'][1]}"
        if "set" in value:
            return "{ " + ", ".join(_render_value(v) for v in value["set"]) + " }"
    if isinstance(value, list):
        return " : ".join(_render_value(v) for v in value)
    return str(value)


def build_policy(rs: _Ruleset, issues: list[tuple[int | None, str]]) -> ParseResult:
    inbound, why = _scan_interfaces(rs)
    notes = rs.notes
    if why:
        notes.append(f"inbound interface {inbound} assumed ({why}); use --interface to change")
    chains: dict[str, Chain] = {}
    nat_rules: list[tuple[int, int, DestinationNat]] = []
    for key, info in rs.chains.items():
        family, table, name = key
        if family not in ("ip", "ip6", "inet"):
            if family == "netdev" and info.get("hook") == "ingress" and rs.rules.get(key):
                notes.append(
                    f"the netdev ingress chain {table} {name} runs before everything else and "
                    "is not evaluated: check it by hand if it filters port 25"
                )
            continue
        builder = _RuleBuilder(rs, family, table, inbound)
        rules: list[Rule] = []
        for order, raw in enumerate(rs.rules.get(key, [])):
            origin = _origin(rs, raw)
            built = builder.build(raw, origin)
            for rule in built.rules:
                if rule.target:
                    rule = replace(rule, target=_chain_id(family, table, rule.target))
                rules.append(rule)
            if built.dnat is not None and info.get("type") == "nat":
                translation = _destination_nat(built.dnat, family, origin)
                if translation is not None:
                    nat_rules.append((_prio(info), order, translation))
        policy_word = str(info.get("policy", "accept"))
        base = "hook" in info
        default = Action.RETURN
        if base:
            default = Action.DENY if policy_word == "drop" else Action.PERMIT
        line = info.get("_line")
        default_origin = None
        if base and "policy" in info:
            default_origin = Origin(
                rs.path,
                line if isinstance(line, int) else None,
                f"chain {name} {{ type {info.get('type', 'filter')} hook {info.get('hook')} "
                f"priority {info.get('prio', 0)}; policy {policy_word}; }} "
                f"(table {family} {table})",
            )
        chain_family = {"ip": 4, "ip6": 6}.get(family)
        chains[_chain_id(family, table, name)] = Chain(
            _chain_id(family, table, name),
            tuple(rules),
            default,
            default_origin,
            False,
            chain_family,
        )
    for chain in list(chains.values()):
        for rule in chain.rules:
            if rule.target and rule.target not in chains:
                issues.append((rule.origin.line, f"jump to an undefined chain {rule.target!r}"))
                chains[rule.target] = Chain(rule.target, (), Action.RETURN)
    dnat_priority = min((p for p, _, _ in nat_rules), default=-100)
    base_chains = [
        (key, info)
        for key, info in rs.chains.items()
        if info.get("type", "filter") == "filter"
        and info.get("hook") in HOOK_ORDER
        and key[0] in ("ip", "ip6", "inet")
    ]

    def entries_for(hooks: tuple[str, ...]) -> tuple[str, ...]:
        chosen = [
            (hooks.index(str(info.get("hook"))), _prio(info), order, key)
            for order, (key, info) in enumerate(base_chains)
            if info.get("hook") in hooks
        ]
        return tuple(_chain_id(*key) for *_, key in sorted(chosen))

    for key, info in base_chains:
        if info.get("hook") == "prerouting" and _prio(info) < dnat_priority:
            chain_id = _chain_id(*key)
            chains[chain_id] = replace(chains[chain_id], pre_nat=True)
    forward = (rs.options.acl or "").lower() == "forward"
    smtp_forward = any(
        r.dst_ports is not None and 25 in r.dst_ports
        for key, info in base_chains
        if info.get("hook") == "forward"
        for r in chains[_chain_id(*key)].rules
    )
    if not forward and smtp_forward:
        notes.append(
            "the forward hook has rules for TCP 25: addresses that are not DNATed are checked on "
            "the input hook (this host as the mail server); if the mail server sits behind this "
            "host without NAT, check again with the forward hook"
        )
    entries = entries_for(("prerouting", "forward") if forward else ("prerouting", "input"))
    forward_entries = entries_for(("prerouting", "forward"))
    if not forward_entries:
        chains["(no filter chain)"] = Chain("(no filter chain)", (), Action.PERMIT)
        forward_entries = ("(no filter chain)",)
    nat = tuple(
        replace(n, entries=forward_entries if n.entries == ("forward",) else entries)
        for _, _, n in sorted(nat_rules, key=lambda t: (t[0], t[1]))
    )
    if not entries:
        # No filter base chain on the path: nothing filters, everything is accepted.
        chains["(no filter chain)"] = Chain("(no filter chain)", (), Action.PERMIT)
        entries = ("(no filter chain)",)
        notes.append("no filter base chain on the input path: the ruleset filters nothing there")
    notes.append(
        "nftables does not log traffic that falls to a chain policy unless a log rule "
        "precedes it: no log line is not proof that nothing was dropped"
    )
    smtp_hosts = tuple(
        dict.fromkeys(
            str(n.private.networks()[0].network_address)
            for n in nat
            if n.private.size() == 1 and n.private.networks()
        )
    )
    policy = Policy(
        vendor="nftables",
        path=rs.path,
        chains=chains,
        entries=entries,
        nat=nat,
        acl_name="forward" if forward else "input",
        inbound_interfaces=frozenset({inbound}),
        smtp_hosts=smtp_hosts,
        notes=tuple(dict.fromkeys(notes)),
        all_acls=tuple(sorted(chains)),
    )
    return ParseResult(policy, tuple(dict.fromkeys([*issues, *rs.issues])))


def _destination_nat(
    dnat: tuple[str, IPSet, PortSet | None, str], family: str, origin: Origin
) -> DestinationNat | None:
    spec, destinations, ports, protocol = dnat
    if spec == "redirect":
        return DestinationNat(
            public=destinations,
            private=destinations,
            origin=origin,
            public_ports=ports,
            protocol="tcp" if ports is not None else protocol,
        )
    address = spec
    port: int | None = None
    if spec.startswith("["):
        address, _, rest = spec[1:].partition("]")
        port = int(rest.lstrip(":")) if rest.lstrip(":").isdigit() else None
    elif spec.count(":") == 1:
        address, _, rest = spec.partition(":")
        port = int(rest) if rest.isdigit() else None
    if not address:
        return None
    try:
        private = IPSet.parse(address.split("-")[0])
    except AddressParseError:
        return None
    universe = _family_universe(family)
    public = destinations & universe & (IPSet.all_v4() if ":" not in address else IPSet.all_v6())
    return DestinationNat(
        public=public,
        private=private,
        origin=origin,
        public_ports=ports,
        private_port=port,
        protocol="tcp" if ports is not None else protocol,
        entries=("forward",),
    )


def parse_nftables(text: str, path: str, options: ParseOptions) -> ParseResult:
    """Parse as the first SYN sees the rules, and, where rules look at conntrack state or TCP
    flags, also as the packets after it do (`Policy.established`)."""
    result = _parse_nftables_once(text, path, options)
    if judging_follow_up() or not mentions_packet_state(text):
        return result
    with judging_follow_up_packets():
        follow_up = _parse_nftables_once(text, path, options)
    return replace(result, policy=replace(result.policy, established=follow_up.policy))


def _parse_nftables_once(text: str, path: str, options: ParseOptions) -> ParseResult:
    stripped = text.lstrip()
    issues: list[tuple[int | None, str]] = []
    if stripped.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FirewallParseError(f"{path}: not valid JSON ({exc})") from exc
        except RecursionError as exc:
            raise FirewallParseError(f"{path}: JSON nested too deeply") from exc
        objects = document.get("nftables") if isinstance(document, dict) else None
        if not isinstance(objects, list):
            raise FirewallParseError(f"{path}: JSON without an 'nftables' list")
        objects = [o for o in objects if isinstance(o, dict)]
        _normalise_json(objects)
    else:
        objects, issues = text_to_json(text, path)
    rs = _load(objects, path, options)
    if not rs.chains:
        raise FirewallParseError(f"{path}: no nftables chains found")
    return build_policy(rs, issues)


def _normalise_json(objects: list[dict[str, Json]]) -> None:
    """Fold JSON-only shapes into the ones the builder reads (dnat addr/port, log, limit)."""
    for obj in objects:
        rule = obj.get("rule")
        if not isinstance(rule, dict):
            continue
        for expr in rule.get("expr") or []:
            if not isinstance(expr, dict):
                continue
            if "match" in expr and isinstance(expr["match"], dict):
                match = expr["match"]
                left = match.get("left")
                if isinstance(left, dict) and "payload" in left:
                    payload = left["payload"]
                    if payload.get("protocol") == "tcp" and payload.get("field") == "flags":
                        expr.clear()
                        expr.update(_json_flags(match))
                if isinstance(left, dict) and isinstance(left.get("&"), list):
                    inner = left["&"]
                    first = inner[0] if inner else None
                    if (
                        isinstance(first, dict)
                        and first.get("payload", {}).get("field") == "flags"
                        and len(inner) == 2
                    ):
                        mask = _flag_names(inner[1])
                        value = _flag_names(match.get("right"))
                        op = str(match.get("op", "=="))
                        expr.clear()
                        expr["_tcpflags"] = {
                            "op": "==" if op == "in" else op,
                            "mask": mask,
                            "value": value,
                        }


def _flag_names(value: Json) -> int:
    """Flags as a list, a name, a number or a nested `{"|": [a, b]}` expression."""
    if isinstance(value, dict) and isinstance(value.get("|"), list):
        return _flag_names(value["|"])
    names = value if isinstance(value, list) else [value]
    result = 0
    for name in names:
        if isinstance(name, str) and name in TCP_FLAGS:
            result |= TCP_FLAGS[name]
        elif isinstance(name, int):
            result |= name
        elif isinstance(name, (dict, list)):
            result |= _flag_names(name)
    return result


def _json_flags(match: dict[str, Json]) -> dict[str, Json]:
    right = match.get("right")
    op = str(match.get("op", "=="))
    names = right if isinstance(right, list) else [right]
    value = 0
    for name in names:
        if isinstance(name, str) and name in TCP_FLAGS:
            value |= TCP_FLAGS[name]
        elif isinstance(name, int):
            value |= name
    if op == "in":
        return {"_tcpflags": {"op": "==", "mask": value, "value": value}}
    return {"_tcpflags": {"op": op, "mask": 0xFF, "value": value}}


def _sniff(text: str) -> int:
    head = text[:200_000]
    if head.lstrip().startswith("{") and '"nftables"' in head[:2000]:
        return 100
    score = 0
    if re.search(r"^\s*table\s+(ip|ip6|inet|arp|bridge|netdev)?\s*\S+\s*\{", head, re.M):
        score += 50
    if re.search(r"^\s*(add|insert)\s+rule\s+", head, re.M):
        score += 50
    if re.search(r"^\s*chain\s+\S+\s*\{", head, re.M):
        score += 20
    # The hook phrase counts where it starts a line or the ruleset has structure: prose that
    # quotes "chain ... { type filter hook input ..." (a README) is not a ruleset.
    hook = r"type\s+(filter|nat|route)\s+hook\s+\w+"
    if re.search(rf"^\s*{hook}", head, re.M) or (score and re.search(hook, head)):
        score += 45
    return min(score, 98)


@register_parser
class NftablesParser:
    vendor = "nftables"
    label = "nftables (nft list ruleset, text or JSON)"

    def sniff(self, text: str) -> int:
        return _sniff(text)

    def parse(self, text: str, path: str, options: ParseOptions) -> ParseResult:
        return parse_nftables(text, path, options)

    def remediate(self, text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
        return remediate_nftables(text, result, check)


# ---- remediation ------------------------------------------------------------------------------


def _options_of(result: ParseResult) -> ParseOptions:
    policy = result.policy
    interface = None
    if policy.inbound_interfaces and NO_INTERFACE not in policy.inbound_interfaces:
        interface = next(iter(policy.inbound_interfaces))
    return ParseOptions(
        acl="forward" if policy.acl_name == "forward" else None, interface=interface
    )


def _is_json(text: str) -> bool:
    return text.lstrip().startswith("{")


def _objects(text: str, path: str) -> list[dict[str, Json]]:
    if _is_json(text):
        document = json.loads(text)
        return [o for o in document.get("nftables", []) if isinstance(o, dict)]
    return text_to_json(text, path)[0]


def _accepting_set(
    text: str, result: ParseResult, family_wanted: int
) -> tuple[str, str, str] | None:
    """A named address set that an accept rule for TCP 25 matches `saddr` against."""
    objects = _objects(text, result.policy.path)
    rs = _load(objects, result.policy.path, ParseOptions())
    for (family, table, _chain), rules in rs.rules.items():
        for rule in rules:
            exprs = [e for e in rule.get("expr") or [] if isinstance(e, dict)]
            if not any("accept" in e for e in exprs):
                continue
            set_name = None
            port_ok = False
            for expr in exprs:
                match = expr.get("match")
                if not isinstance(match, dict) or match.get("op") not in ("==", "in", None):
                    continue
                left = match.get("left")
                right = match.get("right")
                if not isinstance(left, dict) or "payload" not in left:
                    continue
                payload = left["payload"]
                wanted = "ip" if family_wanted == 4 else "ip6"
                if (
                    payload.get("protocol") == wanted
                    and payload.get("field") == "saddr"
                    and isinstance(right, str)
                    and right.startswith("@")
                ):
                    set_name = right[1:]
                if payload.get("field") == "dport":
                    try:
                        port_ok = 25 in _ports(right, rs, family, table)
                    except (ValueError, KeyError, TypeError):
                        port_ok = False
            if set_name and port_ok and (family, table, set_name) in rs.sets:
                return family, table, set_name
    return None


def remediate_nftables(text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
    """Lines that close the gap, plus optional lines that remove retired EOP ranges."""
    cleanup = _cleanup(text, result, check)
    remedy = _remediate_missing(text, result, check) if check.missing else None
    if remedy is None:
        return cleanup_only(cleanup)
    return replace(remedy, cleanup=cleanup)


def _cleanup(text: str, result: ParseResult, check: RangeCheck) -> tuple[str, ...]:
    """`delete element` for set entries and the accept rules that hold only retired ranges."""
    if not check.stale:
        return ()
    try:
        objects = _objects(text, result.policy.path)
    except (ValueError, TypeError):
        return ()
    lines: list[str] = []
    for obj in objects:
        body = obj.get("set")
        if not isinstance(body, dict):
            continue
        family, table, name = body.get("family"), body.get("table"), body.get("name")
        for element in body.get("elem") or []:
            try:
                addresses = _addresses(
                    element, _Ruleset(result.policy.path, ParseOptions()), "", ""
                )
            except (ValueError, KeyError, TypeError, AddressParseError):
                continue
            if addresses and addresses.issubset(check.stale):
                cidrs = ", ".join(addresses.cidrs())
                lines.append(f"nft delete element {family} {table} {name} {{ {cidrs} }}")
    for chain in result.policy.chains.values():
        for rule in chain.rules:
            if rule.action != Action.PERMIT or not rule.sources:
                continue
            if rule.sources.issubset(check.stale):
                where = f"line {rule.origin.line}" if rule.origin.line else "the rule"
                lines.append(f"delete {where}: {rule.origin.text}")
    return tuple(dict.fromkeys(lines))


def _remediate_missing(text: str, result: ParseResult, check: RangeCheck) -> Remediation | None:
    evaluation = check.evaluation
    family_wanted = 6 if ":" in evaluation.destination else 4
    found = _accepting_set(text, result, family_wanted)
    if found is not None:
        patched = _add_elements(text, found, check.missing.cidrs(), result.policy.path)
        if patched is not None:
            verified = parse_nftables(patched, result.policy.path, _options_of(result))
            after = evaluate(verified.policy, evaluation.destination, evaluation.port)
            if not (check.missing - after.permitted()):
                family, table, name = found
                cidrs = ", ".join(check.missing.cidrs())
                return Remediation(
                    lines=(f"nft add element {family} {table} {name} {{ {cidrs} }}",),
                    explanation=(
                        f"Your accept rule for port 25 matches the set @{name}: add the missing "
                        "Exchange Online ranges to it (takes effect at once), and to "
                        "/etc/nftables.conf so they survive a reload."
                    ),
                    patched_text=patched,
                )
    patched, commands = insert_until_closed(
        text,
        check.missing,
        lambda candidate: parse_nftables(candidate, result.policy.path, _options_of(result)).policy,
        evaluation.destination,
        evaluation.port,
        _insert_rules,
    )
    return Remediation(
        lines=tuple(commands),
        explanation=(
            "Add these accept rules ahead of the rule or chain policy that now drops the missing "
            "Exchange Online ranges (nft evaluates each chain top to bottom), and put the same "
            "lines into /etc/nftables.conf so they survive a reload."
        ),
        patched_text=patched,
    )


def _add_elements(
    text: str, found: tuple[str, str, str], cidrs: list[str], path: str
) -> str | None:
    if _is_json(text):
        document = json.loads(text)
        for obj in document.get("nftables", []):
            body = obj.get("set") if isinstance(obj, dict) else None
            if (
                isinstance(body, dict)
                and (body.get("family"), body.get("table"), body.get("name")) == found
            ):
                elements = list(body.get("elem") or [])
                for cidr in cidrs:
                    addr, _, length = cidr.partition("/")
                    elements.append({"prefix": {"addr": addr, "len": int(length)}})
                body["elem"] = elements
                flags = list(body.get("flags") or [])
                if "interval" not in flags:
                    body["flags"] = [*flags, "interval"]
                return json.dumps(document, indent=2) + "\n"
        return None
    objects, _ = text_to_json(text, path)
    info = next(
        (
            o["set"]
            for o in objects
            if "set" in o
            and (o["set"].get("family"), o["set"].get("table"), o["set"].get("name")) == found
        ),
        None,
    )
    if info is None or not isinstance(info.get("_line"), int):
        return None
    lines = text.splitlines()
    start = int(info["_line"]) - 1
    added = ", ".join(cidrs)
    depth = 0
    for index in range(start, len(lines)):
        line = lines[index]
        if index > start and re.match(r"\s*elements\s*=\s*\{", line):
            lines[index] = re.sub(r"(elements\s*=\s*\{)", r"\1 " + added + ",", line, count=1)
            return "\n".join(lines) + "\n"
        depth += line.count("{") - line.count("}")
        if depth <= 0 and index > start:
            indent = re.match(r"\s*", lines[index])
            pad = (indent.group(0) if indent else "") + "\t"
            insert = [f"{pad}elements = {{ {added} }}"]
            if "interval" not in (info.get("flags") or []):
                insert.insert(0, f"{pad}flags interval")
            lines[index:index] = insert
            return "\n".join(lines) + "\n"
        if depth <= 0 and "}" in line and index == start:
            # a one-line set: `set x { type ipv4_addr; }`
            lines[index] = (
                line.rstrip().rstrip("}").rstrip()
                + f"; flags interval; elements = {{ {added} }} }}"
            )
            return "\n".join(lines) + "\n"
    return None


def _insert_rules(
    text: str, policy: Policy, evaluation: Evaluation, missing: IPSet
) -> tuple[str, list[str]]:
    commands: list[str] = []
    if _is_json(text):
        return _insert_rules_json(text, policy, evaluation, missing)
    lines = text.splitlines()
    insertions: dict[int, list[str]] = {}
    for decision in evaluation.decisions:
        if decision.action == Action.PERMIT:
            continue
        part = decision.sources & missing
        if not part:
            continue
        chain = policy.chains[decision.chain]
        family, table, name = decision.chain.split(" ", 2)
        destination = evaluation.destination if chain.pre_nat else evaluation.effective_destination
        rule_text = _accept_text(
            part, destination, evaluation.port if chain.pre_nat else _post_port(policy, evaluation)
        )
        first_line = chain.rules[0].origin.line if chain.rules else None
        if _command_style(lines, chain):
            # `add rule` scripts: an `insert rule` (top of the chain) at the end of the script.
            lines.append(f"insert rule {family} {table} {name} {rule_text}")
            commands.append(f"nft insert rule {family} {table} {name} {rule_text}")
            continue
        if decision.implicit and _leaves(chain, part) and first_line is not None:
            # The traffic left the chain by a jump, goto or return before it came back to the
            # policy: only a rule at the top catches it.
            at: int | None = first_line - 1
            commands.append(f"nft insert rule {family} {table} {name} {rule_text}")
        elif decision.implicit or decision.origin is None or decision.origin.line is None:
            at = _chain_end(lines, chain)
            commands.append(f"nft add rule {family} {table} {name} {rule_text}")
        else:
            index = _nft_index(chain, decision.origin)
            at = decision.origin.line - 1
            commands.append(f"nft insert rule {family} {table} {name} index {index} {rule_text}")
        if at is None:
            continue
        indent = re.match(r"\s*", lines[at] if at < len(lines) else "")
        pad = indent.group(0) if indent else "\t\t"
        if decision.implicit:
            pad = _rule_indent(lines, chain) or pad
        insertions.setdefault(at, []).append(pad + rule_text)
    appended = [line for line in lines[len(text.splitlines()) :]]
    lines = lines[: len(text.splitlines())]
    for at in sorted(insertions, reverse=True):
        lines[at:at] = insertions[at]
    lines.extend(appended)
    return "\n".join(lines) + "\n", commands


def _leaves(chain: Chain, part: IPSet) -> bool:
    return any(
        r.action in (Action.JUMP, Action.GOTO, Action.RETURN) and r.sources.overlaps(part)
        for r in chain.rules
    )


def _command_style(lines: list[str], chain: Chain) -> bool:
    """Is the chain written as `add rule ...` commands rather than inside a `chain {}` block?"""
    numbers = [r.origin.line for r in chain.rules if r.origin.line is not None]
    if chain.default_origin is not None and chain.default_origin.line is not None:
        numbers.append(chain.default_origin.line)
    for number in numbers:
        if 0 < number <= len(lines):
            words = lines[number - 1].split()
            if words[:1] in (["add"], ["insert"], ["create"], ["rule"]):
                return True
    return False


def _nft_index(chain: Chain, origin: Origin) -> int:
    """The 0-based position of the nft rule `origin` (a verdict map expands into several)."""
    seen: list[Origin] = []
    for rule in chain.rules:
        if rule.origin == origin:
            return len(seen)
        if rule.origin not in seen:
            seen.append(rule.origin)
    return len(seen)


def _post_port(policy: Policy, evaluation: Evaluation) -> int:
    from mailflow_doctor.firewall.evaluate import effective_destination

    return effective_destination(policy, evaluation.destination, evaluation.port, "tcp")[1]


def _accept_text(part: IPSet, destination: str, port: int) -> str:
    v6 = ":" in destination
    proto = "ip6" if v6 else "ip"
    cidrs = ", ".join(part.cidrs())
    return f"{proto} saddr {{ {cidrs} }} {proto} daddr {destination} tcp dport {port} accept"


def _rule_indent(lines: list[str], chain: Chain) -> str:
    for rule in chain.rules:
        if rule.origin.line is not None and rule.origin.line - 1 < len(lines):
            found = re.match(r"\s*", lines[rule.origin.line - 1])
            return found.group(0) if found else ""
    return ""


def _chain_end(lines: list[str], chain: Chain) -> int | None:
    """The line index of the closing brace of the chain block (rules are added before it)."""
    origin = chain.default_origin
    start = origin.line - 1 if origin is not None and origin.line is not None else None
    if start is None:
        rule_lines = [r.origin.line for r in chain.rules if r.origin.line is not None]
        if not rule_lines:
            return None
        start = max(rule_lines) - 1
    depth = 0
    # Walk back to the `chain NAME {` line, then forward to its closing brace.
    name = chain.name.split(" ", 2)[2]
    begin = start
    while begin >= 0 and not re.match(rf"\s*chain\s+{re.escape(name)}\s*\{{", lines[begin]):
        begin -= 1
    if begin < 0:
        return None
    for index in range(begin, len(lines)):
        depth += lines[index].count("{") - lines[index].count("}")
        if depth <= 0:
            return index
    return None


def _insert_rules_json(
    text: str, policy: Policy, evaluation: Evaluation, missing: IPSet
) -> tuple[str, list[str]]:
    document = json.loads(text)
    objects: list[Json] = document.get("nftables", [])
    commands: list[str] = []
    for decision in evaluation.decisions:
        if decision.action == Action.PERMIT:
            continue
        part = decision.sources & missing
        if not part:
            continue
        chain = policy.chains[decision.chain]
        family, table, name = decision.chain.split(" ", 2)
        destination = evaluation.destination if chain.pre_nat else evaluation.effective_destination
        port = evaluation.port if chain.pre_nat else _post_port(policy, evaluation)
        proto = "ip6" if ":" in destination else "ip"
        new_rule = {
            "rule": {
                "family": family,
                "table": table,
                "chain": name,
                "expr": [
                    {
                        "match": {
                            "op": "==",
                            "left": {"payload": {"protocol": proto, "field": "saddr"}},
                            "right": {"set": [_prefix_json(c) for c in part.cidrs()]},
                        }
                    },
                    {
                        "match": {
                            "op": "==",
                            "left": {"payload": {"protocol": proto, "field": "daddr"}},
                            "right": destination,
                        }
                    },
                    {
                        "match": {
                            "op": "==",
                            "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                            "right": port,
                        }
                    },
                    {"accept": None},
                ],
            }
        }
        rule_text = _accept_text(part, destination, port)
        position = len(objects)
        rule_positions = [
            i
            for i, o in enumerate(objects)
            if isinstance(o, dict)
            and isinstance(o.get("rule"), dict)
            and (o["rule"].get("family"), o["rule"].get("table"), o["rule"].get("chain"))
            == (family, table, name)
        ]
        if decision.implicit and _leaves(chain, part) and rule_positions:
            position = rule_positions[0]
            commands.append(f"nft insert rule {family} {table} {name} {rule_text}")
        elif not decision.implicit and decision.origin is not None:
            index = _nft_index(chain, decision.origin)
            if index is not None and index < len(rule_positions):
                position = rule_positions[index]
                commands.append(
                    f"nft insert rule {family} {table} {name} index {index} {rule_text}"
                )
            else:
                commands.append(f"nft add rule {family} {table} {name} {rule_text}")
        else:
            if rule_positions:
                position = rule_positions[-1] + 1
            commands.append(f"nft add rule {family} {table} {name} {rule_text}")
        objects.insert(position, new_rule)
    return json.dumps(document, indent=2) + "\n", commands


def _prefix_json(cidr: str) -> Json:
    addr, _, length = cidr.partition("/")
    return {"prefix": {"addr": addr, "len": int(length)}}
