"""Reading request parameters and bodies: each problem is a `BadParameter` naming the parameter."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from annotated_types import MaxLen
from pydantic import BaseModel

from shadowd.http.errors import BadParameter, printable
from shadowd.http.state import ApiState

MAX_JSON_DEPTH = 32
MAX_PAGE = 1000
DEFAULT_PAGE = 100
# Text the database can compare: no NUL or other control characters.
TEXT_PATTERN = "^[^\\x00-\\x1f\\x7f]+$"
ROLLOUT_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]*$"
_ROLLOUT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether brackets nest deeper than `limit` outside strings: checked before parsing, so a deeply
    nested body is refused in linear time instead of exhausting the parser's recursion."""
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


async def json_object(request: web.Request, *, required: bool) -> dict[str, Any]:
    """The body as a JSON object; too large is 413 (aiohttp's limit), anything else unusable is 400."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise BadParameter("body", "a JSON object is required")
        return {}
    if json_depth_exceeds(raw, MAX_JSON_DEPTH):
        raise BadParameter("body", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadParameter("body", f"not valid JSON: {printable(str(exc))}") from None
    if not isinstance(body, dict):
        raise BadParameter("body", f"must be a JSON object, got {type(body).__name__}")
    return body


def storable_text(parameter: str, value: str, max_length: int) -> str:
    """A text parameter the database can compare: 1..max_length characters, no NUL or control
    characters, valid Unicode (no lone surrogates)."""
    if not 1 <= len(value) <= max_length:
        raise BadParameter(parameter, f"must be 1 to {max_length} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise BadParameter(parameter, "must not contain NUL or other control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadParameter(parameter, "must be valid Unicode text") from None
    return value


def max_length(model: type[BaseModel], name: str) -> int:
    """The `max_length` a request model declares for a field: the handlers check what the document states."""
    for constraint in model.model_fields[name].metadata:
        if isinstance(constraint, MaxLen):
            return int(constraint.max_length)
    raise LookupError(f"{model.__name__}.{name} declares no max_length")


def is_count(raw: str, digits: int = 9) -> bool:
    """ASCII digits only, and few of them: `str.isdigit` accepts '²', which `int` refuses."""
    return 0 < len(raw) <= digits and raw.isascii() and raw.isdigit()


def page_size(query: Mapping[str, str], default: int = DEFAULT_PAGE) -> int:
    raw = query.get("limit")
    if raw is None:
        return default
    if not is_count(raw) or not 1 <= int(raw) <= MAX_PAGE:
        raise BadParameter("limit", f"must be an integer from 1 to {MAX_PAGE}, got {raw!r}")
    return int(raw)


def only_parameters(query: Mapping[str, str], known: frozenset[str]) -> None:
    """Unknown query parameters are refused, so that a misspelt filter never silently widens a result."""
    for key in query:
        if key not in known:
            raise BadParameter(key, f"unknown parameter; known: {', '.join(sorted(known))}")


async def known_rollout(state: ApiState, name: str) -> bool:
    """Configured now, or with stored verdicts or decisions (a retired rollout's verdicts stay readable)."""
    if state.config.rollout(name) is not None:
        return True
    return _ROLLOUT_NAME.match(name) is not None and name in await state.store.rollout_names()


def configured_names(state: ApiState) -> list[str]:
    return [r.name for r in state.config.rollouts]
