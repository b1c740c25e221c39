"""Retention on PostgreSQL: the same contract as on SQLite, and a purge that never stalls the writer."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from shadowd.adapters.sql_schema import verdicts
from shadowd.adapters.sql_store import open_store
from shadowd.core.findings import Status
from shadowd.retention import purge
from shadowd.retention_config import RetentionConfig
from tests.retention_scenario import (
    check_noise_buckets_past_twice_the_window_are_purged,
    check_purge_keeps_the_boundaries_and_the_gate,
    check_retention_off_purges_only_noise_buckets,
    check_unrolled_verdicts_wait_for_the_roll_up,
    verdict,
)

# A writer insert may wait this long at most while the purge runs (a loaded, shared machine: generous).
INSERT_BOUND_S = 5.0


async def test_purge_keeps_the_boundaries_the_current_stage_and_the_gate_on_postgresql(
    fresh_database_url: str,
) -> None:
    """A row exactly at a cutoff is kept and one older is purged; outputs go before verdicts; the active
    rollout's current stage and a configured rollout without a decision keep their verdicts; the dry run
    changes nothing and predicts the purge; the gate's decisions and figures are unchanged."""
    await check_purge_keeps_the_boundaries_and_the_gate(fresh_database_url)


async def test_unrolled_verdicts_wait_for_the_roll_up_on_postgresql(fresh_database_url: str) -> None:
    """Near miss for the gate: an old verdict not yet in the totals is kept until folded, then purged."""
    await check_unrolled_verdicts_wait_for_the_roll_up(fresh_database_url)


async def test_noise_buckets_past_twice_the_window_are_purged_on_postgresql(fresh_database_url: str) -> None:
    """Old learned-noise buckets go in batches (rows named by ctid); the bucket at the cutoff and one an hour
    newer stay; the dry run counts and deletes nothing; the noise model read over the window is unchanged."""
    await check_noise_buckets_past_twice_the_window_are_purged(fresh_database_url)


async def test_with_retention_off_the_tick_purges_only_noise_buckets_hourly_on_postgresql(
    fresh_database_url: str,
) -> None:
    """Golden: old noise buckets go with retention off; near misses: every verdict, output
    and dead letter stays however old, and the bucket 47 h old stays until an hour later."""
    await check_retention_off_purges_only_noise_buckets(fresh_database_url)


async def test_noise_buckets_go_in_batches_with_retention_off_on_postgresql(fresh_database_url: str) -> None:
    """The same batches, boundaries and unchanged noise model with no retention.*_days set."""
    await check_noise_buckets_past_twice_the_window_are_purged(fresh_database_url, RetentionConfig(batch_rows=100))


async def test_the_noise_purge_skips_a_bucket_a_writer_holds_and_takes_it_next_time(
    fresh_database_url: str,
) -> None:
    """An old noise-count row locked by another transaction (a late upsert into its bucket) is skipped, not
    waited for: the purge deletes the rest at once and the next purge takes that row."""
    from sqlalchemy import func, select

    from shadowd.adapters.sql_schema import noise_counts

    store = await open_store(fresh_database_url, upgrade=True)
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    old = now - timedelta(days=5)
    try:
        async with store.engine.begin() as connection:
            await connection.execute(noise_counts.insert(), [
                {"baseline": "b", "route": "r", "kind": "path", "key": f"$.k{i}", "bucket": old, "samples": 1,
                 "differed": 0} for i in range(250)
            ])
        config = RetentionConfig(dead_letters_days=14, batch_rows=100)
        async with store.engine.connect() as holder:
            await holder.execute(noise_counts.update().where(noise_counts.c.key == "$.k7").values(samples=2))
            started = time.monotonic()
            first = await purge(store, config, now)
            waited = time.monotonic() - started
            await holder.commit()
        assert first.complete and first.tables["noise_counts"].rows == 249
        assert waited < INSERT_BOUND_S, f"the purge waited {waited:.2f}s for a locked row"
        second = await purge(store, config, now)
        assert second.tables["noise_counts"].rows == 1
        async with store.engine.connect() as connection:
            assert (await connection.execute(select(func.count()).select_from(noise_counts))).scalar_one() == 0
    finally:
        await store.close()


async def test_writer_inserts_go_on_while_a_purge_deletes_in_batches(fresh_database_url: str) -> None:
    """While the purge deletes 20,000 old verdicts in batches of 1,000, concurrent writer batches and roll-ups
    keep committing, none waiting more than INSERT_BOUND_S; every new verdict is stored and none purged."""
    store = await open_store(fresh_database_url, upgrade=True)
    now = datetime.now(UTC)
    try:
        old = [verdict("bulk", f"old-{i}", now - timedelta(days=90) + timedelta(milliseconds=i), Status.PASS)
               for i in range(20_000)]
        for start in range(0, len(old), 2000):
            await store.save(old[start : start + 2000], [])
        await store.roll_up()
        config = RetentionConfig(verdicts_days=30, outputs_days=7, batch_rows=1000)
        waits: list[float] = []
        done = asyncio.Event()

        async def writer() -> None:
            index = 0
            while not done.is_set():
                batch = [verdict("bulk", f"new-{index + i}", datetime.now(UTC)) for i in range(50)]
                index += 50
                started = time.monotonic()
                assert await store.save(batch, []) == 50
                await store.roll_up("bulk")
                waits.append(time.monotonic() - started)
                await asyncio.sleep(0.01)

        writing = asyncio.create_task(writer())
        await asyncio.sleep(0.2)
        result = await purge(store, config, datetime.now(UTC))
        done.set()
        await writing
        assert result.complete and result.tables["verdicts"].rows == 20_000
        assert result.statements >= 20 * 3
        assert waits and max(waits) < INSERT_BOUND_S, f"slowest writer batch {max(waits):.2f}s"
        async with store.engine.connect() as connection:
            from sqlalchemy import func, select

            left = (await connection.execute(select(func.count()).select_from(verdicts))).scalar_one()
        assert left == len(waits) * 50
        print(f"purge {result.elapsed_s:.2f}s, longest statement {result.longest_statement_s * 1000:.0f} ms, "
              f"{len(waits)} writer batches, slowest {max(waits) * 1000:.0f} ms")
    finally:
        await store.close()
