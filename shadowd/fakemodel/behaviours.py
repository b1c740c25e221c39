"""Scripted model behaviours: the API rules, latency and faults of each fake model id."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from shadowd.fakemodel.batch_plan import BatchPlan, parse_batch_plan
from shadowd.fakemodel.capacity import (
    CapacityError,
    CapacityPlan,
    RequestQuota,
    parse_capacity,
    parse_rate_limit,
)
from shadowd.fakemodel.digest import unit
from shadowd.fakemodel.request_view import OutputKind, RequestView, view_request

CONTENT_FAULTS: Mapping[OutputKind, tuple[str, ...]] = MappingProxyType(
    {
        # `nul_char` puts U+0000 in the answer's text, as real models sometimes do.
        "json": (
            "json_invalid", "json_wrapped", "key_missing", "type_changed", "truncate", "refusal",
            "label_changed", "number_changed", "noisy_value_changed", "nul_char",
        ),
        "tool_call": (
            "tool_input_invalid", "tool_call_missing", "tool_name_changed", "truncate", "refusal",
            "tool_argument_changed", "tool_call_extra",
        ),
        "tool_text": (
            "tool_call_unexpected", "markdown_drift", "length_drift", "truncate", "refusal", "wrong_answer", "nul_char",
        ),
        "text": ("markdown_drift", "length_drift", "truncate", "refusal", "wrong_answer", "nul_char"),
    }
)
TRANSIENT_FAULTS = ("rate_limited", "overloaded")
FAULT_NAMES: frozenset[str] = frozenset(
    {name for names in CONTENT_FAULTS.values() for name in names} | {"error", *TRANSIENT_FAULTS}
)

_BEHAVIOUR_KEYS = frozenset(
    {
        "latency_ms", "latency_jitter_ms", "faults", "nondeterminism", "retry_after_s", "noisy_fields",
        "grader_noise", "grade_malformed",
    }
)
_RULE_KEYS = frozenset({"max_output", "reject_thinking_enabled", "reject_sampling_params"})


class BehaviourError(ValueError):
    """A behaviour file that cannot be used; the message names the key and the file."""


@dataclass(frozen=True, slots=True)
class ModelRules:
    """The API rules a model enforces on requests."""

    max_output: int
    reject_thinking_enabled: bool = False
    reject_sampling_params: bool = False


BUILTIN_RULES: Mapping[str, ModelRules] = MappingProxyType(
    {
        "claude-opus-4-7": ModelRules(128_000, reject_thinking_enabled=True, reject_sampling_params=True),
        "claude-opus-4-6": ModelRules(128_000),
        "claude-sonnet-4-6": ModelRules(64_000),
    }
)


@dataclass(frozen=True, slots=True)
class ModelBehaviour:
    """How one model misbehaves: added latency, fault rates and call-to-call nondeterminism."""

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    faults: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    nondeterminism: float = 0.0
    retry_after_s: float = 0.0
    # Object keys (in JSON answers and tool inputs) whose values vary on every call, like a
    # summary a model rewords each time. When set, `nondeterminism` varies free text only, so
    # every other value is stable call to call.
    noisy_fields: frozenset[str] = frozenset()
    # As a judge answering `shadowd_grade` calls: the share of grades flipped at random, and the
    # share answered with malformed tool input.
    grader_noise: float = 0.0
    grade_malformed: float = 0.0


CLEAN = ModelBehaviour()


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Every fault decision for one (model, request): pure, so each replay sees the same plan."""

    error: bool  # persistent 500 on every attempt
    transient: str | None  # rate_limited | overloaded on the first attempt only
    content: str | None  # how a successful answer is spoiled

    @property
    def outcome(self) -> str | None:
        """The fault a caller retrying transient errors finally sees."""
        return "error" if self.error else self.content


@dataclass(frozen=True, slots=True)
class Behaviours:
    """Behaviours per model id, a default for unlisted ids, and the API rules per model id."""

    models: Mapping[str, ModelBehaviour] = field(default_factory=lambda: MappingProxyType({}))
    default: ModelBehaviour = CLEAN
    rules: Mapping[str, ModelRules] = field(default_factory=lambda: BUILTIN_RULES)
    capacity: CapacityPlan = field(default_factory=CapacityPlan)  # windows that hit every model alike
    rate_limit: RequestQuota | None = None  # one request quota shared by every model
    batches: BatchPlan = field(default_factory=BatchPlan)  # how the Message Batches API behaves

    def behaviour_for(self, model: str) -> ModelBehaviour:
        return self.models.get(model, self.default)

    def rules_for(self, model: str) -> ModelRules | None:
        """The model's API rules; None means the model does not exist (404)."""
        return self.rules.get(model)

    def plan_faults(self, model: str, request: dict[str, Any] | RequestView) -> FaultPlan:
        """Decide every fault for this model and request from their hash alone."""
        view = request if isinstance(request, RequestView) else view_request(request)
        faults = self.behaviour_for(model).faults
        if not faults:
            return FaultPlan(False, None, None)
        digest = view.digest
        error = unit(digest, model, "error") < faults.get("error", 0.0)
        transient = _walk(unit(digest, model, "transient"), faults, TRANSIENT_FAULTS)
        applicable = CONTENT_FAULTS[view.kind]
        if len(view.tools) < 2:
            applicable = tuple(name for name in applicable if name not in ("tool_name_changed", "tool_call_extra"))
        content = _walk(unit(digest, model, "content"), faults, applicable)
        return FaultPlan(error, transient, content)

    def decide_fault(self, model: str, request: dict[str, Any] | RequestView) -> str | None:
        """The fault a retrying caller finally sees for this request: `error`, a content fault or None."""
        return self.plan_faults(model, request).outcome

    def latency_s(self, model: str, view: RequestView) -> float:
        behaviour = self.behaviour_for(model)
        jitter = behaviour.latency_jitter_ms * (2 * unit(view.digest, model, "jitter") - 1)
        return max(0.0, behaviour.latency_ms + jitter) / 1000

    def grade_plan(self, model: str, view: RequestView, wrong: bool) -> tuple[bool, bool]:
        """(acceptable, malformed) for a `shadowd_grade` call of this judge model: an answer carrying
        the wrong-answer marker is unacceptable, and `grader_noise` flips the grade at that rate."""
        behaviour = self.behaviour_for(model)
        flipped = unit(view.digest, model, "grader_noise") < behaviour.grader_noise
        malformed = unit(view.digest, model, "grade_malformed") < behaviour.grade_malformed
        return (not wrong) != flipped, malformed

    def is_nondeterministic(self, model: str, view: RequestView) -> bool:
        rate = self.behaviour_for(model).nondeterminism
        return rate > 0 and unit(view.digest, model, "nondeterminism") < rate


def _walk(u: float, rates: Mapping[str, float], names: tuple[str, ...]) -> str | None:
    # One draw against the cumulative rates picks at most one fault, each with its own rate
    # (as long as the applicable rates sum to at most 1).
    cumulative = 0.0
    for name in names:
        cumulative += rates.get(name, 0.0)
        if u < cumulative:
            return name
    return None


def load_behaviours(path: str | Path | None) -> Behaviours:
    """Read a behaviour YAML file; None gives the built-in defaults (every model clean, no latency)."""
    if path is None:
        return Behaviours()
    source = str(path)
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise BehaviourError(f"{source}: cannot read behaviour file: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise BehaviourError(f"{source}: not valid YAML: {exc}") from exc
    return parse_behaviours(document, source)


def parse_behaviours(document: Any, source: str = "<behaviours>") -> Behaviours:
    """Build Behaviours from a parsed YAML document; errors name the key and the source."""
    if document is None:
        return Behaviours()
    if not isinstance(document, dict):
        raise BehaviourError(f"{source}: the top level must be a mapping with a `models` key")
    unknown = sorted(set(map(str, document)) - {"models", "capacity", "rate_limit", "batches"})
    if unknown:
        raise BehaviourError(
            f"{source}: unknown key `{unknown[0]}` (expected `models`, `capacity`, `rate_limit`, `batches`)"
        )
    try:
        capacity = parse_capacity(document.get("capacity"), source)
        rate_limit = parse_rate_limit(document.get("rate_limit"), source)
    except CapacityError as exc:
        raise BehaviourError(str(exc)) from None
    try:
        batches = parse_batch_plan(document.get("batches"), source)
    except ValueError as exc:
        raise BehaviourError(str(exc)) from None
    models_doc = document.get("models") or {}
    if not isinstance(models_doc, dict):
        raise BehaviourError(f"{source}: `models` must be a mapping of model id to behaviour")

    models: dict[str, ModelBehaviour] = {}
    rules = dict(BUILTIN_RULES)
    default = CLEAN
    for model_id, entry in models_doc.items():
        key = f"models.{model_id}"
        entry = {} if entry is None else entry
        if not isinstance(entry, dict):
            raise BehaviourError(f"{source}: `{key}` must be a mapping")
        allowed = _BEHAVIOUR_KEYS if model_id == "default" else _BEHAVIOUR_KEYS | _RULE_KEYS
        for name in entry:
            if name not in allowed:
                raise BehaviourError(f"{source}: unknown key `{key}.{name}`")
        behaviour = _parse_behaviour(entry, key, source)
        if model_id == "default":
            default = behaviour
            continue
        models[str(model_id)] = behaviour
        model_rules = _parse_rules(entry, rules.get(str(model_id)), key, source)
        if model_rules is not None:
            rules[str(model_id)] = model_rules
    return Behaviours(MappingProxyType(models), default, MappingProxyType(rules), capacity, rate_limit, batches)


def _parse_behaviour(entry: dict[str, Any], key: str, source: str) -> ModelBehaviour:
    faults_doc = entry.get("faults") or {}
    if not isinstance(faults_doc, dict):
        raise BehaviourError(f"{source}: `{key}.faults` must be a mapping of fault name to rate")
    faults: dict[str, float] = {}
    for name, rate in faults_doc.items():
        if name not in FAULT_NAMES:
            raise BehaviourError(
                f"{source}: unknown fault `{key}.faults.{name}` (known: {', '.join(sorted(FAULT_NAMES))})"
            )
        faults[name] = _number(rate, f"{key}.faults.{name}", source, high=1.0)
    return ModelBehaviour(
        latency_ms=_number(entry.get("latency_ms", 0), f"{key}.latency_ms", source),
        latency_jitter_ms=_number(entry.get("latency_jitter_ms", 0), f"{key}.latency_jitter_ms", source),
        faults=MappingProxyType({name: rate for name, rate in faults.items() if rate > 0}),
        nondeterminism=_number(entry.get("nondeterminism", 0), f"{key}.nondeterminism", source, high=1.0),
        retry_after_s=_number(entry.get("retry_after_s", 0), f"{key}.retry_after_s", source),
        noisy_fields=_names(entry.get("noisy_fields"), f"{key}.noisy_fields", source),
        grader_noise=_number(entry.get("grader_noise", 0), f"{key}.grader_noise", source, high=1.0),
        grade_malformed=_number(entry.get("grade_malformed", 0), f"{key}.grade_malformed", source, high=1.0),
    )


def _names(value: Any, key: str, source: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
        raise BehaviourError(f"{source}: `{key}` must be a list of object key names, got {value!r}")
    return frozenset(value)


def _parse_rules(
    entry: dict[str, Any], builtin: ModelRules | None, key: str, source: str
) -> ModelRules | None:
    if builtin is None and "max_output" not in entry:
        raise BehaviourError(
            f"{source}: `{key}.max_output` is required for a model that is not built in "
            f"(built in: {', '.join(BUILTIN_RULES)})"
        )
    if not _RULE_KEYS & set(entry):
        return builtin
    max_output = entry.get("max_output", builtin.max_output if builtin else 0)
    if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 1:
        raise BehaviourError(f"{source}: `{key}.max_output` must be a positive integer, got {max_output!r}")
    flags = {}
    for name in ("reject_thinking_enabled", "reject_sampling_params"):
        value = entry.get(name, getattr(builtin, name) if builtin else False)
        if not isinstance(value, bool):
            raise BehaviourError(f"{source}: `{key}.{name}` must be true or false, got {value!r}")
        flags[name] = value
    return ModelRules(max_output, **flags)


def _number(value: Any, key: str, source: str, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BehaviourError(f"{source}: `{key}` must be a number, got {value!r}")
    if value < 0 or (high is not None and value > high):
        bound = f"[0, {high:g}]" if high is not None else ">= 0"
        raise BehaviourError(f"{source}: `{key}` must be in {bound}, got {value!r}")
    return float(value)
