"""The Kafka side as ports: where mirrored records come from, and where dead letters and decisions go.

The aiokafka adapter is shadowd/adapters/kafka.py; the in-memory twin, shadowd/adapters/memory_kafka.py.
Nothing outside shadowd/adapters/ imports aiokafka.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol


class TopicPartition(NamedTuple):
    """One partition of a topic (equal to, and hashed as, aiokafka's own pair)."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One record as fetched: where it sits, its key and bytes, and its broker timestamp (ms)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


class KafkaUnavailable(Exception):
    """The broker did not take a request; retrying later may work."""


class CommitFailed(KafkaUnavailable):
    """Offsets were not committed (a rebalance took the partitions, or the broker is away)."""


class RecordTooLarge(Exception):
    """The topic refuses the record for its size: permanent for those bytes."""


OnRevoked = Callable[[set[TopicPartition]], Awaitable[None]]
OnAssigned = Callable[[set[TopicPartition]], None]


class RecordSource(Protocol):
    """A consumer-group member reading one topic; offsets are committed by the caller only."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    def subscribe(self, topic: str, on_revoked: OnRevoked, on_assigned: OnAssigned) -> None:
        """Join the group for `topic`; `on_revoked` runs before partitions go, `on_assigned` after they come."""

    def assignment(self) -> set[TopicPartition]: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...

    async def fetch(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[SourceMessage]]:
        """Up to `max_records` records from unpaused partitions, waiting up to `timeout_ms` for some."""

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit "everything below this offset is done"; raises CommitFailed."""

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]: ...
    async def committed(self, partition: TopicPartition) -> int | None: ...

    async def probe(self) -> None:
        """A metadata round trip: raises when the broker cannot be reached."""


class RecordPublisher(Protocol):
    """A producer: `publish` returns once the broker has the record."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def publish(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """Raises RecordTooLarge when the topic refuses the record's size, KafkaUnavailable otherwise."""


__all__ = [
    "CommitFailed",
    "KafkaUnavailable",
    "OnAssigned",
    "OnRevoked",
    "RecordPublisher",
    "RecordSource",
    "RecordTooLarge",
    "SourceMessage",
    "TopicPartition",
]
