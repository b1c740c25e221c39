"""Rollout reads: every report, one report, the audit trail of decisions, the gateway weights
(SPEC §10) and the route × model table."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from shadowd.core.rollout import RolloutSpec
from shadowd.http.errors import json_response, unknown_rollout
from shadowd.http.models import DecisionList, Report, RolloutList, RoutesTable, Weights
from shadowd.http.params import (
    MAX_PAGE,
    ROLLOUT_NAME_PATTERN,
    configured_names,
    known_rollout,
    only_parameters,
    page_size,
)
from shadowd.http.registry import AUTH_ERRORS, BAD_PARAMETER, DATABASE_DOWN, READ_ERRORS, Operation, Reply
from shadowd.http.state import api_state
from shadowd.report import build_report, rollout_state_of
from shadowd.routing import build_routes_table


class RolloutPath(BaseModel):
    name: str = Field(max_length=128, pattern=ROLLOUT_NAME_PATTERN, description="A rollout name from the config.")


class PageQuery(BaseModel):
    limit: int = Field(100, ge=1, le=MAX_PAGE)


async def list_rollouts(request: web.Request) -> web.Response:
    state = api_state(request)
    reports = [await build_report(state.store, spec) for spec in state.config.rollouts]
    configured = configured_names(state)
    stored = await state.store.rollout_names()
    return json_response(
        {
            "items": reports,
            "names": configured,
            # Verdicts or decisions in the database for rollouts the config no longer declares.
            "unconfigured": [name for name in stored if name not in configured],
        }
    )


async def get_rollout(request: web.Request) -> web.Response:
    state = api_state(request)
    name = request.match_info["name"]
    spec = state.config.rollout(name)
    if spec is None:
        return unknown_rollout(configured_names(state), name)
    return json_response(await build_report(state.store, spec))


async def list_decisions(request: web.Request) -> web.Response:
    state = api_state(request)
    name = request.match_info["name"]
    only_parameters(request.query, frozenset({"limit"}))
    limit = page_size(request.query)
    if not await known_rollout(state, name):
        return unknown_rollout(configured_names(state), name)
    return json_response({"items": await state.store.list_decisions(name, limit=limit)})


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
    state = api_state(request)
    name = request.match_info["name"]
    spec = state.config.rollout(name)
    if spec is None:
        return unknown_rollout(configured_names(state), name)
    return json_response(weights_body(spec, await state.store.rollout_state(name)))


async def routes_json(request: web.Request) -> web.Response:
    state = api_state(request)
    return json_response(await build_routes_table(state.store, state.config))


def operations() -> list[Operation]:
    return [
        Operation("GET", "/v1/rollouts", list_rollouts, "listRollouts", "rollouts",
                  "The report of every configured rollout.", "read",
                  {200: Reply("One report per configured rollout, in config order.", RolloutList),
                   **AUTH_ERRORS, 503: DATABASE_DOWN}),
        Operation("GET", "/v1/rollouts/{name}", get_rollout, "getRollout", "rollouts",
                  "One rollout's report: the `shadowd report --json` object.", "read",
                  {200: Reply("The report.", Report), **READ_ERRORS}, path_params=RolloutPath),
        Operation("GET", "/v1/rollouts/{name}/decisions", list_decisions, "listDecisions", "rollouts",
                  "The audit trail: gate decisions and manual actions, newest first.", "read",
                  {200: Reply("Audit entries.", DecisionList), 400: BAD_PARAMETER, **READ_ERRORS},
                  path_params=RolloutPath, query=PageQuery),
        Operation("GET", "/v1/rollouts/{name}/weights", rollout_weights, "rolloutWeights", "canary controllers",
                  "The canary share as weights for an LLM gateway (baseline + candidate = 100).", "controller",
                  {200: Reply("The weights.", Weights), **READ_ERRORS}, path_params=RolloutPath,
                  description="`candidate.weight` is the current stage's `canary_percent` (0 once rolled back); "
                  "`baseline.weight` is the rest. A gateway that splits traffic by weight (LiteLLM deployments, "
                  "Portkey targets) can copy these on a timer."),
        Operation("GET", "/v1/routes", routes_json, "getRoutes", "rollouts",
                  "The route × model table (`shadowd routes --json`): per route and model, the regression rate "
                  "with its interval, latency p50/p95, cost per request, and the cheapest model not worse than "
                  "the baseline (`recommended`).", "read",
                  {200: Reply("One row per route and model.", RoutesTable), **AUTH_ERRORS, 503: DATABASE_DOWN}),
    ]
