"""The value rule's shortcut (leave out parts equal on both sides) gives exactly the findings of pairing
every leaf: golden pairs, near misses where the shortcut must step aside, and a property test."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowd.core import compare as compare_module
from shadowd.core.compare import RouteRules, compare
from shadowd.core.results import SideResult, Usage
from tests.helpers import replaced


def _side(text: str, calls: tuple[dict[str, Any], ...] = ()) -> SideResult:
    content = ({"type": "text", "text": text}, *calls)
    return SideResult(model="m", ok=True, content=content, stop_reason="end_turn", usage=Usage(10, 10))


def _call(name: str, value: Any, index: int = 1) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{index}", "name": name, "input": value}


def _both_ways(baseline: SideResult, candidate: SideResult, rules: RouteRules) -> tuple[Any, Any]:
    fast = compare(baseline, candidate, None, rules=rules)
    with replaced(compare_module, "_changed_value_pairs", lambda base, other: None):  # every leaf, as values() pairs
        exhaustive = compare(baseline, candidate, None, rules=rules)
    return fast, exhaustive


CASES = [
    # golden: one value moved among many equal ones
    ({"a": 1, "b": {"c": [1, 2, 3], "d": "x"}}, {"a": 1, "b": {"c": [1, 5, 3], "d": "x"}}),
    # reformatted: same values, other key order
    ({"a": 1, "b": [True, None]}, {"b": [True, None], "a": 1}),
    # JSON types Python calls equal: true against 1, 1 against 1.0, 0.0 against -0.0
    ({"flag": True, "n": 1, "z": 0.0}, {"flag": 1, "n": 1.0, "z": -0.0}),
    # NaN is never equal to itself in Python, but is the same JSON value
    ({"x": float("nan"), "y": 2}, {"x": float("nan"), "y": 3}),
    # null against a number, a number against a string
    ({"x": None, "y": 2}, {"x": 4, "y": "2"}),
    # near miss: an object with key "0" against an array at the same pointer (/v/0)
    ({"v": {"0": 5, "1": 6}}, {"v": [7, 6]}),
    # a scalar against a container at one pointer
    ({"v": 5, "w": [1]}, {"v": {"a": 5}, "w": 1}),
    # keys with characters a pointer escapes
    ({"a/b": 1, "c~d": 2, "*": 3}, {"a/b": 9, "c~d": 2, "*": 4}),
    # a key too long for the cache of path parts, with characters a pointer escapes
    ({"k/~" * 30: 1, "a": {"k/~" * 30: [1]}}, {"k/~" * 30: 3, "a": {"k/~" * 30: [2]}}),
    # prose (long strings) and a listed path
    ({"summary": "x" * 80, "code": "A1"}, {"summary": "y" * 80, "code": "B2"}),
]


@pytest.mark.parametrize(("before", "after"), CASES, ids=range(len(CASES)))
@pytest.mark.parametrize("rules", [RouteRules(), RouteRules(ignore_paths=("$.y",), value_paths=("$.summary",))],
                         ids=["default", "ignore+value_paths"])
def test_shortcut_gives_the_findings_of_every_leaf(before: Any, after: Any, rules: RouteRules) -> None:
    baseline = _side(json.dumps(before), (_call("tool", before),))
    candidate = _side(json.dumps(after), (_call("tool", after),))
    fast, exhaustive = _both_ways(baseline, candidate, rules)
    assert fast.findings == exhaustive.findings
    assert fast.status == exhaustive.status


def test_a_changed_value_is_found_next_to_equal_ones() -> None:
    before = {"items": [{"id": i, "price": 10} for i in range(50)]}
    after = {"items": [{"id": i, "price": 10 if i != 37 else 12} for i in range(50)]}
    fast, exhaustive = _both_ways(_side(json.dumps(before)), _side(json.dumps(after)), RouteRules())
    assert [(f.code, f.path) for f in fast.findings] == [("value.changed", "/items/37/price")]
    assert fast.findings == exhaustive.findings


def test_a_document_too_long_for_the_shortcut_takes_every_leaf() -> None:
    # Over 2 x MAX_LEAVES characters the leaf cap of scalar_leaves may apply: the shortcut steps aside.
    before = {"values": list(range(6000)), "last": 1}
    after = {"values": list(range(6000)), "last": 2}
    baseline, candidate = compare_module._Output(_side(json.dumps(before))), compare_module._Output(_side(json.dumps(after)))
    assert compare_module._changed_value_pairs(baseline, candidate) is None
    fast, exhaustive = _both_ways(_side(json.dumps(before)), _side(json.dumps(after)), RouteRules())
    assert fast.findings == exhaustive.findings


_KEYS = st.sampled_from(["a", "b", "0", "1", "*", "x/y", "n~m", "price", "summary"])
_SCALARS = (
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, -0.0, 1.0, 2.5, float("nan")])
    | st.sampled_from(["", "a", "b", "x" * 70, "y" * 70])
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(before=_JSON, after=_JSON, as_tool=st.booleans())
def test_shortcut_matches_every_leaf_on_random_pairs(before: Any, after: Any, as_tool: bool) -> None:
    rules = RouteRules(ignore_paths=("$.b",), value_paths=("$.summary",))
    if as_tool:
        baseline, candidate = _side("done", (_call("t", before),)), _side("done", (_call("t", after, 2),))
    else:
        baseline, candidate = _side(json.dumps(before)), _side(json.dumps(after))
    fast, exhaustive = _both_ways(baseline, candidate, rules)
    assert fast.findings == exhaustive.findings


def test_path_rules_are_remembered_per_pattern_pair_and_stay_bounded() -> None:
    """A route's (ignores, lists) answer per shape key is the patterns' own, read from a memo shared by the
    comparisons of that pair of patterns; the memos are bounded however many routes and paths come."""
    import re

    from shadowd.core.compare import _Context, _path_rules

    context = _Context(RouteRules(ignore_paths=("$.meta",), value_paths=("$.items[*].price",)), ())
    for key in ("/meta", "/meta/at", "/items/*/price", "/items/*/name", "/other"):
        assert context.value_rules(key) == _path_rules(context.ignored, context.listed, key)
        assert context.value_rules(key) == _path_rules(context.ignored, context.listed, key)  # from the memo
    again = _Context(RouteRules(ignore_paths=("$.meta",), value_paths=("$.items[*].price",)), ())
    assert again._rules is context._rules  # the same compiled patterns: one memo
    long_key = "/" + "k" * 300
    assert context.value_rules(long_key) == (False, False) and long_key not in context._rules
    for n in range(2 * compare_module._MAX_RULE_MEMOS):
        compare_module._rules_for(re.compile(f"x{n}"), None)
    assert len(compare_module._rule_memos) <= compare_module._MAX_RULE_MEMOS


@pytest.mark.parametrize("noise", [False, True])
def test_a_value_finding_is_the_finding_the_dataclass_builds(noise: bool) -> None:
    """value_finding sets the frozen dataclass's fields itself: the object must be the one Finding(...) makes."""
    import dataclasses

    from shadowd.core.compare import value_finding
    from shadowd.core.findings import CODES, Code, Finding

    fast = value_finding("$.a: baseline 1, candidate 2", "/a", noise=noise)
    built = Finding(Code.VALUE_CHANGED, CODES[Code.VALUE_CHANGED], "$.a: baseline 1, candidate 2", "/a", noise)
    assert type(fast) is Finding
    assert fast == built and hash(fast) == hash(built) and repr(fast) == repr(built)
    assert fast.to_dict() == built.to_dict() and fast.blocking is built.blocking is (not noise)
    assert dataclasses.replace(fast, noise=True) == dataclasses.replace(built, noise=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.detail = "changed"  # type: ignore[misc]
