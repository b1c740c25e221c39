"""`shadowd run` as a real process, and what its tests read back from Kafka, PostgreSQL and the fake model."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.engine import make_url

from tests.helpers import ROOT, free_port, write_config

ROLLOUT = "opus-4-7"
ONE_ROLLOUT = """
  - name: opus-4-7
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    noise_check: true
    gate: {min_samples: 50}
"""
CALLS_PER_RECORD = 3  # baseline, its noise replay, candidate


# --- the fake model and the config ---------------------------------------------------------------


def clean_behaviours(folder: Path, latency_ms: float, jitter_ms: float = 0.0) -> Path:
    """A behaviour file where the three models never fail and always answer alike: one call per side."""
    entry = {"latency_ms": latency_ms, "latency_jitter_ms": jitter_ms, "nondeterminism": 0.0, "faults": {}}
    models = {name: entry for name in ("claude-opus-4-6", "claude-opus-4-7", "claude-sonnet-4-6")}
    path = folder / "behaviours.yaml"
    path.write_text(json.dumps({"models": models}))  # JSON is YAML
    return path


def daemon_config(
    folder: Path,
    base_url: str,
    *,
    bootstrap: str,
    topic: str,
    group_id: str,
    max_concurrency: int = 150,
    consumer_options: dict[str, Any] | None = None,
) -> Path:
    """A config with the one opus-4-7 rollout and a `kafka:` section for this test's topic and group."""
    client = {"consumer": consumer_options} if consumer_options else {}
    kafka = {
        "bootstrap_servers": bootstrap,
        "topic": topic,
        "group_id": group_id,
        "dlq_topic": f"{topic}.dlq",
        "decisions_topic": f"{topic}.decisions",
        "client": client,
    }
    path = write_config(folder, base_url, extra="kafka: " + json.dumps(kafka), rollouts=ONE_ROLLOUT)
    text = path.read_text().replace("max_concurrency: 96", f"max_concurrency: {max_concurrency}")
    path.write_text(text)
    return path


def fake_model_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/stats", timeout=5) as response:
        stats: dict[str, Any] = json.loads(response.read())
    return stats


# --- the daemon process --------------------------------------------------------------------------


class DaemonProcess:
    """`python -m shadowd run` in its own process, its JSON logs captured to a file."""

    def __init__(self, config: Path, db_url: str, log_path: Path, *extra_args: str) -> None:
        self.config = config
        self.db_url = db_url
        self.log_path = log_path
        self.port = free_port()
        self.http_url = f"http://127.0.0.1:{self.port}"
        self.extra_args = extra_args or ("--promoter-interval", "3600")
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self) -> DaemonProcess:
        command = [
            sys.executable, "-m", "shadowd", "run", "-c", str(self.config), "--db", self.db_url,
            "--http", f"127.0.0.1:{self.port}", *self.extra_args,
        ]
        env = {**os.environ, "ANTHROPIC_API_KEY": "test", "SHADOWD_LOG_FORMAT": "json"}
        self._log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=self._log_file, env=env, cwd=ROOT
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def readyz(self) -> int:
        """The HTTP status of GET /readyz (0 when nothing answers)."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/readyz", timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.running:
                raise AssertionError(f"shadowd run exited {self.returncode} before ready:\n{self.log_tail()}")
            if await asyncio.to_thread(self.readyz) == 200:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"shadowd run was not ready within {timeout_s} s:\n{self.log_tail()}")
            await asyncio.sleep(0.2)

    def sigterm(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def sigkill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)

    async def wait(self, timeout_s: float = 90.0) -> int:
        assert self.process is not None
        code = await asyncio.to_thread(self.process.wait, timeout_s)
        self._close_log()
        return code

    def stop_now(self) -> None:
        """Cleanup for `finally`: kill the process if it still runs."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=30)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_events(self) -> list[dict[str, Any]]:
        return read_log_events([self.log_path])

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def read_log_events(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The JSON log lines of these files as dicts; other lines (and a line cut by SIGKILL) are left out."""
    events: list[dict[str, Any]] = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
    return events


def named(events: Sequence[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == name]


# --- polling -------------------------------------------------------------------------------------


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, what: str, interval_s: float = 0.25
) -> float:
    """Poll `check` until it is true; returns the seconds it took, fails naming `what` on timeout."""
    started = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(interval_s)


# --- Kafka ---------------------------------------------------------------------------------------


async def produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> None:
    """Send (key, value) records and wait until the broker has them all."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value, key=key) for key, value in records]
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def envelope_records(envelopes: Sequence[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    return [(e["request_id"].encode(), json.dumps(e).encode()) for e in envelopes]


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = sorted(p["partition"] for d in described if d["error_code"] == 0 for p in d["partitions"])
    if not partitions:
        raise AssertionError(f"topic {topic} has no partitions")
    return partitions


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    partitions = await partitions_of(bootstrap, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group_id: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of `topic` (partitions never committed are absent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group_id)
    finally:
        await admin.close()
    return {tp.partition: m.offset for tp, m in offsets.items() if tp.topic == topic and m.offset >= 0}


async def committed_equals_end(bootstrap: str, group_id: str, topic: str) -> bool:
    ends = await end_offsets(bootstrap, topic)
    committed = await committed_offsets(bootstrap, group_id, topic)
    return bool(ends) and all(committed.get(p, 0) == end for p, end in ends.items())


@dataclass(frozen=True, slots=True)
class TopicRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


async def read_topic(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0) -> list[TopicRecord]:
    """Read `topic` from the beginning until `expected` records arrived (or the time is up)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    found: list[TopicRecord] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for m in messages:
                    found.append(TopicRecord(m.partition, m.offset, m.key, m.value or b"", dict(m.headers)))
        # Anything beyond `expected` would be a duplicate: give it a moment to show up.
        batch = await consumer.getmany(timeout_ms=1000)
        for messages in batch.values():
            for m in messages:
                found.append(TopicRecord(m.partition, m.offset, m.key, m.value or b"", dict(m.headers)))
    finally:
        await consumer.stop()
    return found


# --- PostgreSQL ----------------------------------------------------------------------------------


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


class Verdicts:
    """Direct SQL over the daemon's tables, so the tests trust PostgreSQL, not shadowd's own queries."""

    def __init__(self, db_url: str) -> None:
        self.dsn = asyncpg_dsn(db_url)

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(self.dsn, timeout=10)
        try:
            return list(await connection.fetch(query, *args))
        finally:
            await connection.close()

    async def counts(self) -> tuple[int, int]:
        """(verdict rows, distinct (rollout, request_id) pairs); 0, 0 before the schema exists."""
        try:
            rows = await self._fetch(
                "SELECT count(*) AS n, count(DISTINCT (rollout, request_id)) AS d FROM verdicts"
            )
        except asyncpg.UndefinedTableError:
            return 0, 0
        return int(rows[0]["n"]), int(rows[0]["d"])

    async def count(self) -> int:
        return (await self.counts())[0]

    async def request_ids(self) -> set[str]:
        return {r["request_id"] for r in await self._fetch("SELECT request_id FROM verdicts")}

    async def stored_at_or_above(self, committed: dict[int, int]) -> set[str]:
        """Request ids stored beyond the committed offset of their partition: Kafka redelivers them."""
        rows = await self._fetch('SELECT request_id, "partition", "offset" FROM verdicts')
        return {r["request_id"] for r in rows if r["offset"] >= committed.get(r["partition"], 0)}

    async def positions(self) -> list[tuple[int, int]]:
        rows = await self._fetch('SELECT "partition", "offset" FROM verdicts')
        return [(int(r["partition"]), int(r["offset"])) for r in rows]

    async def dead_letters(self) -> list[dict[str, Any]]:
        rows = await self._fetch('SELECT source, "partition", "offset", reason, payload FROM dead_letters')
        return [dict(r) for r in rows]


__all__ = [
    "CALLS_PER_RECORD",
    "ROLLOUT",
    "DaemonProcess",
    "TopicRecord",
    "Verdicts",
    "asyncpg_dsn",
    "clean_behaviours",
    "committed_equals_end",
    "committed_offsets",
    "daemon_config",
    "end_offsets",
    "envelope_records",
    "fake_model_stats",
    "named",
    "partitions_of",
    "produce",
    "read_log_events",
    "read_topic",
    "wait_until",
]
