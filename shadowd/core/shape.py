"""Shapes of JSON values (a list of 3 items and one of 4 have the same shape) and JSON pointers."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

# A shape key is a JSON pointer whose array indices are all "*". A literal object key "*" is
# written "~2" (a tilde is always escaped as "~0", so "~2" cannot otherwise occur) to keep "*"
# meaning "any array item". ignore_paths are matched against shape keys.
ARRAY_ITEM = "*"

# The JSON type of each Python type json.loads produces.
JSON_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


# Structure deeper than this is not compared: such JSON is pathological, and the walk recurses.
MAX_SHAPE_DEPTH = 200


class ShapeNode:
    """Everything seen at one shape path (a path whose array indices are all "*"): the Python
    types of its values and the shapes below it."""

    __slots__ = ("items", "members", "types")

    def __init__(self) -> None:
        self.types: set[type] = set()  # Python types, named by `kinds` (raw types are faster)
        self.members: dict[str, ShapeNode] = {}  # object keys seen here, over every occurrence
        self.items: ShapeNode | None = None  # the items of every array seen here

    @property
    def kinds(self) -> frozenset[str]:
        """The JSON types seen here; integers and floats are both "number"."""
        return frozenset(JSON_TYPE_NAMES.get(kind) or kind.__name__ for kind in self.types)

    def __repr__(self) -> str:
        return f"ShapeNode(kinds={sorted(self.kinds)}, members={list(self.members)})"


def flatten(value: Any) -> ShapeNode:
    """The shape tree of a json.loads value: a list of 3 items and one of 4 have the same shape."""
    root = ShapeNode()
    _fill(root, [value], 0)
    return root


def _fill(node: ShapeNode, values: list[Any], depth: int) -> None:
    # Column by column: every value found at one shape path is handled in one call, so the work
    # per value is a few C-level passes (type sets, comprehensions), not a Python call.
    kinds = set(map(type, values))
    node.types |= kinds
    if depth >= MAX_SHAPE_DEPTH:
        return
    if dict in kinds:
        objects = values if len(kinds) == 1 else [value for value in values if type(value) is dict]
        members = node.members
        if len(objects) == 1:  # the usual case outside arrays: skip building columns
            for key, child in objects[0].items():
                member = members.get(key)
                if member is None:
                    member = members[key] = ShapeNode()
                child_kind = type(child)
                if child_kind is dict or child_kind is list:
                    _fill(member, [child], depth + 1)
                else:
                    member.types.add(child_kind)
        else:
            for key in dict.fromkeys(itertools.chain.from_iterable(objects)):
                member = members.get(key)
                if member is None:
                    member = members[key] = ShapeNode()
                column = [obj[key] for obj in objects if key in obj]
                column_kinds = set(map(type, column))
                if dict in column_kinds or list in column_kinds:
                    _fill(member, column, depth + 1)
                else:
                    member.types |= column_kinds
    if list in kinds:
        arrays = values if len(kinds) == 1 else [value for value in values if type(value) is list]
        elements = list(itertools.chain.from_iterable(arrays))
        if elements:
            if node.items is None:
                node.items = ShapeNode()
            _fill(node.items, elements, depth + 1)


def same_skeleton(before: Any, after: Any) -> bool:
    """Whether `flatten(before)` and `flatten(after)` are certainly equal trees, checked without building
    them: the same Python type at every path, the same keys in every object, and arrays whose items all
    have one skeleton on both sides. False means "not shown equal": the shape trees may still be."""
    return _same_skeleton(before, after, 0)


def _same_skeleton(one: Any, two: Any, depth: int) -> bool:
    kind = type(one)
    if kind is not type(two):
        return False
    if kind is dict:
        if depth >= MAX_SHAPE_DEPTH or one.keys() != two.keys():
            return False
        for key, child in one.items():
            counterpart = two[key]
            child_kind = type(child)
            if child_kind is not type(counterpart):
                return False
            if (child_kind is dict or child_kind is list) and not _same_skeleton(child, counterpart, depth + 1):
                return False
        return True
    if kind is list:
        if not one or not two:
            return not one and not two  # an empty array against items: left to the full diff
        if depth >= MAX_SHAPE_DEPTH:
            return False
        kinds = set(map(type, one))
        if kinds != set(map(type, two)):
            return False
        if dict not in kinds and list not in kinds:
            return True  # scalars only: the item node is their set of types
        if len(kinds) != 1:
            return False  # containers mixed with other types: left to the full diff
        first = one[0]
        return all(_same_skeleton(first, item, depth + 1) for item in itertools.chain(itertools.islice(one, 1, None), two))
    return True


def first_pointer(value: Any, path: Sequence[str | None]) -> str | None:
    """The JSON pointer of the first value (in document order) at a shape path, given as object
    keys and None for "any array item"; None when there is none."""
    if not path:
        return ""
    step, rest = path[0], path[1:]
    if step is None:
        if type(value) is list:
            for index, element in enumerate(value):
                found = first_pointer(element, rest)
                if found is not None:
                    return f"/{index}{found}"
    elif type(value) is dict and step in value:
        found = first_pointer(value[step], rest)
        if found is not None:
            return f"/{escape_token(step)}{found}"
    return None


def shape_token(key: str) -> str:
    """The shape-key segment of an object key."""
    return "~2" if key == ARRAY_ITEM else escape_token(key)


def escape_token(token: str) -> str:
    """One JSON pointer reference token (RFC 6901)."""
    if "~" in token or "/" in token:
        return token.replace("~", "~0").replace("/", "~1")
    return token


def pointer(parts: Any) -> str:
    """The JSON pointer of a sequence of keys and indices (jsonschema's error paths)."""
    return "".join("/" + escape_token(str(part)) for part in parts)
