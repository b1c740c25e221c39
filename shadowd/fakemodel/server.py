"""The fake model's HTTP server: a Messages-API-compatible aiohttp app on loopback."""
# Over 400 lines: the Messages API surface the fake model serves (messages, streaming, count_tokens, errors)
# in one aiohttp app.

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from shadowd.fakemodel.api_rules import ApiError, check_headers, check_request, invalid
from shadowd.fakemodel.batches import BatchesEndpoint
from shadowd.fakemodel.behaviours import Behaviours
from shadowd.fakemodel.generate import Reply, generate_reply
from shadowd.fakemodel.prompt_cache import PromptCache
from shadowd.fakemodel.replies import reply_for
from shadowd.fakemodel.request_view import RequestView, view_request

BACKLOG = 4096
MAX_BODY_BYTES = 32 * 1024 * 1024
ATTEMPTS_REMEMBERED = 100_000  # transient faults: first attempts seen per (model, request)
TTFT_SHARE = 0.3  # share of the latency spent before the first streamed delta
DELTA_CHARS = 32
MAX_BURSTS = 8  # delta writes per stream; bounds timers per request under load
_ID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(slots=True)
class ServerStats:
    """Counters of Messages API calls, also served as JSON at `GET /stats`."""

    requests_served: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    streamed: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    by_model: dict[str, int] = field(default_factory=dict)
    by_api_version: dict[str, int] = field(default_factory=dict)
    capacity_faults: dict[str, int] = field(default_factory=dict)  # scripted capacity faults served
    batches_created: int = 0  # Message Batches API: batches and the requests in them
    batch_requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_served": self.requests_served,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "streamed": self.streamed,
            "by_status": {str(status): count for status, count in sorted(self.by_status.items())},
            "by_model": dict(sorted(self.by_model.items())),
            "by_api_version": dict(sorted(self.by_api_version.items())),
            "capacity_faults": dict(sorted(self.capacity_faults.items())),
            "batches_created": self.batches_created,
            "batch_requests": self.batch_requests,
        }


class FakeModelServer:
    """A running fake model: its base URL for the SDK, its stats, and `close()`."""

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, stats: ServerStats, listener: _Listener
    ) -> None:
        self._runner = runner
        self.host = host
        self.port = port
        self.stats = stats
        self._listener = listener

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        await self._listener.close()
        await self._runner.cleanup()

    async def __aenter__(self) -> FakeModelServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def start_fake_model(
    behaviours: Behaviours, host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False
) -> FakeModelServer:
    """Start serving on host:port (0 picks a free port) and return once it accepts connections."""
    stats = ServerStats()
    listener = _Listener(behaviours)
    endpoint = _MessagesEndpoint(behaviours, stats, listener)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.on_response_prepare.append(_add_quota_headers)
    app.router.add_post("/v1/messages", endpoint.create_message)
    app.router.add_post("/messages", endpoint.create_message)
    app.router.add_post("/v1/messages/count_tokens", endpoint.count_tokens)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/stats", endpoint.stats_json)
    BatchesEndpoint(behaviours, stats, _random_id).register(app)
    runner = web.AppRunner(
        app,
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
        handle_signals=False,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=BACKLOG, reuse_address=True)
    await site.start()
    bound_port = int(runner.addresses[0][1])
    listener.attach(runner, site, host, bound_port)
    return FakeModelServer(runner, host, bound_port, stats, listener)


def serve_forever(behaviours: Behaviours, host: str, port: int, *, access_log: bool = False) -> None:
    """Serve until SIGINT or SIGTERM, then close cleanly (for `shadowd fake-model`)."""
    asyncio.run(_serve_until_signalled(behaviours, host, port, access_log))


async def _serve_until_signalled(behaviours: Behaviours, host: str, port: int, access_log: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = await start_fake_model(behaviours, host, port, access_log=access_log)
    log = structlog.get_logger("shadowd.fakemodel")
    try:
        log.info("fake_model_listening", base_url=server.base_url, models=sorted(behaviours.rules))
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await server.close()
        log.info("fake_model_stopped", requests_served=server.stats.requests_served)


async def _add_quota_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(request.get(_QUOTA_HEADERS, {}))


_QUOTA_HEADERS = web.RequestKey("quota_headers", dict)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _random_id(prefix: str) -> str:
    return prefix + "".join(random.choices(_ID_ALPHABET, k=24))


def _error_response(error: ApiError) -> web.Response:
    return web.Response(
        status=error.status,
        body=json.dumps(error.body()).encode(),
        content_type="application/json",
        headers={**error.headers(), "request-id": _random_id("req_")},
    )


class _Listener:
    """The listening socket and the capacity clock: `down` windows close the port and reopen it."""

    def __init__(self, behaviours: Behaviours) -> None:
        self.plan = behaviours.capacity
        self.first_call_at: float | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._host = ""
        self._port = 0
        self._scheduler: asyncio.Task[None] | None = None
        self._random = random.Random()

    def attach(self, runner: web.AppRunner, site: web.TCPSite, host: str, port: int) -> None:
        self._runner, self._site, self._host, self._port = runner, site, host, port

    def clock(self) -> float:
        """Seconds since the first Messages API call (which starts the clock)."""
        now = asyncio.get_running_loop().time()
        if self.first_call_at is None:
            self.first_call_at = now
            if any(w.fault == "down" for w in self.plan.windows):
                self._scheduler = asyncio.create_task(self._follow_down_windows())
        return now - self.first_call_at

    def draw(self) -> float:
        return self._random.random()

    def is_down(self) -> bool:
        return self.first_call_at is not None and self.plan.down_at(self.clock())

    async def _follow_down_windows(self) -> None:
        log = structlog.get_logger("shadowd.fakemodel")
        while True:
            t = self.clock()
            down = self.plan.down_at(t)
            if down and self._site is not None:
                await self._site.stop()
                self._site = None
                log.info("fake_model_down", at_s=round(t, 3))
            elif not down and self._site is None and self._runner is not None:
                site = web.TCPSite(self._runner, self._host, self._port, backlog=BACKLOG, reuse_address=True)
                await site.start()
                self._site = site
                log.info("fake_model_up", at_s=round(t, 3))
            wait = self.plan.next_down_change(self.clock())
            if wait == float("inf"):
                return
            await asyncio.sleep(min(max(wait, 0.001), 5.0))

    async def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler


class _MessagesEndpoint:
    """`POST /v1/messages`: validate, apply capacity and transient faults, wait the latency, answer."""

    def __init__(self, behaviours: Behaviours, stats: ServerStats, listener: _Listener) -> None:
        self._behaviours = behaviours
        self._stats = stats
        self._listener = listener
        self._attempts: dict[tuple[str, bytes], int] = {}
        self._quota_used: dict[int, int] = {}  # calls counted in the current rate_limit window
        self._cache = PromptCache()

    async def stats_json(self, request: web.Request) -> web.Response:
        return web.json_response(self._stats.as_dict())

    async def count_tokens(self, request: web.Request) -> web.Response:
        body, error = await self._read_body(request)
        if error is not None:
            return _error_response(error)
        assert isinstance(body, dict)
        view = view_request(body)
        return web.json_response({"input_tokens": max(1, -(-view.input_chars // 4))})

    async def create_message(self, request: web.Request) -> web.StreamResponse:
        stats = self._stats
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        response: web.StreamResponse | None = None
        model = "?"
        try:
            body, error = await self._read_body(request)
            if error is None:
                assert isinstance(body, dict)
                error = check_request(body, self._behaviours.rules_for)
            if error is not None:
                response = _error_response(error)
                return response
            assert isinstance(body, dict)
            model = body["model"]
            response = await self._capacity_fault(request, body)
            if response is None:
                response = await self._answer(request, body, model)
            return response
        finally:
            stats.in_flight -= 1
            stats.requests_served += 1
            status = response.status if response is not None else 499
            stats.by_status[status] = stats.by_status.get(status, 0) + 1
            stats.by_model[model] = stats.by_model.get(model, 0) + 1
            version = request.headers.get("anthropic-version", "")
            stats.by_api_version[version] = stats.by_api_version.get(version, 0) + 1

    async def _capacity_fault(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse | None:
        """The scripted capacity fault this call meets, as its response; None when it meets none."""
        listener = self._listener
        t = listener.clock()
        stats = self._stats.capacity_faults
        quota = self._behaviours.rate_limit
        if quota is not None:
            index, left = quota.window(t)
            used = self._quota_used.get(index, 0)
            self._quota_used = {index: used + 1}
            remaining = max(0, quota.requests - used - 1)
            reset = datetime.fromtimestamp(time.time() + left, UTC).isoformat().replace("+00:00", "Z")
            request[_QUOTA_HEADERS] = {
                "anthropic-ratelimit-requests-limit": str(quota.requests),
                "anthropic-ratelimit-requests-remaining": str(remaining),
                "anthropic-ratelimit-requests-reset": reset,
            }
            if used >= quota.requests:
                stats["rate_limit"] = stats.get("rate_limit", 0) + 1
                return _error_response(ApiError(429, "rate_limit_error", "Number of requests has exceeded your "
                                                "rate limit.", round(left, 3)))
        if not listener.plan.windows:
            return None
        if listener.plan.down_at(t):
            stats["down"] = stats.get("down", 0) + 1
            if request.transport is not None:
                request.transport.abort()  # a connection opened before the outage: dropped unanswered
            return web.Response(status=503)  # never reaches the client: its connection is gone
        window = listener.plan.fault_at(t, body.get("stream") is True, listener.draw)
        if window is None:
            return None
        stats[window.fault] = stats.get(window.fault, 0) + 1
        if window.fault == "rate_limited":
            return _error_response(ApiError(429, "rate_limit_error", "Number of requests has exceeded your rate limit.",
                                            window.retry_after_s))
        if window.fault == "overloaded":
            return _error_response(ApiError(529, "overloaded_error", "Overloaded", window.retry_after_s))
        if window.fault == "unavailable":
            return _error_response(ApiError(503, "api_error", "Service Unavailable", window.retry_after_s))
        # stream_overloaded: part of a real answer, then the API's overload event, then the end.
        view = view_request(body)
        reply = generate_reply(view, None, 0)
        self._stats.streamed += 1
        return await _stream(request, reply, _random_id("msg_01"), body["model"], 0.0, overload_after=3)

    async def _read_body(self, request: web.Request) -> tuple[Any, ApiError | None]:
        error = check_headers(request.headers)
        if error is not None:
            return None, error
        try:
            body = json.loads(await request.read())
        except ValueError:
            return None, invalid("The request body is not valid JSON")
        if not isinstance(body, dict):
            return None, invalid("The request body must be a JSON object")
        return body, None

    async def _answer(self, request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
        behaviours = self._behaviours
        view = view_request(body)
        plan = behaviours.plan_faults(model, view)
        if plan.transient is not None and self._first_attempt(model, view):
            retry_after = behaviours.behaviour_for(model).retry_after_s
            if plan.transient == "rate_limited":
                error = ApiError(429, "rate_limit_error", "Number of requests has exceeded your rate limit.",
                                 retry_after)
            else:
                error = ApiError(529, "overloaded_error", "Overloaded", retry_after)
            return _error_response(error)

        latency = behaviours.latency_s(model, view)
        if plan.error:
            await _sleep(latency)
            return _error_response(ApiError(500, "api_error", "Internal server error"))

        reply = reply_for(behaviours, model, view, plan.content)
        cached: list[bytes] = []
        if view.cache_control:
            split, cached = self._cache.plan(model, body, reply.usage["input_tokens"])
            reply = replace(reply, usage={**reply.usage, **split})
        message_id = _random_id("msg_01")
        if body.get("stream") is True:
            self._stats.streamed += 1
            self._cache.store(cached)  # readable from the moment message_start is sent
            return await _stream(request, reply, message_id, model, latency)
        await _sleep(latency)
        self._cache.store(cached)
        return web.Response(
            body=json.dumps(reply.message(message_id, model)).encode(),
            content_type="application/json",
            headers={"request-id": _random_id("req_")},
        )

    def _first_attempt(self, model: str, view: RequestView) -> bool:
        key = (model, view.digest)
        attempts = self._attempts.get(key, 0)
        if attempts == 0 and len(self._attempts) >= ATTEMPTS_REMEMBERED:
            del self._attempts[next(iter(self._attempts))]  # forget the oldest request
        self._attempts[key] = attempts + 1
        return attempts == 0


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await asyncio.sleep(seconds)


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def _block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    if block["type"] == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        text = block["text"]
        deltas = [
            {"type": "text_delta", "text": text[i : i + DELTA_CHARS]}
            for i in range(0, len(text), DELTA_CHARS)
        ]
    else:
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        raw = json.dumps(block["input"])
        deltas = [
            {"type": "input_json_delta", "partial_json": raw[i : i + DELTA_CHARS]}
            for i in range(0, len(raw), DELTA_CHARS)
        ]
    return [
        _sse({"type": "content_block_start", "index": index, "content_block": start}),
        *(_sse({"type": "content_block_delta", "index": index, "delta": delta}) for delta in deltas),
        _sse({"type": "content_block_stop", "index": index}),
    ]


async def _stream(
    request: web.Request, reply: Reply, message_id: str, model: str, latency: float,
    overload_after: int | None = None,
) -> web.StreamResponse:
    """Send the reply as the API's SSE events; the first delta comes after TTFT_SHARE of the latency.

    With `overload_after`, the stream ends after that many content events with an `overloaded_error`
    event, as the API does when it is overloaded mid-answer."""
    response = web.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "request-id": _random_id("req_"),
        },
    )
    start_message = reply.message(message_id, model)
    start_message.update(content=[], stop_reason=None, stop_sequence=None)
    start_message.pop("stop_details", None)
    start_message["usage"] = {**reply.usage, "output_tokens": 1}
    delta: dict[str, Any] = {"stop_reason": reply.stop_reason, "stop_sequence": None}
    if reply.stop_details is not None:
        delta["stop_details"] = reply.stop_details

    events = [event for index, block in enumerate(reply.content) for event in _block_events(index, block)]
    if overload_after is not None:
        overload = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        events = [*events[:overload_after], _sse(overload)]
    per_burst = max(1, -(-len(events) // MAX_BURSTS))
    gap = latency * (1 - TTFT_SHARE) / max(1, -(-len(events) // per_burst))
    try:
        await response.prepare(request)
        await response.write(
            _sse({"type": "message_start", "message": start_message}) + _sse({"type": "ping"})
        )
        await _sleep(latency * TTFT_SHARE)
        for first in range(0, len(events), per_burst):
            await response.write(b"".join(events[first : first + per_burst]))
            await _sleep(gap)
        if overload_after is None:
            await response.write(
                _sse({"type": "message_delta", "delta": delta, "usage": reply.usage})
                + _sse({"type": "message_stop"})
            )
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away mid-stream; nothing left to tell it
    return response
