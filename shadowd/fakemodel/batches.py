"""The fake Message Batches API: create, retrieve, results (JSONL) and cancel.

Each request of a batch is answered with the same rules and behaviours as `POST /v1/messages`
(API rule errors, persistent `error` faults, content faults, nondeterminism, grading), once the
batch's `delay_s` has passed; transient capacity faults are the batch service's own business and
never show. `batches.expired` lets a share of requests expire unprocessed.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from shadowd.fakemodel.api_rules import ApiError, check_headers, check_request, invalid
from shadowd.fakemodel.behaviours import Behaviours
from shadowd.fakemodel.digest import unit
from shadowd.fakemodel.replies import reply_for
from shadowd.fakemodel.request_view import view_request

if TYPE_CHECKING:
    from shadowd.fakemodel.server import ServerStats

MAX_REQUESTS = 100_000
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(slots=True)
class _Batch:
    id: str
    created_at: datetime
    created_s: float  # loop time
    requests: list[tuple[str, dict[str, Any]]]
    results: list[dict[str, Any]] | None = None
    ended_at: datetime | None = None
    cancel_initiated_at: datetime | None = None
    counts: dict[str, int] = field(default_factory=dict)


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class BatchesEndpoint:
    """The batch routes of one fake model server; batches live in memory for the server's life."""

    def __init__(self, behaviours: Behaviours, stats: ServerStats, new_id: Callable[[str], str]) -> None:
        self._behaviours = behaviours
        self._stats = stats
        self._new_id = new_id
        self._batches: dict[str, _Batch] = {}

    def register(self, app: web.Application) -> None:
        for prefix in ("/v1/messages/batches", "/messages/batches"):
            app.router.add_post(prefix, self.create)
            app.router.add_get(prefix + "/{batch_id}", self.retrieve)
            app.router.add_get(prefix + "/{batch_id}/results", self.results)
            app.router.add_post(prefix + "/{batch_id}/cancel", self.cancel)

    async def create(self, request: web.Request) -> web.Response:
        error = check_headers(request.headers)
        if error is not None:
            return _error(error)
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(invalid("The request body is not valid JSON"))
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return _error(invalid("requests: a non-empty list of {custom_id, params} is required"))
        if len(requests) > MAX_REQUESTS:
            return _error(invalid(f"requests: at most {MAX_REQUESTS} requests in one batch"))
        seen: set[str] = set()
        accepted: list[tuple[str, dict[str, Any]]] = []
        for index, entry in enumerate(requests):
            cid = entry.get("custom_id") if isinstance(entry, dict) else None
            params = entry.get("params") if isinstance(entry, dict) else None
            if not isinstance(cid, str) or not _CUSTOM_ID.match(cid):
                return _error(invalid(f"requests.{index}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$"))
            if cid in seen:
                return _error(invalid(f"requests.{index}.custom_id: {cid!r} is used twice in this batch"))
            if not isinstance(params, dict):
                return _error(invalid(f"requests.{index}.params: must be an object"))
            seen.add(cid)
            accepted.append((cid, params))
        batch = _Batch(self._new_id("msgbatch_01"), datetime.now(UTC), _now(), accepted)
        self._batches[batch.id] = batch
        self._stats.batches_created += 1
        self._stats.batch_requests += len(accepted)
        return web.json_response(self._describe(request, batch))

    async def retrieve(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if batch is None:
            return _not_found(request)
        return web.json_response(self._describe(request, batch))

    async def results(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if batch is None:
            return _not_found(request)
        self._settle(batch)
        if batch.results is None:
            return _error(invalid(f"Batch {batch.id} is still in progress; results are available once it has ended"))
        lines = "".join(json.dumps(line) + "\n" for line in batch.results)
        return web.Response(body=lines.encode(), content_type="application/binary")

    async def cancel(self, request: web.Request) -> web.Response:
        batch = self._batch(request)
        if batch is None:
            return _not_found(request)
        self._settle(batch)
        if batch.results is None:
            now = datetime.now(UTC)
            batch.cancel_initiated_at = now
            batch.results = [{"custom_id": cid, "result": {"type": "canceled"}} for cid, _ in batch.requests]
            batch.counts = {"canceled": len(batch.requests)}
            batch.ended_at = now
        return web.json_response(self._describe(request, batch))

    def _batch(self, request: web.Request) -> _Batch | None:
        if check_headers(request.headers) is not None:
            return None
        return self._batches.get(request.match_info["batch_id"])

    def _settle(self, batch: _Batch) -> None:
        """Process the batch once its delay has passed (lazily: on the first look after that)."""
        if batch.results is not None or _now() - batch.created_s < self._behaviours.batches.delay_s:
            return
        results: list[dict[str, Any]] = []
        batch.counts = {}
        for cid, params in batch.requests:
            result = self._answer(params)
            batch.counts[result["type"]] = batch.counts.get(result["type"], 0) + 1
            results.append({"custom_id": cid, "result": result})
        batch.results = results
        batch.ended_at = datetime.now(UTC)

    def _answer(self, params: dict[str, Any]) -> dict[str, Any]:
        """One request's individual result, decided as the live endpoint would answer it."""
        behaviours = self._behaviours
        if params.get("stream") is True:
            return _errored(invalid("stream: streaming is not supported for requests in a batch"))
        error = check_request(params, behaviours.rules_for)
        if error is not None:
            return _errored(error)
        model = str(params["model"])
        view = view_request(params)
        if unit(view.digest, model, "batch_expired") < behaviours.batches.expired:
            return {"type": "expired"}
        plan = behaviours.plan_faults(model, view)
        if plan.error:
            return _errored(ApiError(500, "api_error", "Internal server error"))
        reply = reply_for(behaviours, model, view, plan.content)
        return {"type": "succeeded", "message": reply.message(self._new_id("msg_01"), model)}

    def _describe(self, request: web.Request, batch: _Batch) -> dict[str, Any]:
        self._settle(batch)
        ended = batch.results is not None
        counts = {kind: batch.counts.get(kind, 0) for kind in ("succeeded", "errored", "canceled", "expired")}
        counts["processing"] = 0 if ended else len(batch.requests)
        results_url = f"{request.scheme}://{request.host}/v1/messages/batches/{batch.id}/results"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": counts,
            "created_at": _rfc3339(batch.created_at),
            "expires_at": _rfc3339(batch.created_at + timedelta(hours=24)),
            "ended_at": _rfc3339(batch.ended_at) if batch.ended_at else None,
            "cancel_initiated_at": _rfc3339(batch.cancel_initiated_at) if batch.cancel_initiated_at else None,
            "archived_at": None,
            "results_url": results_url if ended else None,
        }


def _now() -> float:
    return asyncio.get_running_loop().time()


def _errored(error: ApiError) -> dict[str, Any]:
    return {"type": "errored", "error": {**error.body(), "request_id": None}}


def _error(error: ApiError) -> web.Response:
    return web.json_response(error.body(), status=error.status)


def _not_found(request: web.Request) -> web.Response:
    return _error(ApiError(404, "not_found_error", f"No batch with id {request.match_info['batch_id'][:80]!r}"))
