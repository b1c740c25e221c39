"""Adapting a production request to the model that replays it (SPEC §7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shadowd.core.profiles import SAMPLING_PARAMS, ModelProfile

# The SDK refuses non-streaming calls it expects to run past ten minutes; it estimates that from
# max_tokens (an hour per 128k tokens), so anything above this must be streamed.
STREAMING_THRESHOLD_TOKENS = 21_333


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """The body to send and how: `adaptations` lists every change made to the production request."""

    body: dict[str, Any]
    adaptations: tuple[str, ...]
    stream: bool


def adapt_request(request: dict[str, Any], model: str, profile: ModelProfile | None) -> ReplayRequest:
    """Rewrite `request` for `model`; fields the profile does not forbid are kept verbatim."""
    body = dict(request)
    body["model"] = model
    wanted_stream = bool(body.pop("stream", False))
    adaptations: list[str] = []

    if profile is not None:
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, int) and max_tokens > profile.max_output_tokens:
            body["max_tokens"] = profile.max_output_tokens
            adaptations.append("max_tokens_clamped")

        thinking = body.get("thinking")
        if (
            isinstance(thinking, dict)
            and thinking.get("type") == "enabled"
            and "enabled" not in profile.thinking_modes
            and "adaptive" in profile.thinking_modes
        ):
            adapted = {k: v for k, v in thinking.items() if k not in ("type", "budget_tokens")}
            adapted["type"] = "adaptive"
            body["thinking"] = adapted
            adaptations.append("thinking_enabled_to_adaptive")

        if not profile.accepts_sampling_params:
            for name in SAMPLING_PARAMS:
                if name in body:
                    del body[name]
                    adaptations.append(f"sampling_param_dropped:{name}")

    max_tokens = body.get("max_tokens")
    stream = wanted_stream or (isinstance(max_tokens, int) and max_tokens > STREAMING_THRESHOLD_TOKENS)
    return ReplayRequest(body=body, adaptations=tuple(adaptations), stream=stream)
