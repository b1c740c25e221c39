"""What the pipeline produces per record: verdicts and dead letters, as plain data for the stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shadowd.core.findings import Finding, Status
from shadowd.core.judge import Grading
from shadowd.core.noise import NoiseObservation
from shadowd.core.results import SideResult


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One input record and where it came from: a Kafka topic-partition-offset or a file line."""

    source: str
    partition: int
    offset: int
    value: bytes
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class VerdictRecord:
    rollout: str
    request_id: str
    route: str
    status: Status
    findings: tuple[Finding, ...]
    comparator_version: str
    created_at: datetime
    baseline: SideResult | None = None
    candidate: SideResult | None = None
    baseline_repeat: SideResult | None = None
    adaptations: tuple[str, ...] = ()
    reason: str | None = None
    error_reason: str | None = None  # for status error: an ErrorReason value (capacity, baseline_failed, ...)
    baseline_noise_blocking: bool = False
    grading: Grading | None = None  # the judge's grades (SPEC §8); None when the route has no judge
    captured_at: datetime | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    partition: int | None = None
    offset: int | None = None
    # For the learned noise model: set on one verdict per noise-checked baseline replay, stored
    # with it (not part of the verdict's own row).
    noise_observation: NoiseObservation | None = None

    @property
    def model_calls(self) -> int:
        """Model calls this verdict cost: the replayed baseline, its second replay, the candidate."""
        return sum(
            1 for side in (self.baseline, self.baseline_repeat, self.candidate)
            if side is not None and side.source == "replay"
        )

    def to_dict(self) -> dict[str, Any]:
        """The `verdicts --json` object (SPEC §4)."""
        return {
            "rollout": self.rollout,
            "request_id": self.request_id,
            "route": self.route,
            "status": self.status.value,
            "reason": self.reason,
            "error_reason": self.error_reason,
            "findings": [f.to_dict() for f in self.findings],
            "baseline": _side_summary(self.baseline),
            "candidate": _side_summary(self.candidate),
            "baseline_repeat": _side_summary(self.baseline_repeat),
            "adaptations": list(self.adaptations),
            "comparator_version": self.comparator_version,
            "baseline_noise_blocking": self.baseline_noise_blocking,
            "grades": self.grading.to_dict() if self.grading else None,
            "captured_at": self.captured_at.isoformat() if self.captured_at else None,
            "created_at": self.created_at.isoformat(),
            "attributes": self.attributes,
            "source": {"source": self.source, "partition": self.partition, "offset": self.offset},
        }


def _side_summary(side: SideResult | None) -> dict[str, Any] | None:
    if side is None:
        return None
    return {
        "model": side.model,
        "ok": side.ok,
        "latency_ms": side.latency_ms,
        "ttft_ms": side.ttft_ms,
        "input_tokens": side.usage.input_tokens,
        "output_tokens": side.usage.output_tokens,
        "cache_creation_input_tokens": side.usage.cache_creation_input_tokens,
        "cache_read_input_tokens": side.usage.cache_read_input_tokens,
        "stop_reason": side.stop_reason,
        "cost_usd": side.cost_usd,
        "error": side.error,
        "attempts": side.attempts,
        "capacity_retries": side.capacity_retries,
        "failure": side.failure,
        "streamed": side.streamed,
        "source": side.source,
    }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source: str
    partition: int
    offset: int
    reason: str
    detail: str
    payload: bytes
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "detail": self.detail,
            "created_at": self.created_at.isoformat(),
        }
