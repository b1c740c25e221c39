"""JSON through orjson where its answer is the standard library's, and through `json` where it is not.

Every record is parsed once and every verdict written as several JSON documents, so the encoder and
decoder are a visible share of the daemon's CPU. orjson is several times faster but differs from `json`
on exactly the inputs production data brings: it refuses lone surrogates, NaN and Infinity, a UTF-8
byte order mark and integers past 64 bits (the last it reads as floats, silently). Each function here
takes orjson's answer only where it cannot differ, and otherwise does what the standard library did, so
a result never depends on which path produced it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from shadowd.core.storable import storable_json

# A run of 19 digits may be an integer orjson reads differently (past int64 it turns into a float).
# Found by mapping every digit to "0" and everything else to " ", then a substring search: several
# times faster than a regular expression, which cost more than the parse itself.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_RUN = b"0" * 19


def loads_exact(data: bytes) -> Any | None:
    """`data` parsed by orjson when that is certainly what `json.loads` returns; None to say "use json".

    None for every input orjson refuses (lone surrogate escapes, NaN, 1e999, a BOM, deep nesting) and
    for one holding a 19-digit run; a document whose JSON value is `null` also returns None, and the
    caller's `json` path reads it the same.
    """
    if _LONG_RUN in data.translate(_DIGITS_AS_ZERO):
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def loads(data: bytes) -> Any:
    """`json.loads(data)`, faster where orjson reads the same value."""
    value = loads_exact(data)
    return json.loads(data) if value is None else value


def storable_dumps(value: Any) -> str:
    """The JSON text of `storable_json(value)`: NUL and lone surrogates escaped, NaN and Infinity null.

    orjson already writes NaN and Infinity as null; it refuses lone surrogates, non-string keys and
    integers past 64 bits, and writes NUL as the escape `\\u0000`, which PostgreSQL's jsonb rejects. Any
    of those (and, conservatively, a text merely containing a backslash followed by `u0000`) takes the
    exact path. The text differs from `json.dumps` only in spacing and in writing non-ASCII as UTF-8:
    the same JSON value.
    """
    try:
        text = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(storable_json(value))
    if b"\\u0000" in text:
        return json.dumps(storable_json(value))
    return text.decode()


def dumps_or_json(value: Any, **kwargs: Any) -> str:
    """A serializer for structlog's JSONRenderer: orjson when it can write the event, else `json.dumps`."""
    try:
        return orjson.dumps(value, default=kwargs.get("default")).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, **kwargs)
