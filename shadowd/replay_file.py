"""`shadowd replay FILE`: the pipeline over a JSONL file of envelopes, with a summary at the end."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shadowd.pipeline import ShadowPipeline
from shadowd.record_guard import replay_or_dead_letter
from shadowd.records import SourceRecord
from shadowd.writer import BatchWriter


@dataclass(slots=True)
class ReplaySummary:
    records: int = 0
    verdicts: int = 0
    already_present: int = 0
    unmatched: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    errors_by_reason: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "verdicts": self.verdicts,
            "already_present": self.already_present,
            "unmatched": self.unmatched,
            "dead_letters": dict(self.dead_letters),
            "statuses": dict(self.statuses),
            "errors_by_reason": dict(self.errors_by_reason),
            "elapsed_s": round(self.elapsed_s, 3),
        }


def read_records(path: Path) -> Iterator[SourceRecord]:
    """One record per non-blank line; the offset is the 1-based line number, so reruns dedupe."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            value = line.rstrip(b"\r\n")
            if value.strip():
                yield SourceRecord(source=f"file:{path.resolve()}", partition=0, offset=number, value=value)


async def replay_file(
    path: Path,
    pipeline: ShadowPipeline,
    writer: BatchWriter,
    *,
    records_in_flight: int,
    on_record: Callable[[], None] | None = None,
) -> ReplaySummary:
    summary = ReplaySummary()
    started = time.perf_counter()
    slots = asyncio.Semaphore(max(1, records_in_flight))

    async def one(record: SourceRecord) -> None:
        try:
            # Never raises for one record: a record that cannot be replayed or stored is a dead letter,
            # so one bad line cannot end the run for the lines around it.
            outcome = await replay_or_dead_letter(pipeline, record)
            await writer.write(outcome)
        finally:
            slots.release()
        summary.records += 1
        summary.already_present += outcome.already_done
        if outcome.dead_letter is not None:
            summary.dead_letters[outcome.dead_letter.reason] += 1
        elif not outcome.verdicts and not outcome.already_done:
            summary.unmatched += 1
        for verdict in outcome.verdicts:
            summary.statuses[verdict.status.value] += 1
            if verdict.error_reason is not None:
                summary.errors_by_reason[verdict.error_reason] += 1
        summary.verdicts += len(outcome.verdicts)
        if on_record is not None:
            on_record()

    async with asyncio.TaskGroup() as group:
        for record in read_records(path):
            await slots.acquire()
            group.create_task(one(record))
    summary.elapsed_s = time.perf_counter() - started
    return summary


def count_records(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())
