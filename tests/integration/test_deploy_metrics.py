"""The Grafana dashboard, the alerts and the HPA query only metrics a real `shadowd run` exports on /metrics."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from shadowd.demo.traffic import generate_envelopes
from tests.daemon_harness import (
    DaemonProcess,
    Verdicts,
    clean_behaviours,
    committed_equals_end,
    envelope_records,
    produce,
    wait_until,
)
from tests.helpers import ROOT, fake_model_process, write_config

BASE = ROOT / "deploy" / "kustomize" / "base"
METRIC = re.compile(r"\bshadowd_[a-zA-Z0-9_:]*")


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((BASE / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _alert_queries() -> list[str]:
    rule = yaml.safe_load((BASE / "prometheusrule.yaml").read_text())
    return [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]


def _hpa_metrics() -> list[str]:
    hpa = yaml.safe_load((BASE / "hpa.yaml").read_text())
    return [m["external"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "External"]


def exported_names(exposition: str) -> tuple[set[str], set[str]]:
    """(every name a query may use, the names that have at least one sample) in a /metrics text."""
    names: set[str] = set()
    sampled: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.add(family.name)
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "summary": ("_sum", "_count", "_created")}.get(family.type, ())
        names |= {family.name + suffix for suffix in suffixes}
        sampled |= {sample.name for sample in family.samples}
    return names | sampled, sampled


def test_metric_name_check_catches_a_typo() -> None:
    """Near miss: a query naming a metric that is not exported is caught by the same name check."""
    names, _ = exported_names("# HELP shadowd_records_total x\n# TYPE shadowd_records_total counter\n")
    assert "shadowd_records_total" in names
    assert "shadowd_record_total" not in names and "shadowd_records_total_bucket" not in names


@pytest.fixture
def fake_model(tmp_path: Path) -> Iterator[str]:
    with ExitStack() as stack:
        yield stack.enter_context(fake_model_process(clean_behaviours(tmp_path, 5)))


async def test_every_dashboard_alert_and_hpa_metric_is_in_a_real_scrape(
    tmp_path: Path, fake_model: str, kafka_bootstrap: str, fresh_topic: Any, fresh_database_url: str
) -> None:
    """After `shadowd run` verdicts real records, its /metrics holds every metric name used by the Grafana
    dashboard, the PrometheusRule and the HPA, with samples for lag, records, verdicts and latency."""
    topic, group, count = await fresh_topic(), f"shadowd-test-{uuid.uuid4().hex[:12]}", 15
    kafka = {"bootstrap_servers": kafka_bootstrap, "topic": topic, "group_id": group,
             "dlq_topic": f"{topic}.dlq", "decisions_topic": f"{topic}.decisions"}
    rollouts = ("\n  - name: opus-4-7\n    baseline: claude-opus-4-6\n    candidate: claude-opus-4-7\n"
                "    gate: {min_samples: 50}\n    budget: {usd_per_hour: 10}\n")
    config = write_config(tmp_path, fake_model, extra="kafka: " + json.dumps(kafka), rollouts=rollouts)
    envelopes = generate_envelopes(count, seed=51)
    envelopes[0]["request"]["max_tokens"] = 100_000  # one streamed replay: a TTFT sample
    await produce(kafka_bootstrap, topic, envelope_records(envelopes))
    daemon = DaemonProcess(config, fresh_database_url, tmp_path / "daemon.log", "--promoter-interval", "2").start()
    try:
        await daemon.wait_ready(timeout_s=120)
        store = Verdicts(fresh_database_url)

        async def all_verdicted() -> bool:
            return await store.count() >= count

        await wait_until(all_verdicted, 180, f"{count} verdicts")
        await wait_until(lambda: committed_equals_end(kafka_bootstrap, group, topic), 60, "offsets at the end")

        def scrape() -> str:
            with urllib.request.urlopen(f"{daemon.http_url}/metrics", timeout=10) as response:
                return str(response.read().decode())

        async def lag_sampled() -> bool:
            text = scrape()
            lag = _lag_samples(text, topic)
            return bool(lag) and all(v == 0 for v in lag) and "shadowd_canary_percent" in exported_names(text)[1]

        await wait_until(lag_sampled, 90, "a zero consumer lag and the gate gauges on /metrics")
        exposition = scrape()
    finally:
        daemon.stop_now()

    names, sampled = exported_names(exposition)
    queries = _dashboard_queries() + _alert_queries()
    assert len(_dashboard_queries()) >= 15
    missing = {}
    for query in queries:
        used = set(METRIC.findall(query))
        assert used, f"a query names no shadowd metric: {query}"
        if used - names:
            missing[query] = sorted(used - names)
    missing.update({name: [name] for name in _hpa_metrics() if name not in names})
    assert not missing, f"queried but not exported: {missing}"
    for name in ("shadowd_consumer_lag_records", "shadowd_records_total", "shadowd_verdicts_total",
                 "shadowd_model_call_seconds_bucket", "shadowd_model_ttft_seconds_bucket",
                 "shadowd_spend_usd_total", "shadowd_tokens_total", "shadowd_budget_remaining_usd",
                 "shadowd_gate_samples", "shadowd_gate_stage", "shadowd_writer_queue_records"):
        assert name in sampled, f"{name} has no sample after {count} verdicts"


def _lag_samples(exposition: str, topic: str) -> list[float]:
    return [s.value for f in text_string_to_metric_families(exposition) for s in f.samples
            if s.name == "shadowd_consumer_lag_records" and s.labels.get("topic") == topic]
