"""Batch replays (`replay_mode: batch`): the window of calls, their custom ids, and their results.

Pure: the adapter that talks to the Message Batches API (shadowd/batch.py) and the ledger that
stores in-flight batches decide nothing themselves; what a call is called, when a window is due,
how long to wait between polls and what an individual result means for a side all live here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from shadowd.core.backoff import exponential_delay
from shadowd.core.profiles import ModelProfile
from shadowd.core.results import Failure, SideResult, Usage

Slot = Literal["baseline", "repeat", "candidate"]
SLOTS: tuple[Slot, ...] = ("baseline", "repeat", "candidate")
# The Message Batches API takes at most this many requests in one batch.
API_MAX_REQUESTS = 100_000
# Processing status of a batch once every request in it has a result.
ENDED = "ended"


def custom_id(request_id: str, model: str, slot: Slot) -> str:
    """The batch request's `custom_id` for one call: stable across restarts, [A-Za-z0-9_-]{1,64}.

    The same (request, model, slot) always gets the same id, so a redelivered record finds the call
    it already submitted; a request id of any content (NUL, lone surrogates, 10 kB) fits the pattern.
    """
    if slot not in SLOTS:
        raise ValueError(f"unknown batch slot {slot!r}; expected one of {', '.join(SLOTS)}")
    # JSON keeps the parts apart whatever they hold (a NUL in a request id cannot fake a model name).
    key = json.dumps([request_id, model, slot], ensure_ascii=True).encode()
    return f"{slot[0]}-{hashlib.sha256(key).hexdigest()[:48]}"


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One model call of a batch, with the identity that lets a restart find it again."""

    custom_id: str
    rollout: str
    request_id: str
    model: str
    slot: Slot
    params: dict[str, Any]  # the Messages API body, never streamed
    source: str | None = None
    partition: int | None = None
    offset: int | None = None


@dataclass(slots=True)
class BatchWindow:
    """Calls gathered for the next batch: due when `max_records` are in or `max_age_s` has passed.

    A custom id added twice (a record redelivered while its first delivery is still waiting, or two
    rollouts sharing a call) is one request in the batch: `add` says whether it was new.
    """

    max_records: int
    max_age_s: float
    opened_at: float | None = None
    items: dict[str, BatchItem] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.max_records <= API_MAX_REQUESTS:
            raise ValueError(f"max_records must be in 1..{API_MAX_REQUESTS}, got {self.max_records}")
        if self.max_age_s < 0:
            raise ValueError(f"max_age_s must be >= 0, got {self.max_age_s}")

    def add(self, item: BatchItem, now: float) -> bool:
        if item.custom_id in self.items:
            return False
        if not self.items:
            self.opened_at = now
        self.items[item.custom_id] = item
        return True

    def __contains__(self, cid: object) -> bool:
        return cid in self.items

    def __len__(self) -> int:
        return len(self.items)

    def full(self) -> bool:
        return len(self.items) >= self.max_records

    def due(self, now: float) -> bool:
        """Whether the window should be submitted now (never while empty)."""
        if not self.items:
            return False
        assert self.opened_at is not None
        return self.full() or now - self.opened_at >= self.max_age_s

    def seconds_left(self, now: float) -> float | None:
        """Until the age bound makes the window due; None while empty."""
        if not self.items or self.opened_at is None:
            return None
        return max(0.0, self.max_age_s - (now - self.opened_at))

    def take(self) -> list[BatchItem]:
        """Every call in the window, in the order added; the window is empty afterwards."""
        taken = list(self.items.values())
        self.items = {}
        self.opened_at = None
        return taken


@dataclass(frozen=True, slots=True)
class PollBackoff:
    """Seconds between polls of one batch: `initial_s`, growing by `factor` up to `max_s`.

    Indexed by the polls done rather than stateful like `Backoff`: one replayer polls many batches
    with it at once. The curve is the shared one (core/backoff.py).
    """

    initial_s: float = 1.0
    max_s: float = 60.0
    factor: float = 1.5

    def delay_s(self, polls_done: int) -> float:
        return exponential_delay(polls_done + 1, self.initial_s, self.max_s, self.factor)


def batch_side(
    model: str,
    result: dict[str, Any] | None,
    profile: ModelProfile | None,
    price_multiplier: float,
) -> SideResult:
    """One side from its individual batch result (`succeeded`, `errored`, `canceled`, `expired`).

    A batch side has no latency (the wait is the batch's, not the model's): latency is not judged.
    Anything but `succeeded` fails with `Failure.BATCH`, which makes the verdict an `error`, never
    a finding against the candidate. Cost is the profile's price times `price_multiplier`.
    """
    if result is None:
        return _failed(model, "the batch ended without a result for this request")
    kind = result.get("type")
    if kind == "succeeded":
        message = result.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            return _failed(model, "the batch result holds no readable message", Failure.RESPONSE)
        usage = Usage.from_api(message.get("usage") if isinstance(message.get("usage"), dict) else None)
        stop = message.get("stop_reason")
        return SideResult(
            model=model,
            ok=True,
            content=tuple(b for b in message["content"] if isinstance(b, dict)),
            stop_reason=stop if isinstance(stop, str) else None,
            usage=usage,
            latency_ms=None,
            cost_usd=profile.cost_usd(usage) * price_multiplier if profile else None,
        )
    if kind == "errored":
        return _failed(model, f"batch request errored: {_error_text(result.get('error'))}")
    if kind == "expired":
        return _failed(model, "batch request expired before it was processed")
    if kind == "canceled":
        return _failed(model, "batch request canceled before it was processed")
    return _failed(model, f"unknown batch result type {str(kind)[:60]!r}")


def _failed(model: str, error: str, failure: Failure = Failure.BATCH) -> SideResult:
    return SideResult(model=model, ok=False, error=error[:2000], failure=failure.value, latency_ms=None)


def _error_text(error: Any) -> str:
    """`<type>: <message>` from an ErrorResponse (`{"type": "error", "error": {...}}`) or its inner object."""
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {str(error.get('message', ''))[:500]}"
    return "no error detail"
