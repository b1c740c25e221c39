"""Plumbing shared by the benchmarks: processes, ports, Kafka topics, PostgreSQL databases, /proc readings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shadowd.demo.traffic import generate_envelopes, support_schema  # noqa: E402

BASELINE = "claude-opus-4-6"
CANDIDATE = "claude-opus-4-7"
ROLLOUT = "bench"
PARTITIONS = 6
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Content faults only: the comparator gets real differences to find, and no call needs a retry,
# so the daemon and the bare SDK loop make exactly the same number of HTTP calls.
CANDIDATE_FAULTS = {
    "json_wrapped": 0.03,
    "key_missing": 0.03,
    "type_changed": 0.03,
    "tool_input_invalid": 0.03,
    "tool_call_missing": 0.02,
    "tool_call_unexpected": 0.03,
    "markdown_drift": 0.05,
    "length_drift": 0.03,
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 500:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s} s")
        time.sleep(0.1)


def get_json(url: str, timeout_s: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 60.0) -> None:
    """SIGTERM the process we started, by its pid; SIGKILL only if it ignores that."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# --- /proc -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()


def service_cpu_seconds() -> dict[str, float | None]:
    """CPU so far of the test services: Kafka (SHADOWD_TEST_KAFKA_PID) and PostgreSQL (the postmaster,
    its live backends, and the backends that exited); None for a service this process cannot see."""
    result: dict[str, float | None] = {"kafka": None, "postgres": None}
    kafka = os.environ.get("SHADOWD_TEST_KAFKA_PID")
    try:
        result["kafka"] = cpu_seconds(int(kafka)) if kafka else None
    except (OSError, ValueError):
        pass
    root = os.environ.get("SHADOWD_TEST_SERVICES_TMP")
    try:
        postmaster = int(Path(root, "pg", "data", "postmaster.pid").read_text().split()[0]) if root else None
    except (OSError, ValueError, IndexError):
        postmaster = None
    if postmaster is not None:
        try:
            fields = _stat(postmaster)
            total = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        child = _stat(int(entry))
                    except OSError:
                        continue
                    if int(child[1]) == postmaster:
                        total += int(child[11]) + int(child[12])
            result["postgres"] = total / CLK_TCK
        except OSError:
            pass
    return result


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak resident set since start) in MiB."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found


def machine() -> dict[str, Any]:
    with open("/proc/meminfo") as handle:
        mem_kb = int(handle.readline().split()[1])
    model = "?"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import platform

    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- the fake model ------------------------------------------------------------------------------


def write_behaviours(folder: Path, latency_ms: float, jitter_ms: float = 0.0) -> Path:
    """Both models at the same latency; the candidate spoils some answers (content faults only)."""
    import yaml

    document = {
        "models": {
            BASELINE: {"latency_ms": latency_ms, "latency_jitter_ms": jitter_ms},
            CANDIDATE: {"latency_ms": latency_ms, "latency_jitter_ms": jitter_ms, "faults": CANDIDATE_FAULTS},
        }
    }
    path = folder / f"behaviours-{int(latency_ms)}ms.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@dataclass
class FakeModel:
    process: subprocess.Popen[Any]
    base_url: str

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = get_json(f"{self.base_url}/stats")
        return result


@contextmanager
def fake_model(behaviours: Path, logs: Path) -> Iterator[FakeModel]:
    """`shadowd fake-model` in its own process on a free loopback port."""
    port = free_port()
    with open(logs / f"fake-model-{port}.log", "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "shadowd", "fake-model", "--port", str(port), "--behaviours", str(behaviours),
             "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )
    model = FakeModel(process, f"http://127.0.0.1:{port}")
    try:
        wait_http(f"{model.base_url}/healthz")
        yield model
    finally:
        stop_process(process, 15)


# --- config, Kafka and PostgreSQL ------------------------------------------------------------------


def write_config(
    folder: Path, *, name: str, base_url: str, bootstrap: str, topic: str, max_concurrency: int
) -> Path:
    """A daemon config: one rollout, baseline + candidate (noise_check off: two model calls per record)."""
    import yaml

    (folder / "schemas").mkdir(parents=True, exist_ok=True)
    (folder / "schemas" / "support-summary.json").write_text(json.dumps(support_schema()))
    document = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topic": topic,
            "group_id": f"{topic}-group",
            "dlq_topic": f"{topic}.dlq",
            "decisions_topic": f"{topic}.decisions",
        },
        "models": {"base_url": base_url, "timeout_s": 120, "max_concurrency": max_concurrency, "max_attempts": 4},
        "routes": {
            "support-summary": {
                "output_schema": "schemas/support-summary.json",
                "ignore_paths": ["$.generated_at"],
            }
        },
        "rollouts": [
            {
                "name": ROLLOUT,
                "baseline": BASELINE,
                "candidate": CANDIDATE,
                "noise_check": False,
                "gate": {"min_samples": 200},
            }
        ],
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def envelopes_bytes(count: int, seed: int) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs of the demo's three-route traffic, request ids unique per seed."""
    return [
        (env["request_id"].encode(), json.dumps(env).encode())
        for env in generate_envelopes(count, seed=seed)
    ]


async def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        deadline = time.monotonic() + 30
        while True:
            described = await admin.describe_topics([topic])
            found = [p for d in described if d["error_code"] == 0 for p in d["partitions"]]
            if len(found) == partitions and all(p["leader"] >= 0 for p in found):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} has no leaders after 30 s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]], partitions: int = PARTITIONS) -> float:
    """Send every record, round-robin over the partitions; returns the seconds it took."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=8 << 20)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = [
            await producer.send(topic, value=value, key=key, partition=index % partitions)
            for index, (key, value) in enumerate(records)
        ]
        await producer.flush()
        for future in futures:
            await future
    finally:
        await producer.stop()
    return time.perf_counter() - started


def asyncpg_dsn(sqlalchemy_url: str, database: str | None = None) -> str:
    from sqlalchemy.engine import make_url

    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def database_url(sqlalchemy_url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(sqlalchemy_url).set(database=database).render_as_string(hide_password=False)


async def create_database(server_url: str, prefix: str) -> str:
    """A new empty database on the benchmark's PostgreSQL server; returns its SQLAlchemy URL."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return database_url(server_url, name)


async def drop_database(url: str) -> None:
    """Drop a benchmark database; a failure to clean up is logged, never fatal to a figure."""
    import asyncpg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    admin = await asyncpg.connect(asyncpg_dsn(url, "postgres"))
    try:
        # A plain DROP also ends an autovacuum worker on the database (which FORCE, not being a
        # superuser, may not); retry while our own closed connections are still going away.
        for _ in range(20):
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
                return
            except asyncpg.ObjectInUseError:
                await asyncio.sleep(0.5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except asyncpg.PostgresError as exc:
            log(f"could not drop database {name}: {exc}")
    finally:
        await admin.close()


# --- summary statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of a non-empty sample."""
    import math

    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def throughput(done_at: Sequence[float]) -> dict[str, float | None]:
    """Records/s from completion times (seconds): first to last, and the steady middle (10th to 90th
    percentile of completions), which leaves out the ramp-up and the tail."""
    times = sorted(done_at)
    n = len(times)
    result: dict[str, float | None] = {"first_to_last": None, "steady": None}
    if n < 2:
        return result
    span = times[-1] - times[0]
    result["first_to_last"] = round((n - 1) / span, 1) if span > 0 else None
    low, high = int(0.1 * (n - 1)), int(0.9 * (n - 1))
    middle = times[high] - times[low]
    result["steady"] = round((high - low) / middle, 1) if middle > 0 else None
    return result


@dataclass
class Figure:
    """One row of the results table."""

    key: str
    figure: str
    measured: float | None
    unit: str
    target: str
    met: bool | None
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "figure": self.figure, "measured": self.measured, "unit": self.unit,
            "target": self.target, "met": self.met, "note": self.note, "details": self.details,
        }
