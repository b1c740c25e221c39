"""The model API through the real `anthropic` SDK, with shadowd's own retry policy."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import anthropic

try:  # anthropic 2.x ships its HTTP stack as httpx2; 1.x used httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

import structlog

from shadowd.adapters.messages_wire import post_message, stream_message
from shadowd.clock import utc_now
from shadowd.core import fastjson
from shadowd.core.adaptation import ReplayRequest
from shadowd.core.backoff import exponential_delay
from shadowd.core.limiter import AdaptiveLimit, parse_quotas
from shadowd.core.profiles import ModelProfile
from shadowd.core.results import Failure, SideResult, Usage
from shadowd.metrics import Metrics

log = structlog.get_logger("shadowd.models")

# Capacity: the API (or the way to it) is busy or away. Retried until the record's deadline, and
# never the candidate's fault. 408 and 504 are timeouts, 503 an outage.
CAPACITY_STATUS = frozenset({408, 429, 503, 504, 529})
CAPACITY_ERROR_TYPES = frozenset({"rate_limit_error", "overloaded_error"})
# Other server faults: retried a bounded number of times; when they persist they are the model's own.
SERVER_RETRY_STATUS = frozenset({409, 500, 502})
_FIXED = ("model", "max_tokens", "messages")


class RetryPolicy:
    """Capacity errors retry until a deadline, server errors a bounded number of times; jittered backoff.

    `retry-after` (or `retry-after-ms`) is honoured: the next attempt never comes earlier, and a
    little jitter on top keeps callers that were told the same time from coming back together.
    """

    def __init__(
        self,
        max_attempts: int = 4,
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        deadline_s: float = 600.0,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.deadline_s = deadline_s
        self._jitter = jitter

    def delay_s(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None and retry_after_s > 0:
            return retry_after_s + self._jitter(0, min(1.0, retry_after_s * 0.25))
        return self._jitter(0, exponential_delay(attempt, self.base_delay_s, self.max_delay_s))


class CallPermits:
    """The adaptive budget of calls in flight (an AdaptiveLimit) as something calls wait on."""

    def __init__(self, limit: AdaptiveLimit, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.in_flight = 0
        self.peak_in_flight = 0
        self._monotonic = monotonic
        self._changed = asyncio.Condition()
        self._waiting = 0  # calls inside acquire's slow path; while any wait, newcomers queue with them

    async def acquire(self) -> float:
        """Wait for a permit and for the quota pacing; returns the call's start time."""
        now = self._monotonic()
        if not self._waiting and self.in_flight < self.limit.permits and self.limit.start_delay(now) <= 0:
            return self._take(now)  # a permit is free and nobody waits: no lock, no wake-up
        self._waiting += 1
        try:
            while True:
                delay = self.limit.start_delay(self._monotonic())
                if delay > 0:
                    await asyncio.sleep(delay)
                    continue
                async with self._changed:
                    await self._changed.wait_for(lambda: self.in_flight < self.limit.permits)
                    now = self._monotonic()
                    if self.limit.start_delay(now) > 0:
                        continue  # another call took the paced slot meanwhile
                    return self._take(now)
        finally:
            self._waiting -= 1

    def _take(self, now: float) -> float:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self.limit.note_start(now)
        return now

    async def release(self) -> None:
        self.in_flight -= 1
        if self._waiting:
            async with self._changed:
                self._changed.notify(max(1, self.limit.permits - self.in_flight))


@dataclass(slots=True)
class _Attempt:
    """How one attempt failed: the text for the verdict, whose fault, and when to try again."""

    error: str
    failure: Failure
    status: str  # an HTTP status code, or timeout | connection | stream | invalid, for the metrics
    retry_after_s: float | None = None


class AnthropicModelClient:
    """Replays requests with `anthropic.AsyncAnthropic`; the SDK's own retries are off, shadowd's apply."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout_s: float,
        max_concurrency: int,
        profiles: dict[str, ModelProfile],
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        metrics: Metrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        open_telemetry: Literal[False] | None = False,
    ) -> None:
        self._client = anthropic.AsyncAnthropic(
            base_url=base_url,
            api_key=api_key or "unset",
            max_retries=0,
            timeout=timeout_s,
            http_client=_http_client(max_concurrency, timeout_s),
            open_telemetry=open_telemetry,  # False: no spans (models.sdk_traces); None: the SDK's default
        )
        # The floor keeps a busy API from squeezing the shadow to a single call at a time.
        self.permits = CallPermits(AdaptiveLimit(max_concurrency, min_limit=max(1, max_concurrency // 32)), monotonic)
        self._profiles = profiles
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._metrics = metrics or Metrics()
        self._monotonic = monotonic
        self._timeout_s = timeout_s
        self._untraced = open_telemetry is False
        self._metrics.model_concurrency_limit.set(self.permits.limit.permits)

    @property
    def in_flight(self) -> int:
        return self.permits.in_flight

    @property
    def peak_in_flight(self) -> int:
        return self.permits.peak_in_flight

    async def close(self) -> None:
        await self._client.close()

    async def replay_request(
        self, replay: ReplayRequest, api_version: str | None, deadline: float | None = None
    ) -> SideResult:
        """One side of a comparison, retried by the policy; `deadline` (monotonic seconds) bounds the
        capacity retries (default: the policy's deadline from now). Never raises for API trouble."""
        model = str(replay.body.get("model", ""))
        started = self._monotonic()
        if deadline is None:
            deadline = started + self._retry.deadline_s
        attempt = server_failures = capacity_retries = 0
        limit = self.permits.limit
        while True:
            attempt += 1
            call_started = await self.permits.acquire()
            try:
                message, ttft_ms, headers = await self._send(replay, api_version, call_started)
                failed: _Attempt | None = None
            except anthropic.APIStatusError as exc:
                failed, headers = _status_failure(exc), exc.response.headers
            except (anthropic.APIConnectionError, httpx.TransportError) as exc:
                kind = "timeout" if isinstance(exc, anthropic.APITimeoutError | httpx.TimeoutException) else "connection"
                failed, headers = _Attempt(f"{type(exc).__name__}: {exc}", Failure.CAPACITY, kind), None
            except (anthropic.AnthropicError, ValueError) as exc:
                failed, headers = _Attempt(f"{type(exc).__name__}: {exc}", Failure.RESPONSE, "invalid"), None
            finally:
                await self.permits.release()
            now = self._monotonic()
            if headers is not None:
                limit.on_quotas(parse_quotas(headers, utc_now()), now)
            if failed is None:
                limit.on_success()
                self._metrics.model_attempts.labels(model, "ok", "200").inc()
                self._metrics.model_concurrency_limit.set(limit.permits)
                latency_ms = (now - call_started) * 1000
                return self._success(model, message, latency_ms, ttft_ms, attempt, replay.stream, capacity_retries)
            self._metrics.model_attempts.labels(model, failed.failure.value, failed.status).inc()
            if failed.failure is Failure.CAPACITY:
                if failed.status != "connection" and limit.on_capacity(call_started, now):
                    self._metrics.model_concurrency_limit.set(limit.permits)
                    log.debug("model_concurrency_reduced", model=model, permits=limit.permits, status=failed.status)
                retryable = True
            elif failed.failure is Failure.SERVER:
                server_failures += 1
                retryable = server_failures < self._retry.max_attempts
            else:
                retryable = False
            delay = self._retry.delay_s(attempt, failed.retry_after_s) if retryable else 0.0
            if not retryable or now + delay > deadline:
                if failed.failure is Failure.CAPACITY:
                    log.warning(
                        "model_capacity_exhausted", model=model, attempts=attempt, status=failed.status,
                        waited_s=round(now - started, 1), error=failed.error[:300],
                    )
                return SideResult(
                    model=model,
                    ok=False,
                    error=failed.error[:2000],
                    failure=failed.failure.value,
                    attempts=attempt,
                    capacity_retries=capacity_retries,
                    streamed=replay.stream,
                    latency_ms=(now - started) * 1000,
                )
            if failed.failure is Failure.CAPACITY:
                capacity_retries += 1
            self._metrics.model_retries.labels(model, failed.failure.value).inc()
            await self._sleep(delay)

    async def _send(
        self, replay: ReplayRequest, api_version: str | None, started: float
    ) -> tuple[dict[str, Any], float | None, Any]:
        body = replay.body
        if self._untraced:
            # Without `messages.create`'s work on the parameters, or `messages.stream`'s typed events
            # (messages_wire.py). With SDK traces on, the SDK's own calls are kept for their spans.
            if replay.stream:
                message, first_delta, headers = await stream_message(self._client, body, api_version, self._timeout_s,
                                                                     self._monotonic)
                return message, None if first_delta is None else (first_delta - started) * 1000, headers
            response = await post_message(self._client, body, api_version, self._timeout_s)
            return _message_object(response.content), None, response.headers
        kwargs: dict[str, Any] = {name: body[name] for name in _FIXED}
        extra_body = {k: v for k, v in body.items() if k not in _FIXED}
        if extra_body:
            kwargs["extra_body"] = extra_body
        if api_version:
            kwargs["extra_headers"] = {"anthropic-version": api_version}
        if not replay.stream:
            raw = await self._client.messages.with_raw_response.create(**kwargs)
            return _message_object(raw.http_response.content), None, raw.http_response.headers
        ttft_ms: float | None = None
        async with self._client.messages.stream(**kwargs) as stream:
            async for event in stream:
                if ttft_ms is None and event.type == "content_block_delta":
                    ttft_ms = (self._monotonic() - started) * 1000
            final = await stream.get_final_message()
            headers = stream.response.headers
        return final.to_dict(), ttft_ms, headers

    def _success(
        self,
        model: str,
        message: dict[str, Any],
        latency_ms: float,
        ttft_ms: float | None,
        attempts: int,
        streamed: bool,
        capacity_retries: int,
    ) -> SideResult:
        usage = Usage.from_api(message.get("usage"))
        profile = self._profiles.get(model)
        return SideResult(
            model=model,
            ok=True,
            content=tuple(message.get("content") or ()),
            stop_reason=message.get("stop_reason"),
            usage=usage,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            cost_usd=profile.cost_usd(usage) if profile else None,
            attempts=attempts,
            capacity_retries=capacity_retries,
            streamed=streamed,
        )


def _status_failure(exc: anthropic.APIStatusError) -> _Attempt:
    """Classify an error answer; an `error` event inside a 200 stream arrives here with status 200."""
    status = exc.status_code
    error_type = _error_type(exc)
    text = f"HTTP {status}: {_error_message(exc)}"
    retry_after = _retry_after_s(exc.response.headers)
    if status in CAPACITY_STATUS or error_type in CAPACITY_ERROR_TYPES:
        label = "stream" if status < 300 else str(status)
        return _Attempt(text, Failure.CAPACITY, label, retry_after)
    if status in SERVER_RETRY_STATUS or status >= 500:
        return _Attempt(text, Failure.SERVER, str(status), retry_after)
    if status < 300:  # an error event mid-stream that is not about capacity (e.g. api_error)
        return _Attempt(text, Failure.SERVER, "stream", retry_after)
    return _Attempt(text, Failure.REQUEST, str(status))


def _message_object(content: bytes) -> dict[str, Any]:
    answer = fastjson.loads(content)
    if not isinstance(answer, dict):
        raise ValueError("the Messages API answered with something other than a JSON object")
    return answer


def _error_type(exc: anthropic.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return str(error["type"])
    return None


def _http_client(max_concurrency: int, timeout_s: float) -> Any:
    """The SDK's aiohttp transport: with hundreds of connections in flight it costs a fraction of the
    CPU per call of the default pool (see benchmarks/README.md); the default one if aiohttp is missing."""
    limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
    try:
        return anthropic.DefaultAioHttpClient(limits=limits, timeout=timeout_s)
    except RuntimeError:
        return httpx.AsyncClient(limits=limits, timeout=timeout_s)


def recorded_side(
    model: str, response: dict[str, Any], latency_ms: float | None, profile: ModelProfile | None
) -> SideResult:
    """The baseline as production recorded it (`baseline_source: recorded`)."""
    content = response.get("content")
    if response.get("type") == "error" or not isinstance(content, list):
        return SideResult(model=model, ok=False, error="the recorded response holds no message", source="recorded")
    usage = Usage.from_api(response.get("usage") if isinstance(response.get("usage"), dict) else None)
    return SideResult(
        model=str(response.get("model") or model),
        ok=True,
        content=tuple(b for b in content if isinstance(b, dict)),
        stop_reason=response.get("stop_reason") if isinstance(response.get("stop_reason"), str) else None,
        usage=usage,
        latency_ms=latency_ms,
        cost_usd=profile.cost_usd(usage) if profile else None,
        source="recorded",
    )


def _retry_after_s(headers: Any) -> float | None:
    """`retry-after-ms`, else `retry-after` in seconds or as an HTTP date; None when absent or unreadable."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            try:
                seconds = (parsedate_to_datetime(value) - utc_now()).total_seconds()
            except (TypeError, ValueError, IndexError):
                continue
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    return None


def _error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return f"{error.get('type', 'error')}: {error['message']}"
    return str(exc.message)
