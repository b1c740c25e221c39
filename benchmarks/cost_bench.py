"""Calls and dollars per decision: model calls and USD per compared verdict and per gate decision,
split into replay, noise check and grading, for noise_check 1.0 and 0.2, with and without grading,
with cache-marked traffic, and for batch mode.

    python benchmarks/cost_bench.py [--requests 900] [--seed 11]

Runs alone (no Kafka, no PostgreSQL: the figures are call counts and prices, which the store does not
change): the demo's three-route traffic through the real pipeline and SDK against an in-process
`fake-model`, into a throwaway SQLite file, once per row; the figures are the report's own `spend`
object (`build_report`), so this measures what `shadowd report` shows. A gate decision needs about
DECISION_VERDICTS compared verdicts (benchmarks/GATE.md: an identical candidate at 1-2 % baseline
noise is promoted after a mean of 1,879-3,050; the issue's round figure is 2,000), so per decision is
per compared verdict times that. The fake model's token counts are its 4-characters-per-token
estimate: the dollars are the profiles' prices over realistic prompt sizes, not an invoice.

Rows:
- `noise 1.0` / `noise 0.2`: the demo traffic, `noise_check` 1.0 or 0.2, no judge.
- `+ grading`: the same with a `claude-haiku-4-5` judge on the `chat-assist` route, sample_rate 0.25.
- `cache-marked`: every request carries a per-request ~1,500-token document in its user turn with a
  `cache_control` breakpoint (the shape of a production caller that caches its own prompt); the noise
  replay then follows the first and reads its cache. `USD without cache` is what the same calls would
  cost at the plain input price (the report's `spend.cache.saved_usd` added back).
- `batch`: `replay_mode: batch` (benchmarks/batch_bench.py `measure`), when that module is present.

`rows()` is what benchmarks/bench.py calls for its table.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shadowd.config import Settings, load_config
from shadowd.demo.traffic import generate_envelopes
from shadowd.fakemodel import parse_behaviours, start_fake_model
from shadowd.logging import configure_logging
from shadowd.replay_file import replay_file
from shadowd.report import build_report
from shadowd.wiring import open_pipeline

DECISION_VERDICTS = 2000
JUDGE = "claude-haiku-4-5"
JUDGE_PROFILE = "{context_window: 200000, max_output_tokens: 64000, usd_per_mtok_input: 1, usd_per_mtok_output: 5}"
BEHAVIOURS = {
    "models": {
        "claude-opus-4-6": {"nondeterminism": 0.08},
        "claude-opus-4-7": {"nondeterminism": 0.08, "faults": {"wrong_answer": 0.05, "key_missing": 0.03,
                                                                "tool_call_missing": 0.02}},
        JUDGE: {"max_output": 64000, "grader_noise": 0.03},
    }
}
DOCUMENT_WORDS = ("invoice", "shipment", "refund", "ticket", "warranty", "address", "courier", "credit",
                  "exchange", "parcel", "voucher", "balance", "return", "delivery", "account", "order")


def config_text(base_url: str, noise_check: float, grading: bool) -> str:
    judge = f"""routes:
  chat-assist:
    judge:
      model: {JUDGE}
      rubric: Correct, practical engineering advice; no invented settings or steps.
      sample_rate: 0.25
""" if grading else ""
    return f"""models:
  base_url: {base_url}
  max_concurrency: 96
  profiles:
    {JUDGE}: {JUDGE_PROFILE}
{judge}rollouts:
  - name: bench
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    noise_check: {noise_check}
"""


def cache_marked(envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope with a long per-request document before its user turn, marked for caching."""
    seed = hashlib.sha256(envelope["request_id"].encode()).digest()
    words = [DOCUMENT_WORDS[b % len(DOCUMENT_WORDS)] + str(b) for b in seed * 30]
    document = "Account history: " + " ".join(words * 2)  # ~6,000 characters, ~1,500 tokens
    request = dict(envelope["request"])
    messages = [dict(m) for m in request["messages"]]
    question = messages[-1]["content"]
    messages[-1]["content"] = [
        {"type": "text", "text": document, "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": question},
    ]
    request["messages"] = messages
    return {**envelope, "request": request}


async def measure(work: Path, requests: int, noise_check: float, grading: bool, cached: bool,
                  seed: int = 11) -> dict[str, Any]:
    """One row: the report's spend per compared verdict and per decision, by purpose."""
    server = await start_fake_model(parse_behaviours(BEHAVIOURS))
    name = f"{noise_check}-{grading}-{cached}"
    try:
        path = work / f"shadowd-{name}.yaml"
        path.write_text(config_text(server.base_url, noise_check, grading))
        config = load_config(path, Settings())
        envelopes = generate_envelopes(requests, seed=seed)
        if cached:
            envelopes = [cache_marked(e) for e in envelopes]
        traffic = work / f"traffic-{name}.jsonl"
        traffic.write_text("".join(json.dumps(e) + "\n" for e in envelopes))
        started = time.perf_counter()
        async with open_pipeline(config, f"sqlite:///{work / f'bench-{name}.db'}", base_url=server.base_url) as (
            pipeline, writer, store, _,
        ):
            await replay_file(traffic, pipeline, writer, records_in_flight=32)
            elapsed = time.perf_counter() - started
            report = await build_report(store, config.rollouts[0])
        served = server.stats.requests_served
    finally:
        await server.close()
    spend = report["spend"]
    per = spend["per_compared"]
    calls, usd = per["model_calls"], per["usd"]
    return {
        "row": f"noise {noise_check}" + (" + grading" if grading else "") + (", cache-marked" if cached else ""),
        "mode": "live",
        "noise_check": noise_check,
        "grading": grading,
        "cache_marked": cached,
        "compared": spend["compared"],
        "calls_per_compared": {k: round(v, 4) for k, v in calls.items()},
        "usd_per_compared": {k: round(v, 7) for k, v in usd.items()},
        "calls_per_decision": round(calls["total"] * DECISION_VERDICTS, 1),
        "usd_per_decision": round(usd["total"] * DECISION_VERDICTS, 4),
        "usd_per_decision_without_cache": round(
            (spend["usd"]["total"] + spend["cache"]["saved_usd"]) / spend["compared"] * DECISION_VERDICTS, 4),
        "cache": spend["cache"],
        "noise_checked_share": report["noise_check"]["noise_checked_share"],
        "fake_model_calls": served,
        "seconds": round(elapsed, 2),
    }


async def batch_row(work: Path, requests: int, noise_check: float, seed: int) -> dict[str, Any]:
    """`replay_mode: batch` through benchmarks/batch_bench.py, or why it was not measured."""
    try:
        batch_bench = importlib.import_module("batch_bench")
    except ImportError as exc:
        return {"row": f"batch, noise {noise_check}", "mode": "batch", "noise_check": noise_check,
                "not_measured": f"benchmarks/batch_bench.py is not in this checkout ({exc})"}
    result = await batch_bench.measure(work, requests, "batch", noise_check, seed)
    result.pop("outcomes", None)
    per_calls, per_usd = result.get("calls_per_compared"), result.get("usd_per_compared")
    return {
        "row": f"batch, noise {noise_check}",
        "mode": "batch",
        "noise_check": noise_check,
        "compared": result.get("compared"),
        "calls_per_compared": {"total": per_calls},
        "usd_per_compared": {"total": per_usd},
        "calls_per_decision": round(per_calls * DECISION_VERDICTS, 1) if per_calls else None,
        "usd_per_decision": round(per_usd * DECISION_VERDICTS, 4) if per_usd else None,
        "batch_bench": result,
    }


async def rows(work: Path, requests: int, seed: int = 11) -> list[dict[str, Any]]:
    plan = [(1.0, False, False), (1.0, True, False), (0.2, False, False), (0.2, True, False),
            (1.0, False, True), (0.2, False, True)]
    result = [await measure(work, requests, n, g, c, seed) for n, g, c in plan]
    result.append(await batch_row(work, requests, 0.2, seed))
    return result


def table(result: list[dict[str, Any]]) -> str:
    head = (f"{'row':<34} {'calls/verdict':>13} {'replay':>7} {'noise':>6} {'grading':>7} "
            f"{'USD/verdict':>11} {'calls/decision':>14} {'USD/decision':>12} {'USD/dec. no cache':>17}")
    lines = [head]
    for row in result:
        if "not_measured" in row:
            lines.append(f"{row['row']:<34} not measured: {row['not_measured']}")
            continue
        calls, usd = row["calls_per_compared"], row["usd_per_compared"]

        def cell(value: float | None, width: int, digits: int) -> str:
            return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

        lines.append(
            f"{row['row']:<34} {calls['total']:>13.3f} {cell(calls.get('replay'), 7, 3)} "
            f"{cell(calls.get('noise_check'), 6, 3)} {cell(calls.get('grading'), 7, 3)} "
            f"{usd['total']:>11.6f} {row['calls_per_decision']:>14,.0f} {row['usd_per_decision']:>12.2f} "
            f"{cell(row.get('usd_per_decision_without_cache'), 17, 2)}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=900)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    configure_logging("warning", "json")
    with tempfile.TemporaryDirectory(prefix="shadowd-cost-bench-") as folder:
        result = asyncio.run(rows(Path(folder), args.requests, args.seed))
    print(table(result), file=sys.stderr)
    json.dump({"requests": args.requests, "seed": args.seed, "decision_verdicts": DECISION_VERDICTS,
               "rows": result, "table": table(result)}, sys.stdout)  # one line: bench.py reads the last
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
