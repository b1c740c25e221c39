"""JSON in model text (SPEC §3): the object or array a text carries, and how it carries it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from shadowd.core.fastjson import loads_exact

JsonKind = Literal["bare", "fenced", "embedded"]

# How a text "was JSON" for format.json_invalid: the whole text, or one fenced block.
JSON_KINDS: frozenset[str] = frozenset({"bare", "fenced"})

_FENCE = re.compile(
    r"^[ \t]{0,3}(`{3,}|~{3,})[ \t]*([^\n`]*?)[ \t]*\n(.*?)\n?[ \t]{0,3}\1[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_JSON_FENCE_TAGS = frozenset({"", "json", "jsonc", "json5"})
_OPENER = re.compile(r"[{\[]")
# Inside a bracketed span: a JSON string (skipped whole, so brackets in it do not count) or a bracket.
_STRUCTURAL = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]]', re.DOTALL)
_CLOSER = {"{": "}", "[": "]"}
_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class ExtractedJson:
    kind: JsonKind
    value: dict[str, Any] | list[Any]


def extract_json(text: str) -> ExtractedJson | None:
    """The JSON object or array a text carries, and how it carries it; None when it has none."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        value = _loads_container(stripped)
        if value is not None:
            return ExtractedJson("bare", value)

    if "```" in text or "~~~" in text:
        fences = _FENCE.findall(text)
        if len(fences) == 1 and fences[0][1].lower() in _JSON_FENCE_TAGS:
            value = _loads_container(fences[0][2].strip())
            if value is not None:
                return ExtractedJson("fenced", value)

    embedded = _find_embedded(text)
    return ExtractedJson("embedded", embedded) if embedded is not None else None


def _loads_container(text: str) -> dict[str, Any] | list[Any] | None:
    value = _loads_fast(text)
    if value is None:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return None
    return value if isinstance(value, dict | list) else None


# json.loads gives up (RecursionError) at a nesting depth set by the recursion limit less the caller's
# stack, orjson only past 1,024 levels: a text with this many brackets or more is left to json alone.
_MAX_FAST_BRACKETS = 500


def _loads_fast(text: str) -> Any | None:
    """`json.loads(text)` read by orjson where that cannot differ (`fastjson.loads_exact`); None: ask json."""
    if text.count("[") + text.count("{") >= _MAX_FAST_BRACKETS:
        return None
    try:
        data = text.encode()
    except UnicodeEncodeError:  # a lone surrogate: json.loads reads it, orjson would not
        return None
    return loads_exact(data)


def _find_embedded(text: str) -> dict[str, Any] | list[Any] | None:
    """The largest parseable outermost {...} or [...] in prose; inner spans of an unparseable one
    are not searched, so a truncated object does not pass for JSON through one of its members."""
    best: dict[str, Any] | list[Any] | None = None
    best_len = 0
    pos = 0
    while (match := _OPENER.search(text, pos)) is not None:
        start = match.start()
        try:
            value, end = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            span_end = _balanced_end(text, start)
            if span_end is None:
                break  # never closed: the rest of the text is inside it
            pos = span_end
            continue
        if end - start > best_len and _looks_like_payload(value):
            best, best_len = value, end - start
        pos = end
    return best


def _looks_like_payload(value: Any) -> bool:
    # Prose is full of "[1]" citations and "[ ]" checkboxes that parse as JSON arrays; only an
    # object, or an array holding an object or array, counts as JSON embedded in prose.
    if isinstance(value, dict):
        return bool(value)
    return isinstance(value, list) and any(isinstance(item, dict | list) for item in value)


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the bracket closing the one at `start` (a mismatched closer ends it too)."""
    expected: list[str] = []
    for match in _STRUCTURAL.finditer(text, start):
        token = match.group()
        if token in _CLOSER:
            expected.append(_CLOSER[token])
        elif token in ("}", "]"):
            if expected.pop() != token or not expected:
                return match.end()
    return None
