"""A small production app for demos and tests: the demo's requests through a mirrored `AsyncAnthropic`.

    python -m shadowd.mirror.demo_traffic --count 500 --bootstrap kafka:9092 --topic llm.mirror

The model API comes from `ANTHROPIC_BASE_URL` (e.g. `shadowd fake-model`). One call in four is made
with `create(stream=True)` and one in eight with `messages.stream()`. Prints the mirror's counters
as JSON at the end; exits 1 if any production call failed (the mirror never makes one fail).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import sys
import time
import warnings
from typing import Any

import anthropic
from anthropic.resources.messages import AsyncMessages

from shadowd.demo.traffic import generate_envelopes
from shadowd.mirror import Mirror


def call_style(index: int) -> str:
    if index % 4 == 1:
        return "create_stream"
    if index % 8 == 2:
        return "stream"
    return "create"


def sdk_arguments(request: dict[str, Any], accepted: frozenset[str]) -> dict[str, Any]:
    """Keyword arguments for `messages.create`; body fields this SDK has no parameter for go in `extra_body`."""
    known = {k: v for k, v in request.items() if k in accepted and k != "stream"}
    extra = {k: v for k, v in request.items() if k not in accepted and k != "stream"}
    return known | ({"extra_body": extra} if extra else {})


_CREATE_PARAMETERS = frozenset(inspect.signature(AsyncMessages.create).parameters) - {"self"}
_STREAM_PARAMETERS = frozenset(inspect.signature(AsyncMessages.stream).parameters) - {"self"}


async def one_call(client: Any, mirror: Mirror, envelope: dict[str, Any], style: str) -> None:
    accepted = _STREAM_PARAMETERS if style == "stream" else _CREATE_PARAMETERS
    request = sdk_arguments(envelope["request"], accepted)
    with mirror.tagged(route=envelope["route"], attributes=envelope.get("attributes") or {}):
        if style == "create_stream":
            stream = await client.messages.create(**request, stream=True)
            async for _event in stream:
                pass
        elif style == "stream":
            async with client.messages.stream(**request) as stream:
                await stream.get_final_message()
        else:
            await client.messages.create(**request)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    mirror = Mirror(bootstrap_servers=args.bootstrap, topic=args.topic, sample_rate=args.sample_rate)
    client = mirror.wrap(anthropic.AsyncAnthropic(max_retries=args.max_retries, timeout=args.timeout))
    slots = asyncio.Semaphore(args.concurrency)
    failures: list[str] = []
    started = time.monotonic()
    index = 0
    batch = max(args.count, 1) if args.count else 100
    try:
        while True:
            envelopes = generate_envelopes(batch, seed=args.seed + index)
            if args.count:
                envelopes = envelopes[: args.count - index]

            async def call(position: int, envelope: dict[str, Any]) -> None:
                async with slots:
                    if args.rate:
                        await asyncio.sleep(max(0.0, started + position / args.rate - time.monotonic()))
                    try:
                        await one_call(client, mirror, envelope, call_style(position))
                    except anthropic.APIError as exc:
                        failures.append(f"{type(exc).__name__}: {exc}"[:200])

            await asyncio.gather(*(call(index + i, e) for i, e in enumerate(envelopes)))
            index += len(envelopes)
            if args.count and index >= args.count:
                break
    finally:
        await client.close()
        stats = await mirror.aclose(args.close_timeout)
    return stats | {"production_calls": index, "production_failures": len(failures),
                    "failures": failures[:5], "elapsed_s": round(time.monotonic() - started, 2)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shadowd.mirror.demo_traffic", description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers for the mirror.")
    parser.add_argument("--topic", default="llm.mirror")
    parser.add_argument("--count", type=int, default=500, help="Calls to make (0: keep going).")
    parser.add_argument("--rate", type=float, default=0.0, help="Calls per second (0: as fast as allowed).")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sample-rate", type=float, default=1.0)
    parser.add_argument("--max-retries", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--close-timeout", type=float, default=10.0)
    return parser


def main(argv: list[str] | None = None) -> None:
    # The demo's requests keep `thinking.type=enabled`, which newer SDKs warn about on every call.
    warnings.filterwarnings("ignore", message=".*thinking.type=enabled.*")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.count < 0 or args.concurrency < 1:
        parser.error("--count must be >= 0 and --concurrency >= 1")
    stats = asyncio.run(run(args))
    print(json.dumps(stats), flush=True)
    sys.exit(1 if stats["production_failures"] else 0)


if __name__ == "__main__":
    main()
