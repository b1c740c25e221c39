"""Whole canary rollouts simulated with the pure gate alone: error rates of the promotion policy."""

from __future__ import annotations

import random
from dataclasses import dataclass

from shadowd.core.gate import Evidence, GateConfig, RolloutState, evaluate_gate

STAGES = (1, 5, 25, 50, 100)
BATCH = 50  # the promoter looks after every 50 new compared verdicts
CAP = 40_000  # a rollout still undecided here counts as holding
NOISE_RATES = (0.01, 0.02, 0.03, 0.05)  # the baseline's blocking-noise rate q, cycled over rollouts
ROLLOUTS = 200


@dataclass(frozen=True)
class Outcome:
    final: str  # "complete", "rollback" or "undecided" (still holding at CAP)
    highest_stage: int  # the highest stage index reached
    samples: int


def simulate_rollout(
    rng: random.Random, noise_rate: float, lift: float, config: GateConfig, batch: int = BATCH, cap: int = CAP
) -> Outcome:
    """One rollout: candidate regresses with probability noise_rate + lift, the baseline's noise replay
    with probability noise_rate, independently, so E[c − b] = lift."""
    p_candidate, p_baseline = noise_rate + lift, noise_rate
    state = RolloutState(STAGES, 0)
    samples = stage_samples = candidate = baseline = both = 0
    while samples < cap:
        for _ in range(batch):
            c = rng.random() < p_candidate
            b = rng.random() < p_baseline
            candidate += c
            baseline += b
            both += c and b
        samples += batch
        stage_samples += batch
        evidence = Evidence(
            samples=samples,
            stage_samples=stage_samples,
            candidate_regressions=candidate,
            baseline_noise_regressions=baseline,
            both_regressed=both,
            latency_p95_baseline_ms=900.0,
            latency_p95_candidate_ms=900.0 * rng.uniform(0.95, 1.05),
            cost_usd_baseline=0.010 * samples,
            cost_usd_candidate=0.012 * samples,
        )
        decision = evaluate_gate(config, state, evidence)
        if decision.decision == "promote":
            state = RolloutState(STAGES, decision.stage_index)
            stage_samples = 0
        elif decision.decision in ("rollback", "complete"):
            return Outcome(decision.decision, state.stage_index, samples)
    return Outcome("undecided", state.stage_index, samples)


def run(seed: int, lift: float) -> list[Outcome]:
    rng, config = random.Random(seed), GateConfig()
    return [simulate_rollout(rng, NOISE_RATES[i % len(NOISE_RATES)], lift, config) for i in range(ROLLOUTS)]


def test_identical_candidate_promotes_through_every_stage() -> None:
    """200 rollouts of a candidate identical to the baseline complete every stage; false rollbacks ≤ 5%."""
    outcomes = run(seed=1, lift=0.0)
    rollbacks = sum(o.final == "rollback" for o in outcomes)
    completed = [o for o in outcomes if o.final == "complete"]
    assert rollbacks / len(outcomes) <= 0.05
    assert len(completed) == len(outcomes) - rollbacks  # nobody is left holding at CAP
    assert all(o.highest_stage == len(STAGES) - 1 for o in completed)
    # Reasonable sample counts: the worst noise rate (5%) needs about 9k verdicts on average.
    assert sum(o.samples for o in completed) / len(completed) < 12_000


def test_regressed_candidate_never_reaches_the_25_percent_stage() -> None:
    """200 rollouts of a candidate 2 points worse hold or roll back before 25% in at least 95% of them."""
    outcomes = run(seed=2, lift=0.02)
    stopped_early = sum(o.highest_stage < STAGES.index(25) for o in outcomes)
    assert stopped_early / len(outcomes) >= 0.95
    # Holding is allowed, but the anytime-valid lower bound does get there: most roll back within CAP.
    assert sum(o.final == "rollback" for o in outcomes) / len(outcomes) >= 0.9


def test_a_45_point_regression_is_rolled_back_within_50_verdicts() -> None:
    """Looking every 10 verdicts, a candidate 45 points worse is rolled back by the 50th compared
    verdict in at least 95% of 200 rollouts at every noise rate: min_samples does not delay it."""
    rng, config = random.Random(45), GateConfig()
    for noise_rate in NOISE_RATES:
        outcomes = [simulate_rollout(rng, noise_rate, 0.45, config, batch=10, cap=400) for _ in range(ROLLOUTS)]
        early = sum(o.final == "rollback" and o.samples <= 50 for o in outcomes)
        assert early / len(outcomes) >= 0.95, (noise_rate, early)


def test_identical_candidate_looked_at_every_10_verdicts_is_rarely_rolled_back() -> None:
    """With a look every 10 verdicts from the first one, false rollbacks of an identical candidate
    stay within 1 − confidence: rolling back at any n does not spend the error budget."""
    rng, config = random.Random(11), GateConfig()
    outcomes = [
        simulate_rollout(rng, NOISE_RATES[i % len(NOISE_RATES)], 0.0, config, batch=10, cap=1500)
        for i in range(ROLLOUTS)
    ]
    assert sum(o.final == "rollback" for o in outcomes) / len(outcomes) <= 1 - config.confidence
