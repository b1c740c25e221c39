"""The canary gate: from the evidence so far, promote, hold, roll back or complete a rollout (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shadowd.core.gate_figures import GateFigures
from shadowd.core.stats import PairedCounts, sequential_bounds, wilson_interval

Decision = Literal["promote", "hold", "rollback", "complete"]
RolloutPhase = Literal["active", "paused", "rolled_back", "complete"]

# Bump whenever a rule of the gate changes: every decision carries it in its figures.
# 2026.11.2: the anytime-valid lower bound rolls back at any sample size; min_samples guards
# promotion and the latency and cost ratios only (SPEC §9).
GATE_VERSION = "2026.11.2"

# The mSPRT is tuned to resolve effects of the size of the tolerance; a zero tolerance still needs a
# positive mixing scale, and half a percentage point is the smallest effect worth tuning for.
_MIN_MIXING_SCALE = 0.005
# Consecutive failed gradings after which a judged rollout says its judge is silent and holds promotion.
JUDGE_SILENT_AFTER = 20


@dataclass(frozen=True, slots=True)
class GateConfig:
    min_samples: int = 200
    max_regression_rate_increase: float = 0.01
    confidence: float = 0.95
    max_latency_p95_ratio: float = 1.5
    max_cost_ratio: float = 2.0
    # False when every call of the rollout is batched (`replay_mode: batch`, no route forcing live): a batch
    # side's wait is the batch's, so latency is not judged. Otherwise it is judged on the live calls alone.
    latency_judged: bool = True

    def __post_init__(self) -> None:
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {self.min_samples}")
        if not 0.0 <= self.max_regression_rate_increase <= 1.0:
            raise ValueError(
                f"max_regression_rate_increase must be in [0, 1], got {self.max_regression_rate_increase}"
            )
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.max_latency_p95_ratio <= 0 or self.max_cost_ratio <= 0:
            raise ValueError("max_latency_p95_ratio and max_cost_ratio must be positive")


@dataclass(frozen=True, slots=True)
class Evidence:
    """What the verdicts of one rollout say, as counts: the gate's only input besides config and state.

    `samples` counts compared verdicts (pass, regression, noise) cumulatively over the rollout: shadow
    traffic does not depend on the canary share, so every compared verdict is evidence about the
    candidate, and the sequential bounds stay valid however the total grows. `stage_samples` counts
    those since the current stage began; it only makes each promotion wait for fresh verdicts.
    Latency percentiles and costs are over the same compared verdicts as `samples`.
    """

    samples: int
    stage_samples: int
    candidate_regressions: int
    baseline_noise_regressions: int
    both_regressed: int
    errors: int = 0
    latency_p95_baseline_ms: float | None = None
    latency_p95_candidate_ms: float | None = None
    cost_usd_baseline: float = 0.0
    cost_usd_candidate: float = 0.0
    # The judge (SPEC §8), over compared verdicts of judged routes. Its findings are already in the
    # regression counts; these figures explain them and say whether the judge is answering.
    judged: int = 0
    graded: int = 0
    baseline_acceptable: int = 0
    candidate_acceptable: int = 0
    quality_candidate_worse: int = 0
    quality_candidate_better: int = 0
    judge_failed_streak: int = 0

    def __post_init__(self) -> None:
        counts = (
            self.samples,
            self.stage_samples,
            self.candidate_regressions,
            self.baseline_noise_regressions,
            self.both_regressed,
            self.errors,
            self.judged,
            self.graded,
            self.baseline_acceptable,
            self.candidate_acceptable,
            self.quality_candidate_worse,
            self.quality_candidate_better,
            self.judge_failed_streak,
        )
        if min(counts) < 0:
            raise ValueError(f"evidence counts must be non-negative: {self}")
        if self.stage_samples > self.samples:
            raise ValueError(f"stage_samples={self.stage_samples} exceeds samples={self.samples}")
        if max(self.candidate_regressions, self.baseline_noise_regressions) > self.samples:
            raise ValueError(f"more regressions than compared verdicts: {self}")
        if self.graded > self.judged or max(self.baseline_acceptable, self.candidate_acceptable) > self.graded:
            raise ValueError(f"more graded or acceptable answers than judged verdicts: {self}")
        if self.quality_candidate_worse + self.quality_candidate_better > self.graded:
            raise ValueError(f"more discordant grades than graded verdicts: {self}")
        # PairedCounts.from_totals checks the overlap and that the discordant pairs fit in `samples`.
        self.paired_counts()

    def paired_counts(self) -> PairedCounts:
        return PairedCounts.from_totals(
            n=self.samples,
            candidate=self.candidate_regressions,
            baseline=self.baseline_noise_regressions,
            both=self.both_regressed,
        )


@dataclass(frozen=True, slots=True)
class RolloutState:
    stages: tuple[int, ...]
    stage_index: int
    state: RolloutPhase = "active"

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("a rollout needs at least one stage")
        if not 0 <= self.stage_index < len(self.stages):
            raise ValueError(f"stage_index {self.stage_index} outside stages {self.stages}")

    @property
    def canary_percent(self) -> int:
        return self.stages[self.stage_index]


@dataclass(frozen=True, slots=True)
class GateDecision:
    decision: Decision
    reasons: tuple[str, ...]
    figures: GateFigures
    stage_index: int
    canary_percent: int
    gate_version: str = GATE_VERSION


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _ms(value: float | None) -> str:
    return "unmeasured" if value is None else f"{value:.0f} ms"


def _ratio(candidate: float | None, baseline: float | None) -> float | None:
    """candidate / baseline, or None when either side is unmeasured or the baseline is zero."""
    if candidate is None or baseline is None or baseline <= 0:
        return None
    return candidate / baseline


@dataclass(frozen=True, slots=True)
class _Check:
    """One criterion: `ok` None means it could not be evaluated, so it neither blocks nor fails."""

    ok: bool | None
    sentence: str


Figures = dict[str, float | int | str | None]


def _regression_checks(config: GateConfig, evidence: Evidence) -> tuple[_Check, _Check, Figures]:
    """The non-inferiority check (may promote) and the inferiority check (may roll back)."""
    counts = evidence.paired_counts()
    n = evidence.samples
    level = config.confidence
    tolerance = config.max_regression_rate_increase
    bounds = sequential_bounds(counts, level, max(tolerance, _MIN_MIXING_SCALE))
    candidate_ci = wilson_interval(evidence.candidate_regressions, n, level)
    noise_ci = wilson_interval(evidence.baseline_noise_regressions, n, level)
    candidate_rate = evidence.candidate_regressions / n if n else None
    noise_rate = evidence.baseline_noise_regressions / n if n else None
    figures: Figures = {
        "candidate_regression_rate": candidate_rate,
        "candidate_regression_rate_low": candidate_ci[0],
        "candidate_regression_rate_high": candidate_ci[1],
        "baseline_noise_rate": noise_rate,
        "baseline_noise_rate_low": noise_ci[0],
        "baseline_noise_rate_high": noise_ci[1],
        "rate_increase": bounds.estimate,
        "rate_increase_lower": bounds.lower,
        "rate_increase_upper": bounds.upper,
        "max_regression_rate_increase": tolerance,
        "confidence": level,
    }
    rates = (
        f"regression rate {_pct(candidate_rate)} vs baseline noise {_pct(noise_rate)} "
        f"(increase {_pct(bounds.estimate)}, n={n})"
    )
    level_text = f"{level:.0%}" if round(level * 100, 6).is_integer() else f"{level:.1%}"
    shown = bounds.upper <= tolerance
    non_inferior = _Check(
        ok=shown,
        sentence=(
            f"{rates}: upper {level_text} bound of the increase {_pct(bounds.upper)} "
            f"{'≤' if shown else '>'} {_pct(tolerance)}"
            + ("" if shown else ", not yet shown within tolerance")
        ),
    )
    proven_worse = bounds.lower > tolerance
    inferior = _Check(
        ok=not proven_worse,
        sentence=(
            f"{rates}: lower {level_text} bound of the increase {_pct(bounds.lower)} > {_pct(tolerance)}, "
            "the candidate regresses more than tolerated"
        ),
    )
    return non_inferior, inferior, figures


def _ratio_check(what: str, ratio: float | None, bound: float, detail: str) -> _Check:
    if ratio is None:
        return _Check(ok=None, sentence=f"{what} not checked: {detail}")
    within = ratio <= bound
    return _Check(
        ok=within,
        sentence=f"{what} ratio {ratio:.2f} ({detail}) {'≤' if within else '>'} {bound:.2f}",
    )


def _quality(config: GateConfig, evidence: Evidence) -> tuple[str | None, Figures]:
    """The judge's sentence for the reasons (None on a rollout without graded routes) and its figures."""
    graded, level = evidence.graded, config.confidence
    b_low, b_high = wilson_interval(evidence.baseline_acceptable, graded, level)
    c_low, c_high = wilson_interval(evidence.candidate_acceptable, graded, level)
    figures: Figures = {
        "judged": evidence.judged,
        "graded": graded,
        "graded_share": graded / evidence.judged if evidence.judged else None,
        "baseline_acceptable_rate": evidence.baseline_acceptable / graded if graded else None,
        "baseline_acceptable_low": b_low,
        "baseline_acceptable_high": b_high,
        "candidate_acceptable_rate": evidence.candidate_acceptable / graded if graded else None,
        "candidate_acceptable_low": c_low,
        "candidate_acceptable_high": c_high,
        "quality_candidate_worse": evidence.quality_candidate_worse,
        "quality_candidate_better": evidence.quality_candidate_better,
        "judge_failed_streak": evidence.judge_failed_streak,
    }
    if not evidence.judged:
        return None, figures
    if not graded:
        return f"quality: none of {evidence.judged} judged verdicts graded yet", figures
    b_rate, c_rate = evidence.baseline_acceptable / graded, evidence.candidate_acceptable / graded
    return (
        f"quality: {graded} of {evidence.judged} judged verdicts graded; acceptable baseline {_pct(b_rate)} "
        f"[{_pct(b_low)}, {_pct(b_high)}], candidate {_pct(c_rate)} [{_pct(c_low)}, {_pct(c_high)}]; "
        f"candidate worse on {evidence.quality_candidate_worse}, better on {evidence.quality_candidate_better}"
    ), figures


def evaluate_gate(config: GateConfig, state: RolloutState, evidence: Evidence) -> GateDecision:
    """Decide the next step of a canary rollout from the evidence so far.

    Order of the rules:
    1. an operator's state wins: paused holds, rolled_back stays rolled back, complete stays complete;
    2. roll back, at any number of verdicts, when the anytime-valid lower bound of the
       regression-rate increase exceeds the tolerance: that bound holds at every sample size, so
       clear harm stops the rollout at once (SPEC §9);
    3. fewer than `min_samples` compared verdicts in all holds: nothing else acts on too little data;
    4. roll back when the latency p95 or cost ratio exceeds its bound: point estimates, so only over
       at least `min_samples` verdicts. These use all the rollout's verdicts, so they may act early
       in a stage;
    5. hold until the current stage has `min_samples` new compared verdicts, and while the judge of a
       judged rollout is silent (its last JUDGE_SILENT_AFTER gradings failed);
    6. promote (complete, at the last stage) only when the anytime-valid upper bound of the increase
       is within the tolerance and both ratios are within their bounds; otherwise hold.
    A ratio that cannot be measured (a side without latency, a baseline without cost) is reported
    and does not block: the regression bound is the evidence that has to be positive.
    """
    current = state.canary_percent
    non_inferior, inferior, figures = _regression_checks(config, evidence)
    latency_ratio = (
        _ratio(evidence.latency_p95_candidate_ms, evidence.latency_p95_baseline_ms) if config.latency_judged else None
    )
    cost_ratio = _ratio(evidence.cost_usd_candidate, evidence.cost_usd_baseline)
    figures.update(
        {
            "gate_version": GATE_VERSION,
            "stage_index": state.stage_index,
            "stage_percent": current,
            "samples": evidence.samples,
            "stage_samples": evidence.stage_samples,
            "min_samples": config.min_samples,
            "errors": evidence.errors,
            "candidate_regressions": evidence.candidate_regressions,
            "baseline_noise_regressions": evidence.baseline_noise_regressions,
            "both_regressed": evidence.both_regressed,
            "latency_p95_baseline_ms": evidence.latency_p95_baseline_ms,
            "latency_p95_candidate_ms": evidence.latency_p95_candidate_ms,
            "latency_p95_ratio": latency_ratio,
            "max_latency_p95_ratio": config.max_latency_p95_ratio,
            "latency_judged": config.latency_judged,
            "cost_usd_baseline": evidence.cost_usd_baseline,
            "cost_usd_candidate": evidence.cost_usd_candidate,
            "cost_ratio": cost_ratio,
            "max_cost_ratio": config.max_cost_ratio,
        }
    )
    latency = _ratio_check(
        "latency p95",
        latency_ratio,
        config.max_latency_p95_ratio,
        f"candidate {_ms(evidence.latency_p95_candidate_ms)} vs baseline "
        f"{_ms(evidence.latency_p95_baseline_ms)}",
    ) if config.latency_judged else _Check(
        ok=None, sentence="latency p95 not judged: replay_mode batch replays wait for their batch"
    )
    cost = _ratio_check(
        "cost",
        cost_ratio,
        config.max_cost_ratio,
        f"candidate ${evidence.cost_usd_candidate:.4f} vs baseline ${evidence.cost_usd_baseline:.4f}",
    )
    notes: list[str] = []
    if evidence.errors:
        notes.append(f"{evidence.errors} error verdicts (no fair comparison) are not counted")
    quality, quality_figures = _quality(config, evidence)
    figures.update(quality_figures)
    if quality is not None:
        notes.append(quality)
    judge_silent = evidence.judge_failed_streak >= JUDGE_SILENT_AFTER
    if judge_silent:
        notes.append(
            f"judge silent: the last {evidence.judge_failed_streak} gradings all failed, so answer quality "
            "is not measured; promotion waits until the judge answers again"
        )
    context = [non_inferior.sentence, latency.sentence, cost.sentence, *notes]

    def decide(decision: Decision, reasons: list[str], stage_index: int, canary: int) -> GateDecision:
        typed = GateFigures(**figures, next_stage_index=stage_index, canary_percent=canary)  # type: ignore[arg-type]
        return GateDecision(decision, tuple(dict.fromkeys(reasons)), typed, stage_index, canary)

    if state.state == "paused":
        return decide("hold", ["paused by an operator", *context], state.stage_index, current)
    if state.state == "rolled_back":
        return decide("rollback", ["rolled back earlier; stays rolled back", *context], state.stage_index, 0)
    if state.state == "complete":
        return decide("complete", ["rollout already complete", *context], state.stage_index, 100)

    if inferior.ok is False:
        # The anytime-valid bound needs no minimum sample size: this may act on the first verdicts.
        ratio_failures = (
            [check for check in (latency, cost) if check.ok is False]
            if evidence.samples >= config.min_samples
            else []
        )
        passed = [check.sentence for check in (latency, cost) if check not in ratio_failures]
        reasons = [inferior.sentence, *(check.sentence for check in ratio_failures), *passed, *notes]
        return decide("rollback", reasons, state.stage_index, 0)

    if evidence.samples < config.min_samples:
        reason = f"too little data: {evidence.samples} of {config.min_samples} compared verdicts needed"
        return decide("hold", [reason, *context], state.stage_index, current)

    failures = [check for check in (latency, cost) if check.ok is False]
    if failures:
        others = [check for check in (non_inferior, latency, cost) if check not in failures]
        reasons = [*(check.sentence for check in failures), *(check.sentence for check in others), *notes]
        return decide("rollback", reasons, state.stage_index, 0)

    if evidence.stage_samples < config.min_samples:
        reason = (
            f"stage {current}%: {evidence.stage_samples} of {config.min_samples} "
            "new compared verdicts needed before promotion"
        )
        return decide("hold", [reason, *context], state.stage_index, current)

    if not non_inferior.ok or judge_silent:
        return decide("hold", context, state.stage_index, current)
    if state.stage_index + 1 >= len(state.stages):
        return decide("complete", [f"last stage {current}% passed", *context], state.stage_index, 100)
    following = state.stage_index + 1
    reason = f"stage {current}% passed: promote to {state.stages[following]}%"
    return decide("promote", [reason, *context], following, state.stages[following])
