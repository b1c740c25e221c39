"""The SDK's CPU per Messages call three ways: `messages.create` with its OpenTelemetry spans on (the
SDK's default), the same with them off (`models.sdk_traces: false`, shadowd's default), and the way
shadowd sends a non-streamed replay with spans off: the recorded body through the client's `post`
(`shadowd.adapters.messages_wire`), without `messages.create`'s work on the parameters.

    python benchmarks/sdk_traces_bench.py [--rounds 12] [--calls 400]

In-process and without sockets (the SDK's client over an `httpx2.MockTransport` that answers a fixed
message), so what differs is the SDK's own work per call: building the request, starting the span,
reading the response. Rounds alternate the variants; the medians are printed as one JSON object.
No OpenTelemetry SDK is configured, as in a process that installed none: the span is started and
found not to record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anthropic
import orjson

from shadowd.adapters.messages_wire import post_message

try:
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

ANSWER = json.dumps({
    "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-opus-4-6",
    "content": [{"type": "text", "text": "A canary takes a small share of traffic first."}],
    "stop_reason": "end_turn", "usage": {"input_tokens": 40, "output_tokens": 12},
}).encode()
MESSAGES = [{"role": "user", "content": "Explain canary releases in two sentences. " * 5}]
BODY = {"model": "claude-opus-4-6", "max_tokens": 100, "messages": MESSAGES}


def _answer(request: Any) -> Any:
    return httpx.Response(200, content=ANSWER, headers={"content-type": "application/json"})


def make_client(traces: bool) -> anthropic.AsyncAnthropic:
    options: dict[str, Any] = {} if traces else {"open_telemetry": False}
    return anthropic.AsyncAnthropic(
        api_key="bench-key", base_url="http://127.0.0.1:9", max_retries=0,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(_answer)), **options,
    )


async def cpu_us_per_call(client: anthropic.AsyncAnthropic, calls: int) -> float:
    started = time.process_time()
    for _ in range(calls):
        raw = await client.messages.with_raw_response.create(
            model="claude-opus-4-6", max_tokens=100, messages=MESSAGES,  # type: ignore[arg-type]
            extra_headers={"anthropic-version": "2023-06-01"},
        )
        raw.http_response.read()
    return (time.process_time() - started) / calls * 1e6


async def cpu_us_per_post(client: anthropic.AsyncAnthropic, calls: int) -> float:
    """shadowd's non-streamed replay: the body's bytes as the SDK encodes them, through `post`."""
    started = time.process_time()
    for _ in range(calls):
        response = await post_message(client, BODY, "2023-06-01", 600)
        orjson.loads(response.content)
    return (time.process_time() - started) / calls * 1e6


async def main_async(rounds: int, calls: int) -> dict[str, Any]:
    on_client, off_client = make_client(True), make_client(False)
    variants = {
        "traces_on": lambda n: cpu_us_per_call(on_client, n),
        "traces_off": lambda n: cpu_us_per_call(off_client, n),
        "shadowd_post": lambda n: cpu_us_per_post(off_client, n),
    }
    for measure in variants.values():
        await measure(calls // 2)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, measure in variants.items():
            samples[name].append(await measure(calls))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    on, off, post = medians["traces_on"], medians["traces_off"], medians["shadowd_post"]
    return {
        "cpu_us_per_call": {name: round(value, 1) for name, value in medians.items()},
        "saving_percent": round(100 * (on - off) / on, 1),
        "post_saving_percent_vs_traces_off": round(100 * (off - post) / off, 1),
        "rounds": rounds, "calls_per_round": calls, "anthropic": anthropic.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args.rounds, args.calls))))


if __name__ == "__main__":
    main()
