"""The HTTP API (SPEC §5) on aiohttp: the application from the routes of every resource module, the
OpenAPI document generated from the same routes, and what `shadowd run` serves while it starts."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shadowd.http import argo, control, dead_letters, flagger, health, pages, prometheus, rollouts, verdicts
from shadowd.http.errors import json_errors
from shadowd.http.middleware import authenticate
from shadowd.http.openapi import build_document
from shadowd.http.registry import Operation, register
from shadowd.http.state import DOCUMENT_KEY, MAX_BODY_BYTES, OPEN_READS_KEY, STATE_KEY, ApiState
from shadowd.logging import http_protocol_logger
from shadowd.metrics import Metrics


@functools.cache
def operations() -> tuple[Operation, ...]:
    """Every route, in registration order: the `.html` pages before the JSON verdict route that would
    otherwise take `ID.html` as a request id."""
    return (
        *health.OPERATIONS,
        *rollouts.operations(),
        *verdicts.operations(),
        *pages.operations(),
        *verdicts.detail_operations(),
        *dead_letters.operations(),
        *argo.operations(),
        *control.operations(),
        *flagger.operations(),
        *prometheus.operations(),
    )


@functools.cache
def _document() -> dict[str, Any]:
    return build_document(list(operations()))


def openapi_document() -> dict[str, Any]:
    """The generated document (a fresh copy: callers may change it)."""
    import copy

    return copy.deepcopy(_document())


def create_app(state: ApiState, *, open_reads: bool = False) -> web.Application:
    """The API. Reads of reports, verdicts and decisions need a read or admin token unless `open_reads`
    (`run --open-reads`; the demo and `serve` on loopback); Flagger's webhooks and the health
    endpoints are always open."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[json_errors, authenticate])
    app[STATE_KEY] = state
    app[OPEN_READS_KEY] = open_reads
    app[DOCUMENT_KEY] = _document()
    register(app, list(operations()))
    return app


def create_starting_app(metrics: Metrics, phase: Callable[[], str]) -> web.Application:
    """What `shadowd run` serves until its API can answer: /healthz (alive), /readyz 503 naming the phase
    (e.g. waiting for the database), /metrics; any other path 503 with the same reason."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)

    async def not_yet(request: web.Request) -> web.Response:
        reason = f"starting: {phase()}"
        if request.path == "/readyz":
            return web.json_response({"ready": False, "checks": {"startup": reason}}, status=503)
        return web.json_response({"error": reason}, status=503, headers={"Retry-After": "5"})

    async def starting_metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/metrics", starting_metrics)
    app.router.add_route("*", "/{tail:.*}", not_yet)
    return app


def runner_options() -> dict[str, Any]:
    """aiohttp server options: no access log, and protocol errors logged without the raw request bytes."""
    # Request lines up to 64 KiB: a `query` of 4,096 characters, percent-encoded, must fit.
    return {"access_log": None, "logger": http_protocol_logger(), "max_line_size": 65536}


async def start_http(app: web.Application, listen: str) -> web.AppRunner:
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--http must be HOST:PORT, got {listen!r}")
    runner = web.AppRunner(app, **runner_options())
    await runner.setup()
    await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
    return runner
