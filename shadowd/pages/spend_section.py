"""The report page's "Calls and dollars per decision" section, from the report's `spend` object."""

from __future__ import annotations

from typing import Any

from shadowd.core.spend import PURPOSES


def _calls(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:,.5f}"


def spend_section(spend: dict[str, Any] | None) -> str:
    """A table of model calls and USD by purpose: the rollout's totals, per compared verdict, per gate decision."""
    if not spend:
        return ""
    per_compared = spend["per_compared"] or {"model_calls": {}, "usd": {}}
    per_decision = spend["per_decision"] or {"model_calls": {}, "usd": {}}
    rows = "".join(
        f"<tr><td>{name.replace('_', ' ')}</td>"
        f'<td class="num">{spend["model_calls"][name]:,}</td><td class="num">{_usd(spend["usd"][name])}</td>'
        f'<td class="num">{_calls(per_compared["model_calls"].get(name))}</td>'
        f'<td class="num">{_usd(per_compared["usd"].get(name))}</td>'
        f'<td class="num">{_calls(per_decision["model_calls"].get(name))}</td>'
        f'<td class="num">{_usd(per_decision["usd"].get(name))}</td></tr>'
        for name in (*PURPOSES, "total")
    )
    cache = spend["cache"]
    return (
        '<section id="spend"><h2>Calls and dollars per decision</h2>'
        '<table><thead><tr><th>purpose</th><th class="num">calls</th><th class="num">USD</th>'
        '<th class="num">calls / compared</th><th class="num">USD / compared</th>'
        '<th class="num">calls / decision</th><th class="num">USD / decision</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
        f'<p class="note">Over the whole rollout: {spend["compared"]:,} compared verdicts, '
        f'{spend["gate_decisions"]:,} gate decisions (promote or rollback). Replay is the baseline and the '
        "candidate, noise check the baseline's second replay, grading the judge. Prompt cache: "
        f'{cache["read_tokens"]:,} tokens read, {cache["write_tokens"]:,} written, {_usd(cache["saved_usd"])} '
        "saved against paying all input at the input price.</p></section>"
    )
