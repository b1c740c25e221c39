"""`GET /v1/rollouts/{name}/weights` (SPEC §10): the canary share as gateway weights."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from shadowd.api import STATE_KEY
from shadowd.core.rollout import RolloutSpec
from shadowd.report import rollout_state_of


def weights_body(spec: RolloutSpec, state_row: dict[str, Any] | None) -> dict[str, Any]:
    """Weights in percent that add up to 100; a rolled-back rollout sends everything to the baseline."""
    state = rollout_state_of(spec, state_row)
    percent = 0 if state.state == "rolled_back" else spec.stages[state.stage_index]
    return {
        "rollout": spec.name,
        "state": state.state,
        "stage": state.stage_index + 1,
        "canary_percent": percent,
        "baseline": {"model": spec.baseline, "weight": 100 - percent},
        "candidate": {"model": spec.candidate, "weight": percent},
    }


async def rollout_weights(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    name = request.match_info["name"]
    spec = state.config.rollout(name)
    if spec is None:
        known = ", ".join(r.name for r in state.config.rollouts) or "none"
        return web.json_response(
            {"error": "unknown rollout", "reason": f"no rollout named {name!r} in the config (known: {known})",
             "rollout": name},
            status=404,
        )
    return web.json_response(weights_body(spec, await state.store.rollout_state(name)))


def add_weights_route(app: web.Application) -> None:
    app.router.add_get("/v1/rollouts/{name}/weights", rollout_weights)
