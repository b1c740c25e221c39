"""The in-memory twin of the Kafka ports: records per partition, commits recorded, rebalances simulated."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shadowd.ports_kafka import (
    CommitFailed,
    KafkaUnavailable,
    OnAssigned,
    OnRevoked,
    RecordTooLarge,
    SourceMessage,
    TopicPartition,
)


class MemoryRecordSource:
    """One group member over in-memory partitions. The whole topic is assigned on the first fetch, as a
    lone member gets it; `rebalance()` takes partitions away (and gives them back) the way a group does.

    `commits` lists every successful commit in order; `fail_commits` makes the next N commits fail.
    """

    def __init__(self, topic: str, partitions: int = 1) -> None:
        self.topic = topic
        self.logs: dict[TopicPartition, list[SourceMessage]] = {
            TopicPartition(topic, p): [] for p in range(partitions)
        }
        self.commits: list[dict[TopicPartition, int]] = []
        self.group_offsets: dict[TopicPartition, int] = {}
        self.fail_commits = 0
        self.reachable = True
        self.started = self.stopped = False
        self._positions: dict[TopicPartition, int] = {}
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._subscribed: tuple[OnRevoked, OnAssigned] | None = None
        self._joined = False
        self._arrived = asyncio.Event()

    # --- what a test does --------------------------------------------------------------------------

    def append(self, value: bytes | None, *, partition: int = 0, key: bytes | None = None,
               timestamp_ms: int | None = None) -> int:
        """Add a record at the end of a partition; returns its offset."""
        tp = TopicPartition(self.topic, partition)
        log = self.logs[tp]
        log.append(SourceMessage(self.topic, partition, len(log), key, value, timestamp_ms))
        self._arrived.set()
        return len(log) - 1

    async def rebalance(self, keep: set[int]) -> None:
        """The group moves: partitions not in `keep` are revoked (after the owner's callback), partitions in
        `keep` not yet owned are assigned and read from the group's committed offset."""
        if self._subscribed is None:
            raise RuntimeError("rebalance before subscribe")
        on_revoked, on_assigned = self._subscribed
        wanted = {TopicPartition(self.topic, p) for p in keep}
        revoked = self._assigned - wanted
        if revoked:
            await on_revoked(set(revoked))
            self._assigned -= revoked
            self._paused -= revoked
        self._assign(wanted - self._assigned, on_assigned)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    # --- RecordSource --------------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.reachable:
            raise KafkaUnavailable("the in-memory broker is set unreachable")
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def subscribe(self, topic: str, on_revoked: OnRevoked, on_assigned: OnAssigned) -> None:
        if topic != self.topic:
            raise ValueError(f"this in-memory source holds topic {self.topic!r}, not {topic!r}")
        self._subscribed = (on_revoked, on_assigned)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(tp for tp in partitions if tp in self._assigned)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    async def fetch(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[SourceMessage]]:
        if not self._joined and self._subscribed is not None:
            self._joined = True
            self._assign(set(self.logs), self._subscribed[1])
        batch = self._take(max_records)
        if not batch and timeout_ms > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout=timeout_ms / 1000)
            batch = self._take(max_records)
        else:
            await asyncio.sleep(0)  # a fetch always yields, as a network round trip would
        return batch

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        if self.fail_commits > 0:
            self.fail_commits -= 1
            raise CommitFailed("the in-memory broker refused this commit")
        lost = [tp for tp in offsets if tp not in self._assigned]
        if lost:
            raise CommitFailed(f"partitions not assigned to this member: {sorted(tp.partition for tp in lost)}")
        self.commits.append(dict(offsets))
        self.group_offsets.update(offsets)

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        self._check_reachable()
        return {tp: len(self.logs[tp]) for tp in partitions}

    async def committed(self, partition: TopicPartition) -> int | None:
        self._check_reachable()
        return self.group_offsets.get(partition)

    async def probe(self) -> None:
        self._check_reachable()

    # --- inside ----------------------------------------------------------------------------------------

    def _assign(self, partitions: set[TopicPartition], on_assigned: OnAssigned) -> None:
        for tp in partitions:
            self._positions[tp] = self.group_offsets.get(tp, 0)
        self._assigned |= partitions
        if partitions:
            on_assigned(set(partitions))

    def _take(self, max_records: int) -> dict[TopicPartition, list[SourceMessage]]:
        batch: dict[TopicPartition, list[SourceMessage]] = {}
        room = max_records
        for tp in sorted(self._assigned - self._paused):
            if room <= 0:
                break
            position = self._positions[tp]
            taken = self.logs[tp][position:position + room]
            if taken:
                batch[tp] = taken
                self._positions[tp] = position + len(taken)
                room -= len(taken)
        return batch

    def _check_reachable(self) -> None:
        if not self.reachable:
            raise KafkaUnavailable("the in-memory broker is set unreachable")


@dataclass(frozen=True, slots=True)
class PublishedRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


class MemoryRecordPublisher:
    """Keeps what is published. `max_record_bytes` refuses larger values as a topic would; `fail_publishes`
    makes the next N publishes fail as a broker outage does."""

    def __init__(self, max_record_bytes: int | None = None) -> None:
        self.records: list[PublishedRecord] = []
        self.max_record_bytes = max_record_bytes
        self.fail_publishes = 0
        self.refused = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        await asyncio.sleep(0)
        if self.fail_publishes > 0:
            self.fail_publishes -= 1
            raise KafkaUnavailable("the in-memory broker is away")
        if self.max_record_bytes is not None and len(value) > self.max_record_bytes:
            self.refused += 1
            raise RecordTooLarge(f"{len(value)} bytes is over the topic's {self.max_record_bytes}")
        self.records.append(PublishedRecord(topic, key, value, tuple(headers)))


__all__ = ["MemoryRecordPublisher", "MemoryRecordSource", "PublishedRecord"]
