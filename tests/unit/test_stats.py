"""Rates, percentiles and the anytime-valid bounds of shadowd.core.stats."""

from __future__ import annotations

import math
import random

import pytest

from shadowd.core.stats import (
    PairedCounts,
    mixture_log_statistic,
    mixture_rejects,
    paired_sample_size,
    percentile,
    restricted_variance,
    score_statistic,
    sequential_bounds,
    wilson_interval,
)


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3.
@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_published_values(successes: int, n: int, low: float, high: float) -> None:
    """The Wilson interval reproduces Newcombe's published 95% intervals to four decimals."""
    lower, upper = wilson_interval(successes, n, 0.95)
    assert lower == pytest.approx(low, abs=1e-4)
    assert upper == pytest.approx(high, abs=1e-4)


def test_wilson_edges() -> None:
    """No data gives (0, 1); all or no successes pin the matching end; wider confidence widens it."""
    assert wilson_interval(0, 0, 0.95) == (0.0, 1.0)
    assert wilson_interval(0, 50, 0.95)[0] == 0.0
    assert wilson_interval(50, 50, 0.95)[1] == 1.0
    narrow, wide = wilson_interval(10, 100, 0.90), wilson_interval(10, 100, 0.99)
    assert wide[0] < narrow[0] < 0.1 < narrow[1] < wide[1]


@pytest.mark.parametrize(("successes", "n", "confidence"), [(-1, 10, 0.95), (11, 10, 0.95), (1, 10, 1.0)])
def test_wilson_rejects_nonsense(successes: int, n: int, confidence: float) -> None:
    """Impossible counts or a confidence outside (0, 1) raise instead of returning a wrong interval."""
    with pytest.raises(ValueError):
        wilson_interval(successes, n, confidence)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 0.5, 2.5),
        ([float(v) for v in range(1, 101)], 0.95, 95.05),  # numpy.percentile(range(1, 101), 95)
        ([40.0, 10.0, 30.0, 20.0], 0.0, 10.0),
        ([40.0, 10.0, 30.0, 20.0], 1.0, 40.0),
        ([7.0], 0.95, 7.0),
        ([], 0.95, None),
    ],
)
def test_percentile_interpolates_linearly(values: list[float], q: float, expected: float | None) -> None:
    """percentile is Hyndman–Fan type 7 (numpy's and percentile_cont's default), None without values."""
    result = percentile(values, q)
    assert result == (None if expected is None else pytest.approx(expected))


def test_percentile_rejects_q_outside_unit_interval() -> None:
    """q is a fraction: percentile(values, 95) is a mistake and raises."""
    with pytest.raises(ValueError):
        percentile([1.0], 95)


def test_paired_counts_from_totals() -> None:
    """Per-side totals and their overlap become discordant counts; inconsistent totals raise."""
    counts = PairedCounts.from_totals(n=1000, candidate=30, baseline=12, both=2)
    assert (counts.candidate_only, counts.baseline_only) == (28, 10)
    assert counts.mean_difference == pytest.approx(0.018)
    assert PairedCounts(0, 0, 0).mean_difference is None
    with pytest.raises(ValueError):
        PairedCounts.from_totals(n=1000, candidate=3, baseline=12, both=4)
    with pytest.raises(ValueError):
        PairedCounts(n=10, candidate_only=6, baseline_only=5)


@pytest.mark.parametrize(
    ("counts", "mu0"),
    [
        (PairedCounts(1000, 30, 10), 0.01),
        (PairedCounts(1000, 10, 30), 0.01),
        (PairedCounts(2000, 40, 40), -0.01),
        (PairedCounts(300, 5, 9), -0.03),
        (PairedCounts(500, 0, 0), 0.02),
    ],
)
def test_restricted_variance_is_the_constrained_maximum_likelihood(counts: PairedCounts, mu0: float) -> None:
    """Tango's closed form equals a brute-force maximum of the likelihood under p_c − p_b = mu0."""

    def log_likelihood(p_baseline: float) -> float:
        p_candidate = p_baseline + mu0
        p_neither = 1 - p_candidate - p_baseline
        if min(p_candidate, p_baseline, p_neither) <= 0:
            return -math.inf
        concordant = counts.n - counts.candidate_only - counts.baseline_only
        return (
            counts.candidate_only * math.log(p_candidate)
            + counts.baseline_only * math.log(p_baseline)
            + concordant * math.log(p_neither)
        )

    low, high = max(0.0, -mu0), (1 - mu0) / 2
    grid = [low + (high - low) * i / 100_000 for i in range(1, 100_000)]
    best = max(grid, key=log_likelihood)
    assert restricted_variance(counts, mu0) == pytest.approx(2 * best + mu0 - mu0 * mu0, abs=1e-4)


def test_bounds_are_where_the_sequential_tests_stop_rejecting() -> None:
    """Each bound is not rejected by its one-sided mSPRT, and a point just beyond it is."""
    for counts in (PairedCounts(3000, 70, 52), PairedCounts(400, 1, 0), PairedCounts(200, 200, 0)):
        bounds = sequential_bounds(counts, 0.95, 0.01)
        assert bounds.lower <= (bounds.estimate or 0.0) <= bounds.upper
        assert not mixture_rejects(counts, bounds.lower, "greater", 0.95, 0.01)
        assert not mixture_rejects(counts, bounds.upper, "less", 0.95, 0.01)
        if bounds.lower > -1.0:
            assert mixture_rejects(counts, bounds.lower - 1e-6, "greater", 0.95, 0.01)
        if bounds.upper < 1.0:
            assert mixture_rejects(counts, bounds.upper + 1e-6, "less", 0.95, 0.01)


def test_bounds_shrink_with_data_and_widen_with_confidence() -> None:
    """More verdicts narrow the bounds; a higher confidence widens them; no data bounds nothing."""
    few, many = PairedCounts(1000, 20, 20), PairedCounts(10_000, 200, 200)
    assert sequential_bounds(many, 0.95, 0.01).upper < sequential_bounds(few, 0.95, 0.01).upper
    assert sequential_bounds(many, 0.99, 0.01).upper > sequential_bounds(many, 0.90, 0.01).upper
    empty = sequential_bounds(PairedCounts(0, 0, 0), 0.95, 0.01)
    assert (empty.estimate, empty.lower, empty.upper) == (None, -1.0, 1.0)


def test_a_candidate_that_breaks_everything_is_bounded_away_at_once() -> None:
    """200 verdicts that all regress put the lower bound far above any tolerance (the scale ladder)."""
    assert sequential_bounds(PairedCounts(200, 200, 0), 0.95, 0.01).lower > 0.5
    assert sequential_bounds(PairedCounts(200, 20, 0), 0.95, 0.01).lower > 0.01


def test_no_discordant_pair_is_not_infinite_precision() -> None:
    """With no discordant pair yet, the restricted variance keeps 200 verdicts from proving a 1% bound."""
    assert restricted_variance(PairedCounts(200, 0, 0), 0.01) > 0
    assert sequential_bounds(PairedCounts(200, 0, 0), 0.95, 0.01).upper > 0.01
    assert math.isfinite(mixture_log_statistic(PairedCounts(200, 0, 0), 0.0, "less", 0.01))


def _ever_rejects_truth(
    rng: random.Random, p_candidate_only: float, p_baseline_only: float, looks: int, batch: int
) -> tuple[bool, bool, bool]:
    """One stream, looked at after every batch: did the lower bound, the upper bound, or a naive
    fixed-sample z-test (re-run at every look) ever exclude the true difference?"""
    truth = p_candidate_only - p_baseline_only
    n = candidate_only = baseline_only = 0
    lower_missed = upper_missed = naive_missed = False
    for _ in range(looks):
        for _ in range(batch):
            u = rng.random()
            if u < p_candidate_only:
                candidate_only += 1
            elif u < p_candidate_only + p_baseline_only:
                baseline_only += 1
        n += batch
        counts = PairedCounts(n, candidate_only, baseline_only)
        lower_missed = lower_missed or mixture_rejects(counts, truth, "greater", 0.95, 0.01)
        upper_missed = upper_missed or mixture_rejects(counts, truth, "less", 0.95, 0.01)
        z = score_statistic(counts, truth)
        naive_missed = naive_missed or (z is not None and z < -1.6449)
    return lower_missed, upper_missed, naive_missed


@pytest.mark.parametrize(
    ("p_candidate_only", "p_baseline_only"),
    [(0.0196, 0.0196), (0.0199, 0.0099), (0.0495, 0.0495)],
    ids=["identical-q2%", "margin-q1%", "identical-q5%"],
)
def test_bounds_keep_coverage_under_repeated_looks(p_candidate_only: float, p_baseline_only: float) -> None:
    """Looking after every 50 verdicts up to 10,000, each 95% bound misses the truth in ≤ 5% of streams."""
    rng = random.Random(20240611)
    streams = 300
    results = [_ever_rejects_truth(rng, p_candidate_only, p_baseline_only, 200, 50) for _ in range(streams)]
    lower_miss = sum(r[0] for r in results) / streams
    upper_miss = sum(r[1] for r in results) / streams
    naive_miss = sum(r[2] for r in results) / streams
    assert lower_miss <= 0.05
    assert upper_miss <= 0.05
    # The same 200 looks with a fixed-sample test: the inflation the sequential test exists to prevent.
    assert naive_miss > 0.15


def test_paired_sample_size_matches_the_normal_approximation() -> None:
    """Nam's sample size is close to (z_α + z_β)²σ²/δ² and grows with the noise rate and the power."""
    z = 1.6448536269514722
    n = paired_sample_size(0.0196, 0.0196, margin=0.01, confidence=0.95, power=0.95)
    assert n == pytest.approx((2 * z) ** 2 * (0.0392 / 0.01**2), rel=0.05)
    assert paired_sample_size(0.0475, 0.0475, 0.01, 0.95, 0.95) > n
    assert paired_sample_size(0.0196, 0.0196, 0.01, 0.95, 0.80) < n
    with pytest.raises(ValueError):
        paired_sample_size(0.02, 0.01, margin=0.01, confidence=0.95, power=0.95)


def test_fixed_sample_size_delivers_its_power() -> None:
    """A single score test at Nam's n promotes an identical candidate in about 95% of simulated samples."""
    rng = random.Random(7)
    p = 0.0099
    n = paired_sample_size(p, p, margin=0.01, confidence=0.95, power=0.95)
    promoted = 0
    trials = 300
    for _ in range(trials):
        candidate_only = baseline_only = 0
        for _ in range(n):
            u = rng.random()
            if u < p:
                candidate_only += 1
            elif u < 2 * p:
                baseline_only += 1
        z = score_statistic(PairedCounts(n, candidate_only, baseline_only), 0.01)
        promoted += z is not None and z < -1.6449
    assert 0.90 <= promoted / trials <= 0.99
