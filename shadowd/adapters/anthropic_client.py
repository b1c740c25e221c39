"""The model API through the real `anthropic` SDK, with shadowd's own retry policy."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anthropic

try:  # anthropic 2.x ships its HTTP stack as httpx2; 1.x used httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

from shadowd.core.adaptation import ReplayRequest
from shadowd.core.profiles import ModelProfile
from shadowd.core.results import SideResult, Usage

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
_FIXED = ("model", "max_tokens", "messages")


class RetryPolicy:
    """Bounded attempts with capped exponential backoff and full jitter; `retry-after` wins when given."""

    def __init__(self, max_attempts: int = 4, base_delay_s: float = 0.5, max_delay_s: float = 30.0) -> None:
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s

    def delay_s(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_delay_s)
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))


class AnthropicModelClient:
    """Replays requests with `anthropic.AsyncAnthropic`; the SDK's own retries are off."""

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
    ) -> None:
        self._client = anthropic.AsyncAnthropic(
            base_url=base_url,
            api_key=api_key or "unset",
            max_retries=0,
            timeout=timeout_s,
            http_client=_http_client(max_concurrency, timeout_s),
        )
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._profiles = profiles
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self.in_flight = 0
        self.peak_in_flight = 0

    async def close(self) -> None:
        await self._client.close()

    async def replay_request(self, replay: ReplayRequest, api_version: str | None) -> SideResult:
        model = str(replay.body.get("model", ""))
        started = time.perf_counter()
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                async with self._semaphore:
                    self.in_flight += 1
                    self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
                    try:
                        call_started = time.perf_counter()
                        message, ttft_ms = await self._send(replay, api_version, call_started)
                    finally:
                        self.in_flight -= 1
                latency_ms = (time.perf_counter() - call_started) * 1000
                return self._success(model, message, latency_ms, ttft_ms, attempt, replay.stream)
            except anthropic.APIStatusError as exc:
                error = f"HTTP {exc.status_code}: {_error_message(exc)}"
                retryable = exc.status_code in RETRYABLE_STATUS
                retry_after = _retry_after_s(exc.response.headers)
            except (anthropic.APIConnectionError, httpx.TransportError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                retryable = True
            except (anthropic.AnthropicError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                retryable = False
            if not retryable or attempt >= self._retry.max_attempts:
                return SideResult(
                    model=model,
                    ok=False,
                    error=error[:2000],
                    attempts=attempt,
                    streamed=replay.stream,
                    latency_ms=(time.perf_counter() - started) * 1000,
                )
            await self._sleep(self._retry.delay_s(attempt, retry_after))

    async def _send(
        self, replay: ReplayRequest, api_version: str | None, started: float
    ) -> tuple[dict[str, Any], float | None]:
        body = replay.body
        kwargs: dict[str, Any] = {name: body[name] for name in _FIXED}
        extra_body = {k: v for k, v in body.items() if k not in _FIXED}
        if extra_body:
            kwargs["extra_body"] = extra_body
        if api_version:
            kwargs["extra_headers"] = {"anthropic-version": api_version}
        if not replay.stream:
            # The raw body is what shadowd stores and compares; building the SDK's typed Message only
            # to dump it back to a dict would double the per-call CPU. Errors still raise as usual.
            raw = await self._client.messages.with_raw_response.create(**kwargs)
            body = json.loads(raw.http_response.content)
            if not isinstance(body, dict):
                raise ValueError("the Messages API answered with something other than a JSON object")
            return body, None
        ttft_ms: float | None = None
        async with self._client.messages.stream(**kwargs) as stream:
            async for event in stream:
                if ttft_ms is None and event.type == "content_block_delta":
                    ttft_ms = (time.perf_counter() - started) * 1000
            final = await stream.get_final_message()
        return final.to_dict(), ttft_ms

    def _success(
        self,
        model: str,
        message: dict[str, Any],
        latency_ms: float,
        ttft_ms: float | None,
        attempts: int,
        streamed: bool,
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
            streamed=streamed,
        )


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
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) * scale
        except ValueError:
            continue
    return None


def _error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return f"{error.get('type', 'error')}: {error['message']}"
    return str(exc.message)
