"""The adaptive limit of model calls in flight, as pure logic: AIMD, episodes, quota pacing and headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shadowd.core.limiter import MAX_QUOTA_WAIT_S, AdaptiveLimit, Quota, parse_quotas

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def test_capacity_signal_halves_the_permits_down_to_the_floor() -> None:
    """Each new congestion episode halves the limit, and the limit never goes below min_limit."""
    limit = AdaptiveLimit(64, min_limit=4)
    assert limit.permits == 64
    t = 0.0
    seen = []
    for _ in range(6):
        t += 1.0
        limit.on_capacity(started_at=t, now=t + 0.5)
        seen.append(limit.permits)
    assert seen == [32, 16, 8, 4, 4, 4]


def test_calls_started_before_a_cut_do_not_cut_again() -> None:
    """A hundred calls failing together are one signal: only a call started after the last cut cuts again."""
    limit = AdaptiveLimit(100)
    assert limit.on_capacity(started_at=1.0, now=2.0)
    for _ in range(99):
        assert not limit.on_capacity(started_at=1.5, now=2.1)
    assert limit.permits == 50
    assert limit.on_capacity(started_at=2.05, now=3.0)  # near miss: started after the cut at 2.0
    assert limit.permits == 25


def test_successes_recover_slowly_and_never_past_the_maximum() -> None:
    """After a cut, about one permit comes back per limit's worth of successes, capped at max_limit."""
    limit = AdaptiveLimit(64)
    limit.on_capacity(started_at=0.0, now=0.0)
    assert limit.permits == 32
    for _ in range(40):
        limit.on_success()
    assert limit.permits == 33  # about one window of successes: one more permit, not a doubling
    for _ in range(100_000):
        limit.on_success()
    assert limit.permits == 64 and limit.limit == 64.0


def test_exhausted_quota_holds_new_calls_until_its_reset() -> None:
    """remaining 0 with a reset 5 s away: no call starts for 5 s; after that, calls start at once."""
    limit = AdaptiveLimit(10)
    limit.on_quotas([Quota("requests", 100, 0, 5.0)], now=100.0)
    assert limit.start_delay(100.0) == pytest.approx(5.0)
    assert limit.start_delay(103.0) == pytest.approx(2.0)
    assert limit.start_delay(105.0) == 0.0


def test_hold_is_capped_for_a_far_reset() -> None:
    """A reset an hour away (a skewed clock or a bad header) holds calls for at most MAX_QUOTA_WAIT_S."""
    limit = AdaptiveLimit(10)
    limit.on_quotas([Quota("tokens", 1000, 0, 3600.0)], now=0.0)
    assert limit.start_delay(0.0) == pytest.approx(MAX_QUOTA_WAIT_S)


def test_low_request_quota_spaces_call_starts_evenly() -> None:
    """5 requests left of 100 with 10 s to reset: calls start 2 s apart until the reset, then freely."""
    limit = AdaptiveLimit(10)
    limit.on_quotas([Quota("requests", 100, 5, 10.0)], now=0.0)
    starts = []
    t = 0.0
    for _ in range(3):
        t += limit.start_delay(t)
        limit.note_start(t)
        starts.append(t)
    assert starts == pytest.approx([0.0, 2.0, 4.0])
    assert limit.start_delay(10.5) == 0.0  # past the reset


def test_plenty_of_quota_changes_nothing() -> None:
    """Near miss: 50 of 100 requests left is not low; neither the delay nor the permits change."""
    limit = AdaptiveLimit(10)
    limit.on_quotas([Quota("requests", 100, 50, 10.0), Quota("tokens", 10_000, 5_000, 10.0)], now=0.0)
    assert limit.start_delay(0.0) == 0.0 and limit.permits == 10


def test_low_token_quota_drops_to_the_smallest_budget() -> None:
    """Fewer than 10 % of the tokens left: the limit drops to min_limit until successes raise it again."""
    limit = AdaptiveLimit(32, min_limit=2)
    limit.on_quotas([Quota("input-tokens", 100_000, 5_000, 30.0)], now=0.0)
    assert limit.permits == 2


def test_rate_limit_headers_are_parsed_and_bad_ones_left_out() -> None:
    """Well-formed families become quotas with seconds to reset; a malformed number or date is skipped."""
    reset = (NOW + timedelta(seconds=12)).isoformat().replace("+00:00", "Z")
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "3",
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-tokens-remaining": "NaN",
        "anthropic-ratelimit-tokens-reset": reset,
        "anthropic-ratelimit-input-tokens-remaining": "100",
        "anthropic-ratelimit-input-tokens-reset": "tomorrow",
        "anthropic-ratelimit-output-tokens-remaining": "7",
        "anthropic-ratelimit-output-tokens-reset": "2026-11-30T12:00:30",  # no zone: unusable
    }
    (quota,) = parse_quotas(headers, NOW)
    assert quota == Quota("requests", 50.0, 3.0, 12.0)


def test_bad_construction_is_refused() -> None:
    """A limit below one or a backoff outside (0, 1) is a programming error, named."""
    with pytest.raises(ValueError, match="max_limit"):
        AdaptiveLimit(0)
    with pytest.raises(ValueError, match="backoff"):
        AdaptiveLimit(4, backoff=1.0)
