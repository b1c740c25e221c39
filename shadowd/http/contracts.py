"""The canary-controller contracts, as pure functions of the report, and the report the controllers read:
fresh, or the last one read while the database is briefly away (with its age).

Argo's analysis, Flagger's webhooks and the Prometheus-compatible query all answer from
`controller_report`, so a short PostgreSQL outage gives them the last known decision, never an error.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from shadowd.core.rollout import RolloutSpec
from shadowd.core.rollout_report import RolloutReport
from shadowd.http.state import ApiState
from shadowd.report import read_report

AnalysisVerdict = Literal["pass", "fail", "continue"]


async def controller_report(state: ApiState, spec: RolloutSpec) -> tuple[RolloutReport, float | None]:
    """(report, None) read now, or (the last report read, its age in seconds) when the database cannot be
    read and that report is at most `last_report_max_age_s` old. Raises what the read raised otherwise."""
    try:
        report = await read_report(state.store, spec)
    except Exception:
        last = state.last_reports.get(spec.name)
        if last is not None and time.monotonic() - last[0] <= state.last_report_max_age_s:
            return last[1], round(time.monotonic() - last[0], 1)
        raise
    state.last_reports[spec.name] = (time.monotonic(), report)
    return report, None


def stale_note(age_s: float | None) -> str:
    return "" if age_s is None else f" (last known decision, {age_s:.0f} s old: the database cannot be read now)"


def with_age(body: dict[str, Any], age_s: float | None) -> dict[str, Any]:
    if age_s is not None:
        body["stale"] = True
        body["decision_age_s"] = age_s
    return body


def _first_reason(report: RolloutReport) -> str:
    return report.reasons[0] if report.reasons else "no reason recorded"


def _approved(report: RolloutReport) -> tuple[int, int]:
    """(stage number, canary percent) shadowd approves now: the promotion target while it says promote."""
    if report.decision == "promote":
        index = report.gate.figures.next_stage_index
        return index + 1, report.stages[index]
    return report.stage, report.canary_percent


def analysis_verdict(
    report: RolloutReport, want_percent: int | None = None, want_stage: int | None = None
) -> tuple[AnalysisVerdict, str]:
    """The Argo measurement: rollback fails; complete and promote pass; paused and hold continue.

    With `canary_percent=N` or `stage=N`, the question becomes "may the canary serve N% (be at stage N)?":
    pass once shadowd's approved stage covers it (its current stage, or its promotion target).
    """
    decision, phase = report.decision, report.state
    if report.rolled_back:
        return "fail", f"rollback: {_first_reason(report)}"
    if phase == "paused":
        return "continue", "paused by an operator: keep measuring until it is resumed"
    if phase == "complete" or decision == "complete":
        return "pass", f"complete: {_first_reason(report)}"
    if want_percent is None and want_stage is None:
        if decision == "promote":
            return "pass", f"promote: {_first_reason(report)}"
        return "continue", f"hold: {_first_reason(report)}"
    stage, percent = _approved(report)
    wanted = []
    if want_percent is not None and percent < want_percent:
        wanted.append(f"{want_percent}% asked, shadowd approves {percent}%")
    if want_stage is not None and stage < want_stage:
        wanted.append(f"stage {want_stage} asked, shadowd is at stage {stage}")
    if wanted:
        return "continue", f"{decision}: {'; '.join(wanted)}: {_first_reason(report)}"
    return "pass", f"{decision}: shadowd approves stage {stage} ({percent}%)"


def flagger_gate_verdict(hook: str, report: RolloutReport, weight: int | None = None) -> tuple[bool, str]:
    """Whether a Flagger gate hook passes, and why.

    pre-rollout and confirm-rollout pass unless the rollout is rolled back; rollout passes unless the gate
    says rollback; confirm-traffic-increase passes on promote or complete (or, with `metadata.weight`,
    when shadowd's approved stage covers that weight and it is not paused); confirm-promotion passes
    only when complete, or when the gate promotes to the last stage.
    """
    decision, phase = report.decision, report.state
    if report.rolled_back:
        return False, f"shadowd says rollback: {_first_reason(report)}"
    if hook in ("pre-rollout", "confirm-rollout", "rollout"):
        return True, f"shadowd's gate says {decision}; no rollback"
    complete = phase == "complete" or decision == "complete"
    if hook == "confirm-traffic-increase":
        if complete or decision == "promote":
            return True, f"shadowd's gate says {'complete' if complete else 'promote'}"
        if phase == "paused":
            return False, "paused by an operator in shadowd"
        if weight is not None:
            stage, percent = _approved(report)
            if percent >= weight:
                return True, f"shadowd approves {percent}% (stage {stage}), covering the {weight}% asked"
            return (
                False,
                f"shadowd approves {percent}%, less than the {weight}% asked: {_first_reason(report)}",
            )
        return False, f"shadowd's gate says {decision}: {_first_reason(report)}"
    # confirm-promotion
    if complete:
        return True, "shadowd's rollout is complete"
    last = len(report.stages) - 1
    if decision == "promote" and report.gate.figures.next_stage_index >= last:
        return True, f"shadowd promotes to its last stage ({report.stages[last]}%)"
    return (
        False,
        f"shadowd's rollout is not complete ({decision}, stage {report.stage} of {last + 1}): "
        f"{_first_reason(report)}",
    )


def flagger_rollback_verdict(report: RolloutReport) -> tuple[bool, str]:
    """Roll back now exactly when shadowd's gate says rollback or the rollout is rolled back."""
    if report.rolled_back:
        return True, f"shadowd says rollback: {_first_reason(report)}"
    return False, f"shadowd's gate says {report.decision}; no rollback"
