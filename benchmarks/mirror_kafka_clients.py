"""aiokafka in the mirror's thread vs confluent-kafka (librdkafka) for the sync client: what each costs.

    pip install confluent-kafka          # not a shadowd dependency; only this comparison needs it
    python benchmarks/mirror_kafka_clients.py --kafka 127.0.0.1:9092

The call path is the same for both (the wrapper only appends to the mirror's queue); what differs is
the background work of sending. For blocks of sync `messages.create` calls against `shadowd
fake-model` (its own process) it measures this process's CPU time per call — plain client, mirrored
with aiokafka, mirrored with confluent-kafka — and the p50/p99 latency, blocks interleaved over rounds.
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

from benchmarks.common import BENCH_DIR, create_topic, fake_model, log, percentile, write_behaviours
from shadowd.mirror import KafkaSink, Mirror


class ConfluentSink:
    """The mirror's sink protocol over confluent_kafka.Producer; delivery reports served by a poll task."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self._producer = Producer({"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 10,
                                   "message.timeout.ms": 10_000})
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._producer.list_topics, None, 10)
        self._poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            self._producer.poll(0)
            await asyncio.sleep(0.005)

    async def send(self, key: bytes, value: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def delivered(error: Any, _message: Any) -> None:
            if not future.done():
                future.set_exception(RuntimeError(str(error))) if error else future.set_result(None)

        self._producer.produce(self.topic, value, key, on_delivery=delivered)
        return future

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        await asyncio.to_thread(self._producer.flush, 5)


def call(client: Any, index: int) -> float:
    started = time.perf_counter()
    client.messages.create(model="claude-opus-4-6", max_tokens=256,
                           messages=[{"role": "user", "content": f"Ticket {index}: cracked panel."}])
    return (time.perf_counter() - started) * 1000.0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    logs = Path(tempfile.mkdtemp(prefix="shadowd-mirror-clients-"))
    topic = f"mirror-clients-{uuid.uuid4().hex[:8]}"
    await create_topic(args.kafka, topic, partitions=3)
    with fake_model(write_behaviours(logs, latency_ms=5.0), logs) as model:
        def client() -> anthropic.Anthropic:
            return anthropic.Anthropic(base_url=model.base_url, api_key="bench", max_retries=0, timeout=30)

        mirrors = {"aiokafka": Mirror(sink=lambda: KafkaSink(args.kafka, topic)),
                   "confluent-kafka": Mirror(sink=lambda: ConfluentSink(args.kafka, topic))}
        variants: dict[str, tuple[Any, Mirror | None]] = {"plain": (client(), None)}
        for name, mirror in mirrors.items():
            variants[f"mirrored, {name}"] = (mirror.wrap(client()), mirror)
        cpu: dict[str, float] = dict.fromkeys(variants, 0.0)
        latencies: dict[str, list[float]] = {name: [] for name in variants}
        for _name, (wrapped, mirror) in variants.items():  # warm-up
            await asyncio.to_thread(lambda w=wrapped: [call(w, i) for i in range(20)])
            if mirror is not None:
                await asyncio.to_thread(mirror.flush, 20)
        for round_ in range(args.rounds):
            log(f"round {round_ + 1}/{args.rounds}")
            for name, (wrapped, mirror) in variants.items():
                started = time.process_time()

                def block(w: Any = wrapped) -> list[float]:
                    return [call(w, i) for i in range(args.block)]

                latencies[name].extend(await asyncio.to_thread(block))
                if mirror is not None:
                    await asyncio.to_thread(mirror.flush, 30)  # the sends belong to this block's cost
                cpu[name] += time.process_time() - started
        results: dict[str, Any] = {"calls_per_variant": args.block * args.rounds, "variants": {}}
        for name in variants:
            values = latencies[name]
            results["variants"][name] = {
                "cpu_ms_per_call": round(1000 * cpu[name] / len(values), 3),
                "p50_ms": round(percentile(values, 0.5), 3), "p99_ms": round(percentile(values, 0.99), 3)}
        for name, mirror in mirrors.items():
            results["variants"][f"mirrored, {name}"]["stats"] = await mirror.aclose(10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kafka", default=os.environ.get("SHADOWD_TEST_KAFKA"), required=not os.environ.get("SHADOWD_TEST_KAFKA"))
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "mirror-kafka-clients.json")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    args.output.write_text(json.dumps(results, indent=2))
    for name, entry in results["variants"].items():
        stats = entry.get("stats", {})
        print(f"{name:28} cpu/call {entry['cpu_ms_per_call']:7.3f} ms  p50 {entry['p50_ms']:7.3f}  p99 {entry['p99_ms']:7.3f}"
              + (f"  delivered {stats['delivered']} dropped {stats['dropped']}" if stats else ""))


if __name__ == "__main__":
    main()
