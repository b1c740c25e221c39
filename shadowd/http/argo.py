"""Argo Rollouts' `web` metric provider: `GET /v1/rollouts/{name}/analysis`, always 200 with a verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from shadowd.core.rollout import RolloutSpec
from shadowd.core.rollout_report import RolloutReport
from shadowd.http.contracts import AnalysisVerdict, analysis_verdict, controller_report, stale_note, with_age
from shadowd.http.errors import DATABASE_UNAVAILABLE, BadParameter, json_response, known_names
from shadowd.http.params import configured_names, is_count
from shadowd.http.registry import AUTH_ERRORS, Operation, Reply, optional
from shadowd.http.state import api_state

log = structlog.get_logger("shadowd.api")

STALE = "Present (true) when the answer is the last known decision: the database cannot be read now."
AGE = "With `stale`: the age of that decision, in seconds (at most `last_report_max_age_s`, 300)."


class AnalysisPath(BaseModel):
    name: str = Field(description="A rollout name from the config; any other is answered 200 with `verdict` "
                      "`fail` (unknown rollout).")


class AnalysisQuery(BaseModel):
    canary_percent: str | None = Field(
        None, description="Pass only once shadowd approves this canary share: an integer 0 to 100. Any other "
        "value is still answered 200, with `verdict` `fail` naming it (Argo counts a non-2xx as an error, not a "
        "failure).")
    stage: str | None = Field(
        None, description="Pass only once shadowd reaches this stage: an integer from 1 to the number of "
        "stages; any other value gives `verdict` `fail`, as above.")


class AnalysisMetric(BaseModel):
    name: str
    value: float | None
    limit: float | None = None
    ok: bool | None = None


class Analysis(BaseModel):
    verdict: Literal["pass", "fail", "continue"]
    score: float = Field(ge=0, le=1, description="1 − regression rate over compared verdicts; 0 while none is "
                         "compared.")
    canary_percent: int = Field(description="The canary share shadowd approves now (0 when rolled back or "
                                "unknown).")
    reason: str
    metrics: list[AnalysisMetric]
    rollout: str | None = optional()
    decision: str | None = None
    state: str | None = None
    stage: int | None = None
    reasons: list[str] | None = optional()
    stale: bool | None = optional(STALE)
    decision_age_s: float | None = optional(AGE)


async def argo_analysis(request: web.Request) -> web.Response:
    """Always 200 with a JSON verdict: Argo counts non-2xx as an error and an empty body as success."""
    state = api_state(request)
    name = request.match_info["name"]
    spec = state.config.rollout(name)
    if spec is None:
        known = known_names(configured_names(state))
        return json_response(
            _analysis_body(name, "fail", f"no rollout named {name!r} in the shadowd config (known: {known})")
        )
    try:
        want_percent, want_stage = analysis_query(request.query, spec)
    except BadParameter as exc:
        return json_response(_analysis_body(name, "fail", f"bad parameter {exc.parameter}: {exc.reason}"))
    try:
        report, age_s = await controller_report(state, spec)
    except Exception as exc:  # whatever the driver raises, Argo must get a body: keep measuring
        log.warning("analysis_database_error", rollout=name, error=repr(exc)[:500])
        return json_response(
            _analysis_body(name, "continue", DATABASE_UNAVAILABLE)
        )
    if age_s is not None:
        log.warning("analysis_from_last_known_decision", rollout=name, age_s=age_s)
    verdict, reason = analysis_verdict(report, want_percent, want_stage)
    return json_response(with_age(_analysis_body(name, verdict, reason + stale_note(age_s), report), age_s))


def analysis_query(query: Mapping[str, str], spec: RolloutSpec) -> tuple[int | None, int | None]:
    """`canary_percent=N` (0..100) and `stage=N` (1..number of stages), both optional."""

    def integer(key: str, low: int, high: int) -> int | None:
        raw = query.get(key)
        if raw is None:
            return None
        if not is_count(raw) or not low <= int(raw) <= high:
            raise BadParameter(key, f"must be an integer from {low} to {high}, got {raw!r}")
        return int(raw)

    return integer("canary_percent", 0, 100), integer("stage", 1, len(spec.stages))


def _analysis_body(
    name: str, verdict: AnalysisVerdict, reason: str, report: RolloutReport | None = None
) -> dict[str, Any]:
    if report is None:
        return {
            "verdict": verdict,
            "score": 0.0,
            "canary_percent": 0,
            "reason": reason,
            "metrics": [],
            "rollout": name,
            "decision": None,
            "state": None,
            "stage": None,
            "reasons": [],
        }
    rate = report.regression_rate
    return {
        "verdict": verdict,
        # 1 − regression rate over compared verdicts; 0.0 while nothing is compared, so a score
        # threshold never passes on no evidence. The verdict, not the score, carries the gate.
        "score": 1.0 - rate if rate is not None else 0.0,
        "canary_percent": report.canary_percent,
        "reason": reason,
        "metrics": analysis_metrics(report),
        "rollout": name,
        "decision": report.decision,
        "state": report.state,
        "stage": report.stage,
        "reasons": list(report.reasons),
    }


def analysis_metrics(report: RolloutReport) -> list[dict[str, Any]]:
    """The figures the gate decided on, each with its limit and whether it is within it."""
    figures = report.gate.figures

    def entry(name: str, value: Any, limit: Any = None, within: bool | None = None) -> dict[str, Any]:
        return {"name": name, "value": value, "limit": limit, "ok": within}

    def at_most(value: float | None, limit: float) -> bool | None:
        return None if value is None else value <= limit

    samples, stage_samples, minimum = report.compared, report.figures.stage_samples, figures.min_samples
    upper = figures.rate_increase_upper
    tolerance = figures.max_regression_rate_increase
    return [
        entry("regression_rate", report.regression_rate),
        entry("baseline_noise_rate", report.baseline_noise_rate),
        entry(
            "regression_rate_increase_upper",
            upper,
            tolerance,
            at_most(upper, tolerance) if tolerance is not None else None,
        ),
        entry(
            "latency_p95_ratio",
            report.latency_p95_ratio,
            figures.max_latency_p95_ratio,
            at_most(report.latency_p95_ratio, figures.max_latency_p95_ratio or float("inf")),
        ),
        entry(
            "cost_ratio",
            report.cost_usd.ratio,
            figures.max_cost_ratio,
            at_most(report.cost_usd.ratio, figures.max_cost_ratio or float("inf")),
        ),
        entry("compared_verdicts", samples, minimum, samples >= minimum if minimum is not None else None),
        entry(
            "stage_compared_verdicts",
            stage_samples,
            minimum,
            stage_samples >= minimum if minimum is not None else None,
        ),
    ]


def operations() -> list[Operation]:
    return [
        Operation("GET", "/v1/rollouts/{name}/analysis", argo_analysis, "argoAnalysis", "canary controllers",
                  "Argo Rollouts `web` metric provider: always 200 with a JSON verdict.", "controller",
                  {200: Reply("The measurement, whatever happened.", Analysis), **AUTH_ERRORS},
                  description="`verdict` is `fail` when the gate says rollback (or the rollout is rolled back), "
                  "when the rollout is unknown, or when a parameter is bad; `pass` when the rollout is complete or "
                  "the gate says promote; `continue` when the gate holds, the rollout is paused, or the database "
                  "cannot be read now and no recent decision is known (with one, the answer is that decision, "
                  "marked `stale` with its age). With `canary_percent=N` or `stage=N`, `pass` means shadowd's "
                  "approved stage (its current one, or its promotion target) covers N. Use "
                  '`jsonPath: "{$.verdict}"`, `successCondition: result == "pass"`, `failureCondition: result == '
                  '"fail"`; a `continue` matches neither, which Argo counts as an inconclusive measurement.',
                  path_params=AnalysisPath, query=AnalysisQuery),
    ]
