"""The verdict store on SQLAlchemy 2 async: PostgreSQL (asyncpg) in production, SQLite embedded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, select, text, tuple_
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy import insert as generic_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shadowd.adapters.database_url import DatabaseUrlError, engine_target, normalise_url
from shadowd.adapters.sql_schema import (
    dead_letters,
    decisions,
    findings,
    noise_counts,
    rollout_calls,
    rollouts,
    rollup_codes,
    rollup_grades,
    rollup_latency,
    rollup_status,
    verdicts,
)
from shadowd.core.findings import Finding, Status
from shadowd.core.histogram import bucket_of, histogram_percentile
from shadowd.core.judge import Grading
from shadowd.core.results import SideResult
from shadowd.core.spend import Spend
from shadowd.core.storable import escape_text, finite_or_none, int32_or_none, storable_json
from shadowd.ports import StoreRefused, StoreUnavailable
from shadowd.records import DeadLetter, VerdictRecord

COMPARED = (Status.PASS.value, Status.REGRESSION.value, Status.NOISE.value)


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """An engine for `url`; a URL shadowd cannot use raises DatabaseUrlError (never showing its password)."""
    target = engine_target(url)
    if target.url.get_backend_name() == "sqlite":
        engine = create_async_engine(target.url, connect_args={"timeout": 30})
        _sqlite_pragmas(engine)
        return engine
    return create_async_engine(
        target.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, connect_args=target.connect_args
    )


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    from sqlalchemy import event

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def migrations_dir() -> Path:
    """The Alembic scripts: inside the installed wheel, or at the top of a checkout."""
    packaged = Path(__file__).resolve().parent.parent / "_migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


async def upgrade_database(engine: AsyncEngine, revision: str = "head") -> None:
    """Run Alembic migrations up to `revision` on this engine's database."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    def run(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Several processes may start at once: one migrates, the others wait and find it done.
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('shadowd.migrations'))"))
        config = AlembicConfig()
        config.set_main_option("script_location", str(migrations_dir()))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


@dataclass(frozen=True, slots=True)
class StoredVerdict:
    id: int
    verdict: VerdictRecord

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **self.verdict.to_dict()}


@dataclass(frozen=True, slots=True)
class VerdictFilter:
    status: str | None = None
    code: str | None = None
    route: str | None = None
    since: datetime | None = None


class SqlVerdictStore:
    """Insert-if-absent writes and the queries that reports, the CLI and the API need."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._insert_verdict = (
            self._insert(verdicts)
            .on_conflict_do_nothing(index_elements=["rollout", "request_id"])
            .returning(verdicts.c.id, verdicts.c.rollout, verdicts.c.request_id)
        )
        self._insert_dead_letter = self._insert(dead_letters).on_conflict_do_nothing(
            index_elements=["source", "partition", "offset"]
        )
        self._select_existing = select(verdicts.c.rollout, verdicts.c.request_id).where(
            tuple_(verdicts.c.rollout, verdicts.c.request_id).in_(bindparam("pairs", expanding=True))
        )
        self._lookups: list[tuple[Sequence[tuple[str, str]], asyncio.Future[set[tuple[str, str]]]]] = []
        self._lookup_task: asyncio.Task[None] | None = None

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    def _insert(self, table: Any) -> Any:
        if self.dialect == "postgresql":
            return pg_insert(table)
        if self.dialect == "sqlite":
            return sqlite_insert(table)
        return generic_insert(table)

    async def save(self, verdict_records: Sequence[VerdictRecord], letters: Sequence[DeadLetter]) -> int:
        try:
            return await self._save(verdict_records, letters)
        except Exception as exc:
            raise classify_store_error(exc) from exc

    async def _save(self, verdict_records: Sequence[VerdictRecord], letters: Sequence[DeadLetter]) -> int:
        inserted = 0
        async with self.engine.begin() as connection:
            if verdict_records:
                # One cached statement, executed for many rows (SQLAlchemy batches it into multi-row
                # INSERTs): compiling a fresh VALUES list per batch cost more than the insert itself.
                rows = (
                    await connection.execute(self._insert_verdict, [_verdict_row(v) for v in verdict_records])
                ).all()
                inserted = len(rows)
                by_key = {(v.rollout, v.request_id): v for v in verdict_records}
                finding_rows = [
                    {
                        "verdict_id": row.id,
                        "rollout": row.rollout,
                        "code": f.code,
                        "severity": f.severity.value,
                        # Details quote the model's answers, which may hold NUL.
                        "path": escape_text(f.path) if f.path is not None else None,
                        "detail": escape_text(f.detail),
                        "noise": f.noise,
                    }
                    for row in rows
                    for f in by_key[(row.rollout, row.request_id)].findings
                ]
                if finding_rows:
                    await connection.execute(findings.insert(), finding_rows)
                inserted_records = [by_key[(row.rollout, row.request_id)] for row in rows]
                await self._count_noise_and_calls(connection, inserted_records)
            if letters:
                await connection.execute(self._insert_dead_letter, [_dead_letter_row(d) for d in letters])
        return inserted

    async def _count_noise_and_calls(self, connection: Any, records: Sequence[VerdictRecord]) -> None:
        """Fold the new verdicts' noise observations and model calls into their running counts."""
        noise: dict[tuple[str, str, str, str, datetime], list[int]] = {}
        calls: dict[str, list[int]] = {}
        spend: dict[str, Spend] = {}
        for record in records:
            spent = record.model_calls
            if spent:
                entry = calls.setdefault(record.rollout, [0, 0, 0])
                entry[0] += 1
                entry[1] += record.baseline_repeat is not None
                entry[2] += spent
                if record.spend is not None:
                    spend[record.rollout] = spend.get(record.rollout, Spend()) + record.spend
            observation = record.noise_observation
            if observation is None or record.baseline is None:
                continue
            bucket = _utc(record.created_at).replace(minute=0, second=0, microsecond=0)
            for kind, key, differed in observation.rows():
                # Keys are paths into the model's answer, which may hold NUL: escaped like the answer itself.
                counts = noise.setdefault(
                    (escape_text(record.baseline.model)[:128], escape_text(record.route)[:256], kind,
                     escape_text(key)[:512], bucket), [0, 0],
                )
                counts[0] += 1
                counts[1] += differed
        await self._add(connection, noise_counts, ["baseline", "route", "kind", "key", "bucket"], [
            {"baseline": k[0], "route": k[1], "kind": k[2], "key": k[3], "bucket": k[4],
             "samples": v[0], "differed": v[1]}
            for k, v in sorted(noise.items())
        ])
        await self._add(connection, rollout_calls, ["rollout"], [
            {"rollout": k, "replayed": v[0], "noise_checked": v[1], "model_calls": v[2],
             **spend.get(k, Spend()).as_row()}
            for k, v in sorted(calls.items())
        ])

    async def noise_counts(
        self, baseline: str, since: datetime, route: str | None = None
    ) -> dict[str, list[tuple[str, str, int, int]]]:
        """Per route, (kind, key, samples, differed) summed over the buckets since `since`."""
        c = noise_counts.c
        query = (
            select(c.route, c.kind, c.key, func.sum(c.samples).label("samples"),
                   func.sum(c.differed).label("differed"))
            .where(and_(c.baseline == baseline, c.bucket >= since))
            .group_by(c.route, c.kind, c.key)
        )
        if route is not None:
            query = query.where(c.route == route)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        result: dict[str, list[tuple[str, str, int, int]]] = {}
        for row in rows:
            result.setdefault(row.route, []).append((row.kind, row.key, int(row.samples), int(row.differed)))
        return result

    async def model_calls(self, rollout: str) -> dict[str, int]:
        """Verdicts that made model calls, how many were noise-checked, and the calls they made."""
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(rollout_calls).where(rollout_calls.c.rollout == rollout))).first()
        if row is None:
            return {"replayed": 0, "noise_checked": 0, "model_calls": 0}
        return {"replayed": int(row.replayed), "noise_checked": int(row.noise_checked),
                "model_calls": int(row.model_calls)}

    async def call_spend(self, rollout: str) -> tuple[Spend, int]:
        """The rollout's calls and USD by purpose, and how many gate decisions (promote or rollback) it took."""
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(rollout_calls).where(rollout_calls.c.rollout == rollout))).first()
            taken = (await connection.execute(
                select(func.count()).select_from(decisions).where(
                    decisions.c.rollout == rollout, decisions.c.kind == "gate",
                    decisions.c.decision.in_(("promote", "rollback")),
                )
            )).scalar_one()
        total = Spend() if row is None else Spend.from_row(row._mapping)
        return total, int(taken)

    async def existing_verdicts(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Concurrent callers share one query: under load this is one round trip per batch, not per record."""
        if not pairs:
            return set()
        future: asyncio.Future[set[tuple[str, str]]] = asyncio.get_running_loop().create_future()
        self._lookups.append((pairs, future))
        if self._lookup_task is None or self._lookup_task.done():
            self._lookup_task = asyncio.create_task(self._run_lookups())
        return await future

    async def _run_lookups(self) -> None:
        await asyncio.sleep(0)  # let the callers of this loop turn join the batch
        while self._lookups:
            batch, self._lookups = self._lookups, []
            wanted = sorted({pair for pairs, _ in batch for pair in pairs})
            try:
                found = await self._query_existing(wanted)
            except Exception as exc:
                if len(batch) == 1:  # the caller gets the database error, it does not hang
                    if not batch[0][1].done():
                        batch[0][1].set_exception(exc)
                    continue
                # One caller's unstorable key must not fail its neighbours: ask again per caller, so
                # each gets its own answer or its own error (all of them do when the database is down).
                for pairs, future in batch:
                    try:
                        own = await self._query_existing(sorted(set(pairs)))
                    except Exception as own_exc:
                        if not future.done():
                            future.set_exception(own_exc)
                        continue
                    if not future.done():
                        future.set_result(own)
                continue
            for pairs, future in batch:
                if not future.done():
                    future.set_result({pair for pair in pairs if pair in found})

    async def _query_existing(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        async with self.engine.connect() as connection:
            for start in range(0, len(pairs), 500):
                chunk = list(pairs[start : start + 500])
                rows = await connection.execute(self._select_existing, {"pairs": chunk})
                found.update((r.rollout, r.request_id) for r in rows)
        return found

    # --- queries -------------------------------------------------------------------------------

    async def list_verdicts(
        self, rollout: str, where: VerdictFilter, limit: int = 100, before_id: int | None = None
    ) -> list[StoredVerdict]:
        """Newest first; `before_id` is the cursor (the last id of the previous page)."""
        query: Select[Any] = select(verdicts).where(verdicts.c.rollout == rollout)
        if where.status:
            query = query.where(verdicts.c.status == where.status)
        if where.route:
            query = query.where(verdicts.c.route == where.route)
        if where.since:
            query = query.where(verdicts.c.created_at >= where.since)
        if where.code:
            query = query.where(
                verdicts.c.id.in_(
                    select(findings.c.verdict_id).where(
                        and_(findings.c.rollout == rollout, findings.c.code == where.code)
                    )
                )
            )
        if before_id is not None:
            query = query.where(verdicts.c.id < before_id)
        query = query.order_by(verdicts.c.id.desc()).limit(limit)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [StoredVerdict(int(row["id"]), _verdict_from_row(row)) for row in rows]

    async def get_verdict(self, rollout: str, request_id: str) -> StoredVerdict | None:
        query = select(verdicts).where(and_(verdicts.c.rollout == rollout, verdicts.c.request_id == request_id))
        async with self.engine.connect() as connection:
            row = (await connection.execute(query)).mappings().first()
        return StoredVerdict(int(row["id"]), _verdict_from_row(row)) if row else None

    async def rollout_names(self) -> list[str]:
        async with self.engine.connect() as connection:
            names = set((await connection.execute(select(rollouts.c.name))).scalars())
            names.update((await connection.execute(select(verdicts.c.rollout).distinct())).scalars())
        return sorted(names)

    async def roll_up(self, rollout: str | None = None, batch: int = 20_000, max_batches: int | None = None) -> int:
        """Fold verdicts not yet counted into the rollup tables; returns how many were folded.

        Each verdict is counted exactly once: it is flagged in the same transaction that adds it to the
        totals, and on PostgreSQL concurrent callers skip each other's rows (FOR UPDATE SKIP LOCKED).
        """
        folded = 0
        batches = 0
        while max_batches is None or batches < max_batches:
            count = await self._roll_up_batch(rollout, batch)
            folded += count
            batches += 1
            if count < batch:
                break
        return folded

    async def _roll_up_batch(self, rollout: str | None, batch: int) -> int:
        # `NOT rolled_up`, exactly as the partial index is defined, so PostgreSQL uses it.
        pending = select(verdicts.c.id).where(~verdicts.c.rolled_up)
        if rollout is not None:
            pending = pending.where(verdicts.c.rollout == rollout)
        pending = pending.order_by(verdicts.c.id).limit(batch)
        if self.dialect == "postgresql":
            pending = pending.with_for_update(skip_locked=True)
        c = verdicts.c
        async with self.engine.begin() as connection:
            rows = (
                await connection.execute(
                    verdicts.update()
                    .where(c.id.in_(pending.scalar_subquery()))
                    .values(rolled_up=True)
                    .returning(
                        c.id, c.rollout, c.route, c.status, c.baseline_noise_blocking, c.baseline_latency_ms,
                        c.candidate_latency_ms, c.baseline_cost_usd, c.candidate_cost_usd,
                        c.grading, c.baseline_acceptable, c.candidate_acceptable, c.grading_cost_usd,
                    )
                )
            ).all()
            if not rows:
                return 0
            status_rows: dict[tuple[str, str, str], list[float]] = {}
            latency_rows: dict[tuple[str, str, int], int] = {}
            grade_rows: dict[tuple[str, str], list[float]] = {}
            for row in rows:
                compared = row.status in COMPARED
                regressed = row.status == Status.REGRESSION.value
                graded = row.grading == "graded"
                # McNemar pairing: the judge's discordant pair in the candidate's favour is the
                # baseline-side count that grader noise on a clean candidate balances (docs/JUDGE.md).
                candidate_better = graded and row.baseline_acceptable is False and row.candidate_acceptable is True
                noisy = compared and (bool(row.baseline_noise_blocking) or candidate_better)
                if compared and row.grading is not None:
                    g = grade_rows.setdefault((row.rollout, row.route), [0, 0, 0, 0, 0, 0, 0, 0, 0.0])
                    g[0] += 1
                    g[1] += graded
                    g[2] += row.grading == "failed"
                    g[3] += row.grading == "over_budget"
                    g[4] += graded and row.baseline_acceptable is True
                    g[5] += graded and row.candidate_acceptable is True
                    g[6] += graded and row.baseline_acceptable is True and row.candidate_acceptable is False
                    g[7] += candidate_better
                    g[8] += row.grading_cost_usd or 0.0
                totals = status_rows.setdefault((row.rollout, row.route, row.status), [0, 0, 0, 0, 0.0, 0.0])
                totals[0] += 1
                totals[1] += regressed
                totals[2] += noisy
                totals[3] += regressed and noisy
                totals[4] += row.baseline_cost_usd or 0.0
                totals[5] += row.candidate_cost_usd or 0.0
                if compared:
                    for side, value in (("baseline", row.baseline_latency_ms), ("candidate", row.candidate_latency_ms)):
                        if value is not None:
                            key = (row.rollout, side, bucket_of(value))
                            latency_rows[key] = latency_rows.get(key, 0) + 1
            code_rows: dict[tuple[str, str, bool], list[Any]] = {}
            ids = [row.id for row in rows]
            for start in range(0, len(ids), 5000):
                for row in await connection.execute(
                    select(
                        findings.c.rollout, findings.c.code, findings.c.noise, findings.c.severity,
                        func.count(func.distinct(findings.c.verdict_id)).label("n"),
                    )
                    .where(findings.c.verdict_id.in_(ids[start : start + 5000]))
                    .group_by(findings.c.rollout, findings.c.code, findings.c.noise, findings.c.severity)
                ):
                    entry = code_rows.setdefault((row.rollout, row.code, bool(row.noise)), [row.severity, 0])
                    entry[1] += int(row.n)
            # Sorted keys: concurrent roll-ups lock the total rows in one order, so they cannot deadlock.
            await self._add(connection, rollup_status, ["rollout", "route", "status"], [
                {"rollout": k[0], "route": k[1], "status": k[2], "n": v[0], "candidate_regressions": v[1],
                 "baseline_noise_regressions": v[2], "both_regressed": v[3], "cost_usd_baseline": v[4],
                 "cost_usd_candidate": v[5]}
                for k, v in sorted(status_rows.items())
            ])
            await self._add(connection, rollup_codes, ["rollout", "code", "noise"], [
                {"rollout": k[0], "code": k[1], "noise": k[2], "severity": v[0], "n": v[1]}
                for k, v in sorted(code_rows.items())
            ])
            await self._add(connection, rollup_grades, ["rollout", "route"], [
                {"rollout": k[0], "route": k[1], **dict(zip(_GRADE_COUNTS, v, strict=True))}
                for k, v in sorted(grade_rows.items())
            ])
            await self._add(connection, rollup_latency, ["rollout", "side", "bucket"], [
                {"rollout": k[0], "side": k[1], "bucket": k[2], "n": v} for k, v in sorted(latency_rows.items())
            ])
        return len(rows)

    async def _add(self, connection: Any, table: Any, keys: list[str], values: list[dict[str, Any]]) -> None:
        """Upsert that adds the numeric columns to the existing totals."""
        if not values:
            return
        statement = self._insert(table).values(values)
        summed = {
            column.name: column + getattr(statement.excluded, column.name)
            for column in table.columns
            if column.name not in keys and column.name != "severity"
        }
        await connection.execute(statement.on_conflict_do_update(index_elements=keys, set_=summed))

    async def verdict_figures(self, rollout: str, stage_started_compared: int = 0) -> dict[str, Any]:
        """Counts, per-code and per-route breakdowns, latency percentiles and cost for one rollout.

        Reads the rollup tables after folding in what is pending, so it costs the same at a thousand
        verdicts as at a million.
        """
        await self.roll_up(rollout)
        async with self.engine.connect() as connection:
            status_rows = (
                await connection.execute(select(rollup_status).where(rollup_status.c.rollout == rollout))
            ).all()
            code_rows = (
                await connection.execute(select(rollup_codes).where(rollup_codes.c.rollout == rollout))
            ).all()
            latency_rows = (
                await connection.execute(select(rollup_latency).where(rollup_latency.c.rollout == rollout))
            ).all()
            grade_rows = (
                await connection.execute(select(rollup_grades).where(rollup_grades.c.rollout == rollout))
            ).all()
            judge_streak, judge_error = await self._judge_streak(connection, rollout)
        counts: dict[str, int] = {status.value: 0 for status in Status}
        by_route: dict[str, dict[str, int]] = {}
        samples = candidate = baseline = both = 0
        cost_b = cost_c = 0.0
        for row in status_rows:
            counts[row.status] = counts.get(row.status, 0) + int(row.n)
            by_route.setdefault(row.route, {})[row.status] = int(row.n)
            if row.status in COMPARED:
                samples += int(row.n)
                candidate += int(row.candidate_regressions)
                baseline += int(row.baseline_noise_regressions)
                both += int(row.both_regressed)
                cost_b += float(row.cost_usd_baseline)
                cost_c += float(row.cost_usd_candidate)
        by_code = {
            row.code: {"severity": row.severity, "count": int(row.n)} for row in code_rows if not row.noise
        }
        noise_by_code = {row.code: int(row.n) for row in code_rows if row.noise}
        latency: dict[str, dict[str, float | None]] = {}
        for side in ("baseline", "candidate"):
            histogram = {int(row.bucket): int(row.n) for row in latency_rows if row.side == side}
            latency[side] = {"p50": histogram_percentile(histogram, 0.5), "p95": histogram_percentile(histogram, 0.95)}
        return {
            "counts": counts,
            "by_code": by_code,
            "noise_by_code": noise_by_code,
            "by_route": by_route,
            "samples": samples,
            "stage_samples": max(samples - stage_started_compared, 0),
            "candidate_regressions": candidate,
            "baseline_noise_regressions": baseline,
            "both_regressed": both,
            "cost_usd": {"baseline": cost_b, "candidate": cost_c},
            "latency_ms": latency,
            "grades": _grade_figures(grade_rows, judge_streak, judge_error),
        }

    async def _judge_streak(self, connection: Any, rollout: str) -> tuple[int, str | None]:
        """How many of the latest grading attempts failed in a row (up to JUDGE_STREAK_WINDOW), and the
        latest failure's error: a judge that answers nothing shows up here whatever the traffic rate."""
        rows = (
            await connection.execute(
                select(verdicts.c.grading, verdicts.c.grades)
                .where(verdicts.c.rollout == rollout, verdicts.c.grading.in_(("graded", "failed")))
                .order_by(verdicts.c.id.desc())
                .limit(JUDGE_STREAK_WINDOW)
            )
        ).all()
        streak = 0
        for row in rows:
            if row.grading != "failed":
                break
            streak += 1
        error = None
        if streak and isinstance(rows[0].grades, dict):
            error = Grading.from_dict(rows[0].grades).error
        return streak, error

    async def error_reason_counts(self, rollout: str) -> dict[str, int]:
        """Error verdicts of one rollout by reason (an index range over its error verdicts only)."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(verdicts.c.error_reason, func.count().label("n"))
                .where(verdicts.c.rollout == rollout, verdicts.c.status == Status.ERROR.value)
                .group_by(verdicts.c.error_reason)
            )
            return {str(row.error_reason or "unknown"): int(row.n) for row in rows}

    async def route_figures(self, rollout: str) -> dict[str, dict[str, Any]]:
        """Per route: status counts, the paired regression counts and cost over compared verdicts (rollups)."""
        await self.roll_up(rollout)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(rollup_status).where(rollup_status.c.rollout == rollout))).all()
            grade_rows = (
                await connection.execute(select(rollup_grades).where(rollup_grades.c.rollout == rollout))
            ).all()
        grades = {row.route: row for row in grade_rows}
        routes: dict[str, dict[str, Any]] = {}
        for row in rows:
            entry = routes.setdefault(row.route, {
                "counts": {}, "samples": 0, "candidate_regressions": 0, "baseline_noise_regressions": 0,
                "both_regressed": 0, "cost_usd": {"baseline": 0.0, "candidate": 0.0},
            })
            entry["counts"][row.status] = int(row.n)
            if row.status in COMPARED:
                entry["samples"] += int(row.n)
                entry["candidate_regressions"] += int(row.candidate_regressions)
                entry["baseline_noise_regressions"] += int(row.baseline_noise_regressions)
                entry["both_regressed"] += int(row.both_regressed)
                entry["cost_usd"]["baseline"] += float(row.cost_usd_baseline)
                entry["cost_usd"]["candidate"] += float(row.cost_usd_candidate)
        for route, entry in routes.items():
            graded = grades.get(route)
            entry["grades"] = {
                "graded": int(graded.graded), "baseline_acceptable": int(graded.baseline_acceptable),
                "candidate_acceptable": int(graded.candidate_acceptable),
            } if graded is not None else None
        return routes

    async def route_latencies(self, rollout: str, route: str, limit: int = 20_000) -> dict[str, list[float]]:
        """Latencies per side of the newest `limit` compared verdicts of one route."""
        c = verdicts.c
        query = (
            select(c.baseline_latency_ms, c.candidate_latency_ms)
            .where(and_(c.rollout == rollout, c.route == route, c.status.in_(COMPARED)))
            .order_by(c.id.desc())
            .limit(limit)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return {
            "baseline": [float(r.baseline_latency_ms) for r in rows if r.baseline_latency_ms is not None],
            "candidate": [float(r.candidate_latency_ms) for r in rows if r.candidate_latency_ms is not None],
        }

    async def regression_timeline(self, rollout: str, buckets: int = 48) -> list[dict[str, Any]]:
        """Compared verdicts per time bucket (by created_at): n, candidate and baseline regressions, both.

        One aggregate query, so it costs little more at a million verdicts than at a thousand.
        """
        c = verdicts.c
        compared = and_(c.rollout == rollout, c.status.in_(COMPARED))
        async with self.engine.connect() as connection:
            first, last = (await connection.execute(select(func.min(c.created_at), func.max(c.created_at))
                                                    .where(compared))).one()
            if first is None or last is None:
                return []
            start, end = _utc(first).timestamp(), _utc(last).timestamp()
            width = max((end - start) / buckets, 1e-3)
            if self.dialect == "postgresql":
                epoch: Any = func.extract("epoch", c.created_at)
            else:
                epoch = (func.julianday(c.created_at) - 2440587.5) * 86400.0
            bucket = func.min(func.floor((epoch - start) / width), buckets - 1) if self.dialect != "postgresql" \
                else func.least(func.floor((epoch - start) / width), buckets - 1)
            regressed = (c.status == Status.REGRESSION.value)
            from sqlalchemy import Integer, case, cast

            rows = (await connection.execute(
                select(
                    bucket.label("b"),
                    func.count().label("n"),
                    func.sum(case((regressed, 1), else_=0)).label("candidate"),
                    func.sum(cast(c.baseline_noise_blocking, Integer)).label("baseline"),
                    func.sum(case((and_(regressed, c.baseline_noise_blocking), 1), else_=0)).label("both"),
                ).where(compared).group_by(bucket).order_by(bucket)
            )).all()
        return [
            {"start": start + width * int(row.b), "end": start + width * (int(row.b) + 1), "n": int(row.n),
             "candidate": int(row.candidate or 0), "baseline": int(row.baseline or 0), "both": int(row.both or 0)}
            for row in rows
        ]

    async def findings_by_code_route(self, rollout: str) -> list[dict[str, Any]]:
        """Verdicts with a finding not explained by noise, per code and route."""
        f, v = findings.c, verdicts.c
        query = (
            select(f.code, f.severity, v.route, func.count(func.distinct(f.verdict_id)).label("n"))
            .select_from(findings.join(verdicts, verdicts.c.id == f.verdict_id))
            .where(and_(f.rollout == rollout, ~f.noise))
            .group_by(f.code, f.severity, v.route)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [{"code": r.code, "severity": r.severity, "route": r.route, "count": int(r.n)} for r in rows]

    async def noisy_paths(self, rollout: str, limit: int = 15) -> list[dict[str, Any]]:
        """Where the baseline disagrees with itself most: noise findings per route, code and path."""
        f, v = findings.c, verdicts.c
        n = func.count(func.distinct(f.verdict_id)).label("n")
        query = (
            select(v.route, f.code, f.path, n)
            .select_from(findings.join(verdicts, verdicts.c.id == f.verdict_id))
            .where(and_(f.rollout == rollout, f.noise))
            .group_by(v.route, f.code, f.path)
            .order_by(n.desc(), v.route, f.code)
            .limit(limit)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [{"route": r.route, "code": r.code, "path": r.path, "count": int(r.n)} for r in rows]

    async def latency_histograms(self, rollout: str) -> dict[str, dict[int, int]]:
        """Per side, the latency histogram of compared verdicts (shadowd.core.histogram buckets)."""
        await self.roll_up(rollout)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(rollup_latency).where(rollup_latency.c.rollout == rollout))).all()
        histograms: dict[str, dict[int, int]] = {"baseline": {}, "candidate": {}}
        for row in rows:
            histograms.setdefault(row.side, {})[int(row.bucket)] = int(row.n)
        return histograms

    async def example_request_ids(self, rollout: str, codes: Sequence[str], per_code: int = 3) -> dict[str, list[str]]:
        """The newest request ids with a finding of each code not explained by noise (an index walk per code)."""
        examples: dict[str, list[str]] = {}
        async with self.engine.connect() as connection:
            for code in codes:
                latest = (
                    select(findings.c.verdict_id)
                    .where(and_(findings.c.rollout == rollout, findings.c.code == code, ~findings.c.noise))
                    .order_by(findings.c.verdict_id.desc())
                    .limit(per_code * 4)
                    .subquery()
                )
                rows = await connection.execute(
                    select(verdicts.c.request_id)
                    .where(verdicts.c.id.in_(select(latest.c.verdict_id)))
                    .order_by(verdicts.c.id.desc())
                )
                examples[code] = list(dict.fromkeys(row.request_id for row in rows))[:per_code]
        return examples

    async def latest_decision(self, name: str, decision: str) -> dict[str, Any] | None:
        """The newest audit entry with this decision (e.g. the rollback that stopped a rollout)."""
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(decisions)
                    .where(and_(decisions.c.rollout == name, decisions.c.decision == decision))
                    .order_by(decisions.c.id.desc())
                    .limit(1)
                )
            ).mappings().first()
        return {**dict(row), "at": _utc(row["at"]).isoformat()} if row else None

    async def dead_letter_counts(self) -> dict[str, int]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(dead_letters.c.reason, func.count().label("n")).group_by(dead_letters.c.reason)
            )
            return {row.reason: int(row.n) for row in rows}

    async def list_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit))
            return [
                {
                    "id": row.id,
                    "source": row.source,
                    "partition": row.partition,
                    "offset": row.offset,
                    "reason": row.reason,
                    "detail": row.detail,
                    "payload": bytes(row.payload).decode("utf-8", errors="replace"),
                    "payload_truncated": bool(row.payload_truncated),
                    "created_at": _utc(row.created_at).isoformat(),
                }
                for row in rows
            ]

    # --- rollout state and the decision audit trail ------------------------------------------------

    async def ensure_rollout(self, name: str, baseline: str, candidate: str, now: datetime) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                self._insert(rollouts)
                .values(
                    name=name,
                    baseline=baseline,
                    candidate=candidate,
                    stage_index=0,
                    state="active",
                    stage_started_compared=0,
                    stage_started_at=now,
                    created_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["name"])
            )

    async def rollout_state(self, name: str) -> dict[str, Any] | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(rollouts).where(rollouts.c.name == name))).mappings().first()
        if row is None:
            return None
        state = dict(row)
        for key in ("stage_started_at", "created_at", "updated_at"):
            state[key] = _utc(state[key])
        return state

    async def record_decision(
        self,
        name: str,
        *,
        at: datetime,
        kind: str,
        actor: str,
        action: str,
        decision: str,
        stage_index: int,
        canary_percent: int,
        reasons: Sequence[str],
        figures: dict[str, Any],
        new_state: str | None = None,
        stage_started_compared: int | None = None,
    ) -> int:
        """Append to the audit trail and move the rollout's state, in one transaction."""
        async with self.engine.begin() as connection:
            values: dict[str, Any] = {"stage_index": stage_index, "updated_at": at}
            if new_state is not None:
                values["state"] = new_state
            if stage_started_compared is not None:
                values["stage_started_compared"] = stage_started_compared
                values["stage_started_at"] = at
            await connection.execute(rollouts.update().where(rollouts.c.name == name).values(**values))
            result = await connection.execute(
                decisions.insert().values(
                    rollout=name,
                    at=at,
                    kind=kind,
                    actor=actor,
                    action=action,
                    decision=decision,
                    stage_index=stage_index,
                    canary_percent=canary_percent,
                    reasons=list(reasons),
                    figures=_jsonable(figures),
                )
            )
            return int(result.inserted_primary_key[0]) if result.inserted_primary_key else 0

    async def list_decisions(self, name: str, limit: int = 100) -> list[dict[str, Any]]:
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(decisions).where(decisions.c.rollout == name).order_by(decisions.c.id.desc()).limit(limit)
                )
            ).mappings()
            return [{**dict(row), "at": _utc(row["at"]).isoformat()} for row in rows]


# SQLSTATE classes (PostgreSQL appendix A) that describe the rows sent, not the server's state:
# 22 data exception, 23 integrity constraint violation, 54 program limit exceeded (an index row too big).
_REFUSED_CLASSES = frozenset({"22", "23", "54"})
# Classes that say the server cannot work just now: 08 connection, 40 rollback (serialization, deadlock),
# 53 insufficient resources, 55 lock not available, 57 operator intervention (shutdown), 58 system error.
_UNAVAILABLE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58", "XX"})
_CONDITIONS = {
    "22001": "string_too_long",
    "22003": "number_out_of_range",
    "22007": "invalid_datetime",
    "22008": "datetime_out_of_range",
    "22021": "character_not_in_repertoire",
    "22P02": "invalid_text_representation",
    "22P05": "untranslatable_character",
    "23502": "not_null_violation",
    "23505": "unique_violation",
    "54000": "value_too_large",
}


def classify_store_error(exc: BaseException) -> BaseException:
    """StoreRefused for errors about the rows, StoreUnavailable for errors about the server, else `exc`.

    The cause chain is read, so a driver error wrapped by SQLAlchemy is seen for what it is. Errors raised
    while converting a parameter (a lone surrogate, a year-0 timestamp) never reached the server: they
    are the rows' own and fail the same way every time.
    """
    if isinstance(exc, StoreRefused | StoreUnavailable):
        return exc
    message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    causes = _causes(exc)
    for cause in causes:  # the server's own word first
        state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(state, str) and len(state) == 5 and state != "22000":  # 22000: asyncpg's own, below
            if state[:2] in _REFUSED_CLASSES:
                return StoreRefused(_CONDITIONS.get(state, f"sqlstate_{state}"), message)
            if state[:2] in _UNAVAILABLE_CLASSES:
                return StoreUnavailable(message)
    for cause in causes:  # then what went wrong before anything was sent
        if isinstance(cause, UnicodeError):
            return StoreRefused("invalid_unicode", message)
        if isinstance(cause, OverflowError):
            return StoreRefused("out_of_range", message)
        if isinstance(cause, ValueError | TypeError | sqlalchemy_exc.DataError | sqlalchemy_exc.IntegrityError):
            return StoreRefused("unconvertible_value", message)
    for cause in causes:
        if isinstance(
            cause,
            OSError | ConnectionError | TimeoutError | sqlalchemy_exc.DisconnectionError
            | sqlalchemy_exc.OperationalError | sqlalchemy_exc.InterfaceError | sqlalchemy_exc.TimeoutError,
        ):
            return StoreUnavailable(message)
        if isinstance(cause, sqlalchemy_exc.DBAPIError) and cause.connection_invalidated:
            return StoreUnavailable(message)
    return exc


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) and orig not in chain else (
            current.__cause__ or current.__context__
        )
    return chain


JUDGE_STREAK_WINDOW = 200
_GRADE_COUNTS = (
    "judged", "graded", "failed", "over_budget", "baseline_acceptable", "candidate_acceptable",
    "candidate_worse", "candidate_better", "cost_usd",
)


def _grade_figures(rows: Sequence[Any], streak: int, error: str | None) -> dict[str, Any]:
    """The judge's totals for one rollout, overall and per route."""

    def counts(selected: Sequence[Any]) -> dict[str, Any]:
        totals: dict[str, Any] = {name: sum(getattr(r, name) for r in selected) for name in _GRADE_COUNTS}
        totals = {k: (float(v) if k == "cost_usd" else int(v)) for k, v in totals.items()}
        return totals

    return {
        **counts(rows),
        "by_route": {row.route: counts([row]) for row in sorted(rows, key=lambda r: r.route)},
        "failed_streak": streak,
        "last_error": error,
    }


def _verdict_row(v: VerdictRecord) -> dict[str, Any]:
    """The row for one verdict, made storable: the verdict was decided on the original text, and
    what PostgreSQL cannot hold (NUL, lone surrogates, NaN) is escaped or nulled only here.

    `request_id` is stored as given: the envelope parser refuses one that is not storable, and a verdict
    built some other way that still holds one is refused by the store and dead-lettered by the writer.
    """
    b, c = v.baseline, v.candidate
    grading = v.grading
    return {
        "grading": grading.status if grading else None,
        "grades": storable_json(grading.to_dict()) if grading else None,
        "baseline_acceptable": grading.baseline_acceptable if grading else None,
        "candidate_acceptable": grading.candidate_acceptable if grading else None,
        "grading_cost_usd": finite_or_none(grading.cost_usd) if grading else None,
        "rollout": v.rollout,
        "request_id": v.request_id,
        "route": escape_text(v.route),
        "status": v.status.value,
        "reason": escape_text(v.reason) if v.reason is not None else None,
        "error_reason": v.error_reason,
        "findings": storable_json([f.to_dict() for f in v.findings]),
        "baseline": storable_json(b.to_dict()) if b else None,
        "candidate": storable_json(c.to_dict()) if c else None,
        "baseline_repeat": storable_json(v.baseline_repeat.to_dict()) if v.baseline_repeat else None,
        "adaptations": storable_json(list(v.adaptations)),
        "attributes": storable_json(dict(v.attributes)),
        "request": storable_json(v.request),
        "comparator_version": v.comparator_version,
        "baseline_noise_blocking": v.baseline_noise_blocking,
        "baseline_model": escape_text(b.model) if b else None,
        "candidate_model": escape_text(c.model) if c else None,
        # Infinite latencies or costs would poison every sum the rollups keep.
        "baseline_latency_ms": finite_or_none(b.latency_ms) if b else None,
        "candidate_latency_ms": finite_or_none(c.latency_ms) if c else None,
        "baseline_cost_usd": finite_or_none(b.cost_usd) if b else None,
        "candidate_cost_usd": finite_or_none(c.cost_usd) if c else None,
        "baseline_output_tokens": int32_or_none(b.usage.output_tokens) if b else None,
        "candidate_output_tokens": int32_or_none(c.usage.output_tokens) if c else None,
        "source": escape_text(v.source) if v.source is not None else None,
        "partition": v.partition,
        "offset": v.offset,
        "captured_at": v.captured_at,
        "created_at": v.created_at,
    }


def _dead_letter_row(d: DeadLetter) -> dict[str, Any]:
    d = d.capped()
    return {
        # A file path read from a non-UTF-8 file system holds surrogate escapes.
        "source": escape_text(d.source)[:512],
        "partition": d.partition,
        "offset": d.offset,
        "reason": escape_text(d.reason)[:128],
        "detail": escape_text(d.detail[:4000]),
        "payload": d.payload,
        "payload_truncated": d.payload_truncated,
        "created_at": d.created_at,
    }


def _verdict_from_row(row: Any) -> VerdictRecord:
    def side(value: Any) -> SideResult | None:
        return SideResult.from_dict(value) if isinstance(value, dict) else None

    return VerdictRecord(
        rollout=row["rollout"],
        request_id=row["request_id"],
        route=row["route"],
        status=Status(row["status"]),
        findings=tuple(Finding.from_dict(f) for f in row["findings"] or ()),
        comparator_version=row["comparator_version"],
        created_at=_utc(row["created_at"]),
        baseline=side(row["baseline"]),
        candidate=side(row["candidate"]),
        baseline_repeat=side(row["baseline_repeat"]),
        adaptations=tuple(row["adaptations"] or ()),
        reason=row["reason"],
        error_reason=row["error_reason"],
        baseline_noise_blocking=bool(row["baseline_noise_blocking"]),
        grading=Grading.from_dict(row["grades"]) if isinstance(row["grades"], dict) else None,
        captured_at=_utc(row["captured_at"]) if row["captured_at"] else None,
        attributes=dict(row["attributes"] or {}),
        request=row["request"] if isinstance(row["request"], dict) else None,
        source=row["source"],
        partition=row["partition"],
        offset=row["offset"],
    )


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value


class SchemaNotReady(Exception):
    """The database is missing, has no shadowd schema, or one at another revision than this shadowd's."""


def head_revision() -> str:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir()))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir()))
    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


async def current_revision(engine: AsyncEngine) -> str | None:
    """The schema revision stamped in the database, or None when it has no shadowd schema."""
    from sqlalchemy import inspect

    async with engine.connect() as connection:
        has_table = await connection.run_sync(lambda sync: inspect(sync).has_table("alembic_version"))
        if not has_table:
            return None
        return (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database or another engine)."""
    normalised = normalise_url(url)
    if not normalised.startswith("sqlite"):
        return None
    path = normalised.split(":///", 1)[-1].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


async def open_existing_store(url: str) -> SqlVerdictStore:
    """Open a database without creating or migrating it; SchemaNotReady says what to run instead."""
    hint = "create or migrate it with `shadowd db upgrade`"
    file = sqlite_file(url)
    if normalise_url(url).startswith("sqlite") and (file is None or not file.exists()):
        raise SchemaNotReady(f"no database at {url}: {hint}")
    engine = create_engine(url)
    try:
        revision = await current_revision(engine)
        head = head_revision()
        if revision is None:
            raise SchemaNotReady(f"the database has no shadowd schema: {hint}")
        if revision != head:
            if revision in known_revisions():
                raise SchemaNotReady(f"the database schema is at {revision}, this shadowd needs {head}: "
                                     "migrate it with `shadowd db upgrade`")
            raise SchemaNotReady(f"the database schema is at {revision}, newer than this shadowd knows "
                                 f"(head {head}): upgrade shadowd")
    except BaseException:
        await engine.dispose()
        raise
    return SqlVerdictStore(engine)


async def downgrade_database(engine: AsyncEngine, revision: str = "-1") -> None:
    """Run Alembic migrations down to `revision` (by default one step)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    def run(connection: Connection) -> None:
        config = AlembicConfig()
        config.set_main_option("script_location", str(migrations_dir()))
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def open_store(url: str, *, upgrade: bool = False) -> SqlVerdictStore:
    engine = create_engine(url)
    if upgrade:
        await upgrade_database(engine)
    return SqlVerdictStore(engine)


__all__ = [
    "DatabaseUrlError",
    "SqlVerdictStore",
    "StoredVerdict",
    "VerdictFilter",
    "create_engine",
    "normalise_url",
    "open_existing_store",
    "open_store",
    "upgrade_database",
]
