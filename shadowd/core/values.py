"""Scalar values of the text's JSON and of tool inputs, path by path (SPEC §8 `value.changed`)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from shadowd.core.shape import ARRAY_ITEM, MAX_SHAPE_DEPTH, escape_token, shape_token

# A string longer than this is prose: its wording varies from call to call, so it is not compared
# unless its path is listed in the route's `value_paths`.
MAX_COMPARED_STRING = 64
# More leaves than this in one document are not compared: such output is a data dump, and the
# walk must stay bounded whatever a model returns.
MAX_LEAVES = 5000
_DETAIL_VALUE_CHARS = 60
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class Leaf(NamedTuple):
    """One scalar value and where it sits (a tuple: answers have thousands, built in C)."""

    pointer: str  # JSON pointer of the value in the finding's frame (concrete array indices)
    key: str  # noise key: JSONPath with every index as [*], prefixed by the tool for tool inputs
    shape_key: str  # shape key (pointer with "*" indices) that ignore_paths and value_paths match
    value: Any


def json_path(tokens: tuple[str | None, ...]) -> str:
    """A readable JSONPath for object keys and array items (None): `$.items[*].price`."""
    return "$" + "".join("[*]" if token is None else _json_path_part(token) for token in tokens)


def _json_path_part(token: str) -> str:
    return _cached_part(token) if len(token) <= 64 else _path_part(token)


def _path_part(token: str) -> str:
    """One object key's part of a JSONPath."""
    if _PLAIN_NAME.fullmatch(token):
        return "." + token
    escaped = token.replace("\\", "\\\\").replace("'", "\\'")
    return f"['{escaped}']"


# Keys repeat across leaves and answers: a short one's part is made once (long ones are not kept).
_cached_part = functools.lru_cache(maxsize=4096)(_path_part)


def scalar_leaves(document: Any, pointer_prefix: str = "", key_prefix: str = "") -> dict[str, Leaf]:
    """Every scalar (number, boolean, null, string) in `document`, by its pointer relative to the
    document. Containers are walked depth-first up to MAX_SHAPE_DEPTH and MAX_LEAVES."""
    leaves: dict[str, Leaf] = {}
    for relative, tokens, value in _walk(document):
        shape = "".join("/" + (ARRAY_ITEM if t is None else shape_token(t)) for t in tokens)
        leaves[relative] = Leaf(
            pointer=pointer_prefix + relative,
            key=key_prefix + json_path(tokens),
            shape_key=shape,
            value=value,
        )
        if len(leaves) >= MAX_LEAVES:
            break
    return leaves


class ValuePair(NamedTuple):
    """One scalar at the same place on both sides, with what the value rule reads of it."""

    key: str  # noise key, as Leaf.key
    shape_key: str  # as Leaf.shape_key
    before: Any  # the baseline's value
    after: Any  # the candidate's value
    pointer: str  # JSON pointer of the candidate's value, in the candidate's frame


def changed_value_pairs(
    before: Any, after: Any, after_prefix: str = "", key_prefix: str = ""
) -> list[ValuePair] | None:
    """The scalars of `before` and `after` at the same pointer, as `scalar_leaves` would pair them, in
    its order, leaving out every pair inside a subtree equal in Python on both sides.

    Such a subtree holds no value change: its scalars are the same value, or differ only in JSON type
    (true against 1), which the value rule leaves to schema.type_changed. Comparing subtrees with `==`
    runs in C, so answers that agree in most values are compared without building a leaf for each.
    Returns None where this cannot give scalar_leaves' pairs: an object on one side and an array on the
    other at one pointer (key "0" and index 0 share the pointer `/0`). The caller makes sure neither
    document has more than MAX_LEAVES leaves (scalar_leaves stops there).
    """
    pairs: list[ValuePair] = []
    if before == after:
        return pairs
    if isinstance(before, dict) and isinstance(after, list) or isinstance(before, list) and isinstance(after, dict):
        return None
    if not isinstance(before, _CONTAINERS) or not isinstance(after, _CONTAINERS):
        return pairs  # a bare scalar document has no path to compare
    try:
        _PairWalk(pairs, after_prefix, key_prefix).children(before, after, "", 0, "", "$")
    except _Unpairable:
        return None
    return pairs


_CONTAINERS = (dict, list)
# ValuePair(...) runs NamedTuple's generated __new__ in Python; tuple.__new__ builds the same tuple in C,
# several times faster, which counts at one pair per changed value.
_new_tuple: Any = tuple.__new__


def _parts(name: str) -> tuple[str, str, str]:
    """An object key's parts of a JSON pointer, a shape key and a JSONPath."""
    return "/" + escape_token(name), "/" + shape_token(name), _path_part(name)


# Keys repeat across answers: a short one's parts are made once (long ones are not kept).
_key_parts = functools.lru_cache(maxsize=4096)(_parts)


class _Unpairable(Exception):
    """An object against an array at one pointer: changed_value_pairs cannot pair them as scalar_leaves does."""


class _PairWalk:
    """changed_value_pairs' walk, depth-first in the baseline's document order. Paths are built only for
    the children that differ, each part once per container rather than once per leaf below it."""

    __slots__ = ("after_prefix", "key_prefix", "pairs")

    def __init__(self, pairs: list[ValuePair], after_prefix: str, key_prefix: str) -> None:
        self.pairs, self.after_prefix, self.key_prefix = pairs, after_prefix, key_prefix

    def children(self, one: Any, two: Any, relative: str, depth: int, shape: str, path: str) -> None:
        """The pairs below two unequal containers of one kind at one pointer, `depth` deep: a pair for two
        unequal scalars, the pairs below two unequal containers, nothing for a scalar against a container."""
        if depth >= MAX_SHAPE_DEPTH:
            return
        if isinstance(one, dict):
            for key, child in one.items():
                if key not in two:
                    continue
                counterpart = two[key]
                if child == counterpart:
                    continue
                name = str(key)
                pointer_part, shape_part, path_part = _key_parts(name) if len(name) <= 64 else _parts(name)
                if not isinstance(child, _CONTAINERS):
                    if not isinstance(counterpart, _CONTAINERS):
                        self.pairs.append(_new_tuple(ValuePair, (
                            self.key_prefix + path + path_part, shape + shape_part, child, counterpart,
                            self.after_prefix + relative + pointer_part,
                        )))
                elif isinstance(counterpart, _CONTAINERS):
                    if isinstance(child, dict) is not isinstance(counterpart, dict):
                        raise _Unpairable
                    self.children(child, counterpart, relative + pointer_part, depth + 1, shape + shape_part,
                                  path + path_part)
        else:
            item_shape, item_path = f"{shape}/{ARRAY_ITEM}", path + "[*]"
            for index in range(min(len(one), len(two))):
                child, counterpart = one[index], two[index]
                if child == counterpart:
                    continue
                if not isinstance(child, _CONTAINERS):
                    if not isinstance(counterpart, _CONTAINERS):
                        self.pairs.append(_new_tuple(ValuePair, (
                            self.key_prefix + item_path, item_shape, child, counterpart,
                            f"{self.after_prefix}{relative}/{index}",
                        )))
                elif isinstance(counterpart, _CONTAINERS):
                    if isinstance(child, dict) is not isinstance(counterpart, dict):
                        raise _Unpairable
                    self.children(child, counterpart, f"{relative}/{index}", depth + 1, item_shape, item_path)


def _walk(document: Any) -> Iterator[tuple[str, tuple[str | None, ...], Any]]:
    stack: list[tuple[Any, str, tuple[str | None, ...]]] = [(document, "", ())]
    while stack:
        value, pointer, tokens = stack.pop()
        if isinstance(value, dict):
            if len(tokens) >= MAX_SHAPE_DEPTH:
                continue
            for key, child in reversed(list(value.items())):
                name = str(key)
                stack.append((child, f"{pointer}/{escape_token(name)}", (*tokens, name)))
        elif isinstance(value, list):
            if len(tokens) >= MAX_SHAPE_DEPTH:
                continue
            for index in range(len(value) - 1, -1, -1):
                stack.append((value[index], f"{pointer}/{index}", (*tokens, None)))
        elif tokens:  # a bare scalar document has no path to compare
            yield pointer, tokens, value


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def is_prose(value: Any) -> bool:
    return isinstance(value, str) and len(value) > MAX_COMPARED_STRING


def same_value(before: Any, after: Any) -> bool:
    """JSON equality of two scalars: 1 equals 1.0, true does not equal 1, NaN equals NaN."""
    if type(before) is type(after) and not isinstance(before, float):
        return bool(before == after)  # two strings, ints, booleans or nulls
    kind = json_kind(before)
    if kind != json_kind(after):
        return False
    if kind == "number":
        if isinstance(before, float) and isinstance(after, float) and math.isnan(before) and math.isnan(after):
            return True
        return bool(before == after)
    return bool(before == after)


def comparable_kinds(before: Any, after: Any) -> bool:
    """Same JSON type, or one side null. Other type changes are schema.type_changed's to report."""
    kind_before, kind_after = json_kind(before), json_kind(after)
    return kind_before == kind_after or "null" in (kind_before, kind_after)


# Python types whose values are one JSON type each, compared by `==` (floats: NaN equals NaN).
_PLAIN_SCALARS = frozenset({str, int, bool, float, type(None)})


def reported_change(before: Any, after: Any, listed: bool) -> bool:
    """Whether the value rule reports `before` -> `after`: not prose (unless `listed`), not the same
    value, and of comparable kinds. One pass for the usual pair of one plain type; any other pair is
    decided by is_prose, same_value and comparable_kinds themselves."""
    kind = type(before)
    if kind is type(after) and kind in _PLAIN_SCALARS:
        if kind is str and not listed and (len(before) > MAX_COMPARED_STRING or len(after) > MAX_COMPARED_STRING):
            return False
        return not (before == after or (kind is float and before != before and after != after))
    if not listed and (is_prose(before) or is_prose(after)):
        return False
    return not same_value(before, after) and comparable_kinds(before, after)


def shown(value: Any) -> str:
    """A value for a finding's detail: JSON-like, clipped, control characters made visible."""
    if isinstance(value, str):
        text = repr(value)
    elif value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = repr(value)
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else f"\\x{ord(ch) & 0xFF:02x}" for ch in text)
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= _DETAIL_VALUE_CHARS else text[: _DETAIL_VALUE_CHARS - 3] + "..."
