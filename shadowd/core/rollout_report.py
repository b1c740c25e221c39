"""The rollout report (SPEC §4 `report --json`) as typed values; `to_wire()` is its JSON shape (pure).

The CLI, the HTTP API, the Argo and Flagger contracts, the PromQL endpoint and the HTML pages all read
one `RolloutReport`; the wire shape is fixed by the SPEC, so its keys and their order never change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shadowd.core.figures import CodeCount, VerdictFigures
from shadowd.core.gate import JUDGE_SILENT_AFTER, GateDecision, RolloutState
from shadowd.core.rollout import RolloutSpec
from shadowd.core.spend import Spend, spend_report
from shadowd.core.stats import wilson_interval
from shadowd.core.tally import GradeTotals, ModelCalls

SEVERITY_ORDER = {"critical": 0, "major": 1, "minor": 2}


def rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def severity_then_count(item: tuple[str, Mapping[str, Any]]) -> tuple[int, int, str]:
    """Critical codes first, then major, then minor; within a severity the most frequent first."""
    code, entry = item
    return SEVERITY_ORDER.get(str(entry.get("severity")), 3), -int(entry.get("count", 0)), code


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float

    def to_wire(self) -> list[float]:
        return [self.low, self.high]


@dataclass(frozen=True, slots=True)
class CodeRate:
    severity: str
    count: int
    rate: float | None

    def to_wire(self) -> dict[str, Any]:
        return {"severity": self.severity, "count": self.count, "rate": self.rate}


@dataclass(frozen=True, slots=True)
class RouteSummary:
    counts: Mapping[str, int]
    total: int
    regression_rate: float | None

    def to_wire(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "total": self.total, "regression_rate": self.regression_rate}


@dataclass(frozen=True, slots=True)
class CostSummary:
    baseline: float
    candidate: float
    ratio: float | None
    grading: float  # judge spend: counted against budget.usd_per_hour, kept out of the ratio

    def to_wire(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "candidate": self.candidate, "ratio": self.ratio, "grading": self.grading}


@dataclass(frozen=True, slots=True)
class SideAcceptability:
    acceptable: int
    rate: float | None
    ci: Interval

    def to_wire(self) -> dict[str, Any]:
        return {"acceptable": self.acceptable, "rate": self.rate, "ci": self.ci.to_wire()}


@dataclass(frozen=True, slots=True)
class JudgeSummary:
    judged: int
    graded: int
    graded_share: float | None
    ungraded_failed: int
    over_budget: int
    baseline: SideAcceptability
    candidate: SideAcceptability
    candidate_worse: int
    candidate_better: int
    cost_usd: float

    @classmethod
    def of(cls, g: GradeTotals, confidence: float) -> JudgeSummary:
        def side(acceptable: int) -> SideAcceptability:
            return SideAcceptability(acceptable, rate(acceptable, g.graded),
                                     Interval(*wilson_interval(acceptable, g.graded, confidence)))

        return cls(
            judged=g.judged, graded=g.graded, graded_share=rate(g.graded, g.judged), ungraded_failed=g.failed,
            over_budget=g.over_budget, baseline=side(g.baseline_acceptable), candidate=side(g.candidate_acceptable),
            candidate_worse=g.candidate_worse, candidate_better=g.candidate_better, cost_usd=float(g.cost_usd),
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "judged": self.judged,
            "graded": self.graded,
            "graded_share": self.graded_share,
            "ungraded_failed": self.ungraded_failed,
            "over_budget": self.over_budget,
            "acceptability": {"baseline": self.baseline.to_wire(), "candidate": self.candidate.to_wire()},
            "discordant": {"candidate_worse": self.candidate_worse, "candidate_better": self.candidate_better},
            "cost_usd": self.cost_usd,
        }


@dataclass(frozen=True, slots=True)
class JudgeReport:
    """The report's `judge` object: graded share, acceptability per side with intervals, discordant pairs."""

    overall: JudgeSummary
    by_route: Mapping[str, JudgeSummary]
    failed_streak: int
    last_error: str | None

    @property
    def silent(self) -> bool:
        return self.failed_streak >= JUDGE_SILENT_AFTER

    def to_wire(self) -> dict[str, Any]:
        return {
            **self.overall.to_wire(),
            "by_route": {route: summary.to_wire() for route, summary in self.by_route.items()},
            "failed_streak": self.failed_streak,
            "last_error": self.last_error,
            "silent": self.silent,
        }


def judge_report(figures: VerdictFigures, confidence: float) -> JudgeReport | None:
    grades = figures.grades
    if not grades.totals.judged:
        return None
    return JudgeReport(
        overall=JudgeSummary.of(grades.totals, confidence),
        by_route={route: JudgeSummary.of(g, confidence) for route, g in grades.by_route.items()},
        failed_streak=grades.failed_streak,
        last_error=grades.last_error,
    )


@dataclass(frozen=True, slots=True)
class NoiseCheck:
    fraction: float
    noise_checked: int
    noise_checked_share: float | None
    model_calls: int
    model_calls_per_compared: float | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "noise_checked": self.noise_checked,
            "noise_checked_share": self.noise_checked_share,
            "model_calls": self.model_calls,
            "model_calls_per_compared": self.model_calls_per_compared,
        }


@dataclass(frozen=True, slots=True)
class NoisyEntry:
    """One of the baseline's noisiest paths (`kind` "path") or codes (`kind` "code") on a route."""

    kind: str
    key: str
    rate: float
    differed: int
    samples: int
    noise: bool

    def to_wire(self) -> dict[str, Any]:
        return {self.kind: self.key, "rate": self.rate, "differed": self.differed, "samples": self.samples,
                "noise": self.noise}


@dataclass(frozen=True, slots=True)
class NoisiestRoute:
    noise_checked_requests: int
    threshold: float
    paths: tuple[NoisyEntry, ...]
    codes: tuple[NoisyEntry, ...]

    def to_wire(self) -> dict[str, Any]:
        return {
            "noise_checked_requests": self.noise_checked_requests,
            "threshold": self.threshold,
            "paths": [entry.to_wire() for entry in self.paths],
            "codes": [entry.to_wire() for entry in self.codes],
        }


@dataclass(frozen=True, slots=True)
class RolloutReport:
    rollout: str
    baseline: str
    candidate: str
    state: str
    stage_index: int
    stages: tuple[int, ...]
    canary_percent: int
    gate: GateDecision
    reasons: tuple[str, ...]
    figures: VerdictFigures
    confidence: float
    errors_by_reason: Mapping[str, int]
    by_code: Mapping[str, CodeRate]
    examples: Mapping[str, list[str]]
    by_route: Mapping[str, RouteSummary]
    cost_usd: CostSummary
    judge: JudgeReport | None
    noise_check: NoiseCheck
    noisiest: Mapping[str, NoisiestRoute]
    # Model calls and USD by purpose over the rollout, and the gate decisions (promote, rollback) taken.
    spend: Spend
    gate_decisions: int
    gate_config_latency_judged: bool = True

    @property
    def decision(self) -> str:
        return self.gate.decision

    @property
    def stage(self) -> int:
        return self.stage_index + 1

    @property
    def counts(self) -> Mapping[str, int]:
        return self.figures.counts

    @property
    def compared(self) -> int:
        return self.figures.samples

    @property
    def regression_rate(self) -> float | None:
        return rate(self.counts.get("regression", 0), self.compared)

    @property
    def noise_rate(self) -> float | None:
        return rate(self.counts.get("noise", 0), self.compared)

    @property
    def baseline_noise_rate(self) -> float | None:
        return rate(self.figures.baseline_noise_regressions, self.compared)

    @property
    def rolled_back(self) -> bool:
        """Rolled back, or the gate says so now."""
        return self.state == "rolled_back" or self.decision == "rollback"

    @property
    def latency_judged(self) -> bool:
        """False when every call is batched (replay_mode: batch, no route forcing live): latency is the
        batch's, not the model's (shown "not judged")."""
        return self.gate_config_latency_judged

    @property
    def latency_p95_ratio(self) -> float | None:
        if not self.latency_judged:
            return None
        return ratio(self.figures.latency_candidate.p95, self.figures.latency_baseline.p95)

    def to_wire(self) -> dict[str, Any]:
        counts, compared, f = self.counts, self.compared, self.figures
        level = self.confidence
        return {
            "rollout": self.rollout,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "state": self.state,
            "stage": self.stage,
            "stage_index": self.stage_index,
            "stages": list(self.stages),
            "canary_percent": self.canary_percent,
            "decision": self.decision,
            "gate_version": self.gate.gate_version,
            "reasons": list(self.reasons),
            "gate_figures": self.gate.figures.to_wire(),
            "counts": dict(counts),
            "total": sum(counts.values()),
            "compared": compared,
            "stage_samples": f.stage_samples,
            "regression_rate": self.regression_rate,
            "regression_rate_ci": list(wilson_interval(counts.get("regression", 0), compared, level)),
            "confidence": level,
            "noise_rate": self.noise_rate,
            "errors_by_reason": dict(self.errors_by_reason),
            "baseline_noise_rate": self.baseline_noise_rate,
            "baseline_noise_rate_ci": list(wilson_interval(f.baseline_noise_regressions, compared, level)),
            "by_code": {code: entry.to_wire() for code, entry in self.by_code.items()},
            "examples": {code: list(ids) for code, ids in self.examples.items()},
            "noise_by_code": dict(f.noise_by_code),
            "by_route": {route: summary.to_wire() for route, summary in self.by_route.items()},
            "latency_ms": {"baseline": f.latency_baseline.to_wire(), "candidate": f.latency_candidate.to_wire()},
            "latency_p95_ratio": self.latency_p95_ratio,
            "latency_judged": self.latency_judged,
            "cost_usd": self.cost_usd.to_wire(),
            "judge": self.judge.to_wire() if self.judge is not None else None,
            "noise_check": self.noise_check.to_wire(),
            "noisiest": {route: entry.to_wire() for route, entry in self.noisiest.items()},
            "spend": spend_report(self.spend, compared, self.gate_decisions),
        }


def current_percent(spec: RolloutSpec, state: RolloutState) -> int:
    if state.state == "rolled_back":
        return 0
    return spec.stages[state.stage_index]


def compose_report(
    spec: RolloutSpec,
    state: RolloutState,
    gate: GateDecision,
    figures: VerdictFigures,
    *,
    reasons: tuple[str, ...],
    errors_by_reason: Mapping[str, int],
    examples: Mapping[str, list[str]],
    calls: ModelCalls,
    noisiest: Mapping[str, NoisiestRoute],
    spend: Spend,
    gate_decisions: int,
) -> RolloutReport:
    """The report from what the store returned and what the gate decided on it."""
    compared = figures.samples
    ordered = sorted(((code, entry.to_wire()) for code, entry in figures.by_code.items()), key=severity_then_count)
    by_code = {code: _code_rate(figures.by_code[code], compared) for code, _ in ordered}
    compared_of = ("pass", "regression", "noise")
    return RolloutReport(
        rollout=spec.name,
        baseline=spec.baseline,
        candidate=spec.candidate,
        state=state.state,
        stage_index=state.stage_index,
        stages=tuple(spec.stages),
        canary_percent=current_percent(spec, state),
        gate=gate,
        reasons=reasons,
        figures=figures,
        confidence=spec.gate.confidence,
        errors_by_reason=dict(sorted(errors_by_reason.items(), key=lambda item: (-item[1], item[0]))),
        by_code=by_code,
        examples=examples,
        by_route={
            route: RouteSummary(
                counts=dict(route_counts),
                total=sum(route_counts.values()),
                regression_rate=rate(route_counts.get("regression", 0),
                                     sum(route_counts.get(s, 0) for s in compared_of)),
            )
            for route, route_counts in sorted(figures.by_route.items())
        },
        cost_usd=CostSummary(
            baseline=figures.cost_usd.baseline,
            candidate=figures.cost_usd.candidate,
            ratio=ratio(figures.cost_usd.candidate, figures.cost_usd.baseline),
            grading=float(figures.grades.totals.cost_usd),
        ),
        judge=judge_report(figures, spec.gate.confidence),
        noise_check=NoiseCheck(
            fraction=spec.noise_check,
            noise_checked=calls.noise_checked,
            noise_checked_share=rate(calls.noise_checked, calls.replayed),
            model_calls=calls.model_calls,
            model_calls_per_compared=rate(calls.model_calls, compared),
        ),
        noisiest=noisiest,
        spend=spend,
        gate_decisions=gate_decisions,
        gate_config_latency_judged=spec.gate.latency_judged,
    )


def _code_rate(entry: CodeCount, compared: int) -> CodeRate:
    return CodeRate(entry.severity, entry.count, rate(entry.count, compared))


__all__ = ["RolloutReport", "compose_report", "severity_then_count"]
