"""Verdict writes: insert-if-absent, the running totals kept in the same transaction, redelivery lookups."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from shadowd.adapters.sql_schema import (
    dead_letters,
    findings,
    noise_counts,
    rollout_calls,
    rollup_codes,
    rollup_grades,
    rollup_latency,
    rollup_status,
    verdicts,
)
from shadowd.adapters.sql_store.base import SqlBase
from shadowd.adapters.sql_store.errors import classify_store_error
from shadowd.adapters.sql_store.rows import dead_letter_row, facts_of_row, utc, verdict_row
from shadowd.core.spend import Spend
from shadowd.core.storable import escape_text
from shadowd.core.tally import GRADE_COUNTS, STATUS_COUNTS, RollupDelta, tally
from shadowd.records import DeadLetter, VerdictRecord, verdict_facts


class VerdictWrites(SqlBase):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
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
                # The rows are stored already counted: their totals are added below, in this transaction.
                rows = (
                    await connection.execute(
                        self._insert_verdict, [{**verdict_row(v), "rolled_up": True} for v in verdict_records]
                    )
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
                await self._add_totals(connection, tally(verdict_facts(v) for v in inserted_records))
                await self._count_noise_and_calls(connection, inserted_records)
            if letters:
                await connection.execute(self._insert_dead_letter, [dead_letter_row(d) for d in letters])
        return inserted

    async def _add_totals(self, connection: Any, delta: RollupDelta) -> None:
        """Add a batch's increments to the rollup tables (keys sorted, so concurrent writers cannot deadlock)."""
        await self._add(connection, rollup_status, ["rollout", "route", "status"], [
            {"rollout": k[0], "route": k[1], "status": k[2],
             **{name: getattr(v, name) for name in STATUS_COUNTS}}
            for k, v in delta.status.items()
        ])
        await self._add(connection, rollup_codes, ["rollout", "code", "noise"], [
            {"rollout": k[0], "code": k[1], "noise": k[2], "severity": v.severity, "n": v.n}
            for k, v in delta.codes.items()
        ])
        await self._add(connection, rollup_grades, ["rollout", "route"], [
            {"rollout": k[0], "route": k[1], **{name: getattr(v, name) for name in GRADE_COUNTS}}
            for k, v in delta.grades.items()
        ])
        await self._add(connection, rollup_latency, ["rollout", "side", "bucket"], [
            {"rollout": k[0], "side": k[1], "bucket": k[2], "n": v} for k, v in delta.latency.items()
        ])

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
            bucket = utc(record.created_at).replace(minute=0, second=0, microsecond=0)
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

    async def roll_up(self, rollout: str | None = None, batch: int = 20_000, max_batches: int | None = None) -> int:
        """Count verdicts stored without `save` (a bulk load, an older shadowd) into the totals; returns how many.

        Each verdict is counted exactly once: it is flagged in the same transaction that adds it to the
        totals, and on PostgreSQL concurrent callers skip each other's rows (FOR UPDATE SKIP LOCKED).
        This writes: the promoter's tick runs it, never a read.
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
            found: dict[int, list[tuple[str, str, bool]]] = {}
            ids = [row.id for row in rows]
            for start in range(0, len(ids), 5000):
                for row in await connection.execute(
                    select(findings.c.verdict_id, findings.c.code, findings.c.severity, findings.c.noise)
                    .where(findings.c.verdict_id.in_(ids[start : start + 5000]))
                    .order_by(findings.c.verdict_id, findings.c.id)
                ):
                    found.setdefault(row.verdict_id, []).append((row.code, row.severity, bool(row.noise)))
            facts = [replace(facts_of_row(row), findings=tuple(found.get(row.id, ()))) for row in rows]
            await self._add_totals(connection, tally(facts))
        return len(rows)

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
