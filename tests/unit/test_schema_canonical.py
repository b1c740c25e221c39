"""compile_schema finds a schema seen before by its orjson bytes, and the result is always the one the
canonical json.dumps form gives: golden schemas, and near misses that must take the slow way."""

from __future__ import annotations

import enum
import json
import uuid
from typing import Any

import pytest

from shadowd.core import schema as schema_module
from shadowd.core.schema import compile_schema


def _slow(schema: Any) -> Any:
    """What compile_schema gives without the orjson shortcut: the canonical json.dumps form, compiled."""
    try:
        canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return f"schema is not JSON: {exc}"[:300]
    return schema_module._compile(canonical)


class _Colour(enum.Enum):
    RED = "red"


SEEN = {"type": "object", "properties": {"n": {"type": "number", "minimum": 1}, "s": {"enum": ["red", None]}}}
# (a schema compiled after SEEN, whether the shortcut may find SEEN's canonical form for it)
NEAR = [
    (json.loads(json.dumps(SEEN)), True),  # golden: an equal copy, as each request's tools arrive
    ({"properties": {"s": {"enum": ["red", None]}, "n": {"minimum": 1, "type": "number"}}, "type": "object"}, True),
    # equal in Python, other JSON: 1 against 1.0 and true
    ({**SEEN, "properties": {**SEEN["properties"], "n": {"type": "number", "minimum": 1.0}}}, False),
    ({**SEEN, "properties": {**SEEN["properties"], "n": {"type": "number", "minimum": True}}}, False),
    # orjson writes NaN as null: not JSON for json.dumps
    ({**SEEN, "properties": {**SEEN["properties"], "s": {"enum": ["red", float("nan")]}}}, False),
    # values orjson writes and json.dumps rejects
    ({**SEEN, "properties": {**SEEN["properties"], "s": {"enum": [_Colour.RED, None]}}}, False),
    ({"type": "string", "const": uuid.UUID(int=1)}, False),
    # a tuple where the parsed form has a list: the slow way (the same canonical form, found slower)
    ({**SEEN, "properties": {**SEEN["properties"], "s": {"enum": ("red", None)}}}, False),
]


@pytest.mark.parametrize(("schema", "found"), NEAR, ids=range(len(NEAR)))
def test_a_schema_seen_before_compiles_as_its_canonical_form(schema: Any, found: bool) -> None:
    """The shortcut answers only for the same JSON, and the result equals the canonical form's."""
    compile_schema(SEEN)
    compile_schema({"type": "string", "const": str(uuid.UUID(int=1))})
    assert (schema_module._known_canonical(schema) is not None) is found
    assert compile_schema(schema) == _slow(schema)


def test_nan_schema_stays_not_json_after_its_null_twin() -> None:
    """A NaN where a compiled schema had null is still reported as not JSON, not compiled as the twin."""
    assert not isinstance(compile_schema({"const": None}), str)
    result = compile_schema({"const": float("nan")})
    assert isinstance(result, str) and result.startswith("schema is not JSON")
