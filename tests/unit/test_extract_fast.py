"""extract_json reads a text through orjson only where json.loads would read the same value: golden
texts, near misses that must take the json path, and a property test against json alone."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowd.core import jsonextract
from shadowd.core.jsonextract import extract_json
from tests.helpers import replaced


def _both_ways(text: str) -> tuple[str, str]:
    """repr of extract_json's answer with and without orjson (repr tells 1 from 1.0 and True)."""
    fast = extract_json(text)
    with replaced(jsonextract, "_loads_fast", lambda text: None):  # json.loads alone
        slow = extract_json(text)
    return repr(fast), repr(slow)


CASES = [
    # golden: the orjson path answers
    ('{"a": 1, "b": [1.0, true, null, "x"], "c": {"d": -0.0}}', True),
    ('  [{"k": "\\u00e9\\ud83d\\ude00"}, 1e5, 18446744073709551]\n', True),
    ('{"a": 1, "a": 2}', True),  # a duplicate key: the last value, as json.loads keeps it
    # near misses: json reads these, orjson would not (or would read them otherwise)
    ('{"big": 12345678901234567890123}', False),  # past 64 bits orjson reads a float
    ('{"n": NaN, "i": Infinity}', False),
    ('{"x": 1e999}', False),
    ('{"s": "\\ud800"}', False),  # a lone surrogate escape
    ('{"s": "\ud800"}', False),  # a lone surrogate character in the text itself
    ("[" * 600 + "]" * 600, False),  # deep nesting: json's limit is not orjson's
    ('\ufeff{"a": 1}', False),
    ("null", False),
]


@pytest.mark.parametrize(("text", "fast"), CASES, ids=range(len(CASES)))
def test_orjson_reads_only_what_json_reads_the_same(text: str, fast: bool) -> None:
    """Where orjson answers the value is json's, and every near miss takes the json path."""
    assert (jsonextract._loads_fast(text) is not None) is fast
    with_orjson, json_alone = _both_ways(text)
    assert with_orjson == json_alone


_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
_JSON = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(value=_JSON, indent=st.sampled_from([None, 2]))
def test_extract_json_with_orjson_equals_json_alone(value: Any, indent: int | None) -> None:
    """On random documents (surrogates, NaN, big integers included) both paths give the same value."""
    with_orjson, json_alone = _both_ways(json.dumps(value, indent=indent))
    assert with_orjson == json_alone
