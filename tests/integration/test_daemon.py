"""`shadowd run` end to end: a real daemon process on real Kafka and PostgreSQL, killed and restarted."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from shadowd.demo.traffic import MALFORMED_LINES, generate_envelopes
from tests.daemon_harness import (
    CALLS_PER_RECORD,
    DaemonProcess,
    Verdicts,
    clean_behaviours,
    committed_equals_end,
    committed_offsets,
    daemon_config,
    end_offsets,
    envelope_records,
    fake_model_stats,
    named,
    produce,
    read_log_events,
    read_topic,
    wait_until,
)
from tests.helpers import fake_model_process

# Under the checkout (ignored by git), so two checkouts on one machine never share the file.
RESULTS_FILE = Path(__file__).resolve().parents[2] / ".cache" / "daemon-test-results.json"
EXPECTED_REASONS = {
    "invalid_json": 1,
    "not_an_object": 1,
    "unsupported_schema": 1,
    "missing_field:request_id": 1,
    "invalid_field:request.max_tokens": 1,
}


FakeModel = Callable[..., str]


@pytest.fixture
def fake_model(tmp_path: Path) -> Iterator[FakeModel]:
    """Starts a clean `shadowd fake-model` process per test, so its /stats count that test's calls only."""
    with ExitStack() as stack:

        def start(latency_ms: float = 20, jitter_ms: float = 10) -> str:
            return stack.enter_context(fake_model_process(clean_behaviours(tmp_path, latency_ms, jitter_ms)))

        yield start


def record_results(test: str, figures: dict[str, Any]) -> None:
    """Print the figures a test saw and keep them in RESULTS_FILE for the issue note."""
    print(f"\n[{test}] " + json.dumps(figures, sort_keys=True))
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.exists() else {}
    results[test] = figures
    RESULTS_FILE.write_text(json.dumps(results, indent=2, sort_keys=True))


def group_name() -> str:
    return f"shadowd-test-{uuid.uuid4().hex[:12]}"


async def _count_is(store: Verdicts, expected: int) -> bool:
    return await store.count() >= expected


async def test_every_record_gets_one_verdict_or_one_dead_letter_and_offsets_reach_the_end(
    tmp_path: Path, fake_model: FakeModel, kafka_bootstrap: str, fresh_database_url: str, fresh_topic: Any
) -> None:
    """Each valid record gets exactly one verdict, each malformed one a dead letter in the DLQ topic and
    table, and the group commits every partition to its end."""
    started = time.monotonic()
    base_url = fake_model(20, 10)
    count = 300
    topic = await fresh_topic(partitions=3)
    group = group_name()
    config = daemon_config(tmp_path, base_url, bootstrap=kafka_bootstrap, topic=topic, group_id=group)
    records = envelope_records(generate_envelopes(count, seed=21))
    for index, line in enumerate(MALFORMED_LINES):  # interleaved with the valid ones
        records.insert(40 + index * 55, (f"malformed-{index}".encode(), line))
    await produce(kafka_bootstrap, topic, records)
    store = Verdicts(fresh_database_url)

    daemon = DaemonProcess(config, fresh_database_url, tmp_path / "daemon.log").start()
    try:
        await daemon.wait_ready()
        await wait_until(lambda: _count_is(store, count), 120, f"{count} verdicts")
        await wait_until(lambda: committed_equals_end(kafka_bootstrap, group, topic), 30, "committed = end")
        daemon.sigterm()
        code = await daemon.wait(60)
    finally:
        daemon.stop_now()

    rows, distinct = await store.counts()
    assert (rows, distinct) == (count, count)
    assert await store.request_ids() == {f"req-21-{i:05d}" for i in range(count)}
    letters = await store.dead_letters()
    assert Counter(row["reason"] for row in letters) == EXPECTED_REASONS
    assert {bytes(row["payload"]) for row in letters} == set(MALFORMED_LINES)
    dlq = await read_topic(kafka_bootstrap, f"{topic}.dlq", expected=len(MALFORMED_LINES))
    assert len(dlq) == len(MALFORMED_LINES)
    # The same record, reason and source position in the topic as in the table.
    in_topic = {(m.value, m.headers["shadowd-reason"], m.headers["shadowd-source"]) for m in dlq}
    in_table = {
        (bytes(r["payload"]), r["reason"].encode(), f"{r['source']}/{r['partition']}/{r['offset']}".encode())
        for r in letters
    }
    assert in_topic == in_table
    assert all(r["source"] == topic for r in letters)
    ends = await end_offsets(kafka_bootstrap, topic)
    committed = await committed_offsets(kafka_bootstrap, group, topic)
    assert len(ends) == 3 and committed == ends
    assert code == 0, daemon.log_tail()
    calls = fake_model_stats(base_url)["requests_served"]
    assert calls == CALLS_PER_RECORD * count
    record_results("test_1_valid_and_malformed", {
        "records": len(records), "valid": count, "verdicts": rows, "duplicates": rows - distinct,
        "dead_letters_table": len(letters), "dead_letters_topic": len(dlq), "model_calls": calls,
        "committed": committed, "end_offsets": ends, "exit_code": code, "restarts": 0,
        "wall_s": round(time.monotonic() - started, 1),
    })


async def test_sigkill_at_random_moments_loses_nothing_and_replays_only_what_was_in_flight(
    tmp_path: Path, fake_model: FakeModel, kafka_bootstrap: str, fresh_database_url: str, fresh_topic: Any
) -> None:
    """Killed with SIGKILL three times mid-run and restarted, the daemon leaves every request with exactly one
    verdict, replays again only records that were in flight, and commits to the end."""
    started = time.monotonic()
    base_url = fake_model(5, 2)
    count, kills, max_concurrency = 2000, 3, 300
    max_in_flight = max_concurrency // CALLS_PER_RECORD
    # Replayed but not yet stored: at most the replays in flight plus as many waiting for the store.
    max_unstored = 2 * max_in_flight
    rng = random.Random(20261123)
    thresholds = sorted(rng.sample(range(count // 10, count * 8 // 10), kills))
    topic = await fresh_topic(partitions=3)
    group = group_name()
    # The broker's minimum session timeout: a restarted member waits this long for the dead one to leave.
    fast_takeover = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
    config = daemon_config(
        tmp_path, base_url, bootstrap=kafka_bootstrap, topic=topic, group_id=group,
        max_concurrency=max_concurrency, consumer_options=fast_takeover,
    )
    await produce(kafka_bootstrap, topic, envelope_records(generate_envelopes(count, seed=22)))
    store = Verdicts(fresh_database_url)
    logs: list[Path] = []
    # Per kill: requests stored but beyond the committed offset when the process died; Kafka redelivers them.
    redelivered_stored: list[set[str]] = []
    at_kill: list[dict[str, int]] = []

    def launch() -> DaemonProcess:
        logs.append(tmp_path / f"daemon-{len(logs)}.log")
        return DaemonProcess(config, fresh_database_url, logs[-1]).start()

    daemon = launch()
    try:
        for threshold in thresholds:
            await wait_until(lambda t=threshold: _count_is(store, t), 120, f"{threshold} verdicts")
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            daemon.sigkill()
            assert await daemon.wait(30) == -9
            committed = await committed_offsets(kafka_bootstrap, group, topic)
            redelivered = await store.stored_at_or_above(committed)
            redelivered_stored.append(redelivered)
            at_kill.append({"threshold": threshold, "verdicts": await store.count(),
                            "committed": sum(committed.values()), "stored_beyond_commit": len(redelivered)})
            daemon = launch()
        await daemon.wait_ready()
        await wait_until(lambda: _count_is(store, count), 150, f"{count} verdicts")
        await wait_until(lambda: committed_equals_end(kafka_bootstrap, group, topic), 30, "committed = end")
        daemon.sigterm()
        code = await daemon.wait(60)
    finally:
        daemon.stop_now()

    assert code == 0, daemon.log_tail()
    rows, distinct = await store.counts()
    assert (rows, distinct) == (count, count)
    assert await store.request_ids() == {f"req-22-{i:05d}" for i in range(count)}
    ends = await end_offsets(kafka_bootstrap, topic)
    assert await committed_offsets(kafka_bootstrap, group, topic) == ends
    assert not await store.dead_letters()

    # Redelivered records that were already stored are skipped: no later process computes their verdict again.
    computed_by: dict[str, list[int]] = {}
    for index, path in enumerate(logs):
        for event in named(read_log_events([path]), "verdict"):
            computed_by.setdefault(event["request_id"], []).append(index)
    assert any(redelivered_stored), "no kill left stored-but-uncommitted records: the skip path went untested"
    recomputed = {
        rid for kill, ids in enumerate(redelivered_stored) for rid in ids if max(computed_by[rid]) > kill
    }
    assert not recomputed, f"stored records replayed again after a redelivery: {sorted(recomputed)[:10]}"
    verdict_events = Counter({rid: len(indices) for rid, indices in computed_by.items()})
    # Only records in flight at a kill (computed, not yet stored) can have been computed twice.
    replayed_again = sum(n - 1 for n in verdict_events.values())
    assert set(verdict_events) == await store.request_ids()
    assert replayed_again <= kills * max_unstored
    calls = fake_model_stats(base_url)["requests_served"]
    assert CALLS_PER_RECORD * count <= calls <= CALLS_PER_RECORD * (count + kills * max_unstored)
    record_results("test_2_sigkill_restarts", {
        "records": count, "verdicts": rows, "duplicates": rows - distinct, "dead_letters": 0,
        "restarts": kills, "kill_thresholds": thresholds, "at_kill": at_kill,
        "redelivered_already_stored_skipped": sum(len(ids) for ids in redelivered_stored),
        "verdict_log_events": sum(verdict_events.values()), "computed_twice": replayed_again,
        "model_calls": calls, "model_calls_beyond_3n": calls - CALLS_PER_RECORD * count,
        "exit_code": code, "wall_s": round(time.monotonic() - started, 1),
    })


async def test_sigterm_drains_in_flight_replays_and_a_restart_replays_nothing_twice(
    tmp_path: Path, fake_model: FakeModel, kafka_bootstrap: str, fresh_database_url: str, fresh_topic: Any
) -> None:
    """SIGTERM mid-run drains in-flight replays, exits 0 with every stored record committed, and the restarted
    daemon finishes without calling the model twice for any record."""
    started = time.monotonic()
    base_url = fake_model(300, 10)
    count = 600
    topic = await fresh_topic(partitions=3)
    group = group_name()
    config = daemon_config(tmp_path, base_url, bootstrap=kafka_bootstrap, topic=topic, group_id=group)
    await produce(kafka_bootstrap, topic, envelope_records(generate_envelopes(count, seed=23)))
    store = Verdicts(fresh_database_url)

    first = DaemonProcess(config, fresh_database_url, tmp_path / "daemon-0.log").start()
    try:
        await first.wait_ready()
        # Records are fetched in batches of max_in_flight (50) that finish together; a threshold off
        # that grid lands while a batch is still in flight.
        threshold = count // 4 + 17
        await wait_until(lambda: _count_is(store, threshold), 120, f"{threshold} verdicts")
        first.sigterm()
        first_code = await first.wait(90)
    finally:
        first.stop_now()
    assert first_code == 0, first.log_tail()
    events = first.log_events()
    assert named(events, "shutdown_requested")
    draining = named(events, "draining")
    assert draining and draining[0]["in_flight"] > 0
    assert not named(events, "drain_deadline_passed")
    stored_at_stop = await store.positions()
    committed = await committed_offsets(kafka_bootstrap, group, topic)
    assert 0 < len(stored_at_stop) < count
    # Everything stored is committed, and everything committed is stored: no gap, no redelivery needed.
    assert all(offset < committed.get(partition, 0) for partition, offset in stored_at_stop)
    assert sum(committed.values()) == len(stored_at_stop)
    calls_at_stop = fake_model_stats(base_url)["requests_served"]
    assert calls_at_stop == CALLS_PER_RECORD * len(stored_at_stop)

    second = DaemonProcess(config, fresh_database_url, tmp_path / "daemon-1.log").start()
    try:
        await second.wait_ready()
        await wait_until(lambda: _count_is(store, count), 120, f"{count} verdicts")
        await wait_until(lambda: committed_equals_end(kafka_bootstrap, group, topic), 30, "committed = end")
        second.sigterm()
        second_code = await second.wait(90)
    finally:
        second.stop_now()
    assert second_code == 0, second.log_tail()
    rows, distinct = await store.counts()
    assert (rows, distinct) == (count, count)
    calls = fake_model_stats(base_url)["requests_served"]
    assert calls == CALLS_PER_RECORD * count
    verdict_events = named(read_log_events([first.log_path, second.log_path]), "verdict")
    assert len(verdict_events) == count
    record_results("test_3_sigterm_drain_restart", {
        "records": count, "verdicts": rows, "duplicates": rows - distinct, "dead_letters": 0,
        "stored_at_sigterm": len(stored_at_stop), "committed_at_sigterm": sum(committed.values()),
        "in_flight_when_draining": draining[0]["in_flight"], "model_calls": calls,
        "verdict_log_events": len(verdict_events), "exit_codes": [first_code, second_code], "restarts": 1,
        "wall_s": round(time.monotonic() - started, 1),
    })


async def test_a_database_outage_pauses_the_daemon_without_losing_or_dead_lettering_records(
    tmp_path: Path, fake_model: FakeModel, kafka_bootstrap: str, fresh_database_url: str, fresh_topic: Any,
    pg_control: Any,
) -> None:
    """With PostgreSQL down for 30 s mid-run the daemon stays up, reports not ready, and resumes by itself
    with every verdict stored once and every offset committed."""
    started = time.monotonic()
    base_url = fake_model(20, 10)
    count, outage_s = 1000, 30.0
    topic = await fresh_topic(partitions=3)
    group = group_name()
    config = daemon_config(tmp_path, base_url, bootstrap=kafka_bootstrap, topic=topic, group_id=group)
    await produce(kafka_bootstrap, topic, envelope_records(generate_envelopes(count, seed=24)))
    store = Verdicts(fresh_database_url)

    daemon = DaemonProcess(config, fresh_database_url, tmp_path / "daemon.log").start()
    try:
        await daemon.wait_ready()
        await wait_until(lambda: _count_is(store, count // 5), 120, f"{count // 5} verdicts")
        stored_before = await store.count()
        try:
            await asyncio.to_thread(pg_control.stop)
            down_at = time.monotonic()
            await asyncio.sleep(3)
            ready_during = await asyncio.to_thread(daemon.readyz)
            await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
            alive_during = daemon.running
        finally:
            await asyncio.to_thread(pg_control.start)
        recovered_in = await wait_until(
            lambda: _count_is(store, stored_before + 1), 60, "a verdict after the outage"
        )
        await wait_until(lambda: _count_is(store, count), 150, f"{count} verdicts")
        await wait_until(lambda: committed_equals_end(kafka_bootstrap, group, topic), 30, "committed = end")
        ready_after = await asyncio.to_thread(daemon.readyz)
        alive_after = daemon.running
        daemon.sigterm()
        code = await daemon.wait(60)
    finally:
        daemon.stop_now()

    assert ready_during == 503
    assert alive_during and alive_after
    assert ready_after == 200
    assert code == 0, daemon.log_tail()
    rows, distinct = await store.counts()
    assert (rows, distinct) == (count, count)
    letters = await store.dead_letters()
    assert not letters, f"records dead-lettered during the outage: {Counter(r['reason'] for r in letters)}"
    assert await committed_offsets(kafka_bootstrap, group, topic) == await end_offsets(kafka_bootstrap, topic)
    events = daemon.log_events()
    write_failures = len(named(events, "store_write_failed"))
    assert write_failures > 0 and named(events, "store_write_recovered")
    calls = fake_model_stats(base_url)["requests_served"]
    assert calls == CALLS_PER_RECORD * count
    record_results("test_4_postgres_outage", {
        "records": count, "verdicts": rows, "duplicates": rows - distinct, "dead_letters": len(letters),
        "stored_before_outage": stored_before, "outage_s": outage_s, "readyz_during": ready_during,
        "readyz_after": ready_after, "store_write_failed_events": write_failures,
        "record_retry_events": len(named(events, "store_unreachable_retrying_record")),
        "first_verdict_after_restart_s": round(recovered_in, 1), "model_calls": calls, "exit_code": code,
        "restarts": 0, "wall_s": round(time.monotonic() - started, 1),
    })


async def test_two_daemons_share_partitions_and_the_survivor_takes_over_a_killed_one(
    tmp_path: Path, fake_model: FakeModel, kafka_bootstrap: str, fresh_database_url: str, fresh_topic: Any
) -> None:
    """Two daemons in one group split the partitions; when one is SIGKILLed the other takes its partitions
    over and every request still ends with exactly one verdict and every offset committed."""
    started = time.monotonic()
    base_url = fake_model(20, 10)
    count, max_concurrency = 1500, 150
    topic = await fresh_topic(partitions=4)
    group = group_name()
    config = daemon_config(tmp_path, base_url, bootstrap=kafka_bootstrap, topic=topic, group_id=group,
                           max_concurrency=max_concurrency)
    store = Verdicts(fresh_database_url)
    survivor = DaemonProcess(config, fresh_database_url, tmp_path / "survivor.log").start()
    victim = DaemonProcess(config, fresh_database_url, tmp_path / "victim.log")
    try:
        await survivor.wait_ready()
        victim.start()
        await victim.wait_ready()

        async def split() -> bool:
            latest = [named(d.log_events(), "partitions_assigned")[-1:] for d in (survivor, victim)]
            return all(latest) and all(e[0]["partitions"] for e in latest) and sorted(
                latest[0][0]["partitions"] + latest[1][0]["partitions"]) == [0, 1, 2, 3]

        await wait_until(split, 60, "both daemons holding partitions")
        split_at = {name: named(d.log_events(), "partitions_assigned")[-1]["partitions"]
                    for name, d in (("survivor", survivor), ("victim", victim))}
        await produce(kafka_bootstrap, topic, envelope_records(generate_envelopes(count, seed=25)))
        await wait_until(lambda: _count_is(store, count // 3), 120, f"{count // 3} verdicts")
        victim.sigkill()
        assert await victim.wait(30) == -9
        killed_at = await store.count()
        takeover_started = time.monotonic()

        async def taken_over() -> bool:
            latest = named(survivor.log_events(), "partitions_assigned")[-1]
            return bool(latest["partitions"] == [0, 1, 2, 3])

        await wait_until(taken_over, 90, "the survivor holding all four partitions")
        takeover_s = time.monotonic() - takeover_started
        await wait_until(lambda: _count_is(store, count), 150, f"{count} verdicts")
        await wait_until(lambda: committed_equals_end(kafka_bootstrap, group, topic), 30, "committed = end")
        survivor.sigterm()
        code = await survivor.wait(60)
    finally:
        survivor.stop_now()
        victim.stop_now()

    assert code == 0, survivor.log_tail()
    rows, distinct = await store.counts()
    assert (rows, distinct) == (count, count)
    assert await store.request_ids() == {f"req-25-{i:05d}" for i in range(count)}
    assert await committed_offsets(kafka_bootstrap, group, topic) == await end_offsets(kafka_bootstrap, topic)
    by_survivor = len(named(survivor.log_events(), "verdict"))
    by_victim = len(named(victim.log_events(), "verdict"))
    assert by_survivor > 0 and by_victim > 0
    max_unstored = 2 * (max_concurrency // CALLS_PER_RECORD)  # replays in flight + those awaiting the store
    assert count <= by_survivor + by_victim <= count + max_unstored
    calls = fake_model_stats(base_url)["requests_served"]
    assert CALLS_PER_RECORD * count <= calls <= CALLS_PER_RECORD * (count + max_unstored)
    record_results("test_5_two_daemons_one_killed", {
        "records": count, "verdicts": rows, "duplicates": rows - distinct, "dead_letters": 0,
        "partitions_at_start": split_at, "verdicts_when_killed": killed_at,
        "takeover_s": round(takeover_s, 1),
        "verdict_events_survivor": by_survivor, "verdict_events_victim": by_victim, "model_calls": calls,
        "exit_code": code, "restarts": 0, "wall_s": round(time.monotonic() - started, 1),
    })
