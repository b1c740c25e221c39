"""The figures one gate evaluation decided on, typed (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GateFigures:
    """The figures one gate evaluation decided on (the decision's `figures` on the wire, in this order)."""

    candidate_regression_rate: float | None
    candidate_regression_rate_low: float
    candidate_regression_rate_high: float
    baseline_noise_rate: float | None
    baseline_noise_rate_low: float
    baseline_noise_rate_high: float
    rate_increase: float
    rate_increase_lower: float
    rate_increase_upper: float
    max_regression_rate_increase: float
    confidence: float
    gate_version: str
    stage_index: int
    stage_percent: int
    samples: int
    stage_samples: int
    min_samples: int
    errors: int
    candidate_regressions: int
    baseline_noise_regressions: int
    both_regressed: int
    latency_p95_baseline_ms: float | None
    latency_p95_candidate_ms: float | None
    latency_p95_ratio: float | None
    max_latency_p95_ratio: float
    latency_judged: bool
    cost_usd_baseline: float
    cost_usd_candidate: float
    cost_ratio: float | None
    max_cost_ratio: float
    judged: int
    graded: int
    graded_share: float | None
    baseline_acceptable_rate: float | None
    baseline_acceptable_low: float
    baseline_acceptable_high: float
    candidate_acceptable_rate: float | None
    candidate_acceptable_low: float
    candidate_acceptable_high: float
    quality_candidate_worse: int
    quality_candidate_better: int
    judge_failed_streak: int
    # The stage the decision leaves the rollout at (the next one on promote) and its canary share.
    next_stage_index: int
    canary_percent: int

    def to_wire(self) -> dict[str, float | int | str | None]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}
