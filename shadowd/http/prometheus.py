"""A Prometheus-compatible instant query (`/api/v1/query`, GET or POST) for Flagger's prometheus metric
provider: a small PromQL subset (`<metric>`, `<metric>{rollout="NAME"}`, `vector(N)`) over the report.

While the database cannot be read, the figures come from the last report read (at most
`last_report_max_age_s` old), as for Argo and Flagger's webhooks, with a `warnings` entry giving their age.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import BaseModel, Field

from shadowd.core.rollout_report import RolloutReport
from shadowd.http.contracts import controller_report
from shadowd.http.errors import DATABASE_UNAVAILABLE, json_response
from shadowd.http.registry import AUTH_ERRORS, Operation, Reply, optional
from shadowd.http.state import api_state

log = structlog.get_logger("shadowd.api")


PROM_METRICS: dict[str, Callable[[RolloutReport], float | int | None]] = {
    "shadowd_regression_rate": lambda r: r.regression_rate,
    "shadowd_noise_rate": lambda r: r.noise_rate,
    "shadowd_baseline_noise_rate": lambda r: r.baseline_noise_rate,
    "shadowd_regression_rate_increase_upper": lambda r: r.gate.figures.rate_increase_upper,
    "shadowd_canary_percent": lambda r: r.canary_percent,
    "shadowd_stage": lambda r: r.stage,
    "shadowd_latency_p95_ratio": lambda r: r.latency_p95_ratio,
    "shadowd_cost_ratio": lambda r: r.cost_usd.ratio,
    "shadowd_compared_verdicts": lambda r: r.compared,
    "shadowd_rollback": lambda r: 1 if r.rolled_back else 0,
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
    return json_response({"status": "error", "errorType": error_type, "error": error}, status=status)


async def prometheus_query(request: web.Request) -> web.Response:
    """`/api/v1/query` in the Prometheus HTTP API shape, for Flagger's prometheus metric provider."""
    state = api_state(request)
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
        return json_response({"status": "success", "data": {"resultType": "vector", "result": vector}})
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
            report, age_s = await controller_report(state, spec)
            if age_s is not None:
                log.warning("prometheus_query_from_last_known_decision", rollout=spec.name, age_s=age_s)
                warnings.append(f"rollout {spec.name!r}: last known figures, {age_s:.0f} s old "
                                "(the database cannot be read now)")
            value = PROM_METRICS[parsed.metric](report)
            if value is not None:  # undefined (nothing compared yet): no sample, as Prometheus would
                result.append(
                    {
                        "metric": {"__name__": parsed.metric, "rollout": spec.name},
                        "value": [stamp, _prom_value(value)],
                    }
                )
    except Exception as exc:  # no recent figures to answer from: the Prometheus error shape, never driver text
        log.warning("prometheus_query_database_error", query=query, error=repr(exc)[:500])
        return _prom_error(503, "unavailable", DATABASE_UNAVAILABLE)
    body: dict[str, Any] = {"status": "success", "data": {"resultType": "vector", "result": result}}
    if warnings:
        body["warnings"] = warnings
    return json_response(body)


class PrometheusSample(BaseModel):
    metric: dict[str, str]
    # [unix time (number), value (string)]
    value: list[float | str] = Field(min_length=2, max_length=2)


class PrometheusData(BaseModel):
    resultType: Literal["vector"]
    result: list[PrometheusSample]


class PrometheusVector(BaseModel):
    status: Literal["success"]
    data: PrometheusData
    warnings: list[str] | None = optional()


class PrometheusError(BaseModel):
    status: Literal["error"]
    errorType: Literal["bad_data", "unavailable"]
    error: str


_QUERY = Field(max_length=4096, pattern=prom_query_pattern())


class PrometheusQuery(BaseModel):
    query: str = _QUERY
    time: str | None = Field(None, description="Accepted and ignored: values are always current.")


class PrometheusForm(BaseModel):
    query: str = _QUERY


_DESCRIPTION = (
    "Answers `vector(N)` (Flagger's liveness probe) and `<metric>` or `<metric>{rollout=\"NAME\"}` for the "
    "metrics " + ", ".join(sorted(PROM_METRICS)) + " (shadowd_rollback is 1 when the gate says rollback or the "
    "rollout is rolled back, else 0). A metric without a value yet (nothing compared) and an unknown rollout give "
    "an empty vector. While the database cannot be read, the last figures read (at most 300 s old) answer, with a "
    "`warnings` entry giving their age; without them the answer is 503 `unavailable`."
)
_REPLIES: dict[int, Reply] = {
    200: Reply("Success.", PrometheusVector),
    400: Reply("`bad_data`: an unknown metric or a query outside the supported subset.", PrometheusError),
    **AUTH_ERRORS,
    503: Reply("`unavailable`: the database cannot be read now and no recent figures are known.", PrometheusError),
}
_SUMMARY = "A Prometheus-compatible instant query, for Flagger's prometheus metric provider."


def operations() -> list[Operation]:
    return [
        Operation("GET", "/api/v1/query", prometheus_query, "prometheusQuery", "canary controllers", _SUMMARY,
                  "controller", _REPLIES, description=_DESCRIPTION, query=PrometheusQuery),
        Operation("POST", "/api/v1/query", prometheus_query, "prometheusQueryPost", "canary controllers", _SUMMARY,
                  "controller", _REPLIES, description=_DESCRIPTION, body=PrometheusForm, body_required=True,
                  body_media="application/x-www-form-urlencoded"),
    ]
