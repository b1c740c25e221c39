"""`replay_mode: batch` under `shadowd run` on real Kafka and PostgreSQL: SIGKILL while a batch runs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from shadowd.demo.traffic import generate_envelopes
from tests.daemon_harness import (
    CALLS_PER_RECORD,
    DaemonProcess,
    Verdicts,
    committed_equals_end,
    committed_offsets,
    daemon_config,
    end_offsets,
    envelope_records,
    fake_model_stats,
    named,
    produce,
    read_log_events,
    wait_until,
)
from tests.helpers import fake_model_process

COUNT = 120
# Batches end this long after they were created: time enough to kill the daemon while one runs.
BATCH_DELAY_S = 8.0


async def _submitted_batches(store: Verdicts) -> list[dict[str, Any]]:
    try:
        rows = await store._fetch("SELECT batch_id, state, requests FROM replay_batches ORDER BY created_at")
    except Exception:  # the schema is not there yet
        return []
    return [dict(r) for r in rows]


async def test_sigkill_while_a_batch_runs_resumes_it_and_verdicts_every_record_once(
    tmp_path: Path, kafka_bootstrap: str, fresh_database_url: str, fresh_topic: Any
) -> None:
    """Killed with SIGKILL while its first batch is in flight, the restarted daemon resumes polling that
    batch instead of submitting its calls again, stores exactly one verdict per record, and commits every
    partition to its end."""
    behaviours = tmp_path / "behaviours.yaml"
    clean = {"latency_ms": 5, "nondeterminism": 0.0}
    behaviours.write_text(json.dumps({
        "batches": {"delay_s": BATCH_DELAY_S},
        "models": {name: clean for name in ("claude-opus-4-6", "claude-opus-4-7", "claude-sonnet-4-6")},
    }))
    topic = await fresh_topic(partitions=2)
    group = f"shadowd-test-{uuid.uuid4().hex[:12]}"
    await produce(kafka_bootstrap, topic, envelope_records(generate_envelopes(COUNT, seed=57)))
    store = Verdicts(fresh_database_url)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]

    with fake_model_process(behaviours) as base_url:
        config = daemon_config(tmp_path, base_url, bootstrap=kafka_bootstrap, topic=topic, group_id=group)
        text = config.read_text().replace("    noise_check: true", "    noise_check: true\n    replay_mode: batch")
        config.write_text(text + "\nbatch: {window_records: 1000, window_s: 2, poll_initial_s: 0.5, poll_max_s: 1}\n")

        first = DaemonProcess(config, fresh_database_url, logs[0]).start()
        try:
            await first.wait_ready()

            async def a_batch_is_stored() -> bool:
                return bool(await _submitted_batches(store))

            await wait_until(a_batch_is_stored, 90, "a submitted batch in the ledger")
            first.sigkill()
            await first.wait(30)
        finally:
            first.stop_now()
        at_kill = await _submitted_batches(store)
        verdicts_at_kill = await store.count()
        committed_at_kill = await committed_offsets(kafka_bootstrap, group, topic)
        stats_at_kill = fake_model_stats(base_url)
        assert verdicts_at_kill == 0, "the batch ended before the kill: nothing was in flight"
        assert all(batch["state"] == "submitted" for batch in at_kill)

        second = DaemonProcess(config, fresh_database_url, logs[1]).start()
        try:
            await second.wait_ready()

            async def all_verdicted() -> bool:
                return await store.count() >= COUNT

            await wait_until(all_verdicted, 240, f"{COUNT} verdicts")
            await wait_until(lambda: committed_equals_end(kafka_bootstrap, group, topic), 60, "committed = end")
            second.sigterm()
            code = await second.wait(60)
        finally:
            second.stop_now()
        stats = fake_model_stats(base_url)

    rows, distinct = await store.counts()
    assert (rows, distinct) == (COUNT, COUNT)
    assert await store.request_ids() == {f"req-57-{i:05d}" for i in range(COUNT)}
    assert await committed_offsets(kafka_bootstrap, group, topic) == await end_offsets(kafka_bootstrap, topic)
    assert code == 0, second.log_tail()
    # The killed batch was polled again, not submitted again: every call went to a batch exactly once.
    resumed = {event["batch_id"] for event in named(second.log_events(), "batch_resumed")}
    assert {batch["batch_id"] for batch in at_kill} <= resumed
    assert stats["batch_requests"] == CALLS_PER_RECORD * COUNT
    assert stats["requests_served"] == 0  # no live call for a batch rollout
    ledger = await _submitted_batches(store)
    assert sum(batch["requests"] for batch in ledger) == CALLS_PER_RECORD * COUNT
    assert all(batch["state"] == "ended" for batch in ledger)
    # No record got a verdict from both processes: the first one never reached a verdict.
    verdict_events = named(read_log_events(logs), "verdict")
    assert len(verdict_events) == COUNT
    print("\n[batch_sigkill] " + json.dumps({
        "records": COUNT, "batches_at_kill": len(at_kill), "calls_in_flight_at_kill": sum(b["requests"] for b in at_kill),
        "committed_at_kill": committed_at_kill, "batches_total": len(ledger), "batch_requests": stats["batch_requests"],
        "batches_created_at_kill": stats_at_kill["batches_created"], "verdicts": rows, "resumed": len(resumed),
    }, sort_keys=True))
