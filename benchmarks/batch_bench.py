"""Batch mode's bill: model calls and dollars per compared verdict, `replay_mode: batch` against `live`.

    python benchmarks/batch_bench.py [--requests 600] [--noise-checks 1.0,0.2] [--seed 11]

Runs alone (no Kafka, no PostgreSQL: the figures are call counts and prices, which the store does not
change): the demo's traffic through the real pipeline and SDK against an in-process `fake-model`
whose models answer deterministically, into a throwaway SQLite file, once per (mode, noise_check).
Calls are what the fake model served (Messages API calls live, batch requests in batch mode);
dollars are the stored sides' costs (baseline, its noise replay, candidate), batch sides priced at
`models.batch_discount`. `agreement` is the share of requests whose verdict status and finding codes
are the same in both modes. Prints one JSON object on stdout and a table on stderr.

`measure()` and `compare_modes()` are what benchmarks/bench.py calls for its table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shadowd.adapters.sql_store import VerdictFilter
from shadowd.config import Settings, load_config
from shadowd.demo.traffic import generate_envelopes
from shadowd.fakemodel import parse_behaviours, start_fake_model
from shadowd.logging import configure_logging
from shadowd.replay_file import replay_file
from shadowd.wiring import open_pipeline

ROLLOUT = "bench"
BEHAVIOURS = {
    "batches": {"delay_s": 0.2},
    "models": {
        "claude-opus-4-6": {"nondeterminism": 0.0},
        "claude-opus-4-7": {
            "nondeterminism": 0.0,
            "faults": {"json_wrapped": 0.03, "key_missing": 0.03, "type_changed": 0.03, "tool_call_missing": 0.02,
                       "markdown_drift": 0.05, "length_drift": 0.03},
        },
    },
}
COMPARED = ("pass", "regression", "noise")


def config_text(base_url: str, mode: str, noise_check: float) -> str:
    return f"""models:
  base_url: {base_url}
  max_concurrency: 96
batch: {{window_records: 2000, window_s: 0.5, poll_initial_s: 0.1, poll_max_s: 0.5}}
rollouts:
  - name: {ROLLOUT}
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    noise_check: {noise_check}
    replay_mode: {mode}
"""


async def measure(work: Path, requests: int, mode: str, noise_check: float, seed: int = 11) -> dict[str, Any]:
    """One run: calls and dollars per compared verdict, and each request's (status, codes) for agreement."""
    server = await start_fake_model(parse_behaviours(BEHAVIOURS))
    try:
        path = work / f"shadowd-{mode}-{noise_check}.yaml"
        path.write_text(config_text(server.base_url, mode, noise_check))
        config = load_config(path, Settings())
        traffic = work / "traffic.jsonl"
        traffic.write_text("".join(json.dumps(e) + "\n" for e in generate_envelopes(requests, seed=seed)))
        db = f"sqlite:///{work / f'bench-{mode}-{noise_check}.db'}"
        started = time.perf_counter()
        async with open_pipeline(config, db, base_url=server.base_url) as (pipeline, writer, store, _):
            await replay_file(traffic, pipeline, writer, records_in_flight=32)
            elapsed = time.perf_counter() - started
            rows = await store.list_verdicts(ROLLOUT, VerdictFilter(), limit=requests + 10)
        stats = server.stats.as_dict()
    finally:
        await server.close()
    verdicts = [row.verdict for row in rows]
    compared = sum(1 for v in verdicts if v.status.value in COMPARED)
    usd = sum(side.cost_usd or 0.0 for v in verdicts for side in (v.baseline, v.baseline_repeat, v.candidate)
              if side is not None and side.source == "replay")
    calls = stats["requests_served"] + stats["batch_requests"]
    return {
        "mode": mode,
        "noise_check": noise_check,
        "verdicts": len(verdicts),
        "compared": compared,
        "calls": calls,
        "batches": stats["batches_created"],
        "calls_per_compared": round(calls / compared, 3) if compared else None,
        "usd_per_compared": round(usd / compared, 7) if compared else None,
        "usd_per_1000_compared": round(1000 * usd / compared, 4) if compared else None,
        "seconds": round(elapsed, 2),
        "outcomes": {v.request_id: (v.status.value, sorted(f.code for f in v.findings if not f.noise))
                     for v in verdicts},
    }


async def compare_modes(work: Path, requests: int, noise_check: float, seed: int = 11) -> dict[str, Any]:
    """Live and batch over the same traffic: both rows, the batch/live dollar ratio and the verdict agreement."""
    live = await measure(work, requests, "live", noise_check, seed)
    batch = await measure(work, requests, "batch", noise_check, seed)
    live_outcomes, batch_outcomes = live.pop("outcomes"), batch.pop("outcomes")
    same = sum(1 for rid, outcome in live_outcomes.items() if batch_outcomes.get(rid) == outcome)
    ratio = (batch["usd_per_compared"] / live["usd_per_compared"]
             if batch["usd_per_compared"] and live["usd_per_compared"] else None)
    return {
        "noise_check": noise_check,
        "live": live,
        "batch": batch,
        "batch_usd_ratio": round(ratio, 4) if ratio is not None else None,
        "agreement": round(same / max(1, len(live_outcomes)), 4),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    checks = [float(n) for n in args.noise_checks.split(",")]
    with tempfile.TemporaryDirectory(prefix="shadowd-batch-bench-") as folder:
        rows = [await compare_modes(Path(folder), args.requests, check, args.seed) for check in checks]
    return {"requests": args.requests, "seed": args.seed, "runs": rows}


def table(result: dict[str, Any]) -> str:
    lines = [f"{'mode':<6} {'noise':>5} {'compared':>8} {'calls/verdict':>13} {'USD/1000 verdicts':>17} {'batches':>7}"]
    for run in result["runs"]:
        for mode in ("live", "batch"):
            row = run[mode]
            lines.append(f"{mode:<6} {row['noise_check']:>5} {row['compared']:>8} {row['calls_per_compared']:>13} "
                         f"{row['usd_per_1000_compared']:>17} {row['batches']:>7}")
        lines.append(f"  batch/live dollars {run['batch_usd_ratio']}, verdict agreement {run['agreement']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--noise-checks", default="1.0,0.2")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    configure_logging("warning", "json")
    result = asyncio.run(main_async(args))
    print(table(result), file=sys.stderr)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
