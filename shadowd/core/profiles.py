"""Model capability profiles (SPEC §7) and what a call costs under them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from shadowd.core.results import Usage

CACHE_WRITE_MULTIPLIER = 1.25  # 5-minute cache writes
CACHE_READ_MULTIPLIER = 0.1
SAMPLING_PARAMS = ("temperature", "top_p", "top_k")


@dataclass(frozen=True, slots=True)
class ModelProfile:
    model: str
    context_window: int
    max_output_tokens: int
    thinking_modes: frozenset[str]  # subset of {"adaptive", "enabled"}
    accepts_sampling_params: bool
    usd_per_mtok_input: float
    usd_per_mtok_output: float

    def cost_usd(self, usage: Usage) -> float:
        per_input_token = self.usd_per_mtok_input / 1_000_000
        return (
            usage.input_tokens * per_input_token
            + usage.cache_creation_input_tokens * per_input_token * CACHE_WRITE_MULTIPLIER
            + usage.cache_read_input_tokens * per_input_token * CACHE_READ_MULTIPLIER
            + usage.output_tokens * self.usd_per_mtok_output / 1_000_000
        )

    def uncached_cost_usd(self, usage: Usage) -> float:
        """The same call with every input token (cached or not) at the plain input price."""
        return (
            (usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens)
            * self.usd_per_mtok_input / 1_000_000
            + usage.output_tokens * self.usd_per_mtok_output / 1_000_000
        )


BUILTIN_PROFILES: dict[str, ModelProfile] = {
    profile.model: profile
    for profile in (
        ModelProfile("claude-opus-4-7", 1_000_000, 128_000, frozenset({"adaptive"}), False, 5.0, 25.0),
        ModelProfile("claude-opus-4-6", 1_000_000, 128_000, frozenset({"adaptive", "enabled"}), True, 5.0, 25.0),
        ModelProfile("claude-sonnet-4-6", 1_000_000, 64_000, frozenset({"adaptive", "enabled"}), True, 3.0, 15.0),
    )
}

_OVERRIDABLE = {
    "context_window": int,
    "max_output_tokens": int,
    "thinking": list,
    "accepts_sampling_params": bool,
    "usd_per_mtok_input": float,
    "usd_per_mtok_output": float,
}


class ProfileError(ValueError):
    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: {detail}")
        self.key = key


def resolve_profiles(overrides: dict[str, dict[str, Any]]) -> dict[str, ModelProfile]:
    """Built-in profiles with `models.profiles` overrides applied; a new model needs every field."""
    profiles = dict(BUILTIN_PROFILES)
    for model, fields in overrides.items():
        key = f"models.profiles.{model}"
        if not isinstance(fields, dict):
            raise ProfileError(key, "must be a mapping")
        unknown = set(fields) - set(_OVERRIDABLE)
        if unknown:
            raise ProfileError(f"{key}.{sorted(unknown)[0]}", f"unknown field; expected one of {sorted(_OVERRIDABLE)}")
        values: dict[str, Any] = {}
        for name, value in fields.items():
            values[name] = _coerce(f"{key}.{name}", name, value)
        if "thinking" in values:
            values["thinking_modes"] = values.pop("thinking")
        base = profiles.get(model)
        if base is None:
            missing = {"context_window", "max_output_tokens", "usd_per_mtok_input", "usd_per_mtok_output"} - set(
                values
            )
            if missing:
                raise ProfileError(f"{key}.{sorted(missing)[0]}", "required for a model without a built-in profile")
            base = ModelProfile(model, 0, 0, frozenset({"adaptive", "enabled"}), True, 0.0, 0.0)
        profiles[model] = replace(base, **values)
    return profiles


def _coerce(key: str, name: str, value: Any) -> Any:
    kind = _OVERRIDABLE[name]
    if kind is bool:
        if not isinstance(value, bool):
            raise ProfileError(key, f"must be true or false, got {value!r}")
        return value
    if kind is list:
        if not isinstance(value, list) or not set(value) <= {"adaptive", "enabled"}:
            raise ProfileError(key, "must be a list drawn from [adaptive, enabled]")
        return frozenset(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ProfileError(key, f"must be a non-negative number, got {value!r}")
    return kind(value)
