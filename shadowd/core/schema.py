"""JSON Schemas for output_schema and tool input_schema (SPEC §3): compiled once, checked fast."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import Draft201909Validator, Draft202012Validator, validator_for

from shadowd.core.shape import JSON_TYPE_NAMES


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
    if FAST_PATH == "jsonschema-rs":
        try:
            fast = jsonschema_rs.validator_for(schema, validate_formats=False, offline=True).is_valid
        except Exception:  # a schema it cannot compile: jsonschema alone is still right
            pass
    elif cls in (Draft202012Validator, Draft201909Validator):
        try:
            fast = _FastSchema(schema, cls.VALIDATORS).check
        except Exception:  # _Unsupported, or anything unforeseen: jsonschema alone is still right
            pass
    return CompiledSchema(validator, fast)


# Measurement only (benchmarks/schema_fast_path_bench.py): which validity pre-check compile_schema builds.
FAST_PATH = "closures"


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
    kind = JSON_TYPE_NAMES.get(type(value))
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
    return type(value) in JSON_TYPE_NAMES


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
