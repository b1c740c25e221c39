"""Which offsets are safe to commit: contiguous stored positions per partition, committed through the source."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

from shadowd.core.offsets import PartitionOffsets
from shadowd.metrics import Metrics
from shadowd.ports_kafka import CommitFailed, RecordSource, TopicPartition

log = structlog.get_logger("shadowd.consumer")


class CommitTracker:
    """At-least-once: an offset is committed only once it and every earlier offset of its partition are done."""

    def __init__(self, source: RecordSource, metrics: Metrics | None = None) -> None:
        self.source = source
        self.metrics = metrics or Metrics()
        self.offsets: dict[TopicPartition, PartitionOffsets] = {}
        self._lock = asyncio.Lock()

    def fetched(self, tp: TopicPartition, offset: int) -> PartitionOffsets:
        """Track a fetched offset; mark it done on the returned partition state (not on whatever state
        the partition has then: one revoked and assigned again meanwhile starts afresh)."""
        offsets = self.offsets.setdefault(tp, PartitionOffsets())
        offsets.fetched(offset)
        return offsets

    def in_flight(self, partitions: Iterable[TopicPartition]) -> int:
        return sum(self.offsets[tp].in_flight for tp in partitions if tp in self.offsets)

    def assigned(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self.offsets.setdefault(tp, PartitionOffsets())

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self.offsets.pop(tp, None)

    async def commit(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Commit what is newly safe on the given (default: every tracked) partitions this member owns.

        A failed commit is logged and left for the next one: the offsets stay uncommitted, never lost.
        """
        async with self._lock:
            assigned = self.source.assignment()
            chosen = [tp for tp in (partitions if partitions is not None else self.offsets) if tp in assigned]
            to_commit = {}
            for tp in chosen:
                point = self.offsets[tp].committable() if tp in self.offsets else None
                if point is not None:
                    to_commit[tp] = point
            if not to_commit:
                return
            try:
                await self.source.commit(to_commit)
            except CommitFailed as exc:
                log.warning("commit_failed", error=repr(exc.__cause__ or exc), partitions=len(to_commit))
                return
            for tp, point in to_commit.items():
                if tp in self.offsets:
                    self.offsets[tp].mark_committed(point)
                self.metrics.committed_offset.labels(tp.topic, str(tp.partition)).set(point)
