"""Capacity is not the candidate's fault: retries under a deadline, failure kinds, error reasons, fake faults."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from aiohttp.test_utils import TestClient, TestServer

from shadowd.adapters.anthropic_client import AnthropicModelClient, RetryPolicy
from shadowd.adapters.sql_store import open_store
from shadowd.config import Settings, load_config
from shadowd.core.adaptation import ReplayRequest
from shadowd.core.findings import Status
from shadowd.core.profiles import resolve_profiles
from shadowd.core.results import ErrorReason, Failure, SideResult, error_reason_of
from shadowd.fakemodel import BehaviourError, FakeModelServer, parse_behaviours, start_fake_model
from shadowd.fakemodel.capacity import CapacityWindow
from shadowd.http import ApiState, create_app, runner_options
from shadowd.metrics import Metrics
from shadowd.pipeline import ShadowPipeline
from shadowd.records import SourceRecord
from shadowd.report import build_report

BASELINE, CANDIDATE = "claude-opus-4-6", "claude-sonnet-4-6"


def body(index: int, max_tokens: int = 300) -> dict[str, Any]:
    return {"model": BASELINE, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": f"Summarise ticket {index} in two sentences."}]}


class RecordingSleep:
    """The client's sleep, recording each delay it was asked for (and really sleeping it)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(seconds)


async def serve(capacity: list[dict[str, Any]], models: dict[str, Any] | None = None) -> FakeModelServer:
    return await start_fake_model(parse_behaviours({"capacity": capacity, "models": models or {}}))


def client_for(server: FakeModelServer, *, deadline_s: float = 20.0, sleep: Any = asyncio.sleep,
               metrics: Metrics | None = None, max_concurrency: int = 8) -> AnthropicModelClient:
    return AnthropicModelClient(
        base_url=server.base_url, api_key="k", timeout_s=10, max_concurrency=max_concurrency,
        profiles=resolve_profiles({}), sleep=sleep, metrics=metrics,
        retry=RetryPolicy(max_attempts=3, base_delay_s=0.02, max_delay_s=0.2, deadline_s=deadline_s),
    )


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Any]]:
    """Closes what a test opened."""
    opened: list[Any] = []
    yield opened
    for thing in reversed(opened):
        await thing.close()


async def replay(client: AnthropicModelClient, index: int, *, stream: bool = False, model: str = BASELINE,
                 max_tokens: int = 300) -> SideResult:
    request = {**body(index, max_tokens), "model": model}
    return await client.replay_request(ReplayRequest(body=request, adaptations=(), stream=stream), "2023-06-01")


# --- the client: what is retried, until when, and whose fault a failure is ---------------------


async def test_half_the_calls_rate_limited_all_succeed_with_retry_after_honoured(cleanup: list[Any]) -> None:
    """429 with retry-after on 50 % of calls: every call ends ok, and no retry came before its retry-after."""
    server = await serve([{"fault": "rate_limited", "rate": 0.5, "retry_after_s": 0.05}])
    sleep = RecordingSleep()
    client = client_for(server, sleep=sleep)
    cleanup += [server, client]
    sides = await asyncio.gather(*(replay(client, i) for i in range(30)))
    assert all(side.ok for side in sides)
    assert server.stats.capacity_faults["rate_limited"] > 0
    assert sum(side.capacity_retries for side in sides) == server.stats.capacity_faults["rate_limited"]
    assert sleep.delays and min(sleep.delays) >= 0.05


async def test_capacity_errors_past_the_deadline_fail_as_capacity(cleanup: list[Any]) -> None:
    """A 529 on every call is retried until the deadline, then fails with failure=capacity (not server)."""
    server = await serve([{"fault": "overloaded", "retry_after_s": 0.05}])
    client = client_for(server, deadline_s=0.6)
    cleanup += [server, client]
    side = await replay(client, 1)
    assert not side.ok and side.failure == Failure.CAPACITY
    assert side.attempts > 3  # more than max_attempts: capacity retries are bounded by time, not count
    assert side.capacity_retries == side.attempts - 1
    assert "HTTP 529" in (side.error or "") and "overloaded_error" in (side.error or "")


async def test_retry_after_beyond_the_deadline_gives_up_at_once(cleanup: list[Any]) -> None:
    """A retry-after longer than the time left is honoured by not calling again: one attempt, capacity."""
    server = await serve([{"fault": "rate_limited", "retry_after_s": 30}])
    sleep = RecordingSleep()
    client = client_for(server, deadline_s=5, sleep=sleep)
    cleanup += [server, client]
    side = await replay(client, 2)
    assert not side.ok and side.failure == Failure.CAPACITY and side.attempts == 1 and sleep.delays == []


async def test_mid_stream_overload_is_capacity_and_retried(cleanup: list[Any]) -> None:
    """An overloaded_error event inside a 200 stream counts as capacity: retried, then the stream completes."""
    server = await serve([{"fault": "stream_overloaded", "rate": 1.0, "for_s": 0.3}])
    metrics = Metrics()
    client = client_for(server, metrics=metrics)
    cleanup += [server, client]
    side = await replay(client, 3, stream=True, max_tokens=30_000)
    assert side.ok and side.streamed and side.capacity_retries >= 1 and side.stop_reason == "end_turn"
    attempts = metrics.registry.get_sample_value(
        "shadowd_model_attempts_total", {"model": BASELINE, "outcome": "capacity", "status": "stream"})
    assert attempts == side.capacity_retries


async def test_mid_stream_overload_past_the_deadline_fails_as_capacity(cleanup: list[Any]) -> None:
    """A stream that always breaks off with overloaded_error ends as a capacity failure, never a server one."""
    server = await serve([{"fault": "stream_overloaded", "rate": 1.0}])
    client = client_for(server, deadline_s=0.4)
    cleanup += [server, client]
    side = await replay(client, 4, stream=True, max_tokens=30_000)
    assert not side.ok and side.failure == Failure.CAPACITY and "overloaded_error" in (side.error or "")


async def test_api_down_then_up_is_survived(cleanup: list[Any]) -> None:
    """Connection refused for a window: calls keep retrying and succeed once the port listens again."""
    server = await serve([{"fault": "down", "from_s": 0.0, "for_s": 1.0}])
    client = client_for(server)
    cleanup += [server, client]
    sides = await asyncio.gather(*(replay(client, i) for i in range(5, 12)))  # the first call opens the outage
    assert all(side.ok for side in sides)
    assert all(side.capacity_retries > 0 for side in sides)
    assert server.stats.capacity_faults["down"] >= 1


async def test_api_down_past_the_deadline_is_capacity(cleanup: list[Any]) -> None:
    """Near miss of the above: an outage longer than the deadline fails the call, as capacity."""
    server = await serve([{"fault": "down", "from_s": 0.0, "for_s": 60}])
    client = client_for(server, deadline_s=0.5)
    cleanup += [server, client]
    await replay(client, 13)
    side = await replay(client, 14)
    assert not side.ok and side.failure == Failure.CAPACITY and "Connection" in (side.error or "")


async def test_persistent_500_is_a_server_failure_after_bounded_attempts(cleanup: list[Any]) -> None:
    """A model answering 500 every time is retried max_attempts times only, and is the model's own failure."""
    server = await serve([], models={BASELINE: {"faults": {"error": 1.0}}})
    client = client_for(server, deadline_s=60)
    cleanup += [server, client]
    side = await replay(client, 15)
    assert not side.ok and side.failure == Failure.SERVER and side.attempts == 3 and side.capacity_retries == 0


async def test_a_4xx_is_a_request_failure_and_not_retried(cleanup: list[Any]) -> None:
    """A request the model refuses (400) is not retried and is the request's own failure."""
    server = await serve([])
    client = client_for(server)
    cleanup += [server, client]
    side = await replay(client, 16, max_tokens=10_000_000)
    assert not side.ok and side.failure == Failure.REQUEST and side.attempts == 1 and "HTTP 400" in (side.error or "")


async def test_429s_shrink_the_permits_and_successes_bring_them_back(cleanup: list[Any]) -> None:
    """A burst of 429s cuts the concurrency budget (seen in the gauge); later successes raise it again."""
    server = await serve([{"fault": "rate_limited", "rate": 1.0, "for_s": 0.3, "retry_after_s": 0.05}])
    metrics = Metrics()
    client = client_for(server, metrics=metrics, max_concurrency=64)
    cleanup += [server, client]
    await asyncio.gather(*(replay(client, i) for i in range(40)))
    cut_to = client.permits.limit.permits
    assert client.permits.limit.cuts >= 1 and cut_to < 64
    for i in range(40, 400):
        assert (await replay(client, i)).ok
    assert client.permits.limit.permits > cut_to
    assert metrics.registry.get_sample_value("shadowd_model_concurrency_limit") == client.permits.limit.permits


async def test_rate_limit_headers_pace_calls_before_the_quota_runs_out(cleanup: list[Any]) -> None:
    """Against a 20-requests-per-second quota, reading anthropic-ratelimit-* keeps 429s rare (a client that
    ignored them met 120 for these 80 calls); every call still succeeds."""
    server = await start_fake_model(parse_behaviours({"rate_limit": {"requests": 20, "per_s": 1}}))
    client = client_for(server, deadline_s=60)
    cleanup += [server, client]
    sides = await asyncio.gather(*(replay(client, i) for i in range(80)))
    assert all(side.ok for side in sides)
    assert server.stats.capacity_faults.get("rate_limit", 0) < 20
    assert server.stats.requests_served < 100


# --- the verdict: capacity is an error with a reason, never error.candidate ---------------------


class ScriptedModels:
    """An in-memory ModelClient: each model answers with the SideResult given for it."""

    def __init__(self, sides: dict[str, SideResult]) -> None:
        self.sides = sides
        self.deadlines: list[float | None] = []

    async def replay_request(self, replay: ReplayRequest, api_version: str | None,
                             deadline: float | None = None) -> SideResult:
        self.deadlines.append(deadline)
        return self.sides[str(replay.body["model"])]

    async def close(self) -> None:
        return None


def ok_side(model: str) -> SideResult:
    return SideResult(model=model, ok=True, content=({"type": "text", "text": "Fine."},), stop_reason="end_turn")


def failed(model: str, failure: Failure, error: str) -> SideResult:
    return SideResult(model=model, ok=False, error=error, failure=failure.value, attempts=5)


ROLLOUT_YAML = f"""models:
  retry_deadline_s: 240
rollouts:
  - name: r
    baseline: {BASELINE}
    candidate: {CANDIDATE}
    noise_check: false
"""


async def pipeline_with(tmp_path: Path, sides: dict[str, SideResult]) -> tuple[ShadowPipeline, Any]:
    path = tmp_path / "shadowd.yaml"
    path.write_text(ROLLOUT_YAML)
    config = load_config(path, Settings())
    store = await open_store(f"sqlite:///{tmp_path / 'v.db'}", upgrade=True)
    return ShadowPipeline(config, ScriptedModels(sides), store, Metrics()), store


def envelope_record(request_id: str) -> SourceRecord:
    data = {"schema": "shadowd.mirror/v1", "request_id": request_id, "route": "chat", "request": body(0)}
    return SourceRecord(source="t", partition=0, offset=1, value=json.dumps(data).encode())


@pytest.mark.parametrize(
    ("baseline", "candidate", "status", "error_reason", "codes"),
    [
        # golden: the candidate met only capacity errors -> error/capacity, no finding against it
        (ok_side(BASELINE), failed(CANDIDATE, Failure.CAPACITY, "HTTP 429: rate_limit_error: slow down"),
         Status.ERROR, "capacity", []),
        (ok_side(BASELINE), failed(CANDIDATE, Failure.CAPACITY, "HTTP 200: overloaded_error: Overloaded"),
         Status.ERROR, "capacity", []),
        (ok_side(BASELINE), failed(CANDIDATE, Failure.CAPACITY, "APIConnectionError: Connection error."),
         Status.ERROR, "capacity", []),
        # near misses: the candidate's own failures stay error.candidate
        (ok_side(BASELINE), failed(CANDIDATE, Failure.SERVER, "HTTP 500: api_error: Internal server error"),
         Status.REGRESSION, None, ["error.candidate"]),
        (ok_side(BASELINE), failed(CANDIDATE, Failure.REQUEST, "HTTP 400: invalid_request_error: bad"),
         Status.REGRESSION, None, ["error.candidate"]),
        # the baseline failing: capacity when it was capacity, baseline_failed otherwise
        (failed(BASELINE, Failure.CAPACITY, "HTTP 529: overloaded_error: Overloaded"), ok_side(CANDIDATE),
         Status.ERROR, "capacity", []),
        (failed(BASELINE, Failure.SERVER, "HTTP 500: api_error: boom"), ok_side(CANDIDATE),
         Status.ERROR, "baseline_failed", []),
        (failed(BASELINE, Failure.CAPACITY, "HTTP 529"), failed(CANDIDATE, Failure.SERVER, "HTTP 500"),
         Status.ERROR, "capacity", []),
    ],
)
async def test_verdict_blames_the_candidate_only_for_its_own_failures(
    tmp_path: Path, baseline: SideResult, candidate: SideResult, status: Status, error_reason: str | None,
    codes: list[str],
) -> None:
    """Capacity failures on either side give error/capacity; a candidate's own 4xx or 5xx is error.candidate."""
    pipeline, store = await pipeline_with(tmp_path, {BASELINE: baseline, CANDIDATE: candidate})
    try:
        (verdict,) = (await pipeline.replay_record(envelope_record("x"))).verdicts
        assert verdict.status is status
        assert verdict.error_reason == error_reason
        assert [f.code for f in verdict.findings] == codes
        if error_reason is not None:
            assert pipeline.metrics.registry.get_sample_value(
                "shadowd_error_verdicts_total", {"rollout": "r", "reason": error_reason}) == 1
    finally:
        await store.close()


async def test_every_call_of_a_record_shares_its_deadline(tmp_path: Path) -> None:
    """The record's calls all get one deadline, models.retry_deadline_s after the replay began."""
    pipeline, store = await pipeline_with(tmp_path, {BASELINE: ok_side(BASELINE), CANDIDATE: ok_side(CANDIDATE)})
    try:
        await pipeline.replay_record(envelope_record("d"))
        models = pipeline.models
        assert isinstance(models, ScriptedModels)
        deadlines = {d for d in models.deadlines if d is not None}
        assert len(models.deadlines) == 2 and len(deadlines) == 1
    finally:
        await store.close()


def test_error_reason_of_is_none_when_both_sides_answered() -> None:
    """Two answers leave the decision to the comparator: no error reason from the sides."""
    assert error_reason_of(ok_side(BASELINE), ok_side(CANDIDATE)) is None
    assert error_reason_of(ok_side(BASELINE), None) is None
    assert error_reason_of(failed(BASELINE, Failure.RESPONSE, "x"), None) is ErrorReason.BASELINE_FAILED


async def test_capacity_errors_are_stored_and_reported_by_reason(tmp_path: Path) -> None:
    """Error verdicts keep their reason in the store, and the report counts them by reason."""
    pipeline, store = await pipeline_with(
        tmp_path, {BASELINE: ok_side(BASELINE), CANDIDATE: failed(CANDIDATE, Failure.CAPACITY, "HTTP 529")})
    try:
        verdicts = []
        for i in range(3):
            verdicts += (await pipeline.replay_record(envelope_record(f"c{i}"))).verdicts
        pipeline.models.sides[CANDIDATE] = failed(CANDIDATE, Failure.SERVER, "HTTP 500")  # type: ignore[attr-defined]
        verdicts += (await pipeline.replay_record(envelope_record("s"))).verdicts
        pipeline.models.sides[BASELINE] = failed(BASELINE, Failure.REQUEST, "HTTP 400")  # type: ignore[attr-defined]
        verdicts += (await pipeline.replay_record(envelope_record("b"))).verdicts
        await store.save(verdicts, [])
        stored = await store.get_verdict("r", "c0")
        assert stored is not None and stored.verdict.error_reason == "capacity"
        spec = pipeline.config.rollout("r")
        assert spec is not None
        report = await build_report(store, spec)
        assert report["counts"]["error"] == 4 and report["counts"]["regression"] == 1
        assert report["errors_by_reason"] == {"capacity": 3, "baseline_failed": 1}
        assert "error.candidate" in report["by_code"] and report["by_code"]["error.candidate"]["count"] == 1
    finally:
        await store.close()


async def test_api_report_and_verdicts_carry_the_error_reasons(tmp_path: Path) -> None:
    """GET /v1/rollouts/{name} counts error verdicts by reason; a verdict's JSON names its own reason."""
    pipeline, store = await pipeline_with(
        tmp_path, {BASELINE: ok_side(BASELINE), CANDIDATE: failed(CANDIDATE, Failure.CAPACITY, "HTTP 429")})
    state = ApiState(config=pipeline.config, store=store, metrics=Metrics())
    server = TestServer(create_app(state, open_reads=True))
    await server.start_server(**runner_options())
    client: TestClient[Any, Any] = TestClient(server)
    try:
        await client.start_server()
        verdicts = []
        for i in range(2):
            verdicts += (await pipeline.replay_record(envelope_record(f"a{i}"))).verdicts
        await store.save(verdicts, [])
        response = await client.get("/v1/rollouts/r")
        assert response.status == 200
        report = await response.json()
        assert report["counts"]["error"] == 2 and report["errors_by_reason"] == {"capacity": 2}
        response = await client.get("/v1/rollouts/r/verdicts/a0")
        assert response.status == 200
        detail = await response.json()
        assert detail["error_reason"] == "capacity" and detail["findings"] == []
        assert detail["candidate"]["failure"] == "capacity"
    finally:
        await client.close()
        await store.close()


async def test_capacity_window_through_the_real_sdk_gives_error_capacity(tmp_path: Path, cleanup: list[Any]) -> None:
    """Through the fake model and the real SDK: 529s for longer than the deadline make error/capacity verdicts."""
    server = await serve([{"fault": "overloaded", "retry_after_s": 0.05}])
    cleanup.append(server)
    path = tmp_path / "shadowd.yaml"
    path.write_text(ROLLOUT_YAML.replace("retry_deadline_s: 240", "retry_deadline_s: 0.5"))
    config = load_config(path, Settings())
    store = await open_store(f"sqlite:///{tmp_path / 'v.db'}", upgrade=True)
    client = client_for(server, deadline_s=0.5)
    cleanup += [client, store]
    (verdict,) = (await ShadowPipeline(config, client, store).replay_record(envelope_record("w"))).verdicts
    assert verdict.status is Status.ERROR and verdict.error_reason == "capacity" and verdict.findings == ()
    assert verdict.reason is not None and verdict.reason.startswith("capacity: ")


# --- the fake model's capacity windows ---------------------------------------------------------


def test_windows_open_and_repeat_on_schedule() -> None:
    """A burst window of 2 s every 10 s from 5 s is open at 5, 6.9, 15, and closed at 4.9, 7, 14.9."""
    window = CapacityWindow("overloaded", from_s=5, for_s=2, every_s=10)
    assert [window.is_open(t) for t in (4.9, 5.0, 6.9, 7.0, 14.9, 15.0)] == [False, True, True, False, False, True]
    assert window.seconds_until_change(4.0) == pytest.approx(1.0)
    assert window.seconds_until_change(6.0) == pytest.approx(1.0)
    assert window.seconds_until_change(8.0) == pytest.approx(7.0)
    once = CapacityWindow("down", from_s=1, for_s=3)
    assert once.seconds_until_change(5.0) == math.inf


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"fault": "sleepy"}, "capacity[0].fault"),
        ({"fault": "overloaded", "rate": 1.5}, "capacity[0].rate"),
        ({"fault": "overloaded", "every_s": 5}, "capacity[0].every_s"),
        ({"fault": "overloaded", "for_s": 6, "every_s": 5}, "capacity[0].every_s"),
        ({"fault": "down", "for_s": -1}, "capacity[0].for_s"),
        ({"fault": "down", "when": 3}, "capacity[0].when"),
    ],
)
def test_bad_capacity_entries_name_the_key(entry: dict[str, Any], message: str) -> None:
    """A capacity window that cannot be used is refused with its key and the file named."""
    with pytest.raises(BehaviourError, match=r"faults\.yaml: .*" + message.replace("[", r"\[").replace("]", r"\]")):
        parse_behaviours({"capacity": [entry]}, "faults.yaml")


@pytest.mark.parametrize(
    ("rate_limit", "message"),
    [({"requests": 0, "per_s": 1}, "rate_limit.requests"), ({"requests": 5, "per_s": 0}, "rate_limit.per_s"),
     ({"requests": 5}, "rate_limit")],
)
def test_bad_rate_limit_names_the_key(rate_limit: dict[str, Any], message: str) -> None:
    """A request quota that cannot be used is refused with its key and the file named."""
    with pytest.raises(BehaviourError, match=r"faults\.yaml: `" + message.replace(".", r"\.")):
        parse_behaviours({"rate_limit": rate_limit}, "faults.yaml")


async def test_capacity_faults_hit_baseline_and_candidate_alike(cleanup: list[Any]) -> None:
    """A window has no model filter: every model meets it at the same rate."""
    server = await serve([{"fault": "unavailable", "rate": 0.5}])
    cleanup.append(server)
    sdk = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="k", max_retries=0)
    cleanup.append(sdk)
    hits = {BASELINE: 0, CANDIDATE: 0}
    for model in hits:
        for i in range(80):
            try:
                await sdk.messages.create(**{**body(i), "model": model})
            except anthropic.APIStatusError as exc:
                assert exc.status_code == 503
                hits[model] += 1
    assert 20 <= hits[BASELINE] <= 60 and 20 <= hits[CANDIDATE] <= 60
