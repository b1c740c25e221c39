"""The records-in-flight budget: how many records are replayed at once for a model-call budget."""

from __future__ import annotations

import pytest

from shadowd.core.in_flight import calls_per_record, max_unstored, records_in_flight
from shadowd.core.rollout import RolloutSpec


def _rollout(name: str, baseline: str, source: str = "replay", noise_check: float = 1.0) -> RolloutSpec:
    return RolloutSpec(name=name, baseline=baseline, candidate=f"{name}-candidate", routes=("*",),
                       baseline_source=source, noise_check=noise_check)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rollouts", "calls"),
    [
        ([], 1),  # no rollout still costs a record its place
        ([_rollout("a", "base")], 3),  # candidate, baseline, baseline again for noise
        ([_rollout("a", "base", noise_check=0.0)], 2),
        ([_rollout("a", "base", source="recorded", noise_check=0.0)], 1),  # the recorded answer is free
        ([_rollout("a", "base", source="recorded")], 2),  # but its noise check replays it
        ([_rollout("a", "base"), _rollout("b", "base")], 4),  # a shared baseline is replayed once
        ([_rollout("a", "base"), _rollout("b", "other")], 6),
    ],
)
def test_calls_per_record_counts_candidates_and_shared_baselines(rollouts: list[RolloutSpec], calls: int) -> None:
    """A record costs one call per candidate plus one (or two, with the noise check) per distinct baseline."""
    assert calls_per_record(rollouts) == calls


@pytest.mark.parametrize(
    ("max_concurrency", "calls", "expected"),
    [(64, 4, 16), (64, 3, 21), (2, 4, 1), (1, 1, 1), (0, 3, 1), (10, 0, 10)],
)
def test_records_in_flight_fit_the_model_call_budget(max_concurrency: int, calls: int, expected: int) -> None:
    """Records in flight × calls per record never exceed the call budget, and at least one record always moves."""
    assert records_in_flight(max_concurrency, calls) == expected


def test_unstored_records_are_bounded_at_twice_the_replays() -> None:
    """Replayed records waiting for the store hold memory only, so they get twice the replay bound."""
    assert max_unstored(16) == 32
