"""The on-ramp end to end: an app calling the model through `shadowd.mirror`, `shadowd run` consuming
the envelopes on real Kafka and PostgreSQL, with the same commands deploy/compose.yaml runs."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import asyncpg
import pytest

from shadowd.core.envelope import parse_envelope
from shadowd.demo.traffic import generate_envelopes
from shadowd.mirror import Mirror
from shadowd.mirror.demo_traffic import call_style, one_call
from tests.compose import config_copy, service_argv
from tests.daemon_harness import asyncpg_dsn, read_topic, wait_until
from tests.helpers import ROOT, free_port, wait_http

CALLS = 500


class Processes:
    """Child processes started by a test, all stopped at its end."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("ab")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        self.running.append((name, process))
        return process

    def run(self, name: str, argv: list[str], timeout_s: float) -> str:
        done = subprocess.run(argv, capture_output=True, env=self.env, cwd=ROOT, timeout=timeout_s, check=False)
        output = done.stdout.decode(errors="replace")
        assert done.returncode == 0, f"{name} exited {done.returncode}:\n{output}\n{done.stderr.decode()[-3000:]}"
        return output

    def log_tail(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-30:]) if path.exists() else ""

    def stop_all(self) -> None:
        for _name, process in reversed(self.running):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    env = {**os.environ, "SHADOWD_LOG_FORMAT": "json", "ANTHROPIC_API_KEY": "test"}
    env.pop("SHADOWD_CONFIG", None)
    running = Processes(tmp_path, env)
    try:
        yield running
    finally:
        running.stop_all()


async def _verdict_rows(db_url: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(asyncpg_dsn(db_url), timeout=10)
    try:
        return list(await connection.fetch("SELECT request_id, status, baseline FROM verdicts"))
    except asyncpg.UndefinedTableError:
        return []
    finally:
        await connection.close()


async def test_compose_loop_gives_one_verdict_per_mirrored_call_with_the_recorded_baseline(
    processes: Processes, kafka_bootstrap: str, fresh_database_url: str, fresh_topic: Any, tmp_path: Path
) -> None:
    """500 calls (a quarter streamed) through the compose file's traffic app get one verdict each, judged
    against the response production recorded (`baseline_source: recorded`), by the compose file's commands."""
    topic = await fresh_topic(partitions=3)
    model_port, http_port = free_port(), free_port()
    config = config_copy(tmp_path, topic, f"mirror-loop-{uuid.uuid4().hex[:8]}")
    substitutions = {
        "/etc/shadowd/shadowd.yaml": str(config),
        "0.0.0.0:8080": f"127.0.0.1:{http_port}",
        "0.0.0.0": "127.0.0.1",
        "8787": str(model_port),
        "kafka:9092": kafka_bootstrap,
        "llm.mirror": topic,
    }
    processes.env.update({
        "SHADOWD_DATABASE_URL": fresh_database_url,
        "SHADOWD_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{model_port}",
    })

    processes.run("db-upgrade", service_argv("db-upgrade", substitutions), timeout_s=120)
    processes.start("fake-model", service_argv("fake-model", substitutions))
    await asyncio.to_thread(wait_http, f"http://127.0.0.1:{model_port}/healthz", 30.0)
    daemon = processes.start("shadowd", service_argv("shadowd", substitutions))
    await asyncio.to_thread(wait_http, f"http://127.0.0.1:{http_port}/healthz", 60.0)

    traffic_argv = service_argv("traffic", substitutions)
    assert traffic_argv[traffic_argv.index("--count") + 1] == str(CALLS)
    output = await asyncio.to_thread(processes.run, "traffic", traffic_argv, 300.0)
    stats = json.loads(output.strip().splitlines()[-1])
    assert stats["production_calls"] == CALLS and stats["production_failures"] == 0, stats
    assert stats["delivered"] == CALLS and stats["dropped"] == 0, stats

    records = await read_topic(kafka_bootstrap, topic, expected=CALLS, timeout_s=60)
    envelopes = {e.request_id: e for e in (parse_envelope(r.value) for r in records)}
    assert len(records) == CALLS and len(envelopes) == CALLS
    assert sum(1 for e in envelopes.values() if e.request.get("stream")) >= CALLS // 4
    assert all(e.response is not None and e.latency_ms is not None and e.api_version for e in envelopes.values())

    async def all_judged() -> bool:
        if daemon.poll() is not None:
            raise AssertionError(f"shadowd run exited {daemon.returncode}:\n{processes.log_tail('shadowd')}")
        return len(await _verdict_rows(fresh_database_url)) >= CALLS

    await wait_until(all_judged, timeout_s=300, what=f"{CALLS} verdicts")
    rows = await _verdict_rows(fresh_database_url)
    assert sorted(r["request_id"] for r in rows) == sorted(envelopes)
    for row in rows:
        baseline = json.loads(row["baseline"]) if isinstance(row["baseline"], str) else row["baseline"]
        assert baseline["source"] == "recorded"
        assert baseline["content"] == envelopes[row["request_id"]].response["content"]  # type: ignore[index]
    assert {r["status"] for r in rows} <= {"pass", "noise", "regression"}


@pytest.mark.filterwarnings("ignore:.*thinking.type=enabled")
async def test_a_kafka_outage_window_never_fails_or_slows_a_call_and_every_lost_envelope_is_counted(
    kafka_bootstrap: str, fresh_topic: Any
) -> None:
    """With the mirror's Kafka unreachable for a window of the run, every production call succeeds without
    waiting on Kafka, and the drop counters add up to exactly the envelopes that never reached the topic."""
    from shadowd.fakemodel import load_behaviours, start_fake_model

    topic = await fresh_topic(partitions=1)
    closed_port = free_port()  # free a moment ago: nothing listens on it
    up = Mirror(bootstrap_servers=kafka_bootstrap, topic=topic, max_queue=10_000)
    # The outage: the same app's mirror pointed at a port nobody listens on, with a small queue.
    down = Mirror(bootstrap_servers=f"127.0.0.1:{closed_port}", topic=topic, max_queue=50)
    envelopes = generate_envelopes(CALLS, seed=11)
    window = range(150, 350)
    latencies: dict[str, list[float]] = {"up": [], "down": []}
    async with await start_fake_model(load_behaviours(None)) as server:
        plain = anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test", max_retries=0, timeout=60)
        clients = {"up": up.wrap(plain), "down": down.wrap(plain)}
        slots = asyncio.Semaphore(8)

        async def call(index: int, envelope: dict[str, Any]) -> None:
            side = "down" if index in window else "up"
            async with slots:
                started = time.perf_counter()
                await one_call(clients[side], up if side == "up" else down, envelope, call_style(index))
                latencies[side].append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.gather(*(call(i, e) for i, e in enumerate(envelopes)))
        elapsed = time.monotonic() - started
        close_started = time.monotonic()
        down_stats = await down.aclose(2.0)
        down_close_s = time.monotonic() - close_started
        up_stats = await up.aclose(30.0)
        await plain.close()

    assert len(latencies["up"]) + len(latencies["down"]) == CALLS  # every production call returned
    assert max(latencies["down"]) < 10.0 and elapsed < 120.0
    # Calls during the outage take about as long as the others (loose: a loaded machine is noisy).
    assert statistics.median(latencies["down"]) <= 2 * statistics.median(latencies["up"]) + 0.05
    assert down_close_s < 5.0  # close() keeps to its deadline with Kafka down
    records = await read_topic(kafka_bootstrap, topic, expected=CALLS - len(window), timeout_s=60)
    in_topic = {parse_envelope(r.value).request_id for r in records}
    assert down_stats["delivered"] == 0 and down_stats["dropped"] == len(window)
    assert down_stats["dropped_by_reason"]["queue_full"] > 0  # the window overflowed the small queue
    assert up_stats["delivered"] == len(in_topic) == CALLS - len(window)
    assert up_stats["dropped"] + down_stats["dropped"] == CALLS - len(in_topic)
