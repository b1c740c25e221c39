"""The mirror envelope parser: every dead-letter reason, and no exception but its own."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowd.core.envelope import MAX_ENVELOPE_BYTES, EnvelopeError, parse_envelope

REASONS_PREFIXES = ("invalid_json", "not_an_object", "unsupported_schema", "missing_field:", "invalid_field:", "too_large")


def envelope(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": "shadowd.mirror/v1",
        "request_id": "req-1",
        "request": {"model": "claude-opus-4-6", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def test_minimal_envelope_parses_with_defaults() -> None:
    """A minimal valid envelope parses and gets the documented defaults."""
    parsed = parse_envelope(json.dumps(envelope()).encode())
    assert parsed.request_id == "req-1"
    assert parsed.route == "default"
    assert parsed.model == "claude-opus-4-6"
    assert parsed.captured_at is None and parsed.response is None and parsed.attributes == {}


def test_optional_fields_are_kept() -> None:
    """Optional fields are parsed; unknown request fields are kept verbatim."""
    data = envelope(
        route="support-summary", captured_at="2026-11-20T09:00:00Z", api_version="2023-06-01",
        response={"content": []}, latency_ms=812.5, attributes={"tenant": "acme"},
    )
    data["request"]["metadata"] = {"user_id": "u1"}
    parsed = parse_envelope(json.dumps(data))
    assert parsed.route == "support-summary"
    assert parsed.captured_at is not None and parsed.captured_at.utcoffset() is not None
    assert parsed.api_version == "2023-06-01"
    assert parsed.latency_ms == 812.5
    assert parsed.request["metadata"] == {"user_id": "u1"}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe\x00", "invalid_json"),
        (b"[1,2]", "not_an_object"),
        (b'"a string"', "not_an_object"),
        (json.dumps(envelope(schema="shadowd.mirror/v2")).encode(), "unsupported_schema"),
        (json.dumps(envelope(schema=_DROP)).encode(), "missing_field:schema"),
        (json.dumps(envelope(request_id=_DROP)).encode(), "missing_field:request_id"),
        (json.dumps(envelope(request_id="")).encode(), "invalid_field:request_id"),
        (json.dumps(envelope(request_id="x" * 257)).encode(), "invalid_field:request_id"),
        (json.dumps(envelope(request_id=7)).encode(), "invalid_field:request_id"),
        (json.dumps(envelope(request=_DROP)).encode(), "missing_field:request"),
        (json.dumps(envelope(request=[])).encode(), "invalid_field:request"),
        (json.dumps(envelope(request={"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]})).encode(),
         "missing_field:request.model"),
        (json.dumps(envelope(request={"model": "m", "messages": [{"role": "user", "content": "x"}]})).encode(),
         "missing_field:request.max_tokens"),
        (json.dumps(envelope(request={"model": "m", "max_tokens": 5})).encode(), "missing_field:request.messages"),
        (json.dumps(envelope(request={"model": "m", "max_tokens": "5", "messages": [{"role": "user", "content": "x"}]}))
         .encode(), "invalid_field:request.max_tokens"),
        (json.dumps(envelope(request={"model": "m", "max_tokens": True, "messages": [{"role": "u", "content": "x"}]}))
         .encode(), "invalid_field:request.max_tokens"),
        (json.dumps(envelope(request={"model": "m", "max_tokens": 5, "messages": []})).encode(),
         "invalid_field:request.messages"),
        (json.dumps(envelope(route="")).encode(), "invalid_field:route"),
        (json.dumps(envelope(captured_at="yesterday")).encode(), "invalid_field:captured_at"),
        (json.dumps(envelope(captured_at="2026-11-20T09:00:00")).encode(), "invalid_field:captured_at"),
        (json.dumps(envelope(response="ok")).encode(), "invalid_field:response"),
        (json.dumps(envelope(latency_ms=-1)).encode(), "invalid_field:latency_ms"),
        (json.dumps(envelope(attributes={"n": 1})).encode(), "invalid_field:attributes"),
        (b" " * (MAX_ENVELOPE_BYTES + 1), "too_large"),
    ],
)
def test_each_bad_envelope_names_its_reason(raw: bytes, reason: str) -> None:
    """Each kind of unusable record raises EnvelopeError with the SPEC's reason code."""
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(raw)
    assert caught.value.reason == reason
    assert caught.value.detail


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_envelope_errors(raw: bytes) -> None:
    """Arbitrary bytes either parse or raise EnvelopeError with a known reason, never anything else."""
    try:
        parse_envelope(raw)
    except EnvelopeError as exc:
        assert exc.reason.startswith(REASONS_PREFIXES)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "schema": st.sampled_from(["shadowd.mirror/v1", "other"]) | json_values,
            "request_id": st.text(max_size=300) | json_values,
            "request": st.fixed_dictionaries(
                {}, optional={"model": json_values, "max_tokens": json_values, "messages": json_values}
            ) | json_values,
            "route": json_values,
            "captured_at": st.text(max_size=30) | json_values,
            "api_version": json_values,
            "response": json_values,
            "latency_ms": json_values,
            "attributes": json_values,
        },
    )
)
def test_arbitrary_json_raises_only_envelope_errors(data: dict[str, Any]) -> None:
    """Arbitrary JSON objects shaped like envelopes either parse or name a known reason."""
    try:
        parsed = parse_envelope(json.dumps(data))
    except EnvelopeError as exc:
        assert exc.reason.startswith(REASONS_PREFIXES)
    else:
        assert isinstance(parsed.request["max_tokens"], int)
