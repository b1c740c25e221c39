"""The LiteLLM weights recipe (deploy/litellm/canary_weights.py) run as documented against `shadowd serve`:
the router's traffic follows the rollout's canary share, and all of it goes to the baseline after a rollback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shadowd.fakemodel import FakeModelServer, load_behaviours, start_fake_model
from tests.helpers import ROOT, free_port
from tests.unit.test_router import Serve

pytest.importorskip("litellm")
SCRIPT = ROOT / "deploy" / "litellm" / "canary_weights.py"
CALLS = 200


@pytest.fixture
async def server() -> AsyncIterator[FakeModelServer]:
    async with await start_fake_model(load_behaviours(None)) as running:
        yield running


async def _run_recipe(shadowd_url: str, model: FakeModelServer) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWD_")} | {
        "ANTHROPIC_API_KEY": "test", "PYTHONPATH": str(ROOT)}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(SCRIPT), "--shadowd", shadowd_url, "--rollout", "opus-4-7",
         "--api-base", model.base_url, "--calls", str(CALLS)],
        capture_output=True, env=env, cwd=ROOT, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


async def test_router_traffic_follows_the_canary_share_and_goes_to_the_baseline_after_rollback(
    tmp_path: Path, server: FakeModelServer
) -> None:
    """At the 50% stage both models answer about half the calls; after a rollback the candidate answers none."""
    serve = Serve(tmp_path)
    await asyncio.to_thread(serve.start)
    try:
        for _ in range(3):  # 1 -> 5 -> 25 -> 50
            await serve.act("promote")
        half = await _run_recipe(serve.url, server)
        assert half["weights"]["candidate"] == {"model": "claude-opus-4-7", "weight": 50}
        candidate = half["answered"].get("claude-opus-4-7", 0)
        assert sum(half["answered"].values()) == CALLS and 0.3 * CALLS <= candidate <= 0.7 * CALLS

        await serve.act("rollback")
        rolled = await _run_recipe(serve.url, server)
        assert rolled["weights"]["candidate"]["weight"] == 0
        assert rolled["answered"] == {"claude-opus-4-6": CALLS}
    finally:
        assert serve.process is not None
        serve.process.kill()
        serve.process.wait(timeout=10)


async def test_with_shadowd_unreachable_the_recipe_sends_everything_to_the_baseline(server: FakeModelServer) -> None:
    """No answer from shadowd: the baseline deployment gets every call."""
    result = await _run_recipe(f"http://127.0.0.1:{free_port()}", server)
    assert "error" in result["weights"] and result["answered"] == {"claude-opus-4-6": CALLS}
