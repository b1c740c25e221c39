"""What `shadowd.mirror` adds to a production call: p50/p99 through the wrapper vs the bare SDK client,
against `shadowd fake-model` in its own process, with Kafka up and with Kafka down.

    python benchmarks/mirror_bench.py --kafka 127.0.0.1:9092          # about 2 minutes
    python benchmarks/mirror_bench.py                                  # SHADOWD_TEST_KAFKA, else Kafka-down only

Variants run in blocks (plain, mirrored with Kafka up, mirrored with Kafka down, for the async and the
sync client), rounds of blocks interleaved so that drift on a shared machine hits every variant alike;
the mirror is flushed between blocks (untimed), so a plain block never shares the machine with a
mirror's background work. One call in four is streamed (`create(stream=True)`, read to the end).
Writes benchmarks/results/mirror-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anthropic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    BENCH_DIR,
    create_topic,
    fake_model,
    free_port,
    log,
    machine,
    percentile,
    write_behaviours,
)
from shadowd.mirror import Mirror

MODEL = "claude-opus-4-6"


def request(index: int) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 256,
        "system": "You summarise support tickets as JSON.",
        "messages": [{"role": "user", "content": f"Ticket {index}: my standing desk arrived with a cracked panel."}],
    }


async def async_call(client: Any, index: int) -> float:
    started = time.perf_counter()
    if index % 4 == 1:
        stream = await client.messages.create(**request(index), stream=True)
        async for _event in stream:
            pass
    else:
        await client.messages.create(**request(index))
    return (time.perf_counter() - started) * 1000.0


def sync_call(client: Any, index: int) -> float:
    started = time.perf_counter()
    if index % 4 == 1:
        for _event in client.messages.create(**request(index), stream=True):
            pass
    else:
        client.messages.create(**request(index))
    return (time.perf_counter() - started) * 1000.0


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": round(percentile(values, 0.5), 3), "p99_ms": round(percentile(values, 0.99), 3),
            "mean_ms": round(sum(values) / len(values), 3)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    kafka = args.kafka or os.environ.get("SHADOWD_TEST_KAFKA")
    logs = Path(tempfile.mkdtemp(prefix="shadowd-mirror-bench-"))
    behaviours = write_behaviours(logs, latency_ms=args.model_latency_ms)
    topic = f"mirror-bench-{uuid.uuid4().hex[:8]}"
    if kafka:
        await create_topic(kafka, topic, partitions=3)
    results: dict[str, Any] = {"machine": machine(), "calls_per_block": args.block, "rounds": args.rounds,
                               "model_latency_ms": args.model_latency_ms, "kafka": bool(kafka), "variants": {}}
    with fake_model(behaviours, logs) as model:
        def async_client() -> anthropic.AsyncAnthropic:
            return anthropic.AsyncAnthropic(base_url=model.base_url, api_key="bench", max_retries=0, timeout=30)

        def sync_client() -> anthropic.Anthropic:
            return anthropic.Anthropic(base_url=model.base_url, api_key="bench", max_retries=0, timeout=30)

        mirrors: dict[str, Mirror] = {}
        if kafka:
            mirrors["up"] = Mirror(bootstrap_servers=kafka, topic=topic)
        mirrors["down"] = Mirror(bootstrap_servers=f"127.0.0.1:{free_port()}", topic=topic, max_queue=1000)
        plain_async, plain_sync = async_client(), sync_client()
        variants: dict[str, tuple[str, Any, Mirror | None]] = {"async plain": ("async", plain_async, None),
                                                                "sync plain": ("sync", plain_sync, None)}
        for state, mirror in mirrors.items():
            variants[f"async mirrored, Kafka {state}"] = ("async", mirror.wrap(async_client()), mirror)
            variants[f"sync mirrored, Kafka {state}"] = ("sync", mirror.wrap(sync_client()), mirror)
        latencies: dict[str, list[float]] = {name: [] for name in variants}
        # Warm-up: connections, the producer's first metadata fetch, imports.
        for _name, (kind, client, mirror) in variants.items():
            for i in range(20):
                if kind == "async":
                    await async_call(client, i)
                else:
                    await asyncio.to_thread(sync_call, client, i)
            if mirror is not None:
                await asyncio.to_thread(mirror.flush, 10)
        index = 0
        for round_ in range(args.rounds):
            log(f"round {round_ + 1}/{args.rounds}")
            for name, (kind, client, mirror) in variants.items():
                if kind == "async":
                    for _ in range(args.block):
                        latencies[name].append(await async_call(client, index))
                        index += 1
                else:
                    def block(client: Any = client, start: int = index) -> list[float]:
                        return [sync_call(client, start + i) for i in range(args.block)]

                    latencies[name].extend(await asyncio.to_thread(block))
                    index += args.block
                if mirror is not None and mirror is mirrors.get("up"):
                    await asyncio.to_thread(mirror.flush, 30)
        for name, values in latencies.items():
            results["variants"][name] = summary(values)
        for kind in ("async", "sync"):
            base = results["variants"][f"{kind} plain"]
            for state in mirrors:
                entry = results["variants"][f"{kind} mirrored, Kafka {state}"]
                entry["added_p50_ms"] = round(entry["p50_ms"] - base["p50_ms"], 3)
                entry["added_p99_ms"] = round(entry["p99_ms"] - base["p99_ms"], 3)
        results["call_path"] = await call_path_cost(model.base_url, args.call_path_iterations)
        for state, mirror in mirrors.items():
            started = time.monotonic()
            stats = await mirror.aclose(5.0)
            results[f"mirror_kafka_{state}"] = stats | {"close_s": round(time.monotonic() - started, 3)}
        await plain_async.close()
        plain_sync.close()
    return results


async def call_path_cost(model_url: str, iterations: int) -> dict[str, Any]:
    """The wrapper's own work on the call path (request copy, tags, sampling, hand-off), timed alone:
    what `messages.create` through the wrapper adds to the same SDK call, without the network's noise."""
    from shadowd.mirror import MemorySink

    client = anthropic.AsyncAnthropic(base_url=model_url, api_key="bench", max_retries=0, timeout=30)
    message = await client.messages.create(**request(0))
    sink = MemorySink()
    mirror = Mirror(sink=lambda: sink, max_queue=iterations + 10)
    kwargs = request(0)
    timings: list[float] = []
    for i in range(iterations):
        started = time.perf_counter()
        call = mirror.start_call(client, kwargs, streamed=False)
        assert call is not None
        call.finish(message=message, request_id=f"{message.id}-{i}")
        timings.append((time.perf_counter() - started) * 1e6)
        if i % 1000 == 999:
            await asyncio.sleep(0)  # let the publisher thread run as it would between calls
    stats = await mirror.aclose(30)
    await client.close()
    return {"iterations": iterations, "p50_us": round(percentile(timings, 0.5), 1),
            "p99_us": round(percentile(timings, 0.99), 1), "max_us": round(max(timings), 1),
            "delivered": stats["delivered"]}


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{'variant':34} {'n':>6} {'p50 ms':>9} {'p99 ms':>9} {'+p50 ms':>9} {'+p99 ms':>9}")
    for name, entry in results["variants"].items():
        print(f"{name:34} {entry['n']:>6} {entry['p50_ms']:>9.3f} {entry['p99_ms']:>9.3f} "
              f"{entry.get('added_p50_ms', 0.0):>9.3f} {entry.get('added_p99_ms', 0.0):>9.3f}")
    path = results["call_path"]
    print(f"\nthe wrapper's own work per call ({path['iterations']} calls): p50 {path['p50_us']} us, "
          f"p99 {path['p99_us']} us, max {path['max_us']} us")
    for state in ("up", "down"):
        stats = results.get(f"mirror_kafka_{state}")
        if stats:
            print(f"mirror, Kafka {state}: queued {stats['queued']}, delivered {stats['delivered']}, dropped "
                  f"{stats['dropped']} {stats['dropped_by_reason']}, close() {stats['close_s']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kafka", help="Kafka bootstrap servers (default: SHADOWD_TEST_KAFKA).")
    parser.add_argument("--block", type=int, default=200, help="Calls per block.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model-latency-ms", type=float, default=5.0)
    parser.add_argument("--call-path-iterations", type=int, default=20_000)
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "mirror-latest.json")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
