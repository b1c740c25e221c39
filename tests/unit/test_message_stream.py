"""A streamed replay is put together as the SDK's `messages.stream` puts it together: the same final
message, the same errors, from the same server-sent events on a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jiter import from_json

from shadowd.adapters.anthropic_client import AnthropicModelClient, RetryPolicy
from shadowd.adapters.messages_wire import stream_message
from shadowd.core.adaptation import ReplayRequest
from shadowd.core.message_stream import StreamedMessage
from shadowd.core.profiles import resolve_profiles

BODY = {"model": "claude-opus-4-6", "max_tokens": 400, "messages": [{"role": "user", "content": "hi"}]}
START = {
    "type": "message_start",
    "message": {
        "id": "msg_s", "type": "message", "role": "assistant", "model": "claude-opus-4-6", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 30, "output_tokens": 1, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 12},
    },
}


def sse(events: list[tuple[str, Any]]) -> bytes:
    """Events as the API writes them; a str payload goes out as it is (for malformed data)."""
    lines = []
    for name, data in events:
        lines.append(f"event: {name}\ndata: {data if isinstance(data, str) else json.dumps(data)}\n\n")
    return "".join(lines).encode()


@contextlib.asynccontextmanager
async def serving(handle: Any) -> AsyncIterator[AnthropicModelClient]:
    """The daemon's model client against a Messages endpoint on loopback answered by `handle`."""
    app = web.Application()
    app.router.add_post("/v1/messages", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = AnthropicModelClient(
        base_url=str(server.make_url("")).rstrip("/"), api_key="sk-stream", timeout_s=7, max_concurrency=4,
        profiles=resolve_profiles({}), retry=RetryPolicy(max_attempts=1, deadline_s=5),
    )
    try:
        yield client
    finally:
        await client.close()
        await server.close()


async def both(stream: bytes) -> tuple[Any, Any, list[dict[str, str]]]:
    """(the SDK's final message or its error, shadowd's, the headers of each request) for one stream."""
    seen: list[dict[str, str]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        response = web.StreamResponse(headers={"content-type": "text/event-stream", "request-id": "req_s"})
        await response.prepare(request)
        for piece in range(0, len(stream), 97):  # in pieces that cut events, lines and characters
            await response.write(stream[piece:piece + 97])
        await response.write_eof()
        return response

    async with serving(handle) as client:
        sdk: Any
        try:
            async with client._client.messages.stream(**BODY) as helper:
                async for _ in helper:
                    pass
                sdk = (await helper.get_final_message()).to_dict()
        except Exception as exc:
            sdk = exc
        ours: Any
        try:
            ours = (await stream_message(client._client, dict(BODY), None, 7))[0]
        except Exception as exc:
            ours = exc
    return sdk, ours, seen


def same_outcome(sdk: Any, ours: Any) -> None:
    if isinstance(sdk, anthropic.APIStatusError):
        assert type(ours) is type(sdk) and ours.status_code == sdk.status_code and ours.body == sdk.body
    elif isinstance(sdk, Exception):
        # The SDK raises ValueError for a tool input that is not JSON, and RuntimeError, IndexError or
        # AttributeError for events out of order; shadowd says ValueError for all, a `response` failure.
        assert isinstance(ours, ValueError), (sdk, ours)
    else:
        assert not isinstance(ours, Exception), ours
        assert ours == sdk


# --- generated streams --------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=6)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                           max_size=3), max_leaves=8)


def pieces(draw: Any, text: str) -> list[str]:
    cuts = sorted(set(draw(st.lists(st.integers(0, len(text)), max_size=6))))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@st.composite
def streams(draw: Any) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = [("message_start", START)]
    if draw(st.booleans()):
        events.append(("ping", {"type": "ping"}))
    kinds = draw(st.lists(st.sampled_from(["text", "tool_use", "server_tool_use", "thinking", "future"]), max_size=4))
    truncated = False
    for index, kind in enumerate(kinds):
        deltas: list[dict[str, Any]] = []
        if kind == "text":
            block: dict[str, Any] = {"type": "text", "text": draw(st.sampled_from(["", "Pre: "]))}
            for part in pieces(draw, draw(st.text(max_size=40))):
                deltas.append({"type": "text_delta", "text": part})
                if draw(st.integers(0, 4)) == 0:
                    deltas.append({"type": "citations_delta", "citation": {
                        "type": "char_location", "cited_text": part, "document_index": 0, "start_char_index": 0,
                        "end_char_index": len(part), "document_title": None}})
        elif kind in ("tool_use", "server_tool_use"):
            block = {"type": kind, "id": f"toolu_{index}", "name": "lookup", "input": {}}
            text = json.dumps(draw(st.dictionaries(st.text(max_size=5), values, max_size=4)),
                              ensure_ascii=draw(st.booleans()))
            if draw(st.integers(0, 3)) == 0:  # the answer ran out of tokens inside the tool's input
                text, truncated = text[: draw(st.integers(0, len(text)))], True
            deltas = [{"type": "input_json_delta", "partial_json": part} for part in pieces(draw, text)]
        elif kind == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": part} for part in pieces(draw, draw(st.text(max_size=30)))]
            deltas.append({"type": "signature_delta", "signature": draw(st.text(min_size=1, max_size=8))})
        else:  # a block type, and a delta type, this SDK version does not know
            block = {"type": "future_block", "payload": draw(values)}
            deltas = [{"type": "future_delta", "bits": draw(values)}]
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        for delta in deltas:
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
            if draw(st.integers(0, 9)) == 0:
                events.append(("ping", {"type": "ping"}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    usage: dict[str, Any] = {"output_tokens": draw(st.integers(0, 5000))}
    if draw(st.booleans()):
        usage |= {"input_tokens": 31, "cache_read_input_tokens": 40, "cache_creation_input_tokens": None}
    delta: dict[str, Any] = {"stop_reason": "max_tokens" if truncated else draw(st.sampled_from(
        ["end_turn", "tool_use", "stop_sequence", "refusal"])), "stop_sequence": None}
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    if draw(st.booleans()):
        events.append(("message_stop", {"type": "message_stop"}))
    return events


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=5), values, max_size=4), st.booleans(), st.sampled_from([None, 2]))
def test_every_prefix_of_a_tool_input_parses_partially(document: dict[str, Any], ascii_only: bool,
                                                       indent: int | None) -> None:
    """What parsing a tool's input once at the end rests on: jiter's partial mode reads every prefix of
    an object's JSON (cut between characters, as deltas are), so the SDK, which parses at every delta,
    fails on exactly the inputs that fail once whole, and both end with the same value."""
    text = json.dumps(document, ensure_ascii=ascii_only, indent=indent)
    for end in range(1, len(text) + 1):
        from_json(text[:end].encode(), partial_mode=True)
    assert from_json(text.encode(), partial_mode=True) == json.loads(text)


# The SDK warns while it serialises a block type it does not know; the warning is its own, not a finding.
@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_a_streamed_answer_is_the_sdk_final_message(events: list[tuple[str, Any]]) -> None:
    """Golden: every generated stream (text with citations, tool inputs cut anywhere, thinking, blocks
    and deltas the SDK does not know, pings) gives the SDK's final message, or the SDK's error."""
    sdk, ours, _ = asyncio.run(both(sse(events)))
    same_outcome(sdk, ours)


def test_an_error_event_mid_stream_is_the_sdk_status_error() -> None:
    """An overloaded error after some text is the SDK's status error with status 200 and the event's body,
    which the client classifies as capacity (retried, never the candidate's fault)."""
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    events = [("message_start", START),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
              ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": "Half an ans"}}),
              ("error", error)]
    sdk, ours, _ = asyncio.run(both(sse(events)))
    assert isinstance(sdk, anthropic.APIStatusError) and sdk.status_code == 200 and sdk.body == error
    same_outcome(sdk, ours)
    not_json = asyncio.run(both(sse([("message_start", START), ("error", "upstream went away")])))
    same_outcome(not_json[0], not_json[1])


def test_nul_bytes_lone_surrogates_and_nan_come_through_as_the_sdk_reads_them() -> None:
    """Hostile data: NUL and a lone surrogate in streamed text and in a tool's string input, NaN in the
    usage, give the SDK's message (the store escapes them later, as for a non-streamed answer); a lone
    surrogate escape inside a tool's input is not JSON to either reader, so both fail."""
    tool = {"type": "content_block_start", "index": 1,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}

    def events(partial_json: str) -> list[tuple[str, Any]]:
        return [
            ("message_start", START),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": "a\u0000b\ud800c"}}),
            ("content_block_start", tool),
            ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                     "delta": {"type": "input_json_delta", "partial_json": partial_json}}),
            ("message_delta", '{"type": "message_delta", "delta": {"stop_reason": "tool_use"}, '
                              '"usage": {"output_tokens": 5, "input_tokens": NaN}}'),
        ]

    def stream(partial_json: str) -> bytes:
        return sse(events(partial_json))  # json.dumps writes NUL and the surrogate as \u escapes

    sdk, ours, _ = asyncio.run(both(stream('{"q": "x\\u0000y"}')))
    assert not isinstance(sdk, Exception), sdk
    assert sdk["content"][0]["text"] == "a\x00b\ud800c" and sdk["content"][1]["input"] == {"q": "x\x00y"}
    assert math.isnan(sdk["usage"]["input_tokens"]) and math.isnan(ours["usage"]["input_tokens"])
    ours["usage"]["input_tokens"] = sdk["usage"]["input_tokens"]  # NaN is not equal to itself
    same_outcome(sdk, ours)
    sdk, ours, _ = asyncio.run(both(stream('{"q": "\\ud800"}')))
    assert isinstance(sdk, ValueError)
    same_outcome(sdk, ours)


def test_broken_streams_fail_as_the_sdk_fails() -> None:
    """Near misses: a tool input that is not JSON, a delta for a block that was never started, and
    malformed event data fail on both sides; events before message_start are passed over by both."""
    tool = {"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}
    cases = [
        [("message_start", START), ("content_block_start", tool),
         ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                  "delta": {"type": "input_json_delta", "partial_json": '{"a": tru}'}})],
        [("message_start", START), ("content_block_delta", {"type": "content_block_delta", "index": 3,
                                                            "delta": {"type": "text_delta", "text": "x"}})],
        [("message_start", START), ("content_block_start", "{not json")],
    ]
    for events in cases:
        sdk, ours, _ = asyncio.run(both(sse(events)))
        assert isinstance(sdk, Exception) and isinstance(ours, Exception), events
        same_outcome(sdk, ours)
    early = [("content_block_start", tool), ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                                     "delta": {"type": "text_delta", "text": "x"}}),
             ("message_start", START)]
    sdk, ours, _ = asyncio.run(both(sse(early)))
    assert not isinstance(sdk, Exception) and sdk["content"] == []
    same_outcome(sdk, ours)


def test_the_stream_goes_out_with_the_sdk_stream_headers_and_the_recorded_body() -> None:
    """The request carries the helper's header and `stream: true`, and otherwise the headers
    `messages.stream` sends on the same server (the timeout header aside, as for non-streamed calls)."""
    events = [("message_start", START), ("message_delta", {"type": "message_delta", "delta": {
        "stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 3}})]
    _, _, seen = asyncio.run(both(sse(events)))
    sdk, ours = seen
    allowed = {"content-length", "x-stainless-timeout", "x-stainless-raw-response"}
    assert {k: v for k, v in sdk.items() if k not in allowed} == {k: v for k, v in ours.items() if k not in allowed}
    assert ours["x-stainless-helper-method"] == "stream" and ours["x-stainless-timeout"] == "7"


def test_a_streamed_replay_keeps_its_time_to_first_token_and_its_usage() -> None:
    """Through the daemon's client: the side is ok, carries the joined text, the usage totals of the last
    message_delta over message_start's, and a time to first token no later than the whole call."""
    events = [
        ("message_start", START),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        *[("content_block_delta", {"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "text_delta", "text": word}}) for word in ("Two ", "words")],
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": 2, "input_tokens": 31}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    stream = sse(events)

    async def scenario() -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.json()
            assert body["stream"] is True and body["messages"] == BODY["messages"]
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            await response.write(stream)
            await response.write_eof()
            return response

        async with serving(handle) as client:
            return await client.replay_request(ReplayRequest(body=dict(BODY), adaptations=(), stream=True), None)

    side = asyncio.run(scenario())
    assert side.ok and side.streamed, side.error
    assert side.content == ({"type": "text", "text": "Two words"},)
    assert side.stop_reason == "end_turn"
    assert (side.usage.input_tokens, side.usage.output_tokens, side.usage.cache_read_input_tokens) == (31, 2, 12)
    assert side.ttft_ms is not None and 0 <= side.ttft_ms <= side.latency_ms


def test_deltas_are_joined_once_and_the_result_is_stable() -> None:
    """The accumulator alone: many deltas join to the whole text, and asking twice gives the same message."""
    message = StreamedMessage()
    message.add(START)
    message.add({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    for n in range(2000):
        assert message.add({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"{n},"}})
    first = message.result()
    assert first["content"][0]["text"] == "".join(f"{n}," for n in range(2000))
    assert message.result() is first and first["content"][0]["text"].count(",") == 2000
    assert START["message"]["content"] == []  # the event's own dicts are not changed
