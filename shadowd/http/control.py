"""Manual control: pause, resume, promote, roll back or restart a rollout, recorded in the audit trail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import Field

from shadowd.clock import utc_now
from shadowd.http.errors import BadParameter, error_response, json_response, unknown_rollout
from shadowd.http.middleware import request_identity
from shadowd.http.models import AppliedDecision, ManualActionBody
from shadowd.http.params import configured_names, json_object, max_length
from shadowd.http.registry import (
    AUTH_ERRORS,
    BAD_PARAMETER,
    DATABASE_DOWN,
    UNKNOWN_ROLLOUT,
    Operation,
    Reply,
    error,
)
from shadowd.http.rollouts import RolloutPath
from shadowd.http.state import api_state
from shadowd.promoter import ManualAction, ManualActionError, apply_manual

log = structlog.get_logger("shadowd.api")

_ACTIONS: dict[str, ManualAction] = {
    "pause": "pause",
    "resume": "resume",
    "promote": "promote",
    "rollback": "rollback",
    "restart": "restart",
}


class ActionPath(RolloutPath):
    action: Literal["pause", "resume", "promote", "rollback", "restart"] = Field()


async def manual_action(request: web.Request) -> web.Response:
    state = api_state(request)
    name, action = request.match_info["name"], _ACTIONS[request.match_info["action"]]
    identity = request_identity(request)
    if identity is None:  # the authenticate middleware admits no change without one
        return error_response(401, "unauthorized", f"{action} needs `Authorization: Bearer <admin token>`")
    spec = state.config.rollout(name)
    if spec is None:
        return unknown_rollout(configured_names(state), name)
    body = await json_object(request, required=False)
    for key in body:
        if key not in ManualActionBody.model_fields:
            raise BadParameter(key, "unknown field; known: actor, reason")
    stated = _optional_text(body, "actor", max_length(ManualActionBody, "actor"))
    note = _optional_text(body, "reason", max_length(ManualActionBody, "reason"))
    if stated and stated != identity.name:
        # The audit actor is the token's name; a name in the body is only the caller's word, kept as such.
        note = f"(stated actor: {stated}) {note or ''}".strip()
    try:
        applied = await apply_manual(state.store, spec, action, f"api:{identity.name}", utc_now(), note)
    except ManualActionError as exc:
        return error_response(409, "conflict", str(exc), rollout=name, action=action)
    decision = applied.to_dict()
    log.info(
        "manual_action",
        rollout=name,
        action=action,
        actor=applied.actor,
        operator_reason=note,
        decision=applied.decision,
        canary_percent=applied.canary_percent,
    )
    state.metrics.canary_percent.labels(name).set(applied.canary_percent)
    if state.publish_decision is not None:
        try:
            await state.publish_decision(decision)
        except Exception as exc:  # the action is recorded; a broker outage must not turn it into an error
            log.warning("decision_publish_failed", rollout=name, action=action, error=repr(exc)[:500])
    return json_response(decision)


def _optional_text(body: Mapping[str, Any], key: str, max_length: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise BadParameter(key, f"must be a string of at most {max_length} characters")
    return value.strip() or None


def operations() -> list[Operation]:
    return [
        Operation("POST", "/v1/rollouts/{name}/{action:pause|resume|promote|rollback|restart}", manual_action,
                  "manualAction", "rollouts",
                  "Pause, resume, promote or roll back a rollout; recorded in the audit trail.", "admin",
                  {200: Reply("Applied.", AppliedDecision), 400: BAD_PARAMETER, **AUTH_ERRORS,
                   403: error("No admin token is configured (manual control is disabled), or the token may only "
                              "read."),
                   404: UNKNOWN_ROLLOUT,
                   409: error("The action does not apply to the rollout's state (e.g. resume when not paused)."),
                   503: DATABASE_DOWN},
                  description="The actor is recorded as `api:<token name>`; an `actor` in the body is kept only "
                  "as a note in the reasons. After success the decision is also published to the decisions topic.",
                  path_params=ActionPath, body=ManualActionBody),
    ]
