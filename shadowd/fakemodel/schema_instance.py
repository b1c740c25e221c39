"""JSON Schema instances: schemas compiled once into generators of valid values."""
# Over 400 lines: one generator per JSON Schema keyword, compiled together so $ref cycles resolve.

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Any

from shadowd.fakemodel.digest import canonical_json
from shadowd.fakemodel.words import VOCABULARY

# A generator draws the instance's shape (which optional keys, how many items, which
# branch) from the first Random and its leaf values from the second, so a call-to-call
# salt on the second varies values only, never structure.
Generate = Callable[[Random, Random, int], Any]

SCHEMA_MARKER = "JSON Schema:"
_MAX_DEPTH = 6
_MAX_OPTIONAL = 3


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    """A JSON Schema and the generator of instances that satisfy it."""

    schema: dict[str, Any]
    generate: Generate

    @property
    def required(self) -> tuple[str, ...]:
        required = self.schema.get("required")
        return tuple(key for key in required if isinstance(key, str)) if isinstance(required, list) else ()

    @property
    def properties(self) -> dict[str, Any]:
        properties = self.schema.get("properties")
        return properties if isinstance(properties, dict) else {}

    def instance(self, shape: Random, value: Random) -> Any:
        return self.generate(shape, value, 0)


def compile_schema(schema: Any) -> CompiledSchema:
    """Compile a JSON Schema (draft 2020-12 subset) into a generator of valid instances."""
    root = schema if isinstance(schema, dict) else {}
    return CompiledSchema(root, _Compiler(root).compile(schema))


@functools.lru_cache(maxsize=4096)
def _compile_canonical(text: str) -> CompiledSchema:
    return compile_schema(json.loads(text))


def compiled_tool_schema(input_schema: Any) -> CompiledSchema:
    """The compiled generator for a tool's input_schema, cached by the schema's content."""
    return _compile_canonical(canonical_json(input_schema if isinstance(input_schema, dict) else {}))


def system_text(system: Any) -> str:
    """The system prompt as one string, whether given as a string or as text blocks."""
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(
            block["text"]
            for block in system
            if isinstance(block, dict) and isinstance(block.get("text"), str)
        )
    return ""


@functools.lru_cache(maxsize=1024)
def schema_in_text(text: str) -> CompiledSchema | None:
    """The JSON Schema object following the `JSON Schema:` marker, compiled; None if absent or bad."""
    marker = text.lower().find(SCHEMA_MARKER.lower())  # "JSON schema:" reads the same to a model
    if marker < 0:
        return None
    start = text.find("{", marker + len(SCHEMA_MARKER))
    if start < 0:
        return None
    end = _balanced_object_end(text, start)
    if end is None:
        return None
    try:
        schema = json.loads(text[start:end])
    except ValueError:
        return None
    return compile_schema(schema) if isinstance(schema, dict) else None


def _balanced_object_end(text: str, start: int) -> int | None:
    depth = 0
    in_string = False
    escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


class _Compiler:
    """Turns one schema document into closures; $refs compile lazily, so recursion is fine."""

    def __init__(self, root: dict[str, Any]) -> None:
        self._root = root
        self._refs: dict[str, Generate] = {}

    def compile(self, schema: Any) -> Generate:
        if schema is True or schema == {}:
            return _words_generator(1, 3)
        if not isinstance(schema, dict):
            return _constant(None)
        if "$ref" in schema:
            return self._ref(str(schema["$ref"]))
        if "allOf" in schema and isinstance(schema["allOf"], list):
            return self.compile(_merge_all_of(schema))
        if "const" in schema:
            return _constant(schema["const"])
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return _enum_generator(schema["enum"])
        for keyword in ("anyOf", "oneOf"):
            branches = schema.get(keyword)
            if isinstance(branches, list) and branches:
                return self._any_of(schema, keyword, branches)
        kind = _schema_type(schema)
        if kind == "object":
            return self._object(schema)
        if kind == "array":
            return self._array(schema)
        if kind == "integer":
            return _integer_generator(schema)
        if kind == "number":
            return _number_generator(schema)
        if kind == "boolean":
            return lambda shape, value, depth: value.random() < 0.5
        if kind == "null":
            return _constant(None)
        return _string_generator(schema)

    def _ref(self, ref: str) -> Generate:
        def generate(shape: Random, value: Random, depth: int) -> Any:
            target = self._refs.get(ref)
            if target is None:
                target = self.compile(_resolve_pointer(self._root, ref))
                self._refs[ref] = target
            return target(shape, value, depth)

        return generate

    def _any_of(self, schema: dict[str, Any], keyword: str, branches: list[Any]) -> Generate:
        base = {key: item for key, item in schema.items() if key != keyword}
        # Prefer non-null branches: a null answer carries no content to compare.
        useful = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")] or branches
        compiled = [self.compile({**base, **b} if isinstance(b, dict) else b) for b in useful]

        def generate(shape: Random, value: Random, depth: int) -> Any:
            return compiled[shape.randrange(len(compiled))](shape, value, depth)

        return generate

    def _object(self, schema: dict[str, Any]) -> Generate:
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        assert isinstance(properties, dict)
        required_list = schema.get("required") if isinstance(schema.get("required"), list) else []
        assert isinstance(required_list, list)
        required = [key for key in required_list if isinstance(key, str)]
        optional = [key for key in properties if key not in required]
        fields = {key: self.compile(properties.get(key, True)) for key in [*required, *optional]}
        min_properties = int(schema.get("minProperties", 0) or 0)

        def generate(shape: Random, value: Random, depth: int) -> Any:
            chosen = list(required)
            if depth < _MAX_DEPTH and optional:
                few = shape.randint(1, min(_MAX_OPTIONAL, len(optional)))
                wanted = max(min_properties - len(chosen), few)
                picked = set(shape.sample(range(len(optional)), min(wanted, len(optional))))
                chosen.extend(key for index, key in enumerate(optional) if index in picked)
            return {key: fields[key](shape, value, depth + 1) for key in chosen}

        return generate

    def _array(self, schema: dict[str, Any]) -> Generate:
        prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
        assert isinstance(prefix, list)
        items_schema = schema.get("items", True)
        if isinstance(items_schema, list):  # draft 4-7 tuple form
            prefix, items_schema = items_schema, schema.get("additionalItems", True)
        prefix_generators = [self.compile(item) for item in prefix]
        item_generator = self.compile(items_schema)
        low = max(int(schema.get("minItems", 0) or 0), len(prefix_generators) if items_schema is False else 0)
        high_limit = schema.get("maxItems")
        high = int(high_limit) if isinstance(high_limit, int) else max(low + 3, 3)
        unique = bool(schema.get("uniqueItems"))

        def generate(shape: Random, value: Random, depth: int) -> Any:
            if depth >= _MAX_DEPTH:
                count = low
            else:
                count = min(high, shape.randint(max(low, 1), max(low, 1) + 2))
            result: list[Any] = []
            seen: set[str] = set()
            attempts = 0
            while len(result) < count and attempts < count * 4:
                attempts += 1
                index = len(result)
                generator = prefix_generators[index] if index < len(prefix_generators) else item_generator
                item = generator(shape, value, depth + 1)
                if unique:
                    key = canonical_json(item)
                    if key in seen:
                        continue
                    seen.add(key)
                result.append(item)
            return result

        return generate


def _schema_type(schema: dict[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        non_null = [t for t in declared if t != "null"]
        declared = non_null[0] if non_null else "null"
    if isinstance(declared, str):
        return declared
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(key in schema for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
        return "number"
    return "string"


def _merge_all_of(schema: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {key: item for key, item in schema.items() if key != "allOf"}
    for part in schema["allOf"]:
        if not isinstance(part, dict):
            continue
        for key, item in part.items():
            if key == "properties" and isinstance(item, dict):
                merged["properties"] = {**merged.get("properties", {}), **item}
            elif key == "required" and isinstance(item, list):
                merged["required"] = [*merged.get("required", []), *item]
            else:
                merged.setdefault(key, item)
    return merged


def _resolve_pointer(root: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        return True  # remote refs are out of scope: any string will do
    node: Any = root
    for part in ref[1:].split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return True
    return node


def _constant(constant: Any) -> Generate:
    return lambda shape, value, depth: constant


def _enum_generator(options: list[Any]) -> Generate:
    choices = tuple(options)
    return lambda shape, value, depth: choices[value.randrange(len(choices))]


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _bounds(schema: dict[str, Any], default_span: float) -> tuple[float, float, bool, bool]:
    low = _number_or_none(schema.get("minimum"))
    high = _number_or_none(schema.get("maximum"))
    exclusive_min = schema.get("exclusiveMinimum")
    exclusive_max = schema.get("exclusiveMaximum")
    low_exclusive = exclusive_min is True  # draft 4 boolean form
    high_exclusive = exclusive_max is True
    exclusive_low = _number_or_none(exclusive_min)
    if exclusive_low is not None and (low is None or exclusive_low >= low):
        low, low_exclusive = exclusive_low, True
    exclusive_high = _number_or_none(exclusive_max)
    if exclusive_high is not None and (high is None or exclusive_high <= high):
        high, high_exclusive = exclusive_high, True
    if low is None and high is None:
        return 0.0, default_span, low_exclusive, high_exclusive
    if low is None:
        assert high is not None
        return high - default_span, high, low_exclusive, high_exclusive
    if high is None:
        return low, low + default_span, low_exclusive, high_exclusive
    return low, high, low_exclusive, high_exclusive


def _integer_generator(schema: dict[str, Any]) -> Generate:
    low_f, high_f, low_exclusive, high_exclusive = _bounds(schema, 10_000)
    low = math.floor(low_f) + 1 if low_exclusive and low_f == math.floor(low_f) else math.ceil(low_f)
    high = math.ceil(high_f) - 1 if high_exclusive and high_f == math.ceil(high_f) else math.floor(high_f)
    step = schema.get("multipleOf")
    if isinstance(step, int) and not isinstance(step, bool) and step > 0:
        first, last = -(-low // step), high // step
        if first <= last:
            return lambda shape, value, depth: value.randint(first, last) * step
    if low > high:
        return _constant(low)
    return lambda shape, value, depth: value.randint(low, high)


def _number_generator(schema: dict[str, Any]) -> Generate:
    low, high, low_exclusive, high_exclusive = _bounds(schema, 10_000.0)
    step = schema.get("multipleOf")
    if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0:
        first, last = math.ceil(low / step), math.floor(high / step)
        if low_exclusive and first * step <= low:
            first += 1
        if high_exclusive and last * step >= high:
            last -= 1
        if first <= last:
            return lambda shape, value, depth: value.randint(first, last) * step
    span = high - low

    def generate(shape: Random, value: Random, depth: int) -> Any:
        # Two decimals read like a real model's numbers; fall back to the midpoint if the
        # rounding lands on an exclusive bound.
        number = round(low + value.random() * span, 2)
        if number < low or number > high or (low_exclusive and number <= low) or (
            high_exclusive and number >= high
        ):
            number = (low + high) / 2
        return number

    return generate


def _words_generator(low: int, high: int) -> Generate:
    def generate(shape: Random, value: Random, depth: int) -> Any:
        return " ".join(value.choice(VOCABULARY) for _ in range(value.randint(low, high)))

    return generate


_FORMATS: dict[str, Callable[[Random], str]] = {
    "date-time": lambda r: (
        f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T"
        f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z"
    ),
    "date": lambda r: f"2025-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
    "time": lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z",
    "email": lambda r: f"{r.choice(VOCABULARY)}.{r.choice(VOCABULARY)}@example.com",
    "uri": lambda r: f"https://example.com/{r.choice(VOCABULARY)}/{r.randint(1, 9999)}",
    "url": lambda r: f"https://example.com/{r.choice(VOCABULARY)}/{r.randint(1, 9999)}",
    "hostname": lambda r: f"{r.choice(VOCABULARY)}.example.com",
    "uuid": lambda r: (
        f"{r.getrandbits(32):08x}-{r.getrandbits(16):04x}-4{r.getrandbits(12):03x}"
        f"-a{r.getrandbits(12):03x}-{r.getrandbits(48):012x}"
    ),
    "ipv4": lambda r: ".".join(str(r.randint(1, 254)) for _ in range(4)),
    "ipv6": lambda r: ":".join(f"{r.getrandbits(16):x}" for _ in range(8)),
    "duration": lambda r: f"P{r.randint(1, 30)}D",
}


def _string_generator(schema: dict[str, Any]) -> Generate:
    formatter = _FORMATS.get(str(schema.get("format", "")))
    min_length = int(schema.get("minLength", 0) or 0)
    max_length_raw = schema.get("maxLength")
    max_length = int(max_length_raw) if isinstance(max_length_raw, int) else None

    def generate(shape: Random, value: Random, depth: int) -> Any:
        if formatter is not None:
            return formatter(value)
        text = " ".join(value.choice(VOCABULARY) for _ in range(value.randint(1, 4)))
        while len(text) < min_length:
            text = f"{text} {value.choice(VOCABULARY)}"
        if max_length is not None and len(text) > max_length:
            text = text[:max_length].rstrip() if max_length > 0 else ""
            if len(text) < min_length:
                text = text.ljust(min_length, "x")
        return text

    return generate
