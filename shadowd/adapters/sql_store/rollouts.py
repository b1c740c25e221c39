"""Rollout state and the decision audit trail; the promoter's role as a lock only one process holds."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shadowd.adapters.sql_schema import decisions, rollouts
from shadowd.adapters.sql_store.base import SqlBase
from shadowd.adapters.sql_store.rows import jsonable, utc


class RolloutRecords(SqlBase):
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
            state[key] = utc(state[key])
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
                    figures=jsonable(figures),
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
            return [{**dict(row), "at": utc(row["at"]).isoformat()} for row in rows]

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
        return {**dict(row), "at": utc(row["at"]).isoformat()} if row else None

    def leadership(self, name: str) -> SqlLeadership:
        return SqlLeadership(self.engine, name)


class SqlLeadership:
    """A role one process holds at a time. On PostgreSQL a session advisory lock on a connection kept open:
    a process that dies loses it with its connection, and another takes it at its next `hold()`. On SQLite
    (one process by construction) every `hold()` succeeds."""

    def __init__(self, engine: AsyncEngine, name: str) -> None:
        self.engine = engine
        self.name = name
        self._connection: AsyncConnection | None = None

    async def hold(self) -> bool:
        """Take the role, or check the connection that holds it is still alive; False while another has it."""
        if self.engine.dialect.name != "postgresql":
            return True
        if self._connection is not None:
            await self._connection.execute(text("SELECT 1"))
            return True
        connection = await self.engine.connect()
        try:
            got = (
                await connection.execute(text("SELECT pg_try_advisory_lock(hashtext(:key))"), {"key": self.name})
            ).scalar_one()
            await connection.commit()
        except Exception:
            await connection.close()
            raise
        if not got:
            await connection.close()
            return False
        self._connection = connection
        return True

    async def release(self) -> None:
        """Give the role up (closing its connection ends the session, and the lock with it)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()
