"""Applies gate decisions and manual actions to a rollout's state, each one written to the audit trail."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shadowd.adapters.sql_store import SqlVerdictStore
from shadowd.clock import utc_now
from shadowd.core.gate import GATE_VERSION, Decision, GateDecision
from shadowd.core.rollout import RolloutSpec
from shadowd.metrics import Metrics
from shadowd.report import gate_view

log = structlog.get_logger("shadowd.promoter")

ManualAction = Literal["pause", "resume", "promote", "rollback", "restart"]


@dataclass(frozen=True, slots=True)
class AppliedDecision:
    rollout: str
    action: str
    decision: str
    stage_index: int
    canary_percent: int
    reasons: tuple[str, ...]
    figures: dict[str, Any]
    actor: str
    at: datetime
    gate_version: str = GATE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "rollout": self.rollout,
            "action": self.action,
            "decision": self.decision,
            "stage_index": self.stage_index,
            "stage": self.stage_index + 1,
            "canary_percent": self.canary_percent,
            "reasons": list(self.reasons),
            "figures": self.figures,
            "actor": self.actor,
            "at": self.at.isoformat(),
            "gate_version": self.gate_version,
        }


class ManualActionError(ValueError):
    """The action does not apply to the rollout's current state (e.g. resume when not paused)."""


async def evaluate_and_apply(
    store: SqlVerdictStore, spec: RolloutSpec, now: datetime, actor: str = "gate"
) -> AppliedDecision:
    """One gate evaluation: decide from the stored verdicts, move the stage, record it."""
    await store.ensure_rollout(spec.name, spec.baseline, spec.candidate, now)
    decision, state, figures = await gate_view(store, spec)
    new_state: str | None = None
    stage_started: int | None = None
    if decision.decision == "promote":
        stage_started = figures["samples"]
    elif decision.decision == "rollback" and state.state != "rolled_back":
        new_state = "rolled_back"
    elif decision.decision == "complete" and state.state != "complete":
        new_state = "complete"
    return await _record(
        store, spec, now, kind="gate", actor=actor, action="evaluate", decision=decision,
        new_state=new_state, stage_started=stage_started,
    )


async def apply_manual(
    store: SqlVerdictStore,
    spec: RolloutSpec,
    action: ManualAction,
    actor: str,
    now: datetime,
    note: str | None = None,
) -> AppliedDecision:
    await store.ensure_rollout(spec.name, spec.baseline, spec.candidate, now)
    row = await store.rollout_state(spec.name)
    assert row is not None
    state, index = row["state"], int(row["stage_index"])
    last = len(spec.stages) - 1
    new_state: str | None
    verdict: Decision
    reasons: tuple[str, ...]
    stage_started: int | None = None
    if action == "pause":
        if state != "active":
            raise ManualActionError(f"cannot pause a rollout that is {state}")
        new_state, verdict, reasons = "paused", "hold", ("paused by an operator",)
    elif action == "resume":
        if state != "paused":
            raise ManualActionError(f"cannot resume a rollout that is {state}, only a paused one")
        new_state, verdict, reasons = "active", "hold", ("resumed by an operator",)
    elif action == "promote":
        if state in ("rolled_back", "complete"):
            raise ManualActionError(f"cannot promote a rollout that is {state}")
        figures = await store.verdict_figures(spec.name)
        stage_started = figures["samples"]
        if index >= last:
            new_state, verdict = "complete", "complete"
        else:
            new_state, verdict, index = state, "promote", index + 1
        reasons = (f"promoted by an operator to {spec.stages[index]}%",)
    elif action == "restart":
        if state != "rolled_back":
            raise ManualActionError(f"cannot restart a rollout that is {state}, only a rolled-back one")
        figures = await store.verdict_figures(spec.name)
        stage_started = figures["samples"]
        new_state, verdict, index = "active", "hold", 0
        reasons = (
            f"restarted by an operator from the first stage ({spec.stages[0]}%); "
            f"the gate still weighs the {figures['samples']} compared verdicts so far",
        )
    else:
        if state == "rolled_back":
            raise ManualActionError("the rollout is already rolled back")
        new_state, verdict, reasons = "rolled_back", "rollback", ("rolled back by an operator",)
    if note:
        reasons = (*reasons, f"operator note: {note[:500]}")
    percent = 0 if new_state == "rolled_back" else spec.stages[index]
    decision = GateDecision(decision=verdict, reasons=reasons, figures={}, stage_index=index, canary_percent=percent)
    return await _record(
        store, spec, now, kind="manual", actor=actor, action=action, decision=decision,
        new_state=new_state, stage_started=stage_started,
    )


async def _record(
    store: SqlVerdictStore,
    spec: RolloutSpec,
    now: datetime,
    *,
    kind: str,
    actor: str,
    action: str,
    decision: GateDecision,
    new_state: str | None,
    stage_started: int | None,
) -> AppliedDecision:
    await store.record_decision(
        spec.name,
        at=now,
        kind=kind,
        actor=actor,
        action=action,
        decision=decision.decision,
        stage_index=decision.stage_index,
        canary_percent=decision.canary_percent,
        reasons=decision.reasons,
        figures={**decision.figures, "gate_version": decision.gate_version},
        new_state=new_state,
        stage_started_compared=stage_started,
    )
    return AppliedDecision(
        rollout=spec.name,
        action=action,
        decision=decision.decision,
        stage_index=decision.stage_index,
        canary_percent=decision.canary_percent,
        reasons=tuple(decision.reasons),
        figures={**decision.figures, "gate_version": decision.gate_version},
        actor=actor,
        at=now,
        gate_version=decision.gate_version,
    )


class PromoterLoop:
    """Evaluates active rollouts on a schedule while this process holds the promoter role.

    On PostgreSQL the role is a session advisory lock on a connection kept open: a process that dies
    loses it with its connection, and another takes over at its next tick. SQLite means one process.
    """

    LOCK_KEY = "shadowd.promoter"

    def __init__(
        self,
        store: SqlVerdictStore,
        specs: tuple[RolloutSpec, ...],
        *,
        interval_s: float,
        publish: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] | None = None,
        actor: str = "gate",
        after_tick: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.store = store
        # Work only the promoter does, once per tick after the gate (the retention purge): never two at once.
        self.after_tick = after_tick
        self.actor = actor
        self.specs = specs
        self.interval_s = interval_s
        self.publish = publish
        self.metrics = metrics
        self.clock = clock or utc_now
        self.is_leader = False
        self._lock_connection: AsyncConnection | None = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    if await self._hold_role():
                        await self.tick()
                        if self.after_tick is not None:
                            await self.after_tick()
                except Exception as exc:  # the database may be down: keep trying, never crash the daemon
                    log.error("promoter_tick_failed", error=repr(exc)[:500])
                    await self._release()
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
                except TimeoutError:
                    pass
        finally:
            await self._release()

    async def tick(self) -> list[AppliedDecision]:
        applied: list[AppliedDecision] = []
        for spec in self.specs:
            await self.store.ensure_rollout(spec.name, spec.baseline, spec.candidate, self.clock())
            row = await self.store.rollout_state(spec.name)
            if row is None or row["state"] != "active":
                continue
            decision = await evaluate_and_apply(self.store, spec, self.clock(), self.actor)
            applied.append(decision)
            log.info("gate_decision", rollout=spec.name, decision=decision.decision,
                     canary_percent=decision.canary_percent, reasons=list(decision.reasons))
            if self.metrics is not None:
                self.metrics.gate_decisions.labels(spec.name, decision.decision).inc()
                self.metrics.canary_percent.labels(spec.name).set(decision.canary_percent)
                self.metrics.observe_gate(spec.name, decision.stage_index, decision.figures)
                samples, regressions = decision.figures.get("samples"), decision.figures.get("candidate_regressions")
                if samples and regressions is not None:
                    self.metrics.regression_rate.labels(spec.name).set(regressions / samples)
            if self.publish is not None:
                await self.publish(decision.to_dict())
        return applied

    async def _hold_role(self) -> bool:
        if self.store.dialect != "postgresql":
            self.is_leader = True
            return True
        if self._lock_connection is not None:
            await self._lock_connection.execute(text("SELECT 1"))
            return True
        connection = await self.store.engine.connect()
        try:
            got = (
                await connection.execute(text("SELECT pg_try_advisory_lock(hashtext(:key))"), {"key": self.LOCK_KEY})
            ).scalar_one()
            await connection.commit()
        except Exception:
            await connection.close()
            raise
        if not got:
            await connection.close()
            self.is_leader = False
            return False
        self._lock_connection = connection
        self.is_leader = True
        return True

    async def _release(self) -> None:
        connection, self._lock_connection = self._lock_connection, None
        self.is_leader = False
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()
