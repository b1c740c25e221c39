# Over 400 lines: one purge over five tables; its batches share the lock set-up, the deadline and the
# statement timing, which split by table would be repeated or passed around.
"""The retention purge on SQL (PostgreSQL and SQLite): bounded batches, short transactions.

What it deletes or empties, and what it never touches (docs/RETENTION.md):

- `verdicts` (and their `findings`) created before the verdict cutoff, but only rows already folded
  into the rollup tables (`rolled_up`), so report totals and the gate's evidence stay as they were;
  and for an `active` or `paused` rollout, never a verdict of its current stage (created at or after
  `rollouts.stage_started_at`), nor any verdict of a configured rollout the promoter has not yet seen.
- the stored outputs of verdicts created before the outputs cutoff: each side's `content`, the
  `request` summary and the judge's `reason`s; the row, its findings, status, models, latency, cost
  and tokens stay. How far this got per rollout is kept in `retention_marks`, so a row is read once.
- `dead_letters` created before the dead-letter cutoff.
- `noise_counts` buckets that start before the noise cutoff (twice the window the noise model reads).
- never the rollup tables, the decision audit trail, rollout state or call counts.

Every statement touches at most `batch_rows` rows found through an index ((rollout, created_at) for
verdicts, created_at for dead letters, bucket for noise counts), in its own short transaction; on
PostgreSQL the rows are claimed with FOR UPDATE SKIP LOCKED and a lock_timeout bounds any wait, so a
purge never queues behind, or holds up, the writer's inserts and the roll-up.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, and_, any_, bindparam, func, literal_column, null, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shadowd.adapters.sql_schema import (
    dead_letters,
    findings,
    noise_counts,
    retention_marks,
    rollouts,
    verdicts,
)
from shadowd.core.retention import Cutoffs, PurgeResult, verdict_cutoff

OUTPUTS_TASK = "outputs"
# The longest a purge statement waits for a row lock on PostgreSQL before it gives up until next time.
LOCK_TIMEOUT_MS = 2000


@dataclass(frozen=True, slots=True)
class _RolloutCut:
    name: str
    verdicts_before: datetime | None  # None: keep every verdict of this rollout
    protected_from: datetime | None  # the current stage's start when it holds back the cutoff


class SqlRetention:
    """Runs one purge over the store's tables; the caller decides the cutoffs (shadowd.retention)."""

    def __init__(self, engine: AsyncEngine, batch_rows: int = 5000) -> None:
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be positive, got {batch_rows}")
        self.engine = engine
        self.dialect = engine.dialect.name
        self.batch_rows = batch_rows

    async def purge(
        self,
        cutoffs: Cutoffs,
        *,
        configured: Collection[str] = (),
        dry_run: bool = False,
        deadline: float | None = None,
    ) -> PurgeResult:
        """Purge (or with `dry_run` only count) what the cutoffs allow; stops early at `deadline`
        (time.monotonic) between statements and says so in `complete`. `configured` names the rollouts
        of the config: one without a state row yet keeps all its verdicts."""
        started = time.monotonic()
        result = PurgeResult(dry_run=dry_run)
        names = await self._rollout_names()
        cuts = await self._rollout_cuts(names, cutoffs.verdicts_before, set(configured))
        marks = await self._marks()
        for cut in cuts:
            if dry_run:
                await self._count_rollout(cut, cutoffs.outputs_before, marks.get(cut.name), result)
                continue
            if cut.verdicts_before is not None:
                if not await self._delete_verdicts(cut, deadline, result):
                    result.complete = False
                    break
            if cutoffs.outputs_before is not None:
                if not await self._empty_outputs(cut.name, cutoffs.outputs_before, marks.get(cut.name), deadline,
                                                 result):
                    result.complete = False
                    break
        # Tables purged by age alone: (table, its age column, the cutoff, the batched delete).
        by_age = (
            ("dead_letters", dead_letters.c.created_at, cutoffs.dead_letters_before, self._delete_dead_letters),
            ("noise_counts", noise_counts.c.bucket, cutoffs.noise_counts_before, self._delete_noise_counts),
        )
        for table, age, before, delete in by_age:
            if before is None or not result.complete:
                continue
            if dry_run:
                result.tables[table].rows = await self._scalar(select(func.count()).where(age < before))
            elif not await delete(before, deadline, result):
                result.complete = False
        await self._oldest_kept(cuts, cutoffs, result)
        result.protected_verdicts = await self._protected_count(cuts, cutoffs.verdicts_before)
        result.elapsed_s = time.monotonic() - started
        return result

    # --- which verdicts of which rollout --------------------------------------------------------

    async def _rollout_names(self) -> list[str]:
        """Distinct rollouts of the verdicts table, one index probe each (a loose index scan)."""
        query = text(
            "WITH RECURSIVE names(rollout) AS ("
            " SELECT min(rollout) FROM verdicts"
            " UNION ALL"
            " SELECT (SELECT min(v.rollout) FROM verdicts v WHERE v.rollout > names.rollout)"
            " FROM names WHERE names.rollout IS NOT NULL"
            ") SELECT rollout FROM names WHERE rollout IS NOT NULL"
        )
        async with self.engine.connect() as connection:
            return [str(name) for name in (await connection.execute(query)).scalars()]

    async def _rollout_cuts(
        self, names: Sequence[str], verdicts_before: datetime | None, configured: set[str]
    ) -> list[_RolloutCut]:
        async with self.engine.connect() as connection:
            states = {
                row.name: row
                for row in await connection.execute(
                    select(rollouts.c.name, rollouts.c.state, rollouts.c.stage_started_at)
                )
            }
        cuts = []
        for name in names:
            state = states.get(name)
            stage_start = _utc(state.stage_started_at) if state is not None else None
            before = verdict_cutoff(verdicts_before, state.state if state is not None else None, stage_start,
                                    name in configured)
            held_back = before is not None and verdicts_before is not None and before < verdicts_before
            cuts.append(_RolloutCut(name, before, before if held_back else None))
        return cuts

    def _doomed(self, cut: _RolloutCut, before: datetime) -> Any:
        c = verdicts.c
        return and_(c.rollout == cut.name, c.created_at < before, c.rolled_up)

    # --- the purge -------------------------------------------------------------------------------

    async def _begin(self, connection: AsyncConnection) -> None:
        if self.dialect == "postgresql":
            await connection.execute(text(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}"))

    def _ids_in(self, column: Any, ids: list[int]) -> Any:
        if self.dialect == "postgresql":
            return column == any_(bindparam("ids", ids, type_=ARRAY(BigInteger)))
        return column.in_(ids)

    def _timed(self, result: PurgeResult, started: float, what: str) -> None:
        elapsed = time.monotonic() - started
        result.statements += 1
        if elapsed > result.longest_statement_s:
            result.longest_statement_s, result.longest_statement = elapsed, what

    async def _delete_verdicts(self, cut: _RolloutCut, deadline: float | None, result: PurgeResult) -> bool:
        """Delete the rollout's purgeable verdicts and their findings; False when the deadline stopped it."""
        assert cut.verdicts_before is not None
        pick = (
            select(verdicts.c.id)
            .where(self._doomed(cut, cut.verdicts_before))
            .order_by(verdicts.c.created_at)
            .limit(self.batch_rows)
        )
        if self.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            async with self.engine.begin() as connection:
                await self._begin(connection)
                started = time.monotonic()
                ids = [int(i) for i in (await connection.execute(pick)).scalars()]
                self._timed(result, started, "pick verdicts")
                if not ids:
                    return True
                started = time.monotonic()
                gone_findings = (await connection.execute(
                    findings.delete().where(self._ids_in(findings.c.verdict_id, ids))
                )).rowcount
                self._timed(result, started, "delete findings")
                started = time.monotonic()
                gone = (await connection.execute(verdicts.delete().where(self._ids_in(verdicts.c.id, ids)))).rowcount
                self._timed(result, started, "delete verdicts")
            result.tables["findings"].rows += max(gone_findings, 0)
            result.tables["verdicts"].rows += max(gone, 0)
            if len(ids) < self.batch_rows:
                return True

    def _emptied(self) -> dict[str, Any]:
        """The column values that drop a verdict's outputs and keep everything else of the row."""
        grades: Any
        if self.dialect == "postgresql":
            def side(column: str) -> Any:
                return literal_column(
                    f"CASE WHEN jsonb_typeof({column}) = 'object' "
                    f"THEN jsonb_set({column}, '{{content}}', '[]'::jsonb) ELSE {column} END"
                )

            grades = literal_column(
                "CASE WHEN jsonb_typeof(grades) = 'object' "
                "THEN grades #- '{baseline,reason}' #- '{candidate,reason}' ELSE grades END"
            )
        else:
            def side(column: str) -> Any:
                return literal_column(
                    f"CASE WHEN json_type({column}) = 'object' "
                    f"THEN json_set({column}, '$.content', json('[]')) ELSE {column} END"
                )

            grades = literal_column(
                "CASE WHEN json_type(grades) = 'object' "
                "THEN json_remove(grades, '$.baseline.reason', '$.candidate.reason') ELSE grades END"
            )
        return {
            "baseline": side("baseline"),
            "candidate": side("candidate"),
            "baseline_repeat": side("baseline_repeat"),
            "grades": grades,
            "request": null(),
        }

    async def _empty_outputs(
        self, rollout: str, before: datetime, mark: datetime | None, deadline: float | None, result: PurgeResult
    ) -> bool:
        """Empty the outputs of the rollout's verdicts created in [mark, before), oldest first, keeping the
        mark up to date so that the next purge starts where this one stopped."""
        c = verdicts.c
        if mark is not None and mark >= before:
            return True
        after: tuple[datetime, int] | None = None
        values = self._emptied()
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            window = and_(c.rollout == rollout, c.created_at < before)
            if mark is not None:
                window = and_(window, c.created_at >= mark)
            if after is not None:
                window = and_(window, c.created_at >= after[0], or_(c.created_at > after[0], c.id > after[1]))
            pick = select(c.id, c.created_at).where(window).order_by(c.created_at, c.id).limit(self.batch_rows)
            async with self.engine.begin() as connection:
                await self._begin(connection)
                started = time.monotonic()
                rows = (await connection.execute(pick)).all()
                self._timed(result, started, "pick outputs")
                if rows:
                    started = time.monotonic()
                    await connection.execute(
                        verdicts.update().where(self._ids_in(c.id, [int(r.id) for r in rows])).values(**values)
                    )
                    self._timed(result, started, "empty outputs")
                finished = len(rows) < self.batch_rows
                # Rows sharing the last instant may be left: the mark stays at it (emptying twice is harmless).
                done_before = before if finished else _utc(rows[-1].created_at)
                await self._set_mark(connection, rollout, done_before)
            result.tables["verdict_outputs"].rows += len(rows)
            if finished:
                return True
            after = (rows[-1].created_at, int(rows[-1].id))

    async def _delete_dead_letters(self, before: datetime, deadline: float | None, result: PurgeResult) -> bool:
        pick = (
            select(dead_letters.c.id)
            .where(dead_letters.c.created_at < before)
            .order_by(dead_letters.c.created_at)
            .limit(self.batch_rows)
        )
        if self.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            async with self.engine.begin() as connection:
                await self._begin(connection)
                started = time.monotonic()
                ids = [int(i) for i in (await connection.execute(pick)).scalars()]
                self._timed(result, started, "pick dead letters")
                if not ids:
                    return True
                started = time.monotonic()
                gone = (await connection.execute(
                    dead_letters.delete().where(self._ids_in(dead_letters.c.id, ids))
                )).rowcount
                self._timed(result, started, "delete dead letters")
            result.tables["dead_letters"].rows += max(gone, 0)
            if len(ids) < self.batch_rows:
                return True

    def _noise_batch(self, before: datetime) -> Any:
        """One batch of old noise-count rows, oldest buckets first through the bucket index. The table's key
        is five columns and it has no id, so rows are named by their physical address: the rowid on
        SQLite; on PostgreSQL the ctid of rows this transaction has locked (a locked row cannot move)."""
        c = noise_counts.c
        address: Any = literal_column("ctid" if self.dialect == "postgresql" else "rowid")
        batch: Any = select(address).select_from(noise_counts).where(c.bucket < before).order_by(c.bucket)
        batch = batch.limit(self.batch_rows)
        if self.dialect == "postgresql":
            # ctid = ANY(ARRAY(...)): the batch is found once, then fetched by address (a TID scan). The
            # bucket test again: whatever the addresses meet, only an old bucket can be deleted.
            locked = batch.with_for_update(skip_locked=True).scalar_subquery()
            return noise_counts.delete().where(address == any_(func.array(locked)), c.bucket < before)
        return noise_counts.delete().where(address.in_(batch.scalar_subquery()))

    async def _delete_noise_counts(self, before: datetime, deadline: float | None, result: PurgeResult) -> bool:
        """Delete the noise-count buckets that start before `before`; False when the deadline stopped it."""
        delete = self._noise_batch(before)
        gone = self.batch_rows
        # Fewer than a batch: none left, or the rest is locked by a writer (next purge takes it).
        while gone >= self.batch_rows:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            gone = await self._one_statement(delete, result, "delete noise counts")
            result.tables["noise_counts"].rows += gone
        return True

    async def _one_statement(self, statement: Any, result: PurgeResult, kind: str) -> int:
        """Run one purge statement in its own short transaction, timed; the rows it touched."""
        async with self.engine.begin() as connection:
            await self._begin(connection)
            started = time.monotonic()
            rows = max((await connection.execute(statement)).rowcount, 0)
            self._timed(result, started, kind)
        return int(rows)

    # --- marks, counts and what is left -----------------------------------------------------------

    async def _marks(self) -> dict[str, datetime]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(retention_marks.c.rollout, retention_marks.c.done_before)
                .where(retention_marks.c.task == OUTPUTS_TASK)
            )
            return {row.rollout: _utc(row.done_before) for row in rows}

    async def _set_mark(self, connection: AsyncConnection, rollout: str, done_before: datetime) -> None:
        insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        statement = insert(retention_marks).values(task=OUTPUTS_TASK, rollout=rollout, done_before=done_before)
        await connection.execute(statement.on_conflict_do_update(
            index_elements=["task", "rollout"], set_={"done_before": statement.excluded.done_before}
        ))

    async def _scalar(self, query: Any) -> int:
        async with self.engine.connect() as connection:
            return int((await connection.execute(query)).scalar_one() or 0)

    async def _count_rollout(
        self, cut: _RolloutCut, outputs_before: datetime | None, mark: datetime | None, result: PurgeResult
    ) -> None:
        c = verdicts.c
        doomed = self._doomed(cut, cut.verdicts_before) if cut.verdicts_before is not None else None
        if doomed is not None:
            result.tables["verdicts"].rows += await self._scalar(select(func.count()).where(doomed))
            result.tables["findings"].rows += await self._scalar(
                select(func.count()).select_from(findings.join(verdicts, verdicts.c.id == findings.c.verdict_id))
                .where(doomed)
            )
        if outputs_before is not None and (mark is None or mark < outputs_before):
            window = and_(c.rollout == cut.name, c.created_at < outputs_before)
            if mark is not None:
                window = and_(window, c.created_at >= mark)
            if doomed is not None:
                window = and_(window, ~doomed)
            result.tables["verdict_outputs"].rows += await self._scalar(select(func.count()).where(window))

    async def _protected_count(self, cuts: Sequence[_RolloutCut], verdicts_before: datetime | None) -> int:
        """Old, rolled-up verdicts kept only because their rollout still decides on them."""
        if verdicts_before is None:
            return 0
        c = verdicts.c
        total = 0
        for cut in cuts:
            lower = cut.verdicts_before
            condition = and_(c.rollout == cut.name, c.created_at < verdicts_before, c.rolled_up)
            if lower is not None:
                if lower >= verdicts_before:
                    continue
                condition = and_(condition, c.created_at >= lower)
            total += await self._scalar(select(func.count()).where(condition))
        return total

    async def _oldest_kept(self, cuts: Sequence[_RolloutCut], cutoffs: Cutoffs, result: PurgeResult) -> None:
        """created_at of the oldest verdict left (and of the oldest still holding outputs), of the oldest
        dead letter left and the oldest noise bucket: after the purge, or as a dry run would leave them."""
        c = verdicts.c
        oldest: datetime | None = None
        oldest_outputs: datetime | None = None
        marks = await self._marks()
        async with self.engine.connect() as connection:
            for cut in cuts:
                mine = c.rollout == cut.name
                if result.dry_run and cut.verdicts_before is not None:
                    kept = [
                        (await connection.execute(select(func.min(c.created_at)).where(
                            mine, c.created_at >= cut.verdicts_before))).scalar(),
                        (await connection.execute(select(func.min(c.created_at)).where(
                            mine, c.created_at < cut.verdicts_before, ~c.rolled_up))).scalar(),
                    ]
                    first = min((_utc(k) for k in kept if k is not None), default=None)
                else:
                    found = (await connection.execute(select(func.min(c.created_at)).where(mine))).scalar()
                    first = _utc(found) if found is not None else None
                oldest = _earliest(oldest, first)
                # Outputs are held by the verdicts created at or after the outputs cutoff (or the mark a
                # purge stopped at); with no outputs cutoff, by every verdict kept.
                start = marks.get(cut.name)
                if cutoffs.outputs_before is not None and result.dry_run:
                    start = max(cutoffs.outputs_before, start) if start is not None else cutoffs.outputs_before
                if start is None:
                    oldest_outputs = _earliest(oldest_outputs, first)
                else:
                    found = (await connection.execute(select(func.min(c.created_at)).where(
                        mine, c.created_at >= start))).scalar()
                    oldest_outputs = _earliest(oldest_outputs, _utc(found) if found is not None else None)
            condition = [] if not result.dry_run or cutoffs.dead_letters_before is None else [
                dead_letters.c.created_at >= cutoffs.dead_letters_before
            ]
            found = (await connection.execute(select(func.min(dead_letters.c.created_at)).where(*condition))).scalar()
            condition = [] if not result.dry_run or cutoffs.noise_counts_before is None else [
                noise_counts.c.bucket >= cutoffs.noise_counts_before
            ]
            bucket = (await connection.execute(select(func.min(noise_counts.c.bucket)).where(*condition))).scalar()
        result.tables["noise_counts"].oldest_kept = _utc(bucket) if bucket is not None else None
        result.tables["verdicts"].oldest_kept = oldest
        result.tables["findings"].oldest_kept = oldest
        result.tables["verdict_outputs"].oldest_kept = oldest_outputs
        result.tables["dead_letters"].oldest_kept = _utc(found) if found is not None else None


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
