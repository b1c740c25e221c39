"""Rates, percentiles and the anytime-valid bounds the canary gate decides on.

Pure arithmetic over counts: standard library only, no clock, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

Alternative = Literal["greater", "less"]

_NORMAL = NormalDist()
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
# Bounds are found to within 1e-10, far below any rate anyone reads.
_BOUND_TOLERANCE = 1e-10
# A variance of exactly zero (no discordant pair, tested at mu0 = 0) would divide by zero; this floor
# leaves every such statistic at "no evidence", which is the honest answer.
_VARIANCE_FLOOR = 1e-12
# The mixture puts most of its weight on the tuned scale τ and the rest on a ladder 4τ, 16τ, … so
# that a candidate that breaks everything is caught in a few hundred verdicts, not thousands. In
# simulation (q = 2%), weight 0.9 rather than 0.5 promoted an identical candidate ~13% sooner, and
# 200 verdicts that all regress still bound the increase above 86%.
_PRIMARY_WEIGHT = 0.9
_LADDER_FACTOR = 4.0
# The lower bound (the rollback side) spreads its weight more evenly over the ladder: it exists to
# stop clear harm fast, and harm is rarely as small as the tolerance. Each side is its own test
# martingale, so each keeps Ville's bound whatever weights it uses. In simulation a 45-point
# regression is rolled back within 50 verdicts far more often than with 0.9 (benchmarks/GATE.md).
_ROLLBACK_PRIMARY_WEIGHT = 0.25


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Two-sided Wilson score interval for a binomial proportion (Wilson 1927; Newcombe 1998, method 3).

    With p = successes / n and z the two-sided normal quantile for `confidence`:
    centre = (p + z²/2n) / (1 + z²/n), half-width = z·√(p(1−p)/n + z²/4n²) / (1 + z²/n).
    Unlike the Wald interval it never leaves [0, 1] and stays informative at 0 or n successes.
    With n = 0 nothing is known: (0, 1).
    """
    _check_confidence(confidence)
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    z = _NORMAL.inv_cdf(0.5 + confidence / 2.0)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denominator
    lower = 0.0 if successes == 0 else max(0.0, centre - half)
    upper = 1.0 if successes == n else min(1.0, centre + half)
    return (lower, upper)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (q in [0, 1], so p95 is q=0.95) by linear interpolation between order statistics.

    Hyndman & Fan (1996) type 7, the default of R, numpy and PostgreSQL's percentile_cont:
    h = (n−1)·q, result = x₍⌊h⌋₎ + (h − ⌊h⌋)·(x₍⌊h⌋+1₎ − x₍⌊h⌋₎). None for no values.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    if not values:
        return None
    ordered = sorted(float(v) for v in values)
    h = (len(ordered) - 1) * q
    low = math.floor(h)
    if low + 1 >= len(ordered):
        return ordered[-1]
    return ordered[low] + (h - low) * (ordered[low + 1] - ordered[low])


@dataclass(frozen=True, slots=True)
class PairedCounts:
    """A paired binary comparison summarised by counts, all the sequential test needs.

    Each compared request i gives d_i = c_i − b_i ∈ {−1, 0, 1}, where c_i says the candidate regressed
    and b_i says the baseline's noise replay alone had a blocking finding. Only the discordant pairs
    matter: `candidate_only` requests have d_i = 1, `baseline_only` have d_i = −1, the rest 0.
    """

    n: int
    candidate_only: int
    baseline_only: int

    def __post_init__(self) -> None:
        if self.n < 0 or self.candidate_only < 0 or self.baseline_only < 0:
            raise ValueError(f"counts must be non-negative: {self}")
        if self.candidate_only + self.baseline_only > self.n:
            raise ValueError(f"more discordant pairs than pairs: {self}")

    @classmethod
    def from_totals(cls, n: int, candidate: int, baseline: int, both: int) -> PairedCounts:
        """From per-side totals and the overlap, as a verdict store counts them."""
        if both < 0 or both > min(candidate, baseline):
            raise ValueError(f"both={both} must lie in [0, min(candidate={candidate}, baseline={baseline})]")
        return cls(n=n, candidate_only=candidate - both, baseline_only=baseline - both)

    @property
    def mean_difference(self) -> float | None:
        """d̄ = (candidate_only − baseline_only) / n: the candidate's rate minus the baseline noise rate."""
        return (self.candidate_only - self.baseline_only) / self.n if self.n else None


def _restricted_discordance(n: float, candidate_only: float, baseline_only: float, mu0: float) -> float:
    """p_c + p_b, the discordance rate, maximising the likelihood under p_c − p_b = mu0 (Tango 1998).

    With x = p_b (the baseline-only probability) and p_c = x + mu0, setting the derivative of
    n_c·log(x+mu0) + n_b·log(x) + n_0·log(1−2x−mu0) to zero gives 2n·x² − B·x − C = 0 with
    B = n_c(1−mu0) + n_b(1−3mu0) − 2·n_0·mu0 and C = n_b·mu0(1−mu0); x is its non-negative root.
    For mu0 < 0 the roles of the two sides swap.
    """
    if mu0 < 0:
        candidate_only, baseline_only, mu0 = baseline_only, candidate_only, -mu0
    if n <= 0:
        return mu0
    concordant = n - candidate_only - baseline_only
    b = candidate_only * (1 - mu0) + baseline_only * (1 - 3 * mu0) - 2 * concordant * mu0
    c = baseline_only * mu0 * (1 - mu0)
    x = (b + math.sqrt(max(b * b + 8 * n * c, 0.0))) / (4 * n)
    x = min(max(x, 0.0), (1 - mu0) / 2)
    return 2 * x + mu0


def restricted_variance(counts: PairedCounts, mu0: float) -> float:
    """Var(d_i) under the hypothesis E[d_i] = mu0, at the restricted MLE: p_c + p_b − mu0² (Tango 1998).

    This is the score-test variance: unlike the plain sample variance it is never zero for mu0 ≠ 0,
    so a stream with no discordant pair yet cannot look infinitely precise.
    """
    if not -1.0 <= mu0 <= 1.0:
        raise ValueError(f"mu0 must be in [-1, 1], got {mu0}")
    discordance = _restricted_discordance(counts.n, counts.candidate_only, counts.baseline_only, mu0)
    return max(discordance - mu0 * mu0, 0.0)


def _log_half_normal_factor(u: float) -> float:
    """u²/2 + log Φ(u), computed without underflow for very negative u (Mills-ratio expansion)."""
    if u < -20.0:
        w = 1.0 / (u * u)
        return -math.log(-u) - _LOG_SQRT_2PI + math.log1p(-w + 3 * w * w)
    return 0.5 * u * u + math.log(0.5 * math.erfc(-u / math.sqrt(2.0)))


def mixture_log_statistic(
    counts: PairedCounts,
    mu0: float,
    alternative: Alternative,
    mixing_scale: float,
    primary_weight: float | None = None,
) -> float:
    """log Λ_n of the one-sided normal-mixture sequential probability ratio test of E[d] = mu0.

    The mSPRT of Johari, Koomen, Pekelis & Walsh ("Always valid inference", 2017/2022) mixes the
    Gaussian likelihood ratio exp(θS/σ² − nθ²/2σ²) over the effect θ; here over a half-normal
    θ ~ |N(0, τ²)| on the side of `alternative` (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon 2021,
    one-sided normal mixture). With S = ±Σ(d_i − mu0) (sign of the alternative), a = S/σ²,
    c = n/σ² + 1/τ²:

        Λ_n = 2 / √(1 + nτ²/σ²) · exp(a²/2c) · Φ(a/√c)

    Under E[d] = mu0 (or anything on the null side) Λ_n is a non-negative (super)martingale with
    mean ≤ 1, so by Ville's inequality (1939) P(∃n: Λ_n ≥ 1/α) ≤ α: rejecting whenever Λ_n ≥ 1/α stays
    valid however often it is looked at. σ² is Tango's restricted variance at mu0; plugging in a
    consistent variance estimate makes the guarantee asymptotic, as for the asymptotic confidence
    sequences of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas (2024, "Time-uniform central limit
    theory"). τ (`mixing_scale`) is the effect size the test is tuned to detect fastest.

    A single small τ barely reacts to huge effects (the mixture puts almost no mass there), so Λ_n is
    a weighted average over a ladder of scales: weight w on τ, the remaining 1 − w shared equally by
    4τ, 16τ, … up to the first scale ≥ 1. w is 0.9 for the "less" side (promotion, tuned to the
    tolerance) and 0.25 for the "greater" side (rollback, which must also stop large harm fast), unless
    `primary_weight` says otherwise. A weighted average of test martingales is one, so Ville's
    bound is unchanged.
    """
    if mixing_scale <= 0:
        raise ValueError(f"mixing_scale must be positive, got {mixing_scale}")
    if counts.n == 0:
        return -math.inf
    variance = max(restricted_variance(counts, mu0), _VARIANCE_FLOOR)
    total = counts.candidate_only - counts.baseline_only - counts.n * mu0
    signed = total if alternative == "greater" else -total
    a = signed / variance
    terms: list[float] = []
    if primary_weight is None:
        primary_weight = _ROLLBACK_PRIMARY_WEIGHT if alternative == "greater" else _PRIMARY_WEIGHT
    for log_weight, scale in _mixing_ladder(mixing_scale, primary_weight):
        c = counts.n / variance + 1.0 / (scale * scale)
        terms.append(
            log_weight
            + math.log(2.0)
            - 0.5 * math.log1p(counts.n * scale * scale / variance)
            + _log_half_normal_factor(a / math.sqrt(c))
        )
    top = max(terms)
    return top + math.log(sum(math.exp(term - top) for term in terms))


def _mixing_ladder(mixing_scale: float, primary_weight: float = _PRIMARY_WEIGHT) -> tuple[tuple[float, float], ...]:
    """(log weight, τ) pairs: `primary_weight` on τ, the rest shared by 4τ, 16τ, … up to the first τ ≥ 1."""
    scales = [mixing_scale]
    while scales[-1] < 1.0 and len(scales) < 12:
        scales.append(scales[-1] * _LADDER_FACTOR)
    if len(scales) == 1:
        return ((0.0, mixing_scale),)
    rest = math.log((1.0 - primary_weight) / (len(scales) - 1))
    return ((math.log(primary_weight), scales[0]), *((rest, scale) for scale in scales[1:]))


def mixture_rejects(
    counts: PairedCounts, mu0: float, alternative: Alternative, confidence: float, mixing_scale: float
) -> bool:
    """True when the one-sided mSPRT rejects E[d] on the null side of mu0 at level α = 1 − confidence."""
    _check_confidence(confidence)
    return mixture_log_statistic(counts, mu0, alternative, mixing_scale) >= -math.log(1.0 - confidence)


@dataclass(frozen=True, slots=True)
class DifferenceBounds:
    """One-sided anytime-valid bounds on E[d] = p_candidate − p_baseline_noise, each at `confidence`."""

    estimate: float | None
    lower: float
    upper: float


def sequential_bounds(counts: PairedCounts, confidence: float, mixing_scale: float) -> DifferenceBounds:
    """The confidence sequence for E[d] obtained by inverting the one-sided mSPRTs.

    lower = inf{mu0 : the "greater" test does not reject mu0},
    upper = sup{mu0 : the "less" test does not reject mu0},
    each a one-sided bound at `confidence` that holds simultaneously for every n (time-uniform), so
    the gate may recompute it after every batch. `upper` is the non-inferiority bound: upper ≤ margin
    shows, at `confidence`, that the candidate regresses at most `margin` more often than the
    baseline's own noise. Each end is the root of log Λ_n(mu0) = log(1/α) on its side of d̄, found by
    widening a bracket then regula falsi; this assumes, as holds here, that the statistic grows with
    the distance from d̄.
    """
    _check_confidence(confidence)
    estimate = counts.mean_difference
    if estimate is None:
        return DifferenceBounds(estimate=None, lower=-1.0, upper=1.0)
    threshold = -math.log(1.0 - confidence)

    def excess(mu0: float, alternative: Alternative) -> float:
        return mixture_log_statistic(counts, mu0, alternative, mixing_scale) - threshold

    # About two standard errors of d̄: where the search for each end starts.
    step = 2.0 * math.sqrt(counts.candidate_only + counts.baseline_only + 1.0) / counts.n
    lower = _boundary(lambda mu0: excess(mu0, "greater"), estimate, -1.0, step)
    upper = _boundary(lambda mu0: excess(mu0, "less"), estimate, 1.0, step)
    return DifferenceBounds(estimate=estimate, lower=lower, upper=upper)


def _boundary(excess: Callable[[float], float], inside: float, limit: float, step: float) -> float:
    """The point between `inside` (excess < 0) and `limit` where `excess` turns non-negative.

    Widens the bracket by doubling `step`, then narrows it by the Illinois variant of regula falsi
    (Dahlquist & Björck 1974), returning the last point still inside (excess < 0), so the bound is
    conservative. Returns `limit` when even it is not rejected.
    """
    direction = 1.0 if limit > inside else -1.0
    f_inside = excess(inside)
    outside = inside
    while True:
        outside = inside + direction * step
        if direction * (outside - limit) >= 0:
            outside = limit
        f_outside = excess(outside)
        if f_outside >= 0:
            break
        if outside == limit:
            return limit
        inside, f_inside, step = outside, f_outside, 2.0 * step
    stale_side = 0
    for _ in range(100):
        if abs(outside - inside) <= _BOUND_TOLERANCE:
            break
        middle = outside - f_outside * (outside - inside) / (f_outside - f_inside)
        if not min(inside, outside) < middle < max(inside, outside):
            middle = 0.5 * (inside + outside)
        f_middle = excess(middle)
        if f_middle >= 0:
            outside, f_outside = middle, f_middle
            if stale_side == -1:
                f_inside *= 0.5
            stale_side = -1
        else:
            inside, f_inside = middle, f_middle
            if stale_side == 1:
                f_outside *= 0.5
            stale_side = 1
    return inside


def score_statistic(counts: PairedCounts, mu0: float) -> float | None:
    """Tango's (1998) score z for H0: E[d] = mu0 with paired binary data, for one fixed-sample look.

    z = (d̄ − mu0) / √(σ̃²(mu0) / n), approximately N(0, 1) under H0 at a single pre-planned n.
    Checked after every batch it is no longer valid (its false-decision rate grows with each look);
    it is here as the fixed-sample reference the sequential test is benchmarked against.
    """
    estimate = counts.mean_difference
    if estimate is None:
        return None
    variance = max(restricted_variance(counts, mu0), _VARIANCE_FLOOR)
    return (estimate - mu0) / math.sqrt(variance / counts.n)


def paired_sample_size(
    p_candidate_only: float, p_baseline_only: float, margin: float, confidence: float, power: float
) -> int:
    """Pairs a single one-sided test at `margin` needs to reach `power` at the given discordant rates.

    Nam's (1997) formula for matched-pair non-inferiority, with μ₁ = p_c − p_b the true difference:
    n = ⌈(z_{conf}·σ₀ + z_{power}·σ₁)² / (μ₁ − margin)²⌉, where σ₁² = p_c + p_b − μ₁² and σ₀² is the
    restricted variance at the margin (Tango 1998) evaluated at the expected counts.
    """
    _check_confidence(confidence)
    _check_confidence(power)
    mu1 = p_candidate_only - p_baseline_only
    if mu1 == margin:
        raise ValueError("the true difference equals the margin: no sample size has power")
    sigma1 = math.sqrt(max(p_candidate_only + p_baseline_only - mu1 * mu1, 0.0))
    discordance0 = _restricted_discordance(1.0, p_candidate_only, p_baseline_only, margin)
    sigma0 = math.sqrt(max(discordance0 - margin * margin, 0.0))
    z_alpha = _NORMAL.inv_cdf(confidence)
    z_beta = _NORMAL.inv_cdf(power)
    return math.ceil(((z_alpha * sigma0 + z_beta * sigma1) / (mu1 - margin)) ** 2)
