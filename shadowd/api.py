"""The HTTP API (SPEC §5) on aiohttp: health, readiness, metrics, and the rollout endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shadowd.auth import AuthThrottle, TokenRegistry
from shadowd.config import Config
from shadowd.logging import http_protocol_logger
from shadowd.metrics import Metrics
from shadowd.ports import Store

log = structlog.get_logger("shadowd.api")

ReadinessCheck = Callable[[], Awaitable[None]]


class NotReady(Exception):
    """Raised by a readiness check with a reason fit for the response body (no hosts, users or SQL)."""


@dataclass
class ApiState:
    """What the handlers share. `admin_token` and `read_token` join `tokens` as the tokens named
    `admin` and `read` (SHADOWD_ADMIN_TOKEN, SHADOWD_READ_TOKEN)."""

    config: Config
    store: Store
    metrics: Metrics
    admin_token: str | None = None
    read_token: str | None = None
    # name -> check; a check raises when its dependency is unreachable.
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    publish_decision: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    tokens: TokenRegistry = field(default_factory=TokenRegistry)
    throttle: AuthThrottle = field(default_factory=AuthThrottle)
    # rollout -> (monotonic time, report) of the last report read: the controllers' answer while the
    # database is briefly away (nothing can change the decision while nobody can write it).
    last_reports: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    last_report_max_age_s: float = 300.0

    def __post_init__(self) -> None:
        for name, token, role in (("admin", self.admin_token, "admin"), ("read", self.read_token, "read")):
            if token and name not in self.tokens.names():
                self.tokens.add_token(name, token, role)  # type: ignore[arg-type]


STATE_KEY = web.AppKey("shadowd_state", ApiState)
OPEN_READS_KEY = web.AppKey("shadowd_open_reads", bool)
MAX_BODY_BYTES = 1024 * 1024


def create_app(state: ApiState, *, open_reads: bool = False) -> web.Application:
    """The API. Reads of reports, verdicts and decisions need a read or admin token unless `open_reads`
    (`run --open-reads`; the demo and `serve` on loopback); Flagger's webhooks and the health
    endpoints are always open."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[STATE_KEY] = state
    app[OPEN_READS_KEY] = open_reads
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    from shadowd.api_routes import add_routes  # the rollout endpoints import this module's ApiState

    add_routes(app)
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

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", starting_metrics)
    app.router.add_route("*", "/{tail:.*}", not_yet)
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
