"""Argo and Flagger keep shadowd's last known decision through a PostgreSQL outage: no Error, no 5xx."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from shadowd.adapters.sql_store import open_store
from shadowd.config import load_config
from shadowd.http import ApiState, create_app, runner_options
from shadowd.metrics import Metrics
from shadowd.promoter import apply_manual

CONFIG = """
models:
  base_url: http://127.0.0.1:9
rollouts:
  - name: good
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    stages: [100]
  - name: bad
    baseline: claude-opus-4-6
    candidate: claude-sonnet-4-6
    stages: [1, 100]
"""


async def _answers(client: TestClient[Any, Any]) -> dict[str, tuple[int, dict[str, Any]]]:
    """Every controller question once: Argo for both rollouts, Flagger's promotion gate and rollback hook."""
    calls = {
        "argo good": client.get("/v1/rollouts/good/analysis?canary_percent=100"),
        "argo bad": client.get("/v1/rollouts/bad/analysis?canary_percent=1"),
        "flagger promote good": client.post("/v1/flagger/gate", json={
            "name": "good", "namespace": "prod", "phase": "Progressing", "metadata": {"hook": "confirm-promotion"}}),
        "flagger rollout bad": client.post("/v1/flagger/gate", json={
            "name": "bad", "namespace": "prod", "phase": "Progressing", "metadata": {"hook": "rollout"}}),
        "flagger rollback bad": client.post("/v1/flagger/rollback", json={
            "name": "bad", "namespace": "prod", "phase": "Progressing"}),
    }
    answers = {}
    for name, call in calls.items():
        response = await call
        answers[name] = (response.status, await response.json())
    return answers


def _outcome(answers: dict[str, tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """What a controller acts on: Argo's verdict, Flagger's HTTP status."""
    return {name: body["verdict"] if name.startswith("argo") else status for name, (status, body) in answers.items()}


async def test_controllers_answer_from_the_last_known_decision_while_postgresql_is_down(
    tmp_path: Path, fresh_database_url: str, pg_control: Any
) -> None:
    """With PostgreSQL stopped, Argo and Flagger get the decisions they got before (pass for a complete rollout,
    fail and rollback for a rolled-back one), marked stale with their age; once the last decision is too old,
    Argo gets `continue` and Flagger a 403/409 hold, never an error status or a 5xx."""
    path = tmp_path / "shadowd.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    store = await open_store(fresh_database_url, upgrade=True)
    now = datetime.now(UTC)
    for spec in config.rollouts:
        await store.ensure_rollout(spec.name, spec.baseline, spec.candidate, now)
    good, bad = config.rollout("good"), config.rollout("bad")
    assert good is not None and bad is not None
    await apply_manual(store, good, "promote", "test", now)
    await apply_manual(store, bad, "rollback", "test", now)
    state = ApiState(config=config, store=store, metrics=Metrics())
    server = TestServer(create_app(state, open_reads=True))
    await server.start_server(**runner_options())
    client: TestClient[Any, Any] = TestClient(server)
    await client.start_server()
    try:
        before = await _answers(client)
        expected = {"argo good": "pass", "argo bad": "fail", "flagger promote good": 200,
                    "flagger rollout bad": 403, "flagger rollback bad": 200}
        assert _outcome(before) == expected, before
        assert not any("stale" in body for _s, body in before.values())

        await asyncio.to_thread(pg_control.stop)
        during = await _answers(client)
        assert _outcome(during) == expected, during
        for name, (_status, body) in during.items():
            assert body["stale"] is True and 0 <= body["decision_age_s"] <= 300, (name, body)
            assert "last known decision" in body["reason"]

        state.last_report_max_age_s = 0.0  # the outage outlasted what a last decision may stand for
        await asyncio.sleep(0.1)
        held = await _answers(client)
        assert _outcome(held) == {"argo good": "continue", "argo bad": "continue", "flagger promote good": 403,
                                  "flagger rollout bad": 403, "flagger rollback bad": 409}, held
        assert all(status < 500 for status, _b in held.values())
    finally:
        await client.close()
        await asyncio.to_thread(pg_control.start)
        await store.close()
