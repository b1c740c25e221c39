"""`shadowd run` freezes its start-up heap: garbage is collected first, what is alive is frozen."""

from __future__ import annotations

import gc
import weakref

from shadowd.daemon import freeze_startup_heap


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
