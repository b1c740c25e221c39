"""The reference for pipeline overhead: the same two SDK calls per record, at the same concurrency, nothing else.

    python benchmarks/bare_loop.py --base-url URL --count N --records-in-flight R --max-connections C

Per record: adapt the request for the baseline and the candidate exactly as shadowd does, send both at
once through `anthropic.AsyncAnthropic` (same httpx limits, no SDK retries), wait for both. No Kafka,
no comparison, no database. Prints one JSON object: records/s from the first record done to the last.

`--call sdk` (the reference) sends a non-streamed call as a plain SDK user does, `messages.create`;
`--call shadowd` as shadowd's AnthropicModelClient does, the recorded body through the client's `post`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import anthropic

try:
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

from common import throughput

from shadowd.adapters.messages_wire import post_message
from shadowd.core.adaptation import ReplayRequest, adapt_request
from shadowd.core.profiles import resolve_profiles
from shadowd.demo.traffic import generate_envelopes

_FIXED = ("model", "max_tokens", "messages")


async def send(
    client: anthropic.AsyncAnthropic, replay: ReplayRequest, api_version: str | None, call: str = "sdk"
) -> None:
    """One call: `messages.create` (or `messages.stream`) with the body split into the SDK's parameters;
    with `call="shadowd"` a non-streamed one goes out as AnthropicModelClient sends it."""
    body = replay.body
    if call == "shadowd" and not replay.stream:
        (await post_message(client, body, api_version, 120)).read()
        return
    kwargs: dict[str, Any] = {name: body[name] for name in _FIXED}
    extra = {k: v for k, v in body.items() if k not in _FIXED}
    if extra:
        kwargs["extra_body"] = extra
    if api_version:
        kwargs["extra_headers"] = {"anthropic-version": api_version}
    if not replay.stream:
        await client.messages.create(**kwargs)
        return
    async with client.messages.stream(**kwargs) as stream:
        async for _event in stream:
            pass
        await stream.get_final_message()


def make_client(args: argparse.Namespace) -> anthropic.AsyncAnthropic:
    """By default the very AsyncAnthropic that shadowd builds (its HTTP stack, limits and timeouts)."""
    limits = httpx.Limits(max_connections=args.max_connections, max_keepalive_connections=args.max_connections)
    if args.http_stack == "shadowd":
        from shadowd.adapters.anthropic_client import AnthropicModelClient

        built = AnthropicModelClient(
            base_url=args.base_url, api_key="bench-key", timeout_s=120, max_concurrency=args.max_connections,
            profiles={},
        )
        client = getattr(built, "_client", None)
        if isinstance(client, anthropic.AsyncAnthropic):
            return client
    if args.http_stack == "aiohttp":
        return anthropic.AsyncAnthropic(
            base_url=args.base_url, api_key="bench-key", max_retries=0, timeout=120,
            http_client=anthropic.DefaultAioHttpClient(limits=limits, timeout=120),
        )
    return anthropic.AsyncAnthropic(
        base_url=args.base_url, api_key="bench-key", max_retries=0, timeout=120,
        http_client=httpx.AsyncClient(limits=limits, timeout=120),
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    profiles = resolve_profiles({})
    envelopes = generate_envelopes(args.count, seed=args.seed)
    client = make_client(args)
    gate = asyncio.Semaphore(args.records_in_flight)
    done_at: list[float] = []
    errors = 0

    async def one(envelope: dict[str, Any]) -> None:
        nonlocal errors
        request = envelope["request"]
        api_version = envelope.get("api_version")
        async with gate:
            baseline = adapt_request(request, args.baseline, profiles.get(args.baseline))
            candidate = adapt_request(request, args.candidate, profiles.get(args.candidate))
            results = await asyncio.gather(
                send(client, baseline, api_version, args.call), send(client, candidate, api_version, args.call),
                return_exceptions=True,
            )
            errors += sum(isinstance(r, BaseException) for r in results)
            done_at.append(time.perf_counter())

    started = time.perf_counter()
    cpu_started = time.process_time()
    # A bounded feeder, like a consumer: at most records_in_flight tasks exist at once.
    pending: set[asyncio.Task[None]] = set()
    for envelope in envelopes:
        while len(pending) >= args.records_in_flight:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        pending.add(asyncio.create_task(one(envelope)))
    await asyncio.gather(*pending)
    cpu_s = time.process_time() - cpu_started
    await client.close()
    span = done_at[-1] - done_at[0]
    rates = throughput(done_at)
    return {
        "records": len(done_at),
        "errors": errors,
        "first_to_last_s": round(span, 3),
        "records_per_s": rates["steady"],
        "records_per_s_first_to_last": rates["first_to_last"],
        "wall_s": round(done_at[-1] - started, 3),
        "cpu_s": round(cpu_s, 2),
        "records_in_flight": args.records_in_flight,
        "max_connections": args.max_connections,
        "http_stack": args.http_stack,
        "call": args.call,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--records-in-flight", type=int, required=True)
    parser.add_argument("--max-connections", type=int, required=True)
    parser.add_argument("--http-stack", choices=["shadowd", "httpx", "aiohttp"], default="shadowd",
                        help="shadowd: the client exactly as shadowd's AnthropicModelClient builds it")
    parser.add_argument("--gc", choices=["interpreter", "shadowd"], default="interpreter",
                        help="interpreter: CPython's collector as it starts (the reference); shadowd: the collector "
                             "set-up of `shadowd run` (start-up heap frozen, thresholds widened)")
    parser.add_argument("--call", choices=["sdk", "shadowd"], default="sdk",
                        help="sdk: messages.create, as a plain SDK user calls (the reference); shadowd: the recorded "
                             "body through the client's post, as `shadowd run` sends a non-streamed replay")
    parser.add_argument("--baseline", default="claude-opus-4-6")
    parser.add_argument("--candidate", default="claude-opus-4-7")
    args = parser.parse_args()
    if args.gc == "shadowd":
        from shadowd.daemon import freeze_startup_heap, widen_collector_thresholds

        freeze_startup_heap()
        widen_collector_thresholds()
    result = asyncio.run(main_async(args))
    result["gc"] = args.gc
    print(json.dumps(result))


if __name__ == "__main__":
    main()
