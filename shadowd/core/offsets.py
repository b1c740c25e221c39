"""Which offset of a partition is safe to commit when records finish out of order."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field


@dataclass(slots=True)
class PartitionOffsets:
    """Offsets fetched but not yet done, per partition.

    Kafka's committed offset means "everything below this is done", so the commit point is the
    lowest offset still in flight, or one past the highest fetched when nothing is.
    """

    _pending: set[int] = field(default_factory=set)
    _heap: list[int] = field(default_factory=list)
    _next: int | None = None  # one past the highest offset fetched
    _committed: int | None = None

    def fetched(self, offset: int) -> None:
        self._pending.add(offset)
        heapq.heappush(self._heap, offset)
        if self._next is None or offset + 1 > self._next:
            self._next = offset + 1

    def done(self, offset: int) -> None:
        self._pending.discard(offset)
        while self._heap and self._heap[0] not in self._pending:
            heapq.heappop(self._heap)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def committable(self) -> int | None:
        """The offset to commit now, or None when nothing new is safe to commit."""
        if self._next is None:
            return None
        point = self._heap[0] if self._heap else self._next
        if self._committed is not None and point <= self._committed:
            return None
        return point

    def mark_committed(self, offset: int) -> None:
        self._committed = offset if self._committed is None else max(self._committed, offset)
