"""JSON in model text (SPEC §3): finding it, flattening it to shapes, checking it against schemas."""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from typing import Any, Literal

from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import Draft201909Validator, Draft202012Validator, validator_for

JsonKind = Literal["bare", "fenced", "embedded"]

# How a text "was JSON" for format.json_invalid: the whole text, or one fenced block.
JSON_KINDS: frozenset[str] = frozenset({"bare", "fenced"})

# A shape key is a JSON pointer whose array indices are all "*". A literal object key "*" is
# written "~2" (a tilde is always escaped as "~0", so "~2" cannot otherwise occur) to keep "*"
# meaning "any array item". ignore_paths are matched against shape keys.
ARRAY_ITEM = "*"

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

_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


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
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict | list) else None


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
        return frozenset(_TYPE_NAMES.get(kind) or kind.__name__ for kind in self.types)

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


# --- ignore_paths: a JSONPath subset compiled to a regex over shape keys ----------------------

_PATH_TOKEN = re.compile(
    r"""(?P<descend>\.\.)
      | \.(?P<star>\*)
      | \.(?P<name>[^.\[\]]+)
      | \[\s*(?P<bstar>\*)\s*\]
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*'(?P<sq>(?:[^'\\]|\\.)*)'\s*\]
      | \[\s*"(?P<dq>(?:[^"\\]|\\.)*)"\s*\]""",
    re.VERBOSE,
)
_ANY_SEGMENT = "[^/]+"


def ignore_path_pattern(expr: str) -> str | None:
    """The regex (over shape keys) for one ignore_paths entry; None when it is not understood.

    Accepts `$.a.b`, `$.a[*].b`, `$['x']`, `$.a.b[0]` (an index means every item: shapes do not
    tell items apart), `.*` (any child) and `..name` (at any depth). The leading `$` is optional.
    """
    if not isinstance(expr, str):
        return None
    rest = expr.strip()
    if rest.startswith("$"):
        rest = rest[1:]
    elif rest and rest[0] not in ".[":
        rest = "." + rest
    parts: list[str] = []
    descend = False
    pos = 0
    while pos < len(rest):
        match = _PATH_TOKEN.match(rest, pos)
        if match is None:
            return None
        pos = match.end()
        if match.group("descend"):
            if descend:
                return None
            descend = True
            if pos < len(rest) and rest[pos] not in ".[":
                rest = rest[:pos] + "." + rest[pos:]  # "$..name" is "any depth" then ".name"
            continue
        if match.group("star") or match.group("bstar"):
            segment = _ANY_SEGMENT
        elif match.group("index") is not None:
            segment = re.escape(ARRAY_ITEM)
        else:
            raw = match.group("name")
            if raw is None:
                quoted = match.group("sq") if match.group("sq") is not None else match.group("dq")
                raw = re.sub(r"\\(.)", r"\1", quoted)
            segment = re.escape(shape_token(raw))
        parts.append(f"(?:/{_ANY_SEGMENT})*/{segment}" if descend else f"/{segment}")
        descend = False
    if descend:
        return None
    return "".join(parts) + "(?:/|$)"


@functools.lru_cache(maxsize=1024)
def compile_ignore_paths(exprs: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex matching a shape key that any entry covers (the entry's path or below it)."""
    patterns = [p for p in (ignore_path_pattern(expr) for expr in exprs) if p is not None]
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns))


# --- JSON Schemas: compiled once, checked fast ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    """A checked JSON Schema: jsonschema's validator, plus a fast path for common schemas."""

    validator: Validator
    # A fast check for the common subset of JSON Schema: True only when the instance is
    # certainly valid. False means "ask jsonschema", which also names the error.
    certainly_valid: Callable[[Any], bool] | None

    def is_valid(self, instance: Any) -> bool:
        return self._certainly_valid(instance) or bool(self.validator.is_valid(instance))

    def first_error(self, instance: Any) -> ValidationError | None:
        if self._certainly_valid(instance):
            return None
        return best_match(self.validator.iter_errors(instance))

    def _certainly_valid(self, instance: Any) -> bool:
        if self.certainly_valid is None:
            return False
        try:
            return self.certainly_valid(instance)
        except Exception:  # e.g. too deep: jsonschema decides
            return False


def compile_schema(schema: Any) -> CompiledSchema | str:
    """The compiled schema, cached by its canonical JSON, or why it cannot be used."""
    try:
        key = json.dumps(schema, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return f"schema is not JSON: {exc}"[:300]
    return _compile(key)


@functools.lru_cache(maxsize=1024)
def _compile(canonical: str) -> CompiledSchema | str:
    """A checked validator for a schema given as canonical JSON, or why there is none."""
    schema = json.loads(canonical)
    try:
        cls = validator_for(schema, default=Draft202012Validator)
        cls.check_schema(schema)
        validator: Validator = cls(schema)
    except Exception as exc:  # SchemaError, or a $schema of the wrong type
        return f"invalid schema: {getattr(exc, 'message', None) or exc}"[:300]
    fast = None
    if cls in (Draft202012Validator, Draft201909Validator):
        try:
            fast = _FastSchema(schema, cls.VALIDATORS).check
        except Exception:  # _Unsupported, or anything unforeseen: jsonschema alone is still right
            pass
    return CompiledSchema(validator, fast)


# --- a fast validity check for common schemas ---------------------------------------------------
# jsonschema spends ~3 µs per (subschema, value) pair, ~0.5 ms on a 4 KB document: most of the
# comparator's budget. Valid outputs are the common case, so they are checked here with plain
# closures; anything this subset does not model exactly raises _Unsupported at compile time
# (jsonschema alone then) or answers False at run time (jsonschema decides).

_Check = Callable[[Any], bool]


class _Unsupported(Exception):
    pass


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


_TYPE_TESTS: dict[str, _Check] = {
    "null": lambda value: value is None,
    "boolean": lambda value: type(value) is bool,
    "integer": lambda value: type(value) is int or (type(value) is float and value.is_integer()),
    "number": lambda value: type(value) is int or type(value) is float,
    "string": lambda value: type(value) is str,
    "array": lambda value: type(value) is list,
    "object": lambda value: type(value) is dict,
}
# Keywords with no effect here: format asserts nothing without a format checker.
_NO_OP_KEYWORDS = frozenset({"format"})


def _enum_key(value: Any) -> tuple[str, Any] | None:
    # jsonschema's equality keeps True apart from 1 but 1 equal to 1.0; containers and NaN are
    # left to jsonschema.
    kind = _TYPE_NAMES.get(type(value))
    if kind is None or kind in ("object", "array") or value != value:
        return None
    return kind, value


class _FastSchema:
    def __init__(self, root: Any, keywords: Any) -> None:
        self.root = root
        self.keywords = frozenset(keywords)
        self.refs: dict[str, _Check] = {}
        self.check = self.compile(root, is_root=True)

    def compile(self, schema: Any, is_root: bool = False) -> _Check:
        if schema is True:
            return _always
        if schema is False:
            return _never
        if not isinstance(schema, dict) or (not is_root and "$id" in schema):
            raise _Unsupported  # an embedded $id moves the base of $ref resolution
        checks: list[_Check] = []
        for keyword, value in schema.items():
            if keyword not in self.keywords or keyword in _NO_OP_KEYWORDS:
                continue  # jsonschema ignores it too
            if keyword == "uniqueItems" and value is False:
                continue
            build = getattr(self, "_k_" + keyword.lstrip("$"), None)
            if build is None:
                raise _Unsupported(keyword)
            checks.append(build(value, schema))
        return _all_of(checks)

    def _k_type(self, value: Any, schema: dict[str, Any]) -> _Check:
        names = [value] if isinstance(value, str) else value
        try:
            tests = [_TYPE_TESTS[name] for name in names]
        except (KeyError, TypeError):
            raise _Unsupported("type") from None
        if len(tests) == 1:
            return tests[0]
        return lambda instance: any(test(instance) for test in tests)

    def _k_enum(self, value: Any, schema: dict[str, Any]) -> _Check:
        allowed = {key for key in map(_enum_key, value) if key is not None}
        return lambda instance: _enum_key(instance) in allowed

    def _k_const(self, value: Any, schema: dict[str, Any]) -> _Check:
        return self._k_enum([value], schema)

    def _k_properties(self, value: Any, schema: dict[str, Any]) -> _Check:
        members = [(name, self.compile(subschema)) for name, subschema in value.items()]

        def check(instance: Any) -> bool:
            if type(instance) is not dict:
                return _is_json(instance)
            for name, member in members:
                if name in instance and not member(instance[name]):
                    return False
            return True

        return check

    def _k_required(self, value: Any, schema: dict[str, Any]) -> _Check:
        names = frozenset(value)
        return lambda instance: names <= instance.keys() if type(instance) is dict else _is_json(instance)

    def _k_additionalProperties(self, value: Any, schema: dict[str, Any]) -> _Check:
        known = frozenset(schema.get("properties", {}))
        extra = self.compile(value)

        def check(instance: Any) -> bool:
            if type(instance) is not dict:
                return _is_json(instance)
            for name, item in instance.items():
                if name not in known and not extra(item):
                    return False
            return True

        return check

    def _k_items(self, value: Any, schema: dict[str, Any]) -> _Check:
        item = self.compile(value)  # a list (draft 2019-09 tuple form) is not a dict: unsupported

        def check(instance: Any) -> bool:
            if type(instance) is not list:
                return _is_json(instance)
            for element in instance:
                if not item(element):
                    return False
            return True

        return check

    def _k_allOf(self, value: Any, schema: dict[str, Any]) -> _Check:
        return _all_of([self.compile(subschema) for subschema in value])

    def _k_anyOf(self, value: Any, schema: dict[str, Any]) -> _Check:
        # Sound with a conservative branch: a False from it can only send us to jsonschema.
        branches = [self.compile(subschema) for subschema in value]
        return lambda instance: any(branch(instance) for branch in branches)

    def _k_ref(self, value: Any, schema: dict[str, Any]) -> _Check:
        if value in self.refs:
            return self.refs[value]
        if not isinstance(value, str) or not (value == "#" or value.startswith("#/")) or "%" in value:
            raise _Unsupported("$ref")  # only JSON pointers into this schema, not anchors or URLs
        target: Any = self.root
        for token in value.split("/")[1:]:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and token in target:
                target = target[token]
            else:
                raise _Unsupported("$ref")
        resolved: list[_Check] = []  # filled after compiling, so recursive schemas terminate
        self.refs[value] = lambda instance: resolved[0](instance)
        resolved.append(self.compile(target, is_root=target is self.root))
        return self.refs[value]

    def _k_minimum(self, value: Any, schema: dict[str, Any]) -> _Check:
        return _numeric(lambda number: number >= value)

    def _k_maximum(self, value: Any, schema: dict[str, Any]) -> _Check:
        return _numeric(lambda number: number <= value)

    def _k_exclusiveMinimum(self, value: Any, schema: dict[str, Any]) -> _Check:
        return _numeric(lambda number: number > value)

    def _k_exclusiveMaximum(self, value: Any, schema: dict[str, Any]) -> _Check:
        return _numeric(lambda number: number < value)

    def _k_minLength(self, value: Any, schema: dict[str, Any]) -> _Check:
        return _sized(str, lambda size: size >= value)

    def _k_maxLength(self, value: Any, schema: dict[str, Any]) -> _Check:
        return _sized(str, lambda size: size <= value)

    def _k_minItems(self, value: Any, schema: dict[str, Any]) -> _Check:
        return _sized(list, lambda size: size >= value)

    def _k_maxItems(self, value: Any, schema: dict[str, Any]) -> _Check:
        return _sized(list, lambda size: size <= value)

    def _k_minProperties(self, value: Any, schema: dict[str, Any]) -> _Check:
        return _sized(dict, lambda size: size >= value)

    def _k_maxProperties(self, value: Any, schema: dict[str, Any]) -> _Check:
        return _sized(dict, lambda size: size <= value)

    def _k_pattern(self, value: Any, schema: dict[str, Any]) -> _Check:
        try:
            search = re.compile(value).search
        except (re.error, TypeError):
            raise _Unsupported("pattern") from None
        return lambda instance: search(instance) is not None if type(instance) is str else _is_json(instance)


def _is_json(value: Any) -> bool:
    # A keyword that does not apply to this JSON type passes; a non-JSON Python value goes to
    # jsonschema, whose type checks this subset does not model.
    return type(value) in _TYPE_NAMES


def _all_of(checks: list[_Check]) -> _Check:
    if not checks:
        return _is_json
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda instance: first(instance) and second(instance)

    def check(instance: Any) -> bool:
        for each in checks:
            if not each(instance):
                return False
        return True

    return check


def _numeric(test: _Check) -> _Check:
    def check(instance: Any) -> bool:
        kind = type(instance)
        if kind is int or kind is float:
            return bool(test(instance))
        return _is_json(instance)

    return check


def _sized(kind: type[Sized], test: _Check) -> _Check:
    def check(instance: Any) -> bool:
        if type(instance) is kind:
            return bool(test(len(instance)))
        return _is_json(instance)

    return check
