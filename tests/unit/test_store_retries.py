"""The writer counts store retries apart from store errors: an outage is retried, a refusal is not."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shadowd.metrics import Metrics
from shadowd.pipeline import RecordOutcome
from shadowd.ports import StoreRefused, StoreUnavailable
from shadowd.records import DeadLetter, SourceRecord, VerdictRecord
from shadowd.writer import BatchWriter
from tests.retention_scenario import verdict


class ScriptedStore:
    """A VerdictStore whose save() fails as scripted (an exception class per call), then succeeds."""

    def __init__(self, failures: list[type[Exception]]) -> None:
        self.failures = failures
        self.saved: list[tuple[int, int]] = []

    async def save(self, verdicts: Sequence[VerdictRecord], letters: Sequence[DeadLetter]) -> int:
        if self.failures:
            failure = self.failures.pop(0)
            if failure is StoreRefused:
                raise StoreRefused("string_too_long", "value too long")
            raise failure("scripted failure")
        self.saved.append((len(verdicts), len(letters)))
        return len(verdicts)

    async def ping(self) -> None:
        return None

    async def existing_verdicts(self, pairs: Any) -> set[tuple[str, str]]:
        return set()


def outcome(offset: int) -> RecordOutcome:
    record = SourceRecord(source="t", partition=0, offset=offset, value=b"{}", timestamp=datetime.now(UTC))
    return RecordOutcome(record=record, verdicts=[verdict("r", f"req-{offset}", datetime.now(UTC))])


def run_writer(store: ScriptedStore, metrics: Metrics) -> None:
    async def scenario() -> None:
        writer = BatchWriter(store, metrics, retry_initial_s=0.001, retry_max_s=0.002)
        await writer.start()
        try:
            await asyncio.wait_for(writer.write(outcome(1)), timeout=30)
        finally:
            await writer.close()

    asyncio.run(scenario())


def test_an_outage_counts_one_error_and_one_retry_per_failed_attempt() -> None:
    """Two unavailable answers then success: two errors, two `unavailable` retries, the rows stored once."""
    metrics, store = Metrics(), ScriptedStore([StoreUnavailable, StoreUnavailable])
    run_writer(store, metrics)
    sample = metrics.registry.get_sample_value
    assert sample("shadowd_store_errors_total") == 2
    assert sample("shadowd_store_retries_total", {"reason": "unavailable"}) == 2
    assert store.saved == [(1, 0)]


def test_a_refused_record_is_an_error_but_never_a_retry_of_the_same_rows() -> None:
    """Near miss: a refusal (batch, then the record alone) counts two errors and no retry; a dead letter
    is stored instead."""
    metrics, store = Metrics(), ScriptedStore([StoreRefused, StoreRefused])
    run_writer(store, metrics)
    sample = metrics.registry.get_sample_value
    assert sample("shadowd_store_errors_total") == 2
    assert all(sample("shadowd_store_retries_total", {"reason": r}) == 0
               for r in ("unavailable", "unclassified", "refused_dead_letter"))
    assert store.saved == [(0, 1)]
