"""Percentiles from log-spaced buckets stay within the buckets' resolution of the exact ones."""

from __future__ import annotations

import random
from collections import Counter

from shadowd.core.histogram import bucket_of, bucket_value, histogram_percentile
from shadowd.core.stats import percentile


def test_bucket_round_trip_is_within_two_percent() -> None:
    """A value's bucket reports it back within the 2 % bucket width."""
    for value in (0.5, 1.0, 17.3, 250.0, 1999.9, 65_000.0):
        assert abs(bucket_value(bucket_of(value)) - value) / value < 0.02


def test_histogram_percentiles_match_exact_ones() -> None:
    """p50 and p95 from buckets are within 2 % of the exact percentiles of the same values."""
    rng = random.Random(3)
    values = [rng.lognormvariate(5, 0.8) for _ in range(20_000)]
    counts = Counter(bucket_of(v) for v in values)
    for q in (0.5, 0.95):
        exact = percentile(values, q)
        approx = histogram_percentile(counts, q)
        assert exact is not None and approx is not None
        assert abs(approx - exact) / exact < 0.02


def test_empty_histogram_has_no_percentile() -> None:
    """No values, no percentile (rather than a made-up zero)."""
    assert histogram_percentile({}, 0.95) is None
    assert bucket_of(0.0) == 0
