"""The write path under poison, in process on SQLite and PostgreSQL: refusals split, outages wait, readiness tells."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from shadowd.adapters.sql_store import SqlVerdictStore, open_store
from shadowd.config import load_config
from shadowd.core.findings import Finding, Severity, Status
from shadowd.core.results import SideResult, Usage
from shadowd.http import ApiState, NotReady, create_app
from shadowd.metrics import Metrics
from shadowd.pipeline import RecordOutcome
from shadowd.ports import StoreUnavailable
from shadowd.records import DeadLetter, SourceRecord, VerdictRecord
from shadowd.writer import BatchWriter

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test runs on SQLite and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'verdicts.db'}"
    return str(request.getfixturevalue("fresh_database_url"))


@pytest.fixture
async def store(db_url: str) -> Any:
    """A migrated store on the test's database."""
    opened = await open_store(db_url, upgrade=True)
    yield opened
    await opened.close()


def outcome(offset: int, request_id: str, **verdict: Any) -> RecordOutcome:
    record = SourceRecord(source="file:/traffic.jsonl", partition=0, offset=offset,
                          value=f'{{"request_id": "{request_id!r}"}}'.encode())
    fields: dict[str, Any] = {
        "rollout": "r", "request_id": request_id, "route": "default", "status": Status.PASS, "findings": (),
        "comparator_version": "test", "created_at": NOW, "offset": offset, "partition": 0,
        "source": record.source,
    }
    fields.update(verdict)
    result = RecordOutcome(record)
    result.verdicts = [VerdictRecord(**fields)]
    return result


async def test_a_refused_record_becomes_a_dead_letter_and_its_batch_neighbours_are_stored(
    store: SqlVerdictStore,
) -> None:
    """A batch holding a record the store refuses is split: the neighbours are stored, the refused record is
    a dead letter `unstorable:<what>` with its original bytes and position, and nothing waits forever."""
    writer = BatchWriter(store, retry_initial_s=0.01, linger_s=0.05)
    await writer.start()
    try:
        good = [outcome(i, f"good-{i}") for i in range(30)]
        # A lone surrogate can be stored by neither store; a 300-character id passes the parser's
        # check only if built by hand, and PostgreSQL's VARCHAR(256) refuses it.
        bad = [outcome(100, "bad-\ud800")]
        if store.dialect == "postgresql":
            bad += [outcome(101, "bad-\x00-nul"), outcome(102, "x" * 300)]
        everything = good[:10] + bad + good[10:]
        await asyncio.wait_for(asyncio.gather(*(writer.write(o) for o in everything)), timeout=120)
    finally:
        await writer.close()

    assert await store.existing_verdicts([("r", f"good-{i}") for i in range(30)]) == {
        ("r", f"good-{i}") for i in range(30)
    }
    assert all(o.dead_letter is None and len(o.verdicts) == 1 for o in good)
    letters = {row["offset"]: row for row in await store.list_dead_letters(100)}
    assert set(letters) == {o.record.offset for o in bad}
    for refused in bad:
        assert refused.verdicts == [] and refused.dead_letter is not None
        assert refused.dead_letter.reason.startswith("unstorable:")
        row = letters[refused.record.offset]
        assert row["reason"] == refused.dead_letter.reason
        assert row["payload"] == refused.record.value.decode()
    reasons = {letters[o.record.offset]["reason"] for o in bad}
    expected = {"unstorable:invalid_unicode"} | (
        {"unstorable:character_not_in_repertoire", "unstorable:string_too_long"}
        if store.dialect == "postgresql" else set()
    )
    assert reasons == expected
    assert writer.unstorable == len(bad) and writer.healthy


async def test_escaped_text_and_odd_numbers_are_stored_not_refused(store: SqlVerdictStore) -> None:
    """Golden: NUL and lone surrogates in answers, findings and routes, NaN/Infinity latencies and costs and a
    count beyond 32 bits are stored (escaped or nulled) instead of refusing the verdict."""
    side = SideResult(
        model="m\x00", ok=True, content=({"type": "text", "text": "a\x00b\ud800", "k\x00": [math.nan]},),
        latency_ms=math.inf, cost_usd=math.nan, usage=Usage(output_tokens=2**40), error=None,
    )
    finding = Finding(code="text.changed", severity=Severity.MINOR, path="$.a\x00", detail="got 'a\x00b'")
    verdict = outcome(1, "odd", route="r\x00\ud800", baseline=side, candidate=side, findings=(finding,),
                      reason="why\x00", attributes={"k\x00": "v\ud800"}).verdicts[0]
    assert await store.save([verdict], [
        DeadLetter(source="file:/t\udcff.jsonl", partition=0, offset=9, reason="invalid_json",
                   detail="bad \x00", payload=b"\x00\xff", created_at=NOW),
    ]) == 1
    stored = await store.get_verdict("r", "odd")
    assert stored is not None
    assert stored.verdict.route == "r\\u0000\\ud800"
    assert stored.verdict.attributes == {"k\\u0000": "v\\ud800"}
    assert stored.verdict.candidate is not None
    assert stored.verdict.candidate.content[0]["text"] == "a\\u0000b\\ud800"
    assert stored.verdict.candidate.latency_ms is None and stored.verdict.candidate.cost_usd is None
    assert stored.verdict.findings[0].detail == "got 'a\\u0000b'"
    (letter,) = await store.list_dead_letters(10)
    assert letter["source"] == "file:/t\\udcff.jsonl" and letter["detail"] == "bad \\u0000"
    assert letter["payload_truncated"] is False


async def test_a_dead_letter_over_the_limit_is_stored_truncated_and_flagged(store: SqlVerdictStore) -> None:
    """A payload over 4 MB is stored cut to 4 MB with `payload_truncated`; one at the limit is kept whole."""
    limit = 4 * 1024 * 1024
    await store.save([], [
        DeadLetter(source="t", partition=0, offset=1, reason="too_large", detail="big",
                   payload=b"a" * (limit + 10), created_at=NOW),
        DeadLetter(source="t", partition=0, offset=2, reason="invalid_json", detail="at the limit",
                   payload=b"b" * limit, created_at=NOW),
    ])
    rows = {row["offset"]: row for row in await store.list_dead_letters(10)}
    assert rows[1]["payload_truncated"] is True and len(rows[1]["payload"]) == limit
    assert "truncated" in rows[1]["detail"]
    assert rows[2]["payload_truncated"] is False and len(rows[2]["payload"]) == limit


async def test_a_failing_batched_lookup_is_retried_per_caller(store: SqlVerdictStore) -> None:
    """One caller's unstorable key fails only that caller: neighbours sharing the batched lookup get answers."""
    await store.save([outcome(i, f"seen-{i}").verdicts[0] for i in range(5)], [])
    callers = [store.existing_verdicts([("r", f"seen-{i}"), ("r", f"new-{i}")]) for i in range(10)]
    callers.insert(4, store.existing_verdicts([("r", "bad-\ud800")]))
    results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), timeout=60)
    failed = [r for r in results if isinstance(r, BaseException)]
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert len(failed) == 1 and len(answered) == 10
    assert answered == [{("r", f"seen-{i}")} if i < 5 else set() for i in range(10)]


class OutageStore:
    """The store while the database is down: every save raises StoreUnavailable until `up` is set."""

    def __init__(self, real: SqlVerdictStore) -> None:
        self.real = real
        self.up = asyncio.Event()

    async def save(self, verdicts: Any, letters: Any) -> int:
        if not self.up.is_set():
            raise StoreUnavailable("connection refused")
        return await self.real.save(verdicts, letters)

    async def ping(self) -> None:
        if not self.up.is_set():
            raise StoreUnavailable("connection refused")

    async def existing_verdicts(self, pairs: Any) -> Any:
        return await self.real.existing_verdicts(pairs)


async def test_an_outage_holds_the_write_and_readiness_says_why(store: SqlVerdictStore, tmp_path: Path) -> None:
    """While the store is unavailable a write waits (never a dead letter) and /readyz answers 503 naming the
    stuck writer without driver text; once the store is back the write completes and readiness is 200."""
    outage = OutageStore(store)
    writer = BatchWriter(outage, retry_initial_s=0.05, retry_max_s=0.2)  # type: ignore[arg-type]
    await writer.start()
    config_path = tmp_path / "shadowd.yaml"
    config_path.write_text("rollouts: []\n")

    async def writer_check() -> None:
        reason = writer.stuck_reason()
        if reason is not None:
            raise NotReady(reason)

    async def leaky_check() -> None:
        raise OSError("could not connect to db.internal:5432 as user shadowd_admin")

    app = create_app(ApiState(config=load_config(config_path), store=store, metrics=Metrics(),
                              readiness={"writer": writer_check}))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        pending = asyncio.create_task(writer.write(outcome(1, "held")))
        await asyncio.sleep(1.0)
        assert not pending.done()
        response = await client.get("/readyz")
        body = await response.json()
        assert response.status == 503 and "store writes failing" in body["checks"]["writer"]
        outage.up.set()
        assert await asyncio.wait_for(pending, timeout=30) == 1
        response = await client.get("/readyz")
        assert response.status == 200 and (await response.json())["checks"]["writer"] == "ok"
        app_leaky = create_app(ApiState(config=load_config(config_path), store=store, metrics=Metrics(),
                                        readiness={"database": leaky_check}))
        leaky: TestClient[Any, Any] = TestClient(TestServer(app_leaky))
        await leaky.start_server()
        try:
            response = await leaky.get("/readyz")
            text = await response.text()
            assert response.status == 503 and "db.internal" not in text and "shadowd_admin" not in text
            assert (await response.json())["checks"]["database"].startswith("unreachable")
        finally:
            await leaky.close()
    finally:
        await client.close()
        await writer.close()
    assert await store.list_dead_letters(10) == []


async def test_the_unstorable_letter_is_built_by_the_given_factory(store: SqlVerdictStore) -> None:
    """The writer builds an `unstorable:` letter through the factory it was given (the pipeline's, which
    applies the privacy settings to the payload), so a refused record's bytes are kept as configured."""
    made: list[str] = []

    def redacting(record: SourceRecord, reason: str, detail: str) -> DeadLetter:
        made.append(reason)
        return DeadLetter(source=record.source, partition=record.partition, offset=record.offset,
                          reason=reason, detail=detail, payload=b"[redacted]", created_at=NOW)

    writer = BatchWriter(store, retry_initial_s=0.01, dead_letter=redacting)
    await writer.start()
    try:
        refused = outcome(7, "bad-\ud800")
        await asyncio.wait_for(writer.write(refused), timeout=60)
    finally:
        await writer.close()
    assert made == ["unstorable:invalid_unicode"]
    (row,) = await store.list_dead_letters(10)
    assert row["payload"] == "[redacted]" and row["reason"] == "unstorable:invalid_unicode"
