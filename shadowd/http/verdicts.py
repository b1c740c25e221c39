"""Verdict reads: a filtered, cursor-paged list and one verdict with the content of each side."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field, JsonValue

from shadowd.adapters.sql_store import VerdictFilter
from shadowd.clock import utc_now
from shadowd.core.findings import CODES, Status
from shadowd.http.errors import BadParameter, error_response, json_response, unknown_rollout
from shadowd.http.models import VerdictDetail, VerdictPage
from shadowd.http.params import (
    MAX_PAGE,
    TEXT_PATTERN,
    configured_names,
    is_count,
    known_rollout,
    max_length,
    only_parameters,
    page_size,
    storable_text,
)
from shadowd.http.registry import (
    AUTH_ERRORS,
    BAD_PARAMETER,
    DATABASE_DOWN,
    READ_ERRORS,
    Operation,
    Reply,
    error,
)
from shadowd.http.rollouts import RolloutPath
from shadowd.http.state import api_state
from shadowd.timeparse import parse_since


class VerdictQuery(BaseModel):
    status: Literal["pass", "regression", "noise", "error", "skipped"] | None = None
    code: str | None = Field(None, description="A finding code, e.g. `schema.key_missing`.",
                             json_schema_extra={"enum": list[JsonValue](sorted(CODES))})
    route: str | None = Field(None, min_length=1, max_length=256, pattern=TEXT_PATTERN)
    since: str | None = Field(None, min_length=1, max_length=64,
                              description="An RFC 3339 time, or a duration ago: `90s`, `30m`, `2h`, `7d`; it must "
                              "lie in the years 1970 to 9998 (400 otherwise).")
    limit: int = Field(100, ge=1, le=MAX_PAGE)
    cursor: int | None = Field(None, ge=1, le=999_999_999_999_999_999,
                               description="A `next_cursor` from the previous page.")


class VerdictPath(RolloutPath):
    request_id: str = Field(min_length=1, max_length=256, pattern=TEXT_PATTERN)


_VERDICT_PARAMS = frozenset(VerdictQuery.model_fields)


def verdict_query(query: Mapping[str, str], now: datetime) -> tuple[VerdictFilter, int, int | None]:
    """The `verdicts` filters, page size and cursor from a query string; BadParameter names what is wrong."""
    only_parameters(query, _VERDICT_PARAMS)
    status = query.get("status")
    if status is not None and status not in {s.value for s in Status}:
        raise BadParameter("status", f"must be one of {', '.join(s.value for s in Status)}, got {status!r}")
    code = query.get("code")
    if code is not None and code not in CODES:
        raise BadParameter("code", f"unknown finding code {code!r}")
    route = query.get("route")
    if route is not None:
        storable_text("route", route, max_length(VerdictQuery, "route"))
    since = query.get("since")
    try:
        since_at = parse_since(since, now) if since is not None else None
    except ValueError as exc:
        raise BadParameter("since", str(exc)) from None
    cursor = query.get("cursor")
    if cursor is not None and (not is_count(cursor, digits=18) or int(cursor) < 1):
        raise BadParameter("cursor", f"must be a positive integer (a `next_cursor` value), got {cursor!r}")
    where = VerdictFilter(status=status, code=code, route=route, since=since_at)
    return where, page_size(query), int(cursor) if cursor is not None else None


async def list_verdicts(request: web.Request) -> web.Response:
    state = api_state(request)
    name = request.match_info["name"]
    where, limit, cursor = verdict_query(request.query, utc_now())
    if not await known_rollout(state, name):
        return unknown_rollout(configured_names(state), name)
    # One more than asked tells whether another page exists, so the last page has next_cursor null.
    rows = await state.store.list_verdicts(name, where, limit=limit + 1, before_id=cursor)
    page = rows[:limit]
    return json_response(
        {
            "items": [row.to_dict() for row in page],
            "next_cursor": page[-1].id if len(rows) > limit else None,
        }
    )


async def get_verdict(request: web.Request) -> web.Response:
    state = api_state(request)
    name, request_id = request.match_info["name"], request.match_info["request_id"]
    storable_text("request_id", request_id, max_length(VerdictPath, "request_id"))
    if not await known_rollout(state, name):
        return unknown_rollout(configured_names(state), name)
    row = await state.store.get_verdict(name, request_id)
    if row is None:
        return error_response(
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
    return json_response(row.to_dict() | {"outputs": outputs})


def operations() -> list[Operation]:
    return [
        Operation("GET", "/v1/rollouts/{name}/verdicts", list_verdicts, "listVerdicts", "verdicts",
                  "Verdicts, newest first, with the `shadowd verdicts` filters and cursor paging.", "read",
                  {200: Reply("One page of verdicts.", VerdictPage), 400: BAD_PARAMETER, **READ_ERRORS},
                  description="Unknown query parameters are refused (400) so that a misspelt filter never "
                  "silently widens the result. Pass `next_cursor` back as `cursor` for the next page; it is "
                  "null on the last page.",
                  path_params=RolloutPath, query=VerdictQuery),
    ]


def detail_operations() -> list[Operation]:
    """Registered after the `.html` pages, which would otherwise be taken for a request id ending `.html`."""
    return [
        Operation("GET", "/v1/rollouts/{name}/verdicts/{request_id:.+}", get_verdict, "getVerdict", "verdicts",
                  "One verdict with the content of each side (`shadowd show --json`).", "read",
                  {200: Reply("The verdict.", VerdictDetail), 400: BAD_PARAMETER,
                   404: error("Unknown rollout, or no verdict for that request."), **AUTH_ERRORS,
                   503: DATABASE_DOWN},
                  path_params=VerdictPath),
    ]
