"""JSON Schemas for output_schema and tool input_schema (SPEC §3): compiled once, checked fast."""

from __future__ import annotations

import functools
import json
import math
import re
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import orjson
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import (
    Draft4Validator,
    Draft6Validator,
    Draft7Validator,
    Draft201909Validator,
    Draft202012Validator,
    extend,
    validator_for,
)


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    """A checked JSON Schema: jsonschema's validator, which names the error a verdict reports, and a
    jsonschema-rs check that answers the common case, a valid document, about six times faster. Where
    that check exists, the validator skips the children jsonschema-rs passes (see _pruning_class)."""

    validator: Validator
    # True only when the instance is certainly valid. False means "ask jsonschema", which also
    # names the error; None: jsonschema alone.
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
            return bool(self.certainly_valid(instance))
        except Exception:  # a value jsonschema-rs cannot take (a lone surrogate): jsonschema decides
            return False


def compile_schema(schema: Any) -> CompiledSchema | str:
    """The compiled schema, cached by its canonical JSON, or why it cannot be used."""
    canonical = _known_canonical(schema)
    if canonical is None:
        try:
            canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            return f"schema is not JSON: {exc}"[:300]
        _remember_canonical(schema, canonical)
    return _compile(canonical)


# --- the canonical JSON of a schema seen before -------------------------------------------------------
# json.dumps(sort_keys=True) of a 3 KB schema takes ~70 µs, and the comparator needs it for every
# schema of every comparison (tool schemas arrive with each request). orjson writes one in a few µs,
# but is not the same function: it accepts values json.dumps rejects (NaN as null, UUIDs, enums).
# So its bytes only find a canonical form json.dumps already gave, and only for a schema equal in
# Python to that canonical form parsed back; orjson tells 1, 1.0 and true apart, which `==` does not.
# Equal in Python with the same orjson bytes, the two schemas are the same JSON.

_ORJSON_STRICT = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
_MAX_KNOWN = 1024
_known: dict[bytes, tuple[Any, str]] = {}  # orjson bytes -> (json.loads(canonical), canonical)


def _orjson_key(schema: Any) -> bytes | None:
    try:
        return orjson.dumps(schema, option=_ORJSON_STRICT)
    except (TypeError, orjson.JSONEncodeError):
        return None


def _known_canonical(schema: Any) -> str | None:
    key = _orjson_key(schema)
    entry = None if key is None else _known.get(key)
    if entry is None:
        return None
    parsed, canonical = entry
    try:
        same = bool(schema == parsed)
    except Exception:  # a value whose == raises: the slow way decides
        return None
    return canonical if same else None


def _remember_canonical(schema: Any, canonical: str) -> None:
    key = _orjson_key(schema)
    if key is None:
        return
    if len(_known) >= _MAX_KNOWN:
        _known.clear()
    _known[key] = (json.loads(canonical), canonical)


@functools.lru_cache(maxsize=1024)
def _compile(canonical: str) -> CompiledSchema | str:
    """A checked validator for a schema given as canonical JSON, or why there is none."""
    schema = json.loads(canonical)
    try:
        cls = validator_for(schema, default=Draft202012Validator)
        cls.check_schema(schema)
        fast = _fast_check(schema, cls)
        validator: Validator = (cls if fast is None else _pruning_class(cls, fast.subschemas))(schema)
    except Exception as exc:  # SchemaError, or a $schema of the wrong type
        return f"invalid schema: {getattr(exc, 'message', None) or exc}"[:300]
    return CompiledSchema(validator, None if fast is None else fast.check)


# --- the fast validity check ------------------------------------------------------------------------
# jsonschema spends ~3 µs per (subschema, value) pair, ~0.5 ms on a 4 KB document: most of the
# comparator's budget. jsonschema-rs checks the same document in a few µs (benchmarks/README.md).
# Where the two libraries can disagree, it is not asked, so verdicts stay jsonschema's:
# - `pattern` is Python's `re.search` (a keyword of ours): Rust's regex dialect differs (`\s`, `$`);
# - `patternProperties` picks members by regex and `multipleOf` on floats is arithmetic that
#   differs (19.99 is a multiple of 0.01 to one, not the other): jsonschema alone for those schemas.
# - NaN and ±Infinity (json.loads reads `NaN`, `Infinity` and 1e999 in a model's answer) are numbers to
#   jsonschema and of no JSON type to jsonschema-rs, which fails them against every `type`, `enum` and
#   `const` but skips the range keywords for them, and turns such a failure into a pass through `not`,
#   `if` and `oneOf`: {"maximum": 1} passes Infinity. In a schema with a range keyword beside no `type`,
#   or with one of those three, jsonschema-rs is asked only about documents without such numbers.
# Instances come from json.loads, so they nest at most ~1,000 deep (the recursion limit); jsonschema-rs
# handles 20,000.

_RS_DRAFTS: dict[type, Any] = {
    Draft4Validator: jsonschema_rs.Draft4Validator,
    Draft6Validator: jsonschema_rs.Draft6Validator,
    Draft7Validator: jsonschema_rs.Draft7Validator,
    Draft201909Validator: jsonschema_rs.Draft201909Validator,
    Draft202012Validator: jsonschema_rs.Draft202012Validator,
}
_LEFT_TO_JSONSCHEMA = frozenset({"patternProperties", "multipleOf"})
_INVERTING = frozenset({"not", "if", "oneOf", "maxContains"})
_RANGES = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})


class _PythonPattern:
    """The `pattern` keyword with Python's regex semantics, as jsonschema applies it."""

    def __init__(self, parent_schema: Any, value: Any, schema_path: Any) -> None:
        self.search = re.compile(value).search

    def validate(self, instance: Any) -> None:
        if type(instance) is str and self.search(instance) is None:
            raise ValueError("does not match pattern")


@dataclass(frozen=True, slots=True)
class _FastCheck:
    check: Callable[[Any], bool]  # the whole schema's jsonschema-rs check
    subschemas: _SubschemaChecks  # and its subschemas', for naming the error


def _fast_check(schema: Any, cls: type) -> _FastCheck | None:
    rs_class = _RS_DRAFTS.get(cls)
    if rs_class is None or _mentions(schema, _LEFT_TO_JSONSCHEMA):
        return None
    # Custom keywords cost ~40 % of the check, even unused: only for schemas with a pattern.
    keywords = {"pattern": _PythonPattern} if _mentions(schema, frozenset({"pattern"})) else None
    try:
        compiled = rs_class(schema, validate_formats=False, offline=True, keywords=keywords)
    except Exception:  # a schema it cannot compile (a remote $ref): jsonschema alone is still right
        return None
    finite_only = _mentions(schema, _INVERTING) or _range_without_type(schema)
    check = _finite_only(compiled.is_valid) if finite_only else compiled.is_valid
    return _FastCheck(check, _SubschemaChecks(rs_class, keywords, finite_only))


def _range_without_type(schema: Any) -> bool:
    """Whether some object in the schema has a range keyword and no `type` beside it."""
    return any(isinstance(node, dict) and "type" not in node and not _RANGES.isdisjoint(node) for node in _nodes(schema))


def _finite_only(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """`check`, answering False ("ask jsonschema") for a document holding NaN or an infinity."""

    def checked(instance: Any) -> bool:
        return _all_finite(instance) and check(instance)

    return checked


def _all_finite(document: Any) -> bool:
    return not any(isinstance(node, float) and not math.isfinite(node) for node in _nodes(document))


# --- naming the error without walking what is valid ------------------------------------------------
# jsonschema names the error a verdict reports by collecting every error of the document (best_match),
# which walks all of it: ~0.45 ms for a 4 KB answer with one wrong value, half of such a comparison.
# Where jsonschema-rs decides validity for a schema (the subset above), a child value it passes against
# its subschema holds no error for jsonschema either, so the keywords that descend into children skip
# such a child: jsonschema gives the same errors, in the same order, from the children that fail, and
# best_match picks the same one. A subschema with a reference (resolved against the root document) or
# its own $schema is always walked.

_PRUNED_KEYWORDS = (
    "properties", "items", "prefixItems", "additionalProperties", "additionalItems", "allOf", "anyOf", "oneOf",
)
_ALWAYS_WALKED = frozenset({"$ref", "$dynamicRef", "$recursiveRef", "$schema"})
# Subschema checks kept in all schemas together (~3.3 KB each compiled): past this, every schema's are
# dropped and compiled again as errors need them. Tool schemas arrive with requests, so there is no other
# bound on how many subschemas a daemon meets.
_MAX_SUBSCHEMA_CHECKS = 8192
_all_checks: weakref.WeakSet[_SubschemaChecks] = weakref.WeakSet()
_kept = 0  # entries in every _SubschemaChecks of _all_checks, since the last drop


class _SubschemaChecks:
    """jsonschema-rs checks for the subschemas of one schema, compiled when first needed."""

    def __init__(self, rs_class: Any, keywords: dict[str, Any] | None, finite_only: bool) -> None:
        self._rs_class, self._keywords, self._finite_only = rs_class, keywords, finite_only
        # id(subschema) -> (the subschema, its check or None); the subschema is kept, so the id stays its.
        self._checks: dict[int, tuple[Any, Callable[[Any], bool] | None]] = {}
        _all_checks.add(self)

    def passes(self, instance: Any, subschema: Any) -> bool:
        """True only when `instance` is certainly valid against `subschema`."""
        entry = self._checks.get(id(subschema))
        if entry is None or entry[0] is not subschema:
            entry = self._remember(subschema)
        check = entry[1]
        if check is None:
            return False
        try:
            return bool(check(instance))
        except Exception:  # a value jsonschema-rs cannot take (a lone surrogate): jsonschema walks it
            return False

    def _remember(self, subschema: Any) -> tuple[Any, Callable[[Any], bool] | None]:
        global _kept
        if _kept >= _MAX_SUBSCHEMA_CHECKS:
            for checks in list(_all_checks):
                checks._checks.clear()
            _kept = 0
        entry = self._checks[id(subschema)] = (subschema, self._compile(subschema))
        _kept += 1
        return entry

    def kept(self) -> int:
        return len(self._checks)

    def _compile(self, subschema: Any) -> Callable[[Any], bool] | None:
        if not isinstance(subschema, dict) or _mentions(subschema, _ALWAYS_WALKED):
            return None
        try:
            compiled = self._rs_class(subschema, validate_formats=False, offline=True, keywords=self._keywords)
        except Exception:
            return None
        check: Callable[[Any], bool] = compiled.is_valid
        return _finite_only(check) if self._finite_only else check


class _Pruning:
    """The validator as a descending keyword sees it: `descend` yields nothing for a child that
    jsonschema-rs passes, and walks any other as jsonschema does."""

    __slots__ = ("_checks", "_validator")

    def __init__(self, validator: Any, checks: _SubschemaChecks) -> None:
        self._validator, self._checks = validator, checks

    def descend(
        self, instance: Any, schema: Any, path: Any = None, schema_path: Any = None, resolver: Any = None
    ) -> Any:
        if self._checks.passes(instance, schema):
            return iter(())
        return self._validator.descend(instance, schema, path=path, schema_path=schema_path, resolver=resolver)

    def is_type(self, instance: Any, type_name: str) -> bool:
        return bool(self._validator.is_type(instance, type_name))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._validator, name)


def _pruning_class(cls: Any, checks: _SubschemaChecks) -> Any:
    """`cls` with its descending keywords skipping the children jsonschema-rs passes (jsonschema's own
    `extend`: every other keyword, the type checker and the meta-schema are cls's)."""

    def pruned(keyword: Callable[..., Any]) -> Callable[..., Any]:
        def descending(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
            return keyword(_Pruning(validator, checks), value, instance, schema)

        return descending

    keywords = {name: pruned(cls.VALIDATORS[name]) for name in _PRUNED_KEYWORDS if name in cls.VALIDATORS}
    return extend(cls, validators=keywords)


def _mentions(schema: Any, keywords: frozenset[str]) -> bool:
    """Whether any object in the schema has one of these keys (a property of that name counts too)."""
    return any(isinstance(node, dict) and not keywords.isdisjoint(node) for node in _nodes(schema))


def _nodes(value: Any) -> Iterator[Any]:
    """Every value inside `value`, itself included, depth-first."""
    stack = [value]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
