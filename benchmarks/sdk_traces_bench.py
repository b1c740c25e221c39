"""The SDK's CPU per Messages call with its OpenTelemetry spans on (the SDK's default) and off
(`models.sdk_traces: false`, shadowd's default).

    python benchmarks/sdk_traces_bench.py [--rounds 12] [--calls 400]

In-process and without sockets (the SDK's client over an `httpx2.MockTransport` that answers a fixed
message), so what differs is the SDK's own work per call: building the request, starting the span,
reading the response. Rounds alternate the two clients; the medians are printed as one JSON object.
No OpenTelemetry SDK is configured, as in a process that installed none: the span is started and
found not to record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import anthropic

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


async def main_async(rounds: int, calls: int) -> dict[str, Any]:
    clients = {"traces_on": make_client(True), "traces_off": make_client(False)}
    for client in clients.values():
        await cpu_us_per_call(client, calls // 2)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(rounds):
        for name, client in clients.items():
            samples[name].append(await cpu_us_per_call(client, calls))
    on, off = statistics.median(samples["traces_on"]), statistics.median(samples["traces_off"])
    return {
        "cpu_us_per_call": {"traces_on": round(on, 1), "traces_off": round(off, 1)},
        "saving_percent": round(100 * (on - off) / on, 1),
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
