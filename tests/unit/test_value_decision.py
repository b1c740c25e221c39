"""The value rule's one-pass decision (`reported_change`) agrees with is_prose, same_value and
comparable_kinds on every pair of scalars, including the near misses its fast path must step aside for;
its cached path rules (ignore_paths, value_paths) hold at every path length."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from shadowd.core.compare import RouteRules, compare
from shadowd.core.results import SideResult, Usage
from shadowd.core.values import MAX_COMPARED_STRING, comparable_kinds, is_prose, reported_change, same_value


class _Text(str):
    """A str subclass: not one of the plain types, so decided by the general rule."""


_NAN = float("nan")
SCALARS: list[Any] = [
    None, True, False, 0, 1, -1, 2**70, 0.0, -0.0, 1.0, 2.5, _NAN, float("nan"), float("inf"),
    "", "a", "1", "x" * MAX_COMPARED_STRING, "x" * (MAX_COMPARED_STRING + 1), "y" * (MAX_COMPARED_STRING + 1),
    _Text("a"), _Text("b" * (MAX_COMPARED_STRING + 1)), [1], {"a": 1},
]


def _slow(before: Any, after: Any, listed: bool) -> bool:
    if not listed and (is_prose(before) or is_prose(after)):
        return False
    return not same_value(before, after) and comparable_kinds(before, after)


@pytest.mark.parametrize("listed", [False, True])
def test_one_pass_decision_matches_the_rule_on_every_pair(listed: bool) -> None:
    """Every pair of sample scalars (and each with itself) gets the composed rule's answer."""
    for before, after in itertools.product(SCALARS, repeat=2):
        assert reported_change(before, after, listed) is _slow(before, after, listed), (before, after)


def test_near_misses_are_decided_as_json_values() -> None:
    """NaN equals NaN, true is not 1, 1 equals 1.0, and prose is compared only when listed."""
    assert not reported_change(_NAN, float("nan"), False)
    assert not reported_change(1, 1.0, False)
    assert not reported_change(True, 1, False)  # other JSON types: schema.type_changed's to report
    assert reported_change(None, 1, False)
    assert not reported_change("x" * 65, "y" * 65, False)
    assert reported_change("x" * 65, "y" * 65, True)
    assert reported_change("x" * 64, "y" * 64, False)


def _text_side(document: Any) -> SideResult:
    text = json.dumps(document)
    return SideResult(model="m", ok=True, content=({"type": "text", "text": text},), stop_reason="end_turn",
                      usage=Usage(10, 10))


@pytest.mark.parametrize("name", ["k", "k" * 300], ids=["short-path", "path-too-long-to-cache"])
def test_ignore_and_value_paths_apply_to_every_path_length(name: str) -> None:
    """ignore_paths and value_paths decide a value at a long path as at a short one (cached or not)."""
    before, after = _text_side({name: {"x": 1, "p": "a" * 80}}), _text_side({name: {"x": 2, "p": "b" * 80}})
    plain = compare(before, after, None, rules=RouteRules())
    assert [f.path for f in plain.findings] == [f"/{name}/x"]
    ignored = compare(before, after, None, rules=RouteRules(ignore_paths=(f"$.{name}.x",)))
    assert ignored.findings == ()
    listed = compare(before, after, None, rules=RouteRules(value_paths=(f"$.{name}.p",)))
    assert [f.path for f in listed.findings] == [f"/{name}/x", f"/{name}/p"]
