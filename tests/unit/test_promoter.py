"""The promoter on the store's in-memory twin: gate decisions and manual actions move state and are audited."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shadowd.adapters.memory_store import MemoryStore
from shadowd.config import load_config
from shadowd.core.findings import Finding, Status
from shadowd.core.gate import GATE_VERSION
from shadowd.core.results import SideResult, Usage
from shadowd.core.rollout import RolloutSpec
from shadowd.promoter import ManualActionError, PromoterLoop, apply_manual, evaluate_and_apply
from shadowd.records import VerdictRecord

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CONFIG = """
rollouts:
  - name: r
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    stages: [5, 50, 100]
    gate: {min_samples: 10, max_regression_rate_increase: 0.2}
"""


@pytest.fixture
def spec(tmp_path: Path) -> RolloutSpec:
    path = tmp_path / "shadowd.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    found = load_config(path).rollout("r")
    assert found is not None
    return found


def verdicts(count: int, regressed: int, start: int = 0) -> list[VerdictRecord]:
    def side(model: str) -> SideResult:
        return SideResult(model=model, ok=True, content=({"type": "text", "text": "x"},), stop_reason="end_turn",
                          usage=Usage(10, 20), latency_ms=100.0, cost_usd=0.001)

    return [
        VerdictRecord(
            rollout="r", request_id=f"req-{start + i}", route="chat",
            status=Status.REGRESSION if i < regressed else Status.PASS,
            findings=(Finding.of("format.json_invalid", "broken"),) if i < regressed else (),
            comparator_version="t", created_at=NOW, baseline=side("claude-opus-4-6"),
            candidate=side("claude-opus-4-7"),
        )
        for i in range(count)
    ]


async def test_clean_stage_promotes_then_waits_for_fresh_verdicts(spec: RolloutSpec) -> None:
    """A clean stage promotes and restarts the stage count; the next evaluation holds until new verdicts come."""
    store = MemoryStore()
    await store.save(verdicts(40, 0), [])
    first = await evaluate_and_apply(store, spec, NOW)
    assert (first.decision, first.stage_index, first.canary_percent) == ("promote", 1, 50)
    assert first.figures["gate_version"] == GATE_VERSION and first.figures["samples"] == 40
    row = await store.rollout_state("r")
    assert row is not None and (row["stage_index"], row["stage_started_compared"]) == (1, 40)
    second = await evaluate_and_apply(store, spec, NOW + timedelta(minutes=1))
    assert second.decision == "hold" and "0 of 10 new compared verdicts" in second.reasons[0]
    history = await store.list_decisions("r")
    assert [d["decision"] for d in history] == ["hold", "promote"]


async def test_regressed_candidate_is_rolled_back_and_stays_rolled_back(spec: RolloutSpec) -> None:
    """Clear harm rolls back; a later evaluation explains the rollback and a restart starts from stage one."""
    store = MemoryStore()
    await store.save(verdicts(40, 30), [])
    decision = await evaluate_and_apply(store, spec, NOW)
    assert decision.decision == "rollback" and decision.canary_percent == 0
    row = await store.rollout_state("r")
    assert row is not None and row["state"] == "rolled_back"
    with pytest.raises(ManualActionError, match="already rolled back"):
        await apply_manual(store, spec, "rollback", "alice", NOW)
    restarted = await apply_manual(store, spec, "restart", "alice", NOW + timedelta(minutes=5), note="fixed")
    assert restarted.decision == "hold" and restarted.stage_index == 0
    assert "the gate still weighs the 40 compared verdicts so far" in restarted.reasons[0]
    assert restarted.reasons[-1] == "operator note: fixed"
    assert restarted.figures == {"gate_version": GATE_VERSION}  # a manual action carries no gate figures


async def test_manual_actions_check_the_current_state(spec: RolloutSpec) -> None:
    """Pause needs an active rollout, resume a paused one; a promote at the last stage completes it."""
    store = MemoryStore()
    with pytest.raises(ManualActionError, match="resume"):
        await apply_manual(store, spec, "resume", "bob", NOW)
    await apply_manual(store, spec, "pause", "bob", NOW)
    with pytest.raises(ManualActionError, match="pause"):
        await apply_manual(store, spec, "pause", "bob", NOW)
    await apply_manual(store, spec, "resume", "bob", NOW)
    await apply_manual(store, spec, "promote", "bob", NOW)
    await apply_manual(store, spec, "promote", "bob", NOW)
    done = await apply_manual(store, spec, "promote", "bob", NOW)
    assert (done.decision, done.canary_percent) == ("complete", 100)
    row = await store.rollout_state("r")
    assert row is not None and row["state"] == "complete"


async def test_only_the_loop_holding_the_role_decides(spec: RolloutSpec) -> None:
    """Two promoter loops on one store: one holds the role and publishes decisions, the other stays idle,
    and the role is released when the loop stops."""
    store = MemoryStore()
    await store.save(verdicts(40, 0), [])
    published: list[dict[str, Any]] = []
    enough = asyncio.Event()

    async def publish(decision: dict[str, Any]) -> None:
        published.append(decision)
        if len(published) >= 3:
            enough.set()

    loops = [PromoterLoop(store, (spec,), interval_s=0.01, publish=publish, clock=lambda: NOW) for _ in range(2)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop.run(stop)) for loop in loops]
    await asyncio.wait_for(enough.wait(), timeout=30)
    stop.set()
    await asyncio.gather(*tasks)
    assert len(published) >= 3
    assert published[0]["decision"] == "promote" and all(d["decision"] == "hold" for d in published[1:])
    decisions = await store.list_decisions("r", limit=1000)
    assert len(decisions) == len(published)  # the idle loop recorded nothing
    assert await store.leadership(PromoterLoop.LOCK_KEY).hold()  # released at stop: another may take it


async def test_an_unavailable_store_never_crashes_the_loop(spec: RolloutSpec) -> None:
    """While the store is down the loop keeps trying; once it is back, decisions resume."""
    store = MemoryStore()
    await store.save(verdicts(40, 0), [])
    store.unavailable = True
    published: list[dict[str, Any]] = []
    first = asyncio.Event()

    async def publish(decision: dict[str, Any]) -> None:
        published.append(decision)
        first.set()

    loop = PromoterLoop(store, (spec,), interval_s=0.01, publish=publish, clock=lambda: NOW)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    await asyncio.sleep(0.1)
    assert published == [] and not task.done()
    store.unavailable = False
    await asyncio.wait_for(first.wait(), timeout=30)
    stop.set()
    await task
    assert published and published[0]["decision"] == "promote"
