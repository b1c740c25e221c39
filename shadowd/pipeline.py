"""Envelope in, verdicts out: the wiring of parse → adapt → replay → compare for one record."""
# Over 400 lines: one record's path (parse, adapt, replay, compare, grade) reads top to bottom; its parts
# are in core/ and judge.py/batch.py.

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog

from shadowd.adapters.anthropic_client import recorded_side
from shadowd.batch import BatchCall, BatchReplayer
from shadowd.clock import utc_now
from shadowd.config import Config
from shadowd.core.adaptation import adapt_request
from shadowd.core.batching import Slot
from shadowd.core.caching import has_cache_breakpoint
from shadowd.core.compare import COMPARATOR_VERSION, compare
from shadowd.core.envelope import Envelope, EnvelopeError, parse_envelope
from shadowd.core.findings import Status
from shadowd.core.in_flight import calls_per_record
from shadowd.core.judge import apply_grading
from shadowd.core.noise import NOISE_WINDOW, WARMUP_REQUESTS, NoiseModel
from shadowd.core.redaction import protect_dead_letter, protect_findings, protect_side
from shadowd.core.results import ErrorReason, SideResult, error_reason_of
from shadowd.core.rollout import RolloutSpec, SpendWindow
from shadowd.core.spend import verdict_spend
from shadowd.judge import AnswerGrader, GradingJob
from shadowd.metrics import Metrics
from shadowd.ports import ModelClient, Store
from shadowd.records import DeadLetter, SourceRecord, VerdictRecord, summarise_request

log = structlog.get_logger("shadowd.pipeline")

# Each process re-reads the learned noise of the window (NOISE_WINDOW) from the store this often
# (its own observations count at once in between).
NOISE_REFRESH_S = 30.0


@dataclass(slots=True)
class _RouteNoise:
    """One baseline model's learned noise on one route, as this process knows it."""

    model: NoiseModel
    loaded_at: float


@dataclass(slots=True)
class RecordOutcome:
    record: SourceRecord
    verdicts: list[VerdictRecord] = field(default_factory=list)
    dead_letter: DeadLetter | None = None
    already_done: int = 0


class ShadowPipeline:
    """Turns one source record into its verdicts (or a dead letter); never raises for bad input."""

    def __init__(
        self,
        config: Config,
        models: ModelClient,
        store: Store,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.models = models
        self.store = store
        self.metrics = metrics or Metrics()
        for rollout in config.rollouts:
            if rollout.budget_usd_per_hour is not None:
                self.metrics.budget_remaining.labels(rollout.name).set(rollout.budget_usd_per_hour)
        self.clock = clock
        self.monotonic = monotonic
        self.spend = {r.name: SpendWindow() for r in config.rollouts}
        self.grader = AnswerGrader(models, self.metrics)
        self._noise: dict[tuple[str, str], _RouteNoise] = {}
        self._noise_loads: dict[tuple[str, str], asyncio.Task[_RouteNoise]] = {}
        self._checks_in_flight: dict[tuple[str, str], int] = {}
        # Calls in `replay_mode: batch` (a rollout's or a route's) go here (shadowd/batch.py); set by the wiring.
        self.batches: BatchReplayer | None = None

    def max_calls_per_record(self) -> int:
        """Model calls one envelope can cost when every rollout takes it (baselines are shared)."""
        return calls_per_record(self.config.rollouts)

    async def replay_record(self, record: SourceRecord) -> RecordOutcome:
        outcome = RecordOutcome(record)
        try:
            envelope = parse_envelope(record.value)
        except EnvelopeError as exc:
            outcome.dead_letter = self.dead_letter(record, exc.reason, exc.detail)
            return outcome
        matching = [r for r in self.config.rollouts if r.applies_to(envelope)]
        if not matching:
            self.metrics.records.labels("unmatched").inc()
            return outcome
        done = await self.store.existing_verdicts([(r.name, envelope.request_id) for r in matching])
        pending = [r for r in matching if (r.name, envelope.request_id) not in done]
        outcome.already_done = len(matching) - len(pending)
        if pending:
            outcome.verdicts = await self.replay_envelope(envelope, pending, record)
        return outcome

    def dead_letter(self, record: SourceRecord, reason: str, detail: str) -> DeadLetter:
        """The record as a dead letter, its payload kept as `privacy.dead_letter_payload` allows."""
        privacy, redactor = self.config.privacy, self.config.redactor_for(None)
        payload, note = protect_dead_letter(
            record.value, privacy.dead_letter_payload, redactor, privacy.dead_letter_max_bytes
        )
        if privacy.dead_letter_payload != "full":
            detail = redactor.text(detail)  # parse errors quote the record
        if note:
            detail = f"{detail} [{note}]"
        self.metrics.dead_letters.labels(reason).inc()
        log.warning(
            "dead_letter", reason=reason, detail=detail[:300], source=record.source,
            partition=record.partition, offset=record.offset,
        )
        return DeadLetter(
            source=record.source, partition=record.partition, offset=record.offset, reason=reason,
            detail=detail, payload=payload, created_at=self.clock(),
        )

    async def replay_envelope(
        self, envelope: Envelope, rollouts: list[RolloutSpec], record: SourceRecord | None = None
    ) -> list[VerdictRecord]:
        skipped: list[VerdictRecord] = []
        active: list[RolloutSpec] = []
        now_s = self.monotonic()
        for rollout in rollouts:
            if not rollout.sampled_in(envelope.request_id):
                skipped.append(self._verdict(envelope, rollout, record, Status.SKIPPED, reason="sampled out"))
            elif (
                rollout.budget_usd_per_hour is not None
                and self.spend[rollout.name].spent(now_s) >= rollout.budget_usd_per_hour
            ):
                skipped.append(self._verdict(envelope, rollout, record, Status.SKIPPED, reason="over the hourly budget"))
            else:
                active.append(rollout)

        # Capacity errors are retried until this deadline, shared by every call the record makes.
        deadline = time.monotonic() + self.config.models.retry_deadline_s
        # Rollouts that share a baseline share its replay: one call serves them all.
        route_noise = {
            rollout.baseline: await self._route_noise(rollout.baseline, envelope.route) for rollout in active
        }
        wants_repeat = {rollout.name: self._wants_repeat(rollout, envelope, route_noise) for rollout in active}
        checking = {rollout.baseline for rollout in active if wants_repeat[rollout.name]}
        for model in checking:
            in_flight_key = (model, envelope.route)
            self._checks_in_flight[in_flight_key] = self._checks_in_flight.get(in_flight_key, 0) + 1
        baseline_calls: dict[tuple[str, str, bool, str], asyncio.Task[tuple[SideResult, SideResult | None]]] = {}
        candidate_calls: list[tuple[RolloutSpec, asyncio.Task[tuple[SideResult, tuple[str, ...]]]]] = []
        try:
            async with asyncio.TaskGroup() as group:
                for rollout in active:
                    key = (rollout.baseline, rollout.baseline_source, wants_repeat[rollout.name],
                           rollout.replay_mode_for(envelope.route))
                    if key not in baseline_calls:
                        baseline_calls[key] = group.create_task(
                            self._baseline_sides(envelope, rollout, key[2], deadline, record)
                        )
                    candidate_calls.append(
                        (rollout, group.create_task(self._replay(
                            envelope, rollout.candidate, deadline, self._batch_call(rollout, envelope, record, "candidate")
                        )))
                    )
        finally:
            for model in checking:
                self._checks_in_flight[(model, envelope.route)] -= 1

        verdicts = skipped
        compared: list[VerdictRecord] = []
        observed: set[str] = set()  # baselines whose noise observation is already attached
        notes: dict[str, list[str]] = {}  # rollout -> what the comparator could not check
        rules = self.config.rules_for(envelope.route)
        for rollout, task in candidate_calls:
            candidate, adaptations = task.result()
            call_key = (rollout.baseline, rollout.baseline_source, wants_repeat[rollout.name],
                        rollout.replay_mode_for(envelope.route))
            baseline, repeat = baseline_calls[call_key].result()
            noise = route_noise[rollout.baseline]
            noise.model.threshold = rules.value_noise_threshold
            spent = sum(s.cost_usd or 0.0 for s in (baseline, candidate, repeat) if s and s.source == "replay")
            self.spend[rollout.name].add(now_s, spent)
            self.metrics.observe_sides(rollout.name, {"baseline": baseline, "candidate": candidate, "repeat": repeat})
            if rollout.budget_usd_per_hour is not None:
                left = rollout.budget_usd_per_hour - self.spend[rollout.name].spent(now_s)
                self.metrics.budget_remaining.labels(rollout.name).set(max(0.0, left))
            side_reason = error_reason_of(baseline, candidate)
            if side_reason in (ErrorReason.CAPACITY, ErrorReason.BATCH_RESULT):
                # The API was busy or away for one side past the deadline, or the batch gave a side no
                # answer: no fair comparison, and never a finding against the candidate.
                failed = baseline if not baseline.ok else candidate
                verdicts.append(
                    self._verdict(
                        envelope, rollout, record, Status.ERROR,
                        reason=f"{side_reason.value}: {'baseline' if failed is baseline else 'candidate'} call "
                        f"failed: {(failed.error or 'unknown error')[:300]}",
                        error_reason=side_reason, baseline=baseline, candidate=candidate,
                        repeat=repeat, adaptations=adaptations,
                    )
                )
                continue
            comparison = compare(
                baseline,
                candidate,
                repeat,
                rules=rules,
                tools=_tools(envelope.request),
                noise=noise.model,
            )
            error_reason = None
            if comparison.status is Status.ERROR:
                error_reason = side_reason or ErrorReason.COMPARATOR_FAULT
            verdict = self._verdict(
                envelope, rollout, record, comparison.status,
                reason=comparison.reason, findings=comparison.findings, baseline=baseline,
                candidate=candidate, repeat=repeat, adaptations=adaptations,
                noise_blocking=comparison.baseline_noise_blocking, error_reason=error_reason,
            )
            if comparison.notes:  # checks that could not run (an unusable schema): for operators, on the verdict event
                redactor = self.config.redactor_for(envelope.route)
                full = self.config.store_outputs_for(envelope.route) == "full"
                notes[rollout.name] = [note if full else redactor.text(note) for note in comparison.notes]
            if comparison.observation is not None and rollout.baseline not in observed:
                # One observation per baseline replay, however many rollouts share it.
                observed.add(rollout.baseline)
                noise.model.add(comparison.observation)
                verdict = replace(verdict, noise_observation=comparison.observation)
            compared.append(verdict)
        verdicts += await self._graded(envelope, compared, now_s)
        profiles = self.config.profiles
        verdicts = [
            replace(v, spend=verdict_spend(v.baseline, v.candidate, v.baseline_repeat, v.grading, profiles))
            for v in verdicts
        ]
        for verdict in verdicts:
            self._observe(verdict, notes.get(verdict.rollout))
        return verdicts

    async def _graded(self, envelope: Envelope, verdicts: list[VerdictRecord], now_s: float) -> list[VerdictRecord]:
        """The verdicts with the route judge's grades and finding (SPEC §8).

        Grading runs before the verdicts go to the store, so an offset is never committed past a verdict
        still waiting for its grades; its spend counts against the same hourly budget as replays.
        """
        judge = self.config.judge_for(envelope.route)
        if judge is None or not verdicts:
            return verdicts
        specs = {r.name: r for r in self.config.rollouts}
        gradings = await self.grader.grade(
            judge,
            envelope.request_id,
            envelope.request,
            [
                GradingJob(
                    v.baseline, v.candidate, v.status, (specs[v.rollout].baseline, specs[v.rollout].candidate),
                    over_budget=self._over_budget(specs[v.rollout], now_s),
                )
                for v in verdicts
            ],
            deadline=time.monotonic() + self.config.models.retry_deadline_s,
        )
        graded = []
        for verdict, grading in zip(verdicts, gradings, strict=True):
            if grading is None:
                graded.append(verdict)
                continue
            if grading.cost_usd:
                self.spend[verdict.rollout].add(now_s, grading.cost_usd)
            status, findings = apply_grading(verdict.status, verdict.findings, grading)
            graded.append(replace(verdict, status=status, findings=findings, grading=grading))
        return graded

    def _over_budget(self, rollout: RolloutSpec, now_s: float) -> bool:
        cap = rollout.budget_usd_per_hour
        return cap is not None and self.spend[rollout.name].spent(now_s) >= cap

    def _wants_repeat(
        self, rollout: RolloutSpec, envelope: Envelope, route_noise: dict[str, _RouteNoise]
    ) -> bool:
        """The rollout's noise_check share by hash; every request while the route's noise model
        is still warming up, so no path is trusted as stable before it has been measured."""
        if rollout.noise_check <= 0:
            return False
        if rollout.noise_checked(envelope.request_id):
            return True
        in_flight = self._checks_in_flight.get((rollout.baseline, envelope.route), 0)
        return route_noise[rollout.baseline].model.requests + in_flight < WARMUP_REQUESTS

    async def _route_noise(self, baseline: str, route: str) -> _RouteNoise:
        """The learned noise of `baseline` on `route`: from the store, refreshed now and then."""
        key = (baseline, route)
        known = self._noise.get(key)
        if known is not None and self.monotonic() - known.loaded_at < NOISE_REFRESH_S:
            return known
        load = self._noise_loads.get(key)
        if load is None or load.done():
            load = self._noise_loads[key] = asyncio.ensure_future(self._load_noise(baseline, route, known))
        return await asyncio.shield(load)

    async def _load_noise(self, baseline: str, route: str, known: _RouteNoise | None) -> _RouteNoise:
        threshold = self.config.rules_for(route).value_noise_threshold
        reader = getattr(self.store, "noise_counts", None)
        try:
            rows = (
                (await reader(baseline, self.clock() - NOISE_WINDOW, route)).get(route, [])
                if reader is not None
                else None
            )
        except Exception as exc:  # the store is down: keep what this process knows
            log.warning("noise_model_unavailable", baseline=baseline, route=route, error=repr(exc)[:300])
            rows = None
        if rows is None:
            entry = known or _RouteNoise(NoiseModel(threshold=threshold), self.monotonic())
            entry.loaded_at = self.monotonic()
        else:
            entry = _RouteNoise(NoiseModel.from_rows(rows, threshold), self.monotonic())
            if known is not None and known.model.requests > entry.model.requests:
                # Observations not yet stored (the writer batches) are newer than the store's view.
                entry.model = known.model
        self._noise[(baseline, route)] = entry
        return entry

    async def _baseline_sides(
        self, envelope: Envelope, rollout: RolloutSpec, wants_repeat: bool, deadline: float,
        record: SourceRecord | None = None,
    ) -> tuple[SideResult, SideResult | None]:
        repeat_call = self._batch_call(rollout, envelope, record, "repeat")
        if rollout.baseline_source == "recorded":
            profile = self.config.profiles.get(rollout.baseline)
            if envelope.response is None:
                baseline = SideResult(
                    model=rollout.baseline, ok=False, source="recorded",
                    error="baseline_source is recorded but the envelope has no response",
                )
            else:
                baseline = recorded_side(rollout.baseline, envelope.response, envelope.latency_ms, profile)
            repeat = (await self._replay(envelope, rollout.baseline, deadline, repeat_call))[0] if wants_repeat else None
            return baseline, repeat
        baseline_call = self._batch_call(rollout, envelope, record, "baseline")
        if wants_repeat and baseline_call is None and has_cache_breakpoint(envelope.request):
            # The noise replay waits for the first to answer, so it reads the prompt cache the first
            # wrote instead of writing it again at the same moment (cache reads cost 0.1x input).
            baseline = (await self._replay(envelope, rollout.baseline, deadline))[0]
            return baseline, (await self._replay(envelope, rollout.baseline, deadline))[0]
        if wants_repeat:
            (baseline, _), (repeat, _) = await asyncio.gather(
                self._replay(envelope, rollout.baseline, deadline, baseline_call),
                self._replay(envelope, rollout.baseline, deadline, repeat_call),
            )
            return baseline, repeat
        return (await self._replay(envelope, rollout.baseline, deadline, baseline_call))[0], None

    def _batch_call(
        self, rollout: RolloutSpec, envelope: Envelope, record: SourceRecord | None, slot: Slot
    ) -> BatchCall | None:
        """The batch identity of one call the rollout batches on this route (its `replay_mode`, or the
        route's own); None for a live call."""
        if rollout.replay_mode_for(envelope.route) != "batch":
            return None
        return BatchCall(
            rollout.name, envelope.request_id, slot, record.source if record else None,
            record.partition if record else None, record.offset if record else None,
        )

    async def _replay(
        self, envelope: Envelope, model: str, deadline: float, batch: BatchCall | None = None
    ) -> tuple[SideResult, tuple[str, ...]]:
        replay = adapt_request(envelope.request, model, self.config.profiles.get(model))
        if batch is not None:
            if self.batches is None:
                raise RuntimeError("a replay_mode: batch call needs the batch replayer wired in")
            side = await self.batches.replay(replay, envelope.api_version, batch)
            self.metrics.model_calls.labels(model, "ok" if side.ok else "error").inc()
            return side, replay.adaptations
        started = time.perf_counter()
        side = await self.models.replay_request(replay, envelope.api_version, deadline)
        self.metrics.model_calls.labels(model, "ok" if side.ok else "error").inc()
        self.metrics.model_latency.labels(model).observe(time.perf_counter() - started)
        return side, replay.adaptations

    def _verdict(
        self,
        envelope: Envelope,
        rollout: RolloutSpec,
        record: SourceRecord | None,
        status: Status,
        *,
        reason: str | None = None,
        findings: tuple[Any, ...] = (),
        baseline: SideResult | None = None,
        candidate: SideResult | None = None,
        repeat: SideResult | None = None,
        adaptations: tuple[str, ...] = (),
        noise_blocking: bool = False,
        error_reason: ErrorReason | None = None,
    ) -> VerdictRecord:
        # What is stored of the outputs is the route's `store_outputs`; the comparison above saw them whole.
        mode, redactor = self.config.store_outputs_for(envelope.route), self.config.redactor_for(envelope.route)
        if mode != "full":
            findings = protect_findings(tuple(findings), mode, redactor)
            reason = redactor.text(reason) if reason else reason
        return VerdictRecord(
            rollout=rollout.name,
            request_id=envelope.request_id,
            route=envelope.route,
            status=status,
            findings=findings,
            comparator_version=COMPARATOR_VERSION,
            created_at=self.clock(),
            baseline=protect_side(baseline, mode, redactor),
            candidate=protect_side(candidate, mode, redactor),
            baseline_repeat=protect_side(repeat, mode, redactor),
            adaptations=adaptations,
            reason=reason,
            error_reason=error_reason.value if error_reason else None,
            baseline_noise_blocking=noise_blocking,
            captured_at=envelope.captured_at or (record.timestamp if record else None),
            attributes=envelope.attributes if mode == "full" else redactor.json(envelope.attributes),
            # The request as the verdict page shows it, under the route's store_outputs like the answers.
            request=(summarise_request(envelope.request) if mode == "full"
                     else redactor.json(summarise_request(envelope.request)) if mode == "redacted" else None),
            source=record.source if record else None,
            partition=record.partition if record else None,
            offset=record.offset if record else None,
        )

    def _observe(self, verdict: VerdictRecord, notes: list[str] | None = None) -> None:
        self.metrics.verdicts.labels(verdict.rollout, verdict.status.value).inc()
        if verdict.status is Status.ERROR:
            self.metrics.error_verdicts.labels(verdict.rollout, verdict.error_reason or "unknown").inc()
        for finding in verdict.findings:
            if not finding.noise:
                self.metrics.findings.labels(verdict.rollout, finding.code).inc()
        if verdict.grading is not None:
            self.metrics.gradings.labels(verdict.rollout, verdict.grading.status).inc()
            self.metrics.grading_cost.labels(verdict.rollout).inc(verdict.grading.cost_usd)
        log.info(
            "verdict",
            request_id=verdict.request_id,
            rollout=verdict.rollout,
            route=verdict.route,
            status=verdict.status.value,
            codes=sorted({f.code for f in verdict.findings if not f.noise}),
            reason=verdict.reason,
            error_reason=verdict.error_reason,
            grading=verdict.grading.status if verdict.grading else None,
            partition=verdict.partition,
            offset=verdict.offset,
            **({"notes": notes} if notes else {}),
        )


def _tools(request: dict[str, Any]) -> list[dict[str, Any]]:
    tools = request.get("tools")
    return [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []
