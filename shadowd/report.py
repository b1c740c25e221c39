"""The rollout report (SPEC §4 `report --json`): figures from the store, the gate's view of them.

`read_report` returns the typed `RolloutReport`; `build_report` its wire form, the JSON every surface serves.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from shadowd.clock import utc_now
from shadowd.core.figures import VerdictFigures, verdict_figures
from shadowd.core.gate import GateDecision, RolloutState, evaluate_gate
from shadowd.core.noise import DEFAULT_VALUE_NOISE_THRESHOLD, NOISE_WINDOW, NoiseModel, Rate
from shadowd.core.rollout import RolloutSpec
from shadowd.core.rollout_report import (
    SEVERITY_ORDER,
    NoisiestRoute,
    NoisyEntry,
    RolloutReport,
    compose_report,
    severity_then_count,
)
from shadowd.ports import ReportStore, RolloutRow

NOISIEST_SHOWN = 5

def rollout_state_of(spec: RolloutSpec, row: RolloutRow | None) -> RolloutState:
    if row is None:
        return RolloutState(stages=spec.stages, stage_index=0, state="active")
    return RolloutState(
        stages=spec.stages,
        stage_index=min(int(row["stage_index"]), len(spec.stages) - 1),
        state=row["state"],
    )


async def current_figures(store: ReportStore, name: str, stage_started_compared: int = 0) -> VerdictFigures:
    """The rollout's figures from the store's running totals (a read: it changes nothing)."""
    return verdict_figures(await store.rollout_totals(name), stage_started_compared)


async def gate_view(store: ReportStore, spec: RolloutSpec) -> tuple[GateDecision, RolloutState, VerdictFigures]:
    """What the gate would decide now, with the figures it decided on; changes nothing."""
    row = await store.rollout_state(spec.name)
    since = int(row["stage_started_compared"]) if row else 0
    figures = await current_figures(store, spec.name, since)
    state = rollout_state_of(spec, row)
    return evaluate_gate(spec.gate, state, figures.evidence()), state, figures


async def noisiest(
    store: ReportStore,
    spec: RolloutSpec,
    threshold_for: Callable[[str], float] | None = None,
    now: datetime | None = None,
) -> dict[str, NoisiestRoute]:
    """Per route of the rollout, the baseline's noisiest paths and codes over the recent window,
    with their rates and sample counts: what the comparator treats as noise (SPEC §8)."""
    counts = await store.noise_counts(spec.baseline, (now or utc_now()) - NOISE_WINDOW)
    result: dict[str, NoisiestRoute] = {}
    for route, rows in sorted(counts.items()):
        if not any(fnmatchcase(route, pattern) for pattern in spec.routes):
            continue
        threshold = threshold_for(route) if threshold_for else DEFAULT_VALUE_NOISE_THRESHOLD
        model = NoiseModel.from_rows(rows, threshold)
        paths = [(key, Rate(differed, samples)) for key, (differed, samples) in model.paths.items()]
        codes = [(code, rate) for code in model.codes if (rate := model.code_rate(code)) is not None]

        def top(entries: list[tuple[str, Rate]], kind: str, threshold: float = threshold) -> tuple[NoisyEntry, ...]:
            ranked = sorted((e for e in entries if e[1].differed > 0), key=lambda e: (-e[1].rate, e[0]))
            return tuple(
                NoisyEntry(kind, key, rate.rate, rate.differed, rate.samples, rate.rate >= threshold)
                for key, rate in ranked[:NOISIEST_SHOWN]
            )

        result[route] = NoisiestRoute(
            noise_checked_requests=model.requests,
            threshold=threshold,
            paths=top(paths, "path"),
            codes=top(codes, "code"),
        )
    return result


async def read_report(
    store: ReportStore, spec: RolloutSpec, threshold_for: Callable[[str], float] | None = None
) -> RolloutReport:
    """The typed report of one rollout, read from the store (a read: it changes nothing)."""
    decision, state, figures = await gate_view(store, spec)
    calls = await store.model_calls(spec.name)
    spend, gate_decisions = await store.call_spend(spec.name)
    errors_by_reason = await store.error_reason_counts(spec.name) if figures.counts.get("error") else {}
    reasons = tuple(decision.reasons)
    if state.state == "rolled_back":
        reasons = await _rollback_reasons(store, spec.name, reasons)
    codes = [code for code, _ in sorted(((c, e.to_wire()) for c, e in figures.by_code.items()),
                                        key=severity_then_count)]
    return compose_report(
        spec, state, decision, figures,
        reasons=reasons,
        errors_by_reason=errors_by_reason,
        examples=await store.example_request_ids(spec.name, codes),
        calls=calls,
        noisiest=await noisiest(store, spec, threshold_for),
        spend=spend,
        gate_decisions=gate_decisions,
    )


async def build_report(
    store: ReportStore, spec: RolloutSpec, threshold_for: Callable[[str], float] | None = None
) -> dict[str, Any]:
    """The report's wire form (SPEC §4): what the CLI prints and the HTTP API serves."""
    return (await read_report(store, spec, threshold_for)).to_wire()


async def _rollback_reasons(store: ReportStore, name: str, current: tuple[str, ...]) -> tuple[str, ...]:
    """A rolled-back rollout explains the rollback that stopped it, not what a new evaluation would hold on."""
    stopped = await store.latest_decision(name, "rollback")
    if stopped is None:
        return current
    who = "the gate" if stopped["kind"] == "gate" else str(stopped["actor"])
    return (f"rolled back at {stopped['at'][:19].replace('T', ' ')} UTC by {who}", *stopped["reasons"])


__all__ = ["SEVERITY_ORDER", "build_report", "gate_view", "read_report", "severity_then_count"]
