"""Runs real `shadowd run` processes over a pre-made topic and measures them from the outside.

The daemon is started exactly as an operator starts it (`python -m shadowd run -c FILE --db URL`), the
fake model is its own process, and every figure comes from PostgreSQL, /proc or the fake model's /stats.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    PARTITIONS,
    ROLLOUT,
    ROOT,
    FakeModel,
    asyncpg_dsn,
    cpu_seconds,
    create_database,
    create_topic,
    drop_database,
    envelopes_bytes,
    free_port,
    log,
    memory_mb,
    produce,
    service_cpu_seconds,
    stop_process,
    throughput,
    wait_http,
    write_config,
)


@dataclass
class Daemon:
    process: subprocess.Popen[Any]
    log_path: Path
    http: str

    def started_event(self) -> dict[str, Any]:
        """The daemon's `started` log event (it carries the records-in-flight limit it chose)."""
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"started"' in line:
                try:
                    event: dict[str, Any] = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "started":
                    return event
        return {}

    def assignment(self) -> set[int] | None:
        """Partitions of the latest `partitions_assigned` event (None before the first)."""
        latest: set[int] | None = None
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if '"partitions_assigned"' not in line and '"partitions_revoked"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "partitions_assigned":
                latest = set(event.get("partitions") or [])
            elif event.get("event") == "partitions_revoked":
                latest = set()
        return latest


# How the daemon is started; SHADOWD_BENCH_DAEMON overrides it (e.g. a patched entry point, to try a fix).
DAEMON_COMMAND = os.environ.get("SHADOWD_BENCH_DAEMON", f"{sys.executable} -m shadowd").split()


def start_daemon(config: Path, db_url: str, logs: Path, label: str) -> Daemon:
    port = free_port()
    log_path = logs / f"daemon-{label}-{port}.log"
    command = [*DAEMON_COMMAND, "run", "-c", str(config), "--db", db_url,
               "--http", f"127.0.0.1:{port}", "--drain-timeout", "60"]
    env = {**os.environ, "ANTHROPIC_API_KEY": "bench-key", "SHADOWD_LOG_FORMAT": "json"}
    with open(log_path, "wb") as out:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=out, cwd=ROOT, env=env)
    return Daemon(process, log_path, f"http://127.0.0.1:{port}")


def start_profiler(pid: int, out: Path, rate: int, log_path: Path) -> subprocess.Popen[Any]:
    """py-spy attached to a running process; it writes `out` (raw collapsed stacks) when the process ends."""
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=log_file,
        )


def stop_daemons(daemons: list[Daemon]) -> None:
    """SIGTERM every shadowd process at once (each drains and commits), then wait for all of them."""
    for daemon in daemons:
        if daemon.process.poll() is None:
            daemon.process.send_signal(signal.SIGTERM)
    for daemon in daemons:
        try:
            daemon.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            stop_process(daemon.process, 10)


async def wait_for_assignment(daemons: list[Daemon], timeout_s: float = 90.0) -> None:
    """Until every process holds a share and together they hold each partition exactly once."""
    deadline = time.monotonic() + timeout_s
    while True:
        for daemon in daemons:
            if daemon.process.poll() is not None:
                raise RuntimeError(f"daemon exited with {daemon.process.returncode}; see {daemon.log_path}")
        shares = [d.assignment() for d in daemons]
        if all(shares):
            union: set[int] = set()
            total = 0
            for share in shares:
                assert share is not None
                union |= share
                total += len(share)
            if union == set(range(PARTITIONS)) and total == PARTITIONS:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"partitions not assigned within {timeout_s} s: {shares}")
        await asyncio.sleep(0.2)


async def committed_vs_end(bootstrap: str, topic: str) -> dict[str, int]:
    """Committed offsets of the group against the log end, summed over partitions."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(f"{topic}-group")
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(parts)
        return {
            "committed": sum(meta.offset for tp, meta in committed.items() if tp.topic == topic and meta.offset >= 0),
            "log_end": sum(ends.values()),
        }
    finally:
        await consumer.stop()
        await admin.close()


async def run_daemons(
    *,
    processes: int,
    model: FakeModel,
    bootstrap: str,
    server_db_url: str,
    count: int,
    max_concurrency: int,
    workdir: Path,
    label: str,
    seed: int = 11,
    timeout_s: float = 600.0,
    profile_out: Path | None = None,
    profile_rate: int = 200,
) -> dict[str, Any]:
    """Pre-made topic, `processes` daemons in one group, then N records produced; measured to the last verdict."""
    import asyncpg

    topic = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    await create_topic(bootstrap, topic)
    db_url = await create_database(server_db_url, f"shadowd_bench_{label.replace('-', '_')}")
    config = write_config(workdir, name=f"{label}-{topic}", base_url=model.base_url, bootstrap=bootstrap,
                          topic=topic, max_concurrency=max_concurrency)
    records = envelopes_bytes(count, seed)
    daemons = [start_daemon(config, db_url, workdir, f"{label}-{i}") for i in range(processes)]
    connection = None
    profiler: subprocess.Popen[Any] | None = None
    try:
        for daemon in daemons:
            wait_http(f"{daemon.http}/healthz", 60)
        await wait_for_assignment(daemons)
        pids = [d.process.pid for d in daemons]
        if profile_out is not None:
            # Attached once the daemon is up, so start-up (imports, migrations, group join) is left out.
            profiler = start_profiler(pids[0], profile_out, profile_rate, workdir / "py-spy.log")
            await asyncio.sleep(1.0)
        connection = await asyncpg.connect(asyncpg_dsn(db_url))
        stats_before = model.stats()
        cpu_before = {pid: cpu_seconds(pid) for pid in [*pids, model.process.pid]}
        services_before = service_cpu_seconds()
        produce_s = await produce(bootstrap, topic, records)
        log(f"{label}: produced {count} records in {produce_s:.2f} s; waiting for verdicts")
        in_flight_samples: list[int] = []
        deadline = time.monotonic() + timeout_s
        done = 0
        while True:
            done = int(await connection.fetchval("SELECT count(*) FROM verdicts WHERE rollout = $1", ROLLOUT))
            stats = model.stats()
            if 0.1 * count <= done <= 0.9 * count:  # the steady middle, as for records/s
                in_flight_samples.append(int(stats["in_flight"]))
            if done >= count:
                break
            for daemon in daemons:
                if daemon.process.poll() is not None:
                    raise RuntimeError(f"daemon exited with {daemon.process.returncode}; see {daemon.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: only {done}/{count} verdicts after {timeout_s} s")
            await asyncio.sleep(0.25)
        window = await connection.fetchrow(
            "SELECT min(created_at) AS first, max(created_at) AS last, count(*) AS n,"
            " count(DISTINCT request_id) AS distinct_requests FROM verdicts WHERE rollout = $1",
            ROLLOUT,
        )
        created = [
            row["created_at"].timestamp()
            for row in await connection.fetch("SELECT created_at FROM verdicts WHERE rollout = $1", ROLLOUT)
        ]
        statuses = {
            row["status"]: int(row["n"])
            for row in await connection.fetch(
                "SELECT status, count(*) AS n FROM verdicts WHERE rollout = $1 GROUP BY status", ROLLOUT
            )
        }
        stats_after = model.stats()
        cpu_after = {pid: cpu_seconds(pid) for pid in cpu_before}
        services_after = service_cpu_seconds()
        memory = {pid: memory_mb(pid) for pid in pids}
    finally:
        if connection is not None:
            await connection.close()
        stop_daemons(daemons)
        if profiler is not None:
            try:
                profiler.wait(timeout=60)
            except subprocess.TimeoutExpired:
                stop_process(profiler, 10)
    exit_codes = [d.process.returncode for d in daemons]
    offsets = await committed_vs_end(bootstrap, topic)
    await drop_database(db_url)

    span_s = (window["last"] - window["first"]).total_seconds()
    rates = throughput(created)
    calls = int(stats_after["requests_served"]) - int(stats_before["requests_served"])
    result = {
        "processes": processes,
        "records": count,
        "verdicts": int(window["n"]),
        "distinct_requests": int(window["distinct_requests"]),
        "statuses": statuses,
        "first_to_last_s": round(span_s, 3),
        "records_per_s": rates["steady"],
        "records_per_s_first_to_last": rates["first_to_last"],
        "max_concurrency": max_concurrency,
        "records_in_flight_limit": [d.started_event().get("max_in_flight") for d in daemons],
        "model_calls": calls,
        "model_calls_per_record": round(calls / count, 3),
        "fake_model_peak_in_flight": int(stats_after["peak_in_flight"]),
        "fake_model_in_flight_median": statistics.median(in_flight_samples) if in_flight_samples else None,
        "fake_model_in_flight_p90": sorted(in_flight_samples)[int(0.9 * (len(in_flight_samples) - 1))]
        if in_flight_samples else None,
        "daemon_peak_rss_mb": [round(memory[pid].get("VmHWM", 0.0), 1) for pid in pids],
        "daemon_rss_mb_at_end": [round(memory[pid].get("VmRSS", 0.0), 1) for pid in pids],
        "cpu_s": {
            "daemons": [round(cpu_after[pid] - cpu_before[pid], 2) for pid in pids],
            "fake_model": round(cpu_after[model.process.pid] - cpu_before[model.process.pid], 2),
            **{name: (round(after - before, 2) if after is not None and before is not None else None)
               for name, (before, after) in
               ((n, (services_before[n], services_after[n])) for n in services_before)},
        },
        "produce_s": round(produce_s, 2),
        "exit_codes": exit_codes,
        "offsets": offsets,
        "logs": [str(d.log_path) for d in daemons],
    }
    log(f"{label}: {result['records_per_s']} records/s over {span_s:.1f} s, statuses {statuses}, "
        f"peak in flight {result['fake_model_peak_in_flight']}, exit {exit_codes}, offsets {offsets}")
    return result
