"""The rollout report (SPEC §4 `report --json`): figures from the store, the gate's view of them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from shadowd.adapters.sql_store import SqlVerdictStore
from shadowd.clock import utc_now
from shadowd.core.gate import JUDGE_SILENT_AFTER, Evidence, GateDecision, RolloutState, evaluate_gate
from shadowd.core.noise import DEFAULT_VALUE_NOISE_THRESHOLD, NoiseModel, Rate
from shadowd.core.rollout import RolloutSpec
from shadowd.core.spend import spend_report
from shadowd.core.stats import wilson_interval

# The learned noise shown is over this window, as the pipeline applies it.
NOISE_WINDOW = timedelta(hours=24)
NOISIEST_SHOWN = 5


def rollout_state_of(spec: RolloutSpec, row: dict[str, Any] | None) -> RolloutState:
    if row is None:
        return RolloutState(stages=spec.stages, stage_index=0, state="active")
    return RolloutState(
        stages=spec.stages,
        stage_index=min(int(row["stage_index"]), len(spec.stages) - 1),
        state=row["state"],
    )


def evidence_from(figures: dict[str, Any]) -> Evidence:
    return Evidence(
        samples=figures["samples"],
        stage_samples=figures["stage_samples"],
        candidate_regressions=figures["candidate_regressions"],
        baseline_noise_regressions=figures["baseline_noise_regressions"],
        both_regressed=figures["both_regressed"],
        errors=figures["counts"].get("error", 0),
        latency_p95_baseline_ms=figures["latency_ms"]["baseline"]["p95"],
        latency_p95_candidate_ms=figures["latency_ms"]["candidate"]["p95"],
        cost_usd_baseline=figures["cost_usd"]["baseline"],
        cost_usd_candidate=figures["cost_usd"]["candidate"],
        **_judge_evidence(figures.get("grades")),
    )


def _judge_evidence(grades: dict[str, Any] | None) -> dict[str, int]:
    if not grades:
        return {}
    return {
        "judged": grades["judged"],
        "graded": grades["graded"],
        "baseline_acceptable": grades["baseline_acceptable"],
        "candidate_acceptable": grades["candidate_acceptable"],
        "quality_candidate_worse": grades["candidate_worse"],
        "quality_candidate_better": grades["candidate_better"],
        "judge_failed_streak": grades["failed_streak"],
    }


def judge_report(grades: dict[str, Any] | None, confidence: float) -> dict[str, Any] | None:
    """The report's `judge` object: graded share, acceptability per side with intervals, discordant pairs."""
    if not grades or not grades["judged"]:
        return None

    def summary(g: dict[str, Any]) -> dict[str, Any]:
        graded = g["graded"]
        sides = {}
        for side in ("baseline", "candidate"):
            low, high = wilson_interval(g[f"{side}_acceptable"], graded, confidence)
            sides[side] = {"acceptable": g[f"{side}_acceptable"], "rate": _rate(g[f"{side}_acceptable"], graded),
                           "ci": [low, high]}
        return {
            "judged": g["judged"],
            "graded": graded,
            "graded_share": _rate(graded, g["judged"]),
            "ungraded_failed": g["failed"],
            "over_budget": g["over_budget"],
            "acceptability": sides,
            "discordant": {"candidate_worse": g["candidate_worse"], "candidate_better": g["candidate_better"]},
            "cost_usd": g["cost_usd"],
        }

    return {
        **summary(grades),
        "by_route": {route: summary(g) for route, g in grades["by_route"].items()},
        "failed_streak": grades["failed_streak"],
        "last_error": grades["last_error"],
        "silent": grades["failed_streak"] >= JUDGE_SILENT_AFTER,
    }


async def gate_view(store: SqlVerdictStore, spec: RolloutSpec) -> tuple[GateDecision, RolloutState, dict[str, Any]]:
    """What the gate would decide now, with the figures it decided on; changes nothing."""
    row = await store.rollout_state(spec.name)
    since = int(row["stage_started_compared"]) if row else 0
    figures = await store.verdict_figures(spec.name, stage_started_compared=since)
    state = rollout_state_of(spec, row)
    return evaluate_gate(spec.gate, state, evidence_from(figures)), state, figures


async def noisiest(
    store: SqlVerdictStore,
    spec: RolloutSpec,
    threshold_for: Callable[[str], float] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Per route of the rollout, the baseline's noisiest paths and codes over the recent window,
    with their rates and sample counts: what the comparator treats as noise (SPEC §8)."""
    counts = await store.noise_counts(spec.baseline, (now or utc_now()) - NOISE_WINDOW)
    result: dict[str, Any] = {}
    for route, rows in sorted(counts.items()):
        if not any(fnmatchcase(route, pattern) for pattern in spec.routes):
            continue
        threshold = threshold_for(route) if threshold_for else DEFAULT_VALUE_NOISE_THRESHOLD
        model = NoiseModel.from_rows(rows, threshold)
        paths = [(key, Rate(differed, samples)) for key, (differed, samples) in model.paths.items()]
        codes = [(code, rate) for code in model.codes if (rate := model.code_rate(code)) is not None]

        def top(entries: list[tuple[str, Rate]], name: str, threshold: float = threshold) -> list[dict[str, Any]]:
            ranked = sorted((e for e in entries if e[1].differed > 0), key=lambda e: (-e[1].rate, e[0]))
            return [
                {name: key, "rate": rate.rate, "differed": rate.differed, "samples": rate.samples,
                 "noise": rate.rate >= threshold}
                for key, rate in ranked[:NOISIEST_SHOWN]
            ]

        result[route] = {
            "noise_checked_requests": model.requests,
            "threshold": threshold,
            "paths": top(paths, "path"),
            "codes": top(codes, "code"),
        }
    return result


async def build_report(
    store: SqlVerdictStore, spec: RolloutSpec, threshold_for: Callable[[str], float] | None = None
) -> dict[str, Any]:
    decision, state, figures = await gate_view(store, spec)
    calls = await store.model_calls(spec.name)
    spent, gate_decisions = await store.call_spend(spec.name)
    counts = figures["counts"]
    errors_by_reason = await store.error_reason_counts(spec.name) if counts.get("error") else {}
    compared = figures["samples"]
    confidence = spec.gate.confidence
    regressions = counts.get("regression", 0)
    low, high = wilson_interval(regressions, compared, confidence)
    noise_low, noise_high = wilson_interval(figures["baseline_noise_regressions"], compared, confidence)
    cost = figures["cost_usd"]
    latency = figures["latency_ms"]
    by_code = {
        code: {**entry, "rate": _rate(entry["count"], compared)}
        for code, entry in sorted(figures["by_code"].items(), key=severity_then_count)
    }
    reasons = list(decision.reasons)
    if state.state == "rolled_back":
        reasons = await _rollback_reasons(store, spec.name, reasons)
    return {
        "rollout": spec.name,
        "baseline": spec.baseline,
        "candidate": spec.candidate,
        "state": state.state,
        "stage": state.stage_index + 1,
        "stage_index": state.stage_index,
        "stages": list(spec.stages),
        "canary_percent": _current_percent(spec, state),
        "decision": decision.decision,
        "gate_version": decision.gate_version,
        "reasons": reasons,
        "gate_figures": decision.figures,
        "counts": counts,
        "total": sum(counts.values()),
        "compared": compared,
        "stage_samples": figures["stage_samples"],
        "regression_rate": _rate(regressions, compared),
        "regression_rate_ci": [low, high],
        "confidence": confidence,
        "noise_rate": _rate(counts.get("noise", 0), compared),
        "errors_by_reason": dict(sorted(errors_by_reason.items(), key=lambda item: (-item[1], item[0]))),
        "baseline_noise_rate": _rate(figures["baseline_noise_regressions"], compared),
        "baseline_noise_rate_ci": [noise_low, noise_high],
        "by_code": by_code,
        "examples": await store.example_request_ids(spec.name, list(by_code)),
        "noise_by_code": figures["noise_by_code"],
        "by_route": {
            route: {
                "counts": route_counts,
                "total": sum(route_counts.values()),
                "regression_rate": _rate(
                    route_counts.get("regression", 0),
                    sum(route_counts.get(s, 0) for s in ("pass", "regression", "noise")),
                ),
            }
            for route, route_counts in sorted(figures["by_route"].items())
        },
        "latency_ms": latency,
        "latency_p95_ratio": (
            _ratio(latency["candidate"]["p95"], latency["baseline"]["p95"]) if spec.gate.latency_judged else None
        ),
        "latency_judged": spec.gate.latency_judged,  # false for replay_mode: batch: shown as "not judged"
        "cost_usd": {
            **cost,
            "ratio": _ratio(cost["candidate"], cost["baseline"]),
            # Judge spend: counted against budget.usd_per_hour, kept out of the candidate/baseline ratio.
            "grading": (figures.get("grades") or {}).get("cost_usd", 0.0),
        },
        "judge": judge_report(figures.get("grades"), confidence),
        "noise_check": {
            "fraction": spec.noise_check,
            "noise_checked": calls["noise_checked"],
            "noise_checked_share": _rate(calls["noise_checked"], calls["replayed"]),
            "model_calls": calls["model_calls"],
            "model_calls_per_compared": _rate(calls["model_calls"], compared),
        },
        "noisiest": await noisiest(store, spec, threshold_for),
        "spend": spend_report(spent, compared, gate_decisions),
    }


SEVERITY_ORDER = {"critical": 0, "major": 1, "minor": 2}


def severity_then_count(item: tuple[str, dict[str, Any]]) -> tuple[int, int, str]:
    """Critical codes first, then major, then minor; within a severity the most frequent first."""
    code, entry = item
    return SEVERITY_ORDER.get(str(entry.get("severity")), 3), -int(entry.get("count", 0)), code


async def _rollback_reasons(store: SqlVerdictStore, name: str, current: list[str]) -> list[str]:
    """A rolled-back rollout explains the rollback that stopped it, not what a new evaluation would hold on."""
    stopped = await store.latest_decision(name, "rollback")
    if stopped is None:
        return current
    who = "the gate" if stopped["kind"] == "gate" else str(stopped["actor"])
    return [f"rolled back at {stopped['at'][:19].replace('T', ' ')} UTC by {who}", *stopped["reasons"]]


def _current_percent(spec: RolloutSpec, state: RolloutState) -> int:
    if state.state == "rolled_back":
        return 0
    return spec.stages[state.stage_index]


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator
