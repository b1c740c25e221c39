"""One contract, three stores: the in-memory twin, SQLite and PostgreSQL answer the same calls the same way.

PostgreSQL runs when SHADOWD_TEST_DATABASE_URL is set (`bash scripts/test.sh`); the twin and SQLite always.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from shadowd.adapters.memory_store import MemoryStore
from shadowd.adapters.sql_store import SqlVerdictStore, open_store
from shadowd.config import Config, load_config
from shadowd.core.figures import route_figures, verdict_figures
from shadowd.core.findings import Finding, Status
from shadowd.core.judge import Grade, Grading
from shadowd.core.results import SideResult, Usage
from shadowd.core.tally import ModelCalls
from shadowd.pages.report_page import report_page_data
from shadowd.ports import Store, VerdictFilter
from shadowd.promoter import apply_manual, evaluate_and_apply
from shadowd.records import DeadLetter, VerdictRecord
from shadowd.report import build_report
from shadowd.routing import build_routes_table

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CONFIG = """
rollouts:
  - name: r
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    stages: [5, 50, 100]
    gate: {min_samples: 5, max_regression_rate_increase: 0.3}
"""


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """"memory", or the URL of a new database (PostgreSQL skips when the test server is not set)."""
    if request.param == "memory":
        return "memory"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contract.db'}"
    return str(request.getfixturevalue("fresh_database_url"))


@pytest.fixture
async def store(backend: str) -> AsyncIterator[Store]:
    opened: Store = MemoryStore() if backend == "memory" else await open_store(backend, upgrade=True)
    yield opened
    await opened.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'contract.db'}"
    return str(request.getfixturevalue("fresh_database_url"))


@pytest.fixture
async def sql_store(sql_url: str) -> AsyncIterator[SqlVerdictStore]:
    """The SQL store alone, for what only SQL has: statements to count, rows written around `save`."""
    opened = await open_store(sql_url, upgrade=True)
    yield opened
    await opened.close()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "shadowd.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return load_config(path)


def side(model: str, latency_ms: float, cost: float = 0.002) -> SideResult:
    return SideResult(model=model, ok=True, content=({"type": "text", "text": "answer"},), stop_reason="end_turn",
                      usage=Usage(10, 20), latency_ms=latency_ms, cost_usd=cost)


def verdict(index: int, status: Status, *, noisy: bool = False, code: str | None = None,
            grading: Grading | None = None, route: str = "chat", rollout: str = "r") -> VerdictRecord:
    found: tuple[Finding, ...] = ()
    if code is not None:
        found = (Finding.of(code, f"finding {index}", path="/a"),)
    if status is Status.NOISE:
        found = (Finding(code="schema.key_missing", severity=Finding.of("schema.key_missing", "").severity,
                         detail="the baseline disagrees with itself", path="/b", noise=True),)
    compared = status not in (Status.ERROR, Status.SKIPPED)
    return VerdictRecord(
        rollout=rollout, request_id=f"req-{index:03d}", route=route, status=status, findings=found,
        comparator_version="contract-1",
        # About a second apart, never on a timeline bucket's edge (SQLite's julianday arithmetic rounds there).
        created_at=NOW + timedelta(milliseconds=index * 1000 + (37 * index * index) % 101),
        baseline=side("claude-opus-4-6", 100.0 + index) if compared else None,
        candidate=side("claude-opus-4-7", 120.0 + index) if compared else None,
        baseline_noise_blocking=noisy, grading=grading,
        error_reason="capacity" if status is Status.ERROR else None,
        source="contract", partition=0, offset=index,
    )


def graded(baseline_ok: bool, candidate_ok: bool) -> Grading:
    return Grading(status="graded", judge_model="judge", baseline=Grade("judge", acceptable=baseline_ok, cost_usd=0.01),
                   candidate=Grade("judge", acceptable=candidate_ok, cost_usd=0.01))


def sample() -> list[VerdictRecord]:
    """12 verdicts: 6 pass, 3 regressions (one also noisy), 1 noise, 1 error, 1 skipped; two judged."""
    return [
        *(verdict(i, Status.PASS, route="chat" if i % 2 else "summary") for i in range(6)),
        verdict(6, Status.REGRESSION, code="format.json_invalid"),
        verdict(7, Status.REGRESSION, code="format.json_invalid", noisy=True),
        verdict(8, Status.REGRESSION, code="schema.key_missing", route="summary"),
        verdict(9, Status.NOISE),
        verdict(10, Status.ERROR),
        verdict(11, Status.SKIPPED),
        # A judged pass where the judge preferred the candidate: the baseline side of the pairing.
        verdict(12, Status.PASS, grading=graded(baseline_ok=False, candidate_ok=True)),
    ]


async def test_save_is_idempotent_on_rollout_and_request_id(store: Store) -> None:
    """Saving the same verdicts again inserts nothing and counts nothing twice."""
    records = sample()
    assert await store.save(records, []) == len(records)
    assert await store.save(records[:4] + [verdict(50, Status.PASS)], []) == 1
    figures = verdict_figures(await store.rollout_totals("r"))
    assert figures.counts["pass"] == 8 and figures.samples == 12
    assert await store.existing_verdicts([("r", "req-000"), ("r", "req-999"), ("other", "req-000")]) == {
        ("r", "req-000")}


async def test_figures_classify_regressed_noisy_and_both(store: Store) -> None:
    """Compared, regressed, noisy (blocking noise or a judge's discordant pair for the candidate) and both."""
    await store.save(sample(), [])
    figures = verdict_figures(await store.rollout_totals("r"), stage_started_compared=4)
    assert figures.counts == {"pass": 7, "regression": 3, "noise": 1, "error": 1, "skipped": 1}
    assert figures.samples == 11 and figures.stage_samples == 7
    assert (figures.candidate_regressions, figures.baseline_noise_regressions, figures.both_regressed) == (3, 2, 1)
    assert {code: c.count for code, c in figures.by_code.items()} == {"format.json_invalid": 2,
                                                                      "schema.key_missing": 1}
    assert figures.noise_by_code == {"schema.key_missing": 1}
    assert figures.grades.totals.judged == 1 and figures.grades.totals.candidate_better == 1
    assert figures.cost_usd.baseline == pytest.approx(11 * 0.002)
    assert figures.latency_baseline.p95 is not None and 100 <= figures.latency_baseline.p95 <= 114
    routes = route_figures(await store.rollout_totals("r"))
    assert routes["summary"]["counts"] == {"pass": 3, "regression": 1}
    # Both sides of the 11 compared verdicts were replayed; none had the baseline's second replay.
    assert await store.model_calls("r") == ModelCalls(replayed=11, noise_checked=0, model_calls=22)


async def test_reports_and_pages_match_the_twin(store: Store, config: Config) -> None:
    """The report and the HTML report's queries read the same from every store as from the twin."""
    spec = config.rollout("r")
    assert spec is not None
    twin = MemoryStore()
    for target in (store, twin):
        await target.save(sample(), [])
        await evaluate_and_apply(target, spec, NOW)
    report, expected = await build_report(store, spec), await build_report(twin, spec)
    assert report == expected
    assert report["counts"]["regression"] == 3 and report["decision"] == expected["decision"]
    page, twin_page = await report_page_data(store, spec, config), await report_page_data(twin, spec, config)
    for key in ("latency", "route_figures", "timeline", "noisy_paths"):
        assert page[key] == twin_page[key], key

    def by_key(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(tuple(sorted(row.items())) for row in rows)

    assert by_key(page["by_code_route"]) == by_key(twin_page["by_code_route"])
    assert [row["decision"] for row in page["history"]] == [row["decision"] for row in twin_page["history"]]
    assert await build_routes_table(store, config) == await build_routes_table(twin, config)


async def test_verdict_queries_filter_and_page(store: Store) -> None:
    """Filters by status, route, code and time; newest first; `before_id` pages on without overlap."""
    await store.save(sample(), [])
    regressions = await store.list_verdicts("r", VerdictFilter(status="regression"))
    assert [v.verdict.request_id for v in regressions] == ["req-008", "req-007", "req-006"]
    by_code = await store.list_verdicts("r", VerdictFilter(code="format.json_invalid"))
    assert {v.verdict.request_id for v in by_code} == {"req-006", "req-007"}
    recent = await store.list_verdicts("r", VerdictFilter(since=NOW + timedelta(seconds=10)))
    assert {v.verdict.request_id for v in recent} == {"req-010", "req-011", "req-012"}
    first = await store.list_verdicts("r", VerdictFilter(), limit=5)
    second = await store.list_verdicts("r", VerdictFilter(), limit=5, before_id=first[-1].id)
    assert len(first) == 5 and len(second) == 5
    assert not {v.id for v in first} & {v.id for v in second}
    found = await store.get_verdict("r", "req-007")
    assert found is not None and found.verdict.baseline_noise_blocking and found.verdict.status is Status.REGRESSION
    assert await store.get_verdict("r", "missing") is None
    assert await store.error_reason_counts("r") == {"capacity": 1}
    assert (await store.example_request_ids("r", ["format.json_invalid"]))["format.json_invalid"] == [
        "req-007", "req-006"]
    assert await store.rollout_names() == ["r"]


async def test_text_the_database_cannot_hold_reads_back_escaped(store: Store) -> None:
    """NUL in a route and in a finding's detail reads back escaped, the same from every store."""
    odd = verdict(1, Status.REGRESSION, code="format.json_invalid", route="ch\x00at")
    await store.save([odd], [])
    found = await store.get_verdict("r", "req-001")
    assert found is not None
    assert "\x00" not in found.verdict.route and found.verdict.route.startswith("ch")
    assert set(route_figures(await store.rollout_totals("r"))) == {found.verdict.route}


async def test_dead_letters_are_idempotent_on_source_position(store: Store) -> None:
    """A dead letter is stored once per (source, partition, offset), newest first, its payload as text."""
    letter = DeadLetter(source="topic", partition=1, offset=7, reason="invalid_json", detail="not JSON",
                        payload=b"{broken", created_at=NOW)
    other = DeadLetter(source="topic", partition=1, offset=8, reason="too_large", detail="big",
                       payload=b"x" * 10, created_at=NOW)
    await store.save([], [letter])
    await store.save([], [letter, other])
    assert await store.dead_letter_counts() == {"invalid_json": 1, "too_large": 1}
    listed = await store.list_dead_letters()
    assert [(d["offset"], d["reason"], d["payload"]) for d in listed] == [
        (8, "too_large", "x" * 10), (7, "invalid_json", "{broken")]
    assert listed[0]["created_at"] == NOW.isoformat()


async def test_rollout_state_and_decisions(store: Store, config: Config) -> None:
    """State moves with each decision in one step; the audit trail is newest first; NaN figures read as null."""
    spec = config.rollout("r")
    assert spec is not None
    await store.ensure_rollout("r", "claude-opus-4-6", "claude-opus-4-7", NOW)
    await store.ensure_rollout("r", "other", "other", NOW + timedelta(hours=1))  # a second call changes nothing
    row = await store.rollout_state("r")
    assert row is not None and (row["state"], row["stage_index"], row["baseline"]) == ("active", 0, "claude-opus-4-6")
    assert row["created_at"] == NOW
    await store.record_decision("r", at=NOW, kind="gate", actor="gate", action="evaluate", decision="promote",
                                stage_index=1, canary_percent=50, reasons=["ok"],
                                figures={"rate": math.nan, "n": 3}, stage_started_compared=9)
    await apply_manual(store, spec, "pause", "alice", NOW + timedelta(minutes=1))
    row = await store.rollout_state("r")
    assert row is not None and (row["state"], row["stage_index"], row["stage_started_compared"]) == ("paused", 1, 9)
    history = await store.list_decisions("r")
    assert [(d["actor"], d["decision"]) for d in history] == [("alice", "hold"), ("gate", "promote")]
    assert history[1]["figures"] == {"rate": None, "n": 3}
    assert history[1]["at"] == NOW.isoformat()
    latest = await store.latest_decision("r", "promote")
    assert latest is not None and latest["reasons"] == ["ok"]
    assert await store.latest_decision("r", "rollback") is None


async def test_leadership_is_held_by_one_holder_at_a_time(store: Store) -> None:
    """The promoter role: a second holder is refused while the first holds it, and takes it once released
    (SQLite serves one process, so there every holder holds it)."""
    first, second = store.leadership("shadowd.promoter"), store.leadership("shadowd.promoter")
    assert await first.hold()
    assert await first.hold()  # holding again keeps it
    single_process = isinstance(store, SqlVerdictStore) and store.dialect == "sqlite"
    assert await second.hold() is single_process
    await first.release()
    assert await second.hold()
    await second.release()


async def test_reads_issue_no_write(sql_store: SqlVerdictStore, config: Config) -> None:
    """Every read the report, the pages, the API and the CLI make issues SELECTs only: a GET never writes."""
    store = sql_store
    spec = config.rollout("r")
    assert spec is not None
    await store.save(sample(), [DeadLetter(source="t", partition=0, offset=1, reason="invalid_json",
                                           detail="d", payload=b"x", created_at=NOW)])
    await evaluate_and_apply(store, spec, NOW)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    try:
        await build_report(store, spec)
        await report_page_data(store, spec, config)
        await store.list_verdicts("r", VerdictFilter(code="format.json_invalid"))
        await store.get_verdict("r", "req-001")
        await store.rollout_names()
        await store.list_decisions("r")
        await store.dead_letter_counts()
        await store.list_dead_letters()
        await store.existing_verdicts([("r", "req-001")])
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", count)
    assert statements, "the reads ran no statement at all"
    writes = [s for s in statements if s.lstrip().split(None, 1)[0].upper() not in ("SELECT", "WITH", "PRAGMA")]
    assert writes == []


async def test_roll_up_counts_rows_stored_without_save_once(sql_store: SqlVerdictStore) -> None:
    """Rows a bulk load wrote without `save` are not in the totals until `roll_up` (the promoter's tick)
    counts them, exactly once; reads never count them (the twin has no way to store without `save`)."""
    store = sql_store
    from shadowd.adapters.sql_schema import verdicts
    from shadowd.adapters.sql_store.rows import verdict_row

    await store.save(sample()[:3], [])
    async with store.engine.begin() as connection:  # as a bulk load would: rolled_up keeps its default, false
        await connection.execute(verdicts.insert(), [verdict_row(verdict(40, Status.REGRESSION, code="format.json_invalid"))])
    assert verdict_figures(await store.rollout_totals("r")).samples == 3
    assert verdict_figures(await store.rollout_totals("r")).samples == 3  # reading twice counts nothing
    assert await store.roll_up("r") == 1
    figures = verdict_figures(await store.rollout_totals("r"))
    assert (figures.samples, figures.candidate_regressions) == (4, 1)
    assert await store.roll_up("r") == 0
