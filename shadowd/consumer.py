"""The Kafka side of `shadowd run`: fetch, replay concurrently, store, then commit in offset order."""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from shadowd.core.offsets import PartitionOffsets
from shadowd.metrics import Metrics
from shadowd.pipeline import RecordOutcome, ShadowPipeline
from shadowd.records import SourceRecord
from shadowd.writer import BatchWriter

log = structlog.get_logger("shadowd.consumer")


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
                outcome = await self._replay_when_store_up(record)
            except Exception as exc:  # a bug must not stall the partition: dead-letter the record, keep going
                log.error("record_failed", error=repr(exc), traceback=traceback.format_exc(limit=5))
                outcome = RecordOutcome(record)
                outcome.dead_letter = self.pipeline.dead_letter(record, "processing_failed", repr(exc))
            finally:
                self.replaying -= 1
                self._capacity.set()
            if outcome.dead_letter is not None:
                await self._publish_dead_letter(message, outcome)
            await self.writer.write(outcome)
        offsets.done(message.offset)
        self.records_done += 1
        self.metrics.records.labels("dead_letter" if outcome.dead_letter else "done").inc()

    async def _replay_when_store_up(self, record: SourceRecord) -> RecordOutcome:
        """Replay the record, waiting out a store outage instead of dead-lettering the record for it.

        An error while the store answers is the record's own (the caller dead-letters it); an error while the
        store is down says nothing about the record, and a dead letter then would lose its verdict for good.
        """
        delay = 0.5
        retried_with_store_up = False
        while True:
            try:
                return await self.pipeline.replay_record(record)
            except Exception as exc:
                if await self._store_reachable():
                    if retried_with_store_up:
                        raise
                    retried_with_store_up = True  # the store may have come back just now: one more try
                    continue
                retried_with_store_up = False
                log.warning("store_unreachable_retrying_record", error=repr(exc)[:300], retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _store_reachable(self) -> bool:
        try:
            await asyncio.wait_for(self.pipeline.store.ping(), timeout=5.0)
        except Exception:
            return False
        return True

    async def _publish_dead_letter(self, message: ConsumerRecord[Any, Any], outcome: RecordOutcome) -> None:
        letter = outcome.dead_letter
        assert letter is not None
        headers = [
            ("shadowd-reason", letter.reason.encode()),
            ("shadowd-detail", letter.detail[:1000].encode()),
            ("shadowd-source", f"{message.topic}/{message.partition}/{message.offset}".encode()),
        ]
        delay = 0.5
        while True:
            try:
                await self.producer.send_and_wait(
                    # The letter's payload: the record's bytes as privacy.dead_letter_payload keeps them.
                    self.dlq_topic, value=letter.payload, key=message.key, headers=headers
                )
                return
            except KafkaError as exc:
                log.error("dead_letter_publish_failed", error=repr(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

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
