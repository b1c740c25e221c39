"""The judge's cost: extra model calls and dollars per compared verdict at each grading sample_rate.

    python benchmarks/judge_bench.py [--requests 600] [--rates 0,0.1,0.5] [--judge claude-haiku-4-5]

Runs alone (no Kafka, no PostgreSQL: the figures are call counts and prices, which the store does not
change): the demo's `chat-assist` traffic (Markdown answers, every request on the judged route, so this
is the worst case for a mixed rollout) through the real pipeline and SDK against an in-process
`fake-model`, into a throwaway SQLite file, once per rate. Prints one JSON object on one stdout line.
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

from shadowd.config import Settings, load_config
from shadowd.demo.traffic import generate_envelopes
from shadowd.fakemodel import parse_behaviours, start_fake_model
from shadowd.logging import configure_logging
from shadowd.replay_file import replay_file
from shadowd.report import build_report
from shadowd.wiring import open_pipeline

PROFILES = {
    "claude-haiku-4-5": "{context_window: 200000, max_output_tokens: 64000, usd_per_mtok_input: 1, usd_per_mtok_output: 5}",
}
BEHAVIOURS = {
    "models": {
        "claude-opus-4-6": {"nondeterminism": 0.08},
        "claude-opus-4-7": {"nondeterminism": 0.08, "faults": {"wrong_answer": 0.1}},
        "claude-sonnet-4-6": {"grader_noise": 0.03},
        "claude-haiku-4-5": {"max_output": 64000, "grader_noise": 0.03},
    }
}


def config_text(base_url: str, judge: str, rate: float) -> str:
    profiles = "".join(f"    {name}: {text}\n" for name, text in PROFILES.items())
    return f"""models:
  base_url: {base_url}
  max_concurrency: 64
  profiles:
{profiles}routes:
  chat-assist:
    judge:
      model: {judge}
      rubric: Correct, practical engineering advice; no invented settings or steps.
      sample_rate: {rate}
rollouts:
  - name: bench
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    noise_check: false
"""


async def measure(work: Path, requests: int, judge: str, rate: float) -> dict[str, Any]:
    server = await start_fake_model(parse_behaviours(BEHAVIOURS))
    try:
        path = work / f"shadowd-{rate}.yaml"
        path.write_text(config_text(server.base_url, judge, rate))
        config = load_config(path, Settings())
        traffic = work / "traffic.jsonl"
        chat = [e for e in generate_envelopes(requests * 3, seed=11) if e["route"] == "chat-assist"][:requests]
        traffic.write_text("".join(json.dumps(e) + "\n" for e in chat))
        db = f"sqlite:///{work / f'bench-{rate}.db'}"
        started = time.perf_counter()
        async with open_pipeline(config, db, base_url=server.base_url) as (pipeline, writer, store, _):
            await replay_file(traffic, pipeline, writer, records_in_flight=16)
            elapsed = time.perf_counter() - started
            report = await build_report(store, config.rollouts[0])
        by_model = server.stats.as_dict()["by_model"]
    finally:
        await server.close()
    compared = report["compared"]
    cost = report["cost_usd"]
    judge_calls = by_model.get(judge, 0)
    replay_calls = sum(n for model, n in by_model.items() if model != judge)
    replay_usd = cost["baseline"] + cost["candidate"]
    judged = report["judge"] or {}
    return {
        "sample_rate": rate,
        "compared": compared,
        "graded": judged.get("graded", 0),
        "replay_calls_per_compared": round(replay_calls / compared, 3),
        "judge_calls_per_compared": round(judge_calls / compared, 3),
        "replay_usd_per_compared": round(replay_usd / compared, 6),
        "judge_usd_per_compared": round(cost["grading"] / compared, 6),
        "judge_share_of_spend": round(cost["grading"] / (replay_usd + cost["grading"]), 4),
        "quality_unacceptable": report["by_code"].get("quality.unacceptable", {}).get("count", 0),
        "seconds": round(elapsed, 2),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rates = [float(r) for r in args.rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="shadowd-judge-bench-") as folder:
        rows = [await measure(Path(folder), args.requests, args.judge, rate) for rate in rates]
    return {"requests": args.requests, "judge": args.judge, "route": "chat-assist", "rates": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--rates", default="0,0.1,0.5")
    parser.add_argument("--judge", default="claude-haiku-4-5", choices=["claude-haiku-4-5", "claude-sonnet-4-6"])
    args = parser.parse_args()
    configure_logging("warning", "json")  # a verdict line per request would cost more than grading
    result = asyncio.run(main_async(args))
    json.dump(result, sys.stdout)  # one line: bench.py reads the last
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
