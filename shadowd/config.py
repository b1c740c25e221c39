"""The YAML config (SPEC §2) and environment settings, validated once at start-up."""
# Over 400 lines: the YAML schema (SPEC §2) is one set of pydantic models validated together, with cross-key
# checks.

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shadowd.core.compare import RouteRules, schema_problem
from shadowd.core.gate import GateConfig
from shadowd.core.jsonpath import ignore_path_pattern
from shadowd.core.judge import JudgeSpec
from shadowd.core.noise import DEFAULT_VALUE_NOISE_THRESHOLD
from shadowd.core.profiles import ModelProfile, ProfileError, resolve_profiles
from shadowd.core.redaction import Redactor, StoreOutputs
from shadowd.core.rollout import RolloutSpec
from shadowd.credentials import env_form, secret_keys
from shadowd.retention_config import RetentionConfig


class ConfigError(Exception):
    """A config problem, named by its key and file so the operator can fix it without guessing."""

    def __init__(self, key: str, detail: str, file: Path | None) -> None:
        where = str(file) if file else "<built-in config>"
        super().__init__(f"{where}: {key}: {detail}")
        self.key = key
        self.file = file
        self.detail = detail


class Settings(BaseSettings):
    """Process settings from the environment (`SHADOWD_` prefix); secrets live only here."""

    model_config = SettingsConfigDict(env_prefix="SHADOWD_", extra="ignore")

    database_url: str | None = None
    config: Path | None = None
    kafka_bootstrap_servers: str | None = None
    admin_token: str | None = None
    read_token: str | None = None
    tokens_file: Path | None = None  # named API tokens, hashed: name -> {sha256, role}
    log_level: str = "info"
    log_format: Literal["auto", "json", "console"] = "auto"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaConfig(_Strict):
    bootstrap_servers: str = "localhost:9092"
    topic: str = "llm.mirror"
    group_id: str = "shadowd"
    dlq_topic: str | None = None  # default: <topic>.dlq
    decisions_topic: str = "shadowd.decisions"
    client: dict[str, Any] = Field(default_factory=dict)

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.topic}.dlq"


class ModelsConfig(_Strict):
    base_url: str | None = None
    api_key_env: str = "ANTHROPIC_API_KEY"
    timeout_s: float = Field(default=120.0, gt=0)
    max_concurrency: int = Field(default=256, ge=1)
    max_attempts: int = Field(default=4, ge=1, le=20)
    # Capacity errors (429, 529, overload, timeouts, connection errors) are retried until this many
    # seconds after a record's replay began: a shadow can wait.
    retry_deadline_s: float = Field(default=600.0, gt=0, le=86_400)
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Share of the price the Message Batches API takes off (replay_mode: batch): 0.5 = half price.
    batch_discount: float = Field(default=0.5, ge=0, lt=1)
    # The SDK's OpenTelemetry spans (and trace headers) for shadow calls. Off by default: shadow calls
    # are not production traffic, and a span took 10-12 % of the SDK's own CPU per call
    # (benchmarks/sdk_traces_bench.py).
    # true: the SDK's own default, which its ANTHROPIC_OPEN_TELEMETRY* environment variables steer.
    sdk_traces: bool = False

    @property
    def sdk_open_telemetry(self) -> Literal[False] | None:
        """The SDK client's `open_telemetry` option: False turns its tracing off, None leaves it to the SDK."""
        return None if self.sdk_traces else False


class BatchSection(_Strict):
    """How `replay_mode: batch` rollouts gather and wait for their Message Batches (extension)."""

    window_records: int = Field(default=1000, ge=1, le=100_000)  # model calls per batch at most
    window_s: float = Field(default=60.0, gt=0, le=86_400)  # a window is submitted this long after it opened
    poll_initial_s: float = Field(default=5.0, gt=0, le=3600)  # first wait before polling a batch
    poll_max_s: float = Field(default=60.0, gt=0, le=3600)  # polls back off up to this interval

    @model_validator(mode="after")
    def _poll_bounds(self) -> BatchSection:
        if self.poll_max_s < self.poll_initial_s:
            raise ValueError("poll_max_s must be at least poll_initial_s")
        return self


class JudgeSection(_Strict):
    model: str = Field(min_length=1)
    rubric: str = Field(min_length=1, max_length=20_000)
    sample_rate: float = Field(default=1.0, ge=0, le=1)
    max_tokens: int = Field(default=1024, ge=64, le=8192)

    @field_validator("rubric")
    @classmethod
    def _rubric_says_something(cls, rubric: str) -> str:
        if not rubric.strip():
            raise ValueError("the rubric is blank; say what makes an answer acceptable")
        return rubric


class RouteConfig(_Strict):
    output_schema: str | None = None
    ignore_paths: list[str] = Field(default_factory=list)
    store_outputs: StoreOutputs | None = None  # default: privacy.store_outputs
    redact_patterns: list[str] = Field(default_factory=list)  # added to privacy.redact_patterns
    value_paths: list[str] = Field(default_factory=list)
    value_noise_threshold: float = Field(default=DEFAULT_VALUE_NOISE_THRESHOLD, ge=0, le=1)
    judge: JudgeSection | None = None
    # live | batch for every rollout's calls on this route; absent: each rollout's own replay_mode.
    replay_mode: Literal["live", "batch"] | None = None

    @field_validator("ignore_paths", "value_paths")
    @classmethod
    def _paths_understood(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if ignore_path_pattern(path) is None:
                raise ValueError(f"{path!r} is not a JSON path shadowd understands (e.g. $.a.b, $.items[*].id)")
        return paths


class GateSection(_Strict):
    min_samples: int = Field(default=200, ge=1)
    max_regression_rate_increase: float = Field(default=0.01, ge=0, le=1)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    max_latency_p95_ratio: float = Field(default=1.5, gt=0)
    max_cost_ratio: float = Field(default=2.0, gt=0)


class BudgetSection(_Strict):
    usd_per_hour: float | None = Field(default=None, gt=0)


class RolloutConfig(_Strict):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    baseline: str
    candidate: str
    baseline_source: Literal["replay", "recorded"] = "replay"
    # true = 1.0, false = 0, or the share of requests whose baseline is replayed a second time.
    noise_check: bool | float = True
    routes: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    sample_rate: float = Field(default=1.0, ge=0, le=1)
    stages: list[int] = Field(default_factory=lambda: [1, 5, 25, 50, 100], min_length=1)
    gate: GateSection = Field(default_factory=GateSection)
    budget: BudgetSection = Field(default_factory=BudgetSection)
    # live: each call through the Messages API; batch: through the Message Batches API at its discount
    # (latency not judged; verdicts come when the batch ends).
    replay_mode: Literal["live", "batch"] = "live"

    @field_validator("noise_check")
    @classmethod
    def _fraction(cls, value: bool | float) -> bool | float:
        if not isinstance(value, bool) and not 0.0 <= value <= 1.0:
            raise ValueError("noise_check must be true, false or a fraction in [0, 1]")
        return value

    @field_validator("stages")
    @classmethod
    def _stages_rise(cls, stages: list[int]) -> list[int]:
        if any(not 0 < s <= 100 for s in stages):
            raise ValueError("every stage must be a percentage in 1..100")
        if any(b <= a for a, b in zip(stages, stages[1:], strict=False)):
            raise ValueError("stages must strictly increase")
        return stages


class PrivacyConfig(_Strict):
    """What of the traffic shadowd keeps: outputs per route, and dead-letter payloads."""

    store_outputs: StoreOutputs = "full"  # routes without their own store_outputs
    redact_patterns: list[str] = Field(default_factory=list)  # regexes redacted besides the built-in ones
    dead_letter_payload: StoreOutputs = "redacted"
    dead_letter_max_bytes: int = Field(default=1024 * 1024, ge=0, le=16 * 1024 * 1024)


class FileConfig(_Strict):
    kafka: KafkaConfig = Field(default_factory=KafkaConfig)
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    rollouts: list[RolloutConfig] = Field(default_factory=list)
    batch: BatchSection = Field(default_factory=BatchSection)

    @model_validator(mode="after")
    def _unique_rollouts(self) -> FileConfig:
        seen: set[str] = set()
        for rollout in self.rollouts:
            if rollout.name in seen:
                raise ValueError(f"rollout name {rollout.name!r} is used twice")
            seen.add(rollout.name)
        return self


class Config:
    """The validated config with everything resolved: schemas loaded, profiles merged, env applied."""

    def __init__(
        self,
        file: FileConfig,
        path: Path | None,
        route_rules: dict[str, RouteRules],
        profiles: dict[str, ModelProfile],
        rollouts: tuple[RolloutSpec, ...],
        judges: dict[str, JudgeSpec] | None = None,
        redactors: dict[str, Redactor] | None = None,
    ) -> None:
        self.file = file
        self.judges = judges or {}
        self.privacy = file.privacy
        self.retention = file.retention
        # route -> its redactor; "" is the one for routes without their own patterns.
        self.redactors = redactors or {"": Redactor()}
        self.path = path
        self.kafka = file.kafka
        self.models = file.models
        self.batch = file.batch
        self.route_rules = route_rules
        self.profiles = profiles
        self.rollouts = rollouts

    def rules_for(self, route: str) -> RouteRules:
        return self.route_rules.get(route) or RouteRules()

    def store_outputs_for(self, route: str) -> StoreOutputs:
        spec = self.file.routes.get(route)
        return spec.store_outputs if spec is not None and spec.store_outputs else self.privacy.store_outputs

    def redactor_for(self, route: str | None) -> Redactor:
        return self.redactors.get(route or "") or self.redactors[""]

    def judge_for(self, route: str) -> JudgeSpec | None:
        """The route's judge (SPEC §8), or None when its answers are not graded."""
        return self.judges.get(route)

    def rollout(self, name: str) -> RolloutSpec | None:
        return next((r for r in self.rollouts if r.name == name), None)

    def api_key(self) -> str | None:
        return os.environ.get(self.models.api_key_env)


def load_config(path: Path | None, settings: Settings | None = None) -> Config:
    """Read and validate `path` (None = defaults); any problem raises ConfigError naming key and file."""
    settings = settings or Settings()
    raw: Any = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("(file)", f"cannot read the config: {exc.strerror or exc}", path) from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError("(file)", f"not valid YAML: {exc}", path) from None
        if not isinstance(raw, dict):
            raise ConfigError("(top level)", "must be a mapping", path)
    for key in secret_keys(raw):
        raise ConfigError(
            key,
            "secrets may not be written in the config file; name the environment variable that holds it "
            f"instead: {env_form(key)}",
            path,
        )
    if settings.kafka_bootstrap_servers:
        raw = {**raw, "kafka": {**(raw.get("kafka") or {}), "bootstrap_servers": settings.kafka_bootstrap_servers}}
    try:
        file = FileConfig.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = _dotted(error["loc"], raw)
        raise ConfigError(key, _describe(error), path) from None

    base_dir = path.parent if path is not None else Path.cwd()
    route_rules = {
        route: RouteRules(
            output_schema=_load_schema(f"routes.{route}.output_schema", spec.output_schema, base_dir, path),
            ignore_paths=tuple(spec.ignore_paths),
            value_paths=tuple(spec.value_paths),
            value_noise_threshold=spec.value_noise_threshold,
        )
        for route, spec in file.routes.items()
    }
    try:
        profiles = resolve_profiles(file.models.profiles)
    except ProfileError as exc:
        raise ConfigError(exc.key, str(exc).split(": ", 1)[-1], path) from None

    judges = _judges(file, profiles, path)
    route_modes = tuple(sorted(
        (route, route_spec.replay_mode) for route, route_spec in file.routes.items() if route_spec.replay_mode is not None
    ))
    rollouts = []
    for index, rollout in enumerate(file.rollouts):
        for side in ("baseline", "candidate"):
            model = getattr(rollout, side)
            if model not in profiles:
                raise ConfigError(
                    f"rollouts[{index}].{side}",
                    f"no capability profile for {model!r}; add one under models.profiles",
                    path,
                )
        spec = RolloutSpec(
            name=rollout.name,
            baseline=rollout.baseline,
            candidate=rollout.candidate,
            baseline_source=rollout.baseline_source,
            noise_check=float(rollout.noise_check),
            routes=tuple(rollout.routes),
            sample_rate=rollout.sample_rate,
            stages=tuple(rollout.stages),
            gate=GateConfig(**rollout.gate.model_dump()),
            budget_usd_per_hour=rollout.budget.usd_per_hour,
            replay_mode=rollout.replay_mode,
            route_modes=route_modes,
        )
        # Latency is judged when some of the rollout's calls can be live, and on those alone.
        rollouts.append(replace(spec, gate=replace(spec.gate, latency_judged=spec.latency_judged)))
    return Config(file, path, route_rules, profiles, tuple(rollouts), judges, _redactors(file, path))


def _redactors(file: FileConfig, path: Path | None) -> dict[str, Redactor]:
    """One redactor for every route with patterns of its own, and the default one under ""."""
    shared = file.privacy.redact_patterns
    redactors = {"": _redactor("privacy.redact_patterns", shared, path)}
    for route, spec in file.routes.items():
        if spec.redact_patterns:
            redactors[route] = _redactor(f"routes.{route}.redact_patterns", [*shared, *spec.redact_patterns], path)
    return redactors


def _redactor(key: str, patterns: list[str], path: Path | None) -> Redactor:
    try:
        return Redactor.with_patterns(patterns)
    except ValueError as exc:
        raise ConfigError(key, str(exc), path) from None


def _judges(file: FileConfig, profiles: dict[str, ModelProfile], path: Path | None) -> dict[str, JudgeSpec]:
    """Each route's judge; its model needs a profile (grading spend is priced like replays), and its
    rubric may not name a model, since the grader must never learn which model wrote an answer."""
    models = set(profiles) | {m for r in file.rollouts for m in (r.baseline, r.candidate)}
    judges = {}
    for route, spec in file.routes.items():
        judge = spec.judge
        if judge is None:
            continue
        if judge.model not in profiles:
            raise ConfigError(
                f"routes.{route}.judge.model",
                f"no capability profile for {judge.model!r}; add one under models.profiles",
                path,
            )
        named = sorted(m for m in models if m and m in judge.rubric)
        if named:
            raise ConfigError(
                f"routes.{route}.judge.rubric",
                f"names the model {named[0]!r}; the rubric must not tell the grader which model wrote an answer",
                path,
            )
        judges[route] = JudgeSpec(judge.model, judge.rubric, judge.sample_rate, judge.max_tokens)
    return judges


def _load_schema(key: str, ref: str | None, base_dir: Path, path: Path | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    schema_path = (base_dir / ref).resolve()
    try:
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(key, f"cannot read schema file {schema_path}: {exc.strerror or exc}", path) from None
    except ValueError as exc:
        raise ConfigError(key, f"schema file {schema_path} is not valid JSON: {exc}", path) from None
    if not isinstance(schema, dict):
        raise ConfigError(key, f"schema file {schema_path} must hold a JSON object", path)
    problem = schema_problem(schema)
    if problem is not None:
        raise ConfigError(key, f"schema file {schema_path} is not a usable JSON Schema: {problem}", path) from None
    return schema


def _dotted(loc: tuple[Any, ...], raw: Any) -> str:
    """Render a pydantic error location as the YAML key a person would look for."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(item, int):
            name = node[item].get("name") if isinstance(node, list) and isinstance(node[item], dict) else None
            parts[-1:] = [f"{parts[-1] if parts else ''}[{item}]" + (f"({name})" if name else "")]
        else:
            parts.append(str(item))
        try:
            node = node[item]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts) or "(top level)"


def _describe(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")
