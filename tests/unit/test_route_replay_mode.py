"""Per-route replay mode (`routes.<name>.replay_mode`): config, which calls are batched, and latency judged
on live calls only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shadowd.adapters.anthropic_client import AnthropicModelClient, RetryPolicy
from shadowd.adapters.memory_store import MemoryStore
from shadowd.batch import attach_batches
from shadowd.config import ConfigError, Settings, load_config
from shadowd.core.figures import verdict_figures
from shadowd.core.findings import Status
from shadowd.core.histogram import bucket_of, bucket_value
from shadowd.core.profiles import BUILTIN_PROFILES
from shadowd.core.results import SideResult
from shadowd.core.rollout import RolloutSpec
from shadowd.core.tally import RolloutTotals, VerdictFacts, tally
from shadowd.fakemodel import parse_behaviours, start_fake_model
from shadowd.pipeline import ShadowPipeline
from shadowd.records import VerdictRecord
from tests.unit.test_config import GOOD, write
from tests.unit.test_pipeline import CLEAN, envelope, record

# --- config --------------------------------------------------------------------------------------


def _with_route_mode(mode: str, rollout_extra: str = "") -> str:
    """GOOD with `routes.support-summary.replay_mode: <mode>` and lines added to its rollout."""
    text = GOOD.replace('    ignore_paths: ["$.generated_at"]\n',
                        f'    ignore_paths: ["$.generated_at"]\n    replay_mode: {mode}\n')
    assert f"replay_mode: {mode}" in text
    return text + rollout_extra


def test_a_route_mode_wins_over_the_rollouts_for_that_route_only(tmp_path: Path) -> None:
    """A live rollout batches the calls of a `replay_mode: batch` route, keeps other routes live, and still
    judges latency (on those live routes)."""
    config = load_config(write(tmp_path, _with_route_mode("batch")), Settings())
    rollout = config.rollouts[0]
    assert rollout.replay_mode == "live"
    assert rollout.replay_mode_for("support-summary") == "batch"
    assert rollout.replay_mode_for("chat") == "live"
    assert rollout.uses_batches and rollout.latency_judged and rollout.gate.latency_judged


def test_without_route_modes_every_route_takes_the_rollouts_mode(tmp_path: Path) -> None:
    """Near miss: a route with no replay_mode of its own follows the rollout, live or batch."""
    live = load_config(write(tmp_path, GOOD), Settings()).rollouts[0]
    assert live.replay_mode_for("support-summary") == "live" and not live.uses_batches and live.gate.latency_judged
    batch = load_config(write(tmp_path, GOOD + "    replay_mode: batch\n"), Settings()).rollouts[0]
    assert batch.replay_mode_for("support-summary") == "batch" and batch.uses_batches
    assert not batch.gate.latency_judged


def test_a_batch_rollout_judges_latency_only_when_a_covered_route_forces_live(tmp_path: Path) -> None:
    """A batch rollout with a `live` route keeps that route live and judges latency; when its routes do not
    cover the live route, every call is batched and latency stays not judged."""
    covered = load_config(write(tmp_path, _with_route_mode("live", "    replay_mode: batch\n")), Settings())
    rollout = covered.rollouts[0]
    assert rollout.replay_mode_for("support-summary") == "live" and rollout.replay_mode_for("chat") == "batch"
    assert rollout.gate.latency_judged
    elsewhere = load_config(write(tmp_path, _with_route_mode("live", '    replay_mode: batch\n    routes: ["chat*"]\n')),
                            Settings())
    assert not elsewhere.rollouts[0].gate.latency_judged


@pytest.mark.parametrize(
    ("routes", "judged"),
    [(["support-summary"], False), (["support-summary", "chat"], True), (["support-*"], True), (["*"], True)],
)
def test_a_live_rollout_whose_every_route_is_batched_does_not_judge_latency(
    tmp_path: Path, routes: list[str], judged: bool
) -> None:
    """Latency is judged when some call can be live: plain route names all batched mean none can; another
    name or a glob (it may match routes without a mode) can."""
    text = _with_route_mode("batch", f"    routes: {routes}\n".replace("'", '"'))
    assert load_config(write(tmp_path, text), Settings()).rollouts[0].gate.latency_judged is judged


@pytest.mark.parametrize(
    ("value", "words"), [("offline", "'live' or 'batch'"), ("true", "'live' or 'batch'"), ("[batch]", "'live'")]
)
def test_a_bad_route_replay_mode_names_the_key_and_the_file(tmp_path: Path, value: str, words: str) -> None:
    """A route replay_mode other than live or batch stops loading with its key, the file and the choices."""
    path = write(tmp_path, _with_route_mode(value))
    with pytest.raises(ConfigError) as caught:
        load_config(path, Settings())
    assert caught.value.key == "routes.support-summary.replay_mode"
    assert str(path) in str(caught.value) and words in str(caught.value)


# --- the pipeline, through the fake model and the real SDK ---------------------------------------


async def _pipeline(tmp_path: Path, rollout_mode: str, route_mode: str) -> tuple[ShadowPipeline, Any, MemoryStore]:
    server = await start_fake_model(parse_behaviours({"models": {"default": CLEAN}, "batches": {"delay_s": 0.2}}))
    path = tmp_path / "shadowd.yaml"
    path.write_text(
        f"models:\n  base_url: {server.base_url}\n"
        f"routes:\n  summary:\n    replay_mode: {route_mode}\n"
        "batch: {window_records: 100, window_s: 0.1, poll_initial_s: 0.05, poll_max_s: 0.2}\n"
        "rollouts:\n  - name: r\n    baseline: claude-opus-4-6\n    candidate: claude-opus-4-7\n"
        f"    noise_check: false\n    replay_mode: {rollout_mode}\n"
    )
    config = load_config(path, Settings())
    store = MemoryStore()
    client = AnthropicModelClient(base_url=server.base_url, api_key="k", timeout_s=30, max_concurrency=16,
                                  profiles=config.profiles, retry=RetryPolicy(max_attempts=3, base_delay_s=0.01))
    pipeline = ShadowPipeline(config, client, store)
    assert attach_batches(pipeline, config, store) is not None  # a route's batch mode wires the replayer
    return pipeline, server, store


async def _replay_both_routes(pipeline: ShadowPipeline) -> dict[str, VerdictRecord]:
    summary = {**envelope("s-1"), "route": "summary"}
    chat = envelope("c-1")
    outcomes = [await pipeline.replay_record(record(summary, offset=1)),
                await pipeline.replay_record(record(chat, offset=2))]
    return {outcome.verdicts[0].route: outcome.verdicts[0] for outcome in outcomes}


def _priced_at(side: SideResult | None, share: float) -> bool:
    assert side is not None and side.cost_usd is not None
    return side.cost_usd == pytest.approx(BUILTIN_PROFILES[side.model].cost_usd(side.usage) * share)


async def test_a_live_rollouts_batch_route_goes_through_a_batch_and_other_routes_stay_live(tmp_path: Path) -> None:
    """On a live rollout, the `batch` route's two calls are one Message Batch at the batch price without
    latency; the other route's two calls are live, at list price, with latency; the figure counts the live
    route alone."""
    pipeline, server, store = await _pipeline(tmp_path, "live", "batch")
    try:
        verdicts = await _replay_both_routes(pipeline)
        assert server.stats.batches_created == 1 and server.stats.batch_requests == 2
        assert server.stats.requests_served == 2
        batched, live = verdicts["summary"], verdicts["chat"]
        assert batched.status is Status.PASS and live.status is Status.PASS
        assert batched.baseline and batched.candidate and batched.baseline.latency_ms is None
        assert batched.candidate.latency_ms is None
        assert _priced_at(batched.baseline, 0.5) and _priced_at(batched.candidate, 0.5)
        assert live.baseline and live.candidate and live.baseline.latency_ms and live.candidate.latency_ms
        assert _priced_at(live.baseline, 1.0) and _priced_at(live.candidate, 1.0)
        assert batched.spend is not None and live.spend is not None
        assert batched.spend.replay_usd == pytest.approx(batched.baseline.cost_usd + batched.candidate.cost_usd)

        await store.save(list(verdicts.values()), [])
        figures = verdict_figures(await store.rollout_totals("r"))
        assert figures.samples == 2
        assert figures.latency_baseline.p95 == bucket_value(bucket_of(live.baseline.latency_ms))
        assert figures.latency_candidate.p95 == bucket_value(bucket_of(live.candidate.latency_ms))
    finally:
        assert pipeline.batches is not None
        for thing in (pipeline.batches, pipeline.models, server, store):
            await thing.close()


async def test_a_batch_rollouts_live_route_keeps_its_calls_live(tmp_path: Path) -> None:
    """On a batch rollout, the `live` route's calls are made live with latency; the other route is batched."""
    pipeline, server, store = await _pipeline(tmp_path, "batch", "live")
    try:
        verdicts = await _replay_both_routes(pipeline)
        assert server.stats.batches_created == 1 and server.stats.batch_requests == 2
        assert server.stats.requests_served == 2
        live, batched = verdicts["summary"], verdicts["chat"]
        assert live.candidate and live.candidate.latency_ms and _priced_at(live.candidate, 1.0)
        assert batched.candidate and batched.candidate.latency_ms is None and _priced_at(batched.candidate, 0.5)
        assert pipeline.config.rollouts[0].gate.latency_judged
    finally:
        assert pipeline.batches is not None
        for thing in (pipeline.batches, pipeline.models, server, store):
            await thing.close()


# --- the latency figure --------------------------------------------------------------------------


def _facts(route: str, baseline_ms: float | None, candidate_ms: float | None) -> VerdictFacts:
    return VerdictFacts(rollout="r", route=route, status=Status.PASS.value,
                        baseline_latency_ms=baseline_ms, candidate_latency_ms=candidate_ms)


def test_latency_figures_count_only_verdicts_with_a_latency_on_both_sides() -> None:
    """Batch verdicts (no latency either side) and half-measured ones (a recorded baseline's latency against a
    batch candidate) add nothing to either side's histogram, never a 0; live verdicts give the p95 alone."""
    delta = tally([
        _facts("chat", 400.0, 600.0),
        _facts("summary", None, None),
        _facts("summary", 900.0, None),
        _facts("summary", None, 0.0),
    ])
    totals = RolloutTotals(latency={(side, bucket): n for (_, side, bucket), n in delta.latency.items()})
    figures = verdict_figures(totals)
    assert sum(delta.latency.values()) == 2
    assert figures.latency_baseline.p95 == bucket_value(bucket_of(400.0))
    assert figures.latency_candidate.p95 == bucket_value(bucket_of(600.0))
    evidence = figures.evidence()
    assert evidence.latency_p95_candidate_ms is not None and evidence.latency_p95_baseline_ms is not None
    assert evidence.latency_p95_candidate_ms / evidence.latency_p95_baseline_ms == pytest.approx(1.5, rel=0.03)


def test_route_modes_are_plain_data_on_the_rollout() -> None:
    """RolloutSpec answers a route's mode from its own table: an unknown route takes the rollout's mode."""
    spec = RolloutSpec("r", "a", "b", replay_mode="batch", route_modes=(("chat", "live"),))
    assert spec.replay_mode_for("chat") == "live" and spec.replay_mode_for("other") == "batch"
    assert spec.replay_modes() == {"live", "batch"}
    assert RolloutSpec("r", "a", "b", routes=("chat",), route_modes=(("chat", "batch"),)).replay_modes() == {"batch"}
