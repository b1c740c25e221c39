"""Grading compared verdicts (SPEC §8): the route's judge, called through the replays' model client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from shadowd.core.adaptation import ReplayRequest
from shadowd.core.findings import Status
from shadowd.core.judge import (
    Grade,
    Grading,
    JudgeSpec,
    combine,
    gradable,
    grading_request,
    parse_grade,
    skipped,
)
from shadowd.core.results import SideResult
from shadowd.metrics import Metrics
from shadowd.ports import ModelClient

log = structlog.get_logger("shadowd.judge")

_COMPARED = frozenset({Status.PASS, Status.REGRESSION, Status.NOISE})


@dataclass(frozen=True, slots=True)
class GradingJob:
    """One rollout's compared verdict, waiting for its grades."""

    baseline: SideResult | None
    candidate: SideResult | None
    status: Status
    hidden_models: tuple[str, ...]
    over_budget: bool = False


class AnswerGrader:
    """Grades both answers of each job independently and blind, with the route's judge.

    The calls share the replays' model client, so its retry policy and its `max_concurrency` budget
    hold for grading too. A baseline answer shared by several rollouts is graded once.
    """

    def __init__(self, models: ModelClient, metrics: Metrics | None = None) -> None:
        self.models = models
        self.metrics = metrics or Metrics()

    async def grade(
        self,
        judge: JudgeSpec | None,
        request_id: str,
        request: dict[str, Any],
        jobs: Sequence[GradingJob],
        deadline: float | None = None,
    ) -> list[Grading | None]:
        """One Grading per job (None for verdicts that are not compared or whose route has no judge)."""
        if judge is None:
            return [None] * len(jobs)
        sampled = judge.sampled_in(request_id)
        hidden = tuple(sorted({m for job in jobs for m in job.hidden_models} | {judge.model}))
        calls: dict[int, asyncio.Task[Grade]] = {}
        plans: list[Grading | tuple[asyncio.Task[Grade], asyncio.Task[Grade]] | None] = []

        def call(answer: SideResult) -> asyncio.Task[Grade]:
            # Keyed by identity: rollouts sharing a baseline replay hold the same SideResult object.
            if id(answer) not in calls:
                calls[id(answer)] = asyncio.create_task(self._grade_one(judge, request, answer, hidden, deadline))
            return calls[id(answer)]

        for job in jobs:
            if job.status not in _COMPARED:
                plans.append(None)
            elif not gradable(job.baseline, job.candidate):
                plans.append(skipped(judge.model, "no_text"))
            elif not sampled:
                plans.append(skipped(judge.model, "not_sampled"))
            elif job.over_budget:
                plans.append(skipped(judge.model, "over_budget"))
            else:
                assert job.baseline is not None and job.candidate is not None
                plans.append((call(job.baseline), call(job.candidate)))
        if calls:
            await asyncio.gather(*calls.values())
        gradings: list[Grading | None] = []
        for plan in plans:
            if isinstance(plan, tuple):
                gradings.append(combine(judge.model, plan[0].result(), plan[1].result()))
            else:
                gradings.append(plan)
        return gradings

    async def _grade_one(
        self,
        judge: JudgeSpec,
        request: dict[str, Any],
        answer: SideResult,
        hidden: tuple[str, ...],
        deadline: float | None,
    ) -> Grade:
        started = time.perf_counter()
        try:
            body = grading_request(judge, request, answer, hidden)
            response = await self.models.replay_request(ReplayRequest(body, (), False), None, deadline)
        except Exception as exc:  # the judge is optional evidence: a fault here never fails the verdict
            log.error("grading_fault", error=f"{type(exc).__name__}: {exc}"[:300])
            return Grade(judge.model, error=f"grading fault: {type(exc).__name__}: {exc}"[:500])
        self.metrics.model_calls.labels(judge.model, "ok" if response.ok else "error").inc()
        self.metrics.model_latency.labels(judge.model).observe(time.perf_counter() - started)
        grade = parse_grade(response, judge.model)
        self.metrics.grades.labels(judge.model, "graded" if grade.ok else "ungraded").inc()
        if not grade.ok:
            log.warning("grading_failed", judge_model=judge.model, error=grade.error)
        return grade
