"""A rollout's figures from its running totals: counts, breakdowns, percentiles, spend, the gate's evidence (pure).

`to_wire()` gives the JSON shape reports and tests have always read; the gate takes `evidence()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shadowd.core.findings import Status
from shadowd.core.gate import Evidence
from shadowd.core.histogram import histogram_percentile
from shadowd.core.tally import (
    COMPARED_STATUSES,
    GRADE_COUNTS,
    SIDES,
    GradeTotals,
    RolloutTotals,
    StatusTotals,
)


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float | None = None
    p95: float | None = None

    def to_wire(self) -> dict[str, float | None]:
        return {"p50": self.p50, "p95": self.p95}


@dataclass(frozen=True, slots=True)
class Spend:
    baseline: float = 0.0
    candidate: float = 0.0

    def to_wire(self) -> dict[str, float]:
        return {"baseline": self.baseline, "candidate": self.candidate}


@dataclass(frozen=True, slots=True)
class CodeCount:
    severity: str
    count: int

    def to_wire(self) -> dict[str, Any]:
        return {"severity": self.severity, "count": self.count}


def grade_wire(totals: GradeTotals) -> dict[str, Any]:
    return {name: (float(getattr(totals, name)) if name == "cost_usd" else int(getattr(totals, name)))
            for name in GRADE_COUNTS}


@dataclass(frozen=True, slots=True)
class GradeFigures:
    """The judge's totals for one rollout, overall and per route, and whether it is answering."""

    totals: GradeTotals = field(default_factory=GradeTotals)
    by_route: Mapping[str, GradeTotals] = field(default_factory=dict)
    failed_streak: int = 0
    last_error: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            **grade_wire(self.totals),
            "by_route": {route: grade_wire(g) for route, g in self.by_route.items()},
            "failed_streak": self.failed_streak,
            "last_error": self.last_error,
        }


@dataclass(frozen=True, slots=True)
class VerdictFigures:
    """Counts, per-code and per-route breakdowns, latency percentiles and spend of one rollout.

    `samples` and the paired regression counts are over compared verdicts (pass, regression, noise);
    `stage_samples` counts those since the current stage began.
    """

    counts: Mapping[str, int]
    by_code: Mapping[str, CodeCount]
    noise_by_code: Mapping[str, int]
    by_route: Mapping[str, Mapping[str, int]]
    samples: int
    stage_samples: int
    candidate_regressions: int
    baseline_noise_regressions: int
    both_regressed: int
    cost_usd: Spend
    latency_baseline: Percentiles
    latency_candidate: Percentiles
    grades: GradeFigures

    def evidence(self) -> Evidence:
        """What the gate decides on."""
        g = self.grades
        return Evidence(
            samples=self.samples,
            stage_samples=self.stage_samples,
            candidate_regressions=self.candidate_regressions,
            baseline_noise_regressions=self.baseline_noise_regressions,
            both_regressed=self.both_regressed,
            errors=self.counts.get(Status.ERROR.value, 0),
            latency_p95_baseline_ms=self.latency_baseline.p95,
            latency_p95_candidate_ms=self.latency_candidate.p95,
            cost_usd_baseline=self.cost_usd.baseline,
            cost_usd_candidate=self.cost_usd.candidate,
            judged=g.totals.judged,
            graded=g.totals.graded,
            baseline_acceptable=g.totals.baseline_acceptable,
            candidate_acceptable=g.totals.candidate_acceptable,
            quality_candidate_worse=g.totals.candidate_worse,
            quality_candidate_better=g.totals.candidate_better,
            judge_failed_streak=g.failed_streak,
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "by_code": {code: entry.to_wire() for code, entry in self.by_code.items()},
            "noise_by_code": dict(self.noise_by_code),
            "by_route": {route: dict(counts) for route, counts in self.by_route.items()},
            "samples": self.samples,
            "stage_samples": self.stage_samples,
            "candidate_regressions": self.candidate_regressions,
            "baseline_noise_regressions": self.baseline_noise_regressions,
            "both_regressed": self.both_regressed,
            "cost_usd": self.cost_usd.to_wire(),
            "latency_ms": {"baseline": self.latency_baseline.to_wire(), "candidate": self.latency_candidate.to_wire()},
            "grades": self.grades.to_wire(),
        }


def _compared_sum(rows: list[StatusTotals]) -> StatusTotals:
    total = StatusTotals()
    for row in rows:
        total = total + row
    return total


def verdict_figures(totals: RolloutTotals, stage_started_compared: int = 0) -> VerdictFigures:
    """The figures of one rollout from its running totals."""
    counts: dict[str, int] = {status.value: 0 for status in Status}
    by_route: dict[str, dict[str, int]] = {}
    compared: list[StatusTotals] = []
    for (route, status), row in totals.status.items():
        counts[status] = counts.get(status, 0) + row.n
        by_route.setdefault(route, {})[status] = row.n
        if status in COMPARED_STATUSES:
            compared.append(row)
    summed = _compared_sum(compared)
    histograms = totals.histograms()
    latency = {
        side: Percentiles(histogram_percentile(histograms[side], 0.5), histogram_percentile(histograms[side], 0.95))
        for side in SIDES
    }
    grades = GradeTotals()
    for route_grades in totals.grades.values():
        grades = grades + route_grades
    return VerdictFigures(
        counts=counts,
        by_code={code: CodeCount(t.severity, t.n) for (code, noise), t in totals.codes.items() if not noise},
        noise_by_code={code: t.n for (code, noise), t in totals.codes.items() if noise},
        by_route=by_route,
        samples=summed.n,
        stage_samples=max(summed.n - stage_started_compared, 0),
        candidate_regressions=summed.candidate_regressions,
        baseline_noise_regressions=summed.baseline_noise_regressions,
        both_regressed=summed.both_regressed,
        cost_usd=Spend(summed.cost_usd_baseline, summed.cost_usd_candidate),
        latency_baseline=latency["baseline"],
        latency_candidate=latency["candidate"],
        grades=GradeFigures(
            totals=grades,
            by_route={route: totals.grades[route] for route in sorted(totals.grades)},
            failed_streak=totals.judge_failed_streak,
            last_error=totals.judge_last_error,
        ),
    )


def route_figures(totals: RolloutTotals) -> dict[str, dict[str, Any]]:
    """Per route: status counts, the paired regression counts and spend over compared verdicts, and the
    judge's acceptability counts (None on a route nobody graded)."""
    routes: dict[str, dict[str, Any]] = {}
    for (route, status), row in totals.status.items():
        entry = routes.setdefault(route, {
            "counts": {}, "samples": 0, "candidate_regressions": 0, "baseline_noise_regressions": 0,
            "both_regressed": 0, "cost_usd": {"baseline": 0.0, "candidate": 0.0},
        })
        entry["counts"][status] = row.n
        if status in COMPARED_STATUSES:
            entry["samples"] += row.n
            entry["candidate_regressions"] += row.candidate_regressions
            entry["baseline_noise_regressions"] += row.baseline_noise_regressions
            entry["both_regressed"] += row.both_regressed
            entry["cost_usd"]["baseline"] += row.cost_usd_baseline
            entry["cost_usd"]["candidate"] += row.cost_usd_candidate
    for route, entry in routes.items():
        graded = totals.grades.get(route)
        entry["grades"] = {
            "graded": graded.graded, "baseline_acceptable": graded.baseline_acceptable,
            "candidate_acceptable": graded.candidate_acceptable,
        } if graded is not None else None
    return routes
