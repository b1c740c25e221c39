"""RFC 3339 timestamps, parsed one way everywhere: envelopes, `--since`, rate-limit reset headers."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_rfc3339(value: str, *, naive_is_utc: bool = False) -> datetime:
    """The moment an RFC 3339 date-time names (`Z` or `z` is UTC); ValueError naming the problem.

    Strict by default: a date-time with `T` and an offset. With `naive_is_utc` (what a person types
    on a command line) a date alone or a time without offset is read as UTC.
    """
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value[:64]!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None and naive_is_utc:
        return parsed.replace(tzinfo=UTC)
    if not naive_is_utc and (parsed.tzinfo is None or "T" not in text.upper()):
        raise ValueError(f"{value[:64]!r} lacks a date-time with an offset")
    return parsed
