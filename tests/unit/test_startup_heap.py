"""`shadowd run` freezes its start-up heap (garbage is collected first, what is alive is frozen) and
widens the cyclic collector's thresholds, which still collects cycles."""

from __future__ import annotations

import gc
import weakref

from shadowd.daemon import COLLECTOR_THRESHOLDS, freeze_startup_heap, widen_collector_thresholds


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_startup_garbage_is_collected_and_live_objects_are_frozen() -> None:
    gc.unfreeze()
    try:
        # A reference cycle nobody holds: frozen as is it would never be collected.
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        garbage = weakref.ref(a)
        del a, b
        kept = _Node()

        frozen = freeze_startup_heap()

        assert garbage() is None, "start-up garbage must be collected before the freeze"
        assert frozen == gc.get_freeze_count() > 0
        # Live objects are out of the collector's generations: a full collection no longer counts them.
        assert not any(obj is kept for obj in gc.get_objects())
        assert kept.other is None
    finally:
        gc.unfreeze()


def test_widened_thresholds_collect_cycles_later_not_never() -> None:
    before = gc.get_threshold()
    try:
        assert widen_collector_thresholds() == COLLECTOR_THRESHOLDS == gc.get_threshold()
        young = COLLECTOR_THRESHOLDS[0]
        gc.collect()
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        garbage = weakref.ref(a)
        del a, b
        # Twenty of CPython's default young generations (700 new container objects each) later, no
        # automatic collection has run: with the default thresholds the cycle would be gone by now.
        kept = [[] for _ in range(20 * 700)]
        assert garbage() is not None
        # Past the widened young threshold the collector runs on its own and frees the cycle.
        kept.extend([] for _ in range(young))
        assert garbage() is None
    finally:
        gc.set_threshold(*before)
