"""What one model call produced, as plain data: the comparator's and the store's input."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

SideSource = Literal["replay", "recorded"]


class Failure(StrEnum):
    """Why a model call finally failed: whose fault it is decides the verdict."""

    CAPACITY = "capacity"  # 429, 529, overload (also mid-stream), 503, timeouts, connection errors
    SERVER = "server"  # other 5xx (and 409) that persisted over the bounded attempts
    REQUEST = "request"  # a 4xx: the model refused this request as sent
    RESPONSE = "response"  # the answer could not be read
    BATCH = "batch"  # a batch request errored, expired or was canceled: the batch API's verdict, not an answer


class ErrorReason(StrEnum):
    """Why a verdict is `error` (no fair comparison); stored on the verdict and counted in reports."""

    CAPACITY = "capacity"  # a side's calls met capacity errors until the record's retry deadline
    BASELINE_FAILED = "baseline_failed"  # the baseline failed on its own (4xx, persistent 5xx, no recorded answer)
    COMPARATOR_FAULT = "comparator_fault"  # the comparator could not judge this pair
    BATCH_RESULT = "batch_result"  # a side's batch request errored, expired or was canceled (replay_mode: batch)


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @classmethod
    def from_api(cls, usage: dict[str, Any] | None) -> Usage:
        usage = usage or {}

        def count(key: str) -> int:
            value = usage.get(key)
            return int(value) if isinstance(value, int | float) and value >= 0 else 0

        return cls(
            input_tokens=count("input_tokens"),
            output_tokens=count("output_tokens"),
            cache_creation_input_tokens=count("cache_creation_input_tokens"),
            cache_read_input_tokens=count("cache_read_input_tokens"),
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }


@dataclass(frozen=True, slots=True)
class SideResult:
    """One side of a comparison: the baseline, its noise replay, or the candidate.

    `ok` is False when the call failed after retries; `error` then says why, `failure` whose fault
    it was (a Failure value; None for a recorded side) and `content` is empty.
    `content` holds the Messages API content blocks as JSON objects, exactly as returned.
    """

    model: str
    ok: bool
    content: tuple[dict[str, Any], ...] = ()
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    latency_ms: float | None = None
    ttft_ms: float | None = None
    cost_usd: float | None = None
    error: str | None = None
    attempts: int = 1
    streamed: bool = False
    source: SideSource = "replay"
    failure: str | None = None
    capacity_retries: int = 0  # attempts that met a capacity error and were retried

    @property
    def text(self) -> str:
        """The concatenated text blocks: what a reader of the response would see."""
        return "".join(
            str(block.get("text", "")) for block in self.content if block.get("type") == "text"
        )

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [block for block in self.content if block.get("type") == "tool_use"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ok": self.ok,
            "content": list(self.content),
            "stop_reason": self.stop_reason,
            "usage": self.usage.to_dict(),
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "cost_usd": self.cost_usd,
            "error": self.error,
            "attempts": self.attempts,
            "streamed": self.streamed,
            "source": self.source,
            "failure": self.failure,
            "capacity_retries": self.capacity_retries,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SideResult:
        return cls(
            model=str(data.get("model", "")),
            ok=bool(data.get("ok", False)),
            content=tuple(data.get("content") or ()),
            stop_reason=data.get("stop_reason"),
            usage=Usage.from_api(data.get("usage")),
            latency_ms=data.get("latency_ms"),
            ttft_ms=data.get("ttft_ms"),
            cost_usd=data.get("cost_usd"),
            error=data.get("error"),
            attempts=int(data.get("attempts", 1)),
            streamed=bool(data.get("streamed", False)),
            source=data.get("source", "replay"),
            failure=data.get("failure") if isinstance(data.get("failure"), str) else None,
            capacity_retries=int(data.get("capacity_retries") or 0),
        )


def error_reason_of(baseline: SideResult, candidate: SideResult | None) -> ErrorReason | None:
    """The error reason the sides alone decide, or None when they allow a comparison.

    Capacity failures are never the candidate's fault: a candidate that met only capacity errors
    makes the verdict an error, where any other candidate failure is the candidate's own finding.
    """
    if not baseline.ok and baseline.failure == Failure.BATCH:
        return ErrorReason.BATCH_RESULT
    if candidate is not None and not candidate.ok and candidate.failure == Failure.BATCH:
        return ErrorReason.BATCH_RESULT
    if not baseline.ok:
        return ErrorReason.CAPACITY if baseline.failure == Failure.CAPACITY else ErrorReason.BASELINE_FAILED
    if candidate is not None and not candidate.ok and candidate.failure == Failure.CAPACITY:
        return ErrorReason.CAPACITY
    return None
