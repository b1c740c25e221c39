"""Poison never stalls: hostile records among valid ones, through `replay` (SQLite, PostgreSQL) and `run` (Kafka).

Every valid record is verdicted exactly once, every refused one is a dead letter with its reason and its
original bytes, odd text that can be kept is stored escaped, and the run reaches the end of its input.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import select

from shadowd.adapters.sql_schema import dead_letters, verdicts
from shadowd.adapters.sql_store import create_engine
from shadowd.core.envelope import MAX_ENVELOPE_BYTES
from tests import poison
from tests.daemon_harness import (
    DaemonProcess,
    committed_equals_end,
    committed_offsets,
    end_offsets,
    named,
    read_topic,
    wait_until,
)
from tests.helpers import ROOT, fake_model_process, run_cli_json

GOOD = 300
RESULTS_FILE = ROOT / ".cache" / "poison-test-results.json"


def record_results(test: str, figures: dict[str, Any]) -> None:
    """Print the figures a test saw and keep them in RESULTS_FILE for the issue note."""
    print(f"\n[{test}] " + json.dumps(figures, sort_keys=True))
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.exists() else {}
    results[test] = figures
    RESULTS_FILE.write_text(json.dumps(results, indent=2, sort_keys=True))


@pytest.fixture
def fake_model(tmp_path: Path) -> Iterator[str]:
    """`shadowd fake-model` whose candidate claude-opus-4-7 answers with U+0000 about one time in ten."""
    with fake_model_process(poison.behaviours_file(tmp_path)) as base_url:
        yield base_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each replay test runs on SQLite and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'verdicts.db'}"
    return str(request.getfixturevalue("fresh_database_url"))


async def stored(db_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every verdict row and dead-letter row, read with plain SQL (not shadowd's own queries)."""
    engine = create_engine(db_url)
    try:
        async with engine.connect() as connection:
            verdict_rows = [dict(r) for r in (await connection.execute(select(verdicts))).mappings()]
            letter_rows = [dict(r) for r in (await connection.execute(select(dead_letters))).mappings()]
    finally:
        await engine.dispose()
    return verdict_rows, letter_rows


def check_outcomes(
    verdict_rows: list[dict[str, Any]], letter_rows: list[dict[str, Any]], cases: list[poison.PoisonCase],
    seed: int = 5,
) -> dict[str, Any]:
    """Assert the suite's guarantees on what was stored; returns the figures for the note."""
    expected_ids = poison.verdicted_ids(GOOD, cases, seed)
    per_id = Counter(row["request_id"] for row in verdict_rows)
    assert set(per_id) == expected_ids, f"missing {sorted(expected_ids - set(per_id))[:5]}"
    assert set(per_id.values()) == {poison.VERDICTS_PER_RECORD}, "each record verdicted once per rollout"

    by_reason = Counter(row["reason"] for row in letter_rows)
    assert by_reason == poison.expected_reasons(cases)
    payloads = {bytes(row["payload"]): row for row in letter_rows}
    for case in cases:
        if case.reason is None:
            continue
        if case.truncated:
            row = next(r for r in letter_rows if r["reason"] == case.reason)
            assert bytes(row["payload"]) == case.value[:MAX_ENVELOPE_BYTES] and row["payload_truncated"]
        else:
            assert case.value in payloads, f"{case.name}: original bytes not kept"
            assert not payloads[case.value]["payload_truncated"]

    # What was kept is stored escaped, visibly.
    by_id = {(row["rollout"], row["request_id"]): row for row in verdict_rows}
    ids = {case.name: case.request_id for case in cases}
    assert by_id[(poison.REPLAYED, ids["nul-route"])]["route"] == "support\\u0000summary"
    assert by_id[(poison.REPLAYED, ids["surrogate-route"])]["route"] == "route-\\ud800"
    assert by_id[(poison.REPLAYED, ids["nul-attribute-key"])]["attributes"] == {"ten\\u0000ant": "acme"}
    assert by_id[(poison.REPLAYED, ids["nul-attribute-value"])]["attributes"] == {"tenant": "ac\\u0000me"}
    recorded = by_id[(poison.RECORDED, ids["nul-recorded-text"])]["baseline"]
    assert recorded["content"][0]["text"] == "recorded\\u0000answer \\ud801"
    nul_answers = sum(
        1 for row in verdict_rows
        if row["rollout"] == poison.REPLAYED and row["candidate"]
        and any("\\u0000" in str(block.get("text", "")) for block in row["candidate"]["content"])
    )
    assert nul_answers > 0, "some candidate answers held U+0000 and were stored escaped"
    return {"verdicts": len(verdict_rows), "verdicted_records": len(per_id), "dead_letters": dict(by_reason),
            "candidate_answers_with_nul": nul_answers}


async def test_replay_verdicts_every_good_record_and_dead_letters_every_bad_one(
    tmp_path: Path, fake_model: str, db_url: str
) -> None:
    """`shadowd replay` over ~300 valid records and every poison case finishes, verdicts each good record
    exactly once, dead-letters each bad one with its reason and bytes, and a rerun adds nothing."""
    values, cases = poison.mixed_records(GOOD, with_too_large=True)
    traffic = poison.write_jsonl(tmp_path / "poison.jsonl", values)
    config = poison.poison_config(tmp_path, fake_model)
    started = time.monotonic()
    first = await asyncio.to_thread(run_cli_json, "replay", str(traffic), "-c", str(config), "--db", db_url)
    elapsed = time.monotonic() - started
    assert first["records"] == len(values)
    assert first["dead_letters"] == poison.expected_reasons(cases)
    assert first["verdicts"] == poison.VERDICTS_PER_RECORD * len(poison.verdicted_ids(GOOD, cases))

    figures = check_outcomes(*await stored(db_url), cases)

    second = await asyncio.to_thread(run_cli_json, "replay", str(traffic), "-c", str(config), "--db", db_url)
    assert second["verdicts"] == 0
    assert second["already_present"] == first["verdicts"]
    verdict_rows, letter_rows = await stored(db_url)
    assert len(verdict_rows) == figures["verdicts"] and len(letter_rows) == sum(figures["dead_letters"].values())
    record_results(f"replay_{db_url.split(':', 1)[0].split('+')[0]}", {
        "records": len(values), "poison_cases": len(cases), **figures, "wall_s": round(elapsed, 1),
    })


async def _create_topic(bootstrap: str, name: str, partitions: int, config: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config)])
    finally:
        await admin.close()
    await asyncio.sleep(1)


async def produce_large(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Send the records (some of several MB) in order and wait until the broker has them all."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=6 * 1024 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=value) for value in values]
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _delete_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        await admin.delete_topics(names)
    except Exception:  # cleanup must not mask the test's own result
        pass
    finally:
        await admin.close()


async def test_run_on_kafka_never_stalls_on_poison_and_commits_to_the_end(
    tmp_path: Path, fake_model: str, kafka_bootstrap: str, fresh_database_url: str
) -> None:
    """`shadowd run` on Kafka and PostgreSQL with every poison case among ~300 valid records verdicts each good
    record once, dead-letters each bad one (table and DLQ topic, a record too large for the DLQ topic cut and
    flagged), commits every partition to its end, and stays ready."""
    topic = f"shadowd-poison-{uuid.uuid4().hex[:12]}"
    group = f"shadowd-poison-{uuid.uuid4().hex[:12]}"
    # The input topic takes records up to 6 MB; the DLQ topic keeps the broker's 1 MB default, so the
    # 1.5 MB and 4.5 MB dead letters have to be cut to get there.
    await _create_topic(kafka_bootstrap, topic, 3, {"max.message.bytes": str(6 * 1024 * 1024)})
    await _create_topic(kafka_bootstrap, f"{topic}.dlq", 1, {})
    values, cases = poison.mixed_records(GOOD, seed=9, with_too_large=True)  # ids unlike the replay tests
    await produce_large(kafka_bootstrap, topic, values)
    kafka = {
        "bootstrap_servers": kafka_bootstrap, "topic": topic, "group_id": group, "dlq_topic": f"{topic}.dlq",
        "decisions_topic": f"{topic}.decisions", "client": {},
    }
    config = poison.poison_config(tmp_path, fake_model, extra="kafka: " + json.dumps(kafka))
    started = time.monotonic()
    daemon = DaemonProcess(config, fresh_database_url, tmp_path / "daemon.log").start()
    try:
        await daemon.wait_ready()
        took = await wait_until(
            lambda: committed_equals_end(kafka_bootstrap, group, topic), 300, "committed = end", interval_s=1.0
        )
        ready_at_end = await asyncio.to_thread(daemon.readyz)
        daemon.sigterm()
        code = await daemon.wait(90)
    finally:
        daemon.stop_now()

    verdict_rows, letter_rows = await stored(fresh_database_url)
    figures = check_outcomes(verdict_rows, letter_rows, cases, seed=9)
    assert ready_at_end == 200
    assert code == 0, daemon.log_tail()
    assert await committed_offsets(kafka_bootstrap, group, topic) == await end_offsets(kafka_bootstrap, topic)
    assert all(row["source"] == topic for row in letter_rows)

    dlq = await read_topic(kafka_bootstrap, f"{topic}.dlq", expected=len(letter_rows), timeout_s=60)
    assert Counter(m.headers["shadowd-reason"].decode() for m in dlq) == poison.expected_reasons(cases)
    cut = [m for m in dlq if "shadowd-payload-truncated" in m.headers]
    assert {m.headers["shadowd-reason"] for m in cut} == {b"invalid_json", b"too_large"}
    for m in cut:
        original = int(m.headers["shadowd-payload-truncated"])
        assert original > len(m.value) and original > 1024 * 1024
    events = daemon.log_events()
    assert not named(events, "store_write_failed"), "poison must never reach the store as a failing write"
    await _delete_topics(kafka_bootstrap, [topic, f"{topic}.dlq"])
    record_results("run_kafka_postgresql", {
        "records": len(values), "poison_cases": len(cases), **figures, "dlq_records": len(dlq),
        "dlq_cut_to_fit": len(cut), "committed_equals_end_after_s": round(took, 1), "exit_code": code,
        "wall_s": round(time.monotonic() - started, 1),
    })
