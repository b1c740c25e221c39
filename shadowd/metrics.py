"""Prometheus metrics, created per process by the wiring code and passed down."""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import structlog
from prometheus_client import GC_COLLECTOR, CollectorRegistry, Counter, Gauge, Histogram

from shadowd.core.retention import TABLES as RETENTION_TABLES
from shadowd.ports_kafka import RecordSource

_SIDES = ("baseline", "candidate", "repeat")
log = structlog.get_logger("shadowd.metrics")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # python_gc_*: what the cyclic collector does under `shadowd run`'s widened thresholds.
        r.register(GC_COLLECTOR)
        self.records = Counter("shadowd_records_total", "Input records by outcome.", ["outcome"], registry=r)
        self.verdicts = Counter("shadowd_verdicts_total", "Verdicts stored.", ["rollout", "status"], registry=r)
        self.findings = Counter("shadowd_findings_total", "Non-noise findings.", ["rollout", "code"], registry=r)
        self.dead_letters = Counter("shadowd_dead_letters_total", "Dead letters by reason.", ["reason"], registry=r)
        self.model_calls = Counter(
            "shadowd_model_calls_total", "Model calls by model and outcome.", ["model", "outcome"], registry=r
        )
        self.model_attempts = Counter(
            "shadowd_model_attempts_total",
            "Model call attempts by model, outcome (ok, capacity, server, request, response) and status "
            "(HTTP code, or timeout, connection, stream for an error event inside a 200 stream, invalid).",
            ["model", "outcome", "status"],
            registry=r,
        )
        self.model_retries = Counter(
            "shadowd_model_retries_total", "Model call retries by model and failure kind.", ["model", "failure"],
            registry=r,
        )
        self.model_concurrency_limit = Gauge(
            "shadowd_model_concurrency_limit",
            "Model calls allowed in flight now (the adaptive limit, at most models.max_concurrency).",
            registry=r,
        )
        self.error_verdicts = Counter(
            "shadowd_error_verdicts_total", "Error verdicts by rollout and reason.", ["rollout", "reason"], registry=r
        )
        self.model_latency = Histogram(
            "shadowd_model_call_seconds",
            "Model call latency, including retries.",
            ["model"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.grades = Counter(
            "shadowd_judge_grades_total", "Grading calls by judge model and outcome.", ["model", "outcome"], registry=r
        )
        self.gradings = Counter(
            "shadowd_gradings_total", "Compared verdicts on judged routes by grading status.", ["rollout", "status"],
            registry=r,
        )
        self.grading_cost = Counter(
            "shadowd_grading_cost_usd_total", "Judge spend in USD (part of the shadow budget).", ["rollout"], registry=r
        )
        self.in_flight_records = Gauge("shadowd_records_in_flight", "Records being replayed.", registry=r)
        self.store_errors = Counter(
            "shadowd_store_errors_total",
            "Failed writes to the store: outages, unclassified errors and batches the store refused.", registry=r,
        )
        self.store_retries = Counter(
            "shadowd_store_retries_total",
            "Writes of the same rows tried again after a failure, by what failed (unavailable, unclassified, "
            "refused_dead_letter); offsets wait meanwhile.",
            ["reason"], registry=r,
        )
        # The retention purge (shadowd.retention), on the promoter's tick.
        self.retention_purged = Counter(
            "shadowd_retention_purged_rows_total",
            "Rows the retention purge deleted, by table (verdicts, findings, dead_letters, noise_counts), or emptied "
            "(verdict_outputs: verdicts whose stored outputs were dropped).",
            ["table"], registry=r,
        )
        self.retention_duration = Histogram(
            "shadowd_retention_purge_seconds", "Duration of one retention purge run.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60), registry=r,
        )
        self.retention_longest_statement = Gauge(
            "shadowd_retention_longest_statement_seconds",
            "The longest single statement of the last retention purge run.", registry=r,
        )
        self.retention_last_success = Gauge(
            "shadowd_retention_last_success_timestamp_seconds",
            "When a retention purge run last finished without error (Unix time; 0 = not yet).", registry=r,
        )
        for table in RETENTION_TABLES:
            self.retention_purged.labels(table)
        for reason in ("unavailable", "unclassified", "refused_dead_letter"):
            self.store_retries.labels(reason)
        self.consumer_paused = Gauge("shadowd_consumer_paused", "1 while fetching is paused.", registry=r)
        self.committed_offset = Gauge(
            "shadowd_committed_offset", "Last committed offset.", ["topic", "partition"], registry=r
        )
        self.canary_percent = Gauge("shadowd_canary_percent", "Current canary share.", ["rollout"], registry=r)
        self.regression_rate = Gauge("shadowd_regression_rate", "Regression rate.", ["rollout"], registry=r)
        self.auth_failures = Counter(
            "shadowd_auth_failures_total",
            "HTTP API requests refused for their credentials, by reason "
            "(missing, malformed, unknown_token, forbidden, throttled).",
            ["reason"],
            registry=r,
        )
        self.gate_decisions = Counter(
            "shadowd_gate_decisions_total", "Gate decisions.", ["rollout", "decision"], registry=r
        )
        self.consumer_lag = Gauge(
            "shadowd_consumer_lag_records",
            "Records on the partition not yet committed by this group (end offset - committed offset), "
            "per assigned partition; sampled every few seconds.",
            ["topic", "partition"],
            registry=r,
        )
        self.spend = Counter(
            "shadowd_spend_usd_total", "Replay spend in USD by rollout and side (baseline, candidate, repeat).",
            ["rollout", "side"], registry=r,
        )
        self.tokens = Counter(
            "shadowd_tokens_total", "Replay tokens by rollout, side and kind (input, output).",
            ["rollout", "side", "kind"], registry=r,
        )
        self.budget_remaining = Gauge(
            "shadowd_budget_remaining_usd",
            "USD left in the rollout's hourly shadow budget (budget.usd_per_hour), in this process; 0 = exhausted.",
            ["rollout"], registry=r,
        )
        self.kafka_reachable = Gauge(
            "shadowd_kafka_reachable", "1 when the last lag sample reached the Kafka brokers, else 0.", registry=r
        )
        self.writer_queue = Gauge(
            "shadowd_writer_queue_records", "Record outcomes waiting for the batch writer.", registry=r
        )
        self.gate_stage = Gauge("shadowd_gate_stage", "The rollout's stage (1-based) at the last gate evaluation.",
                                ["rollout"], registry=r)
        self.gate_samples = Gauge("shadowd_gate_samples", "Compared verdicts the gate counted.", ["rollout"],
                                  registry=r)
        self.gate_stage_samples = Gauge("shadowd_gate_stage_samples", "Compared verdicts in the current stage.",
                                        ["rollout"], registry=r)
        self.gate_rate_increase = Gauge(
            "shadowd_gate_regression_rate_increase",
            "Regression-rate increase over baseline noise: the estimate and the gate's anytime-valid bounds.",
            ["rollout", "bound"], registry=r,
        )
        self.gate_candidate_rate = Gauge("shadowd_gate_candidate_regression_rate",
                                         "Candidate regression rate the gate saw.", ["rollout"], registry=r)
        self.gate_noise_rate = Gauge("shadowd_gate_baseline_noise_rate", "Baseline noise rate the gate saw.",
                                     ["rollout"], registry=r)
        self.ttft = Histogram(
            "shadowd_model_ttft_seconds", "Time to first token of streamed replays, by model.", ["model"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60), registry=r,
        )

    def observe_gate(self, rollout: str, stage_index: int, figures: dict[str, Any]) -> None:
        """The figures the gate decided on, per rollout (a figure the gate has no value for is left out)."""
        self.gate_stage.labels(rollout).set(stage_index + 1)
        for figure, gauge in (("samples", self.gate_samples), ("stage_samples", self.gate_stage_samples)):
            value = figures.get(figure)
            if isinstance(value, int | float) and math.isfinite(value):
                gauge.labels(rollout).set(value)
        for figure, bound in (("rate_increase", "estimate"), ("rate_increase_lower", "lower"),
                              ("rate_increase_upper", "upper")):
            value = figures.get(figure)
            if isinstance(value, int | float) and math.isfinite(value):
                self.gate_rate_increase.labels(rollout, bound).set(value)
        for figure, gauge in (("candidate_regression_rate", self.gate_candidate_rate),
                              ("baseline_noise_rate", self.gate_noise_rate)):
            value = figures.get(figure)
            if isinstance(value, int | float) and math.isfinite(value):
                gauge.labels(rollout).set(value)

    def observe_sides(self, rollout: str, sides: dict[str, Any]) -> None:
        """Spend, tokens and TTFT of a record's replayed sides (`{"baseline": SideResult, ...}`)."""
        for side, result in sides.items():
            if result is None or side not in _SIDES or getattr(result, "source", "replay") != "replay":
                continue
            cost = result.cost_usd
            if cost is not None and math.isfinite(cost) and cost > 0:
                self.spend.labels(rollout, side).inc(cost)
            for kind in ("input", "output"):
                count = getattr(result.usage, f"{kind}_tokens", 0)
                if isinstance(count, int) and count > 0:
                    self.tokens.labels(rollout, side, kind).inc(count)
            ttft = result.ttft_ms
            if ttft is not None and math.isfinite(ttft) and ttft >= 0:
                self.ttft.labels(result.model).observe(ttft / 1000)


async def sample_consumer_lag(consumer: RecordSource, metrics: Metrics, stop: asyncio.Event, interval_s: float = 15.0) -> None:
    """Until `stop`: per assigned partition, end offset minus the group's committed offset into
    `shadowd_consumer_lag_records`, and whether Kafka answered into `shadowd_kafka_reachable`. Kafka being
    away is logged, never fatal (readiness does not depend on it): the lag keeps its last value."""
    reported: set[tuple[str, str]] = set()
    while not stop.is_set():
        try:
            assigned = sorted(consumer.assignment())
            if not assigned:
                await consumer.probe()  # a metadata round trip: is the broker there at all?
            ends = await consumer.end_offsets(assigned) if assigned else {}
            now: set[tuple[str, str]] = set()
            for tp, end in ends.items():
                committed = await consumer.committed(tp)
                labels = (tp.topic, str(tp.partition))
                metrics.consumer_lag.labels(*labels).set(max(0, int(end) - int(committed or 0)))
                now.add(labels)
            for labels in reported - now:  # a partition this process no longer owns
                with contextlib.suppress(KeyError):
                    metrics.consumer_lag.remove(*labels)
            reported = now
            metrics.kafka_reachable.set(1)
        except Exception as exc:  # a metric must never stop the daemon
            metrics.kafka_reachable.set(0)
            log.warning("kafka_unreachable", error=f"{type(exc).__name__}: {exc}"[:300])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
