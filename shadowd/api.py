"""The HTTP API (SPEC §5) on aiohttp: health, readiness, metrics, and the rollout endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shadowd.adapters.sql_store import SqlVerdictStore
from shadowd.config import Config
from shadowd.metrics import Metrics

ReadinessCheck = Callable[[], Awaitable[None]]

log = structlog.get_logger("shadowd.api")


class NotReady(Exception):
    """Raised by a readiness check with a reason fit for the response body (no hosts, users or SQL)."""


@dataclass
class ApiState:
    config: Config
    store: SqlVerdictStore
    metrics: Metrics
    admin_token: str | None = None
    read_token: str | None = None
    # name -> check; a check raises when its dependency is unreachable.
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    publish_decision: Callable[[dict[str, Any]], Awaitable[None]] | None = None


STATE_KEY = web.AppKey("shadowd_state", ApiState)


def create_app(state: ApiState) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[STATE_KEY] = state
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    from shadowd.api_routes import add_routes  # the rollout endpoints import this module's ApiState

    add_routes(app)
    return app


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    checks: dict[str, str] = {}
    ready = True
    for name, check in state.readiness.items():
        try:
            await asyncio.wait_for(check(), timeout=3.0)
            checks[name] = "ok"
        except NotReady as exc:
            ready = False
            checks[name] = str(exc)[:300]
        except Exception as exc:
            # Driver messages name hosts, users and authentication failures: they go to the log only.
            ready = False
            checks[name] = "unreachable"
            log.warning("readiness_check_failed", check=name, error=f"{type(exc).__name__}: {exc}"[:300])
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = generate_latest(state.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start_http(app: web.Application, listen: str) -> web.AppRunner:
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--http must be HOST:PORT, got {listen!r}")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
    return runner
