"""The JSON answers of the rollout, verdict and decision endpoints as pydantic models: the OpenAPI
document's schemas come from these, and the response-validation test holds every real answer to them.

The wire shapes are SPEC §4/§5's (`report --json`, `verdicts --json`, `show --json`); a model lists
what a client may rely on, and more keys may come (extensions are additive).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from shadowd.http.registry import optional

StatusName = Literal["pass", "regression", "noise", "error", "skipped"]
DecisionName = Literal["promote", "hold", "rollback", "complete"]
StateName = Literal["active", "paused", "rolled_back", "complete"]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]


class Percentiles(BaseModel):
    p50: float | None = None
    p95: float | None = None


class LatencyBySide(BaseModel):
    baseline: Percentiles | None = optional()
    candidate: Percentiles | None = optional()


class CostUsd(BaseModel):
    baseline: float | None = optional()
    candidate: float | None = optional()
    ratio: float | None = None
    grading: float | None = optional("Judge spend (docs/JUDGE.md).")


class Report(BaseModel):
    """The `shadowd report --json` object."""

    rollout: str
    baseline: str | None = optional()
    candidate: str | None = optional()
    state: StateName | None = optional()
    stage: int = Field(ge=1)
    stage_index: int | None = optional()
    stages: list[int] | None = optional()
    canary_percent: int = Field(ge=0, le=100)
    decision: DecisionName
    reasons: list[str]
    gate_figures: dict[str, object] | None = optional()
    counts: dict[str, int]
    errors_by_reason: dict[str, int] | None = optional(
        "Error verdicts by reason: capacity, baseline_failed, comparator_fault, batch_result.")
    total: int | None = optional()
    compared: int | None = optional()
    stage_samples: int | None = optional()
    regression_rate: float | None
    regression_rate_ci: list[float] = Field(min_length=2, max_length=2)
    confidence: float | None = optional()
    noise_rate: float | None
    baseline_noise_rate: float | None = None
    by_code: dict[str, object]
    noise_by_code: dict[str, object] | None = optional()
    by_route: dict[str, object]
    latency_ms: LatencyBySide
    latency_p95_ratio: float | None = None
    latency_judged: bool | None = optional(
        "False when every call of the rollout is batched (replay_mode: batch, no route forcing live): latency is "
        "not judged (latency_p95_ratio null).")
    cost_usd: CostUsd
    judge: dict[str, object] | None = Field(
        None, description="Graded share, acceptability per side with intervals, discordant pairs; null when no "
        "route of the rollout has a judge (docs/JUDGE.md).")
    spend: dict[str, object] | None = optional(
        "Model calls and USD by purpose (replay, noise_check, grading, total) over the rollout, per compared "
        "verdict and per gate decision, and the prompt cache's tokens and saving (SPEC §7).")


class RolloutList(BaseModel):
    items: list[Report]
    names: list[str] = Field(description="Configured rollouts.")
    unconfigured: list[str] | None = optional("Rollouts with stored data that the config no longer declares.")


class Finding(BaseModel):
    code: str
    severity: Literal["critical", "major", "minor"]
    path: str | None
    detail: str
    noise: bool | None = optional()


class SideSummary(BaseModel):
    model: str | None = optional()
    ok: bool | None = optional()
    latency_ms: float | None = None
    ttft_ms: float | None = None
    input_tokens: int | None = optional()
    output_tokens: int | None = optional()
    cache_creation_input_tokens: int | None = optional()
    cache_read_input_tokens: int | None = optional()
    stop_reason: str | None = None
    cost_usd: float | None = None
    error: str | None = None
    attempts: int | None = optional()
    capacity_retries: int | None = optional()
    failure: Literal["capacity", "server", "request", "response"] | None = None
    streamed: bool | None = optional()
    source: Literal["replay", "recorded"] | None = optional()


class Grades(BaseModel):
    status: Literal["graded", "failed", "over_budget", "not_sampled", "no_text"] | None = optional()
    judge_model: str | None = optional()
    judge_version: str | None = optional()
    baseline: dict[str, object] | None = None
    candidate: dict[str, object] | None = None
    cost_usd: float | None = optional()
    error: str | None = None


class Verdict(BaseModel):
    """The `shadowd verdicts --json` object, plus its `id` (the paging key)."""

    id: int
    rollout: str
    request_id: str
    route: str
    status: StatusName
    reason: str | None = None
    error_reason: str | None = Field(None, description="For status error: capacity, baseline_failed, batch_result or "
                                     "comparator_fault.")
    findings: list[Finding]
    baseline: SideSummary | None
    candidate: SideSummary | None
    baseline_repeat: SideSummary | None = None
    adaptations: list[str]
    comparator_version: str
    baseline_noise_blocking: bool | None = optional()
    grades: Grades | None = Field(None, description="The judge's grading status and both grades; null when the "
                                  "route has no judge.")
    captured_at: str | None = Field(None, json_schema_extra={"format": "date-time"})
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    attributes: dict[str, str] | None = optional()
    source: dict[str, object] | None = optional()


class VerdictPage(BaseModel):
    items: list[Verdict]
    next_cursor: int | None = Field(description="Pass as `cursor`; null on the last page.")


class Outputs(BaseModel):
    """The Messages API content blocks of each side."""

    baseline: list[dict[str, object]] | None = None
    candidate: list[dict[str, object]] | None = None
    baseline_repeat: list[dict[str, object]] | None = None


class VerdictDetail(Verdict):
    outputs: Outputs


class Decision(BaseModel):
    id: int | None = optional()
    rollout: str | None = optional()
    at: str | None = optional()
    kind: Literal["gate", "manual"] | None = optional()
    actor: str | None = optional()
    action: str | None = optional()
    decision: DecisionName | None = optional()
    stage_index: int | None = optional()
    canary_percent: int | None = optional()
    reasons: list[str] | None = optional()
    figures: dict[str, object] | None = optional()


class DecisionList(BaseModel):
    items: list[Decision]


class AppliedDecision(BaseModel):
    rollout: str
    action: str
    decision: DecisionName
    stage_index: int
    stage: int
    canary_percent: int
    reasons: list[str]
    figures: dict[str, object] | None = optional()
    actor: str
    at: str = Field(json_schema_extra={"format": "date-time"})


class ManualActionBody(BaseModel):
    model_config = {"extra": "forbid"}

    actor: str | None = Field(None, max_length=200,
                              description="Kept as a note (`stated actor: …`); the audit actor is the token's name.")
    reason: str | None = Field(None, max_length=2000, description="Why; logged with the action.")


class SideWeight(BaseModel):
    model: str
    weight: int


class Weights(BaseModel):
    rollout: str | None = optional()
    state: str
    stage: int | None = optional()
    canary_percent: int = Field(ge=0, le=100)
    baseline: SideWeight
    candidate: SideWeight


class RoutesTable(BaseModel):
    items: list[dict[str, object]]
