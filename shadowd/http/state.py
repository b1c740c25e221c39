"""What every handler of the HTTP API shares: the state object and the application keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from shadowd.auth import AuthThrottle, TokenRegistry
from shadowd.config import Config
from shadowd.core.rollout_report import RolloutReport
from shadowd.metrics import Metrics
from shadowd.ports import Store

ReadinessCheck = Callable[[], Awaitable[None]]
MAX_BODY_BYTES = 1024 * 1024


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
    last_reports: dict[str, tuple[float, RolloutReport]] = field(default_factory=dict)
    last_report_max_age_s: float = 300.0

    def __post_init__(self) -> None:
        for name, token, role in (("admin", self.admin_token, "admin"), ("read", self.read_token, "read")):
            if token and name not in self.tokens.names():
                self.tokens.add_token(name, token, role)  # type: ignore[arg-type]


STATE_KEY = web.AppKey("shadowd_state", ApiState)
OPEN_READS_KEY = web.AppKey("shadowd_open_reads", bool)
# The OpenAPI document generated from the application's routes (shadowd.http.openapi).
DOCUMENT_KEY = web.AppKey("shadowd_openapi", dict)


def api_state(request: web.Request) -> ApiState:
    return request.app[STATE_KEY]
