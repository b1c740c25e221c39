"""The route × model table (SPEC §11): which model is good enough for each route, and what it costs.

A candidate is "not worse" on a route when the gate's own anytime-valid bound, computed over that
route's verdicts alone, shows its regression rate within the rollout's tolerance of the baseline's
disagreement with itself. The baseline is not worse by definition. Of the models not worse, the
one with the lowest cost per request is marked.
"""

from __future__ import annotations

from typing import Any

from shadowd.config import Config
from shadowd.core.figures import route_figures
from shadowd.core.gate import GateConfig
from shadowd.core.stats import PairedCounts, percentile, sequential_bounds, wilson_interval
from shadowd.ports import Store

# The mixing scale floor the gate uses for a zero tolerance (shadowd.core.gate._MIN_MIXING_SCALE).
_MIN_MIXING_SCALE = 0.005
LATENCY_SAMPLE = 20_000


def _latency(values: list[float]) -> dict[str, float | None]:
    return {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}


def _per_request(total: float, n: int) -> float | None:
    return total / n if n else None


def _acceptability(entry: dict[str, Any], side: str, confidence: float) -> dict[str, Any]:
    """The judged share of acceptable answers on one side, with its interval; None when nothing was graded."""
    grades = entry.get("grades")
    if not grades or not grades["graded"]:
        return {"acceptability": None, "acceptability_ci": [None, None], "graded": 0}
    acceptable, graded = grades[f"{side}_acceptable"], grades["graded"]
    return {"acceptability": acceptable / graded, "acceptability_ci": list(wilson_interval(acceptable, graded,
                                                                                           confidence)),
            "graded": graded}


def _judge(entry: dict[str, Any], gate: GateConfig) -> dict[str, Any]:
    """The paired bound of the candidate's regression-rate increase on one route."""
    n = entry["samples"]
    if not n:
        return {"verdict": "no data", "increase": None, "increase_ci": [None, None]}
    counts = PairedCounts.from_totals(
        n=n, candidate=entry["candidate_regressions"], baseline=entry["baseline_noise_regressions"],
        both=entry["both_regressed"],
    )
    tolerance = gate.max_regression_rate_increase
    bounds = sequential_bounds(counts, gate.confidence, max(tolerance, _MIN_MIXING_SCALE))
    if bounds.upper <= tolerance:
        verdict = "not worse"
    elif bounds.lower > tolerance:
        verdict = "worse"
    else:
        verdict = "undecided"
    return {"verdict": verdict, "increase": bounds.estimate, "increase_ci": [bounds.lower, bounds.upper]}


async def build_routes_table(store: Store, config: Config) -> dict[str, Any]:
    """Rows per route and model (the baseline once per route, each rollout's candidate), the cheapest marked."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    baselines: dict[tuple[str, str], dict[str, Any]] = {}
    for spec in config.rollouts:
        for route, entry in sorted(route_figures(await store.rollout_totals(spec.name)).items()):
            latencies = await store.route_latencies(spec.name, route, LATENCY_SAMPLE)
            n = entry["samples"]
            judged = _judge(entry, spec.gate)
            candidate_ci = wilson_interval(entry["candidate_regressions"], n, spec.gate.confidence)
            row = {
                "route": route,
                "model": spec.candidate,
                "role": "candidate",
                "rollout": spec.name,
                "baseline": spec.baseline,
                "verdicts": n,
                "total": sum(entry["counts"].values()),
                "regression_rate": entry["candidate_regressions"] / n if n else None,
                "regression_rate_ci": list(candidate_ci) if n else [None, None],
                "increase_over_baseline": judged["increase"],
                "increase_ci": judged["increase_ci"],
                "tolerance": spec.gate.max_regression_rate_increase,
                "confidence": spec.gate.confidence,
                "judgement": judged["verdict"],
                **_acceptability(entry, "candidate", spec.gate.confidence),
                "latency_ms": _latency(latencies["candidate"]),
                "latency_sample": len(latencies["candidate"]),
                "cost_per_request_usd": _per_request(entry["cost_usd"]["candidate"], n),
                "recommended": False,
            }
            groups.setdefault((route, spec.baseline), []).append(row)
            known = baselines.get((route, spec.baseline))
            if known is None or n > known["verdicts"]:
                noise_ci = wilson_interval(entry["baseline_noise_regressions"], n, spec.gate.confidence)
                baselines[(route, spec.baseline)] = {
                    "route": route,
                    "model": spec.baseline,
                    "role": "baseline",
                    "rollout": spec.name,
                    "baseline": spec.baseline,
                    "verdicts": n,
                    "total": sum(entry["counts"].values()),
                    # The baseline's "regression rate" is how often it regresses against its own replay.
                    "regression_rate": entry["baseline_noise_regressions"] / n if n else None,
                    "regression_rate_ci": list(noise_ci) if n else [None, None],
                    "increase_over_baseline": 0.0 if n else None,
                    "increase_ci": [None, None],
                    "tolerance": spec.gate.max_regression_rate_increase,
                    "confidence": spec.gate.confidence,
                    "judgement": "baseline",
                    **_acceptability(entry, "baseline", spec.gate.confidence),
                    "latency_ms": _latency(latencies["baseline"]),
                    "latency_sample": len(latencies["baseline"]),
                    "cost_per_request_usd": _per_request(entry["cost_usd"]["baseline"], n),
                    "recommended": False,
                }
    items: list[dict[str, Any]] = []
    for key in sorted(groups):
        rows = [baselines[key], *sorted(groups[key], key=lambda r: (r["model"], r["rollout"]))]
        eligible = [r for r in rows if r["judgement"] in ("baseline", "not worse") and r["verdicts"]]
        priced = [r for r in eligible if r["cost_per_request_usd"] is not None]
        if priced:
            min(priced, key=lambda r: (r["cost_per_request_usd"], r["role"] != "baseline"))["recommended"] = True
        items.extend(rows)
    return {"items": items, "latency_sample_limit": LATENCY_SAMPLE}
