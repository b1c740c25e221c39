"""The canonical log events read as data: `verdict` and `dead_letter` with their bound fields (STYLE: logs)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from shadowd.adapters.anthropic_client import AnthropicModelClient, RetryPolicy
from shadowd.adapters.sql_store import open_store
from shadowd.config import Settings, load_config
from shadowd.fakemodel import parse_behaviours, start_fake_model
from shadowd.pipeline import ShadowPipeline
from shadowd.record_guard import replay_or_dead_letter
from shadowd.records import SourceRecord
from tests.unit.test_consumer import envelope as consumer_envelope
from tests.unit.test_consumer import rig_factory, until  # noqa: F401  (rig_factory is a fixture)

CLEAN = {"latency_ms": 0, "nondeterminism": 0.0, "faults": {}}
ROLLOUTS = """  - name: opus-47
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
  - name: sonnet-4.6
    baseline: claude-opus-4-6
    candidate: claude-sonnet-4-6
"""


def envelope(request_id: str, **request: Any) -> dict[str, Any]:
    body = {"model": "claude-opus-4-6", "max_tokens": 500,
            "messages": [{"role": "user", "content": f"Summarise the order ({request_id})."}], **request}
    return {"schema": "shadowd.mirror/v1", "request_id": request_id, "route": "chat", "request": body,
            "api_version": "2023-06-01"}


def record(value: bytes, partition: int, offset: int) -> SourceRecord:
    return SourceRecord(source="mirror", partition=partition, offset=offset, value=value)


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[ShadowPipeline]:
    """The real pipeline: a loopback fake model through the real SDK, and a SQLite store."""
    server = await start_fake_model(parse_behaviours({"models": {"default": CLEAN}}))
    path = tmp_path / "shadowd.yaml"
    path.write_text(f"models:\n  base_url: {server.base_url}\n  max_attempts: 3\nrollouts:\n{ROLLOUTS}")
    config = load_config(path, Settings())
    store = await open_store(f"sqlite:///{tmp_path / 'v.db'}", upgrade=True)
    client = AnthropicModelClient(base_url=server.base_url, api_key="k", timeout_s=30, max_concurrency=8,
                                  profiles=config.profiles, retry=RetryPolicy(max_attempts=3, base_delay_s=0.01))
    try:
        yield ShadowPipeline(config, client, store)
    finally:
        await client.close()
        await store.close()
        await server.close()


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_one_verdict_event_per_rollout_with_its_bound_fields(pipeline: ShadowPipeline) -> None:
    """Each verdict logs one `verdict` event carrying request_id, rollout, partition, offset and status."""
    value = json.dumps(envelope("req-\u00e9-7")).encode()
    with capture_logs() as logs:
        outcome = await replay_or_dead_letter(pipeline, record(value, partition=3, offset=41))
    assert outcome.dead_letter is None and len(outcome.verdicts) == 2
    logged = events(logs, "verdict")
    assert sorted(entry["rollout"] for entry in logged) == ["opus-47", "sonnet-4.6"]
    for entry in logged:
        verdict = next(v for v in outcome.verdicts if v.rollout == entry["rollout"])
        assert entry["log_level"] == "info"
        assert entry["request_id"] == "req-\u00e9-7"
        assert (entry["partition"], entry["offset"]) == (3, 41)
        assert entry["status"] == verdict.status.value
        assert entry["codes"] == sorted({f.code for f in verdict.findings if not f.noise})
        assert "notes" not in entry
    assert events(logs, "dead_letter") == []


async def test_verdict_event_carries_the_checks_that_could_not_run(pipeline: ShadowPipeline) -> None:
    """A tool schema the comparator cannot use is named in `notes` on the verdict event, not as a finding."""
    # A $ref to nowhere passes the metaschema, so the model API (and the fake model) takes the request and
    # calls the tool; the comparator cannot resolve it. (A schema breaking the metaschema is a 400 instead.)
    tools = [{"name": "lookup_order", "description": "Look up an order.",
              "input_schema": {"type": "object", "properties": {"id": {"$ref": "#/$defs/missing"}}}}]
    value = json.dumps(envelope("req-tools", tools=tools, tool_choice={"type": "any"})).encode()
    with capture_logs() as logs:
        outcome = await replay_or_dead_letter(pipeline, record(value, partition=0, offset=7))
    assert outcome.dead_letter is None
    logged = events(logs, "verdict")
    assert len(logged) == 2
    for entry in logged:
        assert entry["request_id"] == "req-tools" and (entry["partition"], entry["offset"]) == (0, 7)
        assert entry["status"] == "pass" and entry["codes"] == [], entry
        assert entry["notes"] == [
            "input_schema of tool 'lookup_order': could not validate: _WrappedReferencingError: PointerToNowhere: "
            "'/$defs/missing' does not exist within {'properties': {'id': {'$ref': '#/$defs/missing'}}, "
            "'type': 'object'}"
        ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x00not json\xff", "invalid_json"),
        (json.dumps({"schema": "shadowd.mirror/v1", "route": "chat"}).encode(), "missing_field:request_id"),
    ],
    ids=["bytes", "no-request-id"],
)
async def test_dead_letter_event_names_the_record(pipeline: ShadowPipeline, value: bytes, reason: str) -> None:
    """A record that cannot be replayed logs one `dead_letter` warning with its reason, partition and offset."""
    with capture_logs() as logs:
        outcome = await replay_or_dead_letter(pipeline, record(value, partition=5, offset=9001))
    assert outcome.dead_letter is not None and outcome.verdicts == []
    (entry,) = events(logs, "dead_letter")
    assert entry["log_level"] == "warning"
    assert entry["reason"] == outcome.dead_letter.reason
    assert entry["reason"].startswith(reason.split(":")[0]), entry
    assert (entry["partition"], entry["offset"], entry["source"]) == (5, 9001, "mirror")
    assert events(logs, "verdict") == []



async def test_consumer_logs_one_event_per_record_with_its_partition_and_offset(rig_factory: Any) -> None:  # noqa: F811
    """Through MirrorConsumer over the Kafka twin: a `verdict` per good record and a `dead_letter` for a bad
    one, each with the partition and offset the record was read from."""
    rig = await rig_factory()
    rig.source.append(consumer_envelope("req-a"), partition=0, key=b"a")
    rig.source.append(consumer_envelope("req-b"), partition=1, key=b"b")
    rig.source.append(b"{not json", partition=1, key=b"bad")
    with capture_logs() as logs:
        rig.start()
        await until(lambda: rig.consumer.records_done == 3 and rig.all_committed(), "every record committed")
        await rig.finish()
    verdicts = {entry["request_id"]: entry for entry in events(logs, "verdict")}
    assert {key: (e["rollout"], e["partition"], e["offset"]) for key, e in verdicts.items()} == {
        "req-a": ("r", 0, 0), "req-b": ("r", 1, 0)
    }
    (letter,) = events(logs, "dead_letter")
    assert (letter["reason"], letter["partition"], letter["offset"], letter["source"]) == ("invalid_json", 1, 1, "mirror")
