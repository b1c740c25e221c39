"""Batch mode: custom ids, the window, poll backoff, batch results as sides, config, and resuming a batch."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anthropic
import pytest

from shadowd.batch import BatchCall, BatchReplayer, MemoryBatchLedger, price_multiplier
from shadowd.config import ConfigError, Settings, load_config
from shadowd.core.adaptation import ReplayRequest
from shadowd.core.batching import BatchItem, BatchWindow, PollBackoff, batch_side, custom_id
from shadowd.core.profiles import BUILTIN_PROFILES
from shadowd.core.results import ErrorReason, Failure, SideResult, error_reason_of
from shadowd.fakemodel import FakeModelServer, parse_behaviours, start_fake_model
from tests.unit.test_config import GOOD, write

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MODEL = "claude-opus-4-7"
PROFILE = BUILTIN_PROFILES[MODEL]


def _item(request_id: str, slot: str = "candidate") -> BatchItem:
    return BatchItem(custom_id(request_id, MODEL, slot), "r", request_id, MODEL, slot, {})  # type: ignore[arg-type]


# --- custom ids and the window -------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_id", ["req-1", "", "a\x00b", "lone \udc80 surrogate", "[bold]x[/]", "x" * 10_000, "ü/\\ 😀"]
)
def test_custom_ids_fit_the_api_pattern_whatever_the_request_id(request_id: str) -> None:
    """Every request id, hostile or huge, maps to a custom id the Message Batches API accepts."""
    for slot in ("baseline", "repeat", "candidate"):
        assert CUSTOM_ID.match(custom_id(request_id, MODEL, slot))


def test_custom_ids_are_stable_and_tell_calls_apart() -> None:
    """The same call always gets the same id (a restart finds it); another request, model or slot never does."""
    ids = {custom_id(r, m, s) for r in ("a", "b") for m in (MODEL, "claude-opus-4-6")
           for s in ("baseline", "repeat", "candidate")}
    assert len(ids) == 12
    assert custom_id("a", MODEL, "baseline") == custom_id("a", MODEL, "baseline")
    assert custom_id("a\x00b", MODEL, "baseline") != custom_id("a", "b\x00" + MODEL, "baseline")
    with pytest.raises(ValueError, match="slot"):
        custom_id("a", MODEL, "judge")  # type: ignore[arg-type]


def test_the_window_is_due_when_full_or_old_and_never_while_empty() -> None:
    """A window submits at max_records calls or max_age_s after its first call; an empty one never."""
    window = BatchWindow(max_records=3, max_age_s=10.0)
    assert not window.due(1000.0) and window.seconds_left(0.0) is None
    assert window.add(_item("a"), now=100.0)
    assert not window.due(109.9) and window.seconds_left(104.0) == pytest.approx(6.0)
    assert window.due(110.0)
    assert window.add(_item("b"), now=101.0) and window.add(_item("c"), now=102.0)
    assert window.full() and window.due(102.0)
    assert [item.request_id for item in window.take()] == ["a", "b", "c"]
    assert len(window) == 0 and not window.due(500.0)
    window.add(_item("d"), now=500.0)
    assert not window.due(505.0)  # the age counts from the new window's first call


def test_a_call_added_twice_is_one_request_in_the_batch() -> None:
    """A redelivered record's call, or one shared by two rollouts, is sent once (custom ids are unique per batch)."""
    window = BatchWindow(max_records=10, max_age_s=1.0)
    assert window.add(_item("a"), 0.0)
    assert not window.add(_item("a"), 0.5)
    assert window.add(_item("a", "baseline"), 0.5)
    assert len(window.take()) == 2


def test_window_bounds_are_checked() -> None:
    """A window larger than the API's 100,000 requests, or with a negative age, is refused."""
    with pytest.raises(ValueError, match="max_records"):
        BatchWindow(max_records=100_001, max_age_s=1.0)
    with pytest.raises(ValueError, match="max_age_s"):
        BatchWindow(max_records=10, max_age_s=-1.0)


def test_polls_back_off_up_to_the_cap() -> None:
    """The wait between polls grows by the factor from the first one and stops at max_s."""
    backoff = PollBackoff(initial_s=2.0, max_s=10.0, factor=2.0)
    assert [backoff.delay_s(n) for n in range(5)] == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_poll_backoff_stays_at_its_cap_however_long_a_batch_runs() -> None:
    """A batch polled thousands of times (24 h of short waits) waits max_s, never overflows the float."""
    assert PollBackoff(initial_s=5.0, max_s=60.0).delay_s(10_000) == 60.0
    assert PollBackoff(initial_s=5.0, max_s=60.0).delay_s(-1) == 5.0


# --- individual results as sides -----------------------------------------------------------------


def test_a_succeeded_result_is_a_side_at_the_batch_price_without_latency() -> None:
    """A succeeded result gives the message's content and usage, costs the discounted price, and has no latency."""
    message = {"content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
               "usage": {"input_tokens": 1000, "output_tokens": 200}}
    side = batch_side(MODEL, {"type": "succeeded", "message": message}, PROFILE, price_multiplier(0.5))
    assert side.ok and side.text == "hi" and side.stop_reason == "end_turn"
    assert side.latency_ms is None and side.ttft_ms is None
    assert side.cost_usd == pytest.approx((1000 * 5 + 200 * 25) / 1e6 * 0.5)


@pytest.mark.parametrize(
    ("result", "words"),
    [
        ({"type": "errored", "error": {"type": "error", "error": {"type": "invalid_request_error",
                                                                  "message": "max_tokens: too large"}}},
         "batch request errored: invalid_request_error: max_tokens: too large"),
        ({"type": "errored", "error": {"type": "error", "error": {"type": "api_error", "message": "boom"}}},
         "errored: api_error: boom"),
        ({"type": "expired"}, "expired before it was processed"),
        ({"type": "canceled"}, "canceled before it was processed"),
        (None, "ended without a result"),
        ({"type": "exploded"}, "unknown batch result type"),
    ],
)
def test_failed_results_are_batch_failures_with_a_reason(result: dict[str, object] | None, words: str) -> None:
    """Errored, expired, canceled, missing and unknown results fail the side as `batch`, saying what happened."""
    side = batch_side(MODEL, result, PROFILE, 0.5)
    assert not side.ok and side.failure == Failure.BATCH.value
    assert words in (side.error or "")


def test_batch_failures_make_error_verdicts_but_other_candidate_failures_stay_findings() -> None:
    """A side failed by its batch result gives error_reason batch_result; a candidate's own 4xx still does not."""
    ok = SideResult(model=MODEL, ok=True)
    batch_failed = batch_side(MODEL, {"type": "expired"}, PROFILE, 0.5)
    refused = SideResult(model=MODEL, ok=False, error="HTTP 400", failure=Failure.REQUEST.value)
    assert error_reason_of(ok, batch_failed) is ErrorReason.BATCH_RESULT
    assert error_reason_of(batch_failed, ok) is ErrorReason.BATCH_RESULT
    assert error_reason_of(ok, refused) is None  # near miss: the candidate's own refusal is its finding


# --- config --------------------------------------------------------------------------------------


def test_replay_mode_and_batch_settings_load(tmp_path: Path) -> None:
    """`replay_mode: batch` reaches the rollout (latency not judged) and the batch section its settings."""
    text = GOOD + "    replay_mode: batch\nbatch: {window_records: 50, window_s: 5}\n"
    config = load_config(write(tmp_path, text), Settings())
    rollout = config.rollouts[0]
    assert rollout.replay_mode == "batch" and not rollout.latency_judged
    assert (config.batch.window_records, config.batch.window_s, config.models.batch_discount) == (50, 5.0, 0.5)
    default = load_config(write(tmp_path, GOOD), Settings()).rollouts[0]
    assert default.replay_mode == "live" and default.latency_judged


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ("    replay_mode: offline\n", "rollouts[0](opus-4-7).replay_mode", "live"),
        ("batch: {window_records: 0}\n", "batch.window_records", "greater than or equal"),
        ("batch: {window_records: 100001}\n", "batch.window_records", "less than or equal"),
        ("batch: {window_s: 0}\n", "batch.window_s", "greater than"),
        ("batch: {poll_initial_s: 10, poll_max_s: 5}\n", "batch", "poll_max_s"),
        ("batch: {windows: 3}\n", "batch.windows", "unknown key"),
    ],
)
def test_batch_config_errors_name_the_key_and_the_file(tmp_path: Path, extra: str, key: str, words: str) -> None:
    """A bad replay_mode or batch setting stops loading with its key, the file and a reason."""
    path = write(tmp_path, GOOD + extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path, Settings())
    assert caught.value.key == key
    assert str(path) in str(caught.value)
    assert words.lower() in str(caught.value).lower()


def test_batch_discount_is_bounded(tmp_path: Path) -> None:
    """A discount of 100 % or more (free or paid-for calls) is refused under models.batch_discount."""
    path = write(tmp_path, GOOD.replace("models:\n", "models:\n  batch_discount: 1.0\n"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, Settings())
    assert caught.value.key == "models.batch_discount"


# --- the replayer against the fake model, through the real SDK -----------------------------------


def _replay(request_id: str, text: str = "hello") -> tuple[ReplayRequest, BatchCall]:
    body = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": f"{text} {request_id}"}],
            "stream": False}
    return ReplayRequest(body=body, adaptations=(), stream=False), BatchCall("r", request_id, "candidate")


async def _server(**batches: float) -> FakeModelServer:
    return await start_fake_model(parse_behaviours({"batches": {"delay_s": 0.2, **batches}}))


def _replayer(server: FakeModelServer, ledger: MemoryBatchLedger, window_records: int = 100) -> BatchReplayer:
    client = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test", max_retries=0)
    return BatchReplayer(client, ledger, profiles=dict(BUILTIN_PROFILES), window_records=window_records,
                         window_s=0.1, backoff=PollBackoff(0.05, 0.2))


async def test_calls_are_gathered_into_windows_and_recorded_before_polling() -> None:
    """Five calls with a window of two make three batches, each stored in the ledger with every call's identity."""
    ledger = MemoryBatchLedger()
    async with await _server() as server:
        replayer = _replayer(server, ledger, window_records=2)
        try:
            sides = await asyncio.gather(*(replayer.replay(*_replay_args(f"req-{i}")) for i in range(5)))
        finally:
            await replayer.close()
        assert server.stats.batches_created == 3 and server.stats.batch_requests == 5
    assert all(side.ok and side.latency_ms is None for side in sides)
    registry = replayer.metrics.registry
    assert registry.get_sample_value("shadowd_batch_results_total", {"result": "succeeded"}) == 5.0
    assert registry.get_sample_value("shadowd_batch_results_total", {"result": "expired"}) is None
    assert registry.get_sample_value("shadowd_batches_total", {"event": "created"}) == 3.0
    assert registry.get_sample_value("shadowd_batches_in_flight") == 0.0
    stored = [item for items in ledger.items.values() for item in items]
    assert sorted(item.request_id for item in stored) == [f"req-{i}" for i in range(5)]
    assert all(batch["state"] == "ended" for batch in ledger.batches.values())


async def test_a_call_found_in_a_stored_batch_resumes_it_instead_of_submitting_again() -> None:
    """After a restart (a new replayer over the same ledger) a call already in a stored batch is answered
    from that batch, and nothing new is submitted."""
    ledger = MemoryBatchLedger()
    async with await _server(delay_s=0.5) as server:
        first = _replayer(server, ledger)
        task = asyncio.ensure_future(first.replay(*_replay_args("req-1")))

        async def stored() -> None:
            while not ledger.batches:  # noqa: ASYNC110 - a bounded poll of the ledger
                await asyncio.sleep(0.02)

        await asyncio.wait_for(stored(), 10)
        task.cancel()
        await first.close()  # the "crash": the batch is stored, its result never read
        assert server.stats.batches_created == 1

        second = _replayer(server, ledger)
        try:
            side = await asyncio.wait_for(second.replay(*_replay_args("req-1")), 20)
        finally:
            await second.close()
        assert side.ok
        assert server.stats.batches_created == 1 and server.stats.batch_requests == 1
        assert second.batches_resumed == 1 and second.batches_created == 0


async def test_a_batch_the_api_no_longer_knows_fails_its_calls_and_a_redelivery_submits_anew() -> None:
    """A stored batch id the API answers 404 for is marked lost; its call fails as a batch failure, and the
    next delivery of the same call is submitted in a new batch."""
    ledger = MemoryBatchLedger()
    await ledger.record("msgbatch_gone", [BatchItem(custom_id("req-9", MODEL, "candidate"), "r", "req-9", MODEL,
                                                    "candidate", {})], datetime.now(UTC))
    async with await _server() as server:
        replayer = _replayer(server, ledger)
        try:
            lost = await asyncio.wait_for(replayer.replay(*_replay_args("req-9")), 20)
            again = await asyncio.wait_for(replayer.replay(*_replay_args("req-9")), 20)
        finally:
            await replayer.close()
        assert server.stats.batches_created == 1
    assert not lost.ok and lost.failure == Failure.BATCH.value and "no longer known" in (lost.error or "")
    assert ledger.batches["msgbatch_gone"]["state"] == "lost"
    assert again.ok


async def test_two_waiters_on_one_call_share_its_single_request() -> None:
    """The same call asked twice while it waits (a redelivered record) is one request in one batch."""
    ledger = MemoryBatchLedger()
    async with await _server() as server:
        replayer = _replayer(server, ledger)
        try:
            one, two = await asyncio.gather(replayer.replay(*_replay_args("req-2")),
                                            replayer.replay(*_replay_args("req-2")))
        finally:
            await replayer.close()
        assert server.stats.batch_requests == 1
    assert one.ok and one.content == two.content


def _replay_args(request_id: str) -> tuple[ReplayRequest, None, BatchCall]:
    replay, call = _replay(request_id)
    return replay, None, call


# --- the gate ------------------------------------------------------------------------------------


def test_the_gate_does_not_judge_latency_for_batch_rollouts() -> None:
    """A slow candidate rolls a live rollout back, but the same latency figures on a batch rollout are
    "not judged" and the rollout promotes on its regression evidence (cost is still judged)."""
    from shadowd.core.gate import Evidence, GateConfig, RolloutState, evaluate_gate

    slow = Evidence(samples=5000, stage_samples=400, candidate_regressions=50, baseline_noise_regressions=50,
                    both_regressed=1, latency_p95_baseline_ms=900.0, latency_p95_candidate_ms=5000.0,
                    cost_usd_baseline=10.0, cost_usd_candidate=12.0)
    state = RolloutState((1, 5, 25, 50, 100), 1)
    live = evaluate_gate(GateConfig(), state, slow)
    batch = evaluate_gate(GateConfig(latency_judged=False), state, slow)
    assert live.decision == "rollback"
    assert batch.decision == "promote"
    assert batch.figures.latency_p95_ratio is None and batch.figures.latency_judged is False
    assert any("latency p95 not judged" in reason for reason in batch.reasons)
    expensive = Evidence(**{**{n: getattr(slow, n) for n in Evidence.__slots__}, "cost_usd_candidate": 30.0})
    assert evaluate_gate(GateConfig(latency_judged=False), state, expensive).decision == "rollback"


async def test_long_ended_batches_leave_the_ledger_but_running_ones_stay() -> None:
    """Batches that ended more than 30 days ago are dropped once a batch ends; recent and running ones stay."""
    ledger = MemoryBatchLedger()
    now = datetime.now(UTC)
    for batch_id, state, ended_days_ago in (("old", "ended", 40), ("recent", "ended", 2), ("running", "submitted", None)):
        await ledger.record(batch_id, [_item(batch_id)], now)
        if ended_days_ago is not None:
            await ledger.mark(batch_id, state, now - timedelta(days=ended_days_ago))
    async with await _server() as server:
        replayer = _replayer(server, ledger)
        try:
            side = await asyncio.wait_for(replayer.replay(*_replay_args("req-new")), 20)
        finally:
            await replayer.close()
    assert side.ok
    assert set(ledger.batches) - {"old"} == set(ledger.batches) and {"recent", "running"} <= set(ledger.batches)


async def test_the_sql_ledger_finds_stored_calls_skips_lost_batches_and_forgets_old_ones(tmp_path: Path) -> None:
    """On SQLite migrated to head: a stored call is found by custom id (hostile request ids stored escaped),
    a lost batch is not offered for resuming, and only long-ended batches are forgotten."""
    from shadowd.adapters.sql_batches import SqlBatchLedger
    from shadowd.adapters.sql_store import open_store

    store = await open_store(f"sqlite:///{tmp_path / 'ledger.db'}", upgrade=True)
    try:
        ledger = SqlBatchLedger(store.engine)
        now = datetime.now(UTC)
        hostile = BatchItem(custom_id("a\x00\udc80[bold]", MODEL, "baseline"), "r", "a\x00\udc80[bold]", MODEL,
                            "baseline", {}, "topic", 2, 41)
        await ledger.record("b-one", [hostile, _item("x")], now)
        await ledger.record("b-two", [_item("y")], now)
        assert await ledger.find([hostile.custom_id, _item("y").custom_id, "nope"]) == {
            hostile.custom_id: "b-one", _item("y").custom_id: "b-two"}
        assert await ledger.submitted() == ["b-one", "b-two"]
        stored = {item.custom_id: item for item in await ledger.items("b-one")}
        assert stored[hostile.custom_id].request_id == "a\\u0000\\udc80[bold]"
        assert (stored[hostile.custom_id].partition, stored[hostile.custom_id].offset) == (2, 41)
        await ledger.mark("b-two", "lost", now)
        assert await ledger.find([_item("y").custom_id]) == {}
        await ledger.mark("b-one", "ended", now - timedelta(days=40))
        assert await ledger.forget_before(now - timedelta(days=30)) == 1
        assert await ledger.find([hostile.custom_id]) == {}
        assert await ledger.submitted() == []
    finally:
        await store.close()
