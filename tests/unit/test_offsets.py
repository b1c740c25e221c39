"""Commit points when records finish out of order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shadowd.core.offsets import PartitionOffsets


def test_commit_point_waits_for_the_lowest_unfinished_offset() -> None:
    """A finished later offset is not committed past an unfinished earlier one."""
    offsets = PartitionOffsets()
    for offset in (10, 11, 12):
        offsets.fetched(offset)
    offsets.done(12)
    offsets.done(11)
    assert offsets.committable() == 10
    offsets.mark_committed(10)
    assert offsets.committable() is None
    offsets.done(10)
    assert offsets.committable() == 13
    assert offsets.in_flight == 0


@given(st.permutations(list(range(30))))
def test_committed_offset_never_passes_unfinished_work(order: list[int]) -> None:
    """Whatever the completion order, the commit point never exceeds the lowest unfinished offset."""
    offsets = PartitionOffsets()
    for offset in range(30):
        offsets.fetched(offset)
    finished: set[int] = set()
    for offset in order:
        offsets.done(offset)
        finished.add(offset)
        point = offsets.committable()
        if point is not None:
            assert all(o in finished for o in range(point))
            offsets.mark_committed(point)
    assert offsets.committable() is None or offsets.committable() == 30
