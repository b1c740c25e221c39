"""shadowd.mirror through the real SDK against the in-process fake model, into the in-memory sink."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from anthropic.lib.streaming import AsyncMessageStream
from anthropic.types import Message

from shadowd.core.envelope import parse_envelope
from shadowd.fakemodel import FakeModelServer, load_behaviours, start_fake_model
from shadowd.mirror import MemorySink, Mirror, assemble_stream, sampled_in

MODEL = "claude-opus-4-6"
TOOL = {
    "name": "get_order_status",
    "description": "Look up an order.",
    "input_schema": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
}


def _request(text: str = "Summarise my ticket please.", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 300, "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
async def server() -> AsyncIterator[FakeModelServer]:
    async with await start_fake_model(load_behaviours(None)) as running:
        yield running


def _client(server: FakeModelServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test", max_retries=0, timeout=30)


async def _delivered(mirror: Mirror, sink: MemorySink, count: int) -> list[dict[str, Any]]:
    assert await asyncio.to_thread(mirror.flush, 20.0)
    assert len(sink.records) >= count
    return [json.loads(value) for _key, value in sink.records]


async def test_each_call_style_publishes_a_valid_envelope_with_the_response_production_saw(
    server: FakeModelServer,
) -> None:
    """create, create(stream=True) and messages.stream each publish one envelope that shadowd parses,
    holding the request, the response (assembled from the stream when streamed) and the api version."""
    sink = MemorySink()
    mirror = Mirror(sink=lambda: sink, route="fallback", attributes={"service": "checkout"})
    client = mirror.wrap(_client(server))
    with mirror.tagged(route="order-tools", attributes={"tenant": "acme"}):
        message = await client.messages.create(**_request(tools=[TOOL]))
        stream = await client.messages.create(**_request("Stream it."), stream=True)
        events = [event async for event in stream]
        async with client.messages.stream(**_request("And via the helper.")) as helper:
            final = await helper.get_final_message()
    assert isinstance(message, Message)
    assert type(stream).__name__ == "AsyncStream" and isinstance(helper, AsyncMessageStream)
    bodies = await _delivered(mirror, sink, 3)
    stats = await mirror.aclose(5)
    assert stats["delivered"] == 3 and stats["dropped"] == 0
    by_id = {body["request_id"]: body for body in bodies}
    first_id = events[0].message.id  # type: ignore[union-attr]
    assert set(by_id) == {message.id, first_id, final.id}
    for body in bodies:
        envelope = parse_envelope(json.dumps(body))
        assert envelope.route == "order-tools"
        assert envelope.attributes == {"service": "checkout", "tenant": "acme"}
        assert envelope.api_version == client.default_headers["anthropic-version"]
        assert envelope.latency_ms is not None and envelope.latency_ms > 0
    assert by_id[message.id]["response"] == message.to_dict()
    assert "stream" not in by_id[message.id]["request"] and by_id[message.id]["request"]["tools"] == [TOOL]
    assert by_id[final.id]["request"]["stream"] is True
    assert by_id[final.id]["response"]["content"] == final.to_dict()["content"]
    assert by_id[final.id]["response"]["stop_reason"] == final.stop_reason
    assert by_id[first_id]["response"] == assemble_stream(events)


async def test_a_streamed_tool_call_assembles_to_the_message_the_sdk_assembles(server: FakeModelServer) -> None:
    """A streamed tool_use block's partial JSON adds up to the same input the SDK's own helper builds."""
    sink = MemorySink()
    mirror = Mirror(sink=lambda: sink)
    client = mirror.wrap(_client(server))
    request = _request("Where is order ORD-123456?", tools=[TOOL], tool_choice={"type": "tool", "name": TOOL["name"]})
    async with client.messages.stream(**request) as helper:
        final = await helper.get_final_message()
    [body] = await _delivered(mirror, sink, 1)
    await mirror.aclose(5)
    assert any(block["type"] == "tool_use" for block in body["response"]["content"])
    assert body["response"]["content"] == final.to_dict()["content"]
    assert body["response"]["usage"]["output_tokens"] == final.usage.output_tokens


async def test_the_envelope_keeps_the_request_as_sent_even_when_the_app_mutates_it_afterwards(
    server: FakeModelServer,
) -> None:
    """Appending to the message list right after the call (a chat loop) does not change the mirrored request."""
    sink = MemorySink()
    mirror = Mirror(sink=lambda: sink)
    client = mirror.wrap(_client(server))
    messages: list[dict[str, Any]] = [{"role": "user", "content": "first turn"}]
    reply = await client.messages.create(model=MODEL, max_tokens=100, messages=messages)
    messages.append({"role": "assistant", "content": reply.content})
    messages.append({"role": "user", "content": "second turn"})
    second = await client.messages.create(model=MODEL, max_tokens=100, messages=messages)
    bodies = {b["request_id"]: b for b in await _delivered(mirror, sink, 2)}
    await mirror.aclose(5)
    assert len(bodies[reply.id]["request"]["messages"]) == 1
    sent = bodies[second.id]["request"]["messages"]
    assert len(sent) == 3 and sent[1]["content"] == [block.to_dict() for block in reply.content]
    parse_envelope(json.dumps(bodies[second.id]))


async def test_with_kafka_unreachable_calls_return_at_once_and_every_envelope_is_counted_dropped(
    server: FakeModelServer,
) -> None:
    """An unreachable sink never slows a call: a full queue counts drops, close() counts the rest, on time."""
    sink = MemorySink()
    sink.reachable = False
    mirror = Mirror(sink=lambda: sink, max_queue=3)
    plain = _client(server)
    client = mirror.wrap(plain)
    for _ in range(10):
        result = await client.messages.create(**_request())
        assert isinstance(result, Message)
    started = time.monotonic()
    stats = await mirror.aclose(0.5)
    assert time.monotonic() - started < 3.0
    assert stats["calls"] == 10 and stats["queued"] == 3 and stats["delivered"] == 0
    assert stats["dropped_by_reason"]["queue_full"] == 7 and stats["dropped_by_reason"]["closed"] == 3
    assert stats["dropped"] == 10 and not sink.records
    after = await client.messages.create(**_request())  # a closed mirror still never fails a call
    assert isinstance(after, Message) and mirror.stats()["dropped_by_reason"]["closed"] == 4


async def test_the_redact_hook_rewrites_suppresses_or_fails_without_touching_the_call(
    server: FakeModelServer,
) -> None:
    """redact(envelope) may rewrite it, return None to suppress it, or raise: the call is never affected."""
    seen: list[str] = []

    def redact(envelope: dict[str, Any]) -> dict[str, Any] | None:
        text = envelope["request"]["messages"][0]["content"]
        seen.append(text)
        if text == "raise":
            raise RuntimeError("redaction bug")
        if text == "drop":
            return None
        envelope["request"]["messages"][0]["content"] = "[redacted]"
        return envelope

    sink = MemorySink()
    mirror = Mirror(sink=lambda: sink, redact=redact)
    client = mirror.wrap(_client(server))
    results = [await client.messages.create(**_request(text)) for text in ("secret 4111-1111", "drop", "raise")]
    assert all(isinstance(r, Message) for r in results)
    await _delivered(mirror, sink, 1)
    stats = await mirror.aclose(5)
    assert seen == ["secret 4111-1111", "drop", "raise"]
    assert len(sink.records) == 1 and b"4111" not in sink.records[0][1] and b"[redacted]" in sink.records[0][1]
    assert stats["suppressed"] == 1 and stats["dropped_by_reason"]["redact_error"] == 1
    assert stats["queued"] == stats["delivered"] + stats["dropped"] + stats["suppressed"]


async def test_sampling_is_a_deterministic_hash_of_the_request_id(server: FakeModelServer) -> None:
    """The same request id is always in or out; the share sampled in follows sample_rate."""
    ids = [f"req-{i}" for i in range(20_000)]
    share = sum(sampled_in(i, 0.25) for i in ids) / len(ids)
    assert abs(share - 0.25) < 0.015
    assert [sampled_in(i, 0.25) for i in ids[:500]] == [sampled_in(i, 0.25) for i in ids[:500]]
    assert all(sampled_in(i, 1.0) for i in ids[:100]) and not any(sampled_in(i, 0.0) for i in ids[:100])

    sink = MemorySink()
    mirror = Mirror(sink=lambda: sink, sample_rate=0.5)
    client = mirror.wrap(_client(server))
    chosen = [f"order-{i}" for i in range(40)]
    for request_id in chosen:
        with mirror.tagged(request_id=request_id):
            await client.messages.create(**_request())
    expected = {i for i in chosen if sampled_in(i, 0.5)}
    await _delivered(mirror, sink, len(expected))
    stats = await mirror.aclose(5)
    assert {key.decode() for key, _ in sink.records} == expected
    assert stats["sampled_out"] == len(chosen) - len(expected)


async def test_a_stream_left_early_or_a_failed_call_publishes_nothing_and_the_error_reaches_the_app(
    server: FakeModelServer,
) -> None:
    """A stream not read to message_stop has no recorded response to mirror; an API error propagates as is."""
    sink = MemorySink()
    mirror = Mirror(sink=lambda: sink)
    client = mirror.wrap(_client(server))
    stream = await client.messages.create(**_request(), stream=True)
    async for _event in stream:
        break
    await stream.close()
    with pytest.raises(anthropic.BadRequestError):
        await client.messages.create(model=MODEL, max_tokens=0, messages=[{"role": "user", "content": "x"}])
    stats = await mirror.aclose(5)
    # The early-left stream is counted incomplete when its iterator is finalised; it is never published.
    assert stats["incomplete_streams"] <= 1 and stats["queued"] == 0 and not sink.records


async def test_the_sync_client_is_mirrored_the_same_way(server: FakeModelServer) -> None:
    """anthropic.Anthropic: create, create(stream=True) and messages.stream publish the same envelopes."""
    sink = MemorySink()
    mirror = Mirror(sink=lambda: sink)

    def app() -> list[str]:
        client = mirror.wrap(anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0, timeout=30))
        message = client.messages.create(**_request())
        events = list(client.messages.create(**_request(), stream=True))
        with client.messages.stream(**_request()) as helper:
            final = helper.get_final_message()
        client.close()
        return [message.id, events[0].message.id, final.id]  # type: ignore[union-attr]

    ids = await asyncio.to_thread(app)
    bodies = await _delivered(mirror, sink, 3)
    stats = await asyncio.to_thread(mirror.close, 5)
    assert sorted(b["request_id"] for b in bodies) == sorted(ids)
    assert all(parse_envelope(json.dumps(b)).response for b in bodies)
    assert stats["delivered"] == 3


def test_bad_settings_are_refused_at_construction() -> None:
    """A sample rate outside 0..1, a non-string attribute or no destination is a clear error."""
    with pytest.raises(ValueError, match="sample_rate"):
        Mirror(sink=MemorySink, sample_rate=1.5)
    with pytest.raises(ValueError, match="attribute values must be strings"):
        Mirror(sink=MemorySink, attributes={"tenant": 7})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="bootstrap_servers"):
        Mirror()
    with pytest.raises(TypeError, match="AsyncAnthropic"):
        Mirror(sink=MemorySink).wrap(object())


async def test_hostile_values_are_escaped_or_dropped_and_counted_never_raised(server: FakeModelServer) -> None:
    """NUL bytes, lone surrogates and markup survive as valid JSON; NaN (no JSON form) is a counted drop."""
    hostile = "tenant \x00 [bold]x[/] \ud800 end"

    def redact(envelope: dict[str, Any]) -> dict[str, Any]:
        envelope["attributes"]["note"] = hostile
        if envelope["request"]["messages"][0]["content"] == "nan":
            envelope["request"]["temperature"] = float("nan")
        return envelope

    sink = MemorySink()
    mirror = Mirror(sink=lambda: sink, redact=redact)
    client = mirror.wrap(_client(server))
    for text in ("fine", "nan"):
        assert isinstance(await client.messages.create(**_request(text)), Message)
    [body] = await _delivered(mirror, sink, 1)
    stats = await mirror.aclose(5)
    assert stats["dropped_by_reason"]["unserializable"] == 1 and stats["delivered"] == 1
    envelope = parse_envelope(sink.records[0][1])
    assert body["attributes"]["note"] == hostile
    # shadowd itself stores tags with NUL and lone surrogates as visible escapes (docs/SPEC.md §1).
    assert envelope.attributes["note"] == "tenant \\u0000 [bold]x[/] \\ud800 end"


def _child_publishes(mirror: Mirror, sink: MemorySink) -> None:
    from shadowd.mirror.publisher import Capture

    mirror.publisher.offer(Capture(request_id="from-child", request={"model": MODEL, "max_tokens": 1,
                                   "messages": [{"role": "user", "content": "x"}]}, route="default", attributes={},
                                   api_version=None, captured_at_s=time.time(), latency_ms=1.0))
    delivered = mirror.flush(10.0) and [key for key, _ in sink.records] == [b"from-child"]
    os._exit(0 if delivered and mirror.stats()["queued"] == 1 else 1)


def test_a_forked_worker_gets_its_own_publisher_thread() -> None:
    """After a pre-forking server forks, the child's envelopes are still sent (by the child's own thread)."""
    import multiprocessing

    sink = MemorySink()
    mirror = Mirror(sink=lambda: sink)
    child = multiprocessing.get_context("fork").Process(target=_child_publishes, args=(mirror, sink))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert mirror.stats()["queued"] == 0  # the parent's own counters are untouched
    mirror.close(1)
