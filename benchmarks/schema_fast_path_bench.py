"""The comparator benchmark's pairs under both JSON Schema validity pre-checks, interleaved in one process.

    python benchmarks/schema_fast_path_bench.py [--rounds 5] [--seconds 2.0] [--cpu N]

`closures`: shadowd's hand-written fast path for common schemas; `jsonschema-rs`: jsonschema-rs's
is_valid. Both fall back to jsonschema for the error a verdict names. Prints one JSON object: the
median CPU microseconds of the pre-check alone on one answer
(`check_us`) and comparisons per second (wall clock, and per CPU second: `_cpu`) per class and for the mix, every round, the verdicts of both (they must be
equal), and the load average before and after.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import comparator_bench as bench

from shadowd.core import schema
from shadowd.core.compare import compare

VARIANTS = ("closures", "jsonschema-rs")
MIX = {"identical": 0.10, "reformatted": 0.15, "reworded": 0.60, "differing": 0.15}  # as comparator_bench.py


def use(variant: str) -> None:
    schema.FAST_PATH = variant
    schema._compile.cache_clear()


def rate(pairs: list[Any], seconds: float) -> tuple[float, float]:
    """(comparisons per wall-clock second, per CPU second of this thread) over the pairs, after a warm-up.

    The CPU-time rate is the one to compare on a shared machine: it does not count time spent
    waiting for the core while other processes run.
    """
    def work(pair: Any) -> None:
        compare(pair[0], pair[1], None, rules=bench.RULES, tools=bench.TOOLS)

    for pair in pairs[:20]:
        work(pair)
    gc.collect()
    calls = 0
    wall, cpu = time.perf_counter(), time.thread_time()
    while True:
        for pair in pairs:
            work(pair)
        calls += len(pairs)
        wall_s, cpu_s = time.perf_counter() - wall, time.thread_time() - cpu
        if wall_s >= seconds:
            return calls / wall_s, calls / cpu_s


def check_cost_us(documents: list[Any], repeat: int = 30) -> float:
    """CPU microseconds of the pre-check alone on one valid ~4 KB answer (output_schema)."""
    compiled = schema.compile_schema(bench.OUTPUT_SCHEMA)
    assert not isinstance(compiled, str) and compiled.certainly_valid is not None
    check = compiled.certainly_valid
    assert all(check(document) for document in documents)
    started = time.thread_time()
    for _ in range(repeat):
        for document in documents:
            check(document)
    return (time.thread_time() - started) / (repeat * len(documents)) * 1e6


def verdicts(classes: dict[str, list[Any]]) -> list[Any]:
    out = []
    for pairs in classes.values():
        for baseline, candidate, _, _ in pairs:
            result = compare(baseline, candidate, None, rules=bench.RULES, tools=bench.TOOLS)
            out.append([result.status.value, [f.to_dict() for f in result.findings], list(result.notes)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    load_before = os.getloadavg()
    classes = bench.build_pairs(args.pairs, args.seed)
    documents = [json.loads(baseline.text) for baseline, _, _, _ in classes["identical"]]

    seen = {}
    for variant in VARIANTS:
        use(variant)
        seen[variant] = verdicts(classes)
    same = seen["closures"] == seen["jsonschema-rs"]

    rounds: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for index in range(args.rounds):
        order = VARIANTS if index % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            use(variant)
            figures: dict[str, float] = {}
            for name, pairs in classes.items():
                per_wall_s, per_cpu_s = rate(pairs, args.seconds)
                figures[name] = round(per_wall_s)
                figures[name + "_cpu"] = round(per_cpu_s)
            for suffix in ("", "_cpu"):
                figures["mix" + suffix] = round(1 / sum(w / figures[k + suffix] for k, w in MIX.items()))
            figures["check_us"] = round(check_cost_us(documents), 1)
            rounds[variant].append(figures)
    medians = {v: {k: statistics.median(r[k] for r in rounds[v]) for k in rounds[v][0]} for v in VARIANTS}
    print(json.dumps({
        "cpu": cpu, "rounds": args.rounds, "seconds_per_class": args.seconds,
        "verdicts_identical": same, "pairs": sum(len(p) for p in classes.values()),
        "median_per_s": medians, "per_round": rounds,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
    }))


if __name__ == "__main__":
    main()
