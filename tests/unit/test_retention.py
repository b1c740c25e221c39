"""Retention on SQLite: what the purge deletes, empties and keeps, and its config, CLI and metrics."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from shadowd.adapters.sql_retention import SqlRetention
from shadowd.adapters.sql_store import open_store
from shadowd.core.retention import verdict_cutoff
from shadowd.metrics import Metrics
from shadowd.retention import RetentionTask, cutoffs
from shadowd.retention_config import RetentionConfig
from tests.helpers import run_cli
from tests.retention_scenario import (
    CONFIG,
    CONFIGURED,
    NOW,
    check_noise_buckets_past_twice_the_window_are_purged,
    check_purge_keeps_the_boundaries_and_the_gate,
    check_retention_off_purges_only_noise_buckets,
    check_unrolled_verdicts_wait_for_the_roll_up,
    counts,
    seed,
)


def test_purge_keeps_the_boundaries_the_current_stage_and_the_gate_on_sqlite(tmp_path: Path) -> None:
    """A row exactly at a cutoff is kept and one older is purged; outputs go before verdicts; the active
    rollout's current stage and a configured rollout without a decision keep their verdicts; the dry run
    changes nothing and predicts the purge; the gate's decisions and figures are unchanged."""
    asyncio.run(check_purge_keeps_the_boundaries_and_the_gate(f"sqlite:///{tmp_path / 'r.db'}"))


def test_unrolled_verdicts_wait_for_the_roll_up_on_sqlite(tmp_path: Path) -> None:
    """Near miss for the gate: an old verdict not yet in the totals is kept until folded, then purged."""
    asyncio.run(check_unrolled_verdicts_wait_for_the_roll_up(f"sqlite:///{tmp_path / 'u.db'}"))


def test_noise_buckets_past_twice_the_window_are_purged_on_sqlite(tmp_path: Path) -> None:
    """Old learned-noise buckets go in batches; the bucket at the cutoff and one an hour newer stay; the dry
    run counts and deletes nothing; the noise model read over the window is the same after the purge."""
    asyncio.run(check_noise_buckets_past_twice_the_window_are_purged(f"sqlite:///{tmp_path / 'n.db'}"))


def test_noise_buckets_go_in_batches_with_retention_off_on_sqlite(tmp_path: Path) -> None:
    """The same batches, boundaries and unchanged noise model with no retention.*_days set."""
    asyncio.run(check_noise_buckets_past_twice_the_window_are_purged(f"sqlite:///{tmp_path / 'o.db'}",
                                                                     RetentionConfig(batch_rows=100)))


def test_with_retention_off_the_tick_purges_only_noise_buckets_hourly_on_sqlite(tmp_path: Path) -> None:
    """Golden: old noise buckets go with retention off; near misses: every verdict, output and dead letter
    stays however old, and the bucket 47 h old stays until an hour later."""
    asyncio.run(check_retention_off_purges_only_noise_buckets(f"sqlite:///{tmp_path / 'off.db'}"))


def test_the_noise_cutoff_is_older_than_the_window_every_reader_reads() -> None:
    """The pipeline and the report read the one NOISE_WINDOW, and the noise cutoff lies a whole window
    before its start: changing the window moves the cutoff with it."""
    from shadowd import pipeline, report
    from shadowd.core import noise

    assert pipeline.NOISE_WINDOW is noise.NOISE_WINDOW and report.NOISE_WINDOW is noise.NOISE_WINDOW
    found = cutoffs(RetentionConfig(dead_letters_days=14), NOW).noise_counts_before
    assert found == NOW - timedelta(hours=48)
    assert found < NOW - noise.NOISE_WINDOW and (NOW - noise.NOISE_WINDOW) - found == noise.NOISE_WINDOW


def test_a_live_rollout_keeps_its_current_stage_and_a_finished_one_does_not() -> None:
    """Golden: an active or paused rollout whose stage began before the cutoff is cut at the stage's start;
    near misses: a rolled-back or complete rollout, or one whose stage began after the cutoff, has the plain
    cutoff; a configured rollout without state keeps all, an unconfigured one does not."""
    cut, stage = NOW - timedelta(days=30), NOW - timedelta(days=35)
    assert verdict_cutoff(cut, "active", stage, True) == stage
    assert verdict_cutoff(cut, "paused", stage, True) == stage
    assert verdict_cutoff(cut, "rolled_back", stage, True) == cut
    assert verdict_cutoff(cut, "complete", stage, True) == cut
    assert verdict_cutoff(cut, "active", NOW - timedelta(days=2), True) == cut
    assert verdict_cutoff(cut, None, None, True) is None
    assert verdict_cutoff(cut, None, None, False) == cut
    assert verdict_cutoff(None, "complete", stage, False) is None


def test_cutoffs_are_now_minus_days_and_null_keeps_forever() -> None:
    """Each cutoff is `now - days` (fractions allowed); an unset kind has no cutoff; noise counts, which
    have no setting, always have one."""
    found = cutoffs(RetentionConfig(verdicts_days=1.5, dead_letters_days=2), NOW)
    assert found.verdicts_before == NOW - timedelta(hours=36)
    assert found.dead_letters_before == NOW - timedelta(days=2)
    assert found.outputs_before is None
    assert found.noise_counts_before == NOW - timedelta(days=2)


def test_the_tick_task_counts_purged_rows_by_table_and_stops_at_its_budget(tmp_path: Path) -> None:
    """The promoter's purge reports rows by table to the metrics; with no time left it stops, says it is
    not complete, and the next run finishes the job."""

    async def scenario() -> None:
        store = await seed(f"sqlite:///{tmp_path / 't.db'}")
        try:
            metrics = Metrics()
            purger = SqlRetention(store.engine, CONFIG.batch_rows)
            stopped = RetentionTask(purger, CONFIG, configured=CONFIGURED, metrics=metrics, clock=lambda: NOW,
                                    budget_s=0.0)
            result = await stopped.run_once()
            assert result is not None and not result.complete and result.tables["verdicts"].rows == 0
            task = RetentionTask(purger, CONFIG, configured=CONFIGURED, metrics=metrics, clock=lambda: NOW)
            result = await task.run_once()
            assert result is not None and result.complete and result.tables["verdicts"].rows == 253
            sample = metrics.registry.get_sample_value
            assert sample("shadowd_retention_purged_rows_total", {"table": "verdicts"}) == 253
            assert sample("shadowd_retention_purged_rows_total", {"table": "dead_letters"}) == 1
            assert sample("shadowd_retention_purged_rows_total", {"table": "noise_counts"}) == 0  # labelled
            assert sample("shadowd_retention_purge_seconds_count") == 2
            assert (sample("shadowd_retention_last_success_timestamp_seconds") or 0) > 0
            # Retention off: the noise-only purge runs (none of its rows are old here), then waits an hour.
            off = RetentionTask(SqlRetention(store.engine), RetentionConfig(), metrics=metrics, clock=lambda: NOW)
            first = await off.run_once()
            assert first is not None and first.complete and not any(f.rows for f in first.tables.values())
            assert await off.run_once() is None
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_failing_purge_is_logged_and_never_raises(tmp_path: Path) -> None:
    """A database without the schema makes the tick's purge return None instead of stopping the promoter."""

    async def scenario() -> None:
        store = await open_store(f"sqlite:///{tmp_path / 'empty.db'}")
        try:
            task = RetentionTask(SqlRetention(store.engine, CONFIG.batch_rows), CONFIG, clock=lambda: NOW)
            assert await task.run_once() is None
        finally:
            await store.close()

    asyncio.run(scenario())


def test_db_purge_dry_run_prints_counts_and_deletes_nothing_then_purges(tmp_path: Path) -> None:
    """`shadowd db purge --dry-run` prints per table what would go and the oldest kept, and deletes nothing;
    without --dry-run it deletes exactly that; a bad retention value is exit 2 naming key and file."""
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    config = tmp_path / "shadowd.yaml"
    config.write_text("retention: {verdicts_days: 30, outputs_days: 7, dead_letters_days: 14}\n")

    async def prepare() -> dict[str, int]:
        store = await seed(db)
        try:
            return await counts(store)
        finally:
            await store.close()

    before = asyncio.run(prepare())
    dry = run_cli("db", "purge", "--dry-run", "--db", db, "-c", str(config), "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    # The CLI uses the real clock: everything older than 30 days from today is counted.
    assert report["dry_run"] is True and report["tables"]["verdicts"]["rows"] > 0
    assert report["tables"]["dead_letters"]["oldest_kept"] is not None
    assert report["tables"]["noise_counts"] == {"rows": 0, "oldest_kept": None}  # the seed has no noise checks

    async def current() -> dict[str, int]:
        store = await open_store(db)
        try:
            return await counts(store)
        finally:
            await store.close()

    assert asyncio.run(current()) == before
    text = run_cli("db", "purge", "--dry-run", "--db", db, "-c", str(config))
    assert text.returncode == 0 and "would purge" in text.stdout and "oldest kept" in text.stdout
    assert "noise_counts" in text.stdout and "buckets after 48 h" in text.stdout
    real = run_cli("db", "purge", "--db", db, "-c", str(config), "--json")
    assert real.returncode == 0, real.stderr
    assert json.loads(real.stdout)["tables"]["verdicts"]["rows"] == report["tables"]["verdicts"]["rows"]
    assert asyncio.run(current())["verdicts"] == before["verdicts"] - report["tables"]["verdicts"]["rows"]

    config.write_text("retention: {verdicts_days: 7, outputs_days: 30}\n")
    bad = run_cli("db", "purge", "--db", db, "-c", str(config))
    assert bad.returncode == 2
    assert "retention.outputs_days" in bad.stderr and str(config) in bad.stderr
    missing = run_cli("db", "purge", "--db", f"sqlite:///{tmp_path / 'none.db'}", "-c", str(config.parent / "x.yaml"))
    assert missing.returncode == 2  # the config file cannot be read


def test_db_purge_without_retention_says_so_and_purges_only_old_noise_buckets(tmp_path: Path) -> None:
    """With no retention.*_days in the config, `db purge` says retention is off, deletes the learned-noise
    buckets past 48 h and nothing else (old verdicts and dead letters stay), and exits 0."""
    from shadowd.adapters.sql_schema import noise_counts
    from shadowd.clock import utc_now

    db = f"sqlite:///{tmp_path / 'x.db'}"

    async def prepare() -> dict[str, int]:
        store = await seed(db)
        try:
            async with store.engine.begin() as connection:
                await connection.execute(noise_counts.insert(), [
                    {"baseline": "claude-opus-4-6", "route": "support", "kind": "path", "key": f"$.k{hours}",
                     "bucket": utc_now() - timedelta(hours=hours), "samples": 1, "differed": 0}
                    for hours in (72, 50, 24)
                ])
            return await counts(store)
        finally:
            await store.close()

    before = asyncio.run(prepare())
    result = run_cli("db", "purge", "--db", db)
    assert result.returncode == 0, result.stderr
    assert "retention is off" in result.stdout and "kept forever" in result.stdout
    assert "noise_counts" in result.stdout
    dry = run_cli("db", "purge", "--db", db, "--dry-run", "--json")
    report = json.loads(dry.stdout)
    assert report["enabled"] is False and "retention is off" in report["message"]
    assert {table: figures["rows"] for table, figures in report["tables"].items()} == {
        "verdicts": 0, "findings": 0, "verdict_outputs": 0, "dead_letters": 0, "noise_counts": 0,
    }

    async def after() -> tuple[dict[str, int], list[str]]:
        store = await open_store(db)
        try:
            async with store.engine.connect() as connection:
                keys = sorted((await connection.execute(select(noise_counts.c.key))).scalars())
            return await counts(store), keys
        finally:
            await store.close()

    assert asyncio.run(after()) == (before, ["$.k24"])


def test_db_purge_on_a_missing_database_is_exit_3(tmp_path: Path) -> None:
    """A database that does not exist is exit 3 naming `shadowd db upgrade`, never created by the purge."""
    config = tmp_path / "c.yaml"
    config.write_text("retention: {verdicts_days: 30}\n")
    result = run_cli("db", "purge", "--db", f"sqlite:///{tmp_path / 'nope.db'}", "-c", str(config))
    assert result.returncode == 3 and "db upgrade" in result.stderr
    assert not (tmp_path / "nope.db").exists()


def test_the_promoter_purges_after_its_tick(tmp_path: Path) -> None:
    """The promoter loop runs the retention task after each tick while it holds the role (SQLite: always)."""
    from shadowd.config import load_config
    from shadowd.promoter import PromoterLoop
    from shadowd.retention import retention_task

    async def scenario() -> None:
        store = await seed(f"sqlite:///{tmp_path / 'p.db'}")
        config_file = tmp_path / "c.yaml"
        config_file.write_text("retention: {verdicts_days: 30, outputs_days: 7, dead_letters_days: 14}\n")
        task = retention_task(store, load_config(config_file), Metrics())
        task.clock = lambda: NOW
        loop = PromoterLoop(store, (), interval_s=0.05, after_tick=task.run_once)
        stop = asyncio.Event()
        running = asyncio.create_task(loop.run(stop))
        try:
            for _ in range(600):
                if task.last is not None:
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await running
            await store.close()
        assert task.last is not None and task.last.complete
        # Not configured here, so `pending` is an unknown rollout: its old verdict goes too.
        assert task.last.tables["verdicts"].rows == 254 and task.last.tables["dead_letters"].rows == 1

    asyncio.run(scenario())
