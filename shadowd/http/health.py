"""Operations: liveness, readiness, Prometheus metrics and the OpenAPI document, all open."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shadowd.http.errors import json_response
from shadowd.http.models import Health, Readiness
from shadowd.http.registry import Operation, Reply
from shadowd.http.state import DOCUMENT_KEY, STATE_KEY, NotReady

log = structlog.get_logger("shadowd.api")
READINESS_TIMEOUT_S = 3.0


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready means "can answer the API": each readiness check (the database, the writer) answers in time.
    Kafka is not one of them: its health goes to the metrics and the log."""
    state = request.app[STATE_KEY]
    checks: dict[str, str] = {}
    ready = True
    for name, check in state.readiness.items():
        try:
            await asyncio.wait_for(check(), timeout=READINESS_TIMEOUT_S)
            checks[name] = "ok"
        except NotReady as exc:
            ready = False
            checks[name] = str(exc)[:300]
        except TimeoutError:
            ready = False
            checks[name] = "unreachable: no answer within 3 s"
        except Exception as exc:  # whatever the driver raises: "not ready"; the cause (hosts, users) is logged
            ready = False
            checks[name] = "unreachable: see the server log"
            log.warning("readiness_check_failed", check=name, error=repr(exc)[:500])
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = generate_latest(state.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[DOCUMENT_KEY])


OPERATIONS = [
    Operation("GET", "/healthz", healthz, "healthz", "operations", "Liveness: the process answers.", "open",
              {200: Reply("Alive.", Health)}),
    Operation("GET", "/readyz", readyz, "readyz", "operations",
              "Readiness: the API can answer (the database and the writer); Kafka is not a condition.", "open",
              {200: Reply("Every check answered.", Readiness),
               503: Reply("A check failed; `checks` says which and why.", Readiness)}),
    Operation("GET", "/metrics", metrics, "metrics", "operations",
              "Prometheus metrics of this process (text exposition format).", "open",
              {200: Reply("Metrics.", media="text/plain", schema={"type": "string"})}),
    Operation("GET", "/openapi.json", openapi_json, "openapi", "operations",
              "This document, generated from the routes and their models.", "open",
              {200: Reply("The OpenAPI 3.1 document.", schema={"type": "object"})}),
]
