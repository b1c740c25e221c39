"""`--since` values: an RFC 3339 time or a duration ago (90s, 30m, 2h, 7d), within years 1970..9999."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from shadowd.core.timestamps import parse_rfc3339

_DURATION = re.compile(r"^(\d{1,12})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def parse_since(value: str, now: datetime) -> datetime:
    """The time meant, in UTC; ValueError naming the problem for text that is neither form or out of range."""
    text = value.strip()
    match = _DURATION.match(text)
    if match:
        try:
            parsed = now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        except OverflowError:
            parsed = None
        if parsed is None or parsed < EARLIEST:
            raise ValueError(f"{value!r} reaches back before 1970") from None
        return parsed
    try:
        parsed = parse_rfc3339(text, naive_is_utc=True)
    except ValueError:
        raise ValueError(f"{value!r} is neither an RFC 3339 time nor a duration like 2h or 30m") from None
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value!r} is outside the years 1970 to 9998") from None
    if not EARLIEST <= parsed < LATEST:
        raise ValueError(f"{value!r} is outside the years 1970 to 9998")
    return parsed
