"""The comparator: a candidate's output against the baseline's, as findings and a status (SPEC §3)."""
# Over 400 lines: one closed set of rules (SPEC §3, §8) over one pair of outputs; each rule is a short
# function and splitting them apart would scatter the order they are applied in.

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from shadowd.core.findings import CODES, Code, Finding, Status
from shadowd.core.jsonextract import JSON_KINDS, ExtractedJson, extract_json
from shadowd.core.jsonpath import compile_ignore_paths
from shadowd.core.markdown import MarkdownSignature, markdown_signature
from shadowd.core.noise import DEFAULT_VALUE_NOISE_THRESHOLD, NoiseModel, NoiseObservation, describe
from shadowd.core.results import SideResult
from shadowd.core.schema import CompiledSchema, compile_schema
from shadowd.core.shape import (
    ARRAY_ITEM,
    ShapeNode,
    first_pointer,
    flatten,
    pointer,
    same_skeleton,
    shape_token,
)
from shadowd.core.values import (
    MAX_LEAVES,
    Leaf,
    ValuePair,
    changed_value_pairs,
    is_prose,
    reported_change,
    same_value,
    scalar_leaves,
    shown,
)

# Bump whenever a rule changes: every verdict stores it, so an old verdict can still be explained.
# 2026.11.2: value.changed; tool calls compared as multisets of names; learned noise per route.
COMPARATOR_VERSION = "2026.11.2"

_TRUNCATION_STOPS = frozenset({"max_tokens", "model_context_window_exceeded"})
_LENGTH_RATIO_MIN = 0.5
_LENGTH_RATIO_MAX = 2.0
_MAX_DETAIL_CHARS = 400
_DIGITS = re.compile(r"/\d+(?=/|$)")
_NULL_ONLY = frozenset({"null"})
_VALUE_CHANGED, _VALUE_SEVERITY = Code.VALUE_CHANGED, CODES[Code.VALUE_CHANGED]  # read once per finding


@dataclass(frozen=True, slots=True)
class RouteRules:
    output_schema: dict[str, Any] | None = None
    ignore_paths: tuple[str, ...] = ()  # JSONPath-like: "$.generated_at", "$.items[*].id", "$.a.b[0]"
    # Compared exactly whatever the noise says, prose or not (SPEC §8).
    value_paths: tuple[str, ...] = ()
    value_noise_threshold: float = DEFAULT_VALUE_NOISE_THRESHOLD


@dataclass(frozen=True, slots=True)
class Comparison:
    status: Status
    findings: tuple[Finding, ...]
    comparator_version: str
    reason: str | None = None  # for error status: why no fair comparison
    # The baseline-vs-baseline_repeat comparison alone has a blocking finding (the gate's noise rate).
    baseline_noise_blocking: bool = False
    # Checks that could not run, e.g. an invalid output_schema: for operators, never a finding.
    notes: tuple[str, ...] = ()
    # What the baseline's second replay showed, for the learned noise model; None when not noise-checked.
    observation: NoiseObservation | None = None


def compare(
    baseline: SideResult,
    candidate: SideResult,
    baseline_repeat: SideResult | None = None,
    rules: RouteRules = RouteRules(),
    tools: Sequence[dict[str, Any]] = (),
    noise: NoiseModel | None = None,
) -> Comparison:
    """Compare `candidate` with `baseline`; `baseline_repeat`, when it succeeded, marks as noise
    what the baseline also shows against itself, and `noise` (the route's learned rates) what it
    shows often enough elsewhere. Never raises, whatever the inputs hold."""
    try:
        return _compare(baseline, candidate, baseline_repeat, rules, tools, noise)
    except Exception as exc:  # a comparator bug must become an error verdict, not stop the pipeline
        return Comparison(
            status=Status.ERROR,
            findings=(),
            comparator_version=COMPARATOR_VERSION,
            reason=_clip(f"comparator fault: {type(exc).__name__}: {exc}"),
        )


def schema_problem(schema: Any) -> str | None:
    """Why a JSON Schema cannot be used, or None: for config loading to reject it up front."""
    compiled = compile_schema(schema)
    return compiled if isinstance(compiled, str) else None


def _compare(
    baseline: Any, candidate: Any, baseline_repeat: Any, rules: Any, tools: Any, noise: NoiseModel | None
) -> Comparison:
    if not getattr(baseline, "ok", False):
        return Comparison(
            status=Status.ERROR,
            findings=(),
            comparator_version=COMPARATOR_VERSION,
            reason=_clip(f"baseline failed: {getattr(baseline, 'error', None) or 'unknown error'}"),
        )
    context = _Context(rules, tools)
    model = noise if isinstance(noise, NoiseModel) else NoiseModel(threshold=context.threshold)
    model_threshold = context.threshold
    base = _Output(baseline)

    noise_keys: set[tuple[str, str | None]] = set()
    unstable: set[str] | None = None  # value keys where the second replay disagreed; None: not checked
    noise_blocking = False
    observation: NoiseObservation | None = None
    if baseline_repeat is not None and getattr(baseline_repeat, "ok", False):
        repeat = _Output(baseline_repeat)
        self_findings = _diff(base, repeat, context)
        noise_keys = {_noise_key(finding) for finding in self_findings}
        observed, unstable = _value_stability(base, repeat, context)
        observation = NoiseObservation(
            paths=tuple(sorted((key, key in unstable) for key in observed)),
            codes=tuple(sorted({finding.code for finding in self_findings})),
        )
        # The paired gate needs the baseline judged as the candidate is: what the learned model
        # calls noise is not blocking here either, and a stable value that moved is.
        self_findings = _learned_code_noise(self_findings, model, model_threshold)
        self_values = _value_findings(base, repeat, context, set(), model, model_threshold)
        noise_blocking = any(finding.blocking for finding in (*self_findings, *self_values))

    if getattr(candidate, "ok", False):
        other = _Output(candidate)
        findings = _diff(base, other, context)
    else:
        other = None
        error = getattr(candidate, "error", None) or "unknown error"
        findings = [Finding.of(Code.ERROR_CANDIDATE, _clip(f"candidate call failed: {error}"))]

    findings = [
        dataclasses.replace(finding, noise=True)
        if not finding.noise and _noise_key(finding) in noise_keys
        else finding
        for finding in findings
    ]
    findings = _learned_code_noise(findings, model, model_threshold)
    if other is not None and not base.same_output(other):
        findings.extend(_value_findings(base, other, context, unstable, model, model_threshold))
    if any(finding.blocking for finding in findings):
        status = Status.REGRESSION
    elif findings and all(finding.noise for finding in findings):
        status = Status.NOISE
    else:
        status = Status.PASS
    return Comparison(
        status=status,
        findings=tuple(findings),
        comparator_version=COMPARATOR_VERSION,
        baseline_noise_blocking=noise_blocking,
        notes=tuple(context.notes),
        observation=observation,
    )


def _learned_code_noise(findings: list[Finding], model: NoiseModel, threshold: float) -> list[Finding]:
    """Findings whose code the baseline shows against itself at or above the threshold: noise."""
    marked: list[Finding] = []
    for finding in findings:
        rate = None if finding.noise else _noisy(model.code_rate(finding.code), threshold)
        if rate is None:
            marked.append(finding)
        else:
            detail = _clip(f"{finding.detail} (noise: {describe(rate)} on this route)")
            marked.append(dataclasses.replace(finding, noise=True, detail=detail))
    return marked


def _noisy(rate: Any, threshold: float) -> Any:
    if rate is None or rate.samples <= 0 or rate.differed <= 0 or rate.rate < threshold:
        return None
    return rate


def _value_stability(base: _Output, repeat: _Output, context: _Context) -> tuple[set[str], set[str]]:
    """(keys seen, keys where the second replay disagreed) over the values the rule compares."""
    before, after = base.values(), repeat.values()
    observed: set[str] = set()
    unstable: set[str] = set()
    for identity, leaf in before.items():
        ignored, listed = context.value_rules(leaf.shape_key)
        if ignored:
            continue
        counterpart = after.get(identity)
        if not listed and (is_prose(leaf.value) or (counterpart is not None and is_prose(counterpart.value))):
            continue
        observed.add(leaf.key)
        if counterpart is None or not same_value(leaf.value, counterpart.value):
            unstable.add(leaf.key)
    for identity, leaf in after.items():
        if identity not in before and not context.ignores(leaf.shape_key):
            if context.lists(leaf.shape_key) or not is_prose(leaf.value):
                observed.add(leaf.key)
                unstable.add(leaf.key)
    return observed, unstable


def _value_findings(
    base: _Output,
    other: _Output,
    context: _Context,
    unstable: set[str] | None,
    model: NoiseModel,
    threshold: float,
) -> list[Finding]:
    """value.changed (SPEC §8): a scalar at the same path with a different value, where the
    baseline is stable there (its second replay agreed and the learned rate is under the
    threshold) or the path is listed in value_paths."""
    findings: list[Finding] = []
    rules, learned = context.value_rules, model.paths
    for key, shape_key, before_value, after_value, where in _value_pairs(base, other):
        ignored, listed = rules(shape_key)
        if ignored:
            continue  # (a key that is gone has no pair: it is schema.key_missing's to report)
        if not reported_change(before_value, after_value, listed):
            continue
        detail = f"{key}: baseline {shown(before_value)}, candidate {shown(after_value)}"
        if listed:
            findings.append(value_finding(_clip(detail), where))
        elif unstable is not None and key in unstable:
            detail = _clip(f"{detail} (noise: the baseline's second replay differs here too)")
            findings.append(value_finding(detail, where, noise=True))
        else:
            rate = None if key not in learned else _noisy(model.path_rate(key), threshold)
            if rate is None:
                findings.append(value_finding(_clip(detail), where))
            else:
                detail = _clip(f"{detail} (noise: {describe(rate)} on this route)")
                findings.append(value_finding(detail, where, noise=True))
    return findings


def _value_pairs(base: _Output, other: _Output) -> list[ValuePair]:
    """The scalars at the same place on both sides: every pair where a value may have changed.

    Pairs inside parts that are equal on both sides are left out (`changed_value_pairs`); where that
    shortcut cannot be exact, every leaf of `values()` is paired.
    """
    pairs = _changed_value_pairs(base, other)
    if pairs is not None:
        return pairs
    after = other.values()
    return [
        ValuePair(leaf.key, leaf.shape_key, leaf.value, counterpart.value, counterpart.pointer)
        for identity, leaf in base.values().items()
        if (counterpart := after.get(identity)) is not None
    ]


def _changed_value_pairs(base: _Output, other: _Output) -> list[ValuePair] | None:
    """`_value_pairs` without a pair for each equal value; None where it would not be exact."""
    # Under 2 x MAX_LEAVES characters of JSON a document cannot hold more leaves than scalar_leaves keeps.
    if len(base.text) >= 2 * MAX_LEAVES or len(other.text) >= 2 * MAX_LEAVES:
        return None
    pairs: list[ValuePair] = []
    before_json, after_json = base.json, other.json
    if before_json is not None and after_json is not None:
        found = changed_value_pairs(before_json.value, after_json.value)
        if found is None:
            return None
        pairs.extend(found)
    counterparts: dict[tuple[str, int], Any] = {}  # the k-th call of each tool name, as values() pairs them
    seen: dict[str, int] = {}
    for call in other.calls:
        seen[call.name] = seen.get(call.name, -1) + 1
        counterparts[(call.name, seen[call.name])] = call
    seen = {}
    for call in base.calls:
        occurrence = seen[call.name] = seen.get(call.name, -1) + 1
        counterpart = counterparts.get((call.name, occurrence))
        if counterpart is None or not isinstance(call.input, dict | list) or not isinstance(counterpart.input, dict | list):
            continue
        if call.input == counterpart.input:
            continue
        if not (_short_json(call.input) and _short_json(counterpart.input)):
            return None
        found = changed_value_pairs(
            call.input, counterpart.input, f"/content/{counterpart.index}/input", f"tool:{call.name}:"
        )
        if found is None:
            return None
        pairs.extend(found)
    return pairs


def _short_json(value: Any) -> bool:
    """Whether `value` written as JSON is under 2 x MAX_LEAVES characters (so it has few enough leaves)."""
    try:
        return len(orjson.dumps(value)) < 2 * MAX_LEAVES
    except (TypeError, orjson.JSONEncodeError):
        return False


def _noise_key(finding: Finding) -> tuple[str, str | None]:
    # Array indices are wildcarded: the same list item's field going wrong in item 0 in one
    # replay and item 2 in the other is the same noise.
    return finding.code, None if finding.path is None else _DIGITS.sub("/*", finding.path)


# --- one side, read defensively and computed lazily ---------------------------------------------

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class _ToolCall:
    index: int  # position in content, for /content/<index>/input paths
    name: str
    input: Any


class _Output:
    """The parts of a SideResult the rules read, tolerant of malformed content."""

    __slots__ = (
        "_json",
        "_values",
        "_shape",
        "_signature",
        "calls",
        "output_tokens",
        "stop",
        "text",
        "tool_problems",
        "violation",
        "fails_schema",
    )

    def __init__(self, side: Any) -> None:
        content = getattr(side, "content", ())
        blocks = list(content) if isinstance(content, list | tuple) else []
        texts: list[str] = []
        calls: list[_ToolCall] = []
        for index, block in enumerate(blocks):
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text":
                texts.append(str(block.get("text", "")))
            elif kind == "tool_use":
                calls.append(_ToolCall(index, str(block.get("name", "")), block.get("input")))
        self.text = "".join(texts)
        self.calls = tuple(calls)
        stop = getattr(side, "stop_reason", None)
        self.stop = stop if isinstance(stop, str) else None
        tokens = getattr(getattr(side, "usage", None), "output_tokens", 0)
        self.output_tokens = tokens if isinstance(tokens, int | float) and tokens > 0 else 0
        self._json: ExtractedJson | None = _UNSET
        self._shape: ShapeNode = _UNSET
        self._signature: MarkdownSignature = _UNSET
        self._values: dict[str, Leaf] = _UNSET
        # Memos of the schema checks, filled by the rules (one _Context per comparison).
        self.tool_problems: dict[int, tuple[str, str] | None] = {}
        self.violation: tuple[str | None, str] | None = _UNSET
        self.fails_schema: bool | None = None

    @property
    def json(self) -> ExtractedJson | None:
        if self._json is _UNSET:
            self._json = extract_json(self.text)
        return self._json

    @property
    def json_kind(self) -> str | None:
        extracted = self.json
        return None if extracted is None else extracted.kind

    @property
    def shape(self) -> ShapeNode:
        if self._shape is _UNSET:
            extracted = self.json
            self._shape = flatten(None if extracted is None else extracted.value)
        return self._shape

    @property
    def signature(self) -> MarkdownSignature:
        if self._signature is _UNSET:
            self._signature = markdown_signature(self.text)
        return self._signature

    def values(self) -> dict[str, Leaf]:
        """Scalar leaves of the text's JSON and of each tool call's input, by an identity that
        pairs them across sides: the text by pointer; the k-th call of a tool name by pointer."""
        if self._values is _UNSET:
            values: dict[str, Leaf] = {}
            extracted = self.json
            if extracted is not None:
                for pointer_, leaf in scalar_leaves(extracted.value).items():
                    values["t" + pointer_] = leaf
            seen: dict[str, int] = {}
            for call in self.calls:
                occurrence = seen[call.name] = seen.get(call.name, -1) + 1
                if not isinstance(call.input, dict | list):
                    continue
                leaves = scalar_leaves(call.input, f"/content/{call.index}/input", f"tool:{call.name}:")
                for pointer_, leaf in leaves.items():
                    values[f"c{occurrence}:{call.name}\0{pointer_}"] = leaf
            self._values = values
        return self._values

    def same_output(self, other: _Output) -> bool:
        """Equal for every rule: same text, tool calls (ids aside) and stop reason."""
        return (
            self.text == other.text
            and self.stop == other.stop
            and [(c.name, c.input) for c in self.calls] == [(c.name, c.input) for c in other.calls]
        )


# --- rules and schemas for one comparison -----------------------------------------------------


class _Context:
    def __init__(self, rules: Any, tools: Any) -> None:
        self.notes: list[str] = []
        self._compiled: dict[int, tuple[Any, CompiledSchema | str]] = {}
        self.output_schema: Any = getattr(rules, "output_schema", None)
        ignore_paths = getattr(rules, "ignore_paths", ())
        self.ignored = (
            compile_ignore_paths(tuple(p for p in ignore_paths if isinstance(p, str)))
            if isinstance(ignore_paths, list | tuple)
            else None
        )
        value_paths = getattr(rules, "value_paths", ())
        self.listed = (
            compile_ignore_paths(tuple(p for p in value_paths if isinstance(p, str)))
            if isinstance(value_paths, list | tuple)
            else None
        )
        threshold = getattr(rules, "value_noise_threshold", DEFAULT_VALUE_NOISE_THRESHOLD)
        self.threshold = (
            float(threshold)
            if isinstance(threshold, int | float) and 0.0 <= threshold <= 1.0
            else DEFAULT_VALUE_NOISE_THRESHOLD
        )
        self._rules = _rules_for(self.ignored, self.listed)
        self.tools: dict[str, Any] = {}  # tool name -> input_schema (None: nothing to check)
        if isinstance(tools, list | tuple):
            for tool in tools:
                if isinstance(tool, dict) and isinstance(tool.get("name"), str):
                    self.tools[tool["name"]] = tool.get("input_schema")

    def ignores(self, shape_key: str) -> bool:
        return self.ignored is not None and self.ignored.match(shape_key) is not None

    def value_rules(self, shape_key: str) -> tuple[bool, bool]:
        """(ignores, lists) for one shape key."""
        found = self._rules.get(shape_key)
        if found is None:
            if len(shape_key) > _MAX_CACHED_SHAPE_KEY:
                return _path_rules(self.ignored, self.listed, shape_key)
            found = self._rules[shape_key] = _path_rules(self.ignored, self.listed, shape_key)
        return found

    def lists(self, shape_key: str) -> bool:
        """Whether value_paths names this path (or one above it)."""
        return self.listed is not None and self.listed.match(shape_key) is not None

    def output_schema_usable(self) -> bool:
        compiled = self.compiled(self.output_schema)
        if isinstance(compiled, str):
            self._note(f"output_schema: {compiled}")
            return False
        return True

    def compiled(self, schema: Any) -> CompiledSchema | str:
        # Memoized per comparison by identity: the schema objects outlive it, and this saves
        # serializing the same schema once per side.
        entry = self._compiled.get(id(schema))
        if entry is None or entry[0] is not schema:
            entry = self._compiled[id(schema)] = (schema, compile_schema(schema))
        return entry[1]

    def passes(self, schema: Any, instance: Any, what: str) -> bool:
        """Whether `instance` is valid; True too when the check cannot run (a note says why)."""
        compiled = self.compiled(schema)
        if isinstance(compiled, str):
            self._note(f"{what}: {compiled}")
            return True
        try:
            return compiled.is_valid(instance)
        except Exception as exc:  # unresolvable $ref, pathological depth: skip, do not guess
            self._note(_clip(f"{what}: could not validate: {type(exc).__name__}: {exc}"))
            return True

    def violation(self, schema: Any, instance: Any, what: str) -> tuple[str, str] | None:
        """(pointer, message) of the first error of `instance` against `schema`; None when it
        passes or the check cannot run (then a note says why)."""
        compiled = self.compiled(schema)
        if isinstance(compiled, str):
            self._note(f"{what}: {compiled}")
            return None
        try:
            error = compiled.first_error(instance)
        except Exception as exc:  # unresolvable $ref, pathological depth: skip, do not guess
            self._note(_clip(f"{what}: could not validate: {type(exc).__name__}: {exc}"))
            return None
        if error is None:
            return None
        return pointer(error.absolute_path), _clip(error.message)

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)


def _path_rules(ignored: re.Pattern[str] | None, listed: re.Pattern[str] | None, shape_key: str) -> tuple[bool, bool]:
    return (
        ignored is not None and ignored.match(shape_key) is not None,
        listed is not None and listed.match(shape_key) is not None,
    )


# The same paths recur in every answer of a route, and the compiled patterns are shared (an lru_cache
# in jsonpath): matched once per path and pattern pair, not once per leaf of each comparison. The
# memos are bounded: past the limits they start again empty.
_MAX_CACHED_SHAPE_KEY = 200
_MAX_RULE_MEMOS, _MAX_MEMO_KEYS = 256, 8192
_rule_memos: dict[tuple[Any, Any], dict[str, tuple[bool, bool]]] = {}


def _rules_for(ignored: re.Pattern[str] | None, listed: re.Pattern[str] | None) -> dict[str, tuple[bool, bool]]:
    """The memo of (ignores, lists) by shape key for one pair of compiled patterns."""
    memo = _rule_memos.get((ignored, listed))
    if memo is None or len(memo) > _MAX_MEMO_KEYS:
        if len(_rule_memos) >= _MAX_RULE_MEMOS:
            _rule_memos.clear()
        memo = _rule_memos[(ignored, listed)] = {}
    return memo


# --- the rules ------------------------------------------------------------------------------------


def _diff(base: _Output, other: _Output, context: _Context) -> list[Finding]:
    """Findings for `other` against `base`; absolute ones already marked noise when `base` has them."""
    if base.same_output(other):
        # Every relative rule is silent on equal outputs, and whatever absolute check `other`
        # fails, `base` fails the same way: pre-existing, so noise.
        findings = _absolute_findings(other, context, None)
        findings.extend(_length_findings(base, other))
        return findings

    findings = _format_findings(base, other)
    findings.extend(_structure_findings(base, other, context))
    findings.extend(_absolute_findings(other, context, base))
    findings.extend(_tool_findings(base, other))
    findings.extend(_stop_findings(base, other))
    findings.extend(_markdown_findings(base, other))
    findings.extend(_length_findings(base, other))
    return findings


def _format_findings(base: _Output, other: _Output) -> list[Finding]:
    base_kind, other_kind = base.json_kind, other.json_kind
    if base_kind in JSON_KINDS and other_kind is None:
        return [
            Finding.of(
                Code.FORMAT_JSON_INVALID,
                f"baseline text was {base_kind} JSON; candidate text has no parseable JSON object or array",
            )
        ]
    if base_kind == "bare" and other_kind in ("fenced", "embedded"):
        how = "a code fence" if other_kind == "fenced" else "prose"
        return [Finding.of(Code.FORMAT_JSON_WRAPPED, f"baseline gave bare JSON; candidate wrapped it in {how}")]
    return []


def _structure_findings(base: _Output, other: _Output, context: _Context) -> list[Finding]:
    if base.json is None or other.json is None:
        return []
    if same_skeleton(base.json.value, other.json.value):
        return []  # equal shape trees: the walk would find nothing, so they are not built
    walk = _ShapeWalk(base.json.value, other.json.value, context.ignored)
    walk.diff(base.shape, other.shape, "", ())
    return walk.findings


class _ShapeWalk:
    """Diff two shape trees top-down. A key is missing (or added) only where the other side has
    an object at its parent, and only that key is reported, not its descendants."""

    def __init__(self, before: Any, after: Any, ignored: re.Pattern[str] | None) -> None:
        self.before, self.after, self.ignored = before, after, ignored
        self.findings: list[Finding] = []

    def diff(self, before: ShapeNode, after: ShapeNode, skey: str, path: tuple[str | None, ...]) -> None:
        if self.ignores(skey):
            return  # the path and everything below it
        if before.types != after.types:
            before_kinds, after_kinds = before.kinds, after.kinds
            if before_kinds.isdisjoint(after_kinds) and _NULL_ONLY not in (before_kinds, after_kinds):
                detail = f"baseline {_types(before_kinds)}, candidate {_types(after_kinds)}"
                self.report(Code.SCHEMA_TYPE_CHANGED, detail, self.after, path)
        before_members, after_members = before.members, after.members
        for key, node in before_members.items():
            counterpart = after_members.get(key)
            if counterpart is None:
                if dict in after.types and not self.ignores(self.child(skey, key)):
                    detail = f"key {key!r} is in the baseline JSON, not in the candidate's"
                    self.report(Code.SCHEMA_KEY_MISSING, detail, self.before, (*path, key))
            elif node.types != counterpart.types or _has_children(node) or _has_children(counterpart):
                self.diff(node, counterpart, self.child(skey, key), (*path, key))
            # else: a leaf of the same types on both sides, nothing to find below it
        if dict in before.types:
            for key in after_members:
                if key not in before_members and not self.ignores(self.child(skey, key)):
                    detail = f"key {key!r} is in the candidate JSON, not in the baseline's"
                    self.report(Code.SCHEMA_KEY_ADDED, detail, self.after, (*path, key))
        if before.items is not None and after.items is not None:
            self.diff(before.items, after.items, self.child(skey, None), (*path, None))

    def child(self, skey: str, key: str | None) -> str:
        # Shape keys only serve ignore_paths; without any, they are not built.
        if self.ignored is None:
            return ""
        return f"{skey}/{ARRAY_ITEM if key is None else shape_token(key)}"

    def ignores(self, skey: str) -> bool:
        return self.ignored is not None and self.ignored.match(skey) is not None

    def report(self, code: Code, detail: str, value: Any, path: tuple[str | None, ...]) -> None:
        self.findings.append(Finding.of(code, detail, first_pointer(value, path)))


def _has_children(node: ShapeNode) -> bool:
    return bool(node.members) or node.items is not None


def _types(types: Iterable[str]) -> str:
    return " or ".join(sorted(types))


def _absolute_findings(side: _Output, context: _Context, base: _Output | None) -> list[Finding]:
    """Checks against the route's and the request's schemas, which need no other side.

    What `base` fails too is pre-existing, not the candidate's doing: noise. `base=None` means
    the baseline's output is identical to `side`'s.
    """
    findings: list[Finding] = []
    if context.output_schema is not None:
        violation = _output_violation(side, context)
        if violation is not None:
            path, message = violation
            noise = base is None or _fails_output_schema(base, context)
            findings.append(dataclasses.replace(Finding.of(Code.SCHEMA_VIOLATION, message, path), noise=noise))
    for call in side.calls:
        problem = _tool_problem(side, call, context)
        if problem is not None:
            path, message = problem
            noise = base is None or any(
                other.name == call.name and _tool_problem(base, other, context) is not None
                for other in base.calls
            )
            findings.append(dataclasses.replace(Finding.of(Code.TOOL_INPUT_INVALID, message, path), noise=noise))
    return findings


def _fails_output_schema(side: _Output, context: _Context) -> bool:
    """Whether `side` fails the output schema: a yes or no, cheaper than naming the first error."""
    if side.violation is not _UNSET:
        return side.violation is not None
    if side.fails_schema is None:
        extracted = side.json
        side.fails_schema = context.output_schema_usable() and (
            extracted is None or not context.passes(context.output_schema, extracted.value, "output_schema")
        )
    return side.fails_schema


def _output_violation(side: _Output, context: _Context) -> tuple[str | None, str] | None:
    if side.violation is not _UNSET:
        return side.violation
    extracted = side.json
    violation: tuple[str | None, str] | None
    if not context.output_schema_usable():
        violation = None
    elif extracted is None:
        violation = None, "output_schema: the output has no JSON to validate"
    else:
        problem = context.violation(context.output_schema, extracted.value, "output_schema")
        violation = (
            None
            if problem is None
            else (problem[0], f"output_schema: {problem[0] or '(root)'}: {problem[1]}")
        )
    side.violation = violation
    return violation


def _tool_problem(side: _Output, call: _ToolCall, context: _Context) -> tuple[str, str] | None:
    # With no tool definitions supplied there is nothing to check calls against.
    if not context.tools:
        return None
    if call.index in side.tool_problems:
        return side.tool_problems[call.index]
    problem: tuple[str, str] | None
    if call.name not in context.tools:
        problem = f"/content/{call.index}/name", f"tool {call.name!r} is not among the request's tools"
    else:
        schema = context.tools[call.name]
        found = (
            None
            if schema is None
            else context.violation(schema, call.input, f"input_schema of tool {call.name!r}")
        )
        problem = (
            None
            if found is None
            else (f"/content/{call.index}/input{found[0]}", f"tool {call.name!r}: {found[1]}")
        )
    side.tool_problems[call.index] = problem
    return problem


def _tool_findings(base: _Output, other: _Output) -> list[Finding]:
    """Tool calls as multisets of names (SPEC §8): a new name is unexpected and a dropped one
    missing, whatever else is called; equal totals of different names are name_changed; the same
    names a different number of times, count_changed (minor)."""
    before = [call.name for call in base.calls]
    after = [call.name for call in other.calls]
    counts_before, counts_after = Counter(before), Counter(after)
    if counts_before == counts_after:
        return []
    if not after:
        return [Finding.of(Code.TOOL_CALL_MISSING, f"baseline called {_names(before)}; candidate called none")]
    if not before:
        return [Finding.of(Code.TOOL_CALL_UNEXPECTED, f"candidate called {_names(after)}; baseline called none")]
    added = [name for name in counts_after if name not in counts_before]
    dropped = [name for name in counts_before if name not in counts_after]
    if (added or dropped) and len(before) == len(after):
        return [
            Finding.of(Code.TOOL_NAME_CHANGED, f"baseline called {_names(before)}; candidate {_names(after)}")
        ]
    findings = [
        Finding.of(
            Code.TOOL_CALL_UNEXPECTED,
            _clip(f"candidate called {name!r}, which the baseline did not call "
                  f"(baseline {_names(before)}; candidate {_names(after)})"),
        )
        for name in added
    ]
    findings.extend(
        Finding.of(
            Code.TOOL_CALL_MISSING,
            _clip(f"baseline called {name!r}; the candidate did not "
                  f"(baseline {_names(before)}; candidate {_names(after)})"),
        )
        for name in dropped
    )
    if not findings:
        findings.append(
            Finding.of(
                Code.TOOL_COUNT_CHANGED,
                f"baseline made {len(before)} tool calls {_names(before)}; "
                f"candidate {len(after)} {_names(after)}",
            )
        )
    return findings


def _names(names: list[str]) -> str:
    return _clip("[" + ", ".join(names) + "]", 200)


def _stop_findings(base: _Output, other: _Output) -> list[Finding]:
    findings: list[Finding] = []
    if other.stop in _TRUNCATION_STOPS and base.stop not in _TRUNCATION_STOPS:
        findings.append(
            Finding.of(Code.STOP_TRUNCATED, f"candidate stopped on {other.stop}; baseline on {base.stop}")
        )
    if other.stop == "refusal" and base.stop != "refusal":
        findings.append(Finding.of(Code.STOP_REFUSAL, f"candidate refused; baseline stopped on {base.stop}"))
    return findings


def _markdown_findings(base: _Output, other: _Output) -> list[Finding]:
    if base.json_kind in JSON_KINDS or other.json_kind in JSON_KINDS:
        return []
    if not base.text.strip() or not other.text.strip():
        return []
    changes = base.signature.changes_to(other.signature)
    if not changes:
        return []
    return [Finding.of(Code.STYLE_MARKDOWN_DRIFT, "; ".join(changes))]


def _length_findings(base: _Output, other: _Output) -> list[Finding]:
    if base.output_tokens <= 0:
        return []
    ratio = other.output_tokens / base.output_tokens
    if _LENGTH_RATIO_MIN <= ratio <= _LENGTH_RATIO_MAX:
        return []
    return [
        Finding.of(
            Code.LENGTH_DRIFT,
            f"candidate {other.output_tokens} output tokens vs baseline {base.output_tokens} ({ratio:.2f}x)",
        )
    ]


# Finding(...) goes through type.__call__ and the frozen dataclass's __init__, which counts at one
# value.changed finding per changed value. This sets the same five fields on the same slots, as that
# __init__ does (Finding has no __post_init__).
_new_object, _set_field = object.__new__, object.__setattr__


def value_finding(detail: str, path: str, noise: bool = False) -> Finding:
    """Finding(Code.VALUE_CHANGED, its severity, detail, path, noise), built faster."""
    finding: Finding = _new_object(Finding)
    _set_field(finding, "code", _VALUE_CHANGED)
    _set_field(finding, "severity", _VALUE_SEVERITY)
    _set_field(finding, "detail", detail)
    _set_field(finding, "path", path)
    _set_field(finding, "noise", noise)
    return finding


def _clip(text: str, limit: int = _MAX_DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
