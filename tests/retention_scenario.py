"""Retention scenarios run on SQLite (tests/unit) and on PostgreSQL (tests/integration) alike."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from shadowd.adapters.sql_schema import dead_letters, findings, noise_counts, rollouts, verdicts
from shadowd.adapters.sql_store import SqlVerdictStore, open_store
from shadowd.adapters.sql_store.rows import verdict_row
from shadowd.core.figures import verdict_figures
from shadowd.core.findings import Finding, Status
from shadowd.core.gate import GateConfig
from shadowd.core.judge import Grade, Grading
from shadowd.core.noise import NOISE_WINDOW, NoiseModel, NoiseObservation
from shadowd.core.results import SideResult, Usage
from shadowd.core.rollout import RolloutSpec
from shadowd.promoter import evaluate_and_apply
from shadowd.records import DeadLetter, VerdictRecord
from shadowd.report import gate_view, noisiest
from shadowd.retention import purge
from shadowd.retention_config import RetentionConfig

NOW = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
DAY = timedelta(days=1)
CONFIG = RetentionConfig(verdicts_days=30, outputs_days=7, dead_letters_days=14, batch_rows=100)
# Configured rollouts: `live` and `done` have state rows; `pending` never met the promoter.
CONFIGURED = ("live", "done", "pending")


def spec(name: str) -> RolloutSpec:
    return RolloutSpec(name=name, baseline="claude-opus-4-6", candidate="claude-opus-4-7", stages=(1, 5, 100),
                       gate=GateConfig(min_samples=20))


def verdict(rollout: str, request_id: str, at: datetime, status: Status = Status.PASS) -> VerdictRecord:
    def side(model: str, text: str) -> SideResult:
        return SideResult(model=model, ok=True, content=({"type": "text", "text": text},), stop_reason="end_turn",
                          usage=Usage(11, 22), latency_ms=123.0, cost_usd=0.002)

    found = (Finding.of("format.json_invalid", "candidate answered 'not json'"),) if status is Status.REGRESSION \
        else ()
    grading = Grading(status="graded", judge_model="claude-haiku-4-5",
                      baseline=Grade(model="claude-haiku-4-5", acceptable=True, score=4, reason="quotes: secret plan"),
                      candidate=Grade(model="claude-haiku-4-5", acceptable=True, score=4, reason="fine: secret"))
    return VerdictRecord(
        rollout=rollout, request_id=request_id, route="support", status=status, findings=found,
        comparator_version="t", created_at=at, baseline=side("claude-opus-4-6", f"baseline answer {request_id}"),
        candidate=side("claude-opus-4-7", f"candidate answer {request_id}"),
        baseline_repeat=side("claude-opus-4-6", "again"), grading=grading,
        request={"system": "You are the support bot", "user": f"my account number is {request_id}", "tools": []},
    )


def letter(offset: int, at: datetime) -> DeadLetter:
    return DeadLetter(source="llm.mirror", partition=0, offset=offset, reason="invalid_json", detail="bad",
                      payload=b"{prompt", created_at=at)


async def seed(url: str) -> SqlVerdictStore:
    """Verdicts around every boundary, rolled up, with rollout states and one recorded decision each."""
    store = await open_store(url, upgrade=True)
    rows = [
        # `done` is complete: only the verdict cutoff (30 days) and the outputs cutoff (7 days) apply.
        verdict("done", "done-31d", NOW - 31 * DAY, Status.REGRESSION),
        verdict("done", "done-30d-exact", NOW - 30 * DAY, Status.REGRESSION),
        verdict("done", "done-29d", NOW - 29 * DAY),
        verdict("done", "done-7d-exact", NOW - 7 * DAY),
        verdict("done", "done-1d", NOW - 1 * DAY),
        # `live` is active, its current stage began 35 days ago: what came before goes, the stage stays.
        verdict("live", "live-36d", NOW - 36 * DAY, Status.REGRESSION),
        verdict("live", "live-33d", NOW - 33 * DAY, Status.REGRESSION),
        verdict("live", "live-2d", NOW - 2 * DAY),
        # `pending` is configured but has no state row: all of it may be evidence for a first decision.
        verdict("pending", "pending-60d", NOW - 60 * DAY),
        # `orphan` is neither configured nor known: its old verdicts go.
        verdict("orphan", "orphan-60d", NOW - 60 * DAY),
        verdict("orphan", "orphan-1d", NOW - 1 * DAY),
    ]
    # Many old regressions of `done`, so the purge takes several batches of 100.
    rows += [verdict("done", f"done-old-{i}", NOW - (40 * DAY) - i * timedelta(seconds=1), Status.REGRESSION)
             for i in range(250)]
    await store.save(rows, [letter(1, NOW - 15 * DAY), letter(2, NOW - 14 * DAY), letter(3, NOW - DAY)])
    for name, stage_start in (("live", NOW - 35 * DAY), ("done", NOW - 60 * DAY)):
        await store.ensure_rollout(name, "claude-opus-4-6", "claude-opus-4-7", NOW - 61 * DAY)
        await evaluate_and_apply(store, spec(name), stage_start)
    async with store.engine.begin() as connection:
        await connection.execute(rollouts.update().where(rollouts.c.name == "done").values(state="complete"))
        await connection.execute(rollouts.update().where(rollouts.c.name == "live")
                                 .values(state="active", stage_started_at=NOW - 35 * DAY))
    await store.roll_up()
    return store


async def request_ids(store: SqlVerdictStore) -> set[str]:
    async with store.engine.connect() as connection:
        return set((await connection.execute(select(verdicts.c.request_id))).scalars())


async def counts(store: SqlVerdictStore) -> dict[str, int]:
    async with store.engine.connect() as connection:
        result = {}
        for name, table in (("verdicts", verdicts), ("findings", findings), ("dead_letters", dead_letters)):
            result[name] = int((await connection.execute(select(func.count()).select_from(table))).scalar_one())
        return result


async def snapshot(store: SqlVerdictStore) -> list[Any]:
    """Every verdict's stored documents: what a dry run must leave exactly as it was."""
    async with store.engine.connect() as connection:
        rows = await connection.execute(
            select(verdicts.c.request_id, verdicts.c.baseline, verdicts.c.candidate, verdicts.c.request,
                   verdicts.c.grades).order_by(verdicts.c.id))
        return [tuple(row) for row in rows]


async def gate_state(store: SqlVerdictStore) -> dict[str, Any]:
    """The gate's decision and evidence for each rollout, and the recorded audit trail."""
    state: dict[str, Any] = {}
    for name in ("live", "done"):
        decision, _, figures = await gate_view(store, spec(name))
        state[name] = (decision.decision, decision.reasons, figures, await store.list_decisions(name))
    return state


KEPT = {
    "done-30d-exact", "done-29d", "done-7d-exact", "done-1d",  # at or inside the 30-day cutoff
    "live-33d", "live-2d",  # the active rollout's current stage, older or not
    "pending-60d",  # a configured rollout without a decision yet
    "orphan-1d",
}
PURGED = {"done-31d", "live-36d", "orphan-60d", *(f"done-old-{i}" for i in range(250))}
OUTPUTS_DROPPED = {"done-30d-exact", "done-29d", "live-33d", "pending-60d"}  # older than 7 days, kept


async def check_purge_keeps_the_boundaries_and_the_gate(url: str) -> None:
    """The whole retention contract on one database (see the callers' docstrings)."""
    store = await seed(url)
    try:
        before_gate = await gate_state(store)
        before_counts = await counts(store)
        before_documents = await snapshot(store)
        assert await request_ids(store) == KEPT | PURGED

        dry = await purge(store, CONFIG, NOW, configured=CONFIGURED, dry_run=True)
        assert await counts(store) == before_counts and await snapshot(store) == before_documents
        assert dry.tables["verdicts"].rows == len(PURGED)
        assert dry.tables["findings"].rows == 1 + 1 + 250  # the purged regressions' findings
        assert dry.tables["dead_letters"].rows == 1
        assert dry.tables["verdict_outputs"].rows == len(OUTPUTS_DROPPED)
        assert dry.protected_verdicts == 2  # live-33d (current stage), pending-60d (no decision yet)
        assert dry.tables["verdicts"].oldest_kept == NOW - 60 * DAY  # pending-60d
        assert dry.tables["dead_letters"].oldest_kept == NOW - 14 * DAY

        done = await purge(store, CONFIG, NOW, configured=CONFIGURED)
        assert done.complete
        assert {t: f.rows for t, f in done.tables.items()} == {t: f.rows for t, f in dry.tables.items()}
        assert {t: f.oldest_kept for t, f in done.tables.items()} == \
            {t: f.oldest_kept for t, f in dry.tables.items()}
        assert done.statements >= 3 * 3  # at least three batches of 100 for `done`, three statements each
        assert await request_ids(store) == KEPT
        after_counts = await counts(store)
        assert after_counts["verdicts"] == before_counts["verdicts"] - len(PURGED)
        assert after_counts["findings"] == before_counts["findings"] - 252
        assert after_counts["dead_letters"] == 2

        # Outputs: dropped from the kept verdicts older than 7 days, the rows and findings stay.
        for request_id in KEPT:
            rollout = request_id.split("-")[0]
            stored = await store.get_verdict(rollout, request_id)
            assert stored is not None
            v = stored.verdict
            assert v.baseline is not None and v.candidate is not None and v.baseline_repeat is not None
            assert (v.baseline.model, v.baseline.latency_ms, v.baseline.cost_usd) == ("claude-opus-4-6", 123.0, 0.002)
            assert v.candidate.usage.output_tokens == 22 and v.grading is not None and v.grading.candidate
            assert v.grading.candidate.acceptable is True
            if request_id in OUTPUTS_DROPPED:
                assert v.baseline.content == () and v.candidate.content == () and v.baseline_repeat.content == ()
                assert v.request is None and v.grading.candidate.reason is None
            else:
                assert v.candidate.content == ({"type": "text", "text": f"candidate answer {request_id}"},)
                assert v.request is not None and v.grading.candidate.reason == "fine: secret"
        exact = await store.get_verdict("done", "done-30d-exact")
        assert exact is not None and [f.code for f in exact.verdict.findings] == ["format.json_invalid"]
        async with store.engine.connect() as connection:
            kept_findings = (await connection.execute(select(func.count()).select_from(findings).where(
                findings.c.verdict_id == select(verdicts.c.id).where(
                    verdicts.c.request_id == "done-30d-exact").scalar_subquery()))).scalar_one()
        assert kept_findings == 1

        # The gate decides as before on the same evidence, and no recorded decision changed.
        assert await gate_state(store) == before_gate

        # A second purge finds nothing, and reads no verdict twice for outputs.
        again = await purge(store, CONFIG, NOW, configured=CONFIGURED)
        assert all(f.rows == 0 for f in again.tables.values())
    finally:
        await store.close()


async def check_unrolled_verdicts_wait_for_the_roll_up(url: str) -> None:
    """An old verdict not yet folded into the totals is kept; once folded, the next purge deletes it."""
    store = await open_store(url, upgrade=True)
    try:
        # Written as a bulk load writes (not through save, which counts what it inserts): not yet folded.
        async with store.engine.begin() as connection:
            await connection.execute(
                verdicts.insert(), [verdict_row(verdict("orphan", "old-pending", NOW - 90 * DAY, Status.REGRESSION))]
            )
        first = await purge(store, CONFIG, NOW)
        assert first.tables["verdicts"].rows == 0 and await request_ids(store) == {"old-pending"}
        assert await store.roll_up() == 1  # the promoter's tick folds it
        figures = verdict_figures(await store.rollout_totals("orphan"))
        second = await purge(store, CONFIG, NOW)
        assert second.tables["verdicts"].rows == 1 and await request_ids(store) == set()
        assert verdict_figures(await store.rollout_totals("orphan")).candidate_regressions == \
            figures.candidate_regressions == 1
    finally:
        await store.close()


# On the hour, so the noise cutoff (NOISE_NOW - 48 h) is itself a bucket start: that bucket is kept.
NOISE_NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
NOISE_CUTOFF = NOISE_NOW - 2 * DAY
HOUR = timedelta(hours=1)
NOISE_CONFIG = RetentionConfig(dead_letters_days=14, batch_rows=100)  # retention on; nothing else to purge
OLD_NOISE_ROWS = 350  # old buckets written in bulk, so the purge takes several batches of 100


def noisy(request_id: str, at: datetime, summary_differed: bool) -> VerdictRecord:
    """A noise-checked verdict of the `live` rollout: it adds one request and two paths to its hour's bucket."""
    record = verdict("live", request_id, at)
    observation = NoiseObservation(paths=(("$.summary", summary_differed), ("$.category", False)),
                                   codes=("length.drift",) if summary_differed else ())
    return replace(record, noise_observation=observation)


async def noise_rows(store: SqlVerdictStore) -> list[tuple[Any, ...]]:
    async with store.engine.connect() as connection:
        rows = await connection.execute(select(noise_counts).order_by(*noise_counts.primary_key.columns))
        return [(*row[:4], _utc(row.bucket), row.samples, row.differed) for row in rows]


async def live_noise(store: SqlVerdictStore) -> tuple[NoiseModel, Any]:
    """The noise model as the pipeline reads it (route by route, over NOISE_WINDOW) and as the report
    shows it, at NOISE_NOW."""
    rows = await store.noise_counts("claude-opus-4-6", NOISE_NOW - NOISE_WINDOW, "support")
    return NoiseModel.from_rows(rows["support"], 0.05), await noisiest(store, spec("live"), now=NOISE_NOW)


async def check_noise_buckets_past_twice_the_window_are_purged(url: str, config: RetentionConfig = NOISE_CONFIG) -> None:
    """Buckets starting before NOISE_NOW - 48 h go in batches, the bucket at the cutoff and every newer one
    stay, a dry run counts without deleting, and the learned noise read over the window is unchanged. With
    retention off (`config` sets no *_days) the same buckets go, and nothing else."""
    store = await open_store(url, upgrade=True)
    try:
        # Through the writer: the live window, the days between it and the cutoff, and one hour past it.
        records = [noisy(f"w-{i}", NOISE_NOW - HOUR + i * timedelta(minutes=1), i % 3 == 0) for i in range(30)]
        records += [noisy(f"d-{i}", NOISE_NOW - 23 * HOUR, True) for i in range(5)]
        records += [noisy("x-30h", NOISE_NOW - 30 * HOUR + timedelta(minutes=5), True)]
        records += [noisy("x-cutoff", NOISE_CUTOFF + timedelta(minutes=59), True)]  # bucket == cutoff: kept
        records += [noisy("x-cutoff+1h", NOISE_CUTOFF + HOUR, True)]  # near miss: an hour newer, kept
        records += [noisy("x-cutoff-1h", NOISE_CUTOFF - timedelta(minutes=1), True)]  # bucket an hour older: purged
        await store.save(records, [])
        # In bulk: days-old buckets of many paths, as months of traffic leave them.
        async with store.engine.begin() as connection:
            await connection.execute(noise_counts.insert(), [
                {"baseline": "claude-opus-4-6", "route": "support", "kind": "path", "key": f"$.old[{i % 7}]",
                 "bucket": NOISE_CUTOFF - (2 + i // 7) * HOUR, "samples": 3, "differed": 2}
                for i in range(OLD_NOISE_ROWS)
            ])
        before_rows = await noise_rows(store)
        before_model = await live_noise(store)
        assert before_model[0].requests == 35 and before_model[1]["support"].paths  # the window has noise
        doomed = [row for row in before_rows if row[4] < NOISE_CUTOFF]
        assert len(doomed) == OLD_NOISE_ROWS + 4  # + the hour before the cutoff: requests and two paths, a code
        assert {row[4] for row in before_rows} >= {NOISE_CUTOFF, NOISE_CUTOFF + HOUR, NOISE_CUTOFF - HOUR}

        before_counts = await counts(store)
        dry = await purge(store, config, NOISE_NOW, dry_run=True)
        assert await noise_rows(store) == before_rows
        assert dry.tables["noise_counts"].rows == len(doomed)
        assert dry.tables["noise_counts"].oldest_kept == NOISE_CUTOFF

        done = await purge(store, config, NOISE_NOW)
        assert done.complete and done.tables["noise_counts"].rows == len(doomed)
        assert done.tables["noise_counts"].oldest_kept == NOISE_CUTOFF
        # (retention on: the dead letters' pick first), then 354 rows in batches of 100
        assert done.statements == (config.dead_letters_days is not None) + 4
        assert await noise_rows(store) == [row for row in before_rows if row[4] >= NOISE_CUTOFF]
        assert await live_noise(store) == before_model
        assert await counts(store) == before_counts

        again = await purge(store, config, NOISE_NOW)
        assert again.tables["noise_counts"].rows == 0
    finally:
        await store.close()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def check_retention_off_purges_only_noise_buckets(url: str) -> None:
    """With no retention.*_days set, the promoter's purge deletes the learned-noise buckets past 48 h, and
    not one verdict, finding, stored output or dead letter, however old; it runs again an hour later, not
    on every tick."""
    from shadowd.retention import RetentionTask

    store = await seed(url)
    try:
        async with store.engine.begin() as connection:
            await connection.execute(noise_counts.insert(), [
                {"baseline": "claude-opus-4-6", "route": "support", "kind": "path", "key": f"$.k{i}",
                 "bucket": bucket, "samples": 2, "differed": 1}
                for i, bucket in enumerate((NOW - 60 * DAY, NOW - 49 * HOUR, NOW - 47 * HOUR, NOW - HOUR))
            ])
        before = (await counts(store), await snapshot(store), await gate_state(store))
        clock = [NOW]
        task = RetentionTask(store.retention(100), RetentionConfig(batch_rows=100), configured=CONFIGURED,
                             clock=lambda: clock[0])
        result = await task.run_once()
        assert result is not None and result.complete
        assert {table: figures.rows for table, figures in result.tables.items()} == {
            "verdicts": 0, "findings": 0, "verdict_outputs": 0, "dead_letters": 0, "noise_counts": 2,
        }
        assert [row[3] for row in await noise_rows(store)] == ["$.k2", "$.k3"]
        assert (await counts(store), await snapshot(store), await gate_state(store)) == before
        # Hourly buckets: the next noise-only purge waits an hour, then runs (and finds the next old one).
        clock[0] = NOW + 59 * timedelta(minutes=1)
        assert await task.run_once() is None
        clock[0] = NOW + HOUR + timedelta(minutes=1)
        later = await task.run_once()
        assert later is not None and later.tables["noise_counts"].rows == 1
        assert [row[3] for row in await noise_rows(store)] == ["$.k3"]
    finally:
        await store.close()
