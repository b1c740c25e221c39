"""Rows to and from the verdict tables: what PostgreSQL cannot hold is escaped or nulled only here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shadowd.core.findings import Finding, Status
from shadowd.core.judge import Grading
from shadowd.core.results import SideResult
from shadowd.core.storable import escape_text, finite_or_none, int32_or_none
from shadowd.core.tally import VerdictFacts
from shadowd.records import DeadLetter, VerdictRecord


def verdict_row(v: VerdictRecord) -> dict[str, Any]:
    """The row for one verdict, made storable: the verdict was decided on the original text, and
    what PostgreSQL cannot hold (NUL, lone surrogates, NaN) is escaped or nulled only here: in the text
    columns below, and in the JSON columns by the engine's serializer (`storable_dumps`, engine.py).

    `request_id` is stored as given: the envelope parser refuses one that is not storable, and a verdict
    built some other way that still holds one is refused by the store and dead-lettered by the writer.
    """
    b, c = v.baseline, v.candidate
    grading = v.grading
    return {
        "grading": grading.status if grading else None,
        "grades": grading.to_dict() if grading else None,
        "baseline_acceptable": grading.baseline_acceptable if grading else None,
        "candidate_acceptable": grading.candidate_acceptable if grading else None,
        "grading_cost_usd": finite_or_none(grading.cost_usd) if grading else None,
        "rollout": v.rollout,
        "request_id": v.request_id,
        "route": escape_text(v.route),
        "status": v.status.value,
        "reason": escape_text(v.reason) if v.reason is not None else None,
        "error_reason": v.error_reason,
        "findings": [f.to_dict() for f in v.findings],
        "baseline": b.to_dict() if b else None,
        "candidate": c.to_dict() if c else None,
        "baseline_repeat": v.baseline_repeat.to_dict() if v.baseline_repeat else None,
        "adaptations": list(v.adaptations),
        "attributes": dict(v.attributes),
        "request": v.request,
        "comparator_version": v.comparator_version,
        "baseline_noise_blocking": v.baseline_noise_blocking,
        "baseline_model": escape_text(b.model) if b else None,
        "candidate_model": escape_text(c.model) if c else None,
        # Infinite latencies or costs would poison every sum the rollups keep.
        "baseline_latency_ms": finite_or_none(b.latency_ms) if b else None,
        "candidate_latency_ms": finite_or_none(c.latency_ms) if c else None,
        "baseline_cost_usd": finite_or_none(b.cost_usd) if b else None,
        "candidate_cost_usd": finite_or_none(c.cost_usd) if c else None,
        "baseline_output_tokens": int32_or_none(b.usage.output_tokens) if b else None,
        "candidate_output_tokens": int32_or_none(c.usage.output_tokens) if c else None,
        "source": escape_text(v.source) if v.source is not None else None,
        "partition": v.partition,
        "offset": v.offset,
        "captured_at": v.captured_at,
        "created_at": v.created_at,
    }


def dead_letter_row(d: DeadLetter) -> dict[str, Any]:
    d = d.capped()
    return {
        # A file path read from a non-UTF-8 file system holds surrogate escapes.
        "source": escape_text(d.source)[:512],
        "partition": d.partition,
        "offset": d.offset,
        "reason": escape_text(d.reason)[:128],
        "detail": escape_text(d.detail[:4000]),
        "payload": d.payload,
        "payload_truncated": d.payload_truncated,
        "created_at": d.created_at,
    }


def verdict_from_row(row: Any) -> VerdictRecord:
    def side(value: Any) -> SideResult | None:
        return SideResult.from_dict(value) if isinstance(value, dict) else None

    return VerdictRecord(
        rollout=row["rollout"],
        request_id=row["request_id"],
        route=row["route"],
        status=Status(row["status"]),
        findings=tuple(Finding.from_dict(f) for f in row["findings"] or ()),
        comparator_version=row["comparator_version"],
        created_at=utc(row["created_at"]),
        baseline=side(row["baseline"]),
        candidate=side(row["candidate"]),
        baseline_repeat=side(row["baseline_repeat"]),
        adaptations=tuple(row["adaptations"] or ()),
        reason=row["reason"],
        error_reason=row["error_reason"],
        baseline_noise_blocking=bool(row["baseline_noise_blocking"]),
        grading=Grading.from_dict(row["grades"]) if isinstance(row["grades"], dict) else None,
        captured_at=utc(row["captured_at"]) if row["captured_at"] else None,
        attributes=dict(row["attributes"] or {}),
        request=row["request"] if isinstance(row["request"], dict) else None,
        source=row["source"],
        partition=row["partition"],
        offset=row["offset"],
    )


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


def facts_of_row(row: Any) -> VerdictFacts:
    """The same, from a stored row (a verdict written without `save`, counted by `roll_up`)."""
    return VerdictFacts(
        rollout=row.rollout,
        route=row.route,
        status=row.status,
        baseline_noise_blocking=bool(row.baseline_noise_blocking),
        grading=row.grading,
        baseline_acceptable=row.baseline_acceptable,
        candidate_acceptable=row.candidate_acceptable,
        grading_cost_usd=row.grading_cost_usd,
        baseline_latency_ms=row.baseline_latency_ms,
        candidate_latency_ms=row.candidate_latency_ms,
        baseline_cost_usd=row.baseline_cost_usd,
        candidate_cost_usd=row.candidate_cost_usd,
    )
