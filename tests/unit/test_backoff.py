"""The shared backoff: the delays every retry loop in shadowd waits between attempts."""

from __future__ import annotations

import pytest

from shadowd.core.backoff import Backoff, exponential_delay


def test_delays_double_from_the_initial_one_up_to_the_cap() -> None:
    """Each delay is twice the last, starting at the initial delay and never above the maximum."""
    backoff = Backoff(0.5, 10.0)
    assert [backoff.next_delay() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.attempts == 7


def test_reset_starts_again_from_the_initial_delay() -> None:
    """After a success the next failure waits the initial delay again, not the last long one."""
    backoff = Backoff(0.2, 5.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == 0.2


def test_an_initial_delay_above_the_cap_is_kept_once_then_capped() -> None:
    """As the loops it replaced did: the first wait is the initial delay, later ones are capped."""
    backoff = Backoff(0.5, 0.2)
    assert [backoff.next_delay() for _ in range(3)] == [0.5, 0.2, 0.2]


@pytest.mark.parametrize(("initial", "maximum", "factor"), [(0.0, 1.0, 2.0), (-1.0, 1.0, 2.0), (1.0, 0.0, 2.0),
                                                            (1.0, 2.0, 0.5)])
def test_unusable_settings_are_refused(initial: float, maximum: float, factor: float) -> None:
    """A zero or negative delay or a shrinking factor would retry in a tight loop: refused at construction."""
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(initial, maximum, factor)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 0.5), (1, 0.5), (2, 1.0), (3, 2.0), (7, 30.0), (10_000, 30.0)],
)
def test_exponential_delay_by_attempt_number(attempt: int, expected: float) -> None:
    """The model client's delay for attempt N is base × 2^(N−1) capped; a huge N stays at the cap, no overflow."""
    assert exponential_delay(attempt, 0.5, 30.0) == expected


def test_exponential_delay_caps_an_initial_delay_above_the_maximum() -> None:
    """When the base exceeds the cap, even the first delay is the cap (the client's jitter range)."""
    assert exponential_delay(1, 5.0, 2.0) == 2.0
