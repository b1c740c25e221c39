"""The adaptive budget of model calls in flight: AIMD on capacity signals, paced by the API's quota headers.

Pure state: the caller passes every time (monotonic seconds) and does the waiting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from shadowd.core.timestamps import parse_rfc3339

# The quota families the Messages API reports as `anthropic-ratelimit-<family>-{limit,remaining,reset}`.
QUOTA_FAMILIES = ("requests", "tokens", "input-tokens", "output-tokens")
# Below this share of its limit, a quota is spread over the time left until it resets.
LOW_QUOTA_SHARE = 0.1
# A quota reset further away than this is not waited for in one piece (a clock skew or a bad header).
MAX_QUOTA_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class Quota:
    """One quota family as a response reported it: what is left and when it is full again."""

    family: str
    limit: float | None
    remaining: float
    reset_in_s: float


class AdaptiveLimit:
    """How many model calls may be in flight now, and when the next may start.

    - A capacity signal (429, 529, overload) multiplies the limit by `backoff`, at most once per
      congestion episode: only a call that started after the last cut can cut again, so a hundred
      calls failing together count as one signal.
    - Each success adds `recovery / limit` (about `recovery` permits per limit's worth of successes):
      the limit comes back slowly, as TCP's congestion window does.
    - A quota that is exhausted holds new calls until its reset; a quota below LOW_QUOTA_SHARE of its
      limit spaces new calls evenly over the time left, so the remaining budget lasts until the reset.
    """

    def __init__(
        self, max_limit: int, *, min_limit: int = 1, backoff: float = 0.5, recovery: float = 1.0
    ) -> None:
        if max_limit < 1:
            raise ValueError("max_limit must be at least 1")
        if not 0 < backoff < 1:
            raise ValueError("backoff must be in (0, 1)")
        self.max_limit = max_limit
        self.min_limit = max(1, min(min_limit, max_limit))
        self.backoff = backoff
        self.recovery = recovery
        self.limit = float(max_limit)
        self.cuts = 0
        self._last_cut_at = -math.inf
        self._hold_until = -math.inf  # no call starts before this
        self._spacing_s = 0.0  # while a quota runs low: the least time between two call starts
        self._spacing_until = -math.inf
        self._next_start_at = -math.inf

    @property
    def permits(self) -> int:
        """Calls allowed in flight now: the whole part of the limit, never below min_limit."""
        return max(self.min_limit, int(self.limit))

    def on_success(self) -> None:
        self.limit = min(float(self.max_limit), self.limit + self.recovery / max(self.limit, 1.0))

    def on_capacity(self, started_at: float, now: float) -> bool:
        """A call that began at `started_at` met a capacity error at `now`; True when the permits shrank."""
        if started_at <= self._last_cut_at:
            return False  # the cut already made answered the congestion this call met
        permits = self.permits
        self.limit = max(float(self.min_limit), self.limit * self.backoff)
        self._last_cut_at = now
        self.cuts += 1
        return self.permits < permits

    def hold(self, now: float, seconds: float) -> None:
        """Start no call for `seconds` (capped at MAX_QUOTA_WAIT_S)."""
        if seconds > 0:
            self._hold_until = max(self._hold_until, now + min(seconds, MAX_QUOTA_WAIT_S))

    def on_quotas(self, quotas: list[Quota], now: float) -> None:
        """Pace by the quotas a response reported: the tightest one decides."""
        spacing = 0.0
        spacing_until = -math.inf
        for quota in quotas:
            if quota.reset_in_s <= 0:
                continue
            if quota.remaining <= 0:
                self.hold(now, quota.reset_in_s)
                continue
            low = quota.limit is not None and quota.limit > 0 and quota.remaining < LOW_QUOTA_SHARE * quota.limit
            if low and quota.family == "requests":
                # Requests are counted one per call: spread what is left over the time to reset.
                wait = min(quota.reset_in_s, MAX_QUOTA_WAIT_S) / quota.remaining
                if wait > spacing:
                    spacing, spacing_until = wait, now + min(quota.reset_in_s, MAX_QUOTA_WAIT_S)
            elif low:
                # Token quotas: a call costs an unknown number of tokens, so run at the smallest budget.
                self.limit = min(self.limit, float(self.min_limit))
        if spacing > 0:
            self._spacing_s, self._spacing_until = spacing, spacing_until

    def start_delay(self, now: float) -> float:
        """How long a call that wants to start at `now` must wait first (0: it may start)."""
        wait = max(0.0, self._hold_until - now)
        if now < self._spacing_until:
            wait = max(wait, self._next_start_at - now)
        return wait

    def note_start(self, now: float) -> None:
        """A call starts at `now`: book its slot when calls are being spaced."""
        if now < self._spacing_until:
            self._next_start_at = max(now, self._next_start_at) + self._spacing_s


def parse_quotas(headers: Mapping[str, str], now_utc: datetime) -> list[Quota]:
    """The `anthropic-ratelimit-*` quotas in a response's headers; a malformed family is left out."""
    quotas: list[Quota] = []
    for family in QUOTA_FAMILIES:
        prefix = f"anthropic-ratelimit-{family}-"
        remaining = _number(headers.get(prefix + "remaining"))
        reset = headers.get(prefix + "reset")
        if remaining is None or reset is None:
            continue
        try:
            reset_at = parse_rfc3339(reset)
        except ValueError:
            continue
        quotas.append(
            Quota(
                family=family,
                limit=_number(headers.get(prefix + "limit")),
                remaining=remaining,
                reset_in_s=(reset_at - now_utc).total_seconds(),
            )
        )
    return quotas


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None
