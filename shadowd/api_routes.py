"""The rollout endpoints of the HTTP API (SPEC §5) and the canary-controller contracts (Argo, Flagger).

Every answer is JSON. What a canary controller reads is decided by the small pure functions at the
bottom (`analysis_verdict`, `flagger_gate_verdict`, `flagger_rollback_verdict`), from the report alone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog
from aiohttp import web

from shadowd.adapters.sql_store import VerdictFilter
from shadowd.api import STATE_KEY, ApiState
from shadowd.api_pages import add_page_routes
from shadowd.api_security import (
    DATABASE_UNAVAILABLE,
    BadParameter,
    authenticate,
    error_response,
    json_errors,
    json_object,
    json_response,
    request_identity,
    storable_text,
)
from shadowd.api_weights import add_weights_route
from shadowd.core.findings import CODES, Status
from shadowd.core.rollout import RolloutSpec
from shadowd.openapi import openapi_document
from shadowd.promoter import ManualAction, ManualActionError, apply_manual
from shadowd.report import build_report
from shadowd.timeparse import parse_since

log = structlog.get_logger("shadowd.api")

MAX_PAGE = 1000
DEFAULT_PAGE = 100
_ACTIONS: dict[str, ManualAction] = {
    "pause": "pause",
    "resume": "resume",
    "promote": "promote",
    "rollback": "rollback",
    "restart": "restart",
}
_VERDICT_PARAMS = frozenset({"status", "code", "route", "since", "limit", "cursor"})

AnalysisVerdict = Literal["pass", "fail", "continue"]

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


def add_routes(app: web.Application) -> None:
    """Register the /v1 and /api/v1 endpoints and /openapi.json; state comes from `app[STATE_KEY]`."""
    app.middlewares.append(json_errors)
    app.middlewares.append(authenticate)
    router = app.router
    router.add_get("/openapi.json", openapi_json)
    router.add_get("/v1/rollouts", list_rollouts)
    router.add_get("/v1/rollouts/{name}", get_rollout)
    router.add_get("/v1/rollouts/{name}/verdicts", list_verdicts)
    add_page_routes(router)  # the .html pages, before the JSON verdict route that would take `ID.html`
    router.add_get("/v1/rollouts/{name}/verdicts/{request_id:.+}", get_verdict)
    router.add_get("/v1/rollouts/{name}/decisions", list_decisions)
    router.add_get("/v1/rollouts/{name}/analysis", argo_analysis)
    add_weights_route(app)
    router.add_post("/v1/rollouts/{name}/{action:pause|resume|promote|rollback|restart}", manual_action)
    router.add_post("/v1/flagger/gate", flagger_gate)
    router.add_post("/v1/flagger/rollback", flagger_rollback)
    router.add_get("/api/v1/query", prometheus_query)
    router.add_post("/api/v1/query", prometheus_query)


# --- plumbing ----------------------------------------------------------------------------------------


_json = json_response
_error = error_response


def _state(request: web.Request) -> ApiState:
    return request.app[STATE_KEY]


def _unknown_rollout(state: ApiState, name: str) -> web.Response:
    known = ", ".join(r.name for r in state.config.rollouts) or "none"
    return _error(
        404, "unknown rollout", f"no rollout named {name!r} in the config (known: {known})", rollout=name
    )


_ROLLOUT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


async def _known_rollout(state: ApiState, name: str) -> bool:
    """Configured now, or with stored verdicts or decisions (a retired rollout's verdicts stay readable)."""
    if state.config.rollout(name) is not None:
        return True
    return _ROLLOUT_NAME.match(name) is not None and name in await state.store.rollout_names()


def _now() -> datetime:
    return datetime.now(UTC)


def _is_count(raw: str, digits: int = 9) -> bool:
    """ASCII digits only, and few of them: `str.isdigit` accepts '²', which `int` refuses."""
    return 0 < len(raw) <= digits and raw.isascii() and raw.isdigit()


def _page_size(query: Mapping[str, str], default: int = DEFAULT_PAGE) -> int:
    raw = query.get("limit")
    if raw is None:
        return default
    if not _is_count(raw) or not 1 <= int(raw) <= MAX_PAGE:
        raise BadParameter("limit", f"must be an integer from 1 to {MAX_PAGE}, got {raw!r}")
    return int(raw)


# --- reading rollouts and verdicts -----------------------------------------------------------------


async def openapi_json(_request: web.Request) -> web.Response:
    return _json(openapi_document())


async def list_rollouts(request: web.Request) -> web.Response:
    state = _state(request)
    reports = [await build_report(state.store, spec) for spec in state.config.rollouts]
    configured = [spec.name for spec in state.config.rollouts]
    stored = await state.store.rollout_names()
    return _json(
        {
            "items": reports,
            "names": configured,
            # Verdicts or decisions in the database for rollouts the config no longer declares.
            "unconfigured": [name for name in stored if name not in configured],
        }
    )


async def get_rollout(request: web.Request) -> web.Response:
    state = _state(request)
    name = request.match_info["name"]
    spec = state.config.rollout(name)
    if spec is None:
        return _unknown_rollout(state, name)
    return _json(await build_report(state.store, spec))


def verdict_query(query: Mapping[str, str], now: datetime) -> tuple[VerdictFilter, int, int | None]:
    """The `verdicts` filters, page size and cursor from a query string; BadParameter names what is wrong."""
    for key in query:
        if key not in _VERDICT_PARAMS:
            raise BadParameter(key, f"unknown parameter; known: {', '.join(sorted(_VERDICT_PARAMS))}")
    status = query.get("status")
    if status is not None and status not in {s.value for s in Status}:
        raise BadParameter("status", f"must be one of {', '.join(s.value for s in Status)}, got {status!r}")
    code = query.get("code")
    if code is not None and code not in CODES:
        raise BadParameter("code", f"unknown finding code {code!r}")
    route = query.get("route")
    if route is not None:
        storable_text("route", route, 256)
    since = query.get("since")
    try:
        since_at = parse_since(since, now) if since is not None else None
    except ValueError as exc:
        raise BadParameter("since", str(exc)) from None
    cursor = query.get("cursor")
    if cursor is not None and (not _is_count(cursor, digits=18) or int(cursor) < 1):
        raise BadParameter("cursor", f"must be a positive integer (a `next_cursor` value), got {cursor!r}")
    where = VerdictFilter(status=status, code=code, route=route, since=since_at)
    return where, _page_size(query), int(cursor) if cursor is not None else None


async def list_verdicts(request: web.Request) -> web.Response:
    state = _state(request)
    name = request.match_info["name"]
    where, limit, cursor = verdict_query(request.query, _now())
    if not await _known_rollout(state, name):
        return _unknown_rollout(state, name)
    # One more than asked tells whether another page exists, so the last page has next_cursor null.
    rows = await state.store.list_verdicts(name, where, limit=limit + 1, before_id=cursor)
    page = rows[:limit]
    return _json(
        {
            "items": [row.to_dict() for row in page],
            "next_cursor": page[-1].id if len(rows) > limit else None,
        }
    )


async def get_verdict(request: web.Request) -> web.Response:
    state = _state(request)
    name, request_id = request.match_info["name"], request.match_info["request_id"]
    storable_text("request_id", request_id, 256)
    if not await _known_rollout(state, name):
        return _unknown_rollout(state, name)
    row = await state.store.get_verdict(name, request_id)
    if row is None:
        return _error(
            404,
            "verdict not found",
            f"no verdict for request {request_id!r} in rollout {name!r}",
            rollout=name,
            request_id=request_id,
        )
    verdict = row.verdict
    outputs = {
        side: (result.to_dict()["content"] if result is not None else None)
        for side, result in (
            ("baseline", verdict.baseline),
            ("candidate", verdict.candidate),
            ("baseline_repeat", verdict.baseline_repeat),
        )
    }
    return _json(row.to_dict() | {"outputs": outputs})


async def list_decisions(request: web.Request) -> web.Response:
    state = _state(request)
    name = request.match_info["name"]
    for key in request.query:
        if key != "limit":
            raise BadParameter(key, "unknown parameter; known: limit")
    limit = _page_size(request.query)
    if not await _known_rollout(state, name):
        return _unknown_rollout(state, name)
    return _json({"items": await state.store.list_decisions(name, limit=limit)})


# --- manual control --------------------------------------------------------------------------------


async def manual_action(request: web.Request) -> web.Response:
    state = _state(request)
    name, action = request.match_info["name"], _ACTIONS[request.match_info["action"]]
    identity = request_identity(request)
    if identity is None:  # the authenticate middleware admits no change without one
        return _error(401, "unauthorized", f"{action} needs `Authorization: Bearer <admin token>`")
    spec = state.config.rollout(name)
    if spec is None:
        return _unknown_rollout(state, name)
    body = await json_object(request, required=False)
    for key in body:
        if key not in ("actor", "reason"):
            raise BadParameter(key, "unknown field; known: actor, reason")
    stated = _optional_text(body, "actor", 200)
    note = _optional_text(body, "reason", 2000)
    if stated and stated != identity.name:
        # The audit actor is the token's name; a name in the body is only the caller's word, kept as such.
        note = f"(stated actor: {stated}) {note or ''}".strip()
    try:
        applied = await apply_manual(state.store, spec, action, f"api:{identity.name}", _now(), note)
    except ManualActionError as exc:
        return _error(409, "conflict", str(exc), rollout=name, action=action)
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
    return _json(decision)


def _optional_text(body: Mapping[str, Any], key: str, max_length: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise BadParameter(key, f"must be a string of at most {max_length} characters")
    return value.strip() or None


# --- The controllers' reports: fresh, or the last known one while the database is briefly away ---------


async def controller_report(state: ApiState, spec: RolloutSpec) -> tuple[dict[str, Any], float | None]:
    """(report, None) read now, or (the last report read, its age in seconds) when the database cannot be
    read and that report is at most `last_report_max_age_s` old. Raises what the read raised otherwise."""
    try:
        report = await build_report(state.store, spec)
    except Exception:
        last = state.last_reports.get(spec.name)
        if last is not None and time.monotonic() - last[0] <= state.last_report_max_age_s:
            return last[1], round(time.monotonic() - last[0], 1)
        raise
    state.last_reports[spec.name] = (time.monotonic(), report)
    return report, None


def _stale_note(age_s: float | None) -> str:
    return "" if age_s is None else f" (last known decision, {age_s:.0f} s old: the database cannot be read now)"


def _with_age(body: dict[str, Any], age_s: float | None) -> dict[str, Any]:
    if age_s is not None:
        body["stale"] = True
        body["decision_age_s"] = age_s
    return body


# --- Argo Rollouts: the `web` metric provider --------------------------------------------------------


async def argo_analysis(request: web.Request) -> web.Response:
    """Always 200 with a JSON verdict: Argo counts non-2xx as an error and an empty body as success."""
    state = _state(request)
    name = request.match_info["name"]
    spec = state.config.rollout(name)
    if spec is None:
        known = ", ".join(r.name for r in state.config.rollouts) or "none"
        return _json(
            _analysis_body(name, "fail", f"no rollout named {name!r} in the shadowd config (known: {known})")
        )
    try:
        want_percent, want_stage = analysis_query(request.query, spec)
    except BadParameter as exc:
        return _json(_analysis_body(name, "fail", f"bad parameter {exc.parameter}: {exc.reason}"))
    try:
        report, age_s = await controller_report(state, spec)
    except Exception as exc:  # whatever the driver raises, Argo must get a body: keep measuring
        log.warning("analysis_database_error", rollout=name, error=repr(exc)[:500])
        return _json(
            _analysis_body(name, "continue", DATABASE_UNAVAILABLE)
        )
    if age_s is not None:
        log.warning("analysis_from_last_known_decision", rollout=name, age_s=age_s)
    verdict, reason = analysis_verdict(report, want_percent, want_stage)
    return _json(_with_age(_analysis_body(name, verdict, reason + _stale_note(age_s), report), age_s))


def analysis_query(query: Mapping[str, str], spec: RolloutSpec) -> tuple[int | None, int | None]:
    """`canary_percent=N` (0..100) and `stage=N` (1..number of stages), both optional."""

    def integer(key: str, low: int, high: int) -> int | None:
        raw = query.get(key)
        if raw is None:
            return None
        if not _is_count(raw) or not low <= int(raw) <= high:
            raise BadParameter(key, f"must be an integer from {low} to {high}, got {raw!r}")
        return int(raw)

    return integer("canary_percent", 0, 100), integer("stage", 1, len(spec.stages))


def _analysis_body(
    name: str, verdict: AnalysisVerdict, reason: str, report: dict[str, Any] | None = None
) -> dict[str, Any]:
    if report is None:
        return {
            "verdict": verdict,
            "score": 0.0,
            "canary_percent": 0,
            "reason": reason,
            "metrics": [],
            "rollout": name,
            "decision": None,
            "state": None,
            "stage": None,
            "reasons": [],
        }
    rate = report["regression_rate"]
    return {
        "verdict": verdict,
        # 1 − regression rate over compared verdicts; 0.0 while nothing is compared, so a score
        # threshold never passes on no evidence. The verdict, not the score, carries the gate.
        "score": 1.0 - rate if rate is not None else 0.0,
        "canary_percent": report["canary_percent"],
        "reason": reason,
        "metrics": analysis_metrics(report),
        "rollout": name,
        "decision": report["decision"],
        "state": report["state"],
        "stage": report["stage"],
        "reasons": report["reasons"],
    }


def analysis_metrics(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The figures the gate decided on, each with its limit and whether it is within it."""
    figures = report["gate_figures"]

    def entry(name: str, value: Any, limit: Any = None, within: bool | None = None) -> dict[str, Any]:
        return {"name": name, "value": value, "limit": limit, "ok": within}

    def at_most(value: float | None, limit: float) -> bool | None:
        return None if value is None else value <= limit

    samples, stage_samples, minimum = report["compared"], report["stage_samples"], figures.get("min_samples")
    upper = figures.get("rate_increase_upper")
    tolerance = figures.get("max_regression_rate_increase")
    return [
        entry("regression_rate", report["regression_rate"]),
        entry("baseline_noise_rate", report["baseline_noise_rate"]),
        entry(
            "regression_rate_increase_upper",
            upper,
            tolerance,
            at_most(upper, tolerance) if tolerance is not None else None,
        ),
        entry(
            "latency_p95_ratio",
            report["latency_p95_ratio"],
            figures.get("max_latency_p95_ratio"),
            at_most(report["latency_p95_ratio"], figures.get("max_latency_p95_ratio") or float("inf")),
        ),
        entry(
            "cost_ratio",
            report["cost_usd"]["ratio"],
            figures.get("max_cost_ratio"),
            at_most(report["cost_usd"]["ratio"], figures.get("max_cost_ratio") or float("inf")),
        ),
        entry("compared_verdicts", samples, minimum, samples >= minimum if minimum is not None else None),
        entry(
            "stage_compared_verdicts",
            stage_samples,
            minimum,
            stage_samples >= minimum if minimum is not None else None,
        ),
    ]


# --- Flagger: webhooks --------------------------------------------------------------------------------


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
    state = _state(request)
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
        return _json({"ok": True, **base, "reason": f"shadowd does not gate {hook!r} hooks; passed through"})
    spec = state.config.rollout(call.rollout)
    if spec is None:
        known = ", ".join(r.name for r in state.config.rollouts) or "none"
        return _json(
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
        return _json(
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
        "decision": report["decision"],
        "state": report["state"],
        "canary_percent": report["canary_percent"],
        "reason": reason + _stale_note(age_s),
        "reasons": report["reasons"],
    }
    if not passed:
        body["error"] = "refused"
    return _json(_with_age(body, age_s), status=200 if passed else 403)


# An integer percentage 0..100 (leading zeros and surrounding blanks allowed), or empty for none.
WEIGHT_PATTERN = r"^(\s*0*([0-9]|[1-9][0-9]|100)\s*)?$"


def _metadata_weight(metadata: Mapping[str, str]) -> int | None:
    raw = metadata.get("weight")
    if raw is None or raw == "":
        return None
    if not re.search(WEIGHT_PATTERN, raw) or not raw.strip().isascii():
        raise BadParameter("metadata.weight", f"must be an integer percentage from 0 to 100, got {raw!r}")
    return int(raw.strip())


async def flagger_rollback(request: web.Request) -> web.Response:
    """Flagger rolls back on a 200; 409 (or 404 for an unknown rollout) means keep going."""
    state = _state(request)
    call = await _flagger_call(request)
    base = {"rollout": call.rollout, "canary": call.canary, "namespace": call.namespace}
    spec = state.config.rollout(call.rollout)
    if spec is None:
        known = ", ".join(r.name for r in state.config.rollouts) or "none"
        return _json(
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
        return _json(
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
        "decision": report["decision"],
        "state": report["state"],
        "reason": reason + _stale_note(age_s),
        "reasons": report["reasons"],
    }
    return _json(_with_age(body, age_s), status=200 if rollback else 409)


# --- Flagger: the Prometheus-compatible query API -------------------------------------------------------


def _rollback_flag(report: Mapping[str, Any]) -> int:
    return 1 if _rolled_back(report) else 0


PROM_METRICS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "shadowd_regression_rate": lambda r: r["regression_rate"],
    "shadowd_noise_rate": lambda r: r["noise_rate"],
    "shadowd_baseline_noise_rate": lambda r: r["baseline_noise_rate"],
    "shadowd_regression_rate_increase_upper": lambda r: r["gate_figures"].get("rate_increase_upper"),
    "shadowd_canary_percent": lambda r: r["canary_percent"],
    "shadowd_stage": lambda r: r["stage"],
    "shadowd_latency_p95_ratio": lambda r: r["latency_p95_ratio"],
    "shadowd_cost_ratio": lambda r: r["cost_usd"]["ratio"],
    "shadowd_compared_verdicts": lambda r: r["compared"],
    "shadowd_rollback": _rollback_flag,
}

_SELECTOR = re.compile(r"^\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:\{(.*)\})?\s*$", re.DOTALL)
_MATCHER = re.compile(
    r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!=|!~|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*(,|$)"""
)
_VECTOR = re.compile(r"^\s*vector\s*\(\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\)\s*$")


def prom_query_pattern() -> str:
    """One regex for exactly the queries `parse_prom_query` answers, for the OpenAPI document."""
    quoted = r"""(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
    matcher = rf"\s*rollout\s*=\s*{quoted}\s*"
    metrics = "|".join(sorted(PROM_METRICS))
    selector = rf"\s*(?:{metrics})\s*(?:\{{\s*(?:{matcher}(?:,{matcher})*,?)?\s*\}})?\s*"
    return rf"^(?:{_VECTOR.pattern[1:-1]}|{selector})$"


class PromBadData(ValueError):
    """A query outside the small PromQL subset shadowd answers."""


@dataclass(frozen=True, slots=True)
class PromQuery:
    metric: str | None  # None: a `vector(N)` literal
    rollout: str | None
    literal: float = 0.0


def parse_prom_query(query: str) -> PromQuery:
    """`metric`, `metric{rollout="NAME"}` or `vector(N)` (Flagger's liveness probe asks `vector(1)`)."""
    literal = _VECTOR.match(query)
    if literal:
        return PromQuery(metric=None, rollout=None, literal=float(literal.group(1)))
    selector = _SELECTOR.match(query)
    if not selector:
        raise PromBadData(
            f'unsupported query {query!r}: shadowd answers `<metric>{{rollout="NAME"}}` and vector(N)'
        )
    metric, body = selector.group(1), (selector.group(2) or "").strip()
    if metric not in PROM_METRICS:
        raise PromBadData(f"unknown metric {metric!r}; known: {', '.join(sorted(PROM_METRICS))}")
    rollout: str | None = None
    position = 0
    while position < len(body):
        matcher = _MATCHER.match(body, position)
        if not matcher or matcher.end() == position:
            raise PromBadData(f"cannot parse the label matchers {{{body}}}")
        label, operator, quoted = matcher.group(1), matcher.group(2), matcher.group(3)
        if label != "rollout" or operator != "=":
            raise PromBadData(f'only the matcher rollout="NAME" is supported, got {label}{operator}{quoted}')
        rollout = quoted[1:-1].replace('\\"', '"').replace("\\'", "'").replace("\\\\", "\\")
        position = matcher.end()
    return PromQuery(metric=metric, rollout=rollout)


def _prom_value(value: float) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def _prom_error(status: int, error_type: str, error: str) -> web.Response:
    return _json({"status": "error", "errorType": error_type, "error": error}, status=status)


async def prometheus_query(request: web.Request) -> web.Response:
    """`/api/v1/query` in the Prometheus HTTP API shape, for Flagger's prometheus metric provider."""
    state = _state(request)
    params: Mapping[str, Any] = request.query
    if request.method == "POST":
        try:
            params = await request.post()
        except web.HTTPException:
            raise  # 413: the body is over the size limit
        except (ValueError, AssertionError, LookupError, UnicodeError) as exc:
            # e.g. multipart without a boundary, or a charset Python does not know
            return _prom_error(400, "bad_data", f"cannot read the form body ({type(exc).__name__})")
    query = params.get("query")
    if not isinstance(query, str) or not query.strip():
        return _prom_error(400, "bad_data", "the `query` parameter is required (a non-empty string)")
    if len(query) > 4096:
        return _prom_error(400, "bad_data", "the `query` parameter is longer than 4096 characters")
    try:
        parsed = parse_prom_query(query)
    except PromBadData as exc:
        return _prom_error(400, "bad_data", str(exc))
    stamp = round(time.time(), 3)
    if parsed.metric is None:
        vector = [{"metric": {}, "value": [stamp, _prom_value(parsed.literal)]}]
        return _json({"status": "success", "data": {"resultType": "vector", "result": vector}})
    specs = list(state.config.rollouts)
    warnings: list[str] = []
    if parsed.rollout is not None:
        spec = state.config.rollout(parsed.rollout)
        specs = [spec] if spec is not None else []
        if spec is None:
            warnings.append(f"no rollout named {parsed.rollout!r} in the shadowd config")
    result: list[dict[str, Any]] = []
    try:
        for spec in specs:
            value = PROM_METRICS[parsed.metric](await build_report(state.store, spec))
            if value is not None:  # undefined (nothing compared yet): no sample, as Prometheus would
                result.append(
                    {
                        "metric": {"__name__": parsed.metric, "rollout": spec.name},
                        "value": [stamp, _prom_value(value)],
                    }
                )
    except Exception as exc:  # answered in the Prometheus error shape, whatever the driver raised
        log.warning("prometheus_query_database_error", query=query, error=repr(exc)[:500])
        return _prom_error(503, "unavailable", DATABASE_UNAVAILABLE)
    body: dict[str, Any] = {"status": "success", "data": {"resultType": "vector", "result": result}}
    if warnings:
        body["warnings"] = warnings
    return _json(body)


# --- the contracts, as pure functions of the report ------------------------------------------------------


def _rolled_back(report: Mapping[str, Any]) -> bool:
    return bool(report["state"] == "rolled_back" or report["decision"] == "rollback")


def _first_reason(report: Mapping[str, Any]) -> str:
    reasons = report["reasons"]
    return str(reasons[0]) if reasons else "no reason recorded"


def _approved(report: Mapping[str, Any]) -> tuple[int, int]:
    """(stage number, canary percent) shadowd approves now: the promotion target while it says promote."""
    if report["decision"] == "promote":
        index = int(report["gate_figures"].get("next_stage_index", report["stage_index"]))
        return index + 1, int(report["stages"][index])
    return int(report["stage"]), int(report["canary_percent"])


def analysis_verdict(
    report: Mapping[str, Any], want_percent: int | None = None, want_stage: int | None = None
) -> tuple[AnalysisVerdict, str]:
    """The Argo measurement: rollback fails; complete and promote pass; paused and hold continue.

    With `canary_percent=N` or `stage=N`, the question becomes "may the canary serve N% (be at stage N)?":
    pass once shadowd's approved stage covers it (its current stage, or its promotion target).
    """
    decision, phase = report["decision"], report["state"]
    if _rolled_back(report):
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


def flagger_gate_verdict(hook: str, report: Mapping[str, Any], weight: int | None = None) -> tuple[bool, str]:
    """Whether a Flagger gate hook passes, and why.

    pre-rollout and confirm-rollout pass unless the rollout is rolled back; rollout passes unless the gate
    says rollback; confirm-traffic-increase passes on promote or complete (or, with `metadata.weight`,
    when shadowd's approved stage covers that weight and it is not paused); confirm-promotion passes
    only when complete, or when the gate promotes to the last stage.
    """
    decision, phase = report["decision"], report["state"]
    if _rolled_back(report):
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
    last = len(report["stages"]) - 1
    if decision == "promote" and int(report["gate_figures"].get("next_stage_index", -1)) >= last:
        return True, f"shadowd promotes to its last stage ({report['stages'][last]}%)"
    return (
        False,
        f"shadowd's rollout is not complete ({decision}, stage {report['stage']} of {last + 1}): "
        f"{_first_reason(report)}",
    )


def flagger_rollback_verdict(report: Mapping[str, Any]) -> tuple[bool, str]:
    """Roll back now exactly when shadowd's gate says rollback or the rollout is rolled back."""
    if _rolled_back(report):
        return True, f"shadowd says rollback: {_first_reason(report)}"
    return False, f"shadowd's gate says {report['decision']}; no rollback"


__all__ = [
    "BadParameter",
    "add_routes",
    "analysis_verdict",
    "flagger_gate_verdict",
    "flagger_rollback_verdict",
    "parse_prom_query",
    "verdict_query",
]
