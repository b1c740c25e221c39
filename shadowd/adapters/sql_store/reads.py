"""Verdict reads: the running totals reports decide on, pages of verdicts, and the HTML report's queries.

Nothing here writes: a GET issues SELECTs only (tests/integration/test_store_contract.py proves it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Select, and_, case, cast, func, select

from shadowd.adapters.sql_schema import (
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
from shadowd.adapters.sql_store.base import SqlBase
from shadowd.adapters.sql_store.rows import utc, verdict_from_row
from shadowd.core.findings import Status
from shadowd.core.judge import Grading
from shadowd.core.spend import Spend
from shadowd.core.tally import (
    COMPARED_STATUSES,
    CodeTotal,
    GradeTotals,
    ModelCalls,
    RolloutTotals,
    StatusTotals,
)
from shadowd.ports import StoredVerdict, VerdictFilter

JUDGE_STREAK_WINDOW = 200


class VerdictReads(SqlBase):
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

    async def model_calls(self, rollout: str) -> ModelCalls:
        """Verdicts that made model calls, how many were noise-checked, and the calls they made."""
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(rollout_calls).where(rollout_calls.c.rollout == rollout))).first()
        if row is None:
            return ModelCalls()
        return ModelCalls(int(row.replayed), int(row.noise_checked), int(row.model_calls))

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
        return [StoredVerdict(int(row["id"]), verdict_from_row(row)) for row in rows]

    async def get_verdict(self, rollout: str, request_id: str) -> StoredVerdict | None:
        query = select(verdicts).where(and_(verdicts.c.rollout == rollout, verdicts.c.request_id == request_id))
        async with self.engine.connect() as connection:
            row = (await connection.execute(query)).mappings().first()
        return StoredVerdict(int(row["id"]), verdict_from_row(row)) if row else None

    async def rollout_names(self) -> list[str]:
        async with self.engine.connect() as connection:
            names = set((await connection.execute(select(rollouts.c.name))).scalars())
            names.update((await connection.execute(select(verdicts.c.rollout).distinct())).scalars())
        return sorted(names)

    async def rollout_totals(self, rollout: str) -> RolloutTotals:
        """The rollout's running totals as stored: raw counts, nothing decided (shadowd.core.figures does)."""
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
        codes: dict[tuple[str, bool], CodeTotal] = {}
        for row in code_rows:
            key = (row.code, bool(row.noise))
            codes[key] = codes[key] + CodeTotal(row.severity, int(row.n)) if key in codes else \
                CodeTotal(row.severity, int(row.n))
        return RolloutTotals(
            status={
                (row.route, row.status): StatusTotals(
                    n=int(row.n),
                    candidate_regressions=int(row.candidate_regressions),
                    baseline_noise_regressions=int(row.baseline_noise_regressions),
                    both_regressed=int(row.both_regressed),
                    cost_usd_baseline=float(row.cost_usd_baseline),
                    cost_usd_candidate=float(row.cost_usd_candidate),
                )
                for row in status_rows
            },
            codes=codes,
            grades={
                row.route: GradeTotals(
                    judged=int(row.judged), graded=int(row.graded), failed=int(row.failed),
                    over_budget=int(row.over_budget), baseline_acceptable=int(row.baseline_acceptable),
                    candidate_acceptable=int(row.candidate_acceptable), candidate_worse=int(row.candidate_worse),
                    candidate_better=int(row.candidate_better), cost_usd=float(row.cost_usd),
                )
                for row in grade_rows
            },
            latency={(row.side, int(row.bucket)): int(row.n) for row in latency_rows},
            judge_failed_streak=judge_streak,
            judge_last_error=judge_error,
        )

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

    async def route_latencies(self, rollout: str, route: str, limit: int = 20_000) -> dict[str, list[float]]:
        """Latencies per side of the newest `limit` compared verdicts of one route."""
        c = verdicts.c
        query = (
            select(c.baseline_latency_ms, c.candidate_latency_ms)
            .where(and_(c.rollout == rollout, c.route == route, c.status.in_(COMPARED_STATUSES)))
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
        compared = and_(c.rollout == rollout, c.status.in_(COMPARED_STATUSES))
        async with self.engine.connect() as connection:
            first, last = (await connection.execute(select(func.min(c.created_at), func.max(c.created_at))
                                                    .where(compared))).one()
            if first is None or last is None:
                return []
            start, end = utc(first).timestamp(), utc(last).timestamp()
            width = max((end - start) / buckets, 1e-3)
            if self.dialect == "postgresql":
                epoch: Any = func.extract("epoch", c.created_at)
            else:
                epoch = (func.julianday(c.created_at) - 2440587.5) * 86400.0
            bucket = func.min(func.floor((epoch - start) / width), buckets - 1) if self.dialect != "postgresql" \
                else func.least(func.floor((epoch - start) / width), buckets - 1)
            regressed = (c.status == Status.REGRESSION.value)
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
