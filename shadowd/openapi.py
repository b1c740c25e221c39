"""The OpenAPI 3.1 description of the HTTP API (SPEC §5), served at `GET /openapi.json`."""

from __future__ import annotations

import copy
import functools
from typing import Any

from shadowd import __version__
from shadowd.core.findings import CODES

JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _html_body(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _response(name: str) -> dict[str, Any]:
    return {"$ref": "#/components/responses/" + name}


def _name_param() -> dict[str, Any]:
    return {"$ref": "#/components/parameters/RolloutName"}


_READ: list[dict[str, list[str]]] = [
    {"bearerAuth": []},
    {},
]  # the read token when one is configured, otherwise open
_ADMIN: list[dict[str, list[str]]] = [{"bearerAuth": []}]


# Text the database can compare: no NUL or other control characters.
_TEXT_PATTERN = "^[^\\x00-\\x1f\\x7f]+$"
_AUTH_ERRORS = {"401": _response("Unauthorized"), "429": _response("TooManyFailures")}


def _paths() -> dict[str, Any]:
    rollout_errors = {
        **_AUTH_ERRORS,
        "404": _response("UnknownRollout"),
        "503": _response("DatabaseUnavailable"),
    }
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "tags": ["operations"],
                "summary": "Liveness: the process answers.",
                "security": [{}],
                "responses": {
                    "200": _json_body({"type": "object", "properties": {"status": {"const": "ok"}}}, "Alive.")
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "tags": ["operations"],
                "security": [{}],
                "summary": "Readiness: the database and Kafka are reachable.",
                "responses": {
                    "200": _json_body(_ref("Readiness"), "Every dependency answered."),
                    "503": _json_body(
                        _ref("Readiness"), "A dependency is unreachable; `checks` says which and why."
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["operations"],
                "security": [{}],
                "summary": "Prometheus metrics of this process (text exposition format).",
                "responses": {
                    "200": {
                        "description": "Metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "tags": ["operations"],
                "security": [{}],
                "summary": "This document.",
                "responses": {"200": _json_body({"type": "object"}, "The OpenAPI 3.1 document.")},
            }
        },
        "/v1/rollouts": {
            "get": {
                "operationId": "listRollouts",
                "tags": ["rollouts"],
                "security": _READ,
                "summary": "The report of every configured rollout.",
                "responses": {
                    "200": _json_body(
                        _ref("RolloutList"), "One report per configured rollout, in config order."
                    ),
                    **_AUTH_ERRORS,
                    "503": _response("DatabaseUnavailable"),
                },
            }
        },
        "/v1/rollouts/{name}": {
            "get": {
                "operationId": "getRollout",
                "tags": ["rollouts"],
                "security": _READ,
                "summary": "One rollout's report: the `shadowd report --json` object.",
                "parameters": [_name_param()],
                "responses": {"200": _json_body(_ref("Report"), "The report."), **rollout_errors},
            }
        },
        "/v1/rollouts/{name}/verdicts": {
            "get": {
                "operationId": "listVerdicts",
                "tags": ["verdicts"],
                "security": _READ,
                "summary": "Verdicts, newest first, with the `shadowd verdicts` filters and cursor paging.",
                "description": "Unknown query parameters are refused (400) so that a misspelt filter never "
                "silently widens the result. Pass `next_cursor` back as `cursor` for the next page; "
                "it is null on the last page.",
                "parameters": [
                    _name_param(),
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"enum": ["pass", "regression", "noise", "error", "skipped"]},
                    },
                    {
                        "name": "code",
                        "in": "query",
                        "description": "A finding code, e.g. `schema.key_missing`.",
                        "schema": {"enum": sorted(CODES)},
                    },
                    {
                        "name": "route",
                        "in": "query",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": _TEXT_PATTERN},
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "description": "An RFC 3339 time, or a duration ago: `90s`, `30m`, `2h`, `7d`; it must lie "
                        "in the years 1970 to 9998 (400 otherwise).",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "description": "A `next_cursor` from the previous page.",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999_999_999_999},
                    },
                ],
                "responses": {
                    "200": _json_body(_ref("VerdictPage"), "One page of verdicts."),
                    "400": _response("BadParameter"),
                    **rollout_errors,
                },
            }
        },
        "/v1/rollouts/{name}/verdicts/{request_id}": {
            "get": {
                "operationId": "getVerdict",
                "tags": ["verdicts"],
                "security": _READ,
                "summary": "One verdict with the content of each side (`shadowd show --json`).",
                "parameters": [
                    _name_param(),
                    {
                        "name": "request_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": _TEXT_PATTERN},
                    },
                ],
                "responses": {
                    "200": _json_body(_ref("VerdictDetail"), "The verdict."),
                    "400": _response("BadParameter"),
                    "404": _json_body(_ref("Error"), "Unknown rollout, or no verdict for that request."),
                    **_AUTH_ERRORS,
                    "503": _response("DatabaseUnavailable"),
                },
            }
        },
        "/v1/rollouts/{name}/report.html": {
            "get": {
                "operationId": "getReportPage",
                "tags": ["pages"],
                "security": _READ,
                "summary": "The rollout's report as one self-contained HTML page (`shadowd report --html`).",
                "parameters": [_name_param()],
                "responses": {
                    "200": _html_body("The report: decision, charts, findings, stage history, routing table."),
                    "404": _json_body(_ref("Error"), "Unknown rollout."),
                    "401": _response("Unauthorized"),
                    "503": _response("DatabaseUnavailable"),
                },
            }
        },
        "/v1/rollouts/{name}/verdicts/{request_id}.html": {
            "get": {
                "operationId": "getVerdictPage",
                "tags": ["pages"],
                "security": _READ,
                "summary": "One verdict as a self-contained HTML page (`shadowd show --html`).",
                "parameters": [
                    _name_param(),
                    {"name": "request_id", "in": "path", "required": True,
                     "schema": {"type": "string", "minLength": 1, "maxLength": 256}},
                ],
                "responses": {
                    "200": _html_body("The request, both answers side by side, the findings, the adaptations."),
                    "404": _json_body(_ref("Error"), "No verdict for that request in that rollout."),
                    "401": _response("Unauthorized"),
                    "503": _response("DatabaseUnavailable"),
                },
            }
        },
        "/v1/routes": {
            "get": {
                "operationId": "getRoutes",
                "tags": ["rollouts"],
                "security": _READ,
                "summary": "The route × model table (`shadowd routes --json`): per route and model, the regression "
                "rate with its interval, latency p50/p95, cost per request, and the cheapest model not worse than "
                "the baseline (`recommended`).",
                "responses": {
                    "200": _json_body({"type": "object", "required": ["items"],
                                       "properties": {"items": {"type": "array", "items": {"type": "object"}}}},
                                      "One row per route and model."),
                    "401": _response("Unauthorized"),
                    "503": _response("DatabaseUnavailable"),
                },
            }
        },
        "/v1/routes.html": {
            "get": {
                "operationId": "getRoutesPage",
                "tags": ["pages"],
                "security": _READ,
                "summary": "The route × model table as an HTML page.",
                "responses": {
                    "200": _html_body("The routing table."),
                    "401": _response("Unauthorized"),
                    "503": _response("DatabaseUnavailable"),
                },
            }
        },
        "/v1/rollouts/{name}/decisions": {
            "get": {
                "operationId": "listDecisions",
                "tags": ["rollouts"],
                "security": _READ,
                "summary": "The audit trail: gate decisions and manual actions, newest first.",
                "parameters": [
                    _name_param(),
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    },
                ],
                "responses": {
                    "200": _json_body(
                        {
                            "type": "object",
                            "required": ["items"],
                            "properties": {"items": {"type": "array", "items": _ref("Decision")}},
                        },
                        "Audit entries.",
                    ),
                    "400": _response("BadParameter"),
                    **rollout_errors,
                },
            }
        },
        "/v1/rollouts/{name}/analysis": {
            "get": {
                "operationId": "argoAnalysis",
                "tags": ["canary controllers"],
                "security": _READ,
                "summary": "Argo Rollouts `web` metric provider: always 200 with a JSON verdict.",
                "description": (
                    "`verdict` is `fail` when the gate says rollback (or the rollout is rolled back), "
                    "when the rollout is unknown, or when a parameter is bad; `pass` when the rollout is "
                    "complete or the gate says promote; `continue` when the gate holds, the rollout is "
                    "paused, or the database cannot be read now. With `canary_percent=N` or `stage=N`, "
                    "`pass` means shadowd's approved stage (its current one, or its promotion target) "
                    'covers N. Use `jsonPath: "{$.verdict}"`, `successCondition: result == "pass"`, '
                    '`failureCondition: result == "fail"`; a `continue` '
                    "matches neither, which Argo counts as an inconclusive measurement."
                ),
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "description": "A rollout name from the config; any other is answered 200 with "
                        "`verdict` `fail` (unknown rollout).",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "canary_percent",
                        "in": "query",
                        "description": "Pass only once shadowd approves this canary share: an integer 0 to "
                        "100. Any other value is still answered 200, with `verdict` `fail` naming it (Argo "
                        "counts a non-2xx as an error, not a failure).",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "stage",
                        "in": "query",
                        "description": "Pass only once shadowd reaches this stage: an integer from 1 to the "
                        "number of stages; any other value gives `verdict` `fail`, as above.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json_body(_ref("Analysis"), "The measurement, whatever happened."),
                    **_AUTH_ERRORS,
                },
            }
        },
        "/v1/rollouts/{name}/weights": {
            "get": {
                "operationId": "rolloutWeights",
                "tags": ["canary controllers"],
                "security": _READ,
                "summary": "The canary share as weights for an LLM gateway (baseline + candidate = 100).",
                "description": (
                    "`candidate.weight` is the current stage's `canary_percent` (0 once rolled back); "
                    "`baseline.weight` is the rest. A gateway that splits traffic by weight (LiteLLM "
                    "deployments, Portkey targets) can copy these on a timer."
                ),
                "parameters": [_name_param()],
                "responses": {
                    "200": _json_body(
                        {
                            "type": "object",
                            "required": ["baseline", "candidate", "canary_percent", "state"],
                            "properties": {
                                "rollout": {"type": "string"},
                                "state": {"type": "string"},
                                "stage": {"type": "integer"},
                                "canary_percent": {"type": "integer", "minimum": 0, "maximum": 100},
                                "baseline": {
                                    "type": "object",
                                    "required": ["model", "weight"],
                                    "properties": {"model": {"type": "string"}, "weight": {"type": "integer"}},
                                },
                                "candidate": {
                                    "type": "object",
                                    "required": ["model", "weight"],
                                    "properties": {"model": {"type": "string"}, "weight": {"type": "integer"}},
                                },
                            },
                        },
                        "The weights.",
                    ),
                    **rollout_errors,
                },
            }
        },
        "/v1/rollouts/{name}/{action}": {
            "post": {
                "operationId": "manualAction",
                "tags": ["rollouts"],
                "security": _ADMIN,
                "summary": "Pause, resume, promote or roll back a rollout; recorded in the audit trail.",
                "description": "The actor is recorded as `api:<token name>`; an `actor` in the body is kept "
                "only as a note in the reasons. After success the decision is also published to the "
                "decisions topic.",
                "parameters": [
                    _name_param(),
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": ["pause", "resume", "promote", "rollback", "restart"]},
                    },
                ],
                "requestBody": {"required": False, "content": {JSON: {"schema": _ref("ManualActionBody")}}},
                "responses": {
                    "200": _json_body(_ref("AppliedDecision"), "Applied."),
                    "400": _response("BadParameter"),
                    **_AUTH_ERRORS,
                    "403": _json_body(
                        _ref("Error"),
                        "No admin token is configured (manual control is disabled), or the token may only read.",
                    ),
                    "404": _response("UnknownRollout"),
                    "409": _json_body(
                        _ref("Error"),
                        "The action does not apply to the rollout's state (e.g. resume when not paused).",
                    ),
                    "503": _response("DatabaseUnavailable"),
                },
            }
        },
        "/v1/flagger/gate": {
            "post": {
                "operationId": "flaggerGate",
                "tags": ["canary controllers"],
                "security": [{}],
                "summary": "Flagger gate webhook (pre-rollout, rollout, confirm-*).",
                "description": (
                    "The hook is read from `metadata.hook`, else the `hook` query parameter, else `phase`. "
                    "Flagger "
                    "itself puts its canary phase (`Progressing`) in `phase`, so set `metadata.hook` on each "
                    "webhook. The shadowd rollout is `metadata.rollout`, else `name`. pre-rollout and "
                    "confirm-rollout pass unless rolled back; rollout passes unless the gate says rollback; "
                    "confirm-traffic-increase passes on promote or complete (or when shadowd's approved "
                    "stage covers `metadata.weight`); confirm-promotion passes when complete or when the "
                    "gate promotes "
                    "to the last stage. post-rollout and event calls pass through. Refusals, including an "
                    "unreadable database, are 403: never 5xx."
                ),
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("FlaggerGatePayload")}}},
                "responses": {
                    "200": _json_body(_ref("FlaggerGateResult"), "Pass: Flagger goes on."),
                    "400": _response("BadParameter"),
                    "403": _json_body(
                        _ref("FlaggerGateResult"),
                        "Refused: Flagger holds (and counts a failed "
                        "check for pre-rollout and rollout hooks).",
                    ),
                },
            }
        },
        "/v1/flagger/rollback": {
            "post": {
                "operationId": "flaggerRollback",
                "tags": ["canary controllers"],
                "security": [{}],
                "summary": "Flagger rollback webhook: 200 means roll back now.",
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("FlaggerPayload")}}},
                "responses": {
                    "200": _json_body(
                        _ref("FlaggerRollbackResult"),
                        "Roll back: the gate says rollback or the rollout is rolled back.",
                    ),
                    "400": _response("BadParameter"),
                    "404": _json_body(_ref("FlaggerRollbackResult"), "Unknown rollout: no rollback."),
                    "409": _json_body(
                        _ref("FlaggerRollbackResult"),
                        "No rollback (the gate holds or promotes, or the database cannot be read now).",
                    ),
                },
            }
        },
        "/api/v1/query": {
            "get": _prometheus_query("prometheusQuery"),
            "post": {
                **_prometheus_query("prometheusQueryPost"),
                "parameters": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": ["query"],
                                "properties": {"query": _prom_query_schema()},
                            }
                        }
                    },
                },
            },
        },
    }


def _prometheus_query(operation_id: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "tags": ["canary controllers"],
        "security": _READ,
        "summary": "A Prometheus-compatible instant query, for Flagger's prometheus metric provider.",
        "description": (
            "Answers `vector(N)` (Flagger's liveness probe) and `<metric>` or "
            '`<metric>{rollout="NAME"}` for '
            "the metrics shadowd_regression_rate, shadowd_noise_rate, shadowd_baseline_noise_rate, "
            "shadowd_regression_rate_increase_upper, shadowd_canary_percent, shadowd_stage, "
            "shadowd_latency_p95_ratio, shadowd_cost_ratio, shadowd_compared_verdicts and shadowd_rollback "
            "(1 when the gate says rollback or the rollout is rolled back, else 0). A metric without a value "
            "yet (nothing compared) and an unknown rollout give an empty vector."
        ),
        "parameters": [
            {"name": "query", "in": "query", "required": True, "schema": _prom_query_schema()},
            {
                "name": "time",
                "in": "query",
                "required": False,
                "description": "Accepted and ignored: values are always current.",
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": _json_body(_ref("PrometheusVector"), "Success."),
            "400": _json_body(
                _ref("PrometheusError"),
                "`bad_data`: an unknown metric or a query outside the supported subset.",
            ),
            **_AUTH_ERRORS,
            "503": _json_body(_ref("PrometheusError"), "`unavailable`: the database cannot be read now."),
        },
    }


def _flagger_payload(gate: bool) -> dict[str, Any]:
    from shadowd.api_routes import GATE_HOOKS, PASS_THROUGH_HOOKS, WEIGHT_PATTERN

    text = {"type": ["string", "null"]}
    metadata: dict[str, Any] = {
        "type": "object",
        "additionalProperties": text,
        "properties": {
            "rollout": {
                "type": ["string", "null"],
                "description": "The shadowd rollout (default: `name`).",
            },
        },
    }
    if gate:
        metadata["required"] = ["hook"]
        metadata["properties"]["hook"] = {
            "enum": list(GATE_HOOKS + PASS_THROUGH_HOOKS),
            "description": "The webhook type, which Flagger does not send: set it on each webhook. (shadowd "
            "also reads a `hook` query parameter, or a hook name in `phase`.)",
        }
        metadata["properties"]["weight"] = {
            "type": ["string", "null"],
            "pattern": WEIGHT_PATTERN,
            "description": "confirm-traffic-increase: pass when shadowd approves at least this percentage.",
        }
    body: dict[str, Any] = {
        "type": "object",
        "required": ["name", "metadata"] if gate else ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "\\S", "description": "The Flagger canary's name."},
            "namespace": text,
            "phase": text,
            "checksum": text,
            "metadata": metadata if gate else {**metadata, "type": ["object", "null"]},
        },
    }
    return body


def _prom_query_schema() -> dict[str, Any]:
    from shadowd.api_routes import prom_query_pattern  # the routes module imports this one

    return {"type": "string", "maxLength": 4096, "pattern": prom_query_pattern()}


def _schemas() -> dict[str, Any]:
    side = {
        "type": ["object", "null"],
        "properties": {
            "model": {"type": "string"},
            "ok": {"type": "boolean"},
            "latency_ms": {"type": ["number", "null"]},
            "ttft_ms": {"type": ["number", "null"]},
            "input_tokens": {"type": "integer"},
            "output_tokens": {"type": "integer"},
            "cache_creation_input_tokens": {"type": "integer"},
            "cache_read_input_tokens": {"type": "integer"},
            "stop_reason": {"type": ["string", "null"]},
            "cost_usd": {"type": ["number", "null"]},
            "error": {"type": ["string", "null"]},
            "attempts": {"type": "integer"},
            "capacity_retries": {"type": "integer"},
            "failure": {"enum": ["capacity", "server", "request", "response", None]},
            "streamed": {"type": "boolean"},
            "source": {"enum": ["replay", "recorded"]},
        },
    }
    nullable_number = {"type": ["number", "null"]}
    latency = {"type": "object", "properties": {"p50": nullable_number, "p95": nullable_number}}
    decision = {"enum": ["promote", "hold", "rollback", "complete"]}
    state = {"enum": ["active", "paused", "rolled_back", "complete"]}
    return {
        "Error": {
            "type": "object",
            "required": ["error", "reason"],
            "properties": {
                "error": {"type": "string", "description": "A short category, e.g. `unknown rollout`."},
                "reason": {"type": "string", "description": "What went wrong, for a person."},
                "parameter": {"type": "string", "description": "The parameter at fault (400 only)."},
            },
        },
        "Readiness": {
            "type": "object",
            "required": ["ready", "checks"],
            "properties": {
                "ready": {"type": "boolean"},
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "Report": {
            "type": "object",
            "description": "The `shadowd report --json` object.",
            "required": [
                "rollout",
                "stage",
                "canary_percent",
                "decision",
                "reasons",
                "counts",
                "regression_rate",
                "regression_rate_ci",
                "noise_rate",
                "by_code",
                "by_route",
                "latency_ms",
                "cost_usd",
            ],
            "properties": {
                "rollout": {"type": "string"},
                "baseline": {"type": "string"},
                "candidate": {"type": "string"},
                "state": state,
                "stage": {"type": "integer", "minimum": 1},
                "stage_index": {"type": "integer"},
                "stages": {"type": "array", "items": {"type": "integer"}},
                "canary_percent": {"type": "integer", "minimum": 0, "maximum": 100},
                "decision": decision,
                "reasons": {"type": "array", "items": {"type": "string"}},
                "gate_figures": {"type": "object"},
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                "errors_by_reason": {
                    "type": "object",
                    "description": "Error verdicts by reason: capacity, baseline_failed, comparator_fault.",
                    "additionalProperties": {"type": "integer"},
                },
                "total": {"type": "integer"},
                "compared": {"type": "integer"},
                "stage_samples": {"type": "integer"},
                "regression_rate": nullable_number,
                "regression_rate_ci": {
                    "type": "array",
                    "items": {"type": "number"},
                    "minItems": 2,
                    "maxItems": 2,
                },
                "confidence": {"type": "number"},
                "noise_rate": nullable_number,
                "baseline_noise_rate": nullable_number,
                "by_code": {"type": "object"},
                "noise_by_code": {"type": "object"},
                "by_route": {"type": "object"},
                "latency_ms": {"type": "object", "properties": {"baseline": latency, "candidate": latency}},
                "latency_p95_ratio": nullable_number,
                "latency_judged": {
                    "type": "boolean",
                    "description": "False for replay_mode: batch rollouts: latency is not judged (ratio null).",
                },
                "cost_usd": {
                    "type": "object",
                    "properties": {
                        "baseline": {"type": "number"},
                        "candidate": {"type": "number"},
                        "ratio": nullable_number,
                        "grading": {"type": "number", "description": "Judge spend (docs/JUDGE.md)."},
                    },
                },
                "judge": {
                    "type": ["object", "null"],
                    "description": "Graded share, acceptability per side with intervals, discordant pairs; "
                    "null when no route of the rollout has a judge (docs/JUDGE.md).",
                },
            },
        },
        "RolloutList": {
            "type": "object",
            "required": ["items", "names"],
            "properties": {
                "items": {"type": "array", "items": _ref("Report")},
                "names": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Configured rollouts.",
                },
                "unconfigured": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Rollouts with stored data that the config no longer declares.",
                },
            },
        },
        "Finding": {
            "type": "object",
            "required": ["code", "severity", "path", "detail"],
            "properties": {
                "code": {"type": "string"},
                "severity": {"enum": ["critical", "major", "minor"]},
                "path": {"type": ["string", "null"]},
                "detail": {"type": "string"},
                "noise": {"type": "boolean"},
            },
        },
        "Verdict": {
            "type": "object",
            "description": "The `shadowd verdicts --json` object, plus its `id` (the paging key).",
            "required": [
                "id",
                "rollout",
                "request_id",
                "route",
                "status",
                "findings",
                "baseline",
                "candidate",
                "adaptations",
                "comparator_version",
                "created_at",
            ],
            "properties": {
                "id": {"type": "integer"},
                "rollout": {"type": "string"},
                "request_id": {"type": "string"},
                "route": {"type": "string"},
                "status": {"enum": ["pass", "regression", "noise", "error", "skipped"]},
                "reason": {"type": ["string", "null"]},
                "error_reason": {
                    "type": ["string", "null"],
                    "description": "For status error: capacity, baseline_failed or comparator_fault.",
                },
                "findings": {"type": "array", "items": _ref("Finding")},
                "baseline": side,
                "candidate": side,
                "baseline_repeat": side,
                "adaptations": {"type": "array", "items": {"type": "string"}},
                "comparator_version": {"type": "string"},
                "baseline_noise_blocking": {"type": "boolean"},
                "grades": {
                    "type": ["object", "null"],
                    "description": "The judge's grading status and both grades (acceptable, score, reason, "
                    "judge_model, cost_usd); null when the route has no judge.",
                    "properties": {
                        "status": {"enum": ["graded", "failed", "over_budget", "not_sampled", "no_text"]},
                        "judge_model": {"type": "string"},
                        "judge_version": {"type": "string"},
                        "baseline": {"type": ["object", "null"]},
                        "candidate": {"type": ["object", "null"]},
                        "cost_usd": {"type": "number"},
                        "error": {"type": ["string", "null"]},
                    },
                },
                "captured_at": {"type": ["string", "null"], "format": "date-time"},
                "created_at": {"type": "string", "format": "date-time"},
                "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
                "source": {"type": "object"},
            },
        },
        "VerdictPage": {
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": {
                "items": {"type": "array", "items": _ref("Verdict")},
                "next_cursor": {
                    "type": ["integer", "null"],
                    "description": "Pass as `cursor`; null on the last page.",
                },
            },
        },
        "VerdictDetail": {
            "allOf": [
                _ref("Verdict"),
                {
                    "type": "object",
                    "required": ["outputs"],
                    "properties": {
                        "outputs": {
                            "type": "object",
                            "description": "The Messages API content blocks of each side.",
                            "properties": {
                                s: {"type": ["array", "null"], "items": {"type": "object"}}
                                for s in ("baseline", "candidate", "baseline_repeat")
                            },
                        }
                    },
                },
            ]
        },
        "Decision": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "rollout": {"type": "string"},
                "at": {"type": "string", "format": "date-time"},
                "kind": {"enum": ["gate", "manual"]},
                "actor": {"type": "string"},
                "action": {"type": "string"},
                "decision": decision,
                "stage_index": {"type": "integer"},
                "canary_percent": {"type": "integer"},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "figures": {"type": "object"},
            },
        },
        "ManualActionBody": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "actor": {
                    "type": ["string", "null"],
                    "maxLength": 200,
                    "description": "Kept as a note (`stated actor: …`); the audit actor is the token's name.",
                },
                "reason": {
                    "type": ["string", "null"],
                    "maxLength": 2000,
                    "description": "Why; logged with the action.",
                },
            },
        },
        "AppliedDecision": {
            "type": "object",
            "required": [
                "rollout",
                "action",
                "decision",
                "stage_index",
                "stage",
                "canary_percent",
                "reasons",
                "actor",
                "at",
            ],
            "properties": {
                "rollout": {"type": "string"},
                "action": {"type": "string"},
                "decision": decision,
                "stage_index": {"type": "integer"},
                "stage": {"type": "integer"},
                "canary_percent": {"type": "integer"},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "figures": {"type": "object"},
                "actor": {"type": "string"},
                "at": {"type": "string", "format": "date-time"},
            },
        },
        "Analysis": {
            "type": "object",
            "required": ["verdict", "score", "canary_percent", "reason", "metrics"],
            "properties": {
                "verdict": {"enum": ["pass", "fail", "continue"]},
                "score": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "1 − regression rate over compared verdicts; 0 while none is compared.",
                },
                "canary_percent": {
                    "type": "integer",
                    "description": "The canary share shadowd approves now (0 when rolled back or unknown).",
                },
                "reason": {"type": "string"},
                "metrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "value"],
                        "properties": {
                            "name": {"type": "string"},
                            "value": {"type": ["number", "null"]},
                            "limit": {"type": ["number", "null"]},
                            "ok": {"type": ["boolean", "null"]},
                        },
                    },
                },
                "rollout": {"type": "string"},
                "decision": {"type": ["string", "null"]},
                "state": {"type": ["string", "null"]},
                "stage": {"type": ["integer", "null"]},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "stale": {"type": "boolean", "description": "Present (true) when the answer is the last known decision: the database cannot be read now."},
                "decision_age_s": {"type": "number", "description": "With `stale`: the age of that decision, in seconds (at most 300)."},
            },
        },
        "FlaggerPayload": _flagger_payload(gate=False),
        "FlaggerGatePayload": _flagger_payload(gate=True),
        "FlaggerGateResult": {
            "type": "object",
            "required": ["ok", "reason"],
            "properties": {
                "ok": {"type": "boolean"},
                "hook": {"type": "string"},
                "rollout": {"type": "string"},
                "decision": decision,
                "state": state,
                "canary_percent": {"type": "integer"},
                "reason": {"type": "string"},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "error": {"type": "string"},
                "stale": {"type": "boolean", "description": "Present (true) when the answer is the last known decision: the database cannot be read now."},
                "decision_age_s": {"type": "number", "description": "With `stale`: the age of that decision, in seconds (at most 300)."},
            },
        },
        "FlaggerRollbackResult": {
            "type": "object",
            "required": ["rollback", "reason"],
            "properties": {
                "rollback": {"type": "boolean"},
                "rollout": {"type": "string"},
                "decision": decision,
                "state": state,
                "reason": {"type": "string"},
                "error": {"type": "string"},
                "stale": {"type": "boolean", "description": "Present (true) when the answer is the last known decision: the database cannot be read now."},
                "decision_age_s": {"type": "number", "description": "With `stale`: the age of that decision, in seconds (at most 300)."},
            },
        },
        "PrometheusVector": {
            "type": "object",
            "required": ["status", "data"],
            "properties": {
                "status": {"const": "success"},
                "data": {
                    "type": "object",
                    "required": ["resultType", "result"],
                    "properties": {
                        "resultType": {"const": "vector"},
                        "result": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["metric", "value"],
                                "properties": {
                                    "metric": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "value": {
                                        "type": "array",
                                        # [unix time (number), value (string)]; `items` rather than
                                        # `prefixItems`, which some OpenAPI 3.1 tools still reject.
                                        "items": {"type": ["number", "string"]},
                                        "minItems": 2,
                                        "maxItems": 2,
                                    },
                                },
                            },
                        },
                    },
                },
                "warnings": {"type": "array", "items": {"type": "string"}},
            },
        },
        "PrometheusError": {
            "type": "object",
            "required": ["status", "errorType", "error"],
            "properties": {
                "status": {"const": "error"},
                "errorType": {"enum": ["bad_data", "unavailable"]},
                "error": {"type": "string"},
            },
        },
    }


@functools.cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "shadowd",
            "version": __version__,
            "description": "Shadow-tests a candidate Claude model on mirrored production traffic, stores one "
            "verdict per request and gates the canary. Read endpoints need the read token "
            "when one is configured; manual actions need the admin token.",
        },
        "tags": [{"name": n} for n in ("rollouts", "verdicts", "canary controllers", "operations")],
        "security": _READ,
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "SHADOWD_READ_TOKEN (reads, when set) or SHADOWD_ADMIN_TOKEN (reads and "
                    "manual "
                    "actions).",
                }
            },
            "parameters": {
                "RolloutName": {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "description": "A rollout name from the config.",
                    "schema": {"type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$"},
                }
            },
            "responses": {
                "BadParameter": _json_body(
                    _ref("Error"), "A parameter cannot be used; `parameter` names it."
                ),
                "Unauthorized": _json_body(
                    _ref("Error"), "A bearer token is needed, or the one given is wrong."
                ),
                "UnknownRollout": _json_body(_ref("Error"), "No rollout of that name."),
                "DatabaseUnavailable": _json_body(_ref("Error"), "The database cannot be read now."),
                "TooManyFailures": {
                    "description": "Too many failed authentications from this address; retry after "
                    "`Retry-After` seconds.",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    "content": {JSON: {"schema": _ref("Error")}},
                },
            },
            "schemas": _schemas(),
        },
    }


def openapi_document() -> dict[str, Any]:
    """The document as a fresh dict (callers may change their copy)."""
    return copy.deepcopy(_document())
