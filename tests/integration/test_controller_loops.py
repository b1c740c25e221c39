"""Argo's analysis poll loop, Flagger's webhook loop and Flagger's Prometheus queries keep running through a
real PostgreSQL stop and restart: no connection error, no 5xx, no Error measurement, no failed check; and
once PostgreSQL is back, a decision taken after the restart is what they read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from shadowd.adapters.sql_store import open_store
from shadowd.config import load_config
from shadowd.http import ApiState, create_app, runner_options
from shadowd.metrics import Metrics
from shadowd.promoter import ManualActionError, apply_manual

CONFIG = """
models:
  base_url: http://127.0.0.1:9
rollouts:
  - name: live
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    stages: [50, 100]
"""
INTERVAL_S = 0.5
REQUEST_TIMEOUT_S = 10.0  # Argo's and Flagger's default timeouts are of this order


@dataclass
class Answer:
    loop: str
    at: float
    phase: str  # before | outage | after
    status: int
    body: dict[str, Any]


async def _poll(session: aiohttp.ClientSession, base: str, loop: str, phase: dict[str, str],
                answers: list[Answer], errors: list[str], stop: asyncio.Event) -> None:
    """One controller: a request every INTERVAL_S until `stop`; a connection error or timeout is recorded."""
    requests = {
        "argo": ("GET", "/v1/rollouts/live/analysis", None),
        "flagger rollout": ("POST", "/v1/flagger/gate",
                            {"name": "live", "namespace": "prod", "phase": "Progressing",
                             "metadata": {"hook": "rollout"}}),
        "flagger confirm-promotion": ("POST", "/v1/flagger/gate",
                                      {"name": "live", "namespace": "prod", "phase": "Progressing",
                                       "metadata": {"hook": "confirm-promotion"}}),
        "flagger rollback": ("POST", "/v1/flagger/rollback", {"name": "live", "namespace": "prod"}),
        "prometheus": ("GET", '/api/v1/query?query=shadowd_canary_percent{rollout="live"}', None),
    }
    method, path, body = requests[loop]
    while not stop.is_set():
        started = time.monotonic()
        now_phase = phase["now"]
        try:
            async with session.request(method, base + path, json=body,
                                       timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as response:
                answers.append(Answer(loop, started, now_phase, response.status, await response.json()))
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors.append(f"{loop} during {now_phase}: {type(exc).__name__}: {exc}")
        await asyncio.sleep(max(0.0, INTERVAL_S - (time.monotonic() - started)))


async def _retrying(action: Callable[[], Awaitable[Any]], timeout_s: float = 60.0) -> None:
    """Run `action` until it succeeds: the store's connections come back on their own after a restart."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await action()
            return
        except ManualActionError:
            raise
        except Exception:  # whatever the driver raises while the server restarts
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the store did not answer within the deadline after PostgreSQL restarted")
        await asyncio.sleep(0.5)


async def test_controller_loops_live_through_a_postgresql_stop_and_restart(
    tmp_path: Path, fresh_database_url: str, pg_control: Any
) -> None:
    """Every 0.5 s Argo polls the analysis, Flagger calls its rollout, confirm-promotion and rollback hooks and
    queries shadowd_canary_percent, while PostgreSQL is stopped for about 5 s and started again: every
    answer is 200 (or Flagger's contract 403/409 with a reason), Argo's verdict is never missing and never
    `fail`, the rollout hook never refuses; during the outage the answers are the last known decision marked
    stale; after the restart a completion decided then is read fresh (Argo `pass`, confirm-promotion 200)."""
    path = tmp_path / "shadowd.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    store = await open_store(fresh_database_url, upgrade=True)
    spec = config.rollout("live")
    assert spec is not None
    await store.ensure_rollout(spec.name, spec.baseline, spec.candidate, datetime.now(UTC))
    state = ApiState(config=config, store=store, metrics=Metrics())
    runner = web.AppRunner(create_app(state, open_reads=True), **runner_options())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    phase = {"now": "before"}
    answers: list[Answer] = []
    errors: list[str] = []
    stop = asyncio.Event()
    loops = ("argo", "flagger rollout", "flagger confirm-promotion", "flagger rollback", "prometheus")
    promoted_at = 0.0
    try:
        async with aiohttp.ClientSession() as session:
            tasks = [asyncio.create_task(_poll(session, base, loop, phase, answers, errors, stop)) for loop in loops]
            await asyncio.sleep(3)
            phase["now"] = "outage"
            await asyncio.to_thread(pg_control.stop)
            outage_started = time.monotonic()
            await asyncio.sleep(5)
            await asyncio.to_thread(pg_control.start)
            outage_s = time.monotonic() - outage_started
            phase["now"] = "after"
            # Decisions taken after the restart (through the same store, whose pool must reconnect): promoted
            # to the last stage, then complete.
            for _ in range(2):
                await _retrying(lambda: apply_manual(store, spec, "promote", "test", datetime.now(UTC)))
            promoted_at = time.monotonic()
            fresh_deadline = time.monotonic() + 60
            while time.monotonic() < fresh_deadline:
                fresh = [a for a in answers if a.at > promoted_at and "stale" not in a.body]
                if {a.loop for a in fresh if a.status == 200} >= {"argo", "flagger confirm-promotion"} and any(
                    a.loop == "argo" and a.body["verdict"] == "pass" for a in fresh
                ):
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(2)
            stop.set()
            await asyncio.gather(*tasks)
    finally:
        stop.set()
        await asyncio.to_thread(pg_control.start)
        await runner.cleanup()
        await store.close()

    assert not errors, errors
    by_loop = {loop: [a for a in answers if a.loop == loop] for loop in loops}
    for loop, got in by_loop.items():
        assert {a.phase for a in got} == {"before", "outage", "after"}, (loop, [(a.phase, a.status) for a in got])
    assert all(a.status < 500 for a in answers), [(a.loop, a.phase, a.status, a.body) for a in answers if a.status >= 500]
    for a in by_loop["argo"]:
        assert a.status == 200 and a.body["verdict"] in ("pass", "continue"), a
    for a in by_loop["flagger rollout"]:
        assert a.status == 200 and a.body["ok"] is True, a
    for a in by_loop["flagger confirm-promotion"]:
        assert a.status in (200, 403) and a.body["reason"], a
    for a in by_loop["flagger rollback"]:
        assert a.status == 409 and a.body["rollback"] is False and a.body["reason"], a
    for a in by_loop["prometheus"]:
        assert a.status == 200 and a.body["status"] == "success", a
        assert [s["value"][1] for s in a.body["data"]["result"]] in (["50"], ["100"]), a
    # While the database was down the answers were the last known decision, with its age.
    during = [a for a in answers if a.phase == "outage" and a.at > outage_started + 1]
    stale = [a for a in during if a.body.get("stale") is True or a.body.get("warnings")]
    assert stale, [(a.loop, a.body) for a in during]
    for a in stale:
        if a.loop == "prometheus":
            assert "last known figures" in a.body["warnings"][0]
        else:
            assert 0 <= a.body["decision_age_s"] <= 300 and "last known decision" in a.body["reason"], a
    # Before the promotion Argo held and confirm-promotion refused; a promotion after the restart is read fresh.
    assert all(a.body["verdict"] == "continue" for a in by_loop["argo"] if a.phase == "before")
    assert all(a.status == 403 for a in by_loop["flagger confirm-promotion"] if a.phase == "before")
    fresh = [a for a in answers if a.at > promoted_at and "stale" not in a.body and not a.body.get("warnings")]
    assert any(a.loop == "argo" and a.body["verdict"] == "pass" for a in fresh), fresh
    assert any(a.loop == "flagger confirm-promotion" and a.status == 200 for a in fresh), fresh
    assert any(a.loop == "prometheus" and a.body["data"]["result"][0]["value"][1] == "100" for a in fresh), fresh
    print(f"\n[controller loops] PostgreSQL down {outage_s:.1f} s; {len(answers)} answers "
          f"({len(during)} during the outage, {len(stale)} of them from the last known decision), "
          f"{len(errors)} connection errors, {sum(a.status >= 500 for a in answers)} 5xx")
