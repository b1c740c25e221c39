"""Dead letters: records that could not be used, by reason, newest first (`shadowd dead-letters --json`)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from shadowd.http.errors import json_response
from shadowd.http.params import DEFAULT_PAGE, MAX_PAGE, only_parameters, page_size
from shadowd.http.registry import AUTH_ERRORS, BAD_PARAMETER, DATABASE_DOWN, Operation, Reply
from shadowd.http.state import api_state


class DeadLetterQuery(BaseModel):
    limit: int = Field(DEFAULT_PAGE, ge=1, le=MAX_PAGE)


class DeadLetter(BaseModel):
    id: int
    source: str = Field(description="The Kafka topic, or the file `replay` read.")
    partition: int
    offset: int
    reason: str = Field(description="e.g. `invalid_json`, `too_large`, `invalid_field:<field>`, `unstorable:<what>`.")
    detail: str
    payload: str = Field(description="The record's bytes as `privacy.dead_letter_payload` keeps them (UTF-8, "
                         "undecodable bytes replaced), cut to `privacy.dead_letter_max_bytes`.")
    payload_truncated: bool
    created_at: str = Field(json_schema_extra={"format": "date-time"})


class DeadLetterList(BaseModel):
    counts: dict[str, int] = Field(description="Every stored dead letter, by reason.")
    dead_letters: list[DeadLetter]


async def list_dead_letters(request: web.Request) -> web.Response:
    state = api_state(request)
    only_parameters(request.query, frozenset(DeadLetterQuery.model_fields))
    limit = page_size(request.query)
    counts = await state.store.dead_letter_counts()
    return json_response({"counts": counts, "dead_letters": await state.store.list_dead_letters(limit)})


def operations() -> list[Operation]:
    return [
        Operation("GET", "/v1/dead-letters", list_dead_letters, "listDeadLetters", "dead letters",
                  "Records that could not be used: counts by reason and the newest letters "
                  "(`shadowd dead-letters --json`).", "read",
                  {200: Reply("Counts and letters, newest first.", DeadLetterList), 400: BAD_PARAMETER,
                   **AUTH_ERRORS, 503: DATABASE_DOWN},
                  query=DeadLetterQuery),
    ]
