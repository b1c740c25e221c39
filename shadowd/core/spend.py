"""Model calls and dollars by purpose: replay, noise check and grading (issue: cost per decision).

A verdict's replay calls are its replayed baseline and its candidate; its noise-check call is the
baseline's second replay; its grading calls are the judge's (one per graded answer). The report
divides the rollout's totals by its compared verdicts and by the gate decisions taken so far.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from shadowd.core.judge import Grading
from shadowd.core.profiles import ModelProfile
from shadowd.core.results import SideResult

PURPOSES = ("replay", "noise_check", "grading")


@dataclass(frozen=True, slots=True)
class Spend:
    """What one verdict (or, summed, a rollout) cost in model calls and USD, by purpose."""

    replay_calls: int = 0
    replay_usd: float = 0.0
    noise_calls: int = 0
    noise_usd: float = 0.0
    grading_calls: int = 0
    grading_usd: float = 0.0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_saved_usd: float = 0.0  # list price of the input minus what caching made it cost (may be < 0)

    def __add__(self, other: Spend) -> Spend:
        return Spend(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Spend)))

    def as_row(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(Spend)}

    @classmethod
    def from_row(cls, row: Any) -> Spend:
        """From stored totals (a mapping with the `rollout_calls` columns of the same names)."""
        values: dict[str, Any] = {
            f.name: (float if f.name.endswith("_usd") else int)(row[f.name] or 0) for f in fields(Spend)
        }
        return cls(**values)


def _usd(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else 0.0


def cache_saved_usd(side: SideResult, profile: ModelProfile | None) -> float:
    """What prompt caching saved on one call against paying every input token at the input price:
    reads save 0.9x input, writes cost 0.25x more (SPEC §7); 0 for a model without a profile."""
    if profile is None or not (side.usage.cache_read_input_tokens or side.usage.cache_creation_input_tokens):
        return 0.0
    saved = profile.uncached_cost_usd(side.usage) - profile.cost_usd(side.usage)
    return saved if math.isfinite(saved) else 0.0


def verdict_spend(
    baseline: SideResult | None,
    candidate: SideResult | None,
    repeat: SideResult | None,
    grading: Grading | None,
    profiles: Mapping[str, ModelProfile],
) -> Spend:
    """A verdict's calls and dollars; recorded (not replayed) sides cost nothing."""
    replayed = [s for s in (baseline, candidate) if s is not None and s.source == "replay"]
    noise = [repeat] if repeat is not None and repeat.source == "replay" else []
    grades = [g for g in ((grading.baseline, grading.candidate) if grading else ()) if g is not None]
    sides = replayed + noise
    return Spend(
        replay_calls=len(replayed),
        replay_usd=sum(_usd(s.cost_usd) for s in replayed),
        noise_calls=len(noise),
        noise_usd=sum(_usd(s.cost_usd) for s in noise),
        grading_calls=len(grades),
        grading_usd=sum(_usd(g.cost_usd) for g in grades),
        cache_read_tokens=sum(s.usage.cache_read_input_tokens for s in sides),
        cache_write_tokens=sum(s.usage.cache_creation_input_tokens for s in sides),
        cache_saved_usd=sum(cache_saved_usd(s, profiles.get(s.model)) for s in sides),
    )


def _per(total: float, count: int) -> float | None:
    return total / count if count else None


def spend_report(total: Spend, compared: int, gate_decisions: int) -> dict[str, Any]:
    """The report's `spend` object: the rollout's calls and USD by purpose, per compared verdict and
    per gate decision (promote or rollback) taken so far (null while there is none)."""
    calls = {"replay": total.replay_calls, "noise_check": total.noise_calls, "grading": total.grading_calls}
    usd = {"replay": total.replay_usd, "noise_check": total.noise_usd, "grading": total.grading_usd}
    calls["total"] = sum(calls.values())
    usd["total"] = sum(usd.values())

    def per(count: int) -> dict[str, Any] | None:
        if not count:
            return None
        return {"model_calls": {k: _per(v, count) for k, v in calls.items()},
                "usd": {k: _per(v, count) for k, v in usd.items()}}

    return {
        "model_calls": calls,
        "usd": usd,
        "compared": compared,
        "per_compared": per(compared),
        "gate_decisions": gate_decisions,
        "per_decision": per(gate_decisions),
        "cache": {
            "read_tokens": total.cache_read_tokens,
            "write_tokens": total.cache_write_tokens,
            "saved_usd": total.cache_saved_usd,
        },
    }


def spend_lines(spend: dict[str, Any] | None) -> list[str]:
    """The `spend` object as the text report prints it: per compared verdict, per gate decision, cache."""
    if not spend or not spend["per_compared"]:
        return []

    def line(label: str, per: dict[str, Any]) -> str:
        calls, usd = per["model_calls"], per["usd"]
        parts = ", ".join(f"{name.replace('_', ' ')} {calls[name]:.2f} / ${usd[name]:.5f}" for name in PURPOSES)
        return f"{label}: {calls['total']:.2f} model calls, ${usd['total']:.5f} ({parts})"

    lines = [line("spend per compared verdict", spend["per_compared"])]
    if spend["per_decision"]:
        lines.append(line(f"spend per gate decision ({spend['gate_decisions']} taken)", spend["per_decision"]))
    cache = spend["cache"]
    if cache["read_tokens"] or cache["write_tokens"]:
        lines.append(f"prompt cache: {cache['read_tokens']:,} tokens read, {cache['write_tokens']:,} written, "
                     f"${cache['saved_usd']:.5f} saved against uncached input")
    lines.append(f"rollout spend so far: {spend['model_calls']['total']:,} model calls, ${spend['usd']['total']:.4f}")
    return lines
