"""Learned noise counts and model calls spent, stored with the verdicts (SQLite here, PostgreSQL in integration)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shadowd.adapters.sql_store import open_store
from shadowd.core.findings import Status
from shadowd.core.noise import NoiseModel, NoiseObservation
from shadowd.core.results import SideResult
from shadowd.records import VerdictRecord

NOW = datetime(2026, 11, 30, 12, 30, tzinfo=UTC)


def verdict(request_id: str, observation: NoiseObservation | None, at: datetime = NOW) -> VerdictRecord:
    side = SideResult(model="claude-opus-4-6", ok=True)
    return VerdictRecord(
        rollout="r", request_id=request_id, route="triage", status=Status.PASS, findings=(),
        comparator_version="x", created_at=at, baseline=side,
        candidate=SideResult(model="claude-opus-4-7", ok=True),
        baseline_repeat=side if observation is not None else None, noise_observation=observation,
    )


def test_noise_counts_and_calls_are_stored_once_per_verdict(tmp_path: Path) -> None:
    """Each inserted verdict adds its observation and calls once; a redelivered one adds nothing;
    buckets older than the window are left out."""

    async def scenario() -> None:
        store = await open_store(f"sqlite:///{tmp_path / 'n.db'}", upgrade=True)
        try:
            varied = NoiseObservation(paths=(("$.summary", True), ("$.category", False)), codes=("length.drift",))
            steady = NoiseObservation(paths=(("$.summary", False), ("$.category", False)), codes=())
            batch = [verdict("a", varied), verdict("b", steady), verdict("c", None),
                     verdict("old", varied, NOW - timedelta(days=3))]
            assert await store.save(batch, []) == 4
            assert await store.save([verdict("a", varied)], []) == 0  # redelivered: counted once
            counts = await store.noise_counts("claude-opus-4-6", NOW - timedelta(hours=24))
            model = NoiseModel.from_rows(counts["triage"], 0.05)
            assert model.requests == 2
            assert model.path_rate("$.summary") is not None
            assert (model.paths["$.summary"], model.paths["$.category"]) == ([1, 2], [0, 2])
            assert model.codes == {"length.drift": 1}
            assert (await store.model_calls("r")).to_wire() == {"replayed": 4, "noise_checked": 3, "model_calls": 11}
        finally:
            await store.close()

    asyncio.run(scenario())
