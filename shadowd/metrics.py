"""Prometheus metrics, created per process by the wiring code and passed down."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
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
        self.store_errors = Counter("shadowd_store_errors_total", "Failed writes to the store.", registry=r)
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
