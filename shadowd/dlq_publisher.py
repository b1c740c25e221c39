"""Dead letters to the DLQ topic: retried through broker outages, cut to size when the topic refuses them."""

from __future__ import annotations

import asyncio
import time

import structlog

from shadowd.core.backoff import Backoff
from shadowd.ports_kafka import KafkaUnavailable, RecordPublisher, RecordTooLarge, SourceMessage
from shadowd.records import DeadLetter

log = structlog.get_logger("shadowd.consumer")

# Payload sizes tried, largest first, when the DLQ topic refuses a record as too large: the broker's
# default message.max.bytes (1 MB) less room for headers, then smaller, then the headers alone.
DLQ_FALLBACK_SIZES = (1024 * 1024 - 16 * 1024, 256 * 1024, 64 * 1024, 0)


class DeadLetterPublisher:
    """Publishes a record's dead letter with its reason, detail and source in headers."""

    def __init__(self, publisher: RecordPublisher, topic: str, *, retry_initial_s: float = 0.5,
                 retry_max_s: float = 10.0) -> None:
        self.publisher = publisher
        self.topic = topic
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._failing_since: float | None = None
        self._error = ""

    def stuck_reason(self) -> str | None:
        """Why dead letters are not getting to the DLQ topic (for readiness), or None."""
        if self._failing_since is None:
            return None
        seconds = time.monotonic() - self._failing_since
        return f"dead-letter publishing failing for {seconds:.0f} s ({self._error}); retrying, offsets are held"

    async def publish(self, message: SourceMessage, letter: DeadLetter) -> None:
        """Publish until the broker has it; a record the topic cannot take is cut, not held.

        Retriable errors are retried for as long as they last (the offset waits). A size refusal is
        permanent for those bytes, so the payload is cut to the next smaller size and the record carries
        `shadowd-payload-truncated` with its original length; the dead-letter row keeps up to 4 MB.
        """
        original = len(message.value or b"")
        # The letter's payload: the record's bytes as privacy.dead_letter_payload keeps them.
        capped = letter.capped()
        value, truncated = capped.payload, capped.payload_truncated
        payload = value
        limits = iter(DLQ_FALLBACK_SIZES)
        backoff = Backoff(self._retry_initial_s, self._retry_max_s)
        while True:
            headers = [
                ("shadowd-reason", letter.reason.encode()),
                ("shadowd-detail", letter.detail[:1000].encode("utf-8", errors="backslashreplace")),
                ("shadowd-source", f"{message.topic}/{message.partition}/{message.offset}".encode()),
            ]
            if truncated:
                headers.append(("shadowd-payload-truncated", str(original).encode()))
            try:
                await self.publisher.publish(self.topic, payload, key=message.key, headers=headers)
            except RecordTooLarge as exc:
                cause = repr(exc.__cause__ or exc)[:200]
                if not payload:  # the headers alone are refused: the dead-letter row is the record's copy
                    log.error("dead_letter_unpublishable", error=cause)
                    return
                limit = next((n for n in limits if n < len(payload)), 0)
                log.warning("dead_letter_too_large_for_topic", size=len(payload), cut_to=limit, error=cause)
                payload, truncated = value[:limit], True
                continue
            except KafkaUnavailable as exc:
                cause_exc = exc.__cause__ or exc
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                self._error = type(cause_exc).__name__
                delay = backoff.next_delay()
                log.error("dead_letter_publish_failed", error=repr(cause_exc)[:500], retry_in_s=delay)
                await asyncio.sleep(delay)
                continue
            self._failing_since = None
            return
