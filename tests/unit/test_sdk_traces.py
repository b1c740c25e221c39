"""`models.sdk_traces`: shadow calls start no OpenTelemetry span unless the config asks for the SDK's
tracing. Run in a child process, which installs a recording tracer provider as OpenTelemetry's global
one (a process may set that only once)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from opentelemetry import trace
    from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan

    started = []

    class RecordingTracer(trace.Tracer):
        def start_span(self, name, *args, **kwargs):
            started.append(name)
            return NonRecordingSpan(INVALID_SPAN_CONTEXT)

        def start_as_current_span(self, *args, **kwargs):
            raise AssertionError("the SDK starts its spans with start_span")

    class RecordingProvider(trace.TracerProvider):
        def get_tracer(self, *args, **kwargs):
            return RecordingTracer()

    trace.set_tracer_provider(RecordingProvider())

    from shadowd.config import Settings, load_config
    from shadowd.core.adaptation import adapt_request
    from shadowd.fakemodel import parse_behaviours, start_fake_model
    from shadowd.metrics import Metrics
    from shadowd.wiring import model_client

    async def main(config_path):
        server = await start_fake_model(parse_behaviours({"models": {}}))
        try:
            config = load_config(Path(config_path), Settings())
            client = model_client(config, base_url=server.base_url, metrics=Metrics())
            request = {"model": "claude-opus-4-6", "max_tokens": 50,
                       "messages": [{"role": "user", "content": "Say hi."}]}
            side = await client.replay_request(adapt_request(request, "claude-opus-4-6", None), "2023-06-01")
            await client.close()
            return side.ok
        finally:
            await server.close()

    ok = asyncio.run(main(sys.argv[1]))
    print(json.dumps({"ok": ok, "spans": started}))
    """
)


def spans_started(tmp_path: Path, models_yaml: str) -> list[str]:
    config = tmp_path / "shadowd.yaml"
    config.write_text(f"models:\n{models_yaml}rollouts: []\n")
    done = subprocess.run([sys.executable, "-c", CHILD, str(config)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"] is True
    return list(result["spans"])


def test_shadow_calls_start_no_span_by_default(tmp_path: Path) -> None:
    assert spans_started(tmp_path, "  max_concurrency: 4\n") == []


def test_sdk_traces_true_leaves_tracing_to_the_sdk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_OPEN_TELEMETRY", raising=False)
    spans = spans_started(tmp_path, "  sdk_traces: true\n")
    assert len(spans) == 1 and spans[0]  # the Messages call's span, by the SDK's name for it


def test_sdk_traces_true_still_honours_the_sdks_environment_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", "false")
    assert spans_started(tmp_path, "  sdk_traces: true\n") == []
