"""Held-out check of value.changed, the learned noise model, tool multisets and the gate.

    python benchmarks/heldout_values.py [--seed 20261201] [--requests 3000]

A generator (seeded; the default seed was fixed before the first run and never tuned) makes
routes with their own random JSON schemas and tools: stable labels, numbers, flags and ids; noisy
short fields the baseline rewords on 15–100 % of calls; long prose. A clean-but-noisy candidate
receives injected regressions (stable-field changes in the text and in tool arguments, extra and
dropped tool calls) on a share of requests; the comparator runs with noise_check 0.25 and the
learned noise model exactly as the pipeline feeds it (warm-up included). Reported: status
accuracy against the injected truth, injected regressions found, and, for a heavily regressed
candidate, the verdicts before the gate rolls back. Uses shadowd.core alone (no I/O).
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shadowd.core.compare import RouteRules, compare
from shadowd.core.findings import Status
from shadowd.core.gate import Evidence, GateConfig, RolloutState, evaluate_gate
from shadowd.core.noise import WARMUP_REQUESTS, NoiseModel, noise_checked
from shadowd.core.results import SideResult, Usage

NOISE_FRACTION = 0.25
STAGES = (1, 5, 25, 50, 100)
INJECTED_SHARE = 0.12  # of the main candidate's requests
HEAVY_SHARE = 0.40  # the heavily regressed candidate
LOOK_EVERY = 10


def word(rng: random.Random, low: int = 3, high: int = 9) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(low, high)))


@dataclass
class FieldSpec:
    name: str
    kind: str  # label | number | flag | id | noisy | prose
    options: list[str] = field(default_factory=list)
    noise: float = 0.0  # per-call chance that a noisy field is reworded


@dataclass
class RouteSpec:
    name: str
    fields: list[FieldSpec]
    items: list[FieldSpec]  # fields of the objects in the `items` array
    tools: dict[str, list[FieldSpec]]
    uses_tools: bool


def make_field(rng: random.Random, kind: str) -> FieldSpec:
    spec = FieldSpec(name=word(rng) + "_" + kind[:3], kind=kind)
    if kind == "label":
        spec.options = [word(rng) for _ in range(rng.randint(3, 5))]
    if kind == "noisy":
        spec.noise = rng.uniform(0.15, 1.0)
    return spec


def make_route(rng: random.Random, index: int) -> RouteSpec:
    kinds = ["label", "label", "number", "flag", "id", "noisy", "noisy", "prose"]
    fields = [make_field(rng, rng.choice(kinds)) for _ in range(rng.randint(4, 8))]
    fields.append(make_field(rng, "label"))  # at least one label and one noisy field
    fields.append(make_field(rng, "noisy"))
    items = [make_field(rng, kind) for kind in ("id", "number", "label")]
    tools = {f"tool_{word(rng, 4, 6)}": [make_field(rng, k) for k in ("label", "number", "noisy")] for _ in range(3)}
    return RouteSpec(f"route-{index}-{word(rng, 3, 5)}", fields, items, tools, uses_tools=index % 2 == 1)


def value_for(rng: random.Random, spec: FieldSpec, base: random.Random) -> Any:
    """A field's value: drawn from `base` (the request's stable answer), a noisy field reworded
    from `rng` (this call's own randomness) with its noise rate."""
    if spec.kind == "label":
        return base.choice(spec.options)
    if spec.kind == "number":
        return base.randint(0, 500)
    if spec.kind == "flag":
        return base.random() < 0.5
    if spec.kind == "id":
        return f"ID-{base.randint(10_000, 99_999)}"
    if spec.kind == "noisy":
        stable = " ".join(word(base) for _ in range(3))[:60]
        return " ".join(word(rng) for _ in range(3))[:60] if rng.random() < spec.noise else stable
    # prose: always reworded, always over 64 characters
    return " ".join(word(rng) for _ in range(14))


def answer(route: RouteSpec, request_seed: int, rng: random.Random) -> dict[str, Any]:
    """One call's JSON answer for a request: stable parts from the request's seed."""
    base = random.Random(request_seed)
    document: dict[str, Any] = {spec.name: value_for(rng, spec, base) for spec in route.fields}
    document["items"] = [{spec.name: value_for(rng, spec, base) for spec in route.items}
                         for _ in range(base.randint(1, 3))]
    return document


def tool_calls(route: RouteSpec, request_seed: int, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    base = random.Random(request_seed ^ 0x5EED)
    names = sorted(route.tools)
    chosen = [base.choice(names)]
    if base.random() < 0.3:
        chosen.append(base.choice([n for n in names if n != chosen[0]]))
    return [(name, {spec.name: value_for(rng, spec, base) for spec in route.tools[name]}) for name in chosen]


def parts(
    route: RouteSpec, request_seed: int, rng: random.Random
) -> tuple[dict[str, Any] | None, list[tuple[str, dict[str, Any]]]]:
    """One call's answer: a JSON text on text routes, tool calls on tool routes."""
    if route.uses_tools:
        return None, tool_calls(route, request_seed, rng)
    return answer(route, request_seed, rng), []


def side(document: dict[str, Any] | None, calls: list[tuple[str, dict[str, Any]]]) -> SideResult:
    content: list[dict[str, Any]] = []
    if document is not None:
        content.append({"type": "text", "text": json.dumps(document)})
    for index, (name, tool_input) in enumerate(calls):
        content.append({"type": "tool_use", "id": f"toolu_{index}", "name": name, "input": tool_input})
    return SideResult(model="m", ok=True, content=tuple(content),
                      stop_reason="tool_use" if calls else "end_turn", usage=Usage(output_tokens=100))


def inject(rng: random.Random, route: RouteSpec, document: dict[str, Any] | None,
           calls: list[tuple[str, dict[str, Any]]]) -> tuple[str, str]:
    """Spoil the candidate's answer one way; returns (kind, the code that must be found)."""
    choices = ["stable_text"] if document is not None else []
    if calls:
        choices += ["tool_argument", "extra_call", "dropped_call" if len(calls) > 1 else "extra_call"]
    kind = rng.choice(choices)
    if kind == "stable_text":
        assert document is not None
        stable = [s for s in route.fields if s.kind in ("label", "number", "flag", "id")]
        spec = rng.choice(stable)
        document[spec.name] = changed(document[spec.name], spec)
        return kind, "value.changed"
    if kind == "tool_argument":
        name, tool_input = calls[0]
        spec = next(s for s in route.tools[name] if s.kind in ("label", "number"))
        tool_input[spec.name] = changed(tool_input[spec.name], spec)
        return kind, "value.changed"
    if kind == "extra_call":
        called = {name for name, _ in calls}
        extra = next(name for name in sorted(route.tools) if name not in called)
        calls.append((extra, {"note": "extra"}))
        return kind, "tool.call_unexpected"
    calls.pop()
    return kind, "tool.call_missing"


def changed(value: Any, spec: FieldSpec) -> Any:
    if spec.kind == "label":
        return next(option for option in spec.options if option != value)
    if spec.kind == "number":
        return value + 7
    if spec.kind == "flag":
        return not value
    return value + "-X"


@dataclass
class Outcome:
    correct: int = 0
    total: int = 0
    injected: int = 0
    found: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [injected, found]
    confusion: dict[str, int] = field(default_factory=dict)
    noise_checked: int = 0
    rollback_at: int | None = None


def run(seed: int, requests: int, share: float, gate: bool, noise_fraction: float = NOISE_FRACTION) -> Outcome:
    rng = random.Random(seed)
    routes = [make_route(rng, index) for index in range(4)]
    models = {route.name: NoiseModel() for route in routes}
    outcome = Outcome()
    samples = candidate_regressions = baseline_noise = both = 0
    state = RolloutState(STAGES, 0)
    config = GateConfig()
    for index in range(requests):
        route = routes[index % len(routes)]
        request_id = f"req-{seed}-{index}"
        request_seed = rng.getrandbits(48)
        baseline = side(*parts(route, request_seed, rng))
        model = models[route.name]
        checked = noise_checked("heldout", request_id, noise_fraction) or model.requests < WARMUP_REQUESTS
        repeat = side(*parts(route, request_seed, rng)) if checked else None
        document, calls = parts(route, request_seed, rng)
        truth: tuple[str, str] | None = None
        if rng.random() < share:
            truth = inject(rng, route, document, calls)
        result = compare(baseline, side(document, calls), repeat, rules=RouteRules(), noise=model)
        if result.observation is not None:
            model.add(result.observation)
            outcome.noise_checked += 1
        expected = Status.REGRESSION if truth else (Status.NOISE if result.findings else Status.PASS)
        if truth is None and any(f.blocking for f in result.findings):
            expected = Status.NOISE  # a clean candidate must never regress: count it as wrong
        outcome.total += 1
        outcome.correct += result.status is expected
        if result.status is not expected:
            key = f"{expected.value}->{result.status.value}"
            outcome.confusion[key] = outcome.confusion.get(key, 0) + 1
        if truth is not None:
            kind, code = truth
            found = result.status is Status.REGRESSION and any(
                f.code == code and f.blocking for f in result.findings
            )
            outcome.injected += 1
            outcome.found += found
            entry = outcome.by_kind.setdefault(kind, [0, 0])
            entry[0] += 1
            entry[1] += found
        if gate and outcome.rollback_at is None:
            regressed = result.status is Status.REGRESSION
            samples += 1
            candidate_regressions += regressed
            baseline_noise += result.baseline_noise_blocking
            both += regressed and result.baseline_noise_blocking
            if samples % LOOK_EVERY == 0:
                decision = evaluate_gate(config, state, Evidence(samples, samples, candidate_regressions,
                                                                 baseline_noise, both))
                if decision.decision == "rollback":
                    outcome.rollback_at = samples
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--noise-check", type=float, default=NOISE_FRACTION,
                        help=f"share of requests whose baseline is replayed twice (default {NOISE_FRACTION})")
    args = parser.parse_args()
    main_run = run(args.seed, args.requests, INJECTED_SHARE, gate=False, noise_fraction=args.noise_check)
    heavy = run(args.seed + 1, 400, HEAVY_SHARE, gate=True, noise_fraction=args.noise_check)
    print(f"# held-out corpus, seed {args.seed}, {args.requests} requests over 4 generated routes, "
          f"noise_check {args.noise_check}, injected regressions on {INJECTED_SHARE:.0%}")
    print(f"status accuracy: {main_run.correct / main_run.total:.4f} ({main_run.correct} of {main_run.total})")
    print(f"injected regressions found: {main_run.found} of {main_run.injected}")
    for kind, (injected, found) in sorted(main_run.by_kind.items()):
        print(f"  {kind}: {found} of {injected}")
    print(f"mistakes by expected->actual status: {main_run.confusion or 'none'}")
    print(f"noise-checked requests: {main_run.noise_checked} of {main_run.total} "
          f"({main_run.noise_checked / main_run.total:.1%})")
    print(f"heavily regressed candidate ({HEAVY_SHARE:.0%} injected, seed {args.seed + 1}): rolled back at "
          f"{heavy.rollback_at} compared verdicts (gate looks every {LOOK_EVERY}); "
          f"its injected regressions found: {heavy.found} of {heavy.injected}")


if __name__ == "__main__":
    main()
