"""Routes declared once: method, path, handler, who may call it, and the pydantic models of its
parameters, body and answers. `create_app` registers them on aiohttp's router and
`shadowd.http.openapi` writes the OpenAPI document from the same declarations.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, Field

from shadowd.http.middleware import Access

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Reply:
    """One documented answer: a JSON body of `model`, or another media type with a plain `schema`."""

    description: str
    model: type[BaseModel] | None = None
    media: str = JSON
    schema: Mapping[str, Any] | None = None
    headers: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str  # aiohttp's path, which may carry a regex: `{request_id:.+}`
    handler: Handler
    operation_id: str
    tag: str
    summary: str
    access: Access
    responses: Mapping[int, Reply]
    description: str = ""
    path_params: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = False
    body_media: str = JSON
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def doc_path(self) -> str:
        """The OpenAPI path: `{request_id:.+}.html` becomes `{request_id}.html`."""
        return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", self.path)


def register(app: web.Application, operations: list[Operation]) -> None:
    for operation in operations:
        app.router.add_route(operation.method, operation.path, operation.handler)


# --- answers every resource shares ---------------------------------------------------------------------


def absent_not_null(schema: dict[str, Any]) -> None:
    """For a field that is left out rather than null: `str | None = None` documented as a plain `string`."""
    options = schema.pop("anyOf", None)
    if options is not None:
        kept = [o for o in options if o != {"type": "null"}]
        if len(kept) == 1:
            schema.update(kept[0])
        else:
            schema["anyOf"] = kept
    schema.pop("default", None)


def optional(description: str | None = None, **constraints: Any) -> Any:
    """A field that may be absent from an answer, and is never null when present."""
    return Field(None, description=description, json_schema_extra=absent_not_null, **constraints)


class Error(BaseModel):
    """Every error answer of the API (the controller endpoints have their own shapes)."""

    error: str = Field(description="A short category, e.g. `unknown rollout`.")
    reason: str = Field(description="What went wrong, for a person.")
    parameter: str | None = Field(None, description="The parameter at fault (400 only).",
                                  json_schema_extra=absent_not_null)


def error(description: str) -> Reply:
    return Reply(description, Error)


BAD_PARAMETER = error("A parameter cannot be used; `parameter` names it.")
UNAUTHORIZED = error("A bearer token is needed, or the one given is wrong.")
TOO_MANY_FAILURES = Reply(
    "Too many failed authentications from this address; retry after `Retry-After` seconds.",
    Error, headers={"Retry-After": {"schema": {"type": "integer"}}},
)
UNKNOWN_ROLLOUT = error("No rollout of that name.")
DATABASE_DOWN = error("The database cannot be read now.")
AUTH_ERRORS: dict[int, Reply] = {401: UNAUTHORIZED, 429: TOO_MANY_FAILURES}
READ_ERRORS: dict[int, Reply] = {**AUTH_ERRORS, 404: UNKNOWN_ROLLOUT, 503: DATABASE_DOWN}


def html(description: str) -> Reply:
    return Reply(description, media="text/html", schema={"type": "string"})

