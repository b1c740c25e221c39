"""The mirror consumer over the in-memory Kafka twin: commits follow stored records, dead letters reach the
DLQ topic, rebalances commit what is done; with a real loopback fake model, the real SDK and SQLite."""

from __future__ import annotations

import ast
import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shadowd.adapters.memory_kafka import MemoryRecordPublisher, MemoryRecordSource
from shadowd.commit_tracker import CommitTracker
from shadowd.config import Settings, load_config
from shadowd.consumer import MirrorConsumer
from shadowd.dlq_publisher import DeadLetterPublisher
from shadowd.fakemodel import parse_behaviours, start_fake_model
from shadowd.ports_kafka import TopicPartition
from shadowd.wiring import PipelineParts, open_pipeline

SHADOWD = Path(__file__).resolve().parents[2] / "shadowd"
TOPIC = "mirror"
CLEAN = {"latency_ms": 0, "nondeterminism": 0.0, "faults": {}}
DEADLINE_S = 90.0  # generous: the machine running the tests may be busy


def envelope(request_id: str) -> bytes:
    body = {"model": "claude-opus-4-6", "max_tokens": 300,
            "messages": [{"role": "user", "content": f"Explain canary releases ({request_id})."}]}
    return json.dumps({"schema": "shadowd.mirror/v1", "request_id": request_id, "route": "chat", "request": body,
                       "api_version": "2023-06-01"}).encode()


@dataclass
class Rig:
    source: MemoryRecordSource
    dlq: MemoryRecordPublisher
    consumer: MirrorConsumer
    parts: PipelineParts
    stop: asyncio.Event
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.consumer.subscribe()
        self.task = asyncio.create_task(self.consumer.run(self.stop, drain_timeout_s=30))

    async def finish(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, DEADLINE_S)

    def all_committed(self) -> bool:
        ends = {tp: len(log) for tp, log in self.source.logs.items() if tp in self.source.assignment()}
        return all(self.source.group_offsets.get(tp, 0) == end for tp, end in ends.items())


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def rig_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Builds a consumer over the twin and a real pipeline; closes everything afterwards."""
    stack = AsyncExitStack()
    rigs: list[Rig] = []

    async def build(partitions: int = 2, max_record_bytes: int | None = None, max_in_flight: int = 4) -> Rig:
        server = await start_fake_model(parse_behaviours({"models": {"default": CLEAN}}))
        stack.push_async_callback(server.close)
        path = tmp_path / "shadowd.yaml"
        path.write_text(f"models:\n  base_url: {server.base_url}\n  max_attempts: 2\nrollouts:\n"
                        "  - name: r\n    baseline: claude-opus-4-6\n    candidate: claude-opus-4-7\n")
        config = load_config(path, Settings())
        parts = await stack.enter_async_context(open_pipeline(config, f"sqlite:///{tmp_path / 'v.db'}"))
        source = MemoryRecordSource(TOPIC, partitions)
        dlq = MemoryRecordPublisher(max_record_bytes)
        consumer = MirrorConsumer(
            source, DeadLetterPublisher(dlq, "mirror.dlq", retry_initial_s=0.01, retry_max_s=0.05),
            parts.pipeline, parts.writer, topic=TOPIC, max_in_flight=max_in_flight, commit_interval_s=0.05,
        )
        rig = Rig(source, dlq, consumer, parts, asyncio.Event())
        rigs.append(rig)
        return rig

    yield build
    for rig in rigs:
        rig.stop.set()
        if rig.task is not None and not rig.task.done():
            await asyncio.wait_for(rig.task, DEADLINE_S)
    await stack.aclose()


async def test_records_are_stored_then_committed_and_bad_ones_dead_lettered(rig_factory: Any) -> None:
    """Every record's verdict is stored and its offset committed; a malformed one goes to the DLQ topic
    with its reason and source, and commits per partition only ever move forward."""
    rig = await rig_factory()
    for i in range(6):
        rig.source.append(envelope(f"req-{i}"), partition=i % 2, key=f"req-{i}".encode())
    rig.source.append(b"{not json", partition=1, key=b"bad")
    rig.start()
    await until(lambda: rig.consumer.records_done == 7 and rig.all_committed(), "every record committed")
    await rig.finish()
    for i in range(6):
        assert await rig.parts.store.get_verdict("r", f"req-{i}") is not None
    (letter,) = rig.dlq.records
    headers = dict(letter.headers)
    assert letter.topic == "mirror.dlq" and letter.key == b"bad" and letter.value == b"{not json"
    assert headers["shadowd-source"] == b"mirror/1/3"
    assert headers["shadowd-reason"] == b"invalid_json"
    assert rig.source.group_offsets == {TopicPartition(TOPIC, 0): 3, TopicPartition(TOPIC, 1): 4}
    for partition in (0, 1):
        points = [c[tp] for c in rig.source.commits for tp in c if tp.partition == partition]
        assert points == sorted(points) and len(points) == len(set(points))


async def test_a_revoked_partition_commits_its_records_and_comes_back_from_the_committed_offset(
    rig_factory: Any,
) -> None:
    """On revocation the partition's done records are committed and it is forgotten; assigned again, it is
    read from the group's committed offset, so nothing is skipped or replayed twice."""
    rig = await rig_factory()
    rig.source.append(envelope("a0"), partition=0)
    rig.source.append(envelope("b0"), partition=1)
    rig.start()
    await until(lambda: rig.consumer.records_done == 2 and rig.all_committed(), "first records committed")
    await rig.source.rebalance(keep={0})
    tp1 = TopicPartition(TOPIC, 1)
    assert rig.source.group_offsets[tp1] == 1
    assert tp1 not in rig.consumer.commits.offsets
    rig.source.append(envelope("b1"), partition=1)  # not ours now: must wait for the next owner
    rig.source.append(envelope("a1"), partition=0)
    await until(lambda: rig.consumer.records_done == 3, "partition 0 goes on")
    assert await rig.parts.store.get_verdict("r", "b1") is None
    await rig.source.rebalance(keep={0, 1})
    await until(lambda: rig.consumer.records_done == 4 and rig.all_committed(), "partition 1 back")
    await rig.finish()
    assert await rig.parts.store.get_verdict("r", "b1") is not None
    assert rig.source.group_offsets == {TopicPartition(TOPIC, 0): 2, tp1: 2}


async def test_a_dead_letter_too_large_for_the_topic_is_cut_not_held(rig_factory: Any) -> None:
    """When the DLQ topic refuses a dead letter's size, it is published cut, marked with its original
    length, and the record's offset is committed (the dead-letter row keeps the bytes)."""
    rig = await rig_factory(partitions=1, max_record_bytes=100)
    bad = b"\x00" * 500
    rig.source.append(bad)
    rig.start()
    await until(lambda: rig.consumer.records_done == 1 and rig.all_committed(), "the record committed")
    await rig.finish()
    (letter,) = rig.dlq.records
    assert letter.value == b"" and dict(letter.headers)["shadowd-payload-truncated"] == b"500"
    assert rig.dlq.refused >= 1
    assert sum((await rig.parts.store.dead_letter_counts()).values()) == 1


async def test_a_dlq_outage_holds_the_offset_until_the_letter_is_published(rig_factory: Any) -> None:
    """While the DLQ topic is unreachable the dead letter is retried and its offset not committed; once
    published, readiness's reason clears and the offset moves on."""
    rig = await rig_factory(partitions=1)
    rig.dlq.fail_publishes = 1_000_000
    rig.source.append(b"not an envelope")
    rig.source.append(envelope("after"))
    rig.start()
    await until(lambda: rig.consumer.stuck_reason() is not None, "the outage noticed")
    reason = rig.consumer.stuck_reason()
    assert reason is not None and "KafkaUnavailable" in reason
    await asyncio.sleep(0.3)
    assert rig.source.group_offsets.get(TopicPartition(TOPIC, 0), 0) == 0  # offset 0 is held
    rig.dlq.fail_publishes = 0
    await until(lambda: rig.consumer.records_done == 2 and rig.all_committed(), "both committed")
    await rig.finish()
    assert len(rig.dlq.records) == 1 and rig.consumer.stuck_reason() is None


async def test_a_failed_commit_is_made_good_by_a_later_one(rig_factory: Any) -> None:
    """A commit the broker refuses is logged and retried by the next commit: the offsets are not lost."""
    rig = await rig_factory(partitions=1)
    rig.source.fail_commits = 3
    for i in range(3):
        rig.source.append(envelope(f"c{i}"))
    rig.start()
    await until(lambda: rig.consumer.records_done == 3 and rig.all_committed(), "committed after failures")
    await rig.finish()
    assert rig.source.fail_commits == 0
    assert rig.source.group_offsets == {TopicPartition(TOPIC, 0): 3}


async def test_the_commit_point_waits_for_the_lowest_unfinished_offset() -> None:
    """Records finishing out of order commit only up to the lowest one still in flight."""
    source = MemoryRecordSource(TOPIC, 1)
    assigned: list[set[TopicPartition]] = []

    async def on_revoked(partitions: set[TopicPartition]) -> None:
        return None

    source.subscribe(TOPIC, on_revoked, assigned.append)
    for i in range(4):
        source.append(f"r{i}".encode())
    batch = await source.fetch(timeout_ms=0, max_records=10)
    tp = TopicPartition(TOPIC, 0)
    tracker = CommitTracker(source)
    handles = {m.offset: tracker.fetched(tp, m.offset) for m in batch[tp]}
    handles[2].done(2)
    handles[3].done(3)
    await tracker.commit()
    assert source.group_offsets[tp] == 0  # offset 0 is still in flight: nothing below it to count as done
    handles[0].done(0)
    await tracker.commit()
    assert source.group_offsets[tp] == 1
    handles[1].done(1)
    await tracker.commit()
    assert source.group_offsets[tp] == 4
    await tracker.commit()
    assert [c[tp] for c in source.commits] == [0, 1, 4]  # nothing new at the last call: no commit
    assert assigned == [{tp}]


def test_only_the_kafka_adapters_import_aiokafka() -> None:
    """aiokafka stays behind the Kafka port: no module outside shadowd/adapters/ imports it."""
    offenders = []
    for path in sorted(SHADOWD.rglob("*.py")):
        relative = path.relative_to(SHADOWD).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            if any(name.split(".")[0] == "aiokafka" for name in names) and not relative.startswith("adapters/"):
                offenders.append(relative)
    assert offenders == []
