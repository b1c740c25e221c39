"""CanaryRouter: sticky assignment, the share it follows, and the baseline on any failure or after a
rollback, read from a real `shadowd serve` process over SQLite (which also covers `serve` itself)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shadowd.adapters.sql_store import open_store
from shadowd.config import load_config
from shadowd.http.rollouts import weights_body
from shadowd.promoter import apply_manual
from shadowd.router import CanaryRouter, canary_place, takes_candidate
from tests.helpers import ROOT, free_port, wait_http

BASELINE, CANDIDATE = "claude-opus-4-6", "claude-opus-4-7"
STAGES = (1, 5, 25, 50, 100)
KEYS = [f"user-{i}" for i in range(10_000)]
CONFIG = f"""
rollouts:
  - name: opus-4-7
    baseline: {BASELINE}
    candidate: {CANDIDATE}
    stages: [1, 5, 25, 50, 100]
"""


@pytest.mark.parametrize("percent", [0, *STAGES, 33.3])
def test_the_share_of_keys_on_the_candidate_is_within_two_points_of_canary_percent(percent: float) -> None:
    """Over 10,000 keys the candidate's share is canary_percent ± 2 points."""
    share = 100 * sum(takes_candidate("opus-4-7", key, percent) for key in KEYS) / len(KEYS)
    assert abs(share - percent) <= 2.0


def test_raising_the_share_only_moves_keys_from_baseline_to_candidate() -> None:
    """A key on the candidate at one stage is on the candidate at every later (larger) stage."""
    previous: set[str] = set()
    for percent in STAGES:
        now = {key for key in KEYS if takes_candidate("opus-4-7", key, percent)}
        assert previous <= now
        previous = now
    assert previous == set(KEYS)


def test_places_differ_between_rollouts_and_are_stable() -> None:
    """A key's place is fixed per rollout, and two rollouts do not pick the same keys first."""
    assert canary_place("a", "user-1") == canary_place("a", "user-1")
    first_a = {k for k in KEYS if canary_place("a", k) < 5}
    first_b = {k for k in KEYS if canary_place("b", k) < 5}
    assert len(first_a & first_b) < len(first_a) / 4


def test_weights_follow_the_stage_and_go_to_zero_on_rollback() -> None:
    """The weights answer is the current stage's canary_percent, and 0 for the candidate once rolled back."""
    spec = load_config_text(CONFIG).rollouts[0]
    assert weights_body(spec, None)["candidate"] == {"model": CANDIDATE, "weight": 1}
    active = weights_body(spec, {"state": "active", "stage_index": 2})
    assert active["baseline"] == {"model": BASELINE, "weight": 75} and active["candidate"]["weight"] == 25
    rolled = weights_body(spec, {"state": "rolled_back", "stage_index": 3})
    assert rolled["candidate"]["weight"] == 0 and rolled["baseline"]["weight"] == 100


def load_config_text(text: str) -> object:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "shadowd.yaml"
        path.write_text(text)
        return load_config(path)


class Serve:
    def __init__(self, folder: Path) -> None:
        self.config = folder / "shadowd.yaml"
        self.config.write_text(CONFIG)
        self.db_url = f"sqlite:///{folder / 'shadowd.db'}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWD_")}
        subprocess.run([sys.executable, "-m", "shadowd", "db", "upgrade", "--db", self.db_url], check=True,
                       env=env, cwd=ROOT, capture_output=True, timeout=120)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shadowd", "serve", "-c", str(self.config), "--db", self.db_url,
             "--http", f"127.0.0.1:{self.port}"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        wait_http(f"{self.url}/healthz", 30)

    async def act(self, action: str) -> None:
        spec = load_config(self.config).rollouts[0]
        store = await open_store(self.db_url)
        try:
            await apply_manual(store, spec, action, "test", datetime.now(UTC))  # type: ignore[arg-type]
        finally:
            await store.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Serve]:
    serve = Serve(tmp_path)
    serve.start()
    try:
        yield serve
    finally:
        assert serve.process is not None
        if serve.process.poll() is None:
            serve.process.kill()
            serve.process.wait(timeout=10)


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


def _router(url: str, **kwargs: object) -> CanaryRouter:
    return CanaryRouter(url, "opus-4-7", baseline=BASELINE, candidate=CANDIDATE, **kwargs)  # type: ignore[arg-type]


def _candidates(router: CanaryRouter) -> set[str]:
    return {key for key in KEYS if router.model_for(key) == CANDIDATE}


async def test_the_router_follows_the_served_share_keeps_keys_sticky_and_answers_the_baseline_after_rollback(
    served: Serve,
) -> None:
    """Through `shadowd serve`: share 1% → 5% → 25% moves only baseline keys, and a rollback sends all to the baseline."""
    router = _router(served.url)
    seen: set[str] = set()
    for expected in (1, 5, 25):
        share = router.refresh()
        assert share.error is None and share.canary_percent == expected
        candidates = _candidates(router)
        assert abs(100 * len(candidates) / len(KEYS) - expected) <= 2.0
        assert seen <= candidates
        seen = candidates
        await served.act("promote")
    await served.act("rollback")
    assert router.refresh().canary_percent == 0
    assert _candidates(router) == set()
    weights = await asyncio.to_thread(_get_json, f"{served.url}/v1/rollouts/opus-4-7/weights")
    assert weights["candidate"] == {"model": CANDIDATE, "weight": 0}
    assert served.process is not None
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=30) == 0


async def test_the_router_answers_the_baseline_when_the_api_fails_or_disagrees(served: Serve) -> None:
    """Unreachable API, unknown rollout (404) or other models than configured: every key gets the baseline."""
    await served.act("promote")
    await served.act("promote")  # 25%: a failure would show as candidates
    assert _router(served.url).refresh().canary_percent == 25
    unreachable = _router(f"http://127.0.0.1:{free_port()}", timeout_s=1)
    assert unreachable.refresh().error is not None and _candidates(unreachable) == set()
    unknown = CanaryRouter(served.url, "no-such-rollout", baseline=BASELINE, candidate=CANDIDATE)
    assert "404" in (unknown.refresh().error or "") and unknown.model_for("user-1") == BASELINE
    other = CanaryRouter(served.url, "opus-4-7", baseline=BASELINE, candidate="claude-sonnet-4-6")
    assert "not the configured" in (other.refresh().error or "") and _candidates(other) == set()


def test_before_the_first_answer_and_with_a_stale_share_every_key_gets_the_baseline() -> None:
    """model_for never waits on the API: until a share is known (or once it is too old) it answers the baseline."""
    router = _router(f"http://127.0.0.1:{free_port()}", ttl_s=0.01, max_stale_s=0.01, timeout_s=0.2)
    assert {router.model_for(key) for key in KEYS[:200]} == {BASELINE}
