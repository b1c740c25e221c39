"""value.changed and the learned noise model (SPEC §8): golden pairs, each with its near miss."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shadowd.core.compare import RouteRules, compare
from shadowd.core.findings import Status
from shadowd.core.noise import NoiseModel, NoiseObservation, noise_checked
from shadowd.core.results import SideResult, Usage
from shadowd.core.values import json_path, scalar_leaves, shown

TICKET = {"category": "billing", "priority": 2, "summary": "Charged twice", "refund": 19.99}


def side(value: Any = None, *calls: dict[str, Any]) -> SideResult:
    content: list[dict[str, Any]] = []
    if value is not None:
        content.append({"type": "text", "text": value if isinstance(value, str) else json.dumps(value)})
    content.extend(calls)
    return SideResult(model="m", ok=True, content=tuple(content), stop_reason="end_turn",
                      usage=Usage(output_tokens=50))


def call(name: str, tool_input: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{name}", "name": name, "input": tool_input}


def ticket(**changes: Any) -> dict[str, Any]:
    return {**TICKET, **changes}


def value_findings(result: Any) -> list[tuple[str | None, bool]]:
    return [(f.path, f.noise) for f in result.findings if f.code == "value.changed"]


def learned(threshold: float = 0.05, **paths: tuple[int, int]) -> NoiseModel:
    model = NoiseModel(threshold=threshold, requests=max((n for _, n in paths.values()), default=0))
    model.paths = {key.replace("__", "."): [differed, n] for key, (differed, n) in paths.items()}
    return model


def test_stable_field_changed_is_a_regression() -> None:
    """A label that the baseline's second replay repeats exactly, changed by the candidate: value.changed."""
    result = compare(side(ticket()), side(ticket(category="shipping")), side(ticket()))
    assert result.status is Status.REGRESSION
    assert value_findings(result) == [("/category", False)]
    detail = next(f.detail for f in result.findings if f.code == "value.changed")
    assert "'billing'" in detail and "'shipping'" in detail and "$.category" in detail


def test_field_the_baseline_changes_on_its_second_replay_is_noise() -> None:
    """Near miss: the same change where the baseline's second replay also differs there is noise."""
    result = compare(side(ticket()), side(ticket(category="shipping")), side(ticket(category="account")))
    assert result.status is Status.NOISE
    assert value_findings(result) == [("/category", True)]


def test_learned_noisy_path_is_noise_without_a_second_replay() -> None:
    """A path whose learned rate is at or above the threshold is noise on a request not noise-checked."""
    noisy = learned(**{"$__summary": (12, 100)})
    result = compare(side(ticket()), side(ticket(summary="Double charge")), noise=noisy)
    assert result.status is Status.NOISE
    [finding] = result.findings
    assert finding.noise and "12.0% of 100" in finding.detail


def test_learned_rate_under_the_threshold_is_still_a_regression() -> None:
    """Near miss: a rate just under the threshold leaves the path stable, so the change counts."""
    quiet = learned(**{"$__summary": (4, 100)})
    result = compare(side(ticket()), side(ticket(summary="Double charge")), noise=quiet)
    assert result.status is Status.REGRESSION
    assert value_findings(result) == [("/summary", False)]


def test_learned_noise_on_one_path_leaves_the_others_stable() -> None:
    """A noisy summary does not excuse a changed category on the same request."""
    noisy = learned(**{"$__summary": (50, 100)})
    result = compare(side(ticket()), side(ticket(summary="x", category="shipping")), noise=noisy)
    assert result.status is Status.REGRESSION
    assert sorted(value_findings(result)) == [("/category", False), ("/summary", True)]


def test_long_prose_is_not_compared() -> None:
    """A string over 64 characters is prose: rewording it is not a value change."""
    long_a, long_b = "a" * 65, "b" * 65
    result = compare(side(ticket(summary=long_a)), side(ticket(summary=long_b)))
    assert value_findings(result) == []
    assert result.status is Status.PASS


def test_a_64_character_string_is_compared() -> None:
    """Near miss: at exactly 64 characters a string is still a value."""
    result = compare(side(ticket(summary="a" * 64)), side(ticket(summary="b" * 64)))
    assert value_findings(result) == [("/summary", False)]


def test_value_paths_compare_prose_and_noisy_paths_regardless() -> None:
    """A path listed in value_paths is compared exactly, even prose, even where the baseline varies."""
    rules = RouteRules(value_paths=("$.summary", "$.category"))
    prose = compare(side(ticket(summary="a" * 90)), side(ticket(summary="b" * 90)), rules=rules)
    assert value_findings(prose) == [("/summary", False)]
    varying = compare(
        side(ticket()), side(ticket(category="shipping")), side(ticket(category="account")), rules=rules,
        noise=learned(**{"$__category": (90, 100)}),
    )
    assert varying.status is Status.REGRESSION and value_findings(varying) == [("/category", False)]
    unlisted = compare(side(ticket(summary="a" * 90)), side(ticket(summary="b" * 90)),
                       rules=RouteRules(value_paths=("$.category",)))
    assert value_findings(unlisted) == []


def test_tool_argument_changed_is_a_regression() -> None:
    """get_weather with unit fahrenheit where the baseline always sends celsius is value.changed."""
    before = side("Checking.", call("get_weather", {"city": "Oslo", "unit": "celsius"}))
    after = side("Checking.", call("get_weather", {"city": "Oslo", "unit": "fahrenheit"}))
    result = compare(before, after, before)
    assert result.status is Status.REGRESSION
    assert value_findings(result) == [("/content/1/input/unit", False)]


def test_tool_arguments_pair_by_name_not_by_position() -> None:
    """Calls are paired by tool name and occurrence: reordering calls changes no value."""
    weather, forecast = call("get_weather", {"unit": "celsius"}), call("get_forecast", {"days": 3})
    result = compare(side(None, weather, forecast), side(None, forecast, weather))
    assert result.findings == ()


def test_extra_tool_call_is_a_regression() -> None:
    """The candidate calling a tool the baseline did not, next to the same call, is major."""
    weather = call("get_weather", {"unit": "celsius"})
    result = compare(side(None, weather), side(None, weather, call("get_forecast", {"days": 3})))
    assert result.status is Status.REGRESSION
    assert [f.code for f in result.findings] == ["tool.call_unexpected"]
    assert "get_forecast" in result.findings[0].detail


def test_dropped_tool_call_is_a_regression() -> None:
    """The candidate not calling a tool the baseline called, next to the same call, is major."""
    weather = call("get_weather", {"unit": "celsius"})
    result = compare(side(None, weather, call("get_forecast", {"days": 3})), side(None, weather))
    assert result.status is Status.REGRESSION
    assert [f.code for f in result.findings] == ["tool.call_missing"]


def test_ignore_paths_apply_to_values() -> None:
    """An ignored path's value never counts, in the text and in tool inputs."""
    rules = RouteRules(ignore_paths=("$.refund", "$.request_id"))
    result = compare(
        side(ticket(), call("refund", {"request_id": "r-1", "amount": 5})),
        side(ticket(refund=0), call("refund", {"request_id": "r-2", "amount": 5})),
        rules=rules,
    )
    assert result.findings == ()


def test_observation_records_which_paths_the_second_replay_changed() -> None:
    """A noise-checked comparison reports every compared path and whether the baseline varied there."""
    result = compare(side(ticket()), side(ticket()), side(ticket(summary="Billed twice")))
    assert result.observation is not None
    assert dict(result.observation.paths) == {
        "$.category": False, "$.priority": False, "$.summary": True, "$.refund": False,
    }
    assert compare(side(ticket()), side(ticket())).observation is None


def test_baseline_value_drift_counts_as_blocking_noise_for_the_gate() -> None:
    """A stable value that moves on the baseline's own replay counts as its blocking noise; a
    learned-noisy one does not, exactly as the candidate is judged."""
    moved = compare(side(ticket()), side(ticket()), side(ticket(priority=3)))
    assert moved.baseline_noise_blocking is True
    learned_noisy = compare(side(ticket()), side(ticket()), side(ticket(priority=3)),
                            noise=learned(**{"$__priority": (30, 100)}))
    assert learned_noisy.baseline_noise_blocking is False


def test_learned_noisy_code_is_noise() -> None:
    """A finding code the baseline shows against itself at or above the threshold is noise; under it, not."""
    noisy = NoiseModel(threshold=0.05, requests=100, codes={"schema.key_missing": 8})
    result = compare(side(ticket()), side({k: v for k, v in TICKET.items() if k != "refund"}), noise=noisy)
    assert result.status is Status.NOISE
    assert "8.0% of 100" in result.findings[0].detail
    quiet = NoiseModel(threshold=0.05, requests=100, codes={"schema.key_missing": 4})
    result = compare(side(ticket()), side({k: v for k, v in TICKET.items() if k != "refund"}), noise=quiet)
    assert result.status is Status.REGRESSION


def test_null_to_value_is_a_change_but_a_type_change_is_not_doubled() -> None:
    """null → "x" is value.changed; 7 → "7" is schema.type_changed alone."""
    nulled = compare(side(ticket(category=None)), side(ticket(category="billing")))
    assert value_findings(nulled) == [("/category", False)]
    retyped = compare(side(ticket(priority=2)), side(ticket(priority="2")))
    assert [f.code for f in retyped.findings] == ["schema.type_changed"]


@pytest.mark.parametrize(
    "hostile",
    ["\x00nul", "\ud800lone", "[bold]x[/]", float("nan"), 10**400, -0.0, True, None, "é" * 64],
)
def test_hostile_values_never_raise(hostile: Any) -> None:
    """NUL bytes, lone surrogates, markup, NaN and huge numbers compare without raising."""
    before = SideResult(model="m", ok=True, content=({"type": "tool_use", "id": "a", "name": "t",
                                                     "input": {"v": hostile, "w": [hostile]}},))
    after = SideResult(model="m", ok=True, content=({"type": "tool_use", "id": "b", "name": "t",
                                                    "input": {"v": "other", "w": [hostile]}},))
    result = compare(before, after, before)
    assert result.status in (Status.REGRESSION, Status.PASS)
    for finding in result.findings:
        finding.detail.encode("utf-8")


def test_nan_equals_nan() -> None:
    """NaN on both sides (json.loads accepts it) is the same value, not a change."""
    assert compare(side('{"x": NaN, "y": 1}'), side('{"y": 1, "x": NaN}')).findings == ()


def test_paths_render_as_json_path() -> None:
    """Noise keys read like the value_paths a user writes: $.a[*].b, $['odd key']."""
    assert json_path(("items", None, "price")) == "$.items[*].price"
    assert json_path(("odd key", "it's")) == "$['odd key']['it\\'s']"
    leaves = scalar_leaves({"items": [{"p": 1}, {"p": 2}]}, "/content/0/input", "tool:t:")
    assert [leaf.key for leaf in leaves.values()] == ["tool:t:$.items[*].p"] * 2
    assert [leaf.pointer for leaf in leaves.values()] == ["/content/0/input/items/0/p", "/content/0/input/items/1/p"]
    assert shown("x" * 100).endswith("...") and len(shown("x" * 100)) == 60


def test_noise_check_fraction_is_deterministic_and_proportional() -> None:
    """noise_check 0.25 picks about a quarter of requests, the same ones every time; 1 all, 0 none."""
    picked = [noise_checked("r", f"req-{i}", 0.25) for i in range(4000)]
    assert 0.22 < sum(picked) / len(picked) < 0.28
    assert picked == [noise_checked("r", f"req-{i}", 0.25) for i in range(4000)]
    assert all(noise_checked("r", f"req-{i}", 1.0) for i in range(100))
    assert not any(noise_checked("r", f"req-{i}", 0.0) for i in range(100))


def test_noise_model_accumulates_observations() -> None:
    """Observations add up to per-path rates and per-code rates over noise-checked requests."""
    model = NoiseModel(threshold=0.05)
    for index in range(20):
        model.add(NoiseObservation(paths=(("$.summary", index % 2 == 0), ("$.category", False)),
                                   codes=("style.markdown_drift",) if index == 0 else ()))
    assert model.noisy_path("$.summary") is not None and model.noisy_path("$.category") is None
    assert model.code_rate("style.markdown_drift") is not None
    assert model.noisy_code("style.markdown_drift") is not None  # 1 of 20 = 5%
    assert model.code_rate("value.changed") is None
