"""The fast JSON path answers exactly what the standard library (and storable_json) would."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowd.core.fastjson import dumps_or_json, loads, loads_exact, storable_dumps
from shadowd.core.storable import storable_json


def _same(a: Any, b: Any) -> bool:
    """Equality that tells 1 from 1.0 and True from 1, as a stored document would."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


HOSTILE_TEXTS = [
    b'{"a": 1, "b": [true, null, 2.5, "x"]}',
    b'{"usage": {"output_tokens": 123456789012345678901234567890}}',  # past 64 bits: orjson reads a float
    b'{"n": 9223372036854775807}',
    b'{"n": 18446744073709551615}',
    b'{"text": "\\ud800 lone"}',  # a lone surrogate escape
    b'{"text": "nul \\u0000 inside"}',
    b'{"x": NaN}',
    b'{"x": 1e999}',
    b'\xef\xbb\xbf{"bom": 1}',
    b'{"a": 1, "a": 2}',
    b'{"pi": 3.14159265358979323846264338327950288}',
    b'{"small": 1.5e-400, "neg": -0.0}',
    b"null",
    b'"just text"',
    b"[" * 200 + b"]" * 200,
]


@pytest.mark.parametrize("text", HOSTILE_TEXTS, ids=range(len(HOSTILE_TEXTS)))
def test_loads_reads_what_json_reads(text: bytes) -> None:
    assert _same(loads(text), json.loads(text))


def test_loads_leaves_long_integers_and_refused_inputs_to_json() -> None:
    # Golden: an ordinary document takes the fast path.
    assert loads_exact(b'{"a": [1, 2.5]}') == {"a": [1, 2.5]}
    # Near misses: what orjson would read differently or refuse goes to `json`.
    assert loads_exact(b'{"n": 123456789012345678}') == {"n": 123456789012345678}  # 18 digits
    assert loads_exact(b'{"n": 1234567890123456789}') is None  # 19 digits
    assert loads_exact(b'{"n": 1234567890123456789012}') is None
    assert loads_exact(b'{"t": "\\udc00"}') is None
    assert loads_exact(b'{"x": NaN}') is None
    assert isinstance(loads(b'{"n": 1234567890123456789012}')["n"], int)


def test_loads_raises_what_json_raises() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000  # past orjson's depth limit and Python's recursion limit
    with pytest.raises(RecursionError):
        json.loads(deep)
    with pytest.raises(RecursionError):
        loads(deep)
    with pytest.raises(json.JSONDecodeError):
        loads(b'{"unterminated": ')
    with pytest.raises(UnicodeDecodeError):
        loads(b'{"a": "\xff\xfe"}')


HOSTILE_VALUES: list[Any] = [
    {"text": "plain", "n": 3, "f": 2.5, "ok": True, "none": None},
    {"text": "a\x00b", "key\x00": 1},
    {"text": "lone \ud800 surrogate", "\udcff": "k"},
    {"nan": float("nan"), "inf": float("inf"), "list": [float("-inf"), 1.0]},
    {"big": 2**70, "neg": -(2**65)},
    {1: "int key", "t": (1, 2)},
    {"literal": "a backslash and u0000: \\u0000 is not a NUL"},
    {"unicode": "héllo ✓ 𝄞"},
]


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=range(len(HOSTILE_VALUES)))
def test_storable_dumps_writes_the_storable_document(value: Any) -> None:
    written = storable_dumps(value)
    assert "\\u0000" not in written.replace("\\\\", "")  # PostgreSQL's jsonb refuses the NUL escape
    written.encode("utf-8")  # no lone surrogate survives
    assert _same(json.loads(written), json.loads(json.dumps(storable_json(value))))


def test_storable_dumps_keeps_a_literal_backslash_u0000() -> None:
    # Near miss of the NUL rule: the six characters `\u0000` are text, kept as they are.
    value = {"t": "\\u0000"}
    assert json.loads(storable_dumps(value)) == value


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_storable_dumps_matches_the_exact_path(value: Any) -> None:
    assert _same(json.loads(storable_dumps(value)), json.loads(json.dumps(storable_json(value))))


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_loads_matches_json_on_what_json_writes(value: Any) -> None:
    text = json.dumps(value).encode("utf-8", "surrogatepass")
    assert _same(loads(text), json.loads(text))


def test_log_serializer_falls_back_for_what_orjson_refuses() -> None:
    assert json.loads(dumps_or_json({"event": "verdict", "n": 1})) == {"event": "verdict", "n": 1}
    # A lone surrogate in a logged field: json.dumps writes its escape.
    assert dumps_or_json({"reason": "x\ud800"}) == json.dumps({"reason": "x\ud800"})
    # Unknown types go through the renderer's `default`, on both paths.
    assert json.loads(dumps_or_json({"obj": object()}, default=lambda o: "repr")) == {"obj": "repr"}
