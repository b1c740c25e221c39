"""One RFC 3339 parser for envelopes, `--since` and reset headers: what each mode accepts and refuses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shadowd.core.timestamps import parse_rfc3339


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T04:10:46Z", datetime(2026, 12, 1, 4, 10, 46, tzinfo=UTC)),
        ("2026-12-01t04:10:46z", datetime(2026, 12, 1, 4, 10, 46, tzinfo=UTC)),
        (" 2026-12-01T04:10:46.123+02:00 ",
         datetime(2026, 12, 1, 4, 10, 46, 123000, tzinfo=timezone(timedelta(hours=2)))),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ],
    ids=["Z", "lowercase", "offset-and-spaces", "year-1"],
)
def test_strict_parse_accepts_rfc3339(text: str, expected: datetime) -> None:
    """A date-time with T and an offset parses to that aware moment."""
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2026-12-01", "lacks a date-time with an offset"),
        ("2026-12-01T04:10:46", "lacks a date-time with an offset"),
        ("2026-12-01 04:10:46+00:00", "lacks a date-time with an offset"),
        ("yesterday", "is not an RFC 3339 timestamp"),
        ("2026-12-01T04:1\x000:46Z", "is not an RFC 3339 timestamp"),
        ("2026-12-01T04:10:46\ud800Z", "is not an RFC 3339 timestamp"),
        ("x" * 500, "is not an RFC 3339 timestamp"),
    ],
    ids=["date-only", "no-offset", "space", "words", "nul", "lone-surrogate", "huge"],
)
def test_strict_parse_names_the_problem(text: str, problem: str) -> None:
    """Strict mode refuses anything but a T-separated date-time with offset, quoting at most 64 characters."""
    with pytest.raises(ValueError, match=problem) as caught:
        parse_rfc3339(text)
    assert len(str(caught.value)) < 140


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01T04:10", datetime(2026, 12, 1, 4, 10, tzinfo=UTC)),
        ("2026-12-01 04:10+01:00", datetime(2026, 12, 1, 4, 10, tzinfo=timezone(timedelta(hours=1)))),
    ],
    ids=["date-only", "no-offset", "space"],
)
def test_lenient_parse_reads_naive_times_as_utc(text: str, expected: datetime) -> None:
    """With naive_is_utc (a command line), a date alone or a time without offset is UTC."""
    assert parse_rfc3339(text, naive_is_utc=True) == expected
