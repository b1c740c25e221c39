"""The structure rule's shortcut (no shape trees when both JSON documents have one skeleton) gives
exactly the findings of the full shape diff: golden pairs, near misses, and a property test."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowd.core import compare as compare_module
from shadowd.core.compare import RouteRules, compare
from shadowd.core.results import SideResult, Usage
from shadowd.core.shape import same_skeleton
from tests.helpers import replaced


def _side(text: str) -> SideResult:
    return SideResult(model="m", ok=True, content=({"type": "text", "text": text},), stop_reason="end_turn",
                      usage=Usage(10, 10))


def _both_ways(before: Any, after: Any, rules: RouteRules) -> tuple[Any, Any]:
    baseline, candidate = _side(json.dumps(before)), _side(json.dumps(after))
    fast = compare(baseline, candidate, None, rules=rules)
    with replaced(compare_module, "same_skeleton", lambda one, two: False):  # always build and walk the trees
        slow = compare(baseline, candidate, None, rules=rules)
    return fast, slow


# (before, after, whether the shortcut applies)
CASES = [
    # golden: reformatted (other key order), and reworded (other values, other list lengths)
    ({"a": 1, "b": {"c": [1, 2], "d": "x"}}, {"b": {"d": "x", "c": [1, 2]}, "a": 1}, True),
    ({"a": 1, "items": [{"k": "x", "n": 1}]}, {"a": 2, "items": [{"k": "y", "n": 5}, {"k": "z", "n": 6}]}, True),
    ({"tags": ["a", "b", "c"]}, {"tags": ["d"]}, True),
    # near misses: equal in Python, other JSON types (true against 1, 1 against 1.0)
    ({"flag": True}, {"flag": 1}, False),
    ({"n": 1}, {"n": 1.0}, False),
    # same keys, an array of another length whose items differ in keys
    ({"items": [{"k": 1}]}, {"items": [{"k": 1}, {"k": 2, "extra": 3}]}, False),
    # an object against an array at the same pointer (key "0" and index 0)
    ({"v": {"0": 5}}, {"v": [5]}, False),
    # an empty array against a non-empty one, and a missing key
    ({"v": []}, {"v": [1]}, False),
    ({"a": 1, "b": 2}, {"a": 1}, False),
    # mixed item types: the shape trees are equal, but the shortcut leaves them to the full diff
    ({"v": [1, {"a": 1}]}, {"v": [{"a": 2}, 3]}, False),
]


@pytest.mark.parametrize(("before", "after", "applies"), CASES, ids=range(len(CASES)))
@pytest.mark.parametrize("rules", [RouteRules(), RouteRules(ignore_paths=("$.flag", "$.items[*].extra"))],
                         ids=["default", "ignore_paths"])
def test_shortcut_gives_the_findings_of_the_shape_diff(
    before: Any, after: Any, applies: bool, rules: RouteRules
) -> None:
    """Where the shortcut applies or steps aside, the findings are those of the full shape diff."""
    assert same_skeleton(before, after) is applies
    fast, slow = _both_ways(before, after, rules)
    assert fast.findings == slow.findings
    assert fast.status == slow.status


def test_near_miss_still_reports_the_type_change() -> None:
    """A boolean turned into a number is equal in Python, yet still a schema.type_changed finding."""
    fast, _ = _both_ways({"flag": True, "x": "a"}, {"flag": 1, "x": "a"}, RouteRules())
    assert [(f.code, f.path) for f in fast.findings] == [("schema.type_changed", "/flag")]


_KEYS = st.sampled_from(["a", "b", "0", "*", "x/y"])
_SCALARS = st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from([0.0, 1.5]) | st.sampled_from(["", "s"])
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(before=_JSON, after=_JSON)
def test_shortcut_matches_the_shape_diff_on_random_pairs(before: Any, after: Any) -> None:
    """On random documents (and each against itself) the shortcut never changes a finding."""
    rules = RouteRules(ignore_paths=("$.b",))
    for one, two in ((before, after), (before, before), (after, json.loads(json.dumps(after)))):
        if isinstance(one, dict | list) and isinstance(two, dict | list):
            fast, slow = _both_ways(one, two, rules)
            assert fast.findings == slow.findings
