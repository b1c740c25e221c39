"""What reaches the store is storable: NUL, lone surrogates, NaN and unplaceable timestamps are handled."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shadowd.core.envelope import MAX_ROUTE_CHARS, EnvelopeError, parse_envelope
from shadowd.core.storable import (
    escape_text,
    finite_or_none,
    first_non_finite,
    has_unstorable_text,
    int32_or_none,
    storable_json,
    utc_in_range,
)


def envelope(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": "shadowd.mirror/v1",
        "request_id": "req-1",
        "request": {"model": "claude-opus-4-6", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
    }
    return {**base, **fields}


def raw(data: dict[str, Any]) -> bytes:
    """JSON bytes as a producer would send them; lone surrogates are written as `\\udXXX` escapes."""
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a\x00b", "a\\u0000b"),
        ("\x00", "\\u0000"),
        ("x\ud800y", "x\\ud800y"),
        ("\udfff", "\\udfff"),
        ("é\x00\ud83d", "é\\u0000\\ud83d"),
    ],
)
def test_escape_text_writes_nul_and_lone_surrogates_as_escapes(text: str, escaped: str) -> None:
    """Golden: each NUL and lone surrogate becomes its visible `\\uXXXX` escape, encodable as UTF-8."""
    assert has_unstorable_text(text)
    assert escape_text(text) == escaped
    escape_text(text).encode("utf-8")  # raises if anything unencodable is left


@pytest.mark.parametrize("text", ["", "plain", "é ü 中文 😀", "tab\tnewline\n\x01\x7f", "\\u0000 literal", "\U0010ffff"])
def test_escape_text_leaves_storable_text_alone(text: str) -> None:
    """Near miss: other control characters, astral characters and a literal backslash-u pass unchanged."""
    assert not has_unstorable_text(text)
    assert escape_text(text) is text


def test_storable_json_escapes_keys_values_and_nulls_non_finite_numbers() -> None:
    """Golden: strings and keys at any depth are escaped and NaN/Infinity become null, so JSONB accepts it."""
    value = {"a\x00": ["x\ud800", {"n": math.nan, "i": math.inf, "ok": 1.5}], "t": ("\x00",)}
    stored = storable_json(value)
    assert stored == {"a\\u0000": ["x\\ud800", {"n": None, "i": None, "ok": 1.5}], "t": ("\\u0000",)}
    json.dumps(stored, allow_nan=False).encode("utf-8")  # no NaN, nothing unencodable
    assert not any(has_unstorable_text(s) for s in _strings(json.loads(json.dumps(stored))))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def test_storable_json_returns_clean_values_unchanged() -> None:
    """Near miss: a document with nothing to fix comes back as the same object, with no copy made."""
    value = {"content": [{"type": "text", "text": "hello é"}], "usage": {"input_tokens": 3}, "x": [1.5, None, True]}
    assert storable_json(value) is value


def test_number_guards() -> None:
    """Non-finite floats and counts beyond a 32-bit column become None; finite ones are kept."""
    assert finite_or_none(math.nan) is None and finite_or_none(-math.inf) is None
    assert finite_or_none(1e308) == 1e308 and finite_or_none(None) is None
    assert int32_or_none(2**31 - 1) == 2**31 - 1 and int32_or_none(2**31) is None
    assert int32_or_none(-(2**31)) == -(2**31) and int32_or_none(-(2**31) - 1) is None


def test_first_non_finite_names_the_path() -> None:
    """The path of the first NaN/Infinity is named; a document without one gives None."""
    assert first_non_finite({"response": {"usage": {"output_tokens": math.nan}}}) == "response.usage.output_tokens"
    assert first_non_finite({"a": [1, 2, math.inf]}) == "a[2]"
    assert first_non_finite({"a": [1, 2.5, "NaN"]}) is None


def test_utc_in_range_edges() -> None:
    """Golden: a year-1 time east of UTC and a year-9999 time west of it cannot be placed in UTC; near misses can."""
    east = timezone(timedelta(hours=23, minutes=59))
    west = timezone(-timedelta(hours=23, minutes=59))
    assert not utc_in_range(datetime(1, 1, 1, 0, 0, 0, tzinfo=east))
    assert not utc_in_range(datetime(9999, 12, 31, 23, 59, 59, tzinfo=west))
    assert utc_in_range(datetime(1, 1, 1, 23, 59, 0, tzinfo=east))
    assert utc_in_range(datetime(9999, 12, 31, 0, 0, 0, tzinfo=west))
    assert utc_in_range(datetime(1, 1, 1, tzinfo=UTC))


# --- the envelope parser: refuse or escape, per field ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('"request_id": "a\\u0000b"', "invalid_field:request_id"),
        ('"request_id": "a\\ud800b"', "invalid_field:request_id"),
        ('"captured_at": "0001-01-01T00:00:00+23:59"', "invalid_field:captured_at"),
        ('"captured_at": "9999-12-31T23:59:59-23:59"', "invalid_field:captured_at"),
        ('"latency_ms": Infinity', "invalid_field:latency_ms"),
        ('"latency_ms": 1e999', "invalid_field:latency_ms"),
        ('"response": {"content": [], "usage": {"output_tokens": NaN}}', "invalid_field:response"),
        ('"response": {"content": [], "usage": {"input_tokens": -Infinity}}', "invalid_field:response"),
        ('"request": {"model": "m", "max_tokens": 5, "temperature": NaN, "messages": [{"role": "user", "content": "x"}]}',
         "invalid_field:request"),
        ('"extra": NaN', "invalid_json"),
    ],
)
def test_unstorable_fields_are_refused_with_a_reason(text: str, reason: str) -> None:
    """Golden: an identity key or number no store can keep, or a time outside UTC's years, is refused by name."""
    data = json.dumps(envelope())
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(data[:-1] + ", " + text + "}")
    assert caught.value.reason == reason
    assert caught.value.detail


@pytest.mark.parametrize(
    "text",
    [
        '"request_id": "a\\\\u0000b"',  # a literal backslash-u, not a NUL
        '"request_id": "\\ud83d\\ude00"',  # a valid surrogate pair is one emoji
        '"captured_at": "0001-01-01T23:59:00+23:59"',
        '"captured_at": "9999-12-31T00:00:00-23:59"',
        '"latency_ms": 1e308',
        '"response": {"content": [], "usage": {"output_tokens": 1e20}}',
        '"response": {"content": [], "text": "NaN"}',
    ],
)
def test_near_misses_are_accepted(text: str) -> None:
    """Near miss: values next to the refused ones still parse."""
    data = json.dumps(envelope())
    parse_envelope(data[:-1] + ", " + text + "}")


def test_route_and_attributes_are_escaped_and_the_verdict_kept() -> None:
    """Golden: NUL or a lone surrogate in the route or a tag is escaped at parse time, the record still usable."""
    parsed = parse_envelope(raw(envelope(route="support\x00sum\ud800", attributes={"te\x00nant": "ac\x00me"})))
    assert parsed.route == "support\\u0000sum\\ud800"
    assert parsed.attributes == {"te\\u0000nant": "ac\\u0000me"}


def test_route_length_is_checked_after_escaping() -> None:
    """A route over the column width is refused; one at the width parses; an escape that lengthens it counts."""
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(raw(envelope(route="r" * 300)))
    assert caught.value.reason == "invalid_field:route" and "300" in caught.value.detail
    assert parse_envelope(raw(envelope(route="r" * MAX_ROUTE_CHARS))).route == "r" * MAX_ROUTE_CHARS
    with pytest.raises(EnvelopeError) as caught:
        parse_envelope(raw(envelope(route="\x00" * 50)))  # 50 characters, 300 once escaped
    assert caught.value.reason == "invalid_field:route"
