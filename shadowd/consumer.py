"""The Kafka side of `shadowd run`: fetch, replay concurrently, store, then commit in offset order."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from shadowd.core.offsets import PartitionOffsets
from shadowd.metrics import Metrics
from shadowd.pipeline import ShadowPipeline
from shadowd.record_guard import replay_or_dead_letter
from shadowd.records import DeadLetter, SourceRecord
from shadowd.writer import BatchWriter

log = structlog.get_logger("shadowd.consumer")

# Payload sizes tried, largest first, when the DLQ topic refuses a record as too large: the broker's
# default message.max.bytes (1 MB) less room for headers, then smaller, then the headers alone.
_DLQ_FALLBACK_SIZES = (1024 * 1024 - 16 * 1024, 256 * 1024, 64 * 1024, 0)


class MirrorConsumer:
    """At-least-once: an offset is committed only once it and every earlier offset are stored."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        pipeline: ShadowPipeline,
        writer: BatchWriter,
        *,
        topic: str,
        dlq_topic: str,
        max_in_flight: int,
        metrics: Metrics | None = None,
        commit_interval_s: float = 1.0,
        revoke_timeout_s: float = 30.0,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.pipeline = pipeline
        self.writer = writer
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.max_in_flight = max_in_flight
        self.max_unstored = 2 * max_in_flight  # bounds what a crash can lose to re-replay
        self.replaying = 0
        self._capacity = asyncio.Event()
        self.metrics = metrics or Metrics()
        self.commit_interval_s = commit_interval_s
        self.revoke_timeout_s = revoke_timeout_s
        self.offsets: dict[TopicPartition, PartitionOffsets] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.paused = False
        self.records_done = 0
        self._commit_lock = asyncio.Lock()
        self._dlq_failing_since: float | None = None
        self._dlq_error = ""

    def subscribe(self) -> None:
        self.consumer.subscribe([self.topic], listener=_RebalanceListener(self))

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
                batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max(1, room))
                for tp, messages in batch.items():
                    for message in messages:
                        self._start(tp, message)
                if time.monotonic() - last_commit >= self.commit_interval_s:
                    await self.commit()
                    last_commit = time.monotonic()
        finally:
            await self._drain(drain_timeout_s)
            await self.commit()

    def _apply_backpressure(self) -> None:
        # Replays are bounded by the model-call budget; records whose replay is done but whose
        # verdicts are still on their way to the store only hold memory, so they get a wider bound.
        # While the store is down that bound fills and fetching stops.
        full = self.replaying >= self.max_in_flight or len(self.tasks) >= self.max_unstored
        assigned = self.consumer.assignment()
        if full and not self.paused:
            self.consumer.pause(*assigned)
            self.paused = True
            self.metrics.consumer_paused.set(1)
        elif not full and self.paused:
            self.consumer.resume(*assigned)
            self.paused = False
            self.metrics.consumer_paused.set(0)

    def _start(self, tp: TopicPartition, message: ConsumerRecord[Any, Any]) -> None:
        offsets = self.offsets.setdefault(tp, PartitionOffsets())
        offsets.fetched(message.offset)
        self.replaying += 1  # counted from now: a task not yet started is still a replay to come
        task = asyncio.create_task(self._process(offsets, message))
        self.tasks.add(task)
        self.metrics.in_flight_records.set(len(self.tasks))
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self._capacity.set()
        self.metrics.in_flight_records.set(len(self.tasks))

    async def _process(self, offsets: PartitionOffsets, message: ConsumerRecord[Any, Any]) -> None:
        record = SourceRecord(
            source=message.topic,
            partition=message.partition,
            offset=message.offset,
            value=message.value or b"",
            timestamp=datetime.fromtimestamp(message.timestamp / 1000, UTC) if message.timestamp else None,
        )
        with structlog.contextvars.bound_contextvars(partition=message.partition, offset=message.offset):
            try:
                outcome = await replay_or_dead_letter(self.pipeline, record)
            finally:
                self.replaying -= 1
                self._capacity.set()
            letter = outcome.dead_letter
            if letter is not None:
                await self._publish_dead_letter(message, letter)
            await self.writer.write(outcome)
            if outcome.dead_letter is not None and outcome.dead_letter is not letter:
                # The store refused the record's verdicts; the writer stored an `unstorable:` letter instead.
                await self._publish_dead_letter(message, outcome.dead_letter)
        offsets.done(message.offset)
        self.records_done += 1
        self.metrics.records.labels("dead_letter" if outcome.dead_letter else "done").inc()

    def stuck_reason(self) -> str | None:
        """Why dead letters are not getting to the DLQ topic (for readiness), or None."""
        if self._dlq_failing_since is None:
            return None
        seconds = time.monotonic() - self._dlq_failing_since
        return f"dead-letter publishing failing for {seconds:.0f} s ({self._dlq_error}); retrying, offsets are held"

    async def _publish_dead_letter(self, message: ConsumerRecord[Any, Any], letter: DeadLetter) -> None:
        """Publish to the DLQ topic until the broker has it; a record the topic cannot take is cut, not held.

        Retriable errors are retried for as long as they last (the offset waits). A size refusal is
        permanent for those bytes, so the payload is cut to the next smaller size and the record carries
        `shadowd-payload-truncated` with its original length; the dead-letter row keeps up to 4 MB.
        """
        original = len(message.value or b"")
        # The letter's payload: the record's bytes as privacy.dead_letter_payload keeps them.
        capped = letter.capped()
        value, truncated = capped.payload, capped.payload_truncated
        payload = value
        limits = iter(_DLQ_FALLBACK_SIZES)
        delay = 0.5
        while True:
            headers = [
                ("shadowd-reason", letter.reason.encode()),
                ("shadowd-detail", letter.detail[:1000].encode("utf-8", errors="backslashreplace")),
                ("shadowd-source", f"{message.topic}/{message.partition}/{message.offset}".encode()),
            ]
            if truncated:
                headers.append(("shadowd-payload-truncated", str(original).encode()))
            try:
                await self.producer.send_and_wait(self.dlq_topic, value=payload, key=message.key, headers=headers)
            except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
                if not payload:  # the headers alone are refused: the dead-letter row is the record's copy
                    log.error("dead_letter_unpublishable", error=repr(exc)[:200])
                    return
                limit = next((n for n in limits if n < len(payload)), 0)
                log.warning("dead_letter_too_large_for_topic", size=len(payload), cut_to=limit, error=repr(exc)[:200])
                payload, truncated = value[:limit], True
                continue
            except KafkaError as exc:
                if self._dlq_failing_since is None:
                    self._dlq_failing_since = time.monotonic()
                self._dlq_error = type(exc).__name__
                log.error("dead_letter_publish_failed", error=repr(exc)[:500], retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            self._dlq_failing_since = None
            return

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        async with self._commit_lock:
            assigned = self.consumer.assignment()
            chosen = [tp for tp in (partitions if partitions is not None else self.offsets) if tp in assigned]
            to_commit = {}
            for tp in chosen:
                point = self.offsets[tp].committable() if tp in self.offsets else None
                if point is not None:
                    to_commit[tp] = point
            if not to_commit:
                return
            try:
                await self.consumer.commit(to_commit)
            except (CommitFailedError, KafkaError) as exc:
                log.warning("commit_failed", error=repr(exc), partitions=len(to_commit))
                return
            for tp, point in to_commit.items():
                self.offsets[tp].mark_committed(point)
                self.metrics.committed_offset.labels(tp.topic, str(tp.partition)).set(point)

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
        while time.monotonic() < deadline and any(  # noqa: ASYNC110 - a bounded poll of in-flight counts
            self.offsets[tp].in_flight for tp in revoked if tp in self.offsets
        ):
            await asyncio.sleep(0.05)
        await self.commit(revoked)
        for tp in revoked:
            self.offsets.pop(tp, None)
        log.info("partitions_revoked", partitions=sorted(tp.partition for tp in revoked))

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            self.offsets.setdefault(tp, PartitionOffsets())
        if self.paused and assigned:
            self.consumer.pause(*assigned)
        log.info("partitions_assigned", partitions=sorted(tp.partition for tp in assigned))


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: MirrorConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.owner.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.owner.on_assigned(assigned)
