"""Scripted capacity faults: windows of time in which the fake API is rate-limited, overloaded or down.

They hit every model alike (baseline and candidate), are drawn per call (a retry may pass), and
run on a clock that starts at the first Messages API call, so a test's timing does not depend on
how long its daemon took to start.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# fault -> what the API does while its window is open
CAPACITY_FAULTS = {
    "rate_limited": "429 rate_limit_error with retry-after",
    "overloaded": "529 overloaded_error with retry-after",
    "stream_overloaded": "a streamed answer stops with an `overloaded_error` event after part of it was sent",
    "unavailable": "503 for every call",
    "down": "connection refused: the port stops listening and open connections are dropped",
}
_WINDOW_KEYS = frozenset({"fault", "rate", "from_s", "for_s", "every_s", "retry_after_s"})


@dataclass(frozen=True, slots=True)
class RequestQuota:
    """A fixed-window request quota (`rate_limit: {requests: N, per_s: T}`): every answer carries the
    `anthropic-ratelimit-requests-*` headers, and a call over the quota gets a 429 with retry-after."""

    requests: int
    per_s: float

    def window(self, t: float) -> tuple[int, float]:
        """The window `t` falls in and the seconds left in it."""
        index = int(t // self.per_s)
        return index, (index + 1) * self.per_s - t


class CapacityError(ValueError):
    """A `capacity` entry that cannot be used; the message names the key and the source."""


@dataclass(frozen=True, slots=True)
class CapacityWindow:
    """One fault, on `rate` of the calls, from `from_s` for `for_s` seconds, again every `every_s`."""

    fault: str
    rate: float = 1.0
    from_s: float = 0.0
    for_s: float = math.inf
    every_s: float | None = None
    retry_after_s: float | None = None

    def is_open(self, t: float) -> bool:
        """Whether the window is open `t` seconds after the first call."""
        if t < self.from_s:
            return False
        since = t - self.from_s
        if self.every_s is not None:
            since %= self.every_s
        return since < self.for_s

    def seconds_until_change(self, t: float) -> float:
        """Seconds from `t` until the window next opens or closes (inf when it never does)."""
        if t < self.from_s:
            return self.from_s - t
        since = t - self.from_s
        if self.every_s is None:
            return self.for_s - since if since < self.for_s else math.inf
        phase = since % self.every_s
        return self.for_s - phase if phase < self.for_s else self.every_s - phase


@dataclass(frozen=True, slots=True)
class CapacityPlan:
    """Every capacity window of a behaviours file, and the per-call decision they make."""

    windows: tuple[CapacityWindow, ...] = ()

    def fault_at(self, t: float, streamed: bool, draw: Callable[[], float]) -> CapacityWindow | None:
        """The window that hits a call made `t` seconds after the first one; `draw()` gives U[0, 1)."""
        for window in self.windows:
            if window.fault == "down" or not window.is_open(t):
                continue
            if window.fault == "stream_overloaded" and not streamed:
                continue
            if draw() < window.rate:
                return window
        return None

    def down_at(self, t: float) -> bool:
        return any(w.fault == "down" and w.is_open(t) for w in self.windows)

    def next_down_change(self, t: float) -> float:
        return min((w.seconds_until_change(t) for w in self.windows if w.fault == "down"), default=math.inf)


def parse_capacity(document: Any, source: str) -> CapacityPlan:
    """Read the top-level `capacity` list of a behaviours file."""
    if document is None:
        return CapacityPlan()
    if not isinstance(document, list):
        raise CapacityError(f"{source}: `capacity` must be a list of fault windows")
    windows = []
    for index, entry in enumerate(document):
        key = f"capacity[{index}]"
        if not isinstance(entry, dict):
            raise CapacityError(f"{source}: `{key}` must be a mapping with a `fault` key")
        for name in entry:
            if name not in _WINDOW_KEYS:
                raise CapacityError(f"{source}: unknown key `{key}.{name}` (known: {', '.join(sorted(_WINDOW_KEYS))})")
        fault = entry.get("fault")
        if fault not in CAPACITY_FAULTS:
            raise CapacityError(
                f"{source}: `{key}.fault` must be one of {', '.join(CAPACITY_FAULTS)}, got {fault!r}"
            )
        for_s = _number(entry.get("for_s"), f"{key}.for_s", source, positive=True)
        every_s = _number(entry.get("every_s"), f"{key}.every_s", source, positive=True)
        if every_s is not None and (for_s is None or for_s > every_s):
            raise CapacityError(f"{source}: `{key}.every_s` needs a `for_s` no longer than itself")
        rate = _number(entry.get("rate", 1.0), f"{key}.rate", source)
        if rate is None or rate > 1:
            raise CapacityError(f"{source}: `{key}.rate` must be in [0, 1], got {entry.get('rate')!r}")
        windows.append(
            CapacityWindow(
                fault=fault,
                rate=rate,
                from_s=_number(entry.get("from_s", 0), f"{key}.from_s", source) or 0.0,
                for_s=math.inf if for_s is None else for_s,
                every_s=every_s,
                retry_after_s=_number(entry.get("retry_after_s"), f"{key}.retry_after_s", source),
            )
        )
    return CapacityPlan(tuple(windows))


def parse_rate_limit(document: Any, source: str) -> RequestQuota | None:
    """Read the top-level `rate_limit` mapping of a behaviours file."""
    if document is None:
        return None
    if not isinstance(document, dict) or set(document) != {"requests", "per_s"}:
        raise CapacityError(f"{source}: `rate_limit` must be a mapping with `requests` and `per_s`")
    requests = document["requests"]
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise CapacityError(f"{source}: `rate_limit.requests` must be a positive integer, got {requests!r}")
    per_s = _number(document["per_s"], "rate_limit.per_s", source, positive=True)
    assert per_s is not None
    return RequestQuota(requests, per_s)


def _number(value: Any, key: str, source: str, *, positive: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CapacityError(f"{source}: `{key}` must be a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise CapacityError(f"{source}: `{key}` must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)
