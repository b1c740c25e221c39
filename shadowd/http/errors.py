"""Every failure of the HTTP API as JSON: bad parameters 400, router errors (404, 405, 413), database
down 503, a bug 500 without details.

No answer carries a database message, SQL, a host or a user name: those go to the log (redacted);
the caller gets the status and a reason it can act on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy.exc import DataError, SQLAlchemyError, StatementError

log = structlog.get_logger("shadowd.api")

DATABASE_UNAVAILABLE = "shadowd cannot read its database now; the server log has the cause"


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


def known_names(names: list[str]) -> str:
    return ", ".join(names) or "none"


def configured_error(configured: list[str], name: str) -> str:
    return f"no rollout named {name!r} in the config (known: {known_names(configured)})"


def unknown_rollout(configured: list[str], name: str) -> web.Response:
    return error_response(404, "unknown rollout", configured_error(configured, name), rollout=name)


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
        reason = f"{request.method} {printable(request.path)}: {exc.reason}"
        return error_response(exc.status, exc.reason.lower(), reason, headers=headers)
    except (DataError, StatementError) as exc:
        if isinstance(exc, DataError) or isinstance(exc.orig, ValueError | OverflowError | UnicodeError):
            # Input the checks let through but the database cannot hold: the caller's, not an outage.
            log.warning("api_parameter_refused_by_database", path=printable(request.path), error=_kind(exc))
            return error_response(400, "bad parameter", "a parameter the database cannot use")
        return _database_unavailable(request, exc)
    except (SQLAlchemyError, OSError) as exc:
        return _database_unavailable(request, exc)
    except Exception as exc:  # a bug: the caller gets a JSON 500 without details, the log has the traceback
        log.exception("api_internal_error", path=printable(request.path), error=_kind(exc))
        return error_response(500, "internal error", "shadowd failed to answer; the server log has the cause")


def _database_unavailable(request: web.Request, exc: BaseException) -> web.Response:
    log.warning("api_database_error", path=printable(request.path), error=repr(exc)[:500])
    return error_response(503, "database unavailable", DATABASE_UNAVAILABLE)


def _kind(exc: BaseException) -> str:
    return type(exc).__name__


def printable(text: str, limit: int = 200) -> str:
    """A path as it may appear in an answer or a log line: control characters escaped, length bounded."""
    cleaned = text.encode("utf-8", errors="backslashreplace").decode("ascii", errors="backslashreplace")
    cleaned = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in cleaned)
    return cleaned[:limit] + ("…" if len(cleaned) > limit else "")
