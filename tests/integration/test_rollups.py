"""Rollup totals on PostgreSQL equal a direct count, however inserts and roll-ups interleave."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

from sqlalchemy import func, select

from shadowd.adapters.sql_schema import findings, verdicts
from shadowd.adapters.sql_store import open_store
from shadowd.core.figures import verdict_figures
from shadowd.core.findings import Finding, Status
from shadowd.core.results import SideResult, Usage
from shadowd.core.stats import percentile
from shadowd.records import VerdictRecord


def make_verdict(rng: random.Random, index: int) -> VerdictRecord:
    status = rng.choices([Status.PASS, Status.REGRESSION, Status.NOISE, Status.ERROR, Status.SKIPPED],
                         [70, 15, 8, 4, 3])[0]
    found: tuple[Finding, ...] = ()
    if status is Status.REGRESSION:
        found = (Finding.of("format.json_invalid", "broken"), Finding.of("length.drift", "longer"))
    elif status is Status.NOISE:
        found = (Finding(code="schema.key_missing", severity=Finding.of("schema.key_missing", "").severity,
                         detail="gone", path="/a", noise=True),)

    def side(model: str) -> SideResult:
        return SideResult(model=model, ok=True, content=({"type": "text", "text": "x"},), stop_reason="end_turn",
                          usage=Usage(10, 20), latency_ms=rng.lognormvariate(5, 0.6), cost_usd=0.001)

    return VerdictRecord(
        rollout="r", request_id=f"req-{index}", route=rng.choice(["a", "b"]), status=status, findings=found,
        comparator_version="t", created_at=datetime.now(UTC), baseline=side("b"), candidate=side("c"),
        baseline_noise_blocking=rng.random() < 0.05 and status is not Status.ERROR,
    )


async def test_concurrent_inserts_and_roll_ups_count_every_verdict_once(fresh_database_url: str) -> None:
    """Writers and several roll-up loops racing still leave totals equal to a direct count of the verdicts."""
    store = await open_store(fresh_database_url, upgrade=True)
    rng = random.Random(9)
    all_verdicts = [make_verdict(rng, i) for i in range(3000)]
    done = asyncio.Event()

    async def writer(part: list[VerdictRecord]) -> None:
        for start in range(0, len(part), 37):
            await store.save(part[start : start + 37], [])

    async def roller() -> None:
        while not done.is_set():
            await store.roll_up("r", batch=200)
            await asyncio.sleep(0.005)

    try:
        rollers = [asyncio.create_task(roller()) for _ in range(3)]
        await asyncio.gather(*(writer(all_verdicts[i::4]) for i in range(4)))
        done.set()
        await asyncio.gather(*rollers)
        figures = verdict_figures(await store.rollout_totals("r")).to_wire()

        async with store.engine.connect() as connection:
            direct = dict((await connection.execute(
                select(verdicts.c.status, func.count()).group_by(verdicts.c.status))).all())
            json_invalid = (await connection.execute(
                select(func.count(func.distinct(findings.c.verdict_id))).where(
                    findings.c.code == "format.json_invalid"))).scalar_one()
            latencies = list((await connection.execute(select(verdicts.c.candidate_latency_ms).where(
                verdicts.c.status.in_(["pass", "regression", "noise"])))).scalars())
        assert {k: v for k, v in figures["counts"].items() if v} == direct
        assert figures["by_code"]["format.json_invalid"]["count"] == json_invalid
        assert figures["noise_by_code"]["schema.key_missing"] == direct["noise"]
        assert figures["candidate_regressions"] == direct["regression"]
        assert figures["samples"] == direct["pass"] + direct["regression"] + direct["noise"]
        exact = percentile(latencies, 0.95)
        assert exact is not None
        assert abs(figures["latency_ms"]["candidate"]["p95"] - exact) / exact < 0.02
        assert await store.roll_up("r") == 0
    finally:
        await store.close()
