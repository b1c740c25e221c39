"""`shadowd.mirror`: production's Messages API calls, also published as `shadowd.mirror/v1` envelopes (SPEC §10).

    mirror = Mirror(bootstrap_servers="kafka:9092", topic="llm.mirror")
    client = mirror.wrap(anthropic.AsyncAnthropic())
    with mirror.tagged(route="support-summary", attributes={"tenant": "acme"}):
        message = await client.messages.create(model=..., max_tokens=..., messages=[...])
    mirror.close(timeout_s=5)      # or `await mirror.aclose(5)` inside an event loop
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, overload

from shadowd.adapters.kafka_sink import KafkaSink
from shadowd.mirror.assemble import SCHEMA, assemble_stream, sampled_in
from shadowd.mirror.clients import CURRENT_TAGS, MirroredAnthropic, MirroredAsyncAnthropic, Tags, _Call
from shadowd.mirror.publisher import DROP_REASONS, MemorySink, MirrorStats, Publisher, Redact, Sink


class Mirror:
    """One producer per process: wrap any number of clients with it, close it once at shutdown.

    Nothing here raises into or waits inside the production call: the call hands a capture to a
    bounded queue (a full queue counts a drop), and a background thread encodes, redacts and sends.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str | None = None,
        topic: str = "llm.mirror",
        route: str = "default",
        attributes: Mapping[str, str] | None = None,
        sample_rate: float = 1.0,
        max_queue: int = 10_000,
        redact: Redact | None = None,
        producer_options: Mapping[str, Any] | None = None,
        sink: Callable[[], Sink] | None = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be within 0..1, got {sample_rate}")
        if not route:
            raise ValueError("route must be a non-empty string")
        bad = [k for k, v in (attributes or {}).items() if not isinstance(v, str)]
        if bad:
            raise ValueError(f"attribute values must be strings: {', '.join(map(str, bad))}")
        self.route = route
        self.attributes = dict(attributes or {})
        self.sample_rate = sample_rate
        self._internal_errors = 0
        self._errors_lock = threading.Lock()
        if sink is None:
            if not bootstrap_servers:
                raise ValueError("Mirror needs bootstrap_servers (or a sink)")
            servers = bootstrap_servers

            def sink() -> Sink:
                return KafkaSink(servers, topic, producer_options)

            describe = f"kafka {bootstrap_servers} topic {topic}"
        else:
            describe = "a custom sink"
        self.publisher = Publisher(make_sink=sink, describe=describe, max_queue=max_queue, redact=redact)

    @overload
    def wrap(self, client: MirroredAsyncAnthropic) -> MirroredAsyncAnthropic: ...
    @overload
    def wrap(self, client: Any) -> Any: ...

    def wrap(self, client: Any) -> Any:
        """A mirrored view of an `anthropic.AsyncAnthropic` or `anthropic.Anthropic` client."""
        import anthropic

        if isinstance(client, anthropic.AsyncAnthropic):
            return MirroredAsyncAnthropic(client, self)
        if isinstance(client, anthropic.Anthropic):
            return MirroredAnthropic(client, self)
        raise TypeError(f"Mirror.wrap takes an anthropic.AsyncAnthropic or anthropic.Anthropic, not {type(client).__name__}")

    @staticmethod
    @contextmanager
    def tagged(
        route: str | None = None, attributes: Mapping[str, str] | None = None, request_id: str | None = None
    ) -> Iterator[None]:
        """Route, attributes and (optionally) the request id for the calls made inside the block."""
        outer = CURRENT_TAGS.get()
        merged = {**(outer.attributes if outer else {}), **{str(k): str(v) for k, v in (attributes or {}).items()}}
        token = CURRENT_TAGS.set(Tags(route=route or (outer.route if outer else None), attributes=merged,
                                      request_id=request_id))
        try:
            yield
        finally:
            CURRENT_TAGS.reset(token)

    def start_call(self, client: Any, kwargs: Mapping[str, Any], streamed: bool) -> _Call | None:
        try:
            return _Call(self, client, kwargs, streamed)
        except Exception:
            self.count_internal_error()
            return None

    def count_internal_error(self) -> None:
        with self._errors_lock:
            self._internal_errors += 1

    def stats(self) -> dict[str, Any]:
        """Counters: calls, sampled_out, queued, delivered, dropped (and by reason), internal_errors."""
        return self.publisher.stats().to_dict() | {"internal_errors": self._internal_errors,
                                                    "kafka_connected": self.publisher.connected}

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait (blocking) until everything queued so far is delivered or dropped."""
        return self.publisher.flush(timeout_s)

    def close(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """Deliver what is queued within `timeout_s`; what is left counts as dropped. Blocks the caller."""
        self.publisher.close(timeout_s)
        return self.stats()

    async def aclose(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """`close()` from inside an event loop, without blocking the loop."""
        return await asyncio.to_thread(self.close, timeout_s)


__all__ = ["DROP_REASONS", "SCHEMA", "KafkaSink", "MemorySink", "Mirror", "MirrorStats", "Sink", "MirroredAnthropic", "MirroredAsyncAnthropic",
           "assemble_stream", "sampled_in"]
