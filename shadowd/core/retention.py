"""Retention rules (pure): which verdicts of a rollout may be deleted, how long learned-noise buckets
are kept, and what a purge reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shadowd.core.noise import NOISE_WINDOW

# Purge tables as reported (CLI, metrics): `verdict_outputs` counts verdicts whose outputs were emptied.
TABLES = ("verdicts", "findings", "verdict_outputs", "dead_letters", "noise_counts")
# Learned-noise buckets older than this are read by no one (the pipeline and the report read the last
# NOISE_WINDOW): derived from the window, with a window's margin, so a longer window keeps them longer.
NOISE_COUNTS_KEPT: timedelta = 2 * NOISE_WINDOW
# Rollout states whose current stage keeps its verdicts: a decision is still to be taken on them.
LIVE_STATES = frozenset({"active", "paused"})


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Rows created strictly before these instants are purged; None keeps that kind forever."""

    verdicts_before: datetime | None = None
    outputs_before: datetime | None = None
    dead_letters_before: datetime | None = None
    noise_counts_before: datetime | None = None  # by hourly bucket start, not by row creation


def verdict_cutoff(
    cutoff: datetime | None, state: str | None, stage_started_at: datetime | None, configured: bool
) -> datetime | None:
    """Before when one rollout's verdicts may be deleted (None: keep them all).

    `state` is the rollout's stored state (None when it has no state row yet). An active or paused
    rollout keeps its current stage, whatever its age: the cutoff moves back to the stage's start. A
    configured rollout the promoter has not evaluated yet keeps everything: all of it may be evidence
    for its first decision. A rolled-back or complete rollout, or an unknown one, has the plain cutoff.
    """
    if cutoff is None:
        return None
    if state is None:
        return None if configured else cutoff
    if state in LIVE_STATES and stage_started_at is not None:
        return min(cutoff, stage_started_at)
    return cutoff


@dataclass(slots=True)
class TableFigures:
    rows: int = 0  # purged (or, in a dry run, that would be)
    # created_at of the oldest row left (outputs: still holding them; noise counts: the oldest bucket)
    oldest_kept: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "oldest_kept": self.oldest_kept.isoformat() if self.oldest_kept else None}


@dataclass(slots=True)
class PurgeResult:
    dry_run: bool
    tables: dict[str, TableFigures] = field(default_factory=lambda: {t: TableFigures() for t in TABLES})
    statements: int = 0
    longest_statement_s: float = 0.0
    longest_statement: str = ""  # which kind: e.g. "delete verdicts", "empty outputs"
    elapsed_s: float = 0.0
    complete: bool = True  # False when the time budget ended the purge before it ran out of rows
    protected_verdicts: int = 0  # old verdicts kept because their rollout still decides on them

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "tables": {name: figures.to_dict() for name, figures in self.tables.items()},
            "statements": self.statements,
            "longest_statement_s": round(self.longest_statement_s, 6),
            "longest_statement": self.longest_statement,
            "elapsed_s": round(self.elapsed_s, 6),
            "complete": self.complete,
            "protected_verdicts": self.protected_verdicts,
        }
