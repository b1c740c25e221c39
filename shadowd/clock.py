"""The wall clock, read in one place: every time shadowd stamps or compares against is aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now, in UTC. Services take a `clock` defaulting to this, so tests can pass their own."""
    return datetime.now(UTC)
