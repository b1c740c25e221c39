"""The judge end to end: real SDK, fake-model grading with grader noise, PostgreSQL, the gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shadowd.adapters.sql_store import VerdictFilter
from shadowd.config import Settings, load_config
from shadowd.fakemodel import parse_behaviours, start_fake_model
from shadowd.promoter import evaluate_and_apply
from shadowd.replay_file import replay_file
from shadowd.report import build_report
from shadowd.wiring import open_pipeline
from tests.helpers import run_cli_json

GRADER_NOISE = 0.05
WRONG_RATE = 0.20
# Every answer's text varies call to call (nondeterminism 1.0), so the grader's noise hits the
# baseline's and the candidate's answers independently, as a real judge's would.
BEHAVIOURS = {
    "models": {
        "claude-opus-4-6": {"nondeterminism": 1.0},
        "claude-sonnet-4-6": {"nondeterminism": 1.0},
        "claude-opus-4-7": {"nondeterminism": 1.0, "faults": {"wrong_answer": WRONG_RATE}},
        "claude-haiku-4-5": {"max_output": 64000, "grader_noise": GRADER_NOISE},
    }
}
GATE = """    noise_check: false
    gate:
      min_samples: 100
      max_regression_rate_increase: 0.01
      confidence: 0.95
      max_latency_p95_ratio: 1000
      max_cost_ratio: 1000
"""
CONFIG = f"""models:
  base_url: BASE_URL
  max_concurrency: 32
  profiles:
    claude-haiku-4-5: {{context_window: 200000, max_output_tokens: 64000, usd_per_mtok_input: 1, usd_per_mtok_output: 5}}
routes:
  chat:
    judge:
      model: claude-haiku-4-5
      rubric: Correct, practical advice; no invented settings.
      sample_rate: 0.5
rollouts:
  - name: wrong
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
{GATE}  - name: clean
    baseline: claude-opus-4-6
    candidate: claude-sonnet-4-6
{GATE}"""


def envelopes(count: int) -> list[dict[str, Any]]:
    topics = ["rotate API keys", "page an on-call engineer", "roll back a deploy", "resize a volume"]
    return [
        {
            "schema": "shadowd.mirror/v1",
            "request_id": f"judge-{i:04d}",
            "route": "chat",
            "request": {
                "model": "claude-opus-4-6",
                "max_tokens": 1500,
                "system": "You are a concise engineering assistant. Answer in Markdown.",
                "messages": [{"role": "user", "content": f"How do I {topics[i % 4]} for team {i}?"}],
            },
        }
        for i in range(count)
    ]


async def test_wrong_candidate_is_rolled_back_on_quality_and_clean_one_is_not(
    tmp_path: Path, fresh_database_url: str
) -> None:
    """300 requests at sample_rate 0.5 with 20 % wrong answers and 5 % grader noise: about that share of graded
    verdicts carries quality.unacceptable, the gate rolls that candidate back, and the clean one is not."""
    server = await start_fake_model(parse_behaviours(BEHAVIOURS))
    try:
        path = tmp_path / "shadowd.yaml"
        path.write_text(CONFIG.replace("BASE_URL", server.base_url))
        config = load_config(path, Settings())
        traffic = tmp_path / "traffic.jsonl"
        traffic.write_text("".join(json.dumps(e) + "\n" for e in envelopes(300)))
        async with open_pipeline(config, fresh_database_url, base_url=server.base_url) as (pipeline, writer, store, _):
            summary = await replay_file(traffic, pipeline, writer, records_in_flight=8)
            assert summary.verdicts == 600
            reports = {spec.name: await build_report(store, spec) for spec in config.rollouts}
            decisions = {spec.name: await evaluate_and_apply(store, spec, pipeline.clock()) for spec in config.rollouts}
            flagged = await store.list_verdicts("wrong", VerdictFilter(code="quality.unacceptable"), limit=1000)
    finally:
        await server.close()

    wrong, clean = reports["wrong"], reports["clean"]
    for report in (wrong, clean):
        judge = report["judge"]
        assert judge["judged"] == 300
        assert 0.4 < judge["graded_share"] < 0.6, judge
        assert judge["ungraded_failed"] == 0 and report["cost_usd"]["grading"] > 0
    graded = wrong["judge"]["graded"]
    # P(candidate unacceptable and baseline acceptable) = (0.2·0.95 + 0.8·0.05)·0.95 ≈ 0.22.
    expected = (WRONG_RATE * (1 - GRADER_NOISE) + (1 - WRONG_RATE) * GRADER_NOISE) * (1 - GRADER_NOISE)
    share = wrong["by_code"]["quality.unacceptable"]["count"] / graded
    assert abs(share - expected) < 0.10, (share, expected)
    assert len(flagged) == wrong["by_code"]["quality.unacceptable"]["count"]
    assert all(v.verdict.grading and v.verdict.grading.candidate_acceptable is False for v in flagged)
    assert wrong["judge"]["discordant"]["candidate_worse"] > 3 * wrong["judge"]["discordant"]["candidate_better"]
    acceptability = wrong["judge"]["acceptability"]
    assert acceptability["candidate"]["ci"][1] < acceptability["baseline"]["rate"]
    assert decisions["wrong"].decision == "rollback", decisions["wrong"].reasons
    assert any(r.startswith("quality: ") for r in decisions["wrong"].reasons)

    # The clean candidate sees the same grader noise, on both sides alike: discordant pairs both ways.
    assert clean["judge"]["discordant"]["candidate_worse"] > 0 or clean["judge"]["discordant"]["candidate_better"] > 0
    assert decisions["clean"].decision in ("hold", "promote"), decisions["clean"].reasons

    # The CLI reads the same grades back from PostgreSQL.
    shown = run_cli_json("show", "--rollout", "wrong", flagged[0].verdict.request_id, "--db", fresh_database_url,
                         "-c", str(path))
    assert shown["grades"]["status"] == "graded" and shown["grades"]["candidate"]["acceptable"] is False
    listed = run_cli_json("verdicts", "--rollout", "wrong", "--code", "quality.unacceptable", "--db",
                          fresh_database_url, "-c", str(path), "--limit", "5")
    assert listed["items"] and all(v["grades"]["baseline"]["acceptable"] is True for v in listed["items"])

