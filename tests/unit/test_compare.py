"""The comparator's rules (SPEC §3) as golden baseline/candidate pairs, plus its totality."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema.exceptions import best_match
from jsonschema.validators import Draft202012Validator, validator_for

from shadowd.core.compare import (
    COMPARATOR_VERSION,
    Comparison,
    RouteRules,
    compare,
    schema_problem,
)
from shadowd.core.findings import CODES, Code, Severity, Status
from shadowd.core.jsonextract import extract_json
from shadowd.core.jsonpath import ignore_path_pattern
from shadowd.core.markdown import markdown_signature
from shadowd.core.results import SideResult, Usage
from shadowd.core.schema import compile_schema
from tests.helpers import replaced

_ids = iter(range(1_000_000))


def tool_use(name: str, tool_input: Any = None) -> dict[str, Any]:
    """A tool_use block with a fresh id, as each real call has."""
    return {"type": "tool_use", "id": f"toolu_{next(_ids)}", "name": name, "input": tool_input or {}}


def side(
    text: str | Any = "",
    *calls: dict[str, Any],
    stop: str | None = "end_turn",
    out: int = 100,
) -> SideResult:
    """A successful side whose content is `text` (or a JSON value, dumped bare) then tool calls."""
    if not isinstance(text, str):
        text = json.dumps(text)
    content = ([{"type": "text", "text": text}] if text else []) + list(calls)
    stop = "tool_use" if calls and stop == "end_turn" else stop
    return SideResult(
        model="m", ok=True, content=tuple(content), stop_reason=stop, usage=Usage(output_tokens=out)
    )


def failed(error: str) -> SideResult:
    return SideResult(model="m", ok=False, error=error)


def fenced(value: Any, before: str = "", after: str = "") -> str:
    return f"{before}```json\n{json.dumps(value, indent=2)}\n```{after}"


ORDER = {"order_id": 7730, "status": "shipped", "items": [{"sku": "A1", "price": 9.5, "qty": 1}]}
ORDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["order_id", "status", "items"],
    "properties": {
        "order_id": {"type": "integer"},
        "status": {"type": "string"},
        "items": {"type": "array", "items": {"type": "object", "required": ["sku"]}},
    },
}
SEARCH_TOOLS = [
    {
        "name": "search",
        "description": "search the catalog",
        "input_schema": {
            "type": "object",
            "required": ["query"],
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
        },
    },
    {"name": "lookup", "input_schema": {"type": "object"}},
]
MARKDOWN = "# Summary\n\nThe order shipped.\n\n## Items\n\n- A1 x1\n- B2 x3\n"


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


@dataclass(frozen=True)
class Case:
    baseline: SideResult
    candidate: SideResult
    code: str
    raised: bool
    path: str | None = None  # when raised and set: the finding's JSON pointer
    rules: RouteRules = RouteRules()
    tools: list[dict[str, Any]] = field(default_factory=list)


CASES: dict[str, Case] = {
    # format.json_invalid
    "json_invalid/bare-to-prose": Case(
        side(ORDER), side("Sorry, I can't share that."), "format.json_invalid", True
    ),
    "json_invalid/fenced-to-prose": Case(
        side(fenced(ORDER)), side("It shipped."), "format.json_invalid", True
    ),
    "json_invalid/truncated-object": Case(
        side(ORDER),
        side('{"order_id": 7730, "items": [{"sku": "A1"},', stop="max_tokens"),
        "format.json_invalid",
        True,
    ),
    "json_invalid/not-when-baseline-prose": Case(
        side("It shipped."), side("Shipped!"), "format.json_invalid", False
    ),
    "json_invalid/not-when-wrapped": Case(
        side(ORDER), side(f"Here it is: {json.dumps(ORDER)}"), "format.json_invalid", False
    ),
    "json_invalid/not-for-citations": Case(
        side(f"As noted {json.dumps(ORDER)} here"), side("See [1] and [2]."), "format.json_invalid", False
    ),
    # format.json_wrapped
    "json_wrapped/bare-to-fenced": Case(side(ORDER), side(fenced(ORDER)), "format.json_wrapped", True),
    "json_wrapped/bare-to-prose": Case(
        side(ORDER),
        side(f"Sure! Here is the order:\n{json.dumps(ORDER)}\nAnything else?"),
        "format.json_wrapped",
        True,
    ),
    "json_wrapped/not-fenced-to-bare": Case(side(fenced(ORDER)), side(ORDER), "format.json_wrapped", False),
    "json_wrapped/not-whitespace": Case(
        side(ORDER), side("\n  " + json.dumps(ORDER, indent=2) + "\n"), "format.json_wrapped", False
    ),
    "json_wrapped/not-fenced-to-fenced-with-prose": Case(
        side(fenced(ORDER)), side(fenced(ORDER, "Here you go:\n", "\nDone.")), "format.json_wrapped", False
    ),
    # schema.key_missing
    "key_missing/top-level": Case(
        side(ORDER),
        side({k: v for k, v in ORDER.items() if k != "status"}),
        "schema.key_missing",
        True,
        "/status",
    ),
    "key_missing/in-list-item": Case(
        side(with_(ORDER, items=[{"sku": "A1", "price": 1}, {"sku": "B2", "price": 2}])),
        side(with_(ORDER, items=[{"sku": "A1"}, {"sku": "B2"}])),
        "schema.key_missing",
        True,
        "/items/0/price",
    ),
    "key_missing/topmost-only": Case(
        side({"a": {"b": {"c": 1}}, "z": 1}), side({"z": 1}), "schema.key_missing", True, "/a"
    ),
    "key_missing/not-list-length": Case(
        side(with_(ORDER, items=[{"sku": "A"}, {"sku": "B"}, {"sku": "C"}])),
        side(with_(ORDER, items=[{"sku": "A"}, {"sku": "B"}, {"sku": "C"}, {"sku": "D"}])),
        "schema.key_missing",
        False,
    ),
    "key_missing/not-when-ignored": Case(
        side(with_(ORDER, generated_at="2026-01-01")),
        side(ORDER),
        "schema.key_missing",
        False,
        rules=RouteRules(ignore_paths=("$.generated_at",)),
    ),
    "key_missing/not-under-changed-parent": Case(
        side({"address": {"city": "Oslo"}}), side({"address": "Oslo"}), "schema.key_missing", False
    ),
    "key_missing/not-for-values": Case(
        side(ORDER), side(with_(ORDER, status="lost")), "schema.key_missing", False
    ),
    # schema.key_added
    "key_added/top-level": Case(
        side(ORDER), side(with_(ORDER, note="fragile")), "schema.key_added", True, "/note"
    ),
    "key_added/in-list-item": Case(
        side(ORDER),
        side(with_(ORDER, items=[{"sku": "A1", "price": 9.5, "qty": 1, "id": 3}])),
        "schema.key_added",
        True,
        "/items/0/id",
    ),
    "key_added/not-when-ignored-wildcard": Case(
        side(ORDER),
        side(with_(ORDER, items=[{"sku": "A1", "price": 9.5, "qty": 1, "id": 3}])),
        "schema.key_added",
        False,
        rules=RouteRules(ignore_paths=("$.items[*].id",)),
    ),
    "key_added/not-fenced-same-keys": Case(side(ORDER), side(fenced(ORDER)), "schema.key_added", False),
    # schema.type_changed
    "type_changed/number-to-string": Case(
        side(ORDER), side(with_(ORDER, order_id="7730")), "schema.type_changed", True, "/order_id"
    ),
    "type_changed/first-candidate-occurrence": Case(
        side(with_(ORDER, items=[{"price": 1}, {"price": 2}])),
        side(with_(ORDER, items=[{"price": "1"}, {"price": "2"}])),
        "schema.type_changed",
        True,
        "/items/0/price",
    ),
    "type_changed/object-to-array-root": Case(side(ORDER), side([ORDER]), "schema.type_changed", True, ""),
    "type_changed/not-for-values": Case(
        side(ORDER), side(with_(ORDER, order_id=7731)), "schema.type_changed", False
    ),
    "type_changed/not-int-to-float": Case(
        side(with_(ORDER, total=10)), side(with_(ORDER, total=10.5)), "schema.type_changed", False
    ),
    "type_changed/not-null-to-value": Case(
        side(with_(ORDER, discount=None)), side(with_(ORDER, discount=5)), "schema.type_changed", False
    ),
    "type_changed/not-when-ignored-by-index": Case(
        side(ORDER),
        side(with_(ORDER, items=[{"sku": "A1", "price": "9.50", "qty": 1}])),
        "schema.type_changed",
        False,
        rules=RouteRules(ignore_paths=("$.items[0].price",)),
    ),
    # schema.violation
    "violation/wrong-type": Case(
        side(ORDER),
        side(with_(ORDER, order_id="7730")),
        "schema.violation",
        True,
        "/order_id",
        rules=RouteRules(output_schema=ORDER_SCHEMA),
    ),
    "violation/no-json": Case(
        side(ORDER),
        side("It shipped."),
        "schema.violation",
        True,
        rules=RouteRules(output_schema=ORDER_SCHEMA),
    ),
    "violation/wrapped-json-still-checked": Case(
        side(ORDER),
        side(f"Here: {json.dumps(with_(ORDER, items=[{'price': 1}]))}"),
        "schema.violation",
        True,
        "/items/0",
        rules=RouteRules(output_schema=ORDER_SCHEMA),
    ),
    "violation/not-when-valid": Case(
        side(ORDER),
        side(with_(ORDER, order_id=1, note="extra")),
        "schema.violation",
        False,
        rules=RouteRules(output_schema=ORDER_SCHEMA),
    ),
    "violation/not-with-broken-schema": Case(
        side(ORDER), side("prose"), "schema.violation", False, rules=RouteRules(output_schema={"type": 12})
    ),
    # tool.call_missing / tool.call_unexpected / tool.name_changed / tool.count_changed
    "call_missing/raised": Case(side("", tool_use("search")), side("No need."), "tool.call_missing", True),
    "call_missing/not-both-call": Case(
        side("", tool_use("search")), side("", tool_use("search")), "tool.call_missing", False
    ),
    "call_unexpected/raised": Case(side("Done."), side("", tool_use("search")), "tool.call_unexpected", True),
    "call_unexpected/not-neither-calls": Case(side("Done."), side("Done!"), "tool.call_unexpected", False),
    "name_changed/raised": Case(
        side("", tool_use("search"), tool_use("lookup")),
        side("", tool_use("search"), tool_use("search")),
        "tool.name_changed",
        True,
    ),
    "name_changed/not-ids-or-inputs": Case(
        side("", tool_use("search", {"query": "a"})),
        side("", tool_use("search", {"query": "b"})),
        "tool.name_changed",
        False,
    ),
    "name_changed/not-different-count": Case(
        side("", tool_use("search")),
        side("", tool_use("lookup"), tool_use("lookup")),
        "tool.name_changed",
        False,
    ),
    "count_changed/raised": Case(
        side("", tool_use("search")),
        side("", tool_use("search"), tool_use("search")),
        Code.TOOL_COUNT_CHANGED,
        True,
    ),
    "call_unexpected/extra-name-next-to-the-same-call": Case(
        side("", tool_use("get_weather")),
        side("", tool_use("get_weather"), tool_use("get_forecast")),
        "tool.call_unexpected",
        True,
    ),
    "call_missing/dropped-name-next-to-the-same-call": Case(
        side("", tool_use("get_weather"), tool_use("get_forecast")),
        side("", tool_use("get_weather")),
        "tool.call_missing",
        True,
    ),
    "call_unexpected/not-same-multiset-in-another-order": Case(
        side("", tool_use("get_weather"), tool_use("get_forecast")),
        side("", tool_use("get_forecast"), tool_use("get_weather")),
        "tool.call_unexpected",
        False,
    ),
    "call_missing/not-one-call-repeated": Case(
        side("", tool_use("get_weather")),
        side("", tool_use("get_weather"), tool_use("get_weather")),
        "tool.call_missing",
        False,
    ),
    "count_changed/not-same-count": Case(
        side("", tool_use("search")), side("", tool_use("lookup")), Code.TOOL_COUNT_CHANGED, False
    ),
    # tool.input_invalid
    "input_invalid/schema": Case(
        side("", tool_use("search", {"query": "a"})),
        side("Let me look.", tool_use("search", {"query": 7})),
        "tool.input_invalid",
        True,
        "/content/1/input/query",
        tools=SEARCH_TOOLS,
    ),
    "input_invalid/unknown-tool": Case(
        side("", tool_use("search", {"query": "a"})),
        side("", tool_use("delete_account")),
        "tool.input_invalid",
        True,
        "/content/0/name",
        tools=SEARCH_TOOLS,
    ),
    "input_invalid/not-when-valid": Case(
        side("", tool_use("search", {"query": "a"})),
        side("", tool_use("search", {"query": "b", "limit": 3})),
        "tool.input_invalid",
        False,
        tools=SEARCH_TOOLS,
    ),
    "input_invalid/not-without-tool-definitions": Case(
        side("", tool_use("search", {"query": "a"})),
        side("", tool_use("search", {"query": 7})),
        "tool.input_invalid",
        False,
    ),
    "input_invalid/not-with-broken-input-schema": Case(
        side("", tool_use("search", {"query": "a"})),
        side("", tool_use("search", {"query": 7})),
        "tool.input_invalid",
        False,
        tools=[{"name": "search", "input_schema": {"type": "no-such-type"}}],
    ),
    # stop.truncated / stop.refusal
    "truncated/max_tokens": Case(
        side("Long answer"), side("Long ans", stop="max_tokens"), "stop.truncated", True
    ),
    "truncated/context-window": Case(
        side("Answer"), side("Ans", stop="model_context_window_exceeded"), "stop.truncated", True
    ),
    "truncated/not-both-max_tokens": Case(
        side("Long answer", stop="max_tokens"), side("Long ans", stop="max_tokens"), "stop.truncated", False
    ),
    "refusal/raised": Case(side("Here it is."), side("I can't help.", stop="refusal"), "stop.refusal", True),
    "refusal/not-both-refuse": Case(
        side("No.", stop="refusal"), side("I can't.", stop="refusal"), "stop.refusal", False
    ),
    # style.markdown_drift
    "markdown_drift/structure-lost": Case(
        side(MARKDOWN), side("The order shipped with A1 and B2."), "style.markdown_drift", True
    ),
    "markdown_drift/table-added": Case(
        side(MARKDOWN),
        side(MARKDOWN + "\n| sku | qty |\n|---|---|\n| A1 | 1 |\n"),
        "style.markdown_drift",
        True,
    ),
    "markdown_drift/not-same-structure": Case(
        side(MARKDOWN), side(MARKDOWN.replace("shipped", "left the warehouse")), "style.markdown_drift", False
    ),
    "markdown_drift/not-hash-in-code": Case(
        side("Run:\n\n```sh\nls\n```\n"),
        side("Run:\n\n```sh\n# list\nls\n```\n"),
        "style.markdown_drift",
        False,
    ),
    "markdown_drift/not-when-baseline-json": Case(side(ORDER), side(MARKDOWN), "style.markdown_drift", False),
    # length.drift
    "length_drift/longer": Case(side("a", out=100), side("b", out=250), "length.drift", True),
    "length_drift/shorter": Case(side("a", out=100), side("b", out=40), "length.drift", True),
    "length_drift/not-1.9x": Case(side("a", out=100), side("b", out=190), "length.drift", False),
    "length_drift/not-0.5x": Case(side("a", out=100), side("b", out=50), "length.drift", False),
    "length_drift/not-without-baseline-count": Case(
        side("a", out=0), side("b", out=500), "length.drift", False
    ),
    # value.changed
    "value_changed/label": Case(
        side(with_(ORDER, status="shipped")), side(with_(ORDER, status="cancelled")), "value.changed", True, "/status"
    ),
    "value_changed/array-item-number": Case(
        side(ORDER),
        side(with_(ORDER, items=[{"sku": "A1", "price": 19.5, "qty": 1}])),
        "value.changed",
        True,
        "/items/0/price",
    ),
    "value_changed/tool-argument": Case(
        side("", tool_use("search", {"query": "desk", "limit": 5})),
        side("Looking.", tool_use("search", {"query": "desk", "limit": 50})),
        "value.changed",
        True,
        "/content/1/input/limit",
    ),
    "value_changed/not-same-number-as-float": Case(
        side(with_(ORDER, order_id=7730)), side(with_(ORDER, order_id=7730.0)), "value.changed", False
    ),
    "value_changed/not-prose": Case(
        side({"summary": "The customer says the desk arrived with a cracked panel and wants it replaced."}),
        side({"summary": "A customer reports a cracked panel on the standing desk; they ask for a new one."}),
        "value.changed",
        False,
    ),
    "value_changed/not-ignored-path": Case(
        side({"generated_at": "2026-11-30T10:00:00Z"}),
        side({"generated_at": "2026-11-30T10:00:07Z"}),
        "value.changed",
        False,
        rules=RouteRules(ignore_paths=("$.generated_at",)),
    ),
    "value_changed/not-type-change": Case(
        side(with_(ORDER, order_id=7730)), side(with_(ORDER, order_id="7730")), "value.changed", False
    ),
    # error.candidate
    "error_candidate/raised": Case(
        side("a"), failed("529 overloaded after 5 attempts"), "error.candidate", True
    ),
    "error_candidate/not-when-ok": Case(side("a"), side("a"), "error.candidate", False),
}


def test_every_code_has_a_raising_and_a_near_miss_case() -> None:
    """The golden table covers every finding code both ways."""
    # quality.unacceptable comes from the judge, not the comparator: its golden pairs are in test_judge.py.
    codes = (set(CODES) | {Code.TOOL_COUNT_CHANGED}) - {"quality.unacceptable"}
    assert {case.code for case in CASES.values() if case.raised} == codes
    assert {case.code for case in CASES.values() if not case.raised} == codes


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_golden_pair(case: Case) -> None:
    """Each golden pair raises its code (at its path) exactly when the rule says it must."""
    result = compare(case.baseline, case.candidate, rules=case.rules, tools=case.tools)
    matching = [finding for finding in result.findings if finding.code == case.code]
    assert bool(matching) == case.raised, result.findings
    if case.raised:
        assert matching[0].severity == CODES.get(case.code, Severity.MINOR)
        assert matching[0].detail
        if case.path is not None:
            assert matching[0].path == case.path
    assert result.comparator_version == COMPARATOR_VERSION


def test_key_missing_reports_only_the_topmost_path() -> None:
    """A missing subtree is one finding at its root, not one per descendant."""
    result = compare(side({"a": {"b": {"c": 1, "d": [{"e": 1}]}}}), side({}))
    assert [(f.code, f.path) for f in result.findings] == [("schema.key_missing", "/a")]


def test_count_changed_is_minor_and_passes() -> None:
    """One extra call of the same tool is a minor finding, so the verdict still passes."""
    result = compare(side("", tool_use("search")), side("", tool_use("search"), tool_use("search")))
    assert result.status is Status.PASS
    assert [(f.code, f.severity) for f in result.findings] == [(Code.TOOL_COUNT_CHANGED, Severity.MINOR)]


# --- statuses ----------------------------------------------------------------------------------


def test_baseline_failure_is_an_error_without_findings() -> None:
    """No fair comparison without a baseline: status error, the reason names the failure."""
    result = compare(failed("timeout after 3 attempts"), side(ORDER))
    assert result.status is Status.ERROR
    assert result.reason == "baseline failed: timeout after 3 attempts"
    assert result.findings == ()


def test_candidate_failure_is_a_regression() -> None:
    """A candidate that fails while the baseline succeeds is a critical error.candidate regression."""
    result = compare(side(ORDER), failed("500 internal error"))
    assert result.status is Status.REGRESSION
    assert [f.code for f in result.findings] == ["error.candidate"]
    assert "500 internal error" in result.findings[0].detail


def test_minor_findings_alone_pass() -> None:
    """Minor findings that are not noise leave the verdict a pass, with the findings kept."""
    result = compare(side(ORDER, out=100), side(with_(ORDER, note="x"), out=300))
    assert result.status is Status.PASS
    assert {f.code for f in result.findings} == {"schema.key_added", "length.drift"}


def test_major_finding_is_a_regression() -> None:
    """A major finding the baseline does not show against itself makes a regression."""
    result = compare(side(ORDER), side(with_(ORDER, order_id="7730")), baseline_repeat=side(ORDER))
    assert result.status is Status.REGRESSION
    assert result.baseline_noise_blocking is False


def test_identical_outputs_pass_without_findings() -> None:
    """Equal text and tool calls (ids aside) give a clean pass."""
    result = compare(
        side(ORDER, tool_use("search", {"query": "a"})),
        side(ORDER, tool_use("search", {"query": "a"})),
        baseline_repeat=side(ORDER, tool_use("search", {"query": "a"})),
        rules=RouteRules(output_schema=ORDER_SCHEMA),
        tools=SEARCH_TOOLS,
    )
    assert (result.status, result.findings, result.baseline_noise_blocking) == (Status.PASS, (), False)


def test_findings_the_baseline_repeat_shows_are_noise() -> None:
    """A difference the baseline also shows against its own replay is noise, not a regression."""
    base = side(with_(ORDER, items=[{"sku": "A", "price": 1}, {"sku": "B", "price": 2}]))
    repeat = side(with_(ORDER, items=[{"sku": "A"}, {"sku": "B", "price": "2.00"}]))
    candidate = side(with_(ORDER, items=[{"sku": "A", "price": "1.00"}]))
    result = compare(base, candidate, baseline_repeat=repeat)
    assert result.status is Status.NOISE
    # The repeat's change is at /items/1/price, the candidate's at /items/0/price: same field.
    assert [(f.code, f.path, f.noise) for f in result.findings] == [
        ("schema.type_changed", "/items/0/price", True)
    ]
    assert result.baseline_noise_blocking is True


def test_noise_matches_code_and_path_only() -> None:
    """Noise on one path does not excuse the same code on another path."""
    base = side({"a": 1, "b": 2})
    result = compare(base, side({"b": 2}), baseline_repeat=side({"a": 1}))
    assert result.status is Status.REGRESSION
    assert [(f.path, f.noise) for f in result.findings] == [("/a", False)]


def test_failed_baseline_repeat_gives_no_noise_information() -> None:
    """When the noise replay failed, nothing is excused and the noise flag stays off."""
    result = compare(side(ORDER), side(with_(ORDER, order_id="1")), baseline_repeat=failed("timeout"))
    assert result.status is Status.REGRESSION
    assert result.baseline_noise_blocking is False


def test_schema_violation_the_baseline_shares_is_noise() -> None:
    """A schema violation the baseline also commits is pre-existing: noise, not the candidate's fault."""
    rules = RouteRules(output_schema=ORDER_SCHEMA)
    reordered = dict(reversed(list(with_(ORDER, order_id="1").items())))  # same values, other text
    result = compare(side(with_(ORDER, order_id="1")), side(reordered), rules=rules)
    assert result.status is Status.NOISE
    assert [(f.code, f.noise) for f in result.findings] == [("schema.violation", True)]


def test_identical_outputs_sharing_a_violation_match_the_slow_path() -> None:
    """The equal-output shortcut marks a shared violation noise, exactly as the full diff would."""
    rules = RouteRules(output_schema=ORDER_SCHEMA)
    bad = with_(ORDER, order_id="1")
    fast = compare(side(bad), side(bad), rules=rules)
    slow = compare(side(bad), side(bad, stop="stop_sequence"), rules=rules)
    assert fast.status is slow.status is Status.NOISE
    assert fast.findings == slow.findings


def test_tool_input_invalid_the_baseline_shares_is_noise() -> None:
    """A candidate call invalid the same way the baseline's call to that tool was is noise."""
    result = compare(
        side("", tool_use("search", {"query": 1})),
        side("Searching.", tool_use("search", {"query": 1})),
        tools=SEARCH_TOOLS,
    )
    assert [(f.code, f.noise) for f in result.findings] == [("tool.input_invalid", True)]
    assert result.status is Status.NOISE


def test_repeat_violation_sets_baseline_noise_blocking() -> None:
    """A baseline that breaks its own schema on replay counts toward the baseline noise rate."""
    rules = RouteRules(output_schema=ORDER_SCHEMA)
    result = compare(side(ORDER), side(ORDER), baseline_repeat=side("oops"), rules=rules)
    assert result.baseline_noise_blocking is True
    assert result.status is Status.PASS


def test_broken_schemas_are_noted_not_raised() -> None:
    """An invalid output_schema or input_schema skips its check and leaves a note for operators."""
    result = compare(
        side(ORDER, tool_use("search", {"query": "a"})),
        side(with_(ORDER, order_id="1"), tool_use("search", {"query": 1})),
        rules=RouteRules(output_schema={"type": 12}),
        tools=[{"name": "search", "input_schema": {"required": "query"}}],
    )
    assert {f.code for f in result.findings} == {"schema.type_changed"}
    assert any("output_schema" in note for note in result.notes)
    assert any("search" in note for note in result.notes)
    assert schema_problem({"type": 12}) is not None
    assert schema_problem(ORDER_SCHEMA) is None


def test_unresolvable_ref_is_noted_not_raised() -> None:
    """A schema whose $ref cannot be resolved is skipped (no network fetch), never a crash."""
    rules = RouteRules(output_schema={"$ref": "https://example.invalid/schema.json"})
    result = compare(side(ORDER), side(ORDER, stop="stop_sequence"), rules=rules)
    assert result.status is Status.PASS
    assert result.notes


# --- extraction, ignore paths and markdown, directly -------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('{"a": 1}', "bare"),
        ("  [1, 2]\n", "bare"),
        ('```json\n{"a": 1}\n```', "fenced"),
        ('Here:\n```\n{"a": 1}\n```\nBye.', "fenced"),
        ('Result: {"a": {"b": [1]}} as asked', "embedded"),
        ('Two blocks:\n```json\n{"a": 1}\n```\nand\n```json\n{"b": 2}\n```', "embedded"),
        ("See [1], [2] and [ ] here.", None),
        ('{"a": [{"b": 1}, {"c":', None),
        ('"just a string"', None),
        ("", None),
    ],
)
def test_extract_json_kinds(text: str, kind: str | None) -> None:
    """Text is classified as bare, fenced, embedded or no JSON, ignoring citation-like brackets."""
    extracted = extract_json(text)
    assert (extracted.kind if extracted else None) == kind


@pytest.mark.parametrize(
    ("expr", "pattern"),
    [
        ("$.generated_at", "/generated_at(?:/|$)"),
        ("$.items[*].id", "/items/[^/]+/id(?:/|$)"),
        ("$.a.b[0]", r"/a/b/\*(?:/|$)"),
        ("$['x y']", r"/x\ y(?:/|$)"),
        ("$.a[", None),
        ("$..", None),
    ],
)
def test_ignore_path_patterns(expr: str, pattern: str | None) -> None:
    """JSONPath-like ignore entries become shape-key patterns; malformed ones are rejected."""
    assert ignore_path_pattern(expr) == pattern


def test_recursive_ignore_path_suppresses_at_any_depth() -> None:
    """`$..id` ignores an `id` key wherever it appears."""
    result = compare(
        side({"a": {"b": [{"id": 1}]}}),
        side({"a": {"b": [{}]}, "id": 2}),
        rules=RouteRules(ignore_paths=("$..id",)),
    )
    assert result.findings == ()


def test_markdown_signature_reads_structure() -> None:
    """The signature sees heading levels, lists, tables and fences, not the words."""
    signature = markdown_signature(
        "Title\n=====\n\n## Part\n\n1. one\n2. two\n\n* bullet\n\n| a | b |\n| - | - |\n\n```\n# no\n```\n"
    )
    assert signature.heading_levels == frozenset({1, 2})
    assert (signature.ordered_list, signature.bullet_list, signature.table, signature.code_fence) == (
        True,
        True,
        True,
        True,
    )


# --- totality ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
texts = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    json_values.map(lambda value: f"Sure:\n```json\n{json.dumps(value)}\n```"),
    json_values.map(lambda value: f"Here {json.dumps(value)} and [1]"),
    st.sampled_from(["# H\n- a\n| x |\n|---|\n```", "```json\n{", "{[}]", "[" * 50, '\\"{']),
)
blocks = st.one_of(
    st.builds(lambda text: {"type": "text", "text": text}, texts),
    st.builds(
        lambda name, tool_input: {"type": "tool_use", "id": "t", "name": name, "input": tool_input},
        st.sampled_from(["search", "lookup", "other"]) | json_values,
        json_values,
    ),
    st.dictionaries(st.sampled_from(["type", "text", "name", "input"]), json_values, max_size=4),
    json_values,
)
schemas = st.one_of(
    st.none(),
    json_values,
    st.just(ORDER_SCHEMA),
    st.just({"$ref": "#/definitions/missing"}),
    st.just({"$schema": ["not", "a", "uri"]}),
    st.dictionaries(
        st.sampled_from(["type", "required", "properties", "items", "minimum", "pattern", "$ref"]),
        json_values,
        max_size=3,
    ),
)
sides = st.builds(
    SideResult,
    model=st.text(max_size=5),
    ok=st.booleans(),
    content=st.lists(blocks, max_size=4).map(tuple),
    stop_reason=st.one_of(
        st.none(), st.sampled_from(["end_turn", "max_tokens", "refusal", "tool_use"]), json_values
    ),
    usage=st.builds(Usage, output_tokens=st.one_of(st.integers(-10, 10**7), st.floats(), json_values)),
    error=st.one_of(st.none(), st.text(max_size=20)),
)
tool_lists = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["search", "lookup"]) | json_values, "input_schema": schemas}
        ),
        json_values,
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    baseline=sides,
    candidate=sides,
    repeat=st.none() | sides,
    output_schema=schemas,
    ignore_paths=st.lists(st.text(max_size=12) | st.sampled_from(["$.a", "$..b", "$[*]", "$"]), max_size=3),
    tools=tool_lists,
)
def test_compare_never_raises(
    baseline: SideResult,
    candidate: SideResult,
    repeat: SideResult | None,
    output_schema: Any,
    ignore_paths: list[str],
    tools: list[Any],
) -> None:
    """compare() returns a verdict for any content, stop reason, usage and schema, without a fault."""
    result = compare(
        baseline,
        candidate,
        baseline_repeat=repeat,
        rules=RouteRules(output_schema=output_schema, ignore_paths=tuple(ignore_paths)),
        tools=tools,
    )
    assert isinstance(result, Comparison)
    assert result.status in (Status.PASS, Status.REGRESSION, Status.NOISE, Status.ERROR)
    assert not (result.reason or "").startswith("comparator fault"), result.reason
    assert (result.status is Status.ERROR) == (not baseline.ok)


@settings(max_examples=200, deadline=None)
@given(output=sides, output_schema=schemas, tools=tool_lists)
def test_equal_outputs_are_never_a_regression(
    output: SideResult, output_schema: Any, tools: list[Any]
) -> None:
    """Whatever a baseline says, a candidate saying exactly the same is not a regression."""
    ok = SideResult(
        model="m", ok=True, content=output.content, stop_reason=output.stop_reason, usage=output.usage
    )
    result = compare(ok, ok, rules=RouteRules(output_schema=output_schema), tools=tools)
    assert result.status in (Status.PASS, Status.NOISE)


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, "[" * 5_000 + "]" * 5_000, '{"a":' * 3_000 + "1" + "}" * 3_000, "{" * 50_000 + "x"],
    ids=["unclosed", "deep-array", "deep-object", "unclosed-object"],
)
def test_pathological_nesting_is_handled(text: str) -> None:
    """Deeply nested or unclosed brackets neither crash nor fault the comparator."""
    rules = RouteRules(output_schema={"type": "object"})
    result = compare(side(ORDER), side(text), baseline_repeat=side(ORDER), rules=rules)
    assert not (result.reason or "").startswith("comparator fault"), result.reason
    assert result.status is Status.REGRESSION


@pytest.mark.parametrize(
    ("baseline", "candidate"),
    [(None, None), ({"ok": True}, 42), ("text", side("a"))],
    ids=["none", "dict-and-int", "str"],
)
def test_non_side_inputs_are_an_error_verdict(baseline: Any, candidate: Any) -> None:
    """Inputs that are not SideResults give an error verdict rather than an exception."""
    result = compare(baseline, candidate, baseline_repeat=42, rules="nope", tools=7)  # type: ignore[arg-type]
    assert result.status is Status.ERROR


# --- the fast schema check (jsonschema-rs) agrees with jsonschema --------------------------------

KEYS = st.sampled_from(["a", "b", "c", "d"])
# Strings where Python's and Rust's regex dialects differ, a lone surrogate, big integers.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-3, 3)
    | st.sampled_from([0.3, 19.99, 2**64 + 1, 10**30])
    | st.sampled_from(["", "a", "ab1", "y", "a\n", "\ufeff", " ", "é", "١٢", "\ud800"])
)
instances = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=10,
)
# What a model's JSON may also hold once parsed (NaN, Infinity, 1e999): never in a schema (not JSON), so
# only in the instances.
NON_FINITE = st.sampled_from([float("nan"), float("inf"), float("-inf")])
TYPE_NAMES = ["null", "boolean", "integer", "number", "string", "array", "object"]
leaf_schemas = st.one_of(
    st.booleans(),
    st.builds(lambda t: {"type": t}, st.sampled_from(TYPE_NAMES)),
    st.builds(
        lambda t: {"type": t}, st.lists(st.sampled_from(TYPE_NAMES), min_size=1, max_size=3, unique=True)
    ),
    st.builds(lambda v: {"enum": v}, st.lists(scalars | instances, min_size=1, max_size=3)),
    st.builds(lambda v: {"const": v}, instances),
    st.builds(
        lambda k, v: {k: v},
        st.sampled_from(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]),
        st.integers(-2, 2) | st.floats(-2, 2),
    ),
    st.builds(
        lambda k, v: {k: v},
        st.sampled_from(["minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"]),
        st.integers(0, 3),
    ),
    st.builds(
        lambda p: {"pattern": p},
        st.sampled_from(["^a", "1$", "[0-9]", "x|y", r"^a$", r"^\s*$", r"^\w+$", r"^\d+$", r"\bé"]),
    ),
    st.builds(lambda v: {"multipleOf": v}, st.sampled_from([0.01, 0.1, 2, 3])),
    st.builds(lambda n: {"minimum": n}, st.sampled_from([2**64, 10**30])),
    st.just({"format": "date-time"}),
    st.just({"uniqueItems": False}),
    st.just({"title": "annotation only", "x-vendor": 1}),
)
subset_schemas = st.recursive(
    leaf_schemas,
    lambda inner: st.one_of(
        st.builds(
            lambda props, required, extra: {
                "properties": props,
                **({"required": required} if required else {}),
                **({"additionalProperties": extra} if extra is not None else {}),
            },
            st.dictionaries(KEYS, inner, max_size=3),
            st.lists(KEYS, max_size=2, unique=True),
            st.none() | inner,
        ),
        st.builds(lambda item: {"type": "array", "items": item}, inner),
        st.builds(lambda parts: {"allOf": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda parts: {"anyOf": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda parts: {"oneOf": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda part: {"not": part}, inner),
        st.builds(lambda parts: {"prefixItems": parts}, st.lists(inner, min_size=1, max_size=2)),
        st.builds(lambda item: {"propertyNames": item}, inner),
        st.builds(lambda item: {"patternProperties": {"^a": item}}, inner),
        st.builds(lambda cond, then: {"if": cond, "then": then}, inner, inner),
        st.builds(
            lambda one, two: {**one, **two} if isinstance(one, dict) and isinstance(two, dict) else one,
            inner,
            inner,
        ),
    ),
    max_leaves=8,
)


# $ref resolves against the root, so referenced definitions live there.
rooted_schemas = subset_schemas | st.builds(
    lambda target: {"$defs": {"t": target}, "$ref": "#/$defs/t"}, subset_schemas
)


@settings(max_examples=600, deadline=None)
@given(schema=rooted_schemas, instance=instances)
def test_fast_schema_check_never_passes_what_jsonschema_fails(schema: Any, instance: Any) -> None:
    """The compiled schema's answer is jsonschema's, with or without the jsonschema-rs check."""
    compiled = compile_schema(schema)
    assert not isinstance(compiled, str), compiled
    plain = _plain_validator(schema)
    assert compiled.is_valid(instance) == plain.is_valid(instance)
    assert compiled.validator.is_valid(instance) == plain.is_valid(instance)
    assert (compiled.first_error(instance) is None) == plain.is_valid(instance)


def _plain_validator(schema: Any) -> Any:
    """jsonschema's own validator for `schema` as compile_schema reads it (keys sorted), walking every value."""
    canonical = json.loads(json.dumps(schema, sort_keys=True))
    return validator_for(canonical, default=Draft202012Validator)(canonical)


def _named(error: Any) -> Any:
    if error is None:
        return None
    return list(error.absolute_path), error.message, error.validator, list(error.absolute_schema_path)


@settings(max_examples=600, deadline=None)
@given(schema=rooted_schemas, instance=instances)
def test_the_error_named_is_the_one_jsonschema_names_walking_everything(schema: Any, instance: Any) -> None:
    """first_error skips children that jsonschema-rs passes against their subschema; the error it names
    (pointer, message, keyword, schema path) is the one best_match picks from all of jsonschema's errors."""
    compiled = compile_schema(schema)
    assert not isinstance(compiled, str), compiled
    assert _named(compiled.first_error(instance)) == _named(best_match(_plain_validator(schema).iter_errors(instance)))


non_finite_instances = st.recursive(
    NON_FINITE | scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3), max_leaves=4
).filter(lambda value: "nan" in repr(value) or "inf" in repr(value))


@settings(max_examples=600, deadline=None)
@given(schema=rooted_schemas, instance=non_finite_instances)
def test_nan_and_infinity_get_jsonschemas_verdict_and_error(schema: Any, instance: Any) -> None:
    """NaN and ±Infinity (json.loads reads them in a model's answer) are numbers to jsonschema and of no
    type to jsonschema-rs: the fast check and the skipping must not pass what jsonschema fails."""
    compiled = compile_schema(schema)
    assert not isinstance(compiled, str), compiled
    plain = _plain_validator(schema)
    try:
        valid, named = plain.is_valid(instance), _named(best_match(plain.iter_errors(instance)))
    except (ValueError, OverflowError):  # jsonschema's multipleOf cannot divide NaN or Infinity: the
        with pytest.raises((ValueError, OverflowError)):  # comparator notes "could not validate"
            compiled.first_error(instance)
        return
    assert compiled.is_valid(instance) == valid
    assert _named(compiled.first_error(instance)) == named


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"maximum": 1}, float("inf")),
        ({"properties": {"score": {"minimum": 0}}}, {"score": float("-inf")}),
        ({"not": {"type": "number"}}, float("nan")),
        ({"oneOf": [{"minLength": 1}, {"type": "number"}]}, float("nan")),
        ({"if": {"type": "number"}, "then": {"minimum": 5, "type": "number"}}, float("inf")),
        ({"items": {"exclusiveMaximum": 2}}, [1, float("inf")]),
    ],
    ids=["maximum", "nested-minimum", "not", "oneOf", "if", "items"],
)
def test_a_non_finite_number_is_judged_by_jsonschema(schema: dict[str, Any], instance: Any) -> None:
    compiled = compile_schema(schema)
    assert not isinstance(compiled, str)
    plain = _plain_validator(schema)
    assert compiled.is_valid(instance) == plain.is_valid(instance)
    assert _named(compiled.first_error(instance)) == _named(best_match(plain.iter_errors(instance)))


def test_a_range_beside_its_type_keeps_the_plain_fast_check() -> None:
    """Near miss: with `type` beside every range keyword jsonschema-rs fails NaN and Infinity itself, so
    the check is jsonschema-rs's own, with no walk over the document first."""
    compiled = compile_schema({"properties": {"score": {"type": "number", "maximum": 1}}})
    assert not isinstance(compiled, str) and compiled.certainly_valid is not None
    assert getattr(compiled.certainly_valid, "__self__", None) is not None  # a bound jsonschema-rs method
    assert compiled.is_valid({"score": float("inf")}) is False
    assert compiled.is_valid({"score": 0.5}) is True


DRAFTS = ["http://json-schema.org/draft-04/schema#", "http://json-schema.org/draft-07/schema#",
          "https://json-schema.org/draft/2019-09/schema"]
legacy_schemas = st.recursive(
    leaf_schemas,
    lambda inner: st.one_of(
        st.builds(lambda props, extra: {"properties": props, "additionalProperties": extra},
                  st.dictionaries(KEYS, inner, max_size=3), inner),
        st.builds(lambda item: {"items": item}, inner),  # one schema for every item
        st.builds(lambda parts, extra: {"items": parts, "additionalItems": extra},  # a schema per position
                  st.lists(inner, min_size=1, max_size=2), inner),
        st.builds(lambda parts: {"anyOf": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda parts: {"oneOf": parts}, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(draft=st.sampled_from(DRAFTS), schema=legacy_schemas, instance=instances)
def test_the_error_named_is_jsonschemas_in_the_older_drafts(draft: str, schema: Any, instance: Any) -> None:
    """The same, where `items` may be a list of schemas with `additionalItems` (drafts 4 to 2019-09)."""
    if not isinstance(schema, dict):
        schema = {"allOf": [schema]}
    schema = {"$schema": draft, **schema}
    compiled = compile_schema(schema)
    if isinstance(compiled, str):
        return  # a combination that draft's meta-schema rejects (draft 4's boolean exclusiveMinimum)
    assert _named(compiled.first_error(instance)) == _named(best_match(_plain_validator(schema).iter_errors(instance)))


ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "items", "meta"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^T-[0-9]+$"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku", "qty"],
                "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
            },
        },
        "meta": {"type": "object", "properties": {"tags": {"type": "array", "items": {"enum": ["a", "b"]}}}},
        "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}], "items": False},
    },
}
GOOD_ANSWER: dict[str, Any] = {
    "id": "T-1",
    "items": [{"sku": f"S{i}", "qty": i + 1} for i in range(40)],
    "meta": {"tags": ["a", "b", "a"]},
    "pair": ["x", 1.5],
}


@pytest.mark.parametrize(
    "broken",
    [
        {"items": [*GOOD_ANSWER["items"][:39], {"sku": "S39", "qty": 0}]},  # one deep value among many valid
        {"items": [*GOOD_ANSWER["items"][:20], {"qty": 2}, *GOOD_ANSWER["items"][21:]]},  # a required key
        {"meta": {"tags": ["a", "c"]}, "id": "X-1"},  # two errors at different depths: the shallower wins
        {"pair": ["x", "y", 3]},  # prefixItems and items: false
        {"extra": 1},  # additionalProperties: false, at the root
        {"id": "T-\ud800"},  # a string jsonschema-rs cannot take is walked by jsonschema
    ],
    ids=["deep-value", "required", "two-depths", "prefix-items", "additional", "lone-surrogate"],
)
def test_a_realistic_answer_names_the_same_error_and_skips_what_is_valid(broken: dict[str, Any]) -> None:
    from shadowd.core import schema as schema_module

    instance = json.loads(json.dumps({**GOOD_ANSWER, **broken}))
    compiled = compile_schema(ANSWER_SCHEMA)
    assert not isinstance(compiled, str) and compiled.certainly_valid is not None
    skipped: list[Any] = []
    passes = schema_module._SubschemaChecks.passes

    def counting(self: Any, value: Any, subschema: Any) -> bool:
        result = passes(self, value, subschema)
        if result:
            skipped.append(value)
        return result

    with replaced(schema_module._SubschemaChecks, "passes", counting):
        named = _named(compiled.first_error(instance))
    assert named is not None
    assert named == _named(best_match(_plain_validator(ANSWER_SCHEMA).iter_errors(instance)))
    assert skipped, "no valid child was skipped"


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        (ORDER_SCHEMA, ORDER),
        (SEARCH_TOOLS[0]["input_schema"], {"query": "a", "limit": 3}),
        (
            {
                "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
                "$ref": "#/$defs/node",
            },
            {"next": {"next": {}}},
        ),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, 3),
        ({"prefixItems": [{"type": "string"}]}, ["a", 1]),
        ({"$schema": "http://json-schema.org/draft-07/schema#", "type": "string"}, "a"),
        ({"properties": {"a": {"$id": "https://example.invalid/a", "type": "string"}}}, {"a": "x"}),
        ({"properties": {"id": {"type": "string", "pattern": "^[A-Z]-[0-9]+$"}}}, {"id": "T-12"}),
    ],
    ids=["order", "tool-input", "recursive-ref", "oneOf", "prefixItems", "draft-07", "nested-id", "pattern"],
)
def test_fast_schema_check_decides_common_valid_documents(schema: dict[str, Any], instance: Any) -> None:
    """Common schemas compile to the jsonschema-rs check and pass valid documents without jsonschema."""
    compiled = compile_schema(schema)
    assert not isinstance(compiled, str)
    assert compiled.certainly_valid is not None
    assert compiled.certainly_valid(instance) is True


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "https://example.invalid/s.json"},
        {"properties": {"amount": {"type": "number", "multipleOf": 0.01}}},
        {"patternProperties": {"^x-": {"type": "string"}}},
        {"$schema": "http://json-schema.org/draft-03/schema#", "type": "string"},
    ],
    ids=["remote-ref", "multipleOf", "patternProperties", "draft-03"],
)
def test_schemas_outside_the_fast_subset_use_jsonschema_alone(schema: dict[str, Any]) -> None:
    """A schema where jsonschema-rs could answer otherwise than jsonschema is left wholly to jsonschema."""
    compiled = compile_schema(schema)
    assert not isinstance(compiled, str)
    assert compiled.certainly_valid is None


PATTERN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"note": {"type": "string", "pattern": r"^\s*$"}, "amount": {"multipleOf": 0.01}},
}


@pytest.mark.parametrize(
    ("candidate", "violates"),
    [
        ({"note": "\ufeff"}, True),  # Python's \s does not match U+FEFF; Rust's regex does
        ({"note": " \t"}, False),  # near miss: whitespace both dialects agree on
        ({"amount": 19.99}, True),  # 19.99 / 0.01 is not whole in floats: jsonschema's verdict
        ({"amount": 0.5}, False),  # near miss
    ],
    ids=["bom-not-whitespace", "whitespace", "float-multiple", "exact-multiple"],
)
def test_schema_violation_is_jsonschemas_where_the_libraries_differ(candidate: Any, violates: bool) -> None:
    """schema.violation follows jsonschema (Python's regex, its float arithmetic) even where jsonschema-rs differs."""
    result = compare(side({"note": ""}), side(candidate), rules=RouteRules(output_schema=PATTERN_SCHEMA))
    codes = [finding.code for finding in result.findings]
    assert ("schema.violation" in codes) is violates, result.findings


def test_subschema_checks_stay_bounded_over_many_schemas() -> None:
    """Tool schemas arrive with requests: the subschema checks kept in all schemas together stay under the
    bound, and a schema whose checks were dropped still names jsonschema's error."""
    from shadowd.core import schema as schema_module

    schemas = [
        {"type": "object", "properties": {f"k{i}": {"type": "integer", "minimum": i}, "list": {"items": {"type": "string"}}}}
        for i in range(40)
    ]
    with replaced(schema_module, "_MAX_SUBSCHEMA_CHECKS", 25):
        for _ in range(2):
            for index, schema in enumerate(schemas):
                instance = {f"k{index}": index - 1, "list": ["a", "b"]}
                compiled = compile_schema(schema)
                assert not isinstance(compiled, str)
                expected = _named(best_match(_plain_validator(schema).iter_errors(instance)))
                assert _named(compiled.first_error(instance)) == expected
                kept = sum(checks.kept() for checks in list(schema_module._all_checks))
                assert kept <= 25


@pytest.mark.parametrize(("answer", "violates"), [('{"score": Infinity}', True), ('{"score": 0.9}', False)],
                         ids=["infinity-over-maximum", "near-miss-within"])
def test_an_infinite_score_over_an_untyped_maximum_is_a_schema_violation(answer: str, violates: bool) -> None:
    """json.loads reads `Infinity` in a model's answer; jsonschema-rs alone would pass it under a bare
    `maximum` (it has no JSON type there), jsonschema does not."""
    rules = RouteRules(output_schema={"type": "object", "properties": {"score": {"maximum": 1}}})
    result = compare(side('{"score": 0.5}'), side(answer), rules=rules)
    codes = [finding.code for finding in result.findings]
    assert ("schema.violation" in codes) is violates, result.findings
