"""The LiteLLM callback: a real `litellm.Router` pointed at the fake model publishes envelopes that
shadowd parses and judges (`shadowd replay`, recorded baseline), and it never fails a call."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch of the price list at import
litellm = pytest.importorskip("litellm")

from shadowd.core.envelope import parse_envelope  # noqa: E402
from shadowd.fakemodel import FakeModelServer, load_behaviours, start_fake_model  # noqa: E402
from shadowd.integrations.litellm import ShadowdMirrorCallback, capture_of  # noqa: E402
from shadowd.mirror import MemorySink, Mirror  # noqa: E402
from tests.helpers import ROOT  # noqa: E402

TOOL = {
    "type": "function",
    "function": {
        "name": "get_order_status",
        "description": "Look up an order.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    },
}


@pytest.fixture
async def server() -> AsyncIterator[FakeModelServer]:
    async with await start_fake_model(load_behaviours(None)) as running:
        yield running


@pytest.fixture
def callbacks() -> Iterator[list[Any]]:
    """LiteLLM's global callback list, empty at the start and emptied after the test.

    LiteLLM copies `litellm.callbacks` into its own success lists on first use and keeps them, so
    both are reset (the reset LiteLLM's own tests use)."""
    litellm.logging_callback_manager._reset_all_callbacks()
    yield litellm.callbacks
    litellm.logging_callback_manager._reset_all_callbacks()


def _router(server: FakeModelServer) -> Any:
    return litellm.Router(model_list=[{
        "model_name": "claude-opus-4-6",
        "litellm_params": {"model": "anthropic/claude-opus-4-6", "api_base": server.base_url, "api_key": "test"},
    }], num_retries=0)


async def _wait_calls(mirror: Mirror, count: int) -> None:
    deadline = time.monotonic() + 30
    while mirror.stats()["calls"] < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"the callback saw {mirror.stats()['calls']} of {count} calls: {mirror.stats()}")
        await asyncio.sleep(0.05)


async def test_router_calls_become_envelopes_that_shadowd_replays_into_one_verdict_each(
    server: FakeModelServer, callbacks: list[Any], tmp_path: Path
) -> None:
    """Plain, streamed and tool calls through a LiteLLM Router are mirrored as valid envelopes with the
    Messages API request and response, and `shadowd replay` judges each against the recorded baseline."""
    sink = MemorySink()
    mirror = Mirror(sink=lambda: sink, attributes={"service": "gateway"})
    callbacks.append(ShadowdMirrorCallback(mirror))
    router = _router(server)
    messages = [{"role": "user", "content": "Summarise ticket 4411 for the on-call engineer."}]
    metadata = {"shadowd_route": "support-summary", "shadowd_attributes": {"tenant": "acme"}}
    plain = [await router.acompletion(model="claude-opus-4-6", messages=messages, max_tokens=200, metadata=metadata)
             for _ in range(6)]
    for _ in range(4):
        stream = await router.acompletion(model="claude-opus-4-6", messages=messages, max_tokens=200, stream=True,
                                          metadata=metadata)
        async for _chunk in stream:
            pass
    tools = [await router.acompletion(model="claude-opus-4-6", max_tokens=200, tools=[TOOL], tool_choice="required",
                                      messages=[{"role": "user", "content": "Where is order ORD-1234567?"}])
             for _ in range(3)]
    await _wait_calls(mirror, 13)
    assert await asyncio.to_thread(mirror.flush, 20.0)
    stats = await mirror.aclose(5)
    assert stats["delivered"] == 13 and stats["dropped"] == 0 and stats["internal_errors"] == 0

    envelopes = [parse_envelope(value) for _key, value in sink.records]
    assert len({e.request_id for e in envelopes}) == 13
    streamed = [e for e in envelopes if e.request.get("stream")]
    assert len(streamed) == 4
    for envelope in envelopes:
        assert envelope.request["model"] == "claude-opus-4-6" and envelope.response is not None
        assert envelope.api_version and envelope.latency_ms is not None
        assert envelope.attributes["service"] == "gateway"
        assert envelope.response["content"] and envelope.response["stop_reason"]
    routed = [e for e in envelopes if e.route == "support-summary"]
    assert len(routed) == 10 and all(e.attributes["tenant"] == "acme" for e in routed)
    by_id = {e.request_id: e for e in envelopes}
    # A non-streamed call records Anthropic's own body; the app got LiteLLM's translation of the same text.
    for result in plain:
        text = result.choices[0].message.content
        assert any(b.get("text") == text for e in by_id.values() if not e.request.get("stream")
                   for b in e.response["content"])  # type: ignore[index]
    assert all(r.choices[0].message.tool_calls for r in tools)
    assert sum(1 for e in envelopes if any(b["type"] == "tool_use" for b in e.response["content"])) == 3  # type: ignore[index]

    jsonl = tmp_path / "mirrored.jsonl"
    jsonl.write_bytes(b"\n".join(value for _key, value in sink.records) + b"\n")
    config = tmp_path / "shadowd.yaml"
    config.write_text(f"""
models: {{base_url: "{server.base_url}", timeout_s: 30, max_concurrency: 16}}
rollouts:
  - name: opus-4-7
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    baseline_source: recorded
    noise_check: false
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWD_")} | {"ANTHROPIC_API_KEY": "test"}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "shadowd", "replay", str(jsonl), "-c", str(config), "--db",
         f"sqlite:///{tmp_path / 'verdicts.db'}", "--json"],
        capture_output=True, env=env, cwd=ROOT, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    summary = json.loads(done.stdout)
    assert summary["records"] == 13 and summary["verdicts"] == 13 and not summary["dead_letters"]


async def test_the_callback_never_fails_a_call_with_kafka_down_or_a_broken_redact_hook(
    server: FakeModelServer, callbacks: list[Any]
) -> None:
    """An unreachable sink with a one-slot queue and a raising redact hook: every call succeeds, drops are counted."""
    down = MemorySink()
    down.reachable = False
    mirror = Mirror(sink=lambda: down, max_queue=1)
    broken = Mirror(sink=MemorySink, redact=lambda envelope: 1 / 0)  # type: ignore[arg-type,return-value]
    for watched in (mirror, broken):
        litellm.logging_callback_manager._reset_all_callbacks()
        litellm.callbacks.append(ShadowdMirrorCallback(watched))
        router = _router(server)
        results = [await router.acompletion(model="claude-opus-4-6", max_tokens=50,
                                            messages=[{"role": "user", "content": f"call {i}"}]) for i in range(5)]
        assert all(r.choices[0].message.content for r in results)
        await _wait_calls(watched, 5)
    stats, broken_stats = await mirror.aclose(0.5), await broken.aclose(5)
    assert stats["dropped"] == 5 and stats["dropped_by_reason"]["queue_full"] == 4
    assert broken_stats["dropped_by_reason"]["redact_error"] == 5


def test_calls_to_other_providers_are_not_mirrored() -> None:
    """Only calls LiteLLM sent to Anthropic's Messages API become envelopes."""
    mirror = Mirror(sink=MemorySink)
    kwargs = {"custom_llm_provider": "openai",
              "additional_args": {"complete_input_dict": {"model": "gpt", "max_tokens": 5, "messages": []}}}
    assert capture_of(kwargs, None, 0.0, 1.0, mirror) is None
    assert capture_of({"custom_llm_provider": "anthropic", "additional_args": {}}, None, 0.0, 1.0, mirror) is None
    mirror.close(0.1)


def test_the_proxy_handler_is_built_from_the_environment_and_names_what_is_missing(tmp_path: Path) -> None:
    """`callbacks: shadowd.integrations.litellm_proxy.handler` loads with SHADOWD_MIRROR_* set, and without
    a bootstrap address fails naming the variable."""
    # The answer goes to a file: the mirror's sender thread logs JSON lines to stdout while it tries the
    # unreachable broker, and under load such a line can land in the middle of a printed one.
    script = ("import pathlib, shadowd.integrations.litellm_proxy as p; "
              "pathlib.Path('answer.txt').write_text(' '.join(map(str, (type(p.handler).__name__, "
              "p.handler.mirror.sample_rate, p.handler.mirror.publisher._describe))))")
    base = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWD_")} | {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=180, check=False, cwd=tmp_path,
        env=base | {"SHADOWD_MIRROR_BOOTSTRAP_SERVERS": "127.0.0.1:1", "SHADOWD_MIRROR_TOPIC": "gw.mirror",
                    "SHADOWD_MIRROR_SAMPLE_RATE": "0.25"},
    )
    assert loaded.returncode == 0, loaded.stderr.decode()[-2000:]
    line = (tmp_path / "answer.txt").read_text()
    assert line.split() == ["ShadowdMirrorCallback", "0.25", "kafka", "127.0.0.1:1", "topic", "gw.mirror"]
    missing = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=180, check=False,
                             cwd=tmp_path, env=base)
    assert missing.returncode != 0 and b"SHADOWD_MIRROR_BOOTSTRAP_SERVERS" in missing.stderr
