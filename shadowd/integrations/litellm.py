"""A LiteLLM callback (router, SDK and proxy) that mirrors calls to Anthropic models (SPEC §10).

    from shadowd.integrations.litellm import ShadowdMirrorCallback
    litellm.callbacks = [ShadowdMirrorCallback(Mirror(bootstrap_servers="kafka:9092"))]

The request is the Messages API body LiteLLM sent (its `complete_input_dict`); the response is the
body Anthropic returned for a non-streamed call, and for a streamed one the Messages API form of the
response LiteLLM assembled from the stream. Route and attributes come from the call's
`metadata={"shadowd_route": ..., "shadowd_attributes": {...}}`. Like `shadowd.mirror`, it never
raises into LiteLLM and never waits: it only hands a capture to the mirror's bounded queue.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from shadowd.mirror import Mirror, sampled_in
from shadowd.mirror.publisher import Capture

# The `anthropic-version` LiteLLM sends unless the call sets `anthropic_version`.
LITELLM_ANTHROPIC_VERSION = "2023-06-01"
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                 "content_filter": "refusal"}


class ShadowdMirrorCallback(CustomLogger):
    """Publishes a `shadowd.mirror/v1` envelope for each successful call LiteLLM makes to Anthropic."""

    def __init__(self, mirror: Mirror) -> None:
        super().__init__()
        self.mirror = mirror

    @classmethod
    def from_env(cls) -> ShadowdMirrorCallback:
        """For the proxy's `callbacks:`: SHADOWD_MIRROR_BOOTSTRAP_SERVERS, SHADOWD_MIRROR_TOPIC, SHADOWD_MIRROR_SAMPLE_RATE."""
        servers = os.environ.get("SHADOWD_MIRROR_BOOTSTRAP_SERVERS") or os.environ.get("SHADOWD_KAFKA_BOOTSTRAP_SERVERS")
        if not servers:
            raise ValueError("set SHADOWD_MIRROR_BOOTSTRAP_SERVERS to the Kafka the mirror publishes to")
        mirror = Mirror(
            bootstrap_servers=servers,
            topic=os.environ.get("SHADOWD_MIRROR_TOPIC", "llm.mirror"),
            sample_rate=float(os.environ.get("SHADOWD_MIRROR_SAMPLE_RATE", "1.0")),
        )
        import atexit

        atexit.register(mirror.close, 5.0)
        return cls(mirror)

    # LiteLLM calls these after a successful call; both only hand over a capture.
    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._capture(kwargs, response_obj, start_time, end_time)

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._capture(kwargs, response_obj, start_time, end_time)

    def _capture(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        try:
            capture = capture_of(kwargs, response_obj, start_time, end_time, self.mirror)
            if capture is None:
                return
            publisher = self.mirror.publisher
            publisher.count("call")
            if not sampled_in(capture.request_id, self.mirror.sample_rate):
                publisher.count("sampled_out")
                return
            publisher.offer(capture)
        except Exception:
            self.mirror.count_internal_error()


def capture_of(kwargs: Mapping[str, Any], response_obj: Any, start_time: Any, end_time: Any,
               mirror: Mirror) -> Capture | None:
    """The capture for one LiteLLM call, or None when it did not go to Anthropic's Messages API."""
    if kwargs.get("custom_llm_provider") != "anthropic":
        return None
    request = _request_body(kwargs)
    if request is None:
        return None
    response = _recorded_response(kwargs, response_obj, request)
    params = kwargs.get("litellm_params") or {}
    metadata = params.get("metadata") or {}
    attributes = {**mirror.attributes}
    extra = metadata.get("shadowd_attributes")
    if isinstance(extra, Mapping):
        attributes.update({str(k): str(v) for k, v in extra.items()})
    if isinstance(metadata.get("model_group"), str):
        attributes.setdefault("litellm_model_group", metadata["model_group"])
    route = metadata.get("shadowd_route")
    request_id = metadata.get("shadowd_request_id") or (response or {}).get("id") \
        or f"litellm-{kwargs.get('litellm_call_id') or uuid.uuid4().hex}"
    version = params.get("anthropic_version") or (kwargs.get("optional_params") or {}).get("anthropic_version")
    return Capture(
        request_id=str(request_id)[:256],
        request=request,
        route=route if isinstance(route, str) and route else mirror.route,
        attributes=attributes,
        api_version=str(version) if version else LITELLM_ANTHROPIC_VERSION,
        captured_at_s=_epoch(start_time),
        latency_ms=max(0.0, (_epoch(end_time) - _epoch(start_time)) * 1000.0),
        message=response,
    )


def _request_body(kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    body = (kwargs.get("additional_args") or {}).get("complete_input_dict")
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    if not isinstance(body, dict) or not {"model", "max_tokens", "messages"} <= body.keys():
        return None
    copy: dict[str, Any] = json.loads(json.dumps(body, default=str))  # a private copy, plain JSON values
    return copy


def _recorded_response(kwargs: Mapping[str, Any], response_obj: Any, request: dict[str, Any]) -> dict[str, Any] | None:
    original = kwargs.get("original_response")
    if isinstance(original, str | bytes):
        try:
            parsed = json.loads(original)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("type") == "message":
            return parsed
    streamed = kwargs.get("async_complete_streaming_response") or kwargs.get("complete_streaming_response")
    return messages_form(streamed if streamed is not None else response_obj, request)


def messages_form(model_response: Any, request: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Messages API form of LiteLLM's OpenAI-shaped response (for streamed calls)."""
    if model_response is None:
        return None
    data = model_response.model_dump() if hasattr(model_response, "model_dump") else dict(model_response)
    choices = data.get("choices") or []
    if not choices:
        return None
    message = choices[0].get("message") or {}
    content: list[dict[str, Any]] = []
    for block in message.get("thinking_blocks") or []:
        if isinstance(block, dict) and block.get("type") in ("thinking", "redacted_thinking"):
            content.append({k: v for k, v in block.items() if k in ("type", "thinking", "signature", "data")})
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {"__unparsed__": function.get("arguments")}
        content.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": arguments})
    usage = data.get("usage") or {}
    return {
        "id": data.get("id"),
        "type": "message",
        "role": "assistant",
        "model": request.get("model"),
        "content": content,
        "stop_reason": _STOP_REASONS.get(choices[0].get("finish_reason") or "", choices[0].get("finish_reason")),
        "stop_sequence": None,
        "usage": {"input_tokens": usage.get("prompt_tokens") or 0, "output_tokens": usage.get("completion_tokens") or 0},
    }


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return time.time()





# --- the canary share as LiteLLM deployment weights (SPEC §10) ---------------------------------------


def fetch_weights(api_url: str, rollout: str, token: str | None = None, timeout_s: float = 5.0) -> dict[str, Any]:
    """`GET /v1/rollouts/{rollout}/weights` from shadowd's API."""
    import urllib.parse
    import urllib.request

    url = f"{api_url.rstrip('/')}/v1/rollouts/{urllib.parse.quote(rollout, safe='')}/weights"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        body: dict[str, Any] = json.loads(response.read(1024 * 1024))
    return body


def apply_canary_weights(router: Any, weights: Mapping[str, Any], model_name: str) -> int:
    """Set `litellm_params.weight` of the `model_name` deployments serving the baseline and the candidate.

    A deployment serves a model when its `litellm_params.model` is that model, with or without a
    provider prefix (`anthropic/claude-opus-4-7`). Returns the number of deployments changed; raises
    ValueError when the router has no deployment for one of the two models (nothing is changed then).
    """
    targets = {str(weights[side]["model"]): float(weights[side]["weight"]) for side in ("baseline", "candidate")}
    model_list = [dict(d, litellm_params=dict(d.get("litellm_params") or {})) for d in router.get_model_list() or []]
    found: set[str] = set()
    changed = 0
    for deployment in model_list:
        if deployment.get("model_name") != model_name:
            continue
        served = str(deployment["litellm_params"].get("model", "")).rpartition("/")[2]
        if served in targets:
            found.add(served)
            if deployment["litellm_params"].get("weight") != targets[served]:
                deployment["litellm_params"]["weight"] = targets[served]
                changed += 1
    missing = set(targets) - found
    if missing:
        raise ValueError(f"the router has no {model_name!r} deployment for {', '.join(sorted(missing))}")
    if changed:
        router.set_model_list(model_list)
    return changed

__all__ = ["LITELLM_ANTHROPIC_VERSION", "ShadowdMirrorCallback", "apply_canary_weights", "capture_of", "fetch_weights",
           "messages_form"]
