"""How the fake Message Batches API behaves: when a batch ends, and which requests expire."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_KEYS = frozenset({"delay_s", "expired"})


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """A batch ends `delay_s` after it was created; `expired` is the share of its requests (picked by
    a hash of the request, so the same request always meets the same fate) that expire unprocessed."""

    delay_s: float = 1.0
    expired: float = 0.0


def parse_batch_plan(document: Any, source: str) -> BatchPlan:
    """The `batches` section of a behaviour file; a ValueError names the key and the source."""
    if document is None:
        return BatchPlan()
    if not isinstance(document, dict):
        raise ValueError(f"{source}: `batches` must be a mapping with `delay_s` and/or `expired`")
    unknown = sorted(set(map(str, document)) - _KEYS)
    if unknown:
        raise ValueError(f"{source}: unknown key `batches.{unknown[0]}` (expected `delay_s`, `expired`)")
    values: dict[str, float] = {}
    for name, high in (("delay_s", 86_400.0), ("expired", 1.0)):
        if name not in document:
            continue
        value = document[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= high:
            raise ValueError(f"{source}: `batches.{name}` must be a number in [0, {high:g}], got {value!r}")
        values[name] = float(value)
    return BatchPlan(**values)
