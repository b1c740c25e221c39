"""The mirrored-request envelope `shadowd.mirror/v1` (SPEC §1): parsing and validation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shadowd.core.fastjson import loads_exact
from shadowd.core.storable import escape_text, first_non_finite, has_unstorable_text, utc_in_range
from shadowd.core.timestamps import parse_rfc3339

SCHEMA = "shadowd.mirror/v1"
MAX_ENVELOPE_BYTES = 4 * 1024 * 1024
MAX_REQUEST_ID_CHARS = 256
MAX_ROUTE_CHARS = 256  # the width of the verdicts.route column and of the rollup keys
_FIELDS = frozenset(
    {"schema", "request_id", "request", "route", "captured_at", "api_version", "response", "latency_ms", "attributes"}
)


class EnvelopeError(ValueError):
    """A record that cannot be used. `reason` is one of SPEC §1's dead-letter reasons."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Envelope:
    request_id: str
    request: dict[str, Any]
    route: str = "default"
    captured_at: datetime | None = None
    api_version: str | None = None
    response: dict[str, Any] | None = None
    latency_ms: float | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return str(self.request["model"])


def parse_envelope(raw: bytes | str) -> Envelope:
    """Parse one record value; raises only EnvelopeError, whose reason names what is wrong."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", errors="surrogatepass")
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError("too_large", f"{len(raw)} bytes exceeds the {MAX_ENVELOPE_BYTES}-byte limit")
    data = loads_exact(raw)
    if data is None:
        data = _parse_exactly(raw)
    if not isinstance(data, dict):
        raise EnvelopeError("not_an_object", f"top-level JSON is {_json_type(data)}, not an object")
    return envelope_from_object(data)


def _parse_exactly(raw: bytes) -> Any:
    """The standard library's reading, which names NaN, Infinity and 1e999 so they can be refused."""
    non_finite: list[str] = []

    def constant(name: str) -> float:
        non_finite.append(name)
        return float(name)

    def number(literal: str) -> float:
        value = float(literal)
        if value - value != 0:  # 1e999 parses to Infinity
            non_finite.append(literal)
        return value

    try:
        data = json.loads(raw, parse_constant=constant, parse_float=number)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EnvelopeError("invalid_json", str(exc)[:300]) from None
    if non_finite and isinstance(data, dict):
        _refuse_non_finite(data)
    return data


def _refuse_non_finite(data: dict[str, Any]) -> None:
    # JSON (RFC 8259) has no NaN or Infinity; Python reads them anyway. A recorded usage count of NaN
    # cannot be priced, summed or stored in a JSON column, and a request holding one was never valid
    # JSON to the Messages API either, so the record is refused rather than silently zeroed.
    path = first_non_finite(data) or "$"
    top = path.split(".", 1)[0].split("[", 1)[0]
    reason = f"invalid_field:{top}" if top in _FIELDS else "invalid_json"
    raise EnvelopeError(reason, f"`{path[:200]}` is NaN or Infinity, which JSON does not allow")


def envelope_from_object(data: dict[str, Any]) -> Envelope:
    if "schema" not in data:
        raise EnvelopeError("missing_field:schema", "the envelope has no `schema` field")
    if data["schema"] != SCHEMA:
        raise EnvelopeError("unsupported_schema", f"schema {str(data['schema'])[:100]!r} is not {SCHEMA!r}")

    request_id = _required(data, "request_id")
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= MAX_REQUEST_ID_CHARS:
        raise EnvelopeError("invalid_field:request_id", "must be a string of 1 to 256 characters")
    if has_unstorable_text(request_id):
        # Refused, not escaped: the request_id is the idempotency key and the key verdicts are looked up
        # by. An escape is not one-to-one (`a\u0000` and `a<NUL>` would merge and one verdict would be
        # skipped as a duplicate), and a stored id nobody sent could never be found again.
        raise EnvelopeError("invalid_field:request_id", "holds a NUL or a lone surrogate, which no store can keep")

    request = _required(data, "request")
    if not isinstance(request, dict):
        raise EnvelopeError("invalid_field:request", f"must be an object, got {_json_type(request)}")
    _check_request(request)

    route = data.get("route", "default")
    if not isinstance(route, str) or not route:
        raise EnvelopeError("invalid_field:route", "must be a non-empty string")
    # Escaped, not refused: the route is a label that groups verdicts; a NUL in it says nothing about
    # the request, whose verdict stays worth having. The length is checked after escaping, on the text
    # that will be stored.
    route = escape_text(route)
    if len(route) > MAX_ROUTE_CHARS:
        raise EnvelopeError(
            "invalid_field:route", f"has {len(route)} characters; a route is at most {MAX_ROUTE_CHARS}"
        )

    api_version = data.get("api_version")
    if api_version is not None and (not isinstance(api_version, str) or not api_version):
        raise EnvelopeError("invalid_field:api_version", "must be a non-empty string")

    response = data.get("response")
    if response is not None and not isinstance(response, dict):
        raise EnvelopeError("invalid_field:response", f"must be an object, got {_json_type(response)}")

    latency_ms = data.get("latency_ms")
    if latency_ms is not None and (
        isinstance(latency_ms, bool) or not isinstance(latency_ms, int | float) or not latency_ms >= 0
    ):
        raise EnvelopeError("invalid_field:latency_ms", "must be a non-negative number")

    attributes = data.get("attributes", {})
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise EnvelopeError("invalid_field:attributes", "must be an object whose values are strings")

    return Envelope(
        request_id=request_id,
        request=request,
        route=route,
        captured_at=_parse_timestamp(data.get("captured_at")),
        api_version=api_version,
        response=response,
        latency_ms=float(latency_ms) if latency_ms is not None else None,
        # Free-form tags: escaped like the route, since they describe the request and do not identify it.
        attributes={escape_text(k): escape_text(v) for k, v in attributes.items()},
    )


def _check_request(request: dict[str, Any]) -> None:
    for name in ("model", "max_tokens", "messages"):
        if name not in request:
            raise EnvelopeError(f"missing_field:request.{name}", f"the request has no `{name}`")
    model = request["model"]
    if not isinstance(model, str) or not model:
        raise EnvelopeError("invalid_field:request.model", "must be a non-empty string")
    max_tokens = request["max_tokens"]
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise EnvelopeError("invalid_field:request.max_tokens", "must be a positive integer")
    messages = request["messages"]
    if not isinstance(messages, list) or not messages:
        raise EnvelopeError("invalid_field:request.messages", "must be a non-empty array")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise EnvelopeError(
                "invalid_field:request.messages", f"message {index} must be an object with role and content"
            )


def _required(data: dict[str, Any], name: str) -> Any:
    if name not in data:
        raise EnvelopeError(f"missing_field:{name}", f"the envelope has no `{name}` field")
    return data[name]


def _parse_timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EnvelopeError("invalid_field:captured_at", "must be an RFC 3339 string")
    try:
        parsed = parse_rfc3339(value)
    except ValueError as exc:
        raise EnvelopeError("invalid_field:captured_at", str(exc)) from None
    if not utc_in_range(parsed):
        # Refused, not clamped or replaced by the record timestamp: a moment that cannot be placed in
        # UTC comes from a broken producer clock, and a made-up time would misplace the verdict.
        raise EnvelopeError("invalid_field:captured_at", f"{value[:64]!r} falls outside years 1-9999 in UTC")
    return parsed


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
