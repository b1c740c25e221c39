"""Operator metrics (spend, tokens, TTFT, budget) from a real pipeline run, and JSON lines from every logger."""

from __future__ import annotations

import gc
import io
import json
import logging
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest

from shadowd.adapters.anthropic_client import AnthropicModelClient, RetryPolicy
from shadowd.adapters.sql_store import open_store
from shadowd.config import Settings, load_config
from shadowd.fakemodel import parse_behaviours, start_fake_model
from shadowd.logging import configure_logging
from shadowd.metrics import Metrics
from shadowd.pipeline import ShadowPipeline
from shadowd.records import SourceRecord

CLEAN = {"latency_ms": 0, "nondeterminism": 0.0, "faults": {}}


def _record(request_id: str, offset: int, max_tokens: int = 500) -> SourceRecord:
    body = {"model": "claude-opus-4-6", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": f"Explain canaries ({request_id})."}]}
    data = {"schema": "shadowd.mirror/v1", "request_id": request_id, "route": "chat", "request": body,
            "api_version": "2023-06-01"}
    return SourceRecord(source="test", partition=0, offset=offset, value=json.dumps(data).encode())


def _sample(metrics: Metrics, name: str, labels: dict[str, str]) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_spend_tokens_ttft_and_budget_follow_the_replays(tmp_path: Path) -> None:
    """Replays add spend and tokens per rollout and side, streamed ones a TTFT sample per model, and the
    budget gauge starts at the hourly budget and drops by what was spent."""
    server = await start_fake_model(parse_behaviours({"models": {"default": CLEAN}}))
    path = tmp_path / "shadowd.yaml"
    path.write_text(
        f"models:\n  base_url: {server.base_url}\nrollouts:\n  - name: r\n    baseline: claude-opus-4-6\n"
        "    candidate: claude-opus-4-7\n    budget: {usd_per_hour: 50}\n"
    )
    config = load_config(path, Settings())
    store = await open_store(f"sqlite:///{tmp_path / 'v.db'}", upgrade=True)
    client = AnthropicModelClient(base_url=server.base_url, api_key="k", timeout_s=30, max_concurrency=8,
                                  profiles=config.profiles, retry=RetryPolicy(max_attempts=2, base_delay_s=0.01))
    metrics = Metrics()
    pipeline = ShadowPipeline(config, client, store, metrics)
    try:
        assert _sample(metrics, "shadowd_budget_remaining_usd", {"rollout": "r"}) == 50
        outcomes = [await pipeline.replay_record(_record("a", 1)),
                    await pipeline.replay_record(_record("b", 2, max_tokens=100_000))]
    finally:
        await client.close()
        await store.close()
        await server.close()
    verdicts = [v for o in outcomes for v in o.verdicts]
    spent = {side: sum((getattr(v, attr).cost_usd or 0) for v in verdicts if getattr(v, attr))
             for side, attr in (("baseline", "baseline"), ("candidate", "candidate"), ("repeat", "baseline_repeat"))}
    for side, expected in spent.items():
        got = _sample(metrics, "shadowd_spend_usd_total", {"rollout": "r", "side": side})
        assert expected > 0 and got is not None and abs(got - expected) < 1e-9
    out_tokens = sum(v.candidate.usage.output_tokens for v in verdicts if v.candidate)
    assert _sample(metrics, "shadowd_tokens_total", {"rollout": "r", "side": "candidate", "kind": "output"}) \
        == out_tokens
    remaining = _sample(metrics, "shadowd_budget_remaining_usd", {"rollout": "r"})
    assert remaining is not None and abs(remaining - (50 - sum(spent.values()))) < 1e-9
    # Only the streamed record (max_tokens 100,000) has a time to first token.
    assert _sample(metrics, "shadowd_model_ttft_seconds_count", {"model": "claude-opus-4-7"}) == 1
    exposition = generate_latest(metrics.registry).decode()
    assert "# TYPE shadowd_consumer_lag_records gauge" in exposition


def test_standard_library_loggers_write_json_lines() -> None:
    """aiokafka's, aiohttp's and asyncio's records come out as JSON objects naming their logger, with
    credentials redacted; a shadowd event stays JSON alongside them."""
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    try:
        logging.getLogger("aiokafka.conn").warning("Sending username and password in the clear")
        logging.getLogger("aiohttp.server").error("Error handling request: Authorization: Bearer abcdefgh12345678")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("asyncio").exception("Task exception was never retrieved")
        import structlog

        structlog.get_logger("shadowd.test").info("verdict", request_id="x")
    finally:
        configure_logging("info", "console", stream=io.StringIO())
    lines: list[dict[str, Any]] = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_logger = {line.get("logger"): line for line in lines}
    assert by_logger["aiokafka.conn"]["level"] == "warning"
    assert "abcdefgh12345678" not in by_logger["aiohttp.server"]["event"]
    assert "RuntimeError: boom" in by_logger["asyncio"]["exception"]
    assert any(line.get("event") == "verdict" for line in lines)
    assert len(lines) == 4


def test_gate_figures_become_per_rollout_gauges_and_unknown_figures_are_left_out() -> None:
    """The gate's stage, samples and bounds are exported per rollout; a missing or NaN figure sets nothing."""
    metrics = Metrics()
    metrics.observe_gate("r", 1, {"samples": 240, "stage_samples": 90, "rate_increase": 0.004,
                                  "rate_increase_upper": 0.02, "rate_increase_lower": float("nan"),
                                  "candidate_regression_rate": None, "baseline_noise_rate": 0.01})
    assert _sample(metrics, "shadowd_gate_stage", {"rollout": "r"}) == 2
    assert _sample(metrics, "shadowd_gate_samples", {"rollout": "r"}) == 240
    assert _sample(metrics, "shadowd_gate_stage_samples", {"rollout": "r"}) == 90
    assert _sample(metrics, "shadowd_gate_regression_rate_increase", {"rollout": "r", "bound": "upper"}) == 0.02
    assert _sample(metrics, "shadowd_gate_regression_rate_increase", {"rollout": "r", "bound": "lower"}) is None
    assert _sample(metrics, "shadowd_gate_candidate_regression_rate", {"rollout": "r"}) is None
    assert _sample(metrics, "shadowd_gate_baseline_noise_rate", {"rollout": "r"}) == 0.01


def test_metrics_show_the_cyclic_collectors_work() -> None:
    metrics = Metrics()
    before = _sample(metrics, "python_gc_collections_total", {"generation": "0"})
    gc.collect(0)
    after = _sample(metrics, "python_gc_collections_total", {"generation": "0"})
    assert before is not None and after is not None and after >= before + 1
