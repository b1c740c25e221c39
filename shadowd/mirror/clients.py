"""Wrappers for `anthropic.AsyncAnthropic` / `anthropic.Anthropic` whose `messages.create` and
`messages.stream` also hand a capture to the mirror. The SDK's own objects are returned unchanged:
a stream is observed by wrapping its internal event iterator, never by replacing the stream.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shadowd.mirror.assemble import request_body, sampled_in
from shadowd.mirror.publisher import Capture

if TYPE_CHECKING:
    from shadowd.mirror import Mirror


@dataclass(frozen=True, slots=True)
class Tags:
    route: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    request_id: str | None = None


CURRENT_TAGS: contextvars.ContextVar[Tags | None] = contextvars.ContextVar("shadowd_mirror_tags", default=None)


class _Call:
    """One production call as the mirror sees it; every method swallows its own failures."""

    __slots__ = ("api_version", "attributes", "mirror", "request", "request_id", "route", "started", "wall")

    def __init__(self, mirror: Mirror, client: Any, kwargs: Mapping[str, Any], streamed: bool) -> None:
        self.mirror = mirror
        self.started = time.perf_counter()
        self.wall = time.time()
        tags = CURRENT_TAGS.get()
        self.route = (tags.route if tags and tags.route else None) or mirror.route
        self.attributes = {**mirror.attributes, **(tags.attributes if tags else {})}
        self.request_id = tags.request_id if tags else None
        self.request: dict[str, Any] | None = None
        self.api_version = _api_version(client, kwargs)
        try:
            self.request = request_body(kwargs, streamed)
        except Exception:
            self.request = None  # counted as unserializable when the call completes

    def finish(self, message: Any = None, events: list[Any] | None = None, request_id: str | None = None) -> None:
        try:
            latency_ms = (time.perf_counter() - self.started) * 1000.0
            publisher = self.mirror.publisher
            publisher.count("call")
            rid = self.request_id or request_id or f"mirror-{uuid.uuid4().hex}"
            if not sampled_in(rid, self.mirror.sample_rate):
                publisher.count("sampled_out")
                return
            publisher.offer(Capture(
                request_id=rid[:256], request=self.request if self.request is not None else {"unserializable": True},
                route=self.route, attributes=self.attributes, api_version=self.api_version,
                captured_at_s=self.wall, latency_ms=latency_ms, message=message, events=events,
            ))
        except Exception:
            self.mirror.count_internal_error()

    def incomplete(self) -> None:
        try:
            self.mirror.publisher.count("call")
            self.mirror.publisher.count("incomplete_stream")
        except Exception:
            self.mirror.count_internal_error()


def _api_version(client: Any, kwargs: Mapping[str, Any]) -> str | None:
    try:
        extra = kwargs.get("extra_headers")
        if isinstance(extra, Mapping) and isinstance(extra.get("anthropic-version"), str):
            return str(extra["anthropic-version"])
        value = client.default_headers.get("anthropic-version")
        return value if isinstance(value, str) else None
    except Exception:
        return None


def _first_message_id(events: list[Any]) -> str | None:
    for event in events[:1]:
        message = getattr(event, "message", None)
        if message is not None:
            return getattr(message, "id", None)
    return None


def _is_stop(event: Any) -> bool:
    return getattr(event, "type", None) == "message_stop"


def _observe_async_stream(stream: Any, call: _Call) -> None:
    """Wrap the stream's event iterator so the events seen are kept; the stream object stays the SDK's."""
    try:
        inner: AsyncIterator[Any] = stream._iterator
    except Exception:
        call.incomplete()
        return

    async def relay() -> AsyncIterator[Any]:
        events: list[Any] = []
        finished = False
        try:
            async for event in inner:
                events.append(event)
                yield event
            finished = True
        finally:
            if finished and events and _is_stop(events[-1]):
                call.finish(events=events, request_id=_first_message_id(events))
            else:
                call.incomplete()
                aclose = getattr(inner, "aclose", None)
                if aclose is not None and not finished:
                    try:
                        await aclose()
                    except Exception:
                        pass

    try:
        stream._iterator = relay()
    except Exception:
        call.incomplete()


def _observe_stream(stream: Any, call: _Call) -> None:
    try:
        inner: Iterator[Any] = stream._iterator
    except Exception:
        call.incomplete()
        return

    def relay() -> Iterator[Any]:
        events: list[Any] = []
        finished = False
        try:
            for event in inner:
                events.append(event)
                yield event
            finished = True
        finally:
            if finished and events and _is_stop(events[-1]):
                call.finish(events=events, request_id=_first_message_id(events))
            else:
                call.incomplete()
                close = getattr(inner, "close", None)
                if close is not None and not finished:
                    try:
                        close()
                    except Exception:
                        pass

    try:
        stream._iterator = relay()
    except Exception:
        call.incomplete()


def _is_message(result: Any) -> bool:
    return getattr(result, "type", None) == "message" and hasattr(result, "content")


class _AsyncMessages:
    def __init__(self, messages: Any, client: Any, mirror: Mirror) -> None:
        self._messages = messages
        self._client = client
        self._mirror = mirror

    def __getattr__(self, name: str) -> Any:
        return getattr(self._messages, name)

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        call = self._mirror.start_call(self._client, kwargs, streamed=bool(kwargs.get("stream")))
        result = await self._messages.create(*args, **kwargs)
        if call is not None:
            if _is_message(result):
                call.finish(message=result, request_id=getattr(result, "id", None))
            elif hasattr(result, "_iterator"):
                _observe_async_stream(result, call)
        return result

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        manager = self._messages.stream(*args, **kwargs)
        call = self._mirror.start_call(self._client, kwargs, streamed=True)
        name = "_AsyncMessageStreamManager__api_request"
        if call is None or not hasattr(manager, name):
            return manager
        original = getattr(manager, name)

        async def observed() -> Any:
            call.started = time.perf_counter()
            raw = await original
            _observe_async_stream(raw, call)
            return raw

        setattr(manager, name, observed())
        return manager


class _Messages:
    def __init__(self, messages: Any, client: Any, mirror: Mirror) -> None:
        self._messages = messages
        self._client = client
        self._mirror = mirror

    def __getattr__(self, name: str) -> Any:
        return getattr(self._messages, name)

    def create(self, *args: Any, **kwargs: Any) -> Any:
        call = self._mirror.start_call(self._client, kwargs, streamed=bool(kwargs.get("stream")))
        result = self._messages.create(*args, **kwargs)
        if call is not None:
            if _is_message(result):
                call.finish(message=result, request_id=getattr(result, "id", None))
            elif hasattr(result, "_iterator"):
                _observe_stream(result, call)
        return result

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        manager = self._messages.stream(*args, **kwargs)
        call = self._mirror.start_call(self._client, kwargs, streamed=True)
        name = "_MessageStreamManager__api_request"
        if call is None or not hasattr(manager, name):
            return manager
        original = getattr(manager, name)

        def observed() -> Any:
            call.started = time.perf_counter()
            raw = original()
            _observe_stream(raw, call)
            return raw

        setattr(manager, name, observed)
        return manager


class MirroredAsyncAnthropic:
    """An `anthropic.AsyncAnthropic` whose `messages.create` / `messages.stream` are mirrored."""

    def __init__(self, client: Any, mirror: Mirror) -> None:
        self._client = client
        self._mirror = mirror
        self.messages = _AsyncMessages(client.messages, client, mirror)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def with_options(self, **options: Any) -> MirroredAsyncAnthropic:
        return MirroredAsyncAnthropic(self._client.with_options(**options), self._mirror)

    @property
    def unwrapped(self) -> Any:
        return self._client

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> MirroredAsyncAnthropic:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()


class MirroredAnthropic:
    """An `anthropic.Anthropic` whose `messages.create` / `messages.stream` are mirrored."""

    def __init__(self, client: Any, mirror: Mirror) -> None:
        self._client = client
        self._mirror = mirror
        self.messages = _Messages(client.messages, client, mirror)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def with_options(self, **options: Any) -> MirroredAnthropic:
        return MirroredAnthropic(self._client.with_options(**options), self._mirror)

    @property
    def unwrapped(self) -> Any:
        return self._client

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> MirroredAnthropic:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()
