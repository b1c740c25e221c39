"""The mirror's publisher: a bounded hand-off from the call path to a Kafka producer on its own thread.

The call path only appends to a bounded deque under a lock (or counts a drop); a daemon thread
runs its own event loop with a sink (the Kafka one is shadowd.adapters.kafka_sink), so neither
encoding nor the Kafka client's reconnects ever run on the application's thread or event loop.
"""
# Over 400 lines: the publisher's thread, queue, drop accounting and Kafka sink must change together to stay
# lossless-or-counted.

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from shadowd.core.backoff import Backoff
from shadowd.mirror.assemble import (
    Unserializable,
    assemble_stream,
    encode,
    envelope,
    message_body,
)

log = structlog.get_logger("shadowd.mirror")

Redact = Callable[[dict[str, Any]], "dict[str, Any] | None"]

# Why an envelope was not delivered; `dropped` is their sum.
DROP_REASONS = ("queue_full", "kafka_error", "unserializable", "redact_error", "closed")


@dataclass(slots=True)
class Capture:
    """What one production call hands to the background: cheap to build, encoded later."""

    request_id: str
    request: dict[str, Any]
    route: str
    attributes: dict[str, str]
    api_version: str | None
    captured_at_s: float
    latency_ms: float
    message: Any = None  # the SDK's Message of a non-streamed call
    events: list[Any] | None = None  # the stream events of a streamed call


@dataclass(slots=True)
class MirrorStats:
    """Counters since start. After `close()`: queued == delivered + dropped (every envelope accounted)."""

    calls: int = 0
    sampled_out: int = 0
    incomplete_streams: int = 0
    suppressed: int = 0  # the redact hook returned None
    queued: int = 0
    delivered: int = 0
    dropped_by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def dropped(self) -> int:
        return sum(self.dropped_by_reason.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "sampled_out": self.sampled_out,
            "incomplete_streams": self.incomplete_streams,
            "suppressed": self.suppressed,
            "queued": self.queued,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "dropped_by_reason": {reason: self.dropped_by_reason.get(reason, 0) for reason in DROP_REASONS},
        }


class Sink(Protocol):
    """Where envelopes go: `send` resolves its future when the envelope is stored (or fails)."""

    async def start(self) -> None: ...
    async def send(self, key: bytes, value: bytes) -> asyncio.Future[Any]: ...
    async def stop(self) -> None: ...


class MemorySink:
    """The in-memory twin: keeps (key, value) pairs; `reachable = False` makes it refuse to start."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.reachable = True

    async def start(self) -> None:
        if not self.reachable:
            raise ConnectionError("the memory sink is set unreachable")

    async def send(self, key: bytes, value: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.records.append((key, value))
        future.set_result(None)
        return future

    async def stop(self) -> None:
        return None


class Publisher:
    """Bounded queue → background thread → Kafka. Every method is safe to call from any thread."""

    def __init__(
        self,
        *,
        make_sink: Callable[[], Sink],
        describe: str,
        max_queue: int = 10_000,
        redact: Redact | None = None,
        reconnect_max_s: float = 5.0,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self._make_sink = make_sink
        self._describe = describe
        self._max_queue = max_queue
        self._redact = redact
        self._reconnect_max_s = reconnect_max_s
        self._start_fresh()
        # A pre-forking server (gunicorn, uWSGI) forks after the app built its mirror: the child has no
        # publisher thread and may have copied a held lock, so it starts afresh with its own.
        reference = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _restart_in_child(reference))

    def _start_fresh(self) -> None:
        self._lock = threading.Lock()
        self._items: deque[Capture] = deque()
        self._stats = MirrorStats()
        self._closing = False
        self._deadline: float | None = None
        self._idle = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._flushed = threading.Condition(self._lock)
        self._in_flight = 0
        self._connected = False
        self._warned = False
        self._final = False
        self._thread = threading.Thread(target=self._thread_main, name="shadowd-mirror", daemon=True)
        self._thread.start()

    # --- the call path -------------------------------------------------------------------------------

    def count(self, what: str) -> None:
        with self._lock:
            if what == "call":
                self._stats.calls += 1
            elif what == "sampled_out":
                self._stats.sampled_out += 1
            elif what == "incomplete_stream":
                self._stats.incomplete_streams += 1

    def offer(self, capture: Capture) -> None:
        """Queue one envelope, or count it dropped when the queue is full or closed. Never blocks."""
        with self._lock:
            if self._closing:
                self._stats.dropped_by_reason["closed"] += 1
                return
            if len(self._items) >= self._max_queue:
                self._stats.dropped_by_reason["queue_full"] += 1
                return
            self._items.append(capture)
            self._stats.queued += 1
            wake = self._idle
            self._idle = False
            loop, event = self._loop, self._wake
        if wake and loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing: close() accounts for the item
                loop.call_soon_threadsafe(event.set)

    def stats(self) -> MirrorStats:
        with self._lock:
            return dataclasses.replace(self._stats, dropped_by_reason=Counter(self._stats.dropped_by_reason))

    @property
    def connected(self) -> bool:
        return self._connected

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued envelope is delivered or dropped; False when the time ran out."""
        deadline = time.monotonic() + timeout_s
        with self._flushed:
            while self._items or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._flushed.wait(min(left, 0.1))
        return True

    def close(self, timeout_s: float = 5.0) -> MirrorStats:
        """Stop accepting, deliver what is queued within `timeout_s`, count the rest as dropped."""
        with self._lock:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + max(timeout_s, 0.0)
            loop, event = self._loop, self._wake
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
        self._thread.join(timeout=max(timeout_s, 0.0) + 1.0)
        with self._lock:
            # Whatever is still queued or unacknowledged now is not going to be delivered.
            undelivered = self._stats.queued - self._stats.delivered - self._dropped_after_queue()
            if undelivered > 0:
                self._stats.dropped_by_reason["closed"] += undelivered
            self._items.clear()
            self._in_flight = 0
            self._final = True
        return self.stats()

    def _dropped_after_queue(self) -> int:
        # "closed" also counts offers refused after close(), which were never queued.
        reasons = self._stats.dropped_by_reason
        return reasons["kafka_error"] + reasons["unserializable"] + reasons["redact_error"] + self._stats.suppressed

    # --- the background thread -----------------------------------------------------------------------

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as exc:  # never let the thread die silently; close() accounts for the envelopes
            log.error("mirror_publisher_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    async def _run(self) -> None:
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
        producer: Sink | None = None
        reconnect = Backoff(0.2, self._reconnect_max_s)
        try:
            while True:
                if producer is None:
                    producer = await self._connect()
                    if producer is None:
                        if self._past_deadline():
                            return
                        await self._sleep_or_wake(reconnect.next_delay())
                        continue
                    reconnect.reset()
                batch = self._take()
                if not batch:
                    if self._closing:
                        return
                    await self._wake_event().wait()
                    continue
                for capture in batch:
                    if self._past_deadline():
                        return
                    await self._publish(producer, capture)
                    # Between envelopes, hand the GIL to the application's threads.
                    time.sleep(0)  # noqa: ASYNC251 -- a GIL hand-off, not a wait
        finally:
            if producer is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), timeout=max(self._time_left(), 0.1))

    def _wake_event(self) -> asyncio.Event:
        assert self._wake is not None
        return self._wake

    def _take(self) -> list[Capture]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._in_flight += len(items)
            if not items:
                self._idle = True
                self._wake_event().clear()
                self._flushed.notify_all()
            return items

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _time_left(self) -> float:
        return 3600.0 if self._deadline is None else self._deadline - time.monotonic()

    async def _sleep_or_wake(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake_event().wait(), timeout=min(seconds, max(self._time_left(), 0.01)))
        self._wake_event().clear()

    async def _connect(self) -> Sink | None:
        try:
            producer = self._make_sink()
        except Exception as exc:  # bad client options: nothing can be delivered; close() counts it all
            log.error("mirror_sink_unusable", sink=self._describe, error=f"{type(exc).__name__}: {exc}"[:300])
            return None
        try:
            await asyncio.wait_for(producer.start(), timeout=min(15.0, max(self._time_left(), 0.1)))
        except Exception as exc:  # unreachable, refused, bad options: count nothing yet, retry later
            with contextlib.suppress(Exception):
                await producer.stop()
            if self._connected or not self._warned:
                log.warning("mirror_kafka_unreachable", sink=self._describe,
                            error=f"{type(exc).__name__}: {exc}"[:300])
                self._warned = True
            self._connected = False
            return None
        if not self._connected:
            log.info("mirror_kafka_connected", sink=self._describe)
        self._connected = True
        return producer

    async def _publish(self, producer: Sink, capture: Capture) -> None:
        try:
            value = self._encode(capture)
        except _Dropped as dropped:
            self._settle(dropped.reason)
            return
        if value is None:
            self._settle("suppressed")
            return
        try:
            future = await producer.send(capture.request_id.encode("utf-8", "surrogatepass"), value)
        except Exception:  # too large, timed out waiting for metadata, producer closed
            self._settle("kafka_error")
            return
        future.add_done_callback(self._on_delivery)

    def _on_delivery(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._settle("kafka_error")
        else:
            self._settle("delivered")

    def _settle(self, outcome: str) -> None:
        with self._lock:
            if self._final:
                return  # close() has already counted this envelope as dropped
            if outcome == "delivered":
                self._stats.delivered += 1
            elif outcome == "suppressed":
                self._stats.suppressed += 1
            else:
                self._stats.dropped_by_reason[outcome] += 1
            self._in_flight -= 1
            if not self._in_flight and not self._items:
                self._flushed.notify_all()

    def _encode(self, capture: Capture) -> bytes | None:
        try:
            if capture.events is not None:
                response = assemble_stream(capture.events)
            else:
                response = message_body(capture.message) if capture.message is not None else None
            body = envelope(
                request_id=capture.request_id, request=capture.request, response=response, route=capture.route,
                captured_at_s=capture.captured_at_s, latency_ms=capture.latency_ms,
                api_version=capture.api_version, attributes=capture.attributes,
            )
        except Exception:  # an SDK object without a JSON form, an event stream that does not add up
            raise _Dropped("unserializable") from None
        if self._redact is not None:
            try:
                redacted = self._redact(body)
            except Exception:
                raise _Dropped("redact_error") from None
            if redacted is None:
                return None
            body = redacted
        try:
            return encode(body)
        except Unserializable:
            raise _Dropped("unserializable") from None


def _restart_in_child(reference: weakref.ref[Publisher]) -> None:
    publisher = reference()
    if publisher is not None and not publisher._closing:
        publisher._start_fresh()


class _Dropped(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
