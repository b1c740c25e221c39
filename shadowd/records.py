"""What the pipeline produces per record: verdicts and dead letters, as plain data for the stores."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from shadowd.core.envelope import MAX_ENVELOPE_BYTES
from shadowd.core.findings import Finding, Status
from shadowd.core.judge import Grading
from shadowd.core.noise import NoiseObservation
from shadowd.core.results import SideResult
from shadowd.core.spend import Spend


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
    request: dict[str, Any] | None = None  # summarise_request() of the envelope's request
    # For the learned noise model: set on one verdict per noise-checked baseline replay, stored
    # with it (not part of the verdict's own row).
    noise_observation: NoiseObservation | None = None
    # Model calls and USD by purpose (replay, noise check, grading), added to the rollout's totals.
    spend: Spend | None = None

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
            "request": self.request,
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


# A dead letter keeps the original bytes up to the envelope limit: anything usable fits, and a larger
# record (which is `too_large` anyway) is kept in part, flagged, rather than blocking its partition.
MAX_DEAD_LETTER_PAYLOAD = MAX_ENVELOPE_BYTES


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source: str
    partition: int
    offset: int
    reason: str
    detail: str
    payload: bytes
    created_at: datetime
    payload_truncated: bool = False  # True when `payload` holds only the first bytes of the record

    def capped(self, limit: int = MAX_DEAD_LETTER_PAYLOAD) -> DeadLetter:
        """This letter with its payload cut to `limit` bytes (and flagged) when it is longer."""
        if len(self.payload) <= limit:
            return self
        return replace(
            self,
            payload=self.payload[:limit],
            payload_truncated=True,
            detail=f"{self.detail} [payload truncated to {limit} of {len(self.payload)} bytes]",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "detail": self.detail,
            "payload_truncated": self.payload_truncated,
            "created_at": self.created_at.isoformat(),
        }


# Bounds on what a verdict keeps of its request: enough to read it, never the whole conversation.
REQUEST_TEXT_LIMIT = 8000
REQUEST_TOOLS_LIMIT = 8000
REQUEST_TOOLS_MAX = 64


def _blocks_text(content: Any) -> str:
    """A system prompt or message content (a string or content blocks) as readable text."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text", "")))
        elif kind == "tool_result":
            parts.append(f"[tool_result {block.get('tool_use_id', '')}] {_blocks_text(block.get('content'))}")
        elif kind == "tool_use":
            parts.append(f"[tool_use {block.get('name', '')}]")
        else:
            parts.append(f"[{kind}]")
    return "\n".join(parts)


def storable(value: Any) -> Any:
    """JSON any database keeps: NUL (refused by PostgreSQL's jsonb) and lone surrogates become U+FFFD."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace").replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def _bounded(text: str, limit: int) -> tuple[str, int]:
    return text[:limit], max(len(text) - limit, 0)


def summarise_request(request: dict[str, Any]) -> dict[str, Any]:
    """What the verdict page shows of a request: system, the last user turn, the tools, bounded in size."""
    raw_messages = request.get("messages")
    messages: list[Any] = raw_messages if isinstance(raw_messages, list) else []
    last_user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
    system, system_cut = _bounded(_blocks_text(request.get("system")), REQUEST_TEXT_LIMIT)
    user, user_cut = _bounded(_blocks_text(last_user.get("content")) if last_user else "", REQUEST_TEXT_LIMIT)
    tools = []
    used = 0
    listed = request.get("tools")
    raw_tools: list[Any] = listed if isinstance(listed, list) else []
    for tool in raw_tools[:REQUEST_TOOLS_MAX]:
        if not isinstance(tool, dict):
            continue
        entry: dict[str, Any] = {"name": str(tool.get("name", "")),
                                 "description": str(tool.get("description", ""))[:500]}
        schema = json.dumps(tool.get("input_schema"), default=str)
        if used + len(schema) <= REQUEST_TOOLS_LIMIT:
            entry["input_schema"] = tool.get("input_schema")
            used += len(schema)
        tools.append(entry)
    summary: dict[str, Any] = storable({
        "model": request.get("model"),
        "max_tokens": request.get("max_tokens"),
        "messages": len(messages),
        "system": system,
        "system_cut": system_cut,
        "last_user": user,
        "last_user_cut": user_cut,
        "tools": tools,
        "tools_total": len(raw_tools),
        "tool_choice": request.get("tool_choice"),
    })
    return summary
