"""The CPU of one streamed replay two ways: the SDK's `messages.stream` with its final message (what
shadowd used, and still uses with `models.sdk_traces: true`), and shadowd's `stream_message` (the same
client's `post` with `stream=True`, the events applied to a plain dict; shadowd/core/message_stream.py).

    python benchmarks/stream_bench.py [--rounds 6] [--answers 10]

Against `shadowd fake-model` at 0 ms in its own process, on loopback: the demo traffic's requests that
stream (more than 21,333 output tokens asked), each answered as a stream of text deltas. Rounds alternate
the two ways; prints the median CPU per call of each and whether the two gave the same content, usage and
stop reason, as one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import anthropic
from common import fake_model, write_behaviours

from shadowd.adapters.messages_wire import stream_message
from shadowd.demo.traffic import generate_envelopes

STREAMING_MAX_TOKENS = 21_333  # above this the demo traffic (and the Messages API's advice) streams


async def measure(base_url: str, rounds: int, answers: int) -> dict[str, Any]:
    bodies = [dict(e["request"]) for e in generate_envelopes(4000, seed=1)
              if e["request"].get("max_tokens", 0) > STREAMING_MAX_TOKENS][:answers]
    client = anthropic.AsyncAnthropic(base_url=base_url, api_key="bench-key", max_retries=0,
                                      http_client=anthropic.DefaultAioHttpClient())

    async def sdk_stream() -> list[dict[str, Any]]:
        out = []
        for body in bodies:
            fixed = {k: body[k] for k in ("model", "max_tokens", "messages")}
            async with client.messages.stream(**fixed, extra_body={k: v for k, v in body.items() if k not in fixed}) as s:
                async for _ in s:
                    pass
                out.append((await s.get_final_message()).to_dict())
        return out

    async def shadowd_stream() -> list[dict[str, Any]]:
        return [(await stream_message(client, body, None, 60.0))[0] for body in bodies]

    cpu: dict[str, list[float]] = {"sdk_stream": [], "shadowd_stream": []}
    outputs: dict[str, list[dict[str, Any]]] = {}
    try:
        for _ in range(rounds):
            for name, way in (("sdk_stream", sdk_stream), ("shadowd_stream", shadowd_stream)):
                started = time.process_time()
                outputs[name] = await way()
                cpu[name].append((time.process_time() - started) * 1000 / len(bodies))
    finally:
        await client.close()
    same = all(
        (a["content"], a["usage"], a["stop_reason"]) == (b["content"], b["usage"], b["stop_reason"])
        for a, b in zip(outputs["sdk_stream"], outputs["shadowd_stream"], strict=True)
    )
    return {
        "answers": len(bodies),
        "answer_chars_mean": round(sum(len(json.dumps(m["content"])) for m in outputs["sdk_stream"]) / len(bodies)),
        "rounds": rounds,
        "cpu_ms_per_call_median": {name: round(statistics.median(v), 3) for name, v in cpu.items()},
        "cpu_ms_per_call": {name: [round(x, 3) for x in v] for name, v in cpu.items()},
        "same_messages": same,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--answers", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, fake_model(write_behaviours(Path(work), 0), Path(work)) as model:
        print(json.dumps(asyncio.run(measure(model.base_url, args.rounds, args.answers))))


if __name__ == "__main__":
    main()
