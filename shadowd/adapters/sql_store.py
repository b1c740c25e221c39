"""The verdict store on SQLAlchemy 2 async: PostgreSQL (asyncpg) in production, SQLite embedded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Select, and_, case, func, select, text, tuple_
from sqlalchemy import insert as generic_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shadowd.adapters.sql_schema import dead_letters, decisions, findings, rollouts, verdicts
from shadowd.core.findings import Finding, Status
from shadowd.core.results import SideResult
from shadowd.core.stats import percentile
from shadowd.records import DeadLetter, VerdictRecord

COMPARED = (Status.PASS.value, Status.REGRESSION.value, Status.NOISE.value)


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite:///` URLs and pick the async drivers."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _sqlite_pragmas(engine)
        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


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
        inserted = 0
        async with self.engine.begin() as connection:
            if verdict_records:
                statement = (
                    self._insert(verdicts)
                    .values([_verdict_row(v) for v in verdict_records])
                    .on_conflict_do_nothing(index_elements=["rollout", "request_id"])
                    .returning(verdicts.c.id, verdicts.c.rollout, verdicts.c.request_id)
                )
                rows = (await connection.execute(statement)).all()
                inserted = len(rows)
                by_key = {(v.rollout, v.request_id): v for v in verdict_records}
                finding_rows = [
                    {
                        "verdict_id": row.id,
                        "rollout": row.rollout,
                        "code": f.code,
                        "severity": f.severity.value,
                        "path": f.path,
                        "detail": f.detail,
                        "noise": f.noise,
                    }
                    for row in rows
                    for f in by_key[(row.rollout, row.request_id)].findings
                ]
                if finding_rows:
                    await connection.execute(findings.insert(), finding_rows)
            if letters:
                await connection.execute(
                    self._insert(dead_letters)
                    .values(
                        [
                            {
                                "source": d.source,
                                "partition": d.partition,
                                "offset": d.offset,
                                "reason": d.reason,
                                "detail": d.detail[:4000],
                                "payload": d.payload,
                                "created_at": d.created_at,
                            }
                            for d in letters
                        ]
                    )
                    .on_conflict_do_nothing(index_elements=["source", "partition", "offset"])
                )
        return inserted

    async def existing_verdicts(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        if not pairs:
            return set()
        found: set[tuple[str, str]] = set()
        async with self.engine.connect() as connection:
            for start in range(0, len(pairs), 500):
                chunk = list(pairs[start : start + 500])
                rows = await connection.execute(
                    select(verdicts.c.rollout, verdicts.c.request_id).where(
                        tuple_(verdicts.c.rollout, verdicts.c.request_id).in_(chunk)
                    )
                )
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

    async def count_verdicts(self) -> int:
        async with self.engine.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(verdicts))).scalar_one())

    async def rollout_names(self) -> list[str]:
        async with self.engine.connect() as connection:
            names = set((await connection.execute(select(rollouts.c.name))).scalars())
            names.update((await connection.execute(select(verdicts.c.rollout).distinct())).scalars())
        return sorted(names)

    async def verdict_figures(self, rollout: str, since_verdict_id: int = 0) -> dict[str, Any]:
        """Counts, per-code and per-route breakdowns, latency percentiles and cost for one rollout."""
        is_compared = verdicts.c.status.in_(COMPARED)
        async with self.engine.connect() as connection:
            counts = {
                row.status: int(row.n)
                for row in await connection.execute(
                    select(verdicts.c.status, func.count().label("n"))
                    .where(verdicts.c.rollout == rollout)
                    .group_by(verdicts.c.status)
                )
            }
            by_code = {
                row.code: {"severity": row.severity, "count": int(row.n)}
                for row in await connection.execute(
                    select(findings.c.code, findings.c.severity, func.count(func.distinct(findings.c.verdict_id)).label("n"))
                    .where(and_(findings.c.rollout == rollout, findings.c.noise.is_(False)))
                    .group_by(findings.c.code, findings.c.severity)
                )
            }
            noise_by_code = {
                row.code: int(row.n)
                for row in await connection.execute(
                    select(findings.c.code, func.count(func.distinct(findings.c.verdict_id)).label("n"))
                    .where(and_(findings.c.rollout == rollout, findings.c.noise.is_(True)))
                    .group_by(findings.c.code)
                )
            }
            by_route: dict[str, dict[str, int]] = {}
            for row in await connection.execute(
                select(verdicts.c.route, verdicts.c.status, func.count().label("n"))
                .where(verdicts.c.rollout == rollout)
                .group_by(verdicts.c.route, verdicts.c.status)
            ):
                by_route.setdefault(row.route, {})[row.status] = int(row.n)
            evidence = (
                await connection.execute(
                    select(
                        func.count().label("samples"),
                        func.sum(case((verdicts.c.status == Status.REGRESSION.value, 1), else_=0)).label("cand"),
                        func.sum(case((verdicts.c.baseline_noise_blocking.is_(True), 1), else_=0)).label("base"),
                        func.sum(
                            case(
                                (
                                    and_(
                                        verdicts.c.status == Status.REGRESSION.value,
                                        verdicts.c.baseline_noise_blocking.is_(True),
                                    ),
                                    1,
                                ),
                                else_=0,
                            )
                        ).label("both"),
                        func.sum(case((verdicts.c.id > since_verdict_id, 1), else_=0)).label("stage"),
                        func.coalesce(func.sum(verdicts.c.baseline_cost_usd), 0.0).label("cost_b"),
                        func.coalesce(func.sum(verdicts.c.candidate_cost_usd), 0.0).label("cost_c"),
                    ).where(and_(verdicts.c.rollout == rollout, is_compared))
                )
            ).one()
            latency = await self._latency_percentiles(connection, rollout)
            last_id = (
                await connection.execute(select(func.max(verdicts.c.id)).where(verdicts.c.rollout == rollout))
            ).scalar_one()
        return {
            "counts": {status.value: counts.get(status.value, 0) for status in Status},
            "by_code": by_code,
            "noise_by_code": noise_by_code,
            "by_route": by_route,
            "samples": int(evidence.samples or 0),
            "stage_samples": int(evidence.stage or 0),
            "candidate_regressions": int(evidence.cand or 0),
            "baseline_noise_regressions": int(evidence.base or 0),
            "both_regressed": int(evidence.both or 0),
            "cost_usd": {"baseline": float(evidence.cost_b or 0.0), "candidate": float(evidence.cost_c or 0.0)},
            "latency_ms": latency,
            "last_verdict_id": int(last_id or 0),
        }

    async def _latency_percentiles(self, connection: Any, rollout: str) -> dict[str, dict[str, float | None]]:
        scope = and_(verdicts.c.rollout == rollout, verdicts.c.status.in_(COMPARED))
        result: dict[str, dict[str, float | None]] = {}
        for side, column in (("baseline", verdicts.c.baseline_latency_ms), ("candidate", verdicts.c.candidate_latency_ms)):
            if self.dialect == "postgresql":
                row = (
                    await connection.execute(
                        select(
                            func.percentile_cont(0.5).within_group(column).label("p50"),
                            func.percentile_cont(0.95).within_group(column).label("p95"),
                        ).where(scope)
                    )
                ).one()
                p50, p95 = row.p50, row.p95
            else:
                values = [v for v in (await connection.execute(select(column).where(scope))).scalars() if v is not None]
                p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
            result[side] = {"p50": _maybe_float(p50), "p95": _maybe_float(p95)}
        return result

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
                    stage_started_verdict_id=0,
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
        stage_started_verdict_id: int | None = None,
    ) -> int:
        """Append to the audit trail and move the rollout's state, in one transaction."""
        async with self.engine.begin() as connection:
            values: dict[str, Any] = {"stage_index": stage_index, "updated_at": at}
            if new_state is not None:
                values["state"] = new_state
            if stage_started_verdict_id is not None:
                values["stage_started_verdict_id"] = stage_started_verdict_id
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


def _verdict_row(v: VerdictRecord) -> dict[str, Any]:
    return {
        "rollout": v.rollout,
        "request_id": v.request_id,
        "route": v.route,
        "status": v.status.value,
        "reason": v.reason,
        "findings": [f.to_dict() for f in v.findings],
        "baseline": v.baseline.to_dict() if v.baseline else None,
        "candidate": v.candidate.to_dict() if v.candidate else None,
        "baseline_repeat": v.baseline_repeat.to_dict() if v.baseline_repeat else None,
        "adaptations": list(v.adaptations),
        "attributes": dict(v.attributes),
        "comparator_version": v.comparator_version,
        "baseline_noise_blocking": v.baseline_noise_blocking,
        "baseline_model": v.baseline.model if v.baseline else None,
        "candidate_model": v.candidate.model if v.candidate else None,
        "baseline_latency_ms": v.baseline.latency_ms if v.baseline else None,
        "candidate_latency_ms": v.candidate.latency_ms if v.candidate else None,
        "baseline_cost_usd": v.baseline.cost_usd if v.baseline else None,
        "candidate_cost_usd": v.candidate.cost_usd if v.candidate else None,
        "baseline_output_tokens": v.baseline.usage.output_tokens if v.baseline else None,
        "candidate_output_tokens": v.candidate.usage.output_tokens if v.candidate else None,
        "source": v.source,
        "partition": v.partition,
        "offset": v.offset,
        "captured_at": v.captured_at,
        "created_at": v.created_at,
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
        baseline_noise_blocking=bool(row["baseline_noise_blocking"]),
        captured_at=_utc(row["captured_at"]) if row["captured_at"] else None,
        attributes=dict(row["attributes"] or {}),
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


async def open_store(url: str, *, upgrade: bool = False) -> SqlVerdictStore:
    engine = create_engine(url)
    if upgrade:
        await upgrade_database(engine)
    return SqlVerdictStore(engine)


__all__ = [
    "SqlVerdictStore",
    "StoredVerdict",
    "VerdictFilter",
    "create_engine",
    "normalise_url",
    "open_store",
    "upgrade_database",
]
