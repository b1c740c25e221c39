"""Who may call what: bearer tokens by role, open reads, and failed-authentication throttling.

The access a path needs is decided here from the path and method alone; every route also declares it
(`Operation.access`), which is what the OpenAPI document's `security` says, and a unit test checks that
the two agree for every route.
"""

from __future__ import annotations

import re
from typing import Literal

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from shadowd.auth import Identity, Role, bearer_token
from shadowd.http.errors import error_response, printable
from shadowd.http.state import OPEN_READS_KEY, STATE_KEY

log = structlog.get_logger("shadowd.api")

Access = Literal["open", "controller", "read", "admin"]
IDENTITY_KEY = web.RequestKey("shadowd_identity", Identity)
# Controller endpoints: Argo's analysis and the gateway weights (SPEC §10), read by machines.
_ANALYSIS = re.compile(r"^/v1/rollouts/[^/]+/(analysis|weights)$")
_FLAGGER = frozenset({"/v1/flagger/gate", "/v1/flagger/rollback"})


def access_for(path: str, method: str) -> Access:
    """Which credential a request needs, from its path and method alone."""
    if path.startswith("/api/v1/"):
        return "controller"  # the Prometheus-compatible query API (Flagger's metric provider), GET or POST
    if path in _FLAGGER:
        return "open"  # Flagger's webhooks cannot send headers; they change nothing
    if not (path.startswith("/v1/") or path == "/v1"):
        return "open"
    if method in ("GET", "HEAD"):
        return "controller" if _ANALYSIS.match(path) else "read"
    return "admin"


def access_of(request: web.Request) -> Access:
    return access_for(request.path, request.method)


def request_identity(request: web.Request) -> Identity | None:
    return request.get(IDENTITY_KEY)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Changes need an admin token. Reads need a read or admin token whenever a read token is configured;
    without one, the controller endpoints are open, and reports and verdicts only with open reads."""
    if request.match_info.http_exception is not None:
        return await handler(request)  # no such route: the router's 404/405 says so
    access = access_of(request)
    if access == "open":
        return await handler(request)
    state = request.app[STATE_KEY]
    open_reads = request.app[OPEN_READS_KEY]
    header = request.headers.get("Authorization")
    address = request.remote or "unknown"
    # A configured read token always guards reads; without one, the controller endpoints stay open (as
    # deploy/README.md documents them) and reports and verdicts are open only with open_reads.
    anonymous_ok = access != "admin" and not state.tokens.has_role("read") and (
        open_reads or access == "controller"
    )
    wait = state.throttle.retry_after(address)
    if wait is not None and (header is not None or not anonymous_ok):
        state.metrics.auth_failures.labels("throttled").inc()
        return error_response(
            429,
            "too many failed attempts",
            f"too many failed authentications from this address; retry in {wait:.0f} s",
            headers={"Retry-After": str(int(wait + 0.999))},
        )
    if access == "admin" and not state.tokens.has_role("admin"):
        return error_response(
            403,
            "manual control disabled",
            "no admin token is configured (SHADOWD_ADMIN_TOKEN or an admin entry in SHADOWD_TOKENS_FILE), "
            "so the API accepts no change",
        )
    token, malformed = bearer_token(header)
    if malformed is not None:
        return _failed(request, "malformed", malformed)
    if token is not None:
        identity = state.tokens.identify(token)
        if identity is None:
            return _failed(request, "unknown_token", "the bearer token is not a known shadowd token")
        wanted: Role = "admin" if access == "admin" else "read"
        if not identity.may(wanted):
            state.metrics.auth_failures.labels("forbidden").inc()
            log.warning("auth_forbidden", token_name=identity.name, path=printable(request.path),
                        method=request.method, remote=address)
            return error_response(
                403, "forbidden", f"the token {identity.name!r} may {identity.role}, and this needs {wanted}"
            )
        request[IDENTITY_KEY] = identity
        return await handler(request)
    if access == "admin":
        return _failed(request, "missing", "this needs `Authorization: Bearer <admin token>`")
    if anonymous_ok:
        return await handler(request)
    if not state.tokens:
        return _failed(
            request,
            "missing",
            "reads need `Authorization: Bearer <token>`, and no token is configured: set SHADOWD_READ_TOKEN "
            "or SHADOWD_TOKENS_FILE, or start shadowd with --open-reads",
        )
    return _failed(request, "missing", "this endpoint needs `Authorization: Bearer <read token>`")


def _failed(request: web.Request, reason: str, message: str) -> web.Response:
    state = request.app[STATE_KEY]
    address = request.remote or "unknown"
    state.throttle.failed(address)
    state.metrics.auth_failures.labels(reason).inc()
    log.warning("auth_failed", reason=reason, path=printable(request.path), method=request.method, remote=address)
    return error_response(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="shadowd"'})
