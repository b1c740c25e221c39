"""Flagger's webhooks: the gate hooks (`POST /v1/flagger/gate`: 200 goes on, 403 with a reason holds) and
the rollback hook (`POST /v1/flagger/rollback`: 200 rolls back). Open: Flagger cannot send headers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from shadowd.http.contracts import (
    controller_report,
    flagger_gate_verdict,
    flagger_rollback_verdict,
    stale_note,
    with_age,
)
from shadowd.http.errors import DATABASE_UNAVAILABLE, BadParameter, json_response, known_names
from shadowd.http.models import DecisionName, StateName
from shadowd.http.params import configured_names, json_object
from shadowd.http.registry import BAD_PARAMETER, Operation, Reply, optional
from shadowd.http.state import api_state

log = structlog.get_logger("shadowd.api")

# Flagger's gate hooks, and the hook types that gate nothing (answered 200 so they never halt Flagger).
GATE_HOOKS = ("confirm-rollout", "pre-rollout", "rollout", "confirm-traffic-increase", "confirm-promotion")
PASS_THROUGH_HOOKS = ("post-rollout", "event")
# What Flagger itself puts in `phase`: the canary's phase, not the hook type (every gate hook sends
# "Progressing"). Seen without `metadata.hook`, the gate cannot be told apart, so the call is refused.
FLAGGER_CANARY_PHASES = frozenset(
    p.lower()
    for p in (
        "Initializing",
        "Initialized",
        "Waiting",
        "Progressing",
        "WaitingPromotion",
        "Promoting",
        "Finalising",
        "Succeeded",
        "Failed",
        "Terminating",
        "Terminated",
    )
)

# An integer percentage 0..100 (leading zeros and surrounding blanks allowed), or empty for none.
WEIGHT_PATTERN = r"^(\s*0*([0-9]|[1-9][0-9]|100)\s*)?$"

STALE = "Present (true) when the answer is the last known decision: the database cannot be read now."
AGE = "With `stale`: the age of that decision, in seconds (at most `last_report_max_age_s`, 300)."
_STRING_MAP = ConfigDict(json_schema_extra={"additionalProperties": {"type": ["string", "null"]}})


class FlaggerMetadata(BaseModel):
    model_config = _STRING_MAP

    rollout: str | None = Field(None, description="The shadowd rollout (default: `name`).")


class FlaggerGateMetadata(FlaggerMetadata):
    hook: Literal[GATE_HOOKS + PASS_THROUGH_HOOKS] = Field(  # type: ignore[valid-type]
        description="The webhook type, which Flagger does not send: set it on each webhook. (shadowd also reads "
        "a `hook` query parameter, or a hook name in `phase`.)")
    weight: str | None = Field(None, pattern=WEIGHT_PATTERN, description="confirm-traffic-increase: pass when "
                               "shadowd approves at least this percentage.")


class FlaggerPayload(BaseModel):
    name: str = Field(pattern=r"\S", description="The Flagger canary's name.")
    namespace: str | None = None
    phase: str | None = None
    checksum: str | None = None
    metadata: FlaggerMetadata | None = None


class FlaggerGatePayload(FlaggerPayload):
    metadata: FlaggerGateMetadata


class FlaggerGateResult(BaseModel):
    ok: bool
    hook: str | None = optional()
    rollout: str | None = optional()
    canary: str | None = optional()
    namespace: str | None = optional()
    decision: DecisionName | None = optional()
    state: StateName | None = optional()
    canary_percent: int | None = optional()
    reason: str
    reasons: list[str] | None = optional()
    error: str | None = optional()
    stale: bool | None = optional(STALE)
    decision_age_s: float | None = optional(AGE)


class FlaggerRollbackResult(BaseModel):
    rollback: bool
    rollout: str | None = optional()
    canary: str | None = optional()
    namespace: str | None = optional()
    decision: DecisionName | None = optional()
    state: StateName | None = optional()
    reason: str
    reasons: list[str] | None = optional()
    error: str | None = optional()
    stale: bool | None = optional(STALE)
    decision_age_s: float | None = optional(AGE)


@dataclass(frozen=True, slots=True)
class FlaggerCall:
    """One Flagger webhook call: which canary, which shadowd rollout, which hook."""

    canary: str
    namespace: str
    phase: str
    checksum: str | None
    metadata: dict[str, str]
    rollout: str
    hook: str


async def _flagger_call(request: web.Request) -> FlaggerCall:
    body = await json_object(request, required=True)
    name = body.get("name")
    if not isinstance(name, str) or not re.search(r"\S", name):
        raise BadParameter("name", "the canary name is required (a non-empty string)")
    namespace, phase, checksum = body.get("namespace"), body.get("phase"), body.get("checksum")
    for key, value in (("namespace", namespace), ("phase", phase), ("checksum", checksum)):
        if value is not None and not isinstance(value, str):
            raise BadParameter(key, "must be a string")
    raw_metadata = body.get("metadata") or {}
    if not isinstance(raw_metadata, dict) or any(not isinstance(v, str | None) for v in raw_metadata.values()):
        raise BadParameter("metadata", "must be an object of strings (Flagger's metadata is a string map)")
    metadata = {str(k): str(v) for k, v in raw_metadata.items() if v is not None}
    hook = (metadata.get("hook") or request.query.get("hook") or phase or "").strip()
    return FlaggerCall(
        canary=name.strip(),
        namespace=namespace or "",
        phase=phase or "",
        checksum=checksum,
        metadata=metadata,
        rollout=(metadata.get("rollout") or name).strip(),
        hook=hook,
    )


async def flagger_gate(request: web.Request) -> web.Response:
    """200 lets Flagger go on; 403 with a JSON reason holds it. A refusal is never a 5xx."""
    state = api_state(request)
    call = await _flagger_call(request)
    hook = call.hook.lower()
    base = {"hook": hook, "rollout": call.rollout, "canary": call.canary, "namespace": call.namespace}
    if not hook:
        raise BadParameter(
            "phase", "which gate is this? set `metadata.hook` (or `phase`) to one of " + ", ".join(GATE_HOOKS)
        )
    if hook in FLAGGER_CANARY_PHASES:
        raise BadParameter(
            "metadata.hook",
            f"Flagger sent its canary phase {call.hook!r}, which does not say which "
            "gate this is; set `metadata.hook` on the webhook to one of " + ", ".join(GATE_HOOKS),
        )
    if hook == "rollback":
        raise BadParameter(
            "metadata.hook", "rollback hooks go to POST /v1/flagger/rollback (there a 200 means roll back)"
        )
    if hook not in GATE_HOOKS + PASS_THROUGH_HOOKS:
        raise BadParameter(
            "metadata.hook",
            f"unknown hook {call.hook!r}; known: " + ", ".join(GATE_HOOKS + PASS_THROUGH_HOOKS),
        )
    weight = _metadata_weight(call.metadata)  # checked for every hook: a bad value is a misconfiguration
    if hook in PASS_THROUGH_HOOKS:
        return json_response({"ok": True, **base, "reason": f"shadowd does not gate {hook!r} hooks; passed through"})
    spec = state.config.rollout(call.rollout)
    if spec is None:
        known = known_names(configured_names(state))
        return json_response(
            {
                "ok": False,
                **base,
                "error": "unknown rollout",
                "reason": f"no rollout named {call.rollout!r} in the shadowd config (known: {known}); "
                "set `metadata.rollout`",
            },
            status=403,
        )
    try:
        report, age_s = await controller_report(state, spec)
    except Exception as exc:  # Flagger must wait, not see a 5xx: hold until the database answers
        log.warning("flagger_database_error", rollout=call.rollout, hook=hook, error=repr(exc)[:500])
        return json_response(
            {
                "ok": False,
                **base,
                "error": "database unavailable",
                "reason": f"{DATABASE_UNAVAILABLE}; holding",
            },
            status=403,
        )
    passed, reason = flagger_gate_verdict(hook, report, weight)
    body = {
        "ok": passed,
        **base,
        "decision": report.decision,
        "state": report.state,
        "canary_percent": report.canary_percent,
        "reason": reason + stale_note(age_s),
        "reasons": list(report.reasons),
    }
    if not passed:
        body["error"] = "refused"
    return json_response(with_age(body, age_s), status=200 if passed else 403)


def _metadata_weight(metadata: Mapping[str, str]) -> int | None:
    raw = metadata.get("weight")
    if raw is None or raw == "":
        return None
    if not re.search(WEIGHT_PATTERN, raw) or not raw.strip().isascii():
        raise BadParameter("metadata.weight", f"must be an integer percentage from 0 to 100, got {raw!r}")
    return int(raw.strip())


async def flagger_rollback(request: web.Request) -> web.Response:
    """Flagger rolls back on a 200; 409 (or 404 for an unknown rollout) means keep going."""
    state = api_state(request)
    call = await _flagger_call(request)
    base = {"rollout": call.rollout, "canary": call.canary, "namespace": call.namespace}
    spec = state.config.rollout(call.rollout)
    if spec is None:
        known = known_names(configured_names(state))
        return json_response(
            {
                "rollback": False,
                **base,
                "error": "unknown rollout",
                "reason": f"no rollout named {call.rollout!r} in the shadowd config (known: {known})",
            },
            status=404,
        )
    try:
        report, age_s = await controller_report(state, spec)
    except Exception as exc:  # no evidence read, so no rollback signalled; the gate hooks hold meanwhile
        log.warning("flagger_database_error", rollout=call.rollout, hook="rollback", error=repr(exc)[:500])
        return json_response(
            {
                "rollback": False,
                **base,
                "error": "database unavailable",
                "reason": f"{DATABASE_UNAVAILABLE}; no rollback signalled",
            },
            status=409,
        )
    rollback, reason = flagger_rollback_verdict(report)
    body = {
        "rollback": rollback,
        **base,
        "decision": report.decision,
        "state": report.state,
        "reason": reason + stale_note(age_s),
        "reasons": list(report.reasons),
    }
    return json_response(with_age(body, age_s), status=200 if rollback else 409)


def operations() -> list[Operation]:
    return [
        Operation("POST", "/v1/flagger/gate", flagger_gate, "flaggerGate", "canary controllers",
                  "Flagger gate webhook (pre-rollout, rollout, confirm-*).", "open",
                  {200: Reply("Pass: Flagger goes on.", FlaggerGateResult), 400: BAD_PARAMETER,
                   403: Reply("Refused: Flagger holds (and counts a failed check for pre-rollout and rollout "
                              "hooks).", FlaggerGateResult)},
                  description="The hook is read from `metadata.hook`, else the `hook` query parameter, else "
                  "`phase`. Flagger itself puts its canary phase (`Progressing`) in `phase`, so set `metadata.hook` "
                  "on each webhook. The shadowd rollout is `metadata.rollout`, else `name`. pre-rollout and "
                  "confirm-rollout pass unless rolled back; rollout passes unless the gate says rollback; "
                  "confirm-traffic-increase passes on promote or complete (or when shadowd's approved stage covers "
                  "`metadata.weight`); confirm-promotion passes when complete or when the gate promotes to the last "
                  "stage. post-rollout and event calls pass through. While the database cannot be read, the last "
                  "known decision (at most 300 s old) answers, marked `stale`; without one the call is refused "
                  "(403, hold). Refusals are 403: never 5xx.",
                  body=FlaggerGatePayload, body_required=True),
        Operation("POST", "/v1/flagger/rollback", flagger_rollback, "flaggerRollback", "canary controllers",
                  "Flagger rollback webhook: 200 means roll back now.", "open",
                  {200: Reply("Roll back: the gate says rollback or the rollout is rolled back.",
                              FlaggerRollbackResult),
                   400: BAD_PARAMETER,
                   404: Reply("Unknown rollout: no rollback.", FlaggerRollbackResult),
                   409: Reply("No rollback (the gate holds or promotes, or the database cannot be read now and no "
                              "recent decision is known).", FlaggerRollbackResult)},
                  body=FlaggerPayload, body_required=True),
    ]
