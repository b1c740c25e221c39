"""Stable hashes of request content, from which every deterministic choice is drawn."""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Fields that shape the output. Model, sampling, thinking, metadata, stream and max_tokens
# stay out, so a clean candidate and the baseline produce byte-identical output even when
# the replayer clamps max_tokens or drops a sampling parameter for the candidate.
DIGEST_FIELDS = ("system", "messages", "tools", "tool_choice")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_digest(body: dict[str, Any]) -> tuple[bytes, str]:
    """The sha256 of the output-shaping fields of a request body, and their canonical JSON."""
    digest, text, _ = digest_request(body)
    return digest, text


def digest_request(body: dict[str, Any]) -> tuple[bytes, str, bool]:
    """`request_digest` and whether those fields held a `cache_control` marker.

    The markers are left out of the digest: caching changes what a call costs, never its answer.
    """
    fields = {name: body.get(name) for name in DIGEST_FIELDS}
    text = canonical_json(fields)
    marked = '"cache_control":' in text
    if marked:
        text = canonical_json(strip_cache_control(fields))
    return hashlib.sha256(text.encode()).digest(), text, marked


def strip_cache_control(value: Any) -> Any:
    """The value without any `cache_control` key: what an answer depends on."""
    if isinstance(value, dict):
        return {k: strip_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [strip_cache_control(v) for v in value]
    return value


def unit(digest: bytes, *labels: str) -> float:
    """A number in [0, 1) drawn from the digest and labels; independent per label."""
    mixed = hashlib.sha256(digest + "\x00".join(labels).encode()).digest()
    return int.from_bytes(mixed[:8], "big") / 2**64


def seed(digest: bytes, *labels: str) -> int:
    """A 64-bit integer seed drawn from the digest and labels."""
    mixed = hashlib.sha256(digest + "\x00".join(labels).encode()).digest()
    return int.from_bytes(mixed[:8], "big")
