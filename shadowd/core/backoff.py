"""Exponential backoff as data: the delays between retries; the caller does the waiting."""

from __future__ import annotations

from dataclasses import dataclass, field

# Past this many doublings every delay is at its cap anyway; stops a huge attempt count overflowing a float.
_MAX_DOUBLINGS = 64


def exponential_delay(attempt: int, initial_s: float, maximum_s: float, factor: float = 2.0) -> float:
    """The delay before retry `attempt` (1 for the first): initial × factor^(attempt − 1), never above maximum."""
    if attempt <= 1:
        return min(initial_s, maximum_s)
    steps = min(attempt - 1, _MAX_DOUBLINGS)
    return float(min(maximum_s, initial_s * factor**steps))


@dataclass(slots=True)
class Backoff:
    """Successive delays for one retry loop: `next_delay()` gives the initial delay, then each one
    `factor` times the last, capped at the maximum. `reset()` after a success starts again.
    """

    initial_s: float
    maximum_s: float
    factor: float = 2.0
    _next: float | None = field(default=None, init=False)
    _attempts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not (self.initial_s > 0 and self.maximum_s > 0 and self.factor >= 1):
            raise ValueError(
                f"backoff needs initial ({self.initial_s}) > 0, maximum ({self.maximum_s}) > 0 and factor >= 1"
            )

    def next_delay(self) -> float:
        delay = self.initial_s if self._next is None else self._next
        self._next = min(delay * self.factor, self.maximum_s)
        self._attempts += 1
        return delay

    def reset(self) -> None:
        self._next = None
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """Delays handed out since the start or the last reset."""
        return self._attempts
