"""Making text and numbers storable: what PostgreSQL and JSON refuse is escaped or named, never sent.

PostgreSQL text and JSONB cannot hold U+0000, UTF-8 cannot encode a lone surrogate (U+D800-U+DFFF), and
JSON has no NaN or Infinity. Production data holds all of them; these functions turn them into text that
every store accepts, or say where they are so the caller can refuse the record with a reason.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

# What cannot be stored as text: NUL, and surrogates (in a Python str a surrogate is always a lone one,
# since a valid pair decodes to a single astral character).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def has_unstorable_text(text: str) -> bool:
    """True when `text` holds a NUL or a lone surrogate."""
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    return _UNSTORABLE.search(text) is not None


def escape_text(text: str) -> str:
    """`text` with each NUL and lone surrogate written as its `\\uXXXX` escape; other text unchanged.

    The escape is for display fields (answers, routes, tags): a reader still sees where the odd character
    was. It is not injective (a literal `\\u0000` already in the text reads the same), so identity keys
    such as `request_id` are refused instead of escaped.
    """
    if not has_unstorable_text(text):
        return text
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def storable_json(value: Any) -> Any:
    """A copy of a JSON-like value that every store accepts: strings and keys escaped, NaN/Infinity null.

    Returns the value itself when nothing needed changing, so the common case allocates nothing.
    """
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        changed = False
        out: dict[Any, Any] = {}
        for key, item in value.items():
            new_key = escape_text(key) if isinstance(key, str) else key
            new_item = storable_json(item)
            changed = changed or new_key is not key or new_item is not item
            out[new_key] = new_item
        return out if changed else value
    if isinstance(value, list | tuple):
        items = [storable_json(item) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    return value


def finite_or_none(value: float | None) -> float | None:
    """The number, or None when it is NaN or infinite (a total or a JSON document would not survive it)."""
    if value is None or math.isfinite(value):
        return value
    return None


INT32_MAX = 2**31 - 1


def int32_or_none(value: int | None) -> int | None:
    """The count, or None when it does not fit a 32-bit integer column."""
    if value is None or -INT32_MAX - 1 <= value <= INT32_MAX:
        return value
    return None


def first_non_finite(value: Any, path: str = "") -> str | None:
    """The JSON path of the first NaN or Infinity in `value` (e.g. `response.usage.output_tokens`), or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path or "$")
    if isinstance(value, dict):
        for key, item in value.items():
            found = first_non_finite(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = first_non_finite(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def utc_in_range(moment: datetime) -> bool:
    """True when an aware timestamp can be expressed in UTC within years 1-9999.

    `0001-01-01T00:00:00+23:59` is a valid RFC 3339 string, but in UTC it falls in year 0; drivers that
    convert to UTC before sending (asyncpg does) then fail on the record for good.
    """
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return True
