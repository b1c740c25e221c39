"""Samples to a canary decision: the anytime-valid gate against a fixed-sample test of the same error rates.

    python benchmarks/gate_simulation.py [--rollouts 1000] [--seed 1] [--jobs 2]

Uses shadowd.core alone (no I/O); results and how to read them are in benchmarks/GATE.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shadowd.core.gate import Evidence, GateConfig, RolloutState, evaluate_gate
from shadowd.core.stats import PairedCounts, mixture_rejects, paired_sample_size, score_statistic

STAGES = (1, 5, 25, 50, 100)
BATCH = 50  # the promoter looks after every 50 new compared verdicts
CAP = 100_000  # a rollout still undecided here counts as holding
NOISE_RATES = (0.01, 0.02, 0.03, 0.05)
LIFT = 0.02  # the regressed candidate's critical-regression rate above the baseline's noise
CONFIG = GateConfig()  # min_samples 200, tolerance 1 point, confidence 95%
POWER = 0.95  # the fixed-sample design's power, matching the gate's 5% error budget
LARGE_LIFTS = (0.10, 0.25, 0.45)  # clear harm: the gate must stop it at once, whatever min_samples
EARLY_LOOK = 10  # in the large-effect and early-look rows the promoter looks every 10 verdicts
EARLY_CAP = 3000


@dataclass(frozen=True)
class Rollout:
    final: str  # complete | rollback | undecided
    highest_stage: int
    first_decision: int  # verdicts when the gate first promoted or rolled back (0: never)
    samples: int  # verdicts when the rollout ended


def draw(rng: random.Random, p_candidate: float, p_baseline: float, batch: int = BATCH) -> tuple[int, int, int]:
    """One batch of independent flags: (candidate regressed, baseline noise, both)."""
    candidate = baseline = both = 0
    for _ in range(batch):
        c = rng.random() < p_candidate
        b = rng.random() < p_baseline
        candidate += c
        baseline += b
        both += c and b
    return candidate, baseline, both


def sequential_rollout(
    rng: random.Random, noise_rate: float, lift: float, batch: int = BATCH, cap: int = CAP
) -> Rollout:
    state = RolloutState(STAGES, 0)
    samples = stage_samples = candidate = baseline = both = first = 0
    while samples < cap:
        c, b, k = draw(rng, noise_rate + lift, noise_rate, batch)
        candidate, baseline, both = candidate + c, baseline + b, both + k
        samples += batch
        stage_samples += batch
        # Latency and cost within their bounds: this benchmark is about the regression statistics.
        latency = 900.0 * rng.uniform(0.95, 1.05)
        evidence = Evidence(samples, stage_samples, candidate, baseline, both,
                            latency_p95_baseline_ms=900.0, latency_p95_candidate_ms=latency,
                            cost_usd_baseline=0.010 * samples, cost_usd_candidate=0.012 * samples)
        decision = evaluate_gate(CONFIG, state, evidence)
        if decision.decision != "hold" and not first:
            first = samples
        if decision.decision == "promote":
            state = RolloutState(STAGES, decision.stage_index)
            stage_samples = 0
        elif decision.decision in ("rollback", "complete"):
            return Rollout(decision.decision, state.stage_index, first, samples)
    return Rollout("undecided", state.stage_index, first, samples)


def fixed_sample_decision(rng: random.Random, noise_rate: float, lift: float, n: int) -> str:
    """One look at n verdicts with Tango's score test at the margin, one-sided 5% each way."""
    z_alpha = NormalDist().inv_cdf(CONFIG.confidence)
    candidate_only = baseline_only = 0
    p_candidate, p_baseline = noise_rate + lift, noise_rate
    for _ in range(n):
        c = rng.random() < p_candidate
        b = rng.random() < p_baseline
        candidate_only += c and not b
        baseline_only += b and not c
    z = score_statistic(PairedCounts(n, candidate_only, baseline_only), CONFIG.max_regression_rate_increase)
    assert z is not None
    return "promote" if z < -z_alpha else "rollback" if z > z_alpha else "hold"


def promotes_at_margin(rng: random.Random, noise_rate: float, horizon: int) -> tuple[bool, bool]:
    """A candidate exactly at the tolerance (lift = margin), looked at every batch up to `horizon`:
    does the sequential non-inferiority bound ever promote it, and does a fixed-sample test re-run
    at every look ever promote it? Both are false promotions."""
    margin = CONFIG.max_regression_rate_increase
    z_alpha = NormalDist().inv_cdf(CONFIG.confidence)
    samples = candidate_only = baseline_only = 0
    sequential = naive = False
    while samples < horizon and not (sequential and naive):
        c, b, k = draw(rng, noise_rate + margin, noise_rate)
        candidate_only, baseline_only = candidate_only + c - k, baseline_only + b - k
        samples += BATCH
        if samples < CONFIG.min_samples:
            continue
        counts = PairedCounts(samples, candidate_only, baseline_only)
        sequential = sequential or mixture_rejects(counts, margin, "less", CONFIG.confidence, margin)
        z = score_statistic(counts, margin)
        naive = naive or (z is not None and z < -z_alpha)
    return sequential, naive


def fixed_sizes(noise_rate: float) -> tuple[int, int]:
    """Nam's n for 95% power: to promote an identical candidate, to roll back a regressed one."""
    q, margin = noise_rate, CONFIG.max_regression_rate_increase
    identical = paired_sample_size(q * (1 - q), q * (1 - q), margin, CONFIG.confidence, POWER)
    p = q + LIFT
    regressed = paired_sample_size(p * (1 - q), q * (1 - p), margin, CONFIG.confidence, POWER)
    return identical, regressed


def scenario(task: tuple[str, float, int, int]) -> tuple[str, float, list[object]]:
    kind, noise_rate, rollouts, seed = task
    rng = random.Random(f"{seed}-{kind}-{noise_rate}")
    identical_n, regressed_n = fixed_sizes(noise_rate)
    run: Callable[[], object]
    if kind == "identical":
        def run() -> object:
            return sequential_rollout(rng, noise_rate, 0.0)
    elif kind == "regressed":
        def run() -> object:
            return sequential_rollout(rng, noise_rate, LIFT)
    elif kind.startswith("large-"):
        lift = float(kind.removeprefix("large-"))

        def run() -> object:
            return sequential_rollout(rng, noise_rate, lift, EARLY_LOOK, 1000)
    elif kind == "early-identical":
        def run() -> object:
            return sequential_rollout(rng, noise_rate, 0.0, EARLY_LOOK, EARLY_CAP)
    elif kind == "fixed-identical":
        def run() -> object:
            return fixed_sample_decision(rng, noise_rate, 0.0, identical_n)
    elif kind == "fixed-regressed":
        def run() -> object:
            return fixed_sample_decision(rng, noise_rate, LIFT, regressed_n)
    else:
        def run() -> object:
            return promotes_at_margin(rng, noise_rate, 4 * identical_n)
    return kind, noise_rate, [run() for _ in range(rollouts)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=1000, help="rollouts per scenario and noise rate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    kinds = ("identical", "regressed", "fixed-identical", "fixed-regressed", "margin", "early-identical",
             *(f"large-{lift}" for lift in LARGE_LIFTS))
    tasks = [(kind, q, args.rollouts, args.seed) for q in NOISE_RATES for kind in kinds]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = {(kind, q): outcomes for kind, q, outcomes in pool.map(scenario, tasks)}
    elapsed = time.perf_counter() - started

    print(f"# {args.rollouts} rollouts per cell, seed {args.seed}, a look every {BATCH} verdicts, "
          f"min_samples {CONFIG.min_samples}, tolerance {CONFIG.max_regression_rate_increase:.0%}, "
          f"confidence {CONFIG.confidence:.0%}, regressed = +{LIFT:.0%}")
    print(f"# {platform.python_implementation()} {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} cores, {args.jobs} jobs, {elapsed:.0f} s")
    print("\nSamples (compared verdicts) to the first decision: promote for the identical candidate,")
    print("roll back for the regressed one. Fixed n: Nam's formula, one-sided 5%, power 95%.\n")
    print("| noise q | identical: fixed n | identical: sequential mean / median / p90 | regressed: fixed n "
          "| regressed: sequential mean / median / p90 | identical: all 5 stages, mean |")
    print("|---|---|---|---|---|---|")
    for q in NOISE_RATES:
        identical_n, regressed_n = fixed_sizes(q)
        same, worse = rollouts(results, "identical", q), rollouts(results, "regressed", q)
        print(
            f"| {q:.0%} | {identical_n:,} | {summary([r.first_decision for r in same if r.first_decision])} "
            f"| {regressed_n:,} | {summary([r.samples for r in worse if r.final == 'rollback'])} "
            f"| {statistics.mean(r.samples for r in same if r.final == 'complete'):,.0f} |"
        )
    print("\nError rates. Margin: a candidate exactly at the tolerance (+1 point), looked at every batch up")
    print("to 4x the fixed n; any promotion there is false.\n")
    print("| noise q | identical: false rollbacks | identical: completed all stages "
          "| regressed: held or rolled back before 25% | regressed: rolled back | regressed: ever promoted "
          "| fixed-n test: promotes identical / rolls back regressed "
          "| margin, false promotions: sequential / fixed test re-run at every look |")
    print("|---|---|---|---|---|---|---|---|")
    for q in NOISE_RATES:
        same, worse = rollouts(results, "identical", q), rollouts(results, "regressed", q)
        fixed_same, fixed_worse = results[("fixed-identical", q)], results[("fixed-regressed", q)]
        margin = [m for m in results[("margin", q)] if isinstance(m, tuple)]
        n = len(same)
        print(
            f"| {q:.0%} | {share(sum(r.final == 'rollback' for r in same), n)} "
            f"| {share(sum(r.final == 'complete' for r in same), n)} "
            f"| {share(sum(r.highest_stage < STAGES.index(25) for r in worse), n)} "
            f"| {share(sum(r.final == 'rollback' for r in worse), n)} "
            f"| {share(sum(r.highest_stage > 0 for r in worse), n)} "
            f"| {share(fixed_same.count('promote'), n)} / {share(fixed_worse.count('rollback'), n)} "
            f"| {share(sum(m[0] for m in margin), n)} / {share(sum(m[1] for m in margin), n)} |"
        )

    print(f"\nClear harm and early looks: the promoter looks every {EARLY_LOOK} verdicts from the first one.")
    print("Large effects: samples to rollback (median / p90) and the share rolled back within the first 50")
    print(f"compared verdicts. Identical: false rollbacks over the first {EARLY_CAP:,} verdicts (budget "
          f"1 − confidence = {1 - CONFIG.confidence:.0%}).\n")
    print("| noise q | " + " | ".join(f"+{lift * 100:.0f} points: median / p90, within 50" for lift in LARGE_LIFTS)
          + " | identical, look every 10: false rollbacks |")
    print("|---|" + "---|" * (len(LARGE_LIFTS) + 1))
    for q in NOISE_RATES:
        cells = []
        for lift in LARGE_LIFTS:
            worse = rollouts(results, f"large-{lift}", q)
            back = sorted(r.samples for r in worse if r.final == "rollback")
            p90 = back[min(len(back) - 1, int(0.9 * len(back)))] if back else 0
            within = sum(r.final == "rollback" and r.samples <= 50 for r in worse)
            cells.append(f"{statistics.median(back):,.0f} / {p90:,} , {share(within, len(worse))}" if back else "n/a")
        same = rollouts(results, "early-identical", q)
        cells.append(share(sum(r.final == "rollback" for r in same), len(same)))
        print(f"| {q:.0%} | " + " | ".join(cells) + " |")


def rollouts(results: dict[tuple[str, float], list[object]], kind: str, q: float) -> list[Rollout]:
    return [r for r in results[(kind, q)] if isinstance(r, Rollout)]


def summary(values: list[int]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"{statistics.mean(values):,.0f} / {statistics.median(values):,.0f} / {p90:,}"


def share(count: int, total: int) -> str:
    return f"{count / total:.1%}"


if __name__ == "__main__":
    main()
