"""Log-spaced latency buckets: percentiles from counts, so reports need not sort every verdict."""

from __future__ import annotations

import math
from collections.abc import Mapping

# Bucket k holds values in [FLOOR_MS * GROWTH**k, FLOOR_MS * GROWTH**(k+1)): 2 % wide, so a
# percentile read from the buckets is within about 1 % of the exact one.
FLOOR_MS = 0.1
GROWTH = 1.02
_LOG_GROWTH = math.log(GROWTH)


def bucket_of(value_ms: float) -> int:
    if not value_ms > FLOOR_MS:
        return 0
    return int(math.log(value_ms / FLOOR_MS) / _LOG_GROWTH)


def bucket_value(bucket: int) -> float:
    """The bucket's geometric middle: the value reported for anything that fell in it."""
    return float(FLOOR_MS * GROWTH ** (bucket + 0.5))


def histogram_percentile(counts: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0..1) of the values counted per bucket; None when nothing was counted."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = q * (total - 1)
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen > rank:
            return bucket_value(bucket)
    return bucket_value(max(counts))
