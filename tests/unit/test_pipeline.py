"""The pipeline over a real loopback fake model, the real SDK and SQLite: replay rules end to end."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shadowd.adapters.anthropic_client import AnthropicModelClient, RetryPolicy
from shadowd.adapters.memory_store import MemoryStore
from shadowd.config import Config, Settings, load_config
from shadowd.core.findings import Status
from shadowd.fakemodel import FakeModelServer, parse_behaviours, start_fake_model
from shadowd.pipeline import ShadowPipeline
from shadowd.records import SourceRecord

CLEAN = {"latency_ms": 0, "nondeterminism": 0.0, "faults": {}}


def envelope(request_id: str, **request: Any) -> dict[str, Any]:
    body = {"model": "claude-opus-4-6", "max_tokens": 500,
            "messages": [{"role": "user", "content": f"Explain canary releases ({request_id})."}], **request}
    return {"schema": "shadowd.mirror/v1", "request_id": request_id, "route": "chat", "request": body,
            "api_version": "2023-06-01"}


def record(data: dict[str, Any] | bytes, offset: int = 1) -> SourceRecord:
    value = data if isinstance(data, bytes) else json.dumps(data).encode()
    return SourceRecord(source="test", partition=0, offset=offset, value=value)


async def make(tmp_path: Path, models: dict[str, Any], rollouts: str) -> tuple[ShadowPipeline, FakeModelServer,
                                                                                    MemoryStore]:
    server = await start_fake_model(parse_behaviours({"models": models}))
    path = tmp_path / "shadowd.yaml"
    path.write_text(f"models:\n  base_url: {server.base_url}\n  max_attempts: 3\nrollouts:\n{rollouts}")
    config: Config = load_config(path, Settings())
    store = MemoryStore()
    client = AnthropicModelClient(base_url=server.base_url, api_key="k", timeout_s=30, max_concurrency=16,
                                  profiles=config.profiles, retry=RetryPolicy(max_attempts=3, base_delay_s=0.01))
    return ShadowPipeline(config, client, store), server, store


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Any]]:
    """Closes what a test opened."""
    opened: list[Any] = []
    yield opened
    for thing in opened:
        await thing.close()


ROLLOUT = """  - name: r
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
"""


async def test_clean_candidate_passes_with_adaptations_recorded(tmp_path: Path, cleanup: list[Any]) -> None:
    """Sampling params and enabled thinking are adapted for Opus 4.7, recorded, and an identical answer passes."""
    pipeline, server, store = await make(tmp_path, {"default": CLEAN}, ROLLOUT)
    cleanup += [pipeline.models, server, store]
    outcome = await pipeline.replay_record(record(envelope(
        "a", temperature=0.4, top_k=5, thinking={"type": "enabled", "budget_tokens": 1024}, max_tokens=3000)))
    (verdict,) = outcome.verdicts
    assert verdict.status is Status.PASS, verdict.findings
    assert verdict.adaptations == ("thinking_enabled_to_adaptive", "sampling_param_dropped:temperature",
                                   "sampling_param_dropped:top_k")
    assert verdict.baseline and verdict.candidate and verdict.baseline_repeat
    assert verdict.candidate.cost_usd and verdict.candidate.cost_usd > 0
    assert server.stats.as_dict()["by_api_version"] == {"2023-06-01": 3}


async def test_large_max_tokens_is_streamed_with_time_to_first_token(tmp_path: Path, cleanup: list[Any]) -> None:
    """A request above the streaming threshold is replayed with streaming and records time to first token."""
    pipeline, server, store = await make(tmp_path, {"default": {**CLEAN, "latency_ms": 40}}, ROLLOUT)
    cleanup += [pipeline.models, server, store]
    (verdict,) = (await pipeline.replay_record(record(envelope("big", max_tokens=100_000)))).verdicts
    assert verdict.candidate is not None and verdict.candidate.streamed
    assert verdict.candidate.ttft_ms is not None and 0 < verdict.candidate.ttft_ms <= verdict.candidate.latency_ms
    assert verdict.status is Status.PASS


async def test_recorded_baseline_is_used_and_compared(tmp_path: Path, cleanup: list[Any]) -> None:
    """With baseline_source recorded, the envelope's response is the baseline; a differing candidate regresses."""
    rollouts = ROLLOUT + "    baseline_source: recorded\n    noise_check: false\n"
    pipeline, server, store = await make(tmp_path, {"default": CLEAN}, rollouts)
    cleanup += [pipeline.models, server, store]
    data = envelope("rec")
    data["response"] = {"type": "message", "content": [{"type": "tool_use", "id": "t1", "name": "lookup",
                                                        "input": {}}],
                        "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 5}}
    data["latency_ms"] = 812.0
    (verdict,) = (await pipeline.replay_record(record(data))).verdicts
    assert verdict.baseline is not None and verdict.baseline.source == "recorded"
    assert verdict.baseline.latency_ms == 812.0
    assert verdict.status is Status.REGRESSION
    assert "tool.call_missing" in {f.code for f in verdict.findings}
    assert server.stats.requests_served == 1  # only the candidate was called


async def test_transient_429_is_retried_and_persistent_500_is_error_candidate(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    """A 429 with retry-after is retried to success; a candidate failing every attempt is error.candidate."""
    models = {"claude-opus-4-6": {**CLEAN, "faults": {"rate_limited": 1.0}},
              "claude-opus-4-7": {**CLEAN, "faults": {"error": 1.0}}}
    pipeline, server, store = await make(tmp_path, models, ROLLOUT)
    cleanup += [pipeline.models, server, store]
    (verdict,) = (await pipeline.replay_record(record(envelope("flaky")))).verdicts
    assert verdict.baseline is not None and verdict.baseline.ok and verdict.baseline.attempts == 2
    assert verdict.candidate is not None and not verdict.candidate.ok and verdict.candidate.attempts == 3
    assert "HTTP 500" in (verdict.candidate.error or "")
    assert [f.code for f in verdict.findings] == ["error.candidate"]


async def test_failed_baseline_gives_an_error_verdict(tmp_path: Path, cleanup: list[Any]) -> None:
    """When the baseline cannot be replayed there is no fair comparison: status error, with the reason."""
    models = {"claude-opus-4-6": {**CLEAN, "faults": {"error": 1.0}}, "claude-opus-4-7": CLEAN}
    pipeline, server, store = await make(tmp_path, models, ROLLOUT)
    cleanup += [pipeline.models, server, store]
    (verdict,) = (await pipeline.replay_record(record(envelope("nobase")))).verdicts
    assert verdict.status is Status.ERROR and "baseline failed" in (verdict.reason or "")


async def test_sampled_out_and_unmatched_and_already_stored(tmp_path: Path, cleanup: list[Any]) -> None:
    """Sampled-out requests are skipped verdicts, other models match nothing, stored ones are not replayed."""
    rollouts = ROLLOUT + "  - name: never\n    baseline: claude-opus-4-6\n    candidate: claude-sonnet-4-6\n" \
                         "    sample_rate: 0.0\n"
    pipeline, server, store = await make(tmp_path, {"default": CLEAN}, rollouts)
    cleanup += [pipeline.models, server, store]
    outcome = await pipeline.replay_record(record(envelope("s")))
    statuses = {v.rollout: v.status for v in outcome.verdicts}
    assert statuses == {"r": Status.PASS, "never": Status.SKIPPED}
    await store.save(outcome.verdicts, [])
    served = server.stats.requests_served
    again = await pipeline.replay_record(record(envelope("s")))
    assert again.verdicts == [] and again.already_done == 2 and server.stats.requests_served == served
    other = await pipeline.replay_record(record(envelope("o", model="claude-sonnet-4-6")))
    assert other.verdicts == [] and other.dead_letter is None


async def test_bad_record_becomes_a_dead_letter_with_its_bytes(tmp_path: Path, cleanup: list[Any]) -> None:
    """A malformed record is a dead letter carrying its reason, position and original bytes."""
    pipeline, server, store = await make(tmp_path, {"default": CLEAN}, ROLLOUT)
    cleanup += [pipeline.models, server, store]
    outcome = await pipeline.replay_record(record(b"\x00not json", offset=41))
    assert outcome.dead_letter is not None
    assert (outcome.dead_letter.reason, outcome.dead_letter.offset, outcome.dead_letter.payload) == (
        "invalid_json", 41, b"\x00not json")
    await store.save([], [outcome.dead_letter])
    await store.save([], [outcome.dead_letter])
    assert await store.dead_letter_counts() == {"invalid_json": 1}


async def test_budget_cap_skips_requests(tmp_path: Path, cleanup: list[Any]) -> None:
    """Once the hourly shadow spend reaches the budget, further requests are skipped, not replayed."""
    rollouts = ROLLOUT + "    budget: {usd_per_hour: 0.000001}\n"
    pipeline, server, store = await make(tmp_path, {"default": CLEAN}, rollouts)
    cleanup += [pipeline.models, server, store]
    first = (await pipeline.replay_record(record(envelope("b1")))).verdicts[0]
    second = (await pipeline.replay_record(record(envelope("b2")))).verdicts[0]
    assert first.status is Status.PASS
    assert second.status is Status.SKIPPED and "budget" in (second.reason or "")
