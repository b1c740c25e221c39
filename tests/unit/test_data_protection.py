"""Data protection: what the pipeline stores of outputs per route (`store_outputs`), and of dead letters,
over a real loopback fake model, the real SDK and SQLite."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shadowd.adapters.anthropic_client import AnthropicModelClient, RetryPolicy
from shadowd.adapters.sql_store import SqlVerdictStore, open_store
from shadowd.config import ConfigError, Settings, load_config
from shadowd.core.findings import Status
from shadowd.fakemodel import FakeModelServer, parse_behaviours, start_fake_model
from shadowd.pipeline import ShadowPipeline
from tests.unit.test_pipeline import CLEAN, envelope, record

KEY = "sk-ant-api03-" + "Q" * 30
SECRET_TEXT = f"Mail jane.doe@example.com, card 4111 1111 1111 1111, key {KEY}, account ACCT-778899."
ROLLOUT = """rollouts:
  - name: r
    baseline: claude-opus-4-6
    candidate: claude-opus-4-7
    baseline_source: recorded
    noise_check: false
"""


async def make(tmp_path: Path, extra: str) -> tuple[ShadowPipeline, FakeModelServer, SqlVerdictStore]:
    server = await start_fake_model(parse_behaviours({"models": {"default": CLEAN}}))
    path = tmp_path / "shadowd.yaml"
    path.write_text(f"models:\n  base_url: {server.base_url}\n  max_attempts: 3\n{extra}{ROLLOUT}")
    config = load_config(path, Settings())
    store = await open_store(f"sqlite:///{tmp_path / 'v.db'}", upgrade=True)
    client = AnthropicModelClient(base_url=server.base_url, api_key="k", timeout_s=30, max_concurrency=16,
                                  profiles=config.profiles, retry=RetryPolicy(max_attempts=3, base_delay_s=0.01))
    return ShadowPipeline(config, client, store), server, store


@pytest.fixture
async def cleanup() -> AsyncIterator[list[Any]]:
    """Closes what a test opened."""
    opened: list[Any] = []
    yield opened
    for thing in opened:
        await thing.close()


def _with_recorded_answer(request_id: str, text: str) -> dict[str, Any]:
    data = envelope(request_id)
    data["attributes"] = {"customer": "jane.doe@example.com"}
    data["response"] = {"type": "message", "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                        "usage": {"input_tokens": 10, "output_tokens": 20}}
    return data


async def _stored(pipeline: ShadowPipeline, store: SqlVerdictStore, data: dict[str, Any]) -> Any:
    outcome = await pipeline.replay_record(record(data))
    (verdict,) = outcome.verdicts
    await store.save(outcome.verdicts, [])
    row = await store.get_verdict("r", data["request_id"])
    assert row is not None
    return verdict, row


async def test_redacted_route_stores_no_personal_data_or_keys(tmp_path: Path, cleanup: list[Any]) -> None:
    """With store_outputs redacted, the stored outputs, findings and attributes hold markers instead of the
    e-mail, card, key and custom pattern, while the verdict is decided on the whole outputs."""
    extra = "privacy:\n  redact_patterns: ['ACCT-\\d{6}']\nroutes:\n  chat:\n    store_outputs: redacted\n"
    pipeline, server, store = await make(tmp_path, extra)
    cleanup += [pipeline.models, server, store]
    verdict, row = await _stored(pipeline, store, _with_recorded_answer("red", SECRET_TEXT))
    assert verdict.status in (Status.PASS, Status.REGRESSION, Status.NOISE)
    stored = json.dumps(row.verdict.baseline.to_dict()) + json.dumps(row.to_dict())
    for secret in ("jane.doe@example.com", "4111 1111 1111 1111", KEY, "ACCT-778899"):
        assert secret not in stored, secret
    text = row.verdict.baseline.content[0]["text"]
    for marker in ("[redacted:email]", "[redacted:card]", "[redacted:api_key]", "[redacted:custom]"):
        assert marker in text
    assert row.verdict.baseline.usage.output_tokens == 20  # figures stay


async def test_none_route_stores_no_content(tmp_path: Path, cleanup: list[Any]) -> None:
    """With store_outputs none, no side keeps content; model, usage and cost stay for the report."""
    pipeline, server, store = await make(tmp_path, "routes:\n  chat:\n    store_outputs: none\n")
    cleanup += [pipeline.models, server, store]
    _, row = await _stored(pipeline, store, _with_recorded_answer("none", SECRET_TEXT))
    assert row.verdict.baseline.content == () and row.verdict.candidate.content == ()
    assert row.verdict.candidate.ok and row.verdict.candidate.usage.output_tokens > 0
    assert "jane.doe" not in json.dumps(row.to_dict())


async def test_full_is_the_default_and_keeps_outputs(tmp_path: Path, cleanup: list[Any]) -> None:
    """Without privacy settings, outputs are stored as returned (a route may opt into less)."""
    pipeline, server, store = await make(tmp_path, "routes:\n  other:\n    store_outputs: none\n")
    cleanup += [pipeline.models, server, store]
    _, row = await _stored(pipeline, store, _with_recorded_answer("full", SECRET_TEXT))
    assert row.verdict.baseline.content[0]["text"] == SECRET_TEXT


async def test_dead_letter_payload_is_redacted_and_capped(tmp_path: Path, cleanup: list[Any]) -> None:
    """A dead letter keeps its bytes redacted by default, cut to dead_letter_max_bytes, and says so."""
    pipeline, server, store = await make(tmp_path, "privacy:\n  dead_letter_max_bytes: 200\n")
    cleanup += [pipeline.models, server, store]
    raw = f'{{"broken": "{SECRET_TEXT}" '.encode() + b"x" * 500
    letter = (await pipeline.replay_record(record(raw, offset=7))).dead_letter
    assert letter is not None and letter.reason == "invalid_json"
    assert len(letter.payload) <= 200 and b"jane.doe" not in letter.payload and KEY.encode() not in letter.payload
    assert b"[redacted:email]" in letter.payload
    assert "payload redacted" in letter.detail and "cut to" in letter.detail
    await store.save([], [letter])
    (row,) = await store.list_dead_letters(5)
    assert "jane.doe" not in json.dumps(row, default=str)


async def test_dead_letter_bytes_unchanged_when_nothing_matches(tmp_path: Path, cleanup: list[Any]) -> None:
    """Redaction leaves a payload with nothing to hide byte for byte, invalid UTF-8 included."""
    pipeline, server, store = await make(tmp_path, "")
    cleanup += [pipeline.models, server, store]
    letter = (await pipeline.replay_record(record(b"\x00not json \xff", offset=3))).dead_letter
    assert letter is not None and letter.payload == b"\x00not json \xff" and "[" not in letter.detail


@pytest.mark.parametrize(("mode", "kept"), [("none", b""), ("full", f"{SECRET_TEXT} {{".encode())])
async def test_dead_letter_payload_modes(tmp_path: Path, cleanup: list[Any], mode: str, kept: bytes) -> None:
    """dead_letter_payload none keeps no bytes; full keeps them as they came."""
    pipeline, server, store = await make(tmp_path, f"privacy:\n  dead_letter_payload: {mode}\n")
    cleanup += [pipeline.models, server, store]
    letter = (await pipeline.replay_record(record(f"{SECRET_TEXT} {{".encode()))).dead_letter
    assert letter is not None and letter.payload == kept


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("privacy:\n  redact_patterns: ['(unclosed']\n", "privacy.redact_patterns"),
        ("routes:\n  chat:\n    redact_patterns: ['x*']\n", "routes.chat.redact_patterns"),
        ("routes:\n  chat:\n    store_outputs: partly\n", "routes.chat.store_outputs"),
    ],
)
def test_bad_privacy_config_names_the_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    """A regex that does not compile or matches nothing useful, or an unknown mode, stops start-up naming the key."""
    path = tmp_path / "shadowd.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, Settings())
    assert raised.value.key == key
