"""What a non-streamed replay puts on the wire: the recorded body as the SDK would encode it, with the
SDK's own headers, through the real `anthropic` client and a real HTTP server on loopback."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowd.adapters.anthropic_client import AnthropicModelClient, RetryPolicy
from shadowd.adapters.messages_wire import request_content
from shadowd.core.adaptation import ReplayRequest
from shadowd.core.profiles import resolve_profiles

ANSWER = {
    "id": "msg_wire", "type": "message", "role": "assistant", "model": "claude-opus-4-6",
    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 1},
}


def client_url(client: AnthropicModelClient) -> str:
    return str(client._client.base_url)


class Capture:
    """A Messages endpoint that keeps every request it was sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(({k.lower(): v for k, v in request.headers.items()}, await request.read()))
        return web.json_response(ANSWER, headers={"request-id": "req_wire"})


@pytest.fixture
async def wire() -> AsyncIterator[tuple[Capture, AnthropicModelClient]]:
    capture = Capture()
    app = web.Application()
    app.router.add_post("/v1/messages", capture.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    client = AnthropicModelClient(
        base_url=str(server.make_url("")).rstrip("/"), api_key="sk-wire", timeout_s=7, max_concurrency=4,
        profiles=resolve_profiles({}), retry=RetryPolicy(max_attempts=1, deadline_s=5),
    )
    yield capture, client
    await client.close()
    await server.close()


async def test_the_recorded_body_goes_out_with_its_values_and_key_order(wire: tuple[Capture, AnthropicModelClient]) -> None:
    capture, client = wire
    body: dict[str, Any] = {
        "system": "Réponds en français. 注意", "model": "claude-opus-4-6", "temperature": 0.2,
        "messages": [{"role": "user", "content": "Résume le ticket 7 \u2014 deux phrases."}],
        "max_tokens": 300, "metadata": {"user_id": "u-1"}, "future_field": {"nested": [1, 2.5, None, True]},
        "big": 123456789012345678901234567890,
    }
    side = await client.replay_request(ReplayRequest(body=body, adaptations=(), stream=False), "2023-06-01")
    assert side.ok, side.error
    assert side.content == ({"type": "text", "text": "ok"},)
    headers, sent = capture.requests[0]
    assert json.loads(sent) == body
    assert list(json.loads(sent)) == list(body)  # the recorded order, not the SDK's parameter order
    assert sent == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert headers["content-type"] == "application/json"
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["x-stainless-timeout"] == "7"  # the client's timeout, not the SDK's "not given"

    # The same headers, credentials included, as the SDK's own messages.create sends.
    sdk = anthropic.AsyncAnthropic(base_url=client_url(client), api_key="sk-wire", max_retries=0, timeout=7)
    await sdk.messages.create(model="claude-opus-4-6", max_tokens=300, messages=body["messages"],
                              extra_headers={"anthropic-version": "2023-06-01"})
    await sdk.close()
    sdk_headers = capture.requests[1][0]
    differs = {k for k in headers.keys() | sdk_headers.keys() if headers.get(k) != sdk_headers.get(k)}
    # (messages.create under a client-wide timeout sends x-stainless-timeout "NOT_GIVEN"; shadowd the number)
    assert differs <= {"content-length", "x-stainless-raw-response", "x-stainless-timeout"}, differs
    assert {"authorization", "x-api-key"} & headers.keys()


async def test_without_an_api_version_the_sdk_default_is_sent(wire: tuple[Capture, AnthropicModelClient]) -> None:
    capture, client = wire
    body = {"model": "claude-opus-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    side = await client.replay_request(ReplayRequest(body=body, adaptations=(), stream=False), None)
    assert side.ok, side.error
    assert capture.requests[0][0]["anthropic-version"]  # the SDK's own default


@pytest.mark.parametrize(
    ("bad", "words"),
    [(math.nan, "Out of range float"), ("lone \ud800 surrogate", "surrogate")],
)
async def test_a_body_the_sdk_cannot_encode_fails_as_invalid_without_a_call(
    wire: tuple[Capture, AnthropicModelClient], bad: Any, words: str
) -> None:
    capture, client = wire
    body = {"model": "claude-opus-4-6", "max_tokens": 5, "messages": [{"role": "user", "content": bad}]}
    side = await client.replay_request(ReplayRequest(body=body, adaptations=(), stream=False), "2023-06-01")
    assert not side.ok
    assert side.failure == "response" and side.attempts == 1
    assert words in (side.error or "")
    assert capture.requests == []


def test_request_content_matches_the_sdk_encoder() -> None:
    from anthropic._utils._json import openapi_dumps  # the SDK's own encoder, to hold ours to it

    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "naïve 𝄞 \\ \"q\" \n"}],
            "n": [0.1, 1e16, -0.0, 10**20]}
    assert request_content(body) == openapi_dumps(body)
    with pytest.raises(ValueError):
        openapi_dumps({"x": math.inf})
    with pytest.raises(ValueError):
        request_content({"x": math.inf})


# JSON-parsed request bodies as production brings them: any text (lone surrogates included), big
# integers, floats including NaN and infinities, nesting.
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=10), _values, max_size=6))
def test_request_content_is_the_sdk_encoding_or_the_same_refusal(body: dict[str, Any]) -> None:
    from anthropic._utils._json import openapi_dumps

    try:
        expected: bytes | type[Exception] = openapi_dumps(body)
    except ValueError as exc:  # NaN, infinities (ValueError) and lone surrogates (UnicodeEncodeError)
        expected = type(exc)
    try:
        got: bytes | type[Exception] = request_content(body)
    except ValueError as exc:
        got = type(exc)
    assert got == expected
