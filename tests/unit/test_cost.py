"""Calls and dollars per decision: cache pricing, the cache-aware noise replay, the report's `spend` figures."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shadowd.adapters.anthropic_client import AnthropicModelClient, RetryPolicy
from shadowd.adapters.sql_store import SqlVerdictStore, open_store
from shadowd.config import Config, Settings, load_config
from shadowd.core.caching import has_cache_breakpoint
from shadowd.core.findings import Status
from shadowd.core.judge import Grade, Grading
from shadowd.core.profiles import BUILTIN_PROFILES
from shadowd.core.results import SideResult, Usage
from shadowd.core.spend import Spend, cache_saved_usd, spend_report, verdict_spend
from shadowd.fakemodel import FakeModelServer, parse_behaviours, start_fake_model
from shadowd.pipeline import ShadowPipeline
from shadowd.records import SourceRecord
from shadowd.report import build_report

OPUS = BUILTIN_PROFILES["claude-opus-4-6"]  # $5 / $25 per MTok
LONG_POLICY = "Refunds follow the written policy; quote the clause. " * 120  # ~1,600 tokens: cacheable


def side(model: str = "claude-opus-4-6", source: str = "replay", **usage: int) -> SideResult:
    use = Usage(**usage)
    return SideResult(model=model, ok=True, source=source, usage=use,
                      cost_usd=BUILTIN_PROFILES[model].cost_usd(use) if model in BUILTIN_PROFILES else None)


# --- pricing (SPEC §7) --------------------------------------------------------------------------


def test_cache_reads_and_writes_priced_as_spec_says() -> None:
    """Golden: 1,000 read tokens cost 0.1x input and 1,000 written cost 1.25x input; the saving is their difference from list price."""
    call = Usage(input_tokens=200, output_tokens=100, cache_creation_input_tokens=1000, cache_read_input_tokens=1000)
    # 200*5 + 1000*5*1.25 + 1000*5*0.1 + 100*25 = 1000 + 6250 + 500 + 2500 = 10,250 micro-dollars
    assert OPUS.cost_usd(call) == pytest.approx(0.010250)
    assert OPUS.uncached_cost_usd(call) == pytest.approx((2200 * 5 + 100 * 25) / 1e6)
    reader = side(input_tokens=200, output_tokens=100, cache_read_input_tokens=1000)
    assert cache_saved_usd(reader, OPUS) == pytest.approx(1000 * 5 * 0.9 / 1e6)


def test_a_cache_write_never_read_is_a_cost_not_a_saving() -> None:
    """Near miss: the same prefix written but never read costs 0.25x input more than no caching at all."""
    writer = side(input_tokens=200, output_tokens=100, cache_creation_input_tokens=1000)
    assert cache_saved_usd(writer, OPUS) == pytest.approx(-1000 * 5 * 0.25 / 1e6)
    assert cache_saved_usd(side(input_tokens=1200, output_tokens=100), OPUS) == 0.0
    assert cache_saved_usd(writer, None) == 0.0  # no profile, no price


# --- spend by purpose ---------------------------------------------------------------------------


def test_verdict_spend_splits_replay_noise_check_and_grading() -> None:
    """Replayed baseline and candidate are replay, the second baseline replay is noise check, each grade one grading call."""
    baseline = side(input_tokens=100, output_tokens=50, cache_creation_input_tokens=2000)
    repeat = side(input_tokens=100, output_tokens=50, cache_read_input_tokens=2000)
    candidate = side("claude-opus-4-7", input_tokens=2100, output_tokens=60)
    grading = Grading("graded", "claude-sonnet-4-6", Grade("claude-sonnet-4-6", acceptable=True, cost_usd=0.001),
                      Grade("claude-sonnet-4-6", acceptable=False, cost_usd=0.002))
    spent = verdict_spend(baseline, candidate, repeat, grading, BUILTIN_PROFILES)
    assert (spent.replay_calls, spent.noise_calls, spent.grading_calls) == (2, 1, 2)
    assert spent.replay_usd == pytest.approx((baseline.cost_usd or 0) + (candidate.cost_usd or 0))
    assert spent.noise_usd == pytest.approx(repeat.cost_usd or 0)
    assert spent.grading_usd == pytest.approx(0.003)
    assert (spent.cache_read_tokens, spent.cache_write_tokens) == (2000, 2000)
    assert spent.cache_saved_usd == pytest.approx(2000 * 5 * (0.9 - 0.25) / 1e6)
    recorded = verdict_spend(side(source="recorded", input_tokens=9), candidate, None, None, BUILTIN_PROFILES)
    assert (recorded.replay_calls, recorded.noise_calls, recorded.grading_calls) == (1, 0, 0)


def test_spend_report_per_compared_and_per_decision() -> None:
    """Per compared verdict divides by compared verdicts, per decision by gate decisions; none taken is null."""
    total = Spend(replay_calls=200, replay_usd=2.0, noise_calls=20, noise_usd=0.1, grading_calls=10,
                  grading_usd=0.05, cache_saved_usd=0.04)
    report = spend_report(total, compared=100, gate_decisions=2)
    assert report["model_calls"]["total"] == 230 and report["usd"]["total"] == pytest.approx(2.15)
    assert report["per_compared"]["model_calls"] == {"replay": 2.0, "noise_check": 0.2, "grading": 0.1,
                                                     "total": 2.3}
    assert report["per_decision"]["usd"]["total"] == pytest.approx(1.075)
    assert report["cache"]["saved_usd"] == pytest.approx(0.04)
    empty = spend_report(Spend(), compared=0, gate_decisions=0)
    assert empty["per_compared"] is None and empty["per_decision"] is None


def test_cache_breakpoint_found_in_tools_system_messages_or_top_level() -> None:
    """Any cache_control marker is found; a request without one (or with the word only in text) has none."""
    mark = {"type": "ephemeral"}
    assert has_cache_breakpoint({"cache_control": mark, "messages": []})
    assert has_cache_breakpoint({"tools": [{"name": "t", "cache_control": mark}]})
    assert has_cache_breakpoint({"system": [{"type": "text", "text": "x", "cache_control": mark}]})
    assert has_cache_breakpoint({"messages": [{"role": "user", "content": [{"type": "text", "text": "x",
                                                                              "cache_control": mark}]}]})
    assert not has_cache_breakpoint({"system": "cache_control", "messages": [{"role": "user", "content": "cache_control"}]})
    assert not has_cache_breakpoint({"messages": "not a list", "tools": None, "system": [1, "x"]})


# --- the cache-aware noise replay, end to end through the SDK and the fake model ----------------


def envelope(request_id: str, cached: bool) -> dict[str, Any]:
    system: list[dict[str, Any]] = [{"type": "text", "text": LONG_POLICY}]
    if cached:
        system[0]["cache_control"] = {"type": "ephemeral"}
    body = {"model": "claude-opus-4-6", "max_tokens": 400, "system": system,
            "messages": [{"role": "user", "content": f"May I return order {request_id}?"}]}
    return {"schema": "shadowd.mirror/v1", "request_id": request_id, "route": "support", "request": body}


async def make(tmp_path: Path, noise_check: str = "true") -> tuple[ShadowPipeline, FakeModelServer, SqlVerdictStore]:
    # 300 ms per call: calls sent together are in flight together, whatever the machine's load.
    server = await start_fake_model(parse_behaviours({"models": {"default": {"latency_ms": 300}}}))
    path = tmp_path / "shadowd.yaml"
    path.write_text(f"models:\n  base_url: {server.base_url}\nrollouts:\n  - name: r\n    baseline: claude-opus-4-6\n"
                    f"    candidate: claude-opus-4-7\n    noise_check: {noise_check}\n")
    config: Config = load_config(path, Settings())
    store = await open_store(f"sqlite:///{tmp_path / 'v.db'}", upgrade=True)
    client = AnthropicModelClient(base_url=server.base_url, api_key="k", timeout_s=30, max_concurrency=16,
                                  profiles=config.profiles, retry=RetryPolicy(max_attempts=2, base_delay_s=0.01))
    return ShadowPipeline(config, client, store), server, store


@pytest.fixture
async def opened() -> AsyncIterator[list[Any]]:
    """Closes what a test opened."""
    things: list[Any] = []
    yield things
    for thing in things:
        await thing.close()


def record(data: dict[str, Any], offset: int) -> SourceRecord:
    return SourceRecord(source="test", partition=0, offset=offset, value=json.dumps(data).encode())


async def test_noise_replay_follows_the_first_and_reads_its_cache(tmp_path: Path, opened: list[Any]) -> None:
    """With cache_control, the baseline's second replay is sent after the first answered and reads the prefix it wrote."""
    pipeline, server, store = await make(tmp_path)
    opened += [pipeline.models, server, store]
    (verdict,) = (await pipeline.replay_record(record(envelope("c1", cached=True), 1))).verdicts
    first, repeat = verdict.baseline, verdict.baseline_repeat
    assert first is not None and repeat is not None and verdict.status is Status.PASS
    assert first.usage.cache_creation_input_tokens >= 1024 and first.usage.cache_read_input_tokens == 0
    assert repeat.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert repeat.usage.cache_creation_input_tokens == 0
    assert (repeat.cost_usd or 0) < (first.cost_usd or 0)
    assert server.stats.peak_in_flight == 2  # baseline with candidate, then the noise replay alone
    assert verdict.spend is not None and verdict.spend.cache_saved_usd > 0


async def test_noise_replay_without_cache_control_runs_alongside(tmp_path: Path, opened: list[Any]) -> None:
    """Near miss: without a cache breakpoint nothing is cached and the two baseline replays run at once."""
    pipeline, server, store = await make(tmp_path)
    opened += [pipeline.models, server, store]
    (verdict,) = (await pipeline.replay_record(record(envelope("p1", cached=False), 1))).verdicts
    assert verdict.baseline is not None and verdict.baseline_repeat is not None
    for answered in (verdict.baseline, verdict.baseline_repeat, verdict.candidate):
        assert answered is not None
        assert answered.usage.cache_read_input_tokens == answered.usage.cache_creation_input_tokens == 0
    assert server.stats.peak_in_flight == 3
    assert verdict.spend is not None and verdict.spend.cache_saved_usd == 0.0


async def test_report_spend_matches_the_verdicts(tmp_path: Path, opened: list[Any]) -> None:
    """The report's `spend` holds the stored verdicts' calls and USD by purpose, per compared verdict and per gate decision."""
    pipeline, server, store = await make(tmp_path, noise_check="0.2")
    opened += [pipeline.models, server, store]
    verdicts = []
    for index in range(30):
        verdicts += (await pipeline.replay_record(record(envelope(f"s{index}", cached=index % 2 == 0),
                                                         index))).verdicts
    await store.save(verdicts, [])
    spec = pipeline.config.rollout("r")
    assert spec is not None
    await store.ensure_rollout("r", spec.baseline, spec.candidate, datetime.now(UTC))
    await store.record_decision("r", at=datetime.now(UTC), kind="gate", actor="promoter", action="promote",
                                decision="promote", stage_index=1, canary_percent=5, reasons=[], figures={})
    await store.record_decision("r", at=datetime.now(UTC), kind="manual", actor="api:admin", action="pause",
                                decision="hold", stage_index=1, canary_percent=5, reasons=[], figures={})
    report = await build_report(store, spec)
    spend = report["spend"]
    repeats = [v.baseline_repeat for v in verdicts if v.baseline_repeat is not None]
    assert spend["compared"] == report["compared"] == 30
    assert spend["model_calls"] == {"replay": 60, "noise_check": len(repeats), "grading": 0,
                                    "total": 60 + len(repeats)}
    assert spend["model_calls"]["total"] == report["noise_check"]["model_calls"]
    assert spend["usd"]["noise_check"] == pytest.approx(sum(r.cost_usd or 0 for r in repeats))
    assert spend["usd"]["replay"] == pytest.approx(report["cost_usd"]["baseline"] + report["cost_usd"]["candidate"])
    assert spend["per_compared"]["model_calls"]["total"] == pytest.approx((60 + len(repeats)) / 30)
    assert spend["gate_decisions"] == 1  # the manual hold is not a gate decision
    assert spend["per_decision"]["usd"]["total"] == pytest.approx(spend["usd"]["total"])
    assert spend["cache"]["saved_usd"] == pytest.approx(sum(v.spend.cache_saved_usd for v in verdicts if v.spend))
    assert spend["cache"]["read_tokens"] > 0  # the cache-marked noise checks read what their first replay wrote


def test_text_and_html_show_the_spend() -> None:
    """The text report and the HTML page print calls and USD per compared verdict and per decision; no spend, no lines."""
    from shadowd.core.spend import spend_lines
    from shadowd.pages.spend_section import spend_section

    spend = spend_report(Spend(replay_calls=200, replay_usd=2.0, noise_calls=20, noise_usd=0.1,
                               cache_read_tokens=5000, cache_write_tokens=4000, cache_saved_usd=0.0175), 100, 2)
    lines = spend_lines(spend)
    assert lines[0].startswith("spend per compared verdict: 2.20 model calls, $0.02100")
    assert "noise check 0.20 / $0.00100" in lines[0]
    assert lines[1].startswith("spend per gate decision (2 taken): 110.00 model calls, $1.05000")
    assert "5,000 tokens read, 4,000 written, $0.01750 saved" in lines[2]
    html = spend_section(spend)
    assert "<td>noise check</td>" in html and "$1.05000" in html and "2 gate decisions" in html
    assert spend_lines(spend_report(Spend(), 0, 0)) == [] and spend_section(None) == ""
