"""How many records may be in flight at once, from the model-call budget and the rollouts."""

from __future__ import annotations

from collections.abc import Iterable

from shadowd.core.rollout import RolloutSpec


def calls_per_record(rollouts: Iterable[RolloutSpec]) -> int:
    """Model calls one envelope can cost when every rollout takes it (baselines are shared).

    Each rollout replays its candidate; each distinct baseline is replayed once when its source is
    `replay`, and once more when it is noise-checked.
    """
    rollouts = list(rollouts)
    baselines = {(r.baseline, r.baseline_source, r.noise_check > 0) for r in rollouts}
    calls = len(rollouts) + sum((source == "replay") + noise_check for _, source, noise_check in baselines)
    return max(1, calls)


def records_in_flight(max_concurrency: int, calls: int) -> int:
    """Records replayed at once so that all their model calls fit in `max_concurrency`; at least one."""
    return max(1, max_concurrency // max(1, calls))


def max_unstored(in_flight: int) -> int:
    """Records fetched but not yet stored (replayed, verdicts on their way): what a crash can re-replay."""
    return 2 * in_flight
