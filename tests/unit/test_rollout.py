"""Rollout matching, deterministic sampling and the hourly spend window."""

from __future__ import annotations

from shadowd.core.envelope import Envelope
from shadowd.core.rollout import RolloutSpec, SpendWindow


def env(route: str = "support-summary", model: str = "claude-opus-4-6", request_id: str = "r") -> Envelope:
    return Envelope(request_id=request_id, request={"model": model, "max_tokens": 1, "messages": []}, route=route)


def test_rollout_applies_by_baseline_model_and_route_glob() -> None:
    """A rollout takes envelopes whose model is its baseline and whose route matches a pattern."""
    spec = RolloutSpec(name="r", baseline="claude-opus-4-6", candidate="claude-opus-4-7", routes=("support-*",))
    assert spec.applies_to(env())
    assert not spec.applies_to(env(route="chat"))
    assert not spec.applies_to(env(model="claude-sonnet-4-6"))


def test_sampling_is_deterministic_and_near_the_rate() -> None:
    """The same request always gets the same sampling answer, and the share sampled is near sample_rate."""
    spec = RolloutSpec(name="r", baseline="a", candidate="b", sample_rate=0.25)
    answers = [spec.sampled_in(f"req-{i}") for i in range(4000)]
    assert answers == [spec.sampled_in(f"req-{i}") for i in range(4000)]
    assert 0.22 < sum(answers) / len(answers) < 0.28
    assert all(RolloutSpec(name="r", baseline="a", candidate="b").sampled_in(f"x{i}") for i in range(50))


def test_spend_window_forgets_spend_older_than_an_hour() -> None:
    """Spend counts for one hour from when it happened."""
    window = SpendWindow()
    window.add(0.0, 10.0)
    window.add(1800.0, 5.0)
    assert window.spent(1800.0) == 15.0
    assert window.spent(3600.5) == 5.0
    assert window.spent(5400.5) == 0.0


def test_calls_per_record_counts_shared_baselines_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two rollouts on one replayed baseline with noise checks cost 2 + 2 calls, a recorded one costs 1."""
    from shadowd.config import Settings, load_config
    from shadowd.pipeline import ShadowPipeline

    path = tmp_path / "c.yaml"
    path.write_text(
        "rollouts:\n"
        "  - {name: a, baseline: claude-opus-4-6, candidate: claude-opus-4-7}\n"
        "  - {name: b, baseline: claude-opus-4-6, candidate: claude-sonnet-4-6}\n"
    )
    assert ShadowPipeline(load_config(path, Settings()), None, None).max_calls_per_record() == 4  # type: ignore[arg-type]
    path.write_text(
        "rollouts:\n"
        "  - {name: a, baseline: claude-opus-4-6, candidate: claude-opus-4-7, baseline_source: recorded,"
        " noise_check: false}\n"
    )
    assert ShadowPipeline(load_config(path, Settings()), None, None).max_calls_per_record() == 1  # type: ignore[arg-type]
