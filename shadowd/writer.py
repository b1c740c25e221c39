"""Batches verdicts and dead letters into the store; a caller's await returns once its record is durable."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

import structlog

from shadowd.clock import utc_now
from shadowd.core.backoff import Backoff
from shadowd.metrics import Metrics
from shadowd.pipeline import RecordOutcome
from shadowd.ports import StoreRefused, StoreUnavailable, VerdictStore
from shadowd.records import DeadLetter, SourceRecord, VerdictRecord

log = structlog.get_logger("shadowd.writer")

# An error the store could not classify, raised again while the store answers pings, is taken as the
# rows' own after this many tries: better one dead letter than a partition that never moves.
UNCLASSIFIED_TRIES = 3


class BatchWriter:
    """Groups concurrent writes into one transaction; retries outages forever and never drops a record.

    While the store is down, `write()` simply does not return, so callers stop committing offsets and
    the consumer's in-flight limit stops fetching: backpressure instead of loss. A batch the store refuses
    (a data error, not an outage) is split and written record by record; a record refused on its own
    becomes a dead letter `unstorable:<what>` with its original bytes, and its neighbours are stored.
    """

    def __init__(
        self,
        store: VerdictStore,
        metrics: Metrics | None = None,
        max_batch: int = 200,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
        linger_s: float = 0.005,
        dead_letter: Callable[[SourceRecord, str, str], DeadLetter] | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics or Metrics()
        self._max_batch = max_batch
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._linger_s = linger_s
        # Builds the `unstorable:` letter; the pipeline's applies privacy.dead_letter_payload to the bytes.
        self._dead_letter = dead_letter
        self._queue: asyncio.Queue[tuple[RecordOutcome, asyncio.Future[int]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.unstorable = 0
        self.healthy = True
        self._failing_since: float | None = None
        self._last_error = ""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="shadowd-batch-writer")

    async def write(self, outcome: RecordOutcome) -> int:
        """Store the outcome's verdicts and dead letter; returns how many verdicts it holds once stored.

        When the store refuses the record's verdicts, the outcome comes back changed: no verdicts, and
        `outcome.dead_letter` set to the `unstorable:<what>` letter that was stored instead.
        """
        if self._task is None:
            raise RuntimeError("BatchWriter.start() was not called")
        if self._task.done():
            self._task.result()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self._queue.put((outcome, future))
        self._metrics.writer_queue.set(self._queue.qsize())
        return await future

    def stuck_reason(self) -> str | None:
        """Why writes are not getting through (for readiness), or None while they are."""
        if self.healthy or self._failing_since is None:
            return None
        seconds = time.monotonic() - self._failing_since
        return f"store writes failing for {seconds:.0f} s ({self._last_error}); retrying, offsets are held"

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
            outcomes = [outcome for outcome, _ in batch]
            try:
                await self._save_until_stored(
                    [v for o in outcomes for v in o.verdicts], [o.dead_letter for o in outcomes if o.dead_letter]
                )
            except StoreRefused as exc:
                log.warning("store_refused_batch", what=exc.what, records=len(outcomes))
                for outcome in outcomes:
                    await self._store_alone(outcome)
            for outcome, future in batch:
                if not future.done():
                    future.set_result(len(outcome.verdicts))

    async def _store_alone(self, outcome: RecordOutcome) -> None:
        """Write one record's rows by themselves; if the store refuses them, store a dead letter instead."""
        letters = [outcome.dead_letter] if outcome.dead_letter else []
        try:
            await self._save_until_stored(outcome.verdicts, letters)
            return
        except StoreRefused as exc:
            refused = exc
        record = outcome.record
        reason = f"unstorable:{refused.what}"
        detail = f"the store refused this record's rows: {refused.detail}"
        if self._dead_letter is not None:
            letter = self._dead_letter(record, reason, detail)
        else:
            letter = DeadLetter(
                source=record.source, partition=record.partition, offset=record.offset, reason=reason,
                detail=detail, payload=record.value, created_at=utc_now(),
            )
            self._metrics.dead_letters.labels(letter.reason).inc()
            log.warning(
                "dead_letter", reason=letter.reason, detail=letter.detail[:300], source=record.source,
                partition=record.partition, offset=record.offset,
            )
        try:
            await self._save_until_stored([], [letter])
        except StoreRefused as exc:
            # The dead-letter row is built to be storable (escaped text, bytes payload); if even that is
            # refused, nothing can be written for this record and holding it is the only honest choice.
            log.error("dead_letter_unstorable", error=str(exc)[:300], partition=record.partition,
                      offset=record.offset)
            await self._save_until_stored([], [letter], refused_is_outage=True)
        self.unstorable += 1
        outcome.verdicts = []
        outcome.dead_letter = letter

    async def _save_until_stored(
        self,
        verdicts: Sequence[VerdictRecord],
        letters: Sequence[DeadLetter],
        *,
        refused_is_outage: bool = False,
    ) -> int:
        """Save, retrying for as long as the store is unavailable; a refusal is raised to the caller."""
        backoff = Backoff(self._retry_initial_s, self._retry_max_s)
        unclassified = 0
        while True:
            delay = backoff.next_delay()
            try:
                inserted = await self._store.save(verdicts, letters)
            except StoreRefused as exc:
                self._metrics.store_errors.inc()
                if not refused_is_outage:
                    self._recovered(verdicts)
                    raise
                self._failed(exc, delay, verdicts, letters, "refused_dead_letter")
            except StoreUnavailable as exc:
                self._metrics.store_errors.inc()
                self._failed(exc, delay, verdicts, letters, "unavailable")
            except Exception as exc:  # unclassified: an outage unless the store answers and it happens again
                self._metrics.store_errors.inc()
                unclassified += 1
                if unclassified >= UNCLASSIFIED_TRIES and await self._store_answers():
                    self._recovered(verdicts)
                    raise StoreRefused("store_error", f"{type(exc).__name__}: {exc}"[:300]) from exc
                self._failed(exc, delay, verdicts, letters, "unclassified")
            else:
                self._recovered(verdicts)
                return inserted
            await asyncio.sleep(delay)

    def _failed(
        self, exc: Exception, delay: float, verdicts: Sequence[VerdictRecord], letters: Sequence[DeadLetter],
        retry_reason: str,
    ) -> None:
        """A write failed and the same rows will be tried again after `delay`."""
        if self.healthy:
            self._failing_since = time.monotonic()
        self.healthy = False
        # Only the kind of error reaches readiness: driver messages can name hosts and users.
        self._last_error = "store unavailable" if isinstance(exc, StoreUnavailable) else type(exc).__name__
        self._metrics.store_retries.labels(retry_reason).inc()
        log.error("store_write_failed", error=f"{type(exc).__name__}: {exc}"[:500], retry_in_s=delay,
                  verdicts=len(verdicts), dead_letters=len(letters))

    def _recovered(self, verdicts: Sequence[VerdictRecord]) -> None:
        if not self.healthy:
            log.info("store_write_recovered", verdicts=len(verdicts))
        self.healthy = True
        self._failing_since = None

    async def _store_answers(self) -> bool:
        ping = getattr(self._store, "ping", None)
        if ping is None:
            return True
        try:
            await asyncio.wait_for(ping(), timeout=5.0)
        except Exception:
            return False
        return True
