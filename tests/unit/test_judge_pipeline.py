"""Grading end to end over a loopback fake model, the real SDK and SQLite: calls, grades, budget, storage."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shadowd.adapters.anthropic_client import AnthropicModelClient, RetryPolicy
from shadowd.adapters.memory_store import MemoryStore
from shadowd.config import Config, ConfigError, Settings, load_config
from shadowd.core.findings import Status
from shadowd.core.judge import grading_sampled
from shadowd.fakemodel import FakeModelServer, parse_behaviours, start_fake_model
from shadowd.fakemodel.generate import WRONG_ANSWER_MARKER
from shadowd.pipeline import ShadowPipeline
from shadowd.records import SourceRecord
from shadowd.report import build_report

JUDGE_MODEL = "claude-sonnet-4-6"
ROLLOUT = """rollouts:
  - name: r
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    noise_check: false
"""


def envelope(request_id: str, route: str = "chat") -> dict[str, Any]:
    body = {"model": "claude-opus-4-6", "max_tokens": 500,
            "messages": [{"role": "user", "content": f"Explain canary releases ({request_id})."}]}
    return {"schema": "shadowd.mirror/v1", "request_id": request_id, "route": route, "request": body}


def record(data: dict[str, Any], offset: int = 1) -> SourceRecord:
    return SourceRecord(source="test", partition=0, offset=offset, value=json.dumps(data).encode())


async def make(
    tmp_path: Path, models: dict[str, Any], *, judge: str = "", extra: str = ROLLOUT
) -> tuple[ShadowPipeline, FakeModelServer, MemoryStore]:
    server = await start_fake_model(parse_behaviours({"models": models}))
    path = tmp_path / "shadowd.yaml"
    routes = f"routes:\n  chat:\n    judge:\n{judge}" if judge else ""
    path.write_text(f"models:\n  base_url: {server.base_url}\n{routes}{extra}")
    config: Config = load_config(path, Settings())
    store = MemoryStore()
    client = AnthropicModelClient(base_url=server.base_url, api_key="k", timeout_s=30, max_concurrency=16,
                                  profiles=config.profiles, retry=RetryPolicy(max_attempts=2, base_delay_s=0.01))
    return ShadowPipeline(config, client, store), server, store


JUDGE_ALL = f"      model: {JUDGE_MODEL}\n      rubric: Correct and complete.\n      sample_rate: 1.0\n"


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Any]]:
    """Closes what a test opened."""
    opened: list[Any] = []
    yield opened
    for thing in opened:
        await thing.close()


async def test_wrong_answer_is_graded_unacceptable_and_stored_with_both_grades(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    """A fluent wrong candidate answer becomes quality.unacceptable; both grades are stored and read back."""
    models = {"claude-opus-4-7": {"faults": {"wrong_answer": 1.0}}}
    pipeline, server, store = await make(tmp_path, models, judge=JUDGE_ALL)
    cleanup += [pipeline.models, server, store]
    outcome = await pipeline.replay_record(record(envelope("w1")))
    (verdict,) = outcome.verdicts
    assert WRONG_ANSWER_MARKER in verdict.candidate.text  # type: ignore[union-attr]
    assert verdict.status is Status.REGRESSION
    assert [f.code for f in verdict.findings if f.blocking] == ["quality.unacceptable"]
    grading = verdict.grading
    assert grading is not None and grading.status == "graded" and grading.judge_model == JUDGE_MODEL
    assert grading.baseline and grading.baseline.acceptable is True and grading.baseline.score in (4, 5)
    assert grading.candidate and grading.candidate.acceptable is False and grading.candidate.reason
    assert grading.cost_usd > 0
    assert server.stats.as_dict()["by_model"][JUDGE_MODEL] == 2
    await store.save(outcome.verdicts, [])
    stored = await store.get_verdict("r", "w1")
    assert stored is not None and stored.verdict.grading == grading
    as_json = stored.to_dict()["grades"]
    assert as_json["candidate"]["acceptable"] is False and as_json["baseline"]["judge_model"] == JUDGE_MODEL


async def test_clean_candidate_passes_grading_and_route_without_judge_is_not_graded(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    """Identical good answers stay pass with two acceptable grades; a route without a judge makes no judge call."""
    pipeline, server, store = await make(tmp_path, {}, judge=JUDGE_ALL)
    cleanup += [pipeline.models, server, store]
    (graded,) = (await pipeline.replay_record(record(envelope("c1")))).verdicts
    assert graded.status is Status.PASS and graded.grading and graded.grading.status == "graded"
    (plain,) = (await pipeline.replay_record(record(envelope("c2", route="other"), 2))).verdicts
    assert plain.status is Status.PASS and plain.grading is None
    assert server.stats.as_dict()["by_model"][JUDGE_MODEL] == 2


async def test_malformed_and_failed_gradings_leave_verdicts_ungraded_never_error(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    """A judge answering malformed tool input, or failing after retries, leaves a compared verdict ungraded."""
    models = {"claude-opus-4-7": {"faults": {"wrong_answer": 1.0}}, JUDGE_MODEL: {"grade_malformed": 1.0}}
    pipeline, server, store = await make(tmp_path, models, judge=JUDGE_ALL)
    cleanup += [pipeline.models, server, store]
    (verdict,) = (await pipeline.replay_record(record(envelope("m1")))).verdicts
    assert verdict.status is Status.PASS  # the wrong answer goes unseen: no grade, no finding, no error
    assert verdict.grading and verdict.grading.status == "failed" and verdict.grading.error

    models = {JUDGE_MODEL: {"faults": {"error": 1.0}}}
    second = tmp_path / "second"
    second.mkdir()
    pipeline2, server2, store2 = await make(second, models, judge=JUDGE_ALL)
    cleanup += [pipeline2.models, server2, store2]
    (failed,) = (await pipeline2.replay_record(record(envelope("f1")))).verdicts
    assert failed.status is Status.PASS
    assert failed.grading and failed.grading.status == "failed"
    assert "grading call failed: HTTP 500" in (failed.grading.error or "")


async def test_sampling_grades_only_the_sampled_share(tmp_path: Path, cleanup: list[Any]) -> None:
    """With sample_rate 0.5 exactly the hash-sampled requests are graded; the others say not_sampled."""
    judge = f"      model: {JUDGE_MODEL}\n      rubric: Correct.\n      sample_rate: 0.5\n"
    pipeline, server, store = await make(tmp_path, {}, judge=judge)
    cleanup += [pipeline.models, server, store]
    statuses = {}
    for i in range(30):
        (verdict,) = (await pipeline.replay_record(record(envelope(f"s{i}"), i + 1))).verdicts
        assert verdict.grading is not None
        statuses[f"s{i}"] = verdict.grading.status
    expected = {rid: "graded" if grading_sampled(rid, 0.5) else "not_sampled" for rid in statuses}
    assert statuses == expected
    assert 0 < list(statuses.values()).count("graded") < 30
    assert server.stats.as_dict()["by_model"][JUDGE_MODEL] == 2 * list(statuses.values()).count("graded")


async def test_grading_spend_counts_against_the_budget_and_is_reported_apart(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    """Grading cost joins the rollout's hourly spend (over the cap, grading stops too) and the report shows it apart."""
    budget = ROLLOUT + "    budget:\n      usd_per_hour: 0.2\n"
    pipeline, server, store = await make(tmp_path, {}, judge=JUDGE_ALL, extra=budget)
    cleanup += [pipeline.models, server, store]
    (first,) = (await pipeline.replay_record(record(envelope("b1")))).verdicts
    assert first.grading and first.grading.status == "graded"
    replay_cost = sum(s.cost_usd or 0.0 for s in (first.baseline, first.candidate) if s)
    assert pipeline.spend["r"].spent(pipeline.monotonic()) == pytest.approx(replay_cost + first.grading.cost_usd)
    verdicts = [first]
    for i in range(2, 40):
        verdicts += (await pipeline.replay_record(record(envelope(f"b{i}"), i))).verdicts
    gradings = [v.grading.status for v in verdicts if v.grading]
    skipped = [v for v in verdicts if v.status is Status.SKIPPED]
    assert skipped, "the cap is never reached"
    compared = [v for v in verdicts if v.status is not Status.SKIPPED]
    assert set(gradings) <= {"graded", "over_budget"} and len(gradings) == len(compared)
    # The window holds exactly the replays of compared verdicts plus every grading call, and is over the cap.
    spent = pipeline.spend["r"].spent(pipeline.monotonic())
    replays = sum(s.cost_usd or 0.0 for v in compared for s in (v.baseline, v.candidate) if s)
    gradings_cost = sum(v.grading.cost_usd for v in compared if v.grading)
    assert gradings_cost > 0 and spent == pytest.approx(replays + gradings_cost) and spent >= 0.2
    # The grading spend is in the window, not only the replays.
    assert replays < spent
    await store.save(verdicts, [])
    spec = pipeline.config.rollout("r")
    assert spec is not None
    report = await build_report(store, spec)
    graded_cost = sum(v.grading.cost_usd for v in verdicts if v.grading)
    assert report["cost_usd"]["grading"] == pytest.approx(graded_cost)
    assert report["cost_usd"]["candidate"] == pytest.approx(sum(v.candidate.cost_usd or 0 for v in verdicts
                                                                if v.candidate and v.status is not Status.SKIPPED))
    assert report["judge"]["graded"] == gradings.count("graded")


def test_judge_config_errors_name_the_key_and_file(tmp_path: Path) -> None:
    """A judge block with an unknown model, a blank or model-naming rubric, or a bad rate stops start-up."""
    cases = {
        "model: claude-nope-1\n      rubric: ok": ("routes.chat.judge.model", "no capability profile"),
        "model: claude-sonnet-4-6\n      rubric: '   '": ("routes.chat.judge.rubric", "blank"),
        "model: claude-sonnet-4-6\n      rubric: Answer like claude-opus-4-6": ("routes.chat.judge.rubric",
                                                                              "names the model"),
        "model: claude-sonnet-4-6\n      rubric: ok\n      sample_rate: 1.5": ("routes.chat.judge.sample_rate",
                                                                              "less than or equal to 1"),
        "model: claude-sonnet-4-6\n      rubric: ok\n      temperature: 0": ("routes.chat.judge.temperature",
                                                                             "unknown key"),
        "rubric: ok": ("routes.chat.judge.model", "Field required"),
    }
    for block, (key, detail) in cases.items():
        path = tmp_path / "shadowd.yaml"
        path.write_text(f"routes:\n  chat:\n    judge:\n      {block}\n{ROLLOUT}")
        with pytest.raises(ConfigError) as caught:
            load_config(path, Settings())
        assert caught.value.key == key and detail in caught.value.detail, (block, str(caught.value))
        assert str(path) in str(caught.value)
    path = tmp_path / "shadowd.yaml"
    path.write_text(f"routes:\n  chat:\n    judge:\n{JUDGE_ALL}{ROLLOUT}")
    judge = load_config(path, Settings()).judge_for("chat")
    assert judge is not None and judge.model == JUDGE_MODEL and judge.sample_rate == 1.0


def test_fake_judge_grades_from_the_answer_marker_with_deterministic_noise() -> None:
    """The fake judge flips about grader_noise of its grades, the same ones every time, and reads only the answer."""
    from shadowd.core.judge import JudgeSpec, grading_request
    from shadowd.core.results import SideResult
    from shadowd.fakemodel.request_view import view_request

    behaviours = parse_behaviours({"models": {JUDGE_MODEL: {"grader_noise": 0.1}}})
    spec = JudgeSpec(JUDGE_MODEL, "Correct.")
    flips = 0
    for i in range(1000):
        wrong = i % 2 == 0
        text = f"Answer {i}." + (f" Enable `{WRONG_ANSWER_MARKER}`." if wrong else "")
        body = grading_request(spec, envelope(f"n{i}")["request"], SideResult(
            model="x", ok=True, content=({"type": "text", "text": text},)))
        view = view_request(body)
        acceptable, malformed = behaviours.grade_plan(JUDGE_MODEL, view, wrong)
        assert (acceptable, malformed) == behaviours.grade_plan(JUDGE_MODEL, view, wrong)
        assert not malformed
        flips += acceptable == wrong
    assert 70 < flips < 130
    # The marker in the conversation (not the answer) does not make an answer wrong.
    request = {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": WRONG_ANSWER_MARKER}]}
    body = grading_request(spec, request, SideResult(model="x", ok=True, content=({"type": "text", "text": "Ok."},)))
    from shadowd.fakemodel.generate import answer_under_grading

    assert WRONG_ANSWER_MARKER not in answer_under_grading(view_request(body))


async def test_a_silent_judge_is_reported_and_acceptability_reaches_the_routes_table(
    tmp_path: Path, cleanup: list[Any]
) -> None:
    """Twenty failed gradings in a row make the report say the judge is silent; graded ones fill routes' acceptability."""
    from shadowd.routing import build_routes_table

    pipeline, server, store = await make(tmp_path, {JUDGE_MODEL: {"faults": {"error": 1.0}}}, judge=JUDGE_ALL)
    cleanup += [pipeline.models, server, store]
    spec = pipeline.config.rollout("r")
    assert spec is not None
    failing = []
    for i in range(21):
        failing += (await pipeline.replay_record(record(envelope(f"g{i}"), i + 1))).verdicts
    assert all(v.grading and v.grading.status == "failed" for v in failing)
    await store.save(failing[:19], [])
    near_miss = await build_report(store, spec)
    assert near_miss["judge"]["failed_streak"] == 19 and not near_miss["judge"]["silent"]
    assert not any(r.startswith("judge silent") for r in near_miss["reasons"])
    await store.save(failing[19:], [])
    report = await build_report(store, spec)
    assert report["judge"]["silent"] and "grading call failed: HTTP 500" in report["judge"]["last_error"]
    assert any(r.startswith("judge silent: the last 21 gradings all failed") for r in report["reasons"])
    table = await build_routes_table(store, pipeline.config)
    assert all(row["acceptability"] is None for row in table["items"])  # nothing graded yet

    second = tmp_path / "ok"
    second.mkdir()
    ok_pipeline, ok_server, ok_store = await make(second, {"claude-opus-4-7": {"faults": {"wrong_answer": 0.5}}},
                                                  judge=JUDGE_ALL)
    cleanup += [ok_pipeline.models, ok_server, ok_store]
    graded = []
    for i in range(12):
        graded += (await ok_pipeline.replay_record(record(envelope(f"ok{i}"), i + 1))).verdicts
    await ok_store.save(graded, [])
    rows = {row["role"]: row for row in (await build_routes_table(ok_store, ok_pipeline.config))["items"]}
    wrong = sum(1 for v in graded if v.grading and v.grading.candidate_acceptable is False)
    assert rows["baseline"]["acceptability"] == 1.0 and rows["baseline"]["graded"] == 12
    assert rows["candidate"]["acceptability"] == pytest.approx((12 - wrong) / 12)
    low, high = rows["candidate"]["acceptability_ci"]
    assert low <= rows["candidate"]["acceptability"] <= high
