"""The retention purge on 1,000,000 verdicts in PostgreSQL: time, rows/s, longest statement, lock behaviour.

    python benchmarks/retention_bench.py --db postgresql+asyncpg://USER:PW@HOST:PORT/DB [--verdicts 1000000]

Makes a fresh database on that server, migrates it, COPYs the verdicts (the rows of
benchmarks/queries_bench.py: ~1.5 KB answers per side, findings on regressions, one verdict every
1.2 s, so a million span ~14 days; all already rolled up) and dead letters (1 KB payloads), with the
secondary indexes and constraints dropped for the load and rebuilt after. Then, with `now` one day
after the newest verdict and the cutoffs at 70 % of the loaded span for verdicts and dead letters and
90 % for outputs (a million verdicts: `retention: {verdicts_days: 5.17, outputs_days: 2.39,
dead_letters_days: 5.17}`):

1. times `shadowd db purge --dry-run`'s work (the same call, counts only);
2. runs a writer that stores 50 new verdicts per batch through SqlVerdictStore.save (the daemon's
   writer path) and folds them (roll_up) in a loop, alone for a few seconds (its baseline latency),
   then while the purge runs, and samples pg_locks every 50 ms from another connection;
3. records: total purge time, rows/s, the longest single statement, the writer's batch latency
   alone and during the purge (p50, p99, max), and the locks seen (modes held on the purged tables,
   the most lock requests waiting at once and on what).

Prints one JSON object; drops the database at the end (unless --keep).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import asyncpg_dsn, create_database, drop_database, log, machine, percentile
from queries_bench import VERDICT_COLUMNS, build_rows

ROLLOUT = "big"
START = datetime(2026, 11, 1, tzinfo=UTC)  # build_rows: verdict i is created at START + 1.2 s * i
LOCK_SAMPLE_S = 0.05


async def load(db_url: str, total: int, letters: int, chunk: int = 50_000) -> dict[str, Any]:
    """Migrate, drop secondary indexes and constraints, COPY verdicts (rolled up), findings and dead letters,
    rebuild, ANALYZE."""
    import asyncpg

    from shadowd.adapters.sql_store import create_engine, upgrade_database

    engine = create_engine(db_url)
    await upgrade_database(engine)
    await engine.dispose()
    dsn = asyncpg_dsn(db_url)
    connection = await asyncpg.connect(dsn)
    try:
        columns = [r["column_name"] for r in await connection.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'verdicts' ORDER BY ordinal_position"
        ) if r["column_name"] in VERDICT_COLUMNS]
        constraints = await connection.fetch(
            "SELECT conrelid::regclass::text AS tbl, conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
            " WHERE conrelid IN ('verdicts'::regclass, 'findings'::regclass, 'dead_letters'::regclass)"
            " AND contype IN ('u', 'f')"
        )
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('verdicts', 'findings', 'dead_letters')"
            " AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        )
        for kind in ("FOREIGN KEY", ""):
            for row in constraints:
                if row["def"].startswith("FOREIGN KEY") == bool(kind):
                    await connection.execute(f'ALTER TABLE {row["tbl"]} DROP CONSTRAINT "{row["conname"]}"')
        for row in indexes:
            await connection.execute(f'DROP INDEX "{row["indexname"]}"')
    finally:
        await connection.close()

    started = time.perf_counter()
    counts = {"verdicts": 0, "findings": 0, "dead_letters": 0}

    async def copy_part(count: int, first_id: int, part: int) -> None:
        rows, finding_rows = build_rows(ROLLOUT, count, first_id, 7000 + part, columns)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.copy_records_to_table("verdicts", records=[(*r, True) for r in rows],
                                             columns=[*columns, "rolled_up"])
            await conn.copy_records_to_table(
                "findings", records=finding_rows,
                columns=["verdict_id", "rollout", "code", "severity", "path", "detail", "noise"],
            )
        finally:
            await conn.close()
        counts["verdicts"] += len(rows)
        counts["findings"] += len(finding_rows)

    jobs = [(min(chunk, total - offset), 1 + offset, part) for part, offset in enumerate(range(0, total, chunk))]
    pending: set[asyncio.Task[None]] = set()
    for index, job in enumerate(jobs):
        while len(pending) >= 2:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        pending.add(asyncio.create_task(copy_part(*job)))
        if index % 5 == 0:
            log(f"retention: loading part {index + 1}/{len(jobs)}")
    for task in asyncio.as_completed(pending):
        await task

    rng = random.Random(5)
    span = 1.2 * total
    letter_rows = [
        ("llm.mirror", i % 6, i, rng.choice(["invalid_json", "envelope_version", "unstorable:string_too_long"]),
         "bad record", os.urandom(512).hex().encode(), START + timedelta(seconds=span * i / max(letters, 1)), False)
        for i in range(letters)
    ]
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(
            "dead_letters", records=letter_rows,
            columns=["source", "partition", "offset", "reason", "detail", "payload", "created_at", "payload_truncated"],
        )
        counts["dead_letters"] = len(letter_rows)
        copy_s = time.perf_counter() - started
        started = time.perf_counter()
        await connection.execute("SET maintenance_work_mem = '512MB'")
        for kind in ("", "FOREIGN KEY"):
            for row in constraints:
                if row["def"].startswith("FOREIGN KEY") == bool(kind):
                    await connection.execute(
                        f'ALTER TABLE {row["tbl"]} ADD CONSTRAINT "{row["conname"]}" {row["def"]}')
            if not kind:
                for row in indexes:
                    await connection.execute(row["indexdef"])
        for table in ("verdicts", "findings", "dead_letters"):
            await connection.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        newest = await connection.fetchval("SELECT max(created_at) FROM verdicts")
        await connection.execute(
            "INSERT INTO rollouts (name, baseline, candidate, stage_index, state, stage_started_compared,"
            " stage_started_at, created_at, updated_at) VALUES ($1, 'claude-opus-4-6', 'claude-opus-4-7', 4,"
            " 'complete', 0, $2, $2, $2)", ROLLOUT, START)
        indexes_s = time.perf_counter() - started
        started = time.perf_counter()
        for table in ("verdicts", "findings", "dead_letters"):
            await connection.execute(f"VACUUM ANALYZE {table}")
        analyze_s = time.perf_counter() - started
        size = await connection.fetchval("SELECT pg_size_pretty(pg_database_size(current_database()))")
    finally:
        await connection.close()
    return {**counts, "newest": newest, "database_size": size, "copy_s": round(copy_s, 1),
            "indexes_s": round(indexes_s, 1), "analyze_s": round(analyze_s, 1)}


class LockSampler:
    """Samples pg_locks on the purged tables: the modes held, and requests waiting (not granted)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.samples = 0
        self.modes: dict[str, int] = {}
        self.max_waiting = 0
        self.waiting_on: dict[str, int] = {}
        self.stop = asyncio.Event()

    async def run(self) -> None:
        import asyncpg

        connection = await asyncpg.connect(self.dsn)
        try:
            while not self.stop.is_set():
                rows = await connection.fetch(
                    "SELECT coalesce(c.relname, '') AS relname, l.locktype, l.mode, l.granted FROM pg_locks l"
                    " LEFT JOIN pg_class c ON c.oid = l.relation"
                    " WHERE l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    " OR l.locktype IN ('transactionid', 'tuple')"
                )
                self.samples += 1
                waiting = 0
                for row in rows:
                    # e.g. "verdicts:RowExclusiveLock", "verdicts(extend):ExclusiveLock", "transactionid:ShareLock"
                    kind = "" if row["locktype"] == "relation" else row["locktype"]
                    what = f"{row['relname']}({kind})" if row["relname"] and kind else (row["relname"] or kind)
                    key = f"{what}:{row['mode']}"
                    if row["relname"] in ("verdicts", "findings", "dead_letters") and row["granted"]:
                        self.modes[key] = self.modes.get(key, 0) + 1
                    if not row["granted"]:
                        waiting += 1
                        self.waiting_on[key] = self.waiting_on.get(key, 0) + 1
                self.max_waiting = max(self.max_waiting, waiting)
                await asyncio.sleep(LOCK_SAMPLE_S)
        finally:
            await connection.close()

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "every_s": LOCK_SAMPLE_S, "held_on_purged_tables": self.modes,
                "max_waiting_at_once": self.max_waiting, "waiting_samples_by_lock": self.waiting_on}


class Writer:
    """Stores 50 new verdicts per batch through the daemon's store path and folds them, timing each batch."""

    def __init__(self, store: Any) -> None:
        from shadowd.core.findings import Status
        from shadowd.core.results import SideResult, Usage
        from shadowd.records import VerdictRecord

        self.store = store
        self.index = 0
        self.latencies: list[float] = []
        self.make = lambda i: VerdictRecord(
            rollout=ROLLOUT, request_id=f"new-{i}", route="support-summary", status=Status.PASS, findings=(),
            comparator_version="bench", created_at=datetime.now(UTC),
            baseline=SideResult(model="claude-opus-4-6", ok=True, content=({"type": "text", "text": "x" * 1500},),
                                usage=Usage(500, 300), latency_ms=900.0, cost_usd=0.01),
            candidate=SideResult(model="claude-opus-4-7", ok=True, content=({"type": "text", "text": "y" * 1500},),
                                 usage=Usage(500, 300), latency_ms=950.0, cost_usd=0.01),
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = [self.make(self.index + i) for i in range(50)]
            self.index += 50
            started = time.perf_counter()
            await self.store.save(batch, [])
            await self.store.roll_up(ROLLOUT)
            self.latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)

    def figures(self) -> dict[str, Any]:
        values = self.latencies
        return {"batches": len(values), "p50_ms": round(percentile(values, 0.5) * 1000, 1),
                "p99_ms": round(percentile(values, 0.99) * 1000, 1), "max_ms": round(max(values) * 1000, 1)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from shadowd.adapters.sql_store import open_store
    from shadowd.retention import purge
    from shadowd.retention_config import RetentionConfig

    result: dict[str, Any] = {"machine": machine(), "verdicts_requested": args.verdicts}
    db_url = await create_database(args.db, "shadowd_bench_retention")
    try:
        log(f"retention: loading {args.verdicts:,} verdicts")
        loaded = await load(db_url, args.verdicts, args.dead_letters)
        now = loaded.pop("newest") + timedelta(days=1)
        result["load"] = loaded
        # Cutoffs at 70 % (verdicts, dead letters) and 90 % (outputs) of the loaded span: 5.17 and 2.39 days
        # for a million verdicts.
        span_days = 1.2 * args.verdicts / 86_400
        verdicts_days, outputs_days = round(1 + 0.3 * span_days, 2), round(1 + 0.1 * span_days, 2)
        config = RetentionConfig(verdicts_days=verdicts_days, outputs_days=outputs_days,
                                 dead_letters_days=verdicts_days, batch_rows=args.batch_rows)
        result["retention"] = {**config.model_dump(), "now": now.isoformat()}
        store = await open_store(db_url)
        try:
            log("retention: dry run")
            dry = await purge(store, config, now, dry_run=True)
            result["dry_run"] = dry.to_dict()

            writer = Writer(store)
            stop = asyncio.Event()
            writing = asyncio.create_task(writer.run(stop))
            await asyncio.sleep(args.writer_alone_s)
            alone = writer.figures()
            writer.latencies = []
            sampler = LockSampler(asyncpg_dsn(db_url))
            sampling = asyncio.create_task(sampler.run())
            log("retention: purging while the writer writes")
            started = time.perf_counter()
            done = await purge(store, config, now)
            purge_s = time.perf_counter() - started
            during = writer.figures()
            stop.set()
            sampler.stop.set()
            await writing
            await sampling
        finally:
            await store.close()
        rows = sum(f.rows for f in done.tables.values())
        result["purge"] = {
            **done.to_dict(),
            "total_s": round(purge_s, 2),
            "rows_touched": rows,
            "rows_per_s": round(rows / purge_s),
            "verdicts_deleted_per_s": round(done.tables["verdicts"].rows / purge_s),
            "longest_statement_ms": round(done.longest_statement_s * 1000, 1),
        }
        result["writer"] = {"alone": alone, "during_purge": during}
        result["locks"] = sampler.as_dict()
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        if args.keep:
            log(f"retention: kept database {db_url}")
    finally:
        if not args.keep:
            await drop_database(db_url)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="SQLAlchemy URL of any database on the server to use")
    parser.add_argument("--verdicts", type=int, default=1_000_000)
    parser.add_argument("--dead-letters", type=int, default=50_000)
    parser.add_argument("--batch-rows", type=int, default=5000)
    parser.add_argument("--writer-alone-s", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is logged)")
    parser.add_argument("--output", help="also write the JSON here")
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    text = json.dumps(figures, indent=2, default=str)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
