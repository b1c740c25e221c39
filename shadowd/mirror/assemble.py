"""From what a production call saw to a `shadowd.mirror/v1` envelope: request snapshots, stream assembly."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

SCHEMA = "shadowd.mirror/v1"
# SDK call options that are not part of the request body.
_CALL_OPTIONS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})


class Unserializable(ValueError):
    """A request or response value that has no JSON form; the envelope is dropped and counted."""


def sampled_in(request_id: str, sample_rate: float) -> bool:
    """Deterministic per request id: every process mirroring the same id decides the same way."""
    if sample_rate >= 1.0:
        return True
    if sample_rate <= 0.0:
        return False
    digest = hashlib.sha256(f"shadowd.mirror\0{request_id}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < sample_rate


def request_body(kwargs: Mapping[str, Any], streamed: bool) -> dict[str, Any]:
    """A deep copy of the Messages API body the SDK sends for these `create` keyword arguments.

    Taken on the call's path (the caller may mutate its message list right after the call), so
    it only copies containers; JSON encoding happens in the background.
    """
    body: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in _CALL_OPTIONS or _is_omitted(value):
            continue
        body[key] = to_jsonable(value)
    extra = kwargs.get("extra_body")
    if isinstance(extra, Mapping):
        body.update({str(k): to_jsonable(v) for k, v in extra.items()})
    if streamed:
        body["stream"] = True
    return body


def to_jsonable(value: Any) -> Any:
    """Plain dicts, lists and scalars; SDK models by their API form; omitted values left out."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items() if not _is_omitted(v)}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):  # an SDK model, e.g. a content block passed back from an earlier response
        return to_dict()
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return model_dump(mode="json", exclude_unset=True)
    raise Unserializable(f"a {type(value).__name__} has no JSON form")


def _is_omitted(value: Any) -> bool:
    # The SDK's NotGiven / Omit sentinels: falsy singletons whose type names say so.
    return type(value).__name__ in ("NotGiven", "Omit")


def message_body(message: Any) -> dict[str, Any]:
    """The response body of a non-streamed call, as the API sent it."""
    body = to_jsonable(message)
    if not isinstance(body, dict):
        raise Unserializable(f"the response is a {type(message).__name__}, not a message")
    return body


def assemble_stream(events: Iterable[Any]) -> dict[str, Any] | None:
    """The message a stream of Messages API events adds up to; None unless it reached `message_stop`."""
    message: dict[str, Any] | None = None
    json_parts: dict[int, list[str]] = {}
    for raw in events:
        event = to_jsonable(raw)
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "message_start":
            message = dict(event["message"])
            message["content"] = [dict(b) for b in message.get("content") or []]
            message["usage"] = dict(message.get("usage") or {})
        elif message is None:
            continue
        elif kind == "content_block_start":
            index = int(event["index"])
            block = dict(event["content_block"])
            content = message["content"]
            while len(content) <= index:
                content.append({})
            content[index] = block
            if block.get("type") in ("tool_use", "server_tool_use"):
                json_parts[index] = []
        elif kind == "content_block_delta":
            _apply_delta(message["content"][int(event["index"])], event["delta"], json_parts.get(int(event["index"])))
        elif kind == "content_block_stop":
            index = int(event["index"])
            if index in json_parts:
                text = "".join(json_parts.pop(index))
                message["content"][index]["input"] = json.loads(text) if text.strip() else {}
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            for key in ("stop_reason", "stop_sequence"):
                if key in delta:
                    message[key] = delta[key]
            usage = event.get("usage") or {}
            message["usage"].update({k: v for k, v in usage.items() if v is not None})
        elif kind == "message_stop":
            return message
    return None


def _apply_delta(block: dict[str, Any], delta: dict[str, Any], json_parts: list[str] | None) -> None:
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = block.get("text", "") + delta.get("text", "")
    elif kind == "input_json_delta" and json_parts is not None:
        json_parts.append(delta.get("partial_json", ""))
    elif kind == "thinking_delta":
        block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
    elif kind == "signature_delta":
        block["signature"] = delta.get("signature", "")
    elif kind == "citations_delta":
        block.setdefault("citations", []).append(delta.get("citation"))


def envelope(
    *,
    request_id: str,
    request: dict[str, Any],
    response: dict[str, Any] | None,
    route: str,
    captured_at_s: float,
    latency_ms: float,
    api_version: str | None,
    attributes: Mapping[str, str],
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema": SCHEMA,
        "request_id": request_id,
        "request": request,
        "route": route,
        "captured_at": datetime.fromtimestamp(captured_at_s, UTC).isoformat().replace("+00:00", "Z"),
        "latency_ms": round(max(latency_ms, 0.0), 3),
        "attributes": dict(attributes),
    }
    if api_version:
        body["api_version"] = api_version
    if response is not None:
        body["response"] = response
    return body


def encode(envelope_body: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON; lone surrogates escaped (valid JSON text), NaN and infinities refused."""
    try:
        return json.dumps(envelope_body, allow_nan=False, separators=(",", ":")).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise Unserializable(str(exc)[:200]) from None
