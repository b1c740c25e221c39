"""The baseline's learned noise, Diffy-style: per route, how often its own second replay differs,
path by path and finding code by code (SPEC §8). Pure: the caller stores and loads the counts."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from shadowd.core.findings import Code

DEFAULT_VALUE_NOISE_THRESHOLD = 0.05
# Learned rates cover the noise-checked requests of this recent window: the pipeline applies them and
# the report shows them over it; retention keeps the buckets twice as long (shadowd.core.retention).
NOISE_WINDOW = timedelta(hours=24)
# Codes never learned as noise: value.changed is learned per path instead (a code-wide rate would
# silence every value the moment one path varies), and a failed call is not a difference.
UNLEARNED_CODES = frozenset({Code.VALUE_CHANGED, Code.ERROR_CANDIDATE})
# While a route has fewer noise-checked requests than this in the window, every request of it is
# noise-checked whatever the fraction: a change on a path nobody has measured yet must not be
# counted against the candidate for lack of a noise model.
WARMUP_REQUESTS = 20
# Storage kinds of a count row.
KIND_PATH = "path"
KIND_CODE = "code"
KIND_REQUESTS = "requests"


def noise_checked(rollout: str, request_id: str, fraction: float) -> bool:
    """Whether this request's baseline is replayed a second time: a deterministic hash of rollout and
    request id below `fraction`, so a redelivered record gets the same answer."""
    if fraction >= 1.0:
        return True
    if fraction <= 0.0:
        return False
    digest = hashlib.sha256(f"noise\0{rollout}\0{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass(frozen=True, slots=True)
class NoiseObservation:
    """What one noise-checked request says: per value path whether the baseline's second replay
    differed, and the codes its comparison with the baseline found."""

    paths: tuple[tuple[str, bool], ...]
    codes: tuple[str, ...]

    def rows(self) -> list[tuple[str, str, int]]:
        """(kind, key, differed) rows, one per path and code, plus the request itself."""
        rows = [(KIND_REQUESTS, "", 0)]
        rows.extend((KIND_PATH, key, int(differed)) for key, differed in self.paths)
        rows.extend((KIND_CODE, code, 1) for code in self.codes if code not in UNLEARNED_CODES)
        return rows


@dataclass(frozen=True, slots=True)
class Rate:
    differed: int
    samples: int

    @property
    def rate(self) -> float:
        return self.differed / self.samples if self.samples > 0 else 0.0


@dataclass(slots=True)
class NoiseModel:
    """Counts over a recent window for one baseline model and route; comparisons read it."""

    threshold: float = DEFAULT_VALUE_NOISE_THRESHOLD
    requests: int = 0
    paths: dict[str, list[int]] = field(default_factory=dict)  # key -> [differed, samples]
    codes: dict[str, int] = field(default_factory=dict)  # code -> requests where it differed

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, int, int]], threshold: float) -> NoiseModel:
        """From stored (kind, key, samples, differed) sums."""
        model = cls(threshold=threshold)
        for kind, key, samples, differed in rows:
            if kind == KIND_REQUESTS:
                model.requests += samples
            elif kind == KIND_PATH:
                entry = model.paths.setdefault(key, [0, 0])
                entry[0] += differed
                entry[1] += samples
            elif kind == KIND_CODE:
                model.codes[key] = model.codes.get(key, 0) + differed
        return model

    def add(self, observation: NoiseObservation) -> None:
        self.requests += 1
        for key, differed in observation.paths:
            entry = self.paths.setdefault(key, [0, 0])
            entry[0] += int(differed)
            entry[1] += 1
        for code in observation.codes:
            if code not in UNLEARNED_CODES:
                self.codes[code] = self.codes.get(code, 0) + 1

    def path_rate(self, key: str) -> Rate | None:
        entry = self.paths.get(key)
        return None if entry is None else Rate(entry[0], entry[1])

    def code_rate(self, code: str) -> Rate | None:
        if code in UNLEARNED_CODES or self.requests <= 0:
            return None
        return Rate(min(self.codes.get(code, 0), self.requests), self.requests)

    def noisy_path(self, key: str) -> Rate | None:
        """The path's rate when it is at or above the threshold, else None."""
        rate = self.path_rate(key)
        return rate if rate is not None and rate.samples > 0 and rate.rate >= self.threshold else None

    def noisy_code(self, code: str) -> Rate | None:
        rate = self.code_rate(code)
        return rate if rate is not None and rate.differed > 0 and rate.rate >= self.threshold else None


def describe(rate: Rate, what: str = "noise-checked requests") -> str:
    return f"the baseline differs from itself here on {rate.rate:.1%} of {rate.samples} {what}"
