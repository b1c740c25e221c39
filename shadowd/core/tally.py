"""What a stored verdict adds to its rollout's running totals, and what counts as regressed or noisy (pure).

The store keeps these totals (SQL rollup tables, or the in-memory twin's dicts) and hands them back as
`RolloutTotals`; `shadowd.core.figures` turns them into the figures reports and the gate read. Every
rule about which verdicts are compared, regressed, noisy or both lives here, nowhere in SQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TypeVar

from shadowd.core.findings import Status
from shadowd.core.histogram import bucket_of

# Verdicts with a fair comparison of both sides: the gate's samples. Errors and skips are not.
COMPARED_STATUSES: tuple[str, ...] = (Status.PASS.value, Status.REGRESSION.value, Status.NOISE.value)
SIDES = ("baseline", "candidate")


@dataclass(frozen=True, slots=True)
class VerdictFacts:
    """The few fields of one stored verdict that its rollout's totals count (as the store keeps them)."""

    rollout: str
    route: str
    status: str
    baseline_noise_blocking: bool = False
    grading: str | None = None  # the judge's status: graded, failed, over_budget, or None when not judged
    baseline_acceptable: bool | None = None
    candidate_acceptable: bool | None = None
    grading_cost_usd: float | None = None
    baseline_latency_ms: float | None = None
    candidate_latency_ms: float | None = None
    baseline_cost_usd: float | None = None
    candidate_cost_usd: float | None = None
    # (code, severity, noise) of each finding; a code found twice on one verdict counts once.
    findings: tuple[tuple[str, str, bool], ...] = ()


@dataclass(frozen=True, slots=True)
class Classification:
    compared: bool
    regressed: bool
    noisy: bool
    candidate_better: bool

    @property
    def both(self) -> bool:
        return self.regressed and self.noisy


def classify(facts: VerdictFacts) -> Classification:
    """Compared, regressed by the candidate, regressed by the baseline's own noise, or both.

    The baseline side of the paired counts is the noise replay disagreeing with itself in a way that
    would block, or (McNemar pairing, docs/JUDGE.md) the judge's discordant pair in the candidate's
    favour: the baseline-side count that grader noise on a clean candidate balances.
    """
    compared = facts.status in COMPARED_STATUSES
    regressed = facts.status == Status.REGRESSION.value
    candidate_better = (
        facts.grading == "graded" and facts.baseline_acceptable is False and facts.candidate_acceptable is True
    )
    noisy = compared and (facts.baseline_noise_blocking or candidate_better)
    return Classification(compared=compared, regressed=regressed, noisy=noisy, candidate_better=candidate_better)


@dataclass(frozen=True, slots=True)
class StatusTotals:
    """Verdicts of one (rollout, route, status), with their paired regression counts and spend."""

    n: int = 0
    candidate_regressions: int = 0
    baseline_noise_regressions: int = 0
    both_regressed: int = 0
    cost_usd_baseline: float = 0.0
    cost_usd_candidate: float = 0.0

    def __add__(self, other: StatusTotals) -> StatusTotals:
        return _add(self, other)


@dataclass(frozen=True, slots=True)
class GradeTotals:
    """The judge's counts over compared, judged verdicts of one (rollout, route)."""

    judged: int = 0
    graded: int = 0
    failed: int = 0
    over_budget: int = 0
    baseline_acceptable: int = 0
    candidate_acceptable: int = 0
    candidate_worse: int = 0
    candidate_better: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: GradeTotals) -> GradeTotals:
        return _add(self, other)


GRADE_COUNTS: tuple[str, ...] = tuple(f.name for f in fields(GradeTotals))
STATUS_COUNTS: tuple[str, ...] = tuple(f.name for f in fields(StatusTotals))


@dataclass(frozen=True, slots=True)
class CodeTotal:
    """Verdicts with a finding of one code (noise-explained or not); severity is the code's."""

    severity: str
    n: int = 0

    def __add__(self, other: CodeTotal) -> CodeTotal:
        return CodeTotal(self.severity, self.n + other.n)


_Totals = TypeVar("_Totals", StatusTotals, GradeTotals)


def _add(left: _Totals, right: _Totals) -> _Totals:
    return type(left)(*(getattr(left, f.name) + getattr(right, f.name) for f in fields(left)))


@dataclass(frozen=True, slots=True)
class RollupDelta:
    """What a batch of verdicts adds to the running totals, keyed as the store keeps them."""

    status: Mapping[tuple[str, str, str], StatusTotals] = field(default_factory=dict)  # rollout, route, status
    codes: Mapping[tuple[str, str, bool], CodeTotal] = field(default_factory=dict)  # rollout, code, noise
    grades: Mapping[tuple[str, str], GradeTotals] = field(default_factory=dict)  # rollout, route
    # rollout, side, bucket: compared verdicts whose two sides both carry a latency
    latency: Mapping[tuple[str, str, int], int] = field(default_factory=dict)


def tally(verdicts: Iterable[VerdictFacts]) -> RollupDelta:
    """Fold verdicts into the increments of their rollouts' totals (keys sorted, so stores that lock
    total rows lock them in one order)."""
    status: dict[tuple[str, str, str], StatusTotals] = {}
    codes: dict[tuple[str, str, bool], CodeTotal] = {}
    grades: dict[tuple[str, str], GradeTotals] = {}
    latency: dict[tuple[str, str, int], int] = {}
    for facts in verdicts:
        c = classify(facts)
        key = (facts.rollout, facts.route, facts.status)
        status[key] = status.get(key, StatusTotals()) + StatusTotals(
            n=1,
            candidate_regressions=int(c.regressed),
            baseline_noise_regressions=int(c.noisy),
            both_regressed=int(c.both),
            cost_usd_baseline=facts.baseline_cost_usd or 0.0,
            cost_usd_candidate=facts.candidate_cost_usd or 0.0,
        )
        if c.compared and facts.grading is not None:
            graded = facts.grading == "graded"
            grade_key = (facts.rollout, facts.route)
            grades[grade_key] = grades.get(grade_key, GradeTotals()) + GradeTotals(
                judged=1,
                graded=int(graded),
                failed=int(facts.grading == "failed"),
                over_budget=int(facts.grading == "over_budget"),
                baseline_acceptable=int(graded and facts.baseline_acceptable is True),
                candidate_acceptable=int(graded and facts.candidate_acceptable is True),
                candidate_worse=int(
                    graded and facts.baseline_acceptable is True and facts.candidate_acceptable is False
                ),
                candidate_better=int(c.candidate_better),
                cost_usd=facts.grading_cost_usd or 0.0,
            )
        if c.compared and facts.baseline_latency_ms is not None and facts.candidate_latency_ms is not None:
            # Latency counts in pairs: a side without one (a batch side waits for its batch; a recorded
            # baseline may carry none) takes its verdict out of both sides' histograms, never in as 0.
            for side, value in zip(SIDES, (facts.baseline_latency_ms, facts.candidate_latency_ms), strict=True):
                latency_key = (facts.rollout, side, bucket_of(value))
                latency[latency_key] = latency.get(latency_key, 0) + 1
        seen: set[tuple[str, bool]] = set()
        for code, severity, noise in facts.findings:
            if (code, noise) in seen:
                continue
            seen.add((code, noise))
            code_key = (facts.rollout, code, noise)
            codes[code_key] = codes.get(code_key, CodeTotal(severity)) + CodeTotal(severity, 1)
    return RollupDelta(
        status=dict(sorted(status.items())),
        codes=dict(sorted(codes.items())),
        grades=dict(sorted(grades.items())),
        latency=dict(sorted(latency.items())),
    )


@dataclass(frozen=True, slots=True)
class RolloutTotals:
    """One rollout's running totals as the store returns them: raw counts, nothing decided yet."""

    status: Mapping[tuple[str, str], StatusTotals] = field(default_factory=dict)  # route, status
    codes: Mapping[tuple[str, bool], CodeTotal] = field(default_factory=dict)  # code, noise
    grades: Mapping[str, GradeTotals] = field(default_factory=dict)  # route
    latency: Mapping[tuple[str, int], int] = field(default_factory=dict)  # side, bucket
    # How many of the latest grading attempts failed in a row, and the latest failure's error.
    judge_failed_streak: int = 0
    judge_last_error: str | None = None

    def histograms(self) -> dict[str, dict[int, int]]:
        """Per side, the latency histogram of compared verdicts (shadowd.core.histogram buckets)."""
        result: dict[str, dict[int, int]] = {side: {} for side in SIDES}
        for (side, bucket), n in self.latency.items():
            result.setdefault(side, {})[bucket] = n
        return result


@dataclass(frozen=True, slots=True)
class ModelCalls:
    """Verdicts that made model calls, how many were noise-checked, and the calls they made."""

    replayed: int = 0
    noise_checked: int = 0
    model_calls: int = 0

    def to_wire(self) -> dict[str, int]:
        return {"replayed": self.replayed, "noise_checked": self.noise_checked, "model_calls": self.model_calls}
