"""The Kafka side of `shadowd run`: fetch, replay concurrently, store, then commit in offset order."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import structlog

from shadowd.commit_tracker import CommitTracker
from shadowd.core.in_flight import max_unstored
from shadowd.core.offsets import PartitionOffsets
from shadowd.dlq_publisher import DeadLetterPublisher
from shadowd.metrics import Metrics
from shadowd.pipeline import ShadowPipeline
from shadowd.ports_kafka import RecordSource, SourceMessage, TopicPartition
from shadowd.record_guard import replay_or_dead_letter
from shadowd.records import SourceRecord
from shadowd.writer import BatchWriter

log = structlog.get_logger("shadowd.consumer")


class MirrorConsumer:
    """Fetch with backpressure, replay each record, store it, dead-letter what cannot be used; commits
    follow the stored records in offset order (`CommitTracker`), so delivery is at least once."""

    def __init__(
        self,
        source: RecordSource,
        dead_letters: DeadLetterPublisher,
        pipeline: ShadowPipeline,
        writer: BatchWriter,
        *,
        topic: str,
        max_in_flight: int,
        metrics: Metrics | None = None,
        commit_interval_s: float = 1.0,
        revoke_timeout_s: float = 30.0,
    ) -> None:
        self.source = source
        self.dead_letters = dead_letters
        self.pipeline = pipeline
        self.writer = writer
        self.topic = topic
        self.max_in_flight = max_in_flight
        self.max_unstored = max_unstored(max_in_flight)  # bounds what a crash can lose to re-replay
        self.replaying = 0
        self._capacity = asyncio.Event()
        self.metrics = metrics or Metrics()
        self.commits = CommitTracker(source, self.metrics)
        self.commit_interval_s = commit_interval_s
        self.revoke_timeout_s = revoke_timeout_s
        self.tasks: set[asyncio.Task[None]] = set()
        self.paused = False
        self.records_done = 0

    def subscribe(self) -> None:
        self.source.subscribe(self.topic, self.on_revoked, self.on_assigned)

    async def run(self, stop: asyncio.Event, drain_timeout_s: float) -> None:
        """Fetch until `stop` is set, then let in-flight work finish (up to the deadline) and commit."""
        last_commit = time.monotonic()
        try:
            while not stop.is_set():
                self._apply_backpressure()
                timeout_ms = 200
                if self.paused:
                    # Resume as soon as a replay finishes, not at the end of a fetch timeout; the poll
                    # below still runs (and returns at once) so the group sees this member alive.
                    self._capacity.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._capacity.wait(), timeout=0.2)
                    self._apply_backpressure()
                    timeout_ms = 0
                room = min(self.max_in_flight - self.replaying, self.max_unstored - len(self.tasks))
                batch = await self.source.fetch(timeout_ms=timeout_ms, max_records=max(1, room))
                for tp, messages in batch.items():
                    for message in messages:
                        self._start(tp, message)
                if time.monotonic() - last_commit >= self.commit_interval_s:
                    await self.commit()
                    last_commit = time.monotonic()
        finally:
            await self._drain(drain_timeout_s)
            await self.commit()

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        await self.commits.commit(partitions)

    def stuck_reason(self) -> str | None:
        """Why dead letters are not getting to the DLQ topic (for readiness), or None."""
        return self.dead_letters.stuck_reason()

    def _apply_backpressure(self) -> None:
        # Replays are bounded by the model-call budget; records whose replay is done but whose
        # verdicts are still on their way to the store only hold memory, so they get a wider bound.
        # While the store is down that bound fills and fetching stops.
        full = self.replaying >= self.max_in_flight or len(self.tasks) >= self.max_unstored
        assigned = self.source.assignment()
        if full and not self.paused:
            self.source.pause(*assigned)
            self.paused = True
            self.metrics.consumer_paused.set(1)
        elif not full and self.paused:
            self.source.resume(*assigned)
            self.paused = False
            self.metrics.consumer_paused.set(0)

    def _start(self, tp: TopicPartition, message: SourceMessage) -> None:
        offsets = self.commits.fetched(tp, message.offset)
        self.replaying += 1  # counted from now: a task not yet started is still a replay to come
        task = asyncio.create_task(self._process(offsets, message))
        self.tasks.add(task)
        self.metrics.in_flight_records.set(len(self.tasks))
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._capacity.set()
        self.metrics.in_flight_records.set(len(self.tasks))

    async def _process(self, offsets: PartitionOffsets, message: SourceMessage) -> None:
        record = SourceRecord(
            source=message.topic,
            partition=message.partition,
            offset=message.offset,
            value=message.value or b"",
            timestamp=datetime.fromtimestamp(message.timestamp_ms / 1000, UTC) if message.timestamp_ms else None,
        )
        with structlog.contextvars.bound_contextvars(partition=message.partition, offset=message.offset):
            try:
                outcome = await replay_or_dead_letter(self.pipeline, record)
            finally:
                self.replaying -= 1
                self._capacity.set()
            letter = outcome.dead_letter
            if letter is not None:
                await self.dead_letters.publish(message, letter)
            await self.writer.write(outcome)
            if outcome.dead_letter is not None and outcome.dead_letter is not letter:
                # The store refused the record's verdicts; the writer stored an `unstorable:` letter instead.
                await self.dead_letters.publish(message, outcome.dead_letter)
        offsets.done(message.offset)
        self.records_done += 1
        self.metrics.records.labels("dead_letter" if outcome.dead_letter else "done").inc()

    async def _drain(self, timeout_s: float) -> None:
        if not self.tasks:
            return
        log.info("draining", in_flight=len(self.tasks), timeout_s=timeout_s)
        _, pending = await asyncio.wait(set(self.tasks), timeout=timeout_s)
        if pending:
            log.warning("drain_deadline_passed", abandoned=len(pending))
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before partitions go: let their in-flight records finish (bounded), commit them, forget them."""
        deadline = time.monotonic() + self.revoke_timeout_s
        while time.monotonic() < deadline and self.commits.in_flight(revoked):  # noqa: ASYNC110 - a bounded poll
            await asyncio.sleep(0.05)
        await self.commit(revoked)
        self.commits.forget(revoked)
        log.info("partitions_revoked", partitions=sorted(tp.partition for tp in revoked))

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.commits.assigned(assigned)
        if self.paused and assigned:
            self.source.pause(*assigned)
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in assigned))
