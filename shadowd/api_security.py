"""What guards every HTTP answer: who may call what, failed-auth throttling, and errors as JSON.

No answer carries a database message, SQL, a host or a user name: those go to the log (redacted);
the caller gets the status and a reason it can act on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from shadowd.adapters.sql_store.errors import read_error_kind
from shadowd.api import OPEN_READS_KEY, STATE_KEY
from shadowd.auth import Identity, Role, bearer_token

log = structlog.get_logger("shadowd.api")

Access = Literal["open", "controller", "read", "admin"]
IDENTITY_KEY = web.RequestKey("shadowd_identity", Identity)
# Controller endpoints: Argo's analysis and the gateway weights (SPEC §10), read by machines.
_ANALYSIS = re.compile(r"^/v1/rollouts/[^/]+/(analysis|weights)$")
_FLAGGER = frozenset({"/v1/flagger/gate", "/v1/flagger/rollback"})
MAX_JSON_DEPTH = 32


class BadParameter(Exception):
    """A request parameter (query, body field) that cannot be used; answered 400 naming it."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter
        self.reason = reason


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=_dumps)


def error_response(
    status: int, error: str, reason: str, headers: Mapping[str, str] | None = None, **extra: Any
) -> web.Response:
    return json_response({"error": error, "reason": reason, **extra}, status=status, headers=headers)


DATABASE_UNAVAILABLE = "shadowd cannot read its database now; the server log has the cause"


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure is JSON: bad parameters 400, router errors (404, 405, 413), database down 503."""
    try:
        return await handler(request)
    except BadParameter as exc:
        return error_response(400, "bad parameter", exc.reason, parameter=exc.parameter)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        reason = f"{request.method} {_printable(request.path)}: {exc.reason}"
        return error_response(exc.status, exc.reason.lower(), reason, headers=headers)
    except Exception as exc:
        kind = read_error_kind(exc)
        if kind == "refused":
            # Input the checks let through but the database cannot hold: the caller's, not an outage.
            log.warning("api_parameter_refused_by_database", path=_printable(request.path), error=_kind(exc))
            return error_response(400, "bad parameter", "a parameter the database cannot use")
        if kind == "unavailable":
            return _database_unavailable(request, exc)
        # A bug: the caller gets a JSON 500 without details, the log has the traceback.
        log.exception("api_internal_error", path=_printable(request.path), error=_kind(exc))
        return error_response(500, "internal error", "shadowd failed to answer; the server log has the cause")


def _database_unavailable(request: web.Request, exc: BaseException) -> web.Response:
    log.warning("api_database_error", path=_printable(request.path), error=repr(exc)[:500])
    return error_response(503, "database unavailable", DATABASE_UNAVAILABLE)


def _kind(exc: BaseException) -> str:
    return type(exc).__name__


def _printable(text: str, limit: int = 200) -> str:
    """A path as it may appear in an answer or a log line: control characters escaped, length bounded."""
    cleaned = text.encode("utf-8", errors="backslashreplace").decode("ascii", errors="backslashreplace")
    cleaned = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in cleaned)
    return cleaned[:limit] + ("…" if len(cleaned) > limit else "")


def access_of(request: web.Request) -> Access:
    """Which credential a request needs, from its path and method alone."""
    path, method = request.path, request.method
    if path.startswith("/api/v1/"):
        return "controller"  # the Prometheus-compatible query API (Flagger's metric provider), GET or POST
    if path in _FLAGGER:
        return "open"  # Flagger's webhooks cannot send headers; they change nothing
    if not (path.startswith("/v1/") or path == "/v1"):
        return "open"
    if method in ("GET", "HEAD"):
        return "controller" if _ANALYSIS.match(path) else "read"
    return "admin"


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
            log.warning("auth_forbidden", token_name=identity.name, path=_printable(request.path),
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
    log.warning("auth_failed", reason=reason, path=_printable(request.path), method=request.method, remote=address)
    return error_response(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="shadowd"'})


# --- request bodies and parameters -----------------------------------------------------------------


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether brackets nest deeper than `limit` outside strings: checked before parsing, so a deeply
    nested body is refused in linear time instead of exhausting the parser's recursion."""
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


async def json_object(request: web.Request, *, required: bool) -> dict[str, Any]:
    """The body as a JSON object; too large is 413 (aiohttp's limit), anything else unusable is 400."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise BadParameter("body", "a JSON object is required")
        return {}
    if json_depth_exceeds(raw, MAX_JSON_DEPTH):
        raise BadParameter("body", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadParameter("body", f"not valid JSON: {_printable(str(exc))}") from None
    if not isinstance(body, dict):
        raise BadParameter("body", f"must be a JSON object, got {type(body).__name__}")
    return body


def storable_text(parameter: str, value: str, max_length: int) -> str:
    """A text parameter the database can compare: 1..max_length characters, no NUL or control
    characters, valid Unicode (no lone surrogates)."""
    if not 1 <= len(value) <= max_length:
        raise BadParameter(parameter, f"must be 1 to {max_length} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise BadParameter(parameter, "must not contain NUL or other control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadParameter(parameter, "must be valid Unicode text") from None
    return value


__all__ = [
    "BadParameter",
    "access_of",
    "authenticate",
    "error_response",
    "json_errors",
    "json_object",
    "json_response",
    "request_identity",
    "storable_text",
]
