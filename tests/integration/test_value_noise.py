"""value.changed with a learned noise model on PostgreSQL: a stable label that changes is a regression,
a field the baseline rewords on every call never is, with a quarter of requests noise-checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shadowd.config import load_config
from shadowd.fakemodel import parse_behaviours, start_fake_model
from shadowd.replay_file import replay_file
from shadowd.report import build_report
from shadowd.wiring import open_pipeline

REQUESTS = 400
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["category", "summary"],
    "additionalProperties": False,
    "properties": {
        "category": {"type": "string", "enum": ["billing", "shipping", "account", "other"]},
        "summary": {"type": "string", "minLength": 5, "maxLength": 40},
    },
}
CONFIG = """
models: {timeout_s: 30, max_concurrency: 64}
routes:
  triage:
    output_schema: triage.json
rollouts:
  - name: triage-candidate
    baseline: claude-opus-4-6
    candidate: claude-sonnet-4-6
    noise_check: 0.25
    routes: [triage]
"""
BEHAVIOURS = {
    "models": {
        # The baseline rewords the summary on every call; its category never moves.
        "claude-opus-4-6": {"noisy_fields": ["summary"]},
        # The candidate does the same, and changes a stable label (the category) on ~10 %.
        "claude-sonnet-4-6": {"noisy_fields": ["summary"], "faults": {"label_changed": 0.10}},
    }
}


def envelope(index: int) -> dict[str, Any]:
    return {
        "schema": "shadowd.mirror/v1",
        "request_id": f"triage-{index:04d}",
        "route": "triage",
        "request": {
            "model": "claude-opus-4-6",
            "max_tokens": 512,
            "system": "Classify the ticket. Respond with JSON only, matching this JSON Schema:\n" + json.dumps(SCHEMA),
            "messages": [{"role": "user", "content": f"Ticket {index}: order {1000 + index * 7} is late again."}],
        },
    }


def category(side: Any) -> str:
    return str(json.loads(side.content[0]["text"])["category"])


async def test_stable_label_changes_are_regressions_and_a_noisy_summary_never_is(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """400 requests, noise_check 0.25: every changed category is a value.changed regression, the
    summary never is one, and the report lists $.summary among the route's noisy paths."""
    (tmp_path / "triage.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "shadowd.yaml").write_text(CONFIG)
    traffic = tmp_path / "traffic.jsonl"
    traffic.write_text("".join(json.dumps(envelope(i)) + "\n" for i in range(REQUESTS)))
    config = load_config(tmp_path / "shadowd.yaml")
    server = await start_fake_model(parse_behaviours(BEHAVIOURS))
    try:
        async with open_pipeline(config, fresh_database_url, base_url=server.base_url) as (pipeline, writer, store, _):
            summary = await replay_file(traffic, pipeline, writer, records_in_flight=16)
            assert summary.to_dict()["verdicts"] == REQUESTS
            spec = config.rollouts[0]
            stored = await store.list_verdicts(spec.name, _no_filter(), limit=REQUESTS + 10)
            report = await build_report(store, spec)
    finally:
        await server.close()

    assert len(stored) == REQUESTS
    changed = 0
    for row in stored:
        verdict = row.verdict
        assert verdict.baseline is not None and verdict.candidate is not None
        values = [f for f in verdict.findings if f.code == "value.changed"]
        assert not [f for f in values if f.path == "/summary" and not f.noise], verdict.findings
        if category(verdict.baseline) != category(verdict.candidate):
            changed += 1
            assert verdict.status.value == "regression", verdict.findings
            assert [(f.path, f.noise) for f in values if f.path == "/category"] == [("/category", False)]
        else:
            assert verdict.status.value in ("pass", "noise"), verdict.findings
    assert 0.05 * REQUESTS <= changed <= 0.16 * REQUESTS  # the fault rate is 10 %, by hash

    assert report["counts"]["regression"] == changed
    noisy = {entry["path"]: entry for entry in report["noisiest"]["triage"]["paths"]}
    assert noisy["$.summary"]["noise"] and noisy["$.summary"]["rate"] > 0.5
    assert "$.category" not in noisy
    check = report["noise_check"]
    assert check["fraction"] == 0.25
    # A quarter by hash, plus every request while the route's noise model warmed up.
    assert 0.15 <= check["noise_checked_share"] <= 0.45
    assert 2.15 <= check["model_calls_per_compared"] <= 2.45


def _no_filter() -> Any:
    from shadowd.adapters.sql_store import VerdictFilter

    return VerdictFilter()
