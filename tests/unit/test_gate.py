"""Decisions of the canary gate, case by case, and the invariants every decision keeps."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowd.core.gate import GATE_VERSION, Evidence, GateConfig, GateDecision, RolloutState, evaluate_gate

STAGES = (1, 5, 25, 50, 100)
CONFIG = GateConfig()

# 5,000 verdicts with 1% regressions on each side, mostly on different requests: shown within tolerance.
GOOD = Evidence(samples=5000, stage_samples=400, candidate_regressions=50, baseline_noise_regressions=50,
                both_regressed=1, latency_p95_baseline_ms=900.0, latency_p95_candidate_ms=990.0,
                cost_usd_baseline=10.0, cost_usd_candidate=12.0)
# 1,000 verdicts, the candidate regressing on 6.1% against 0.6% noise: proven worse than tolerated.
BAD = Evidence(samples=1000, stage_samples=1000, candidate_regressions=61, baseline_noise_regressions=6,
               both_regressed=1)


def ev(base: Evidence, **changes: object) -> Evidence:
    fields = {name: getattr(base, name) for name in Evidence.__slots__}
    fields.update(changes)
    return Evidence(**fields)


@dataclass(frozen=True)
class Case:
    name: str
    state: RolloutState
    evidence: Evidence
    decision: str
    stage_index: int
    canary_percent: int
    first_reason: str  # a fragment the decisive (first) reason must contain


CASES = [
    Case("paused holds however good the data", RolloutState(STAGES, 1, "paused"), GOOD,
         "hold", 1, 5, "paused by an operator"),
    Case("paused holds however bad the data", RolloutState(STAGES, 1, "paused"), BAD,
         "hold", 1, 5, "paused by an operator"),
    Case("rolled back stays rolled back", RolloutState(STAGES, 2, "rolled_back"), GOOD,
         "rollback", 2, 0, "stays rolled back"),
    Case("complete stays complete", RolloutState(STAGES, 4, "complete"), BAD,
         "complete", 4, 100, "already complete"),
    Case("clear harm rolls back before min_samples", RolloutState(STAGES, 0),
         Evidence(samples=150, stage_samples=150, candidate_regressions=150, baseline_noise_regressions=0,
                  both_regressed=0),
         "rollback", 0, 0, "lower 95% bound of the increase"),
    # The case: 48% regressions against 2% noise at 170 verdicts held as "170 of 200".
    Case("48% against 2% noise at 170 verdicts rolls back", RolloutState(STAGES, 1),
         Evidence(samples=170, stage_samples=170, candidate_regressions=82, baseline_noise_regressions=3,
                  both_regressed=1),
         "rollback", 1, 0, "regression rate 48.24% vs baseline noise 1.76%"),
    # Near miss: the same few verdicts with a modest excess are not proof of harm yet.
    Case("a modest excess before min_samples holds", RolloutState(STAGES, 0),
         Evidence(samples=150, stage_samples=150, candidate_regressions=9, baseline_noise_regressions=3,
                  both_regressed=0),
         "hold", 0, 1, "150 of 200 compared verdicts"),
    Case("no data holds", RolloutState(STAGES, 0), Evidence(0, 0, 0, 0, 0),
         "hold", 0, 1, "0 of 200 compared verdicts"),
    Case("clear regression rolls back", RolloutState(STAGES, 0), BAD,
         "rollback", 0, 0, "lower 95% bound of the increase 3."),
    Case("a regression proven early in a stage still rolls back", RolloutState(STAGES, 2),
         ev(BAD, samples=3000, stage_samples=20, candidate_regressions=183, baseline_noise_regressions=18,
            both_regressed=3),
         "rollback", 2, 0, "regression rate 6.10% vs baseline noise 0.60%"),
    Case("a young stage holds before promoting", RolloutState(STAGES, 1), ev(GOOD, stage_samples=199),
         "hold", 1, 5, "stage 5%: 199 of 200 new compared verdicts"),
    Case("non-inferior candidate promotes", RolloutState(STAGES, 1), GOOD,
         "promote", 2, 25, "stage 5% passed: promote to 25%"),
    Case("last stage passed completes", RolloutState(STAGES, 4), GOOD,
         "complete", 4, 100, "last stage 100% passed"),
    Case("single stage passed completes", RolloutState((100,), 0), GOOD,
         "complete", 0, 100, "last stage 100% passed"),
    Case("not yet non-inferior holds, never fails", RolloutState(STAGES, 0),
         ev(GOOD, samples=800, stage_samples=800, candidate_regressions=8, baseline_noise_regressions=8,
            both_regressed=0),
         "hold", 0, 1, "not yet shown within tolerance"),
    Case("slow candidate rolls back", RolloutState(STAGES, 1), ev(GOOD, latency_p95_candidate_ms=1620.0),
         "rollback", 1, 0, "latency p95 ratio 1.80 (candidate 1620 ms vs baseline 900 ms) > 1.50"),
    Case("expensive candidate rolls back", RolloutState(STAGES, 1), ev(GOOD, cost_usd_candidate=25.0),
         "rollback", 1, 0, "cost ratio 2.50 (candidate $25.0000 vs baseline $10.0000) > 2.00"),
    Case("cost breach waits for min_samples", RolloutState(STAGES, 0),
         ev(GOOD, samples=199, stage_samples=199, candidate_regressions=2, baseline_noise_regressions=2,
            both_regressed=0, cost_usd_candidate=80.0),
         "hold", 0, 1, "199 of 200"),
    Case("latency breach waits for min_samples", RolloutState(STAGES, 0),
         ev(GOOD, samples=100, stage_samples=100, candidate_regressions=1, baseline_noise_regressions=1,
            both_regressed=0, latency_p95_candidate_ms=5000.0),
         "hold", 0, 1, "too little data"),
    Case("unmeasured latency does not block", RolloutState(STAGES, 1),
         ev(GOOD, latency_p95_baseline_ms=None), "promote", 2, 25, "promote to 25%"),
    Case("a baseline without cost does not block", RolloutState(STAGES, 1),
         ev(GOOD, cost_usd_baseline=0.0), "promote", 2, 25, "promote to 25%"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_gate_decisions(case: Case) -> None:
    """Each table row gets its decision, next stage, canary share and a decisive reason with numbers."""
    decision = evaluate_gate(CONFIG, case.state, case.evidence)
    assert (decision.decision, decision.stage_index, decision.canary_percent) == (
        case.decision, case.stage_index, case.canary_percent
    )
    assert case.first_reason in decision.reasons[0], decision.reasons


def test_promotion_reasons_carry_the_numbers() -> None:
    """A promotion states the rates, the upper bound against the tolerance, and both ratios, as figures do."""
    decision = evaluate_gate(CONFIG, RolloutState(STAGES, 1), GOOD)
    text = "\n".join(decision.reasons)
    figures = decision.figures
    upper = figures.rate_increase_upper
    assert isinstance(upper, float) and upper <= 0.01
    assert "regression rate 1.00% vs baseline noise 1.00% (increase 0.00%, n=5000)" in text
    assert f"upper 95% bound of the increase {upper:.2%} ≤ 1.00%" in text
    assert "latency p95 ratio 1.10 (candidate 990 ms vs baseline 900 ms) ≤ 1.50" in text
    assert "cost ratio 1.20 (candidate $12.0000 vs baseline $10.0000) ≤ 2.00" in text
    assert figures.samples == 5000 and figures.stage_percent == 5 and figures.canary_percent == 25
    assert figures.latency_p95_ratio == pytest.approx(1.1) and figures.cost_ratio == pytest.approx(1.2)


def test_rollback_reasons_lead_with_the_failure() -> None:
    """A rollback leads with the failed check and does not also say the bound is "not yet shown"."""
    expensive = ev(BAD, cost_usd_baseline=1.0, cost_usd_candidate=3.0)
    decision = evaluate_gate(CONFIG, RolloutState(STAGES, 0), expensive)
    assert decision.reasons[0].startswith("regression rate 6.10% vs baseline noise 0.60%")
    assert decision.reasons[1].startswith("cost ratio 3.00")
    assert not any("not yet shown" in reason for reason in decision.reasons)
    lower = decision.figures.rate_increase_lower
    assert isinstance(lower, float) and lower > 0.01


def test_error_verdicts_are_reported_not_counted() -> None:
    """Error verdicts appear in the reasons and figures but do not change the decision."""
    with_errors = evaluate_gate(CONFIG, RolloutState(STAGES, 1), ev(GOOD, errors=37))
    assert with_errors.decision == "promote"
    assert "37 error verdicts (no fair comparison) are not counted" in with_errors.reasons
    assert with_errors.figures.errors == 37


def test_zero_tolerance_never_promotes_an_identical_candidate() -> None:
    """With max_regression_rate_increase 0, equal rates never show "not worse by more than 0": it holds."""
    strict = GateConfig(max_regression_rate_increase=0.0)
    equal = ev(GOOD, samples=50_000, candidate_regressions=500, baseline_noise_regressions=500,
               both_regressed=5)
    decision = evaluate_gate(strict, RolloutState(STAGES, 0), equal)
    assert decision.decision == "hold"


@pytest.mark.parametrize(
    "changes",
    [
        {"stage_samples": 6000},
        {"candidate_regressions": 6000},
        {"both_regressed": 51},
        {"candidate_regressions": 4000, "baseline_noise_regressions": 4000, "both_regressed": 0},
        {"errors": -1},
    ],
)
def test_inconsistent_evidence_is_refused(changes: dict[str, int]) -> None:
    """Counts that cannot come from real verdicts raise instead of producing a decision."""
    with pytest.raises(ValueError):
        ev(GOOD, **changes)


def test_state_outside_the_stages_is_refused() -> None:
    """A stage index outside the stages, or no stages at all, raises."""
    with pytest.raises(ValueError):
        RolloutState(STAGES, 5)
    with pytest.raises(ValueError):
        RolloutState((), 0)


@st.composite
def evidence(draw: st.DrawFn) -> Evidence:
    samples = draw(st.integers(0, 20_000))
    candidate = draw(st.integers(0, samples))
    baseline = draw(st.integers(0, samples))
    both = draw(st.integers(max(0, candidate + baseline - samples), min(candidate, baseline)))
    latency = draw(st.one_of(st.none(), st.floats(1.0, 10_000.0)))
    return Evidence(
        samples=samples,
        stage_samples=draw(st.integers(0, samples)),
        candidate_regressions=candidate,
        baseline_noise_regressions=baseline,
        both_regressed=both,
        errors=draw(st.integers(0, 1000)),
        latency_p95_baseline_ms=latency,
        latency_p95_candidate_ms=draw(st.floats(1.0, 10_000.0)),
        cost_usd_baseline=draw(st.floats(0.0, 100.0)),
        cost_usd_candidate=draw(st.floats(0.0, 100.0)),
    )


@settings(max_examples=300, deadline=None)
@given(evidence=evidence(), stage_index=st.integers(0, 4))
def test_every_decision_keeps_the_gate_invariants(evidence: Evidence, stage_index: int) -> None:
    """For any consistent evidence: too little data only holds or rolls back on the regression bound;
    promotion needs shown non-inferiority; every decision names the gate version."""
    decision: GateDecision = evaluate_gate(CONFIG, RolloutState(STAGES, stage_index), evidence)
    assert decision.reasons
    assert decision.gate_version == GATE_VERSION and decision.figures.gate_version == GATE_VERSION
    if evidence.samples < CONFIG.min_samples:
        assert decision.decision in ("hold", "rollback")
        if decision.decision == "rollback":
            lower = decision.figures.rate_increase_lower
            assert isinstance(lower, float) and lower > CONFIG.max_regression_rate_increase
    if decision.decision in ("promote", "complete"):
        upper = decision.figures.rate_increase_upper
        assert isinstance(upper, float) and upper <= CONFIG.max_regression_rate_increase
        assert evidence.stage_samples >= CONFIG.min_samples
        assert decision.canary_percent == (STAGES[stage_index + 1] if decision.decision == "promote" else 100)
    if decision.decision == "rollback":
        assert decision.canary_percent == 0
    if decision.decision == "hold":
        assert decision.canary_percent == STAGES[stage_index]
