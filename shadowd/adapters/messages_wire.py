"""One Messages call on the wire as shadowd sends it: the recorded body's bytes through the SDK client's
`post` (its credentials, headers, timeout, status errors and HTTP stack), non-streamed or streamed.

The SDK's `messages.create` and `messages.stream` would first rebuild the body from typed parameters,
and the stream helper builds a typed event and a typed snapshot for every event; shadowd stores and
compares the answer's JSON, so it skips both (benchmarks/README.md has the CPU this saves).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import anthropic

try:  # anthropic 2.x ships its HTTP stack as httpx2; 1.x used httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

from shadowd.core import fastjson
from shadowd.core.message_stream import StreamedMessage

_JSON_CONTENT = {"content-type": "application/json"}
# The headers `messages.stream` adds, so the API sees a streamed replay as the SDK's helper sends it.
_STREAM_HELPER = {"x-stainless-helper-method": "stream", "x-stainless-stream-helper": "messages"}
# The SDK's own request encoding: compact, UTF-8, and NaN or a lone surrogate refused (ValueError).
_REQUEST_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def request_content(body: dict[str, Any]) -> bytes:
    """A request body's bytes as the SDK encodes them, keys in the recorded order."""
    return _REQUEST_ENCODER.encode(body).encode()


def _options(api_version: str | None, timeout_s: float, extra: dict[str, str] | None = None) -> Any:
    headers = {**_JSON_CONTENT, **(extra or {}), **({"anthropic-version": api_version} if api_version else {})}
    return {"headers": headers, "timeout": timeout_s}  # the SDK's RequestOptions


async def post_message(
    client: anthropic.AsyncAnthropic, body: dict[str, Any], api_version: str | None, timeout_s: float
) -> Any:
    """One non-streamed Messages call. Returns the raw HTTP response: its body is what shadowd stores and
    compares, so no typed Message is built."""
    return await client.post("/v1/messages", cast_to=httpx.Response, content=request_content(body),
                             options=_options(api_version, timeout_s))


async def stream_message(
    client: anthropic.AsyncAnthropic,
    body: dict[str, Any],
    api_version: str | None,
    timeout_s: float,
    monotonic: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any], float | None, Any]:
    """One streamed Messages call: (the message as `messages.stream`'s final message would be, the
    monotonic time of the first content delta or None, the response headers).

    Events are read with the SDK's own server-sent-event decoder and skipped or raised as its stream
    does: `ping` and unnamed events are skipped, an `error` event raises the status error the SDK would
    (status 200, the event's body), and a malformed event or tool input raises ValueError."""
    response = await client.post("/v1/messages", cast_to=httpx.Response, stream=True,
                                 content=request_content({**body, "stream": True}),
                                 options=_options(api_version, timeout_s, _STREAM_HELPER))
    message = StreamedMessage()
    first_delta: float | None = None
    try:
        async for sse in anthropic.AsyncStream.raw_events(response):
            name = sse.event
            if name == "ping" or name is None:
                continue
            if name == "error":
                raise _error_event(client, sse.data, response)
            if not sse.data:
                continue
            if message.add(fastjson.loads(sse.data.encode())) and first_delta is None:
                first_delta = monotonic()
    finally:
        await response.aclose()
    return message.result(), first_delta, response.headers


def _error_event(client: anthropic.AsyncAnthropic, data: str, response: Any) -> anthropic.APIStatusError:
    body: Any = data
    try:
        body = json.loads(data)
        text = f"{body}"
    except ValueError:
        text = data or f"Error code: {response.status_code}"
    return client._make_status_error(text, body=body, response=response)
