"""Batches verdicts and dead letters into the store; a caller's await returns once its record is durable."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import structlog

from shadowd.metrics import Metrics
from shadowd.pipeline import RecordOutcome
from shadowd.ports import VerdictStore
from shadowd.records import DeadLetter, VerdictRecord

log = structlog.get_logger("shadowd.writer")


class BatchWriter:
    """Groups concurrent writes into one transaction; on store failure it retries, never drops.

    While the store is down, `write()` simply does not return, so callers stop committing offsets and
    the consumer's in-flight limit stops fetching: backpressure instead of loss.
    """

    def __init__(
        self,
        store: VerdictStore,
        metrics: Metrics | None = None,
        max_batch: int = 200,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
        linger_s: float = 0.005,
    ) -> None:
        self._store = store
        self._metrics = metrics or Metrics()
        self._max_batch = max_batch
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._linger_s = linger_s
        self._queue: asyncio.Queue[tuple[RecordOutcome, asyncio.Future[int]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.inserted = 0
        self.healthy = True

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shadowd-batch-writer")

    async def write(self, outcome: RecordOutcome) -> int:
        """Store the outcome's verdicts and dead letter; returns how many verdicts were new."""
        if self._task is None:
            raise RuntimeError("BatchWriter.start() was not called")
        if self._task.done():
            self._task.result()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self._queue.put((outcome, future))
        self._metrics.writer_queue.set(self._queue.qsize())
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._queue.qsize() < self._max_batch:
                # Linger briefly so verdicts that trickle in share one commit instead of one each.
                await asyncio.sleep(self._linger_s)
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._metrics.writer_queue.set(self._queue.qsize())
            verdicts: list[VerdictRecord] = [v for outcome, _ in batch for v in outcome.verdicts]
            letters: list[DeadLetter] = [o.dead_letter for o, _ in batch if o.dead_letter is not None]
            inserted = await self._save_until_stored(verdicts, letters)
            self.inserted += inserted
            for outcome, future in batch:
                if not future.done():
                    future.set_result(len(outcome.verdicts))

    async def _save_until_stored(self, verdicts: Sequence[VerdictRecord], letters: Sequence[DeadLetter]) -> int:
        delay = self._retry_initial_s
        while True:
            try:
                inserted = await self._store.save(verdicts, letters)
            except Exception as exc:  # any driver error: the database is down or refusing; keep the batch
                self.healthy = False
                self._metrics.store_errors.inc()
                log.error("store_write_failed", error=f"{type(exc).__name__}: {exc}"[:500], retry_in_s=delay,
                          verdicts=len(verdicts), dead_letters=len(letters))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            if not self.healthy:
                log.info("store_write_recovered", verdicts=len(verdicts))
            self.healthy = True
            return inserted
