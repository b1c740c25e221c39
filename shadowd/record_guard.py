"""One record in, one outcome out, whatever happens: store outages are waited out, bugs dead-lettered."""

from __future__ import annotations

import asyncio
import traceback

import structlog

from shadowd.core.backoff import Backoff
from shadowd.pipeline import RecordOutcome, ShadowPipeline
from shadowd.records import SourceRecord

log = structlog.get_logger("shadowd.record_guard")


async def replay_or_dead_letter(pipeline: ShadowPipeline, record: SourceRecord) -> RecordOutcome:
    """The record's verdicts, or a `processing_failed` dead letter when replaying it raised.

    A bug or an unusable value in one record must not stall its partition (`run`) or end the whole
    run (`replay`): the record is dead-lettered with the error and the next one goes on.
    """
    try:
        return await replay_when_store_up(pipeline, record)
    except Exception as exc:
        log.error("record_failed", error=repr(exc)[:500], traceback=traceback.format_exc(limit=5),
                  partition=record.partition, offset=record.offset)
        outcome = RecordOutcome(record)
        outcome.dead_letter = pipeline.dead_letter(record, "processing_failed", repr(exc)[:2000])
        return outcome


async def replay_when_store_up(pipeline: ShadowPipeline, record: SourceRecord) -> RecordOutcome:
    """Replay the record, waiting out a store outage instead of dead-lettering the record for it.

    An error while the store answers is the record's own (the caller dead-letters it); an error while the
    store is down says nothing about the record, and a dead letter then would lose its verdict for good.
    """
    backoff = Backoff(0.5, 10.0)
    retried_with_store_up = False
    while True:
        try:
            return await pipeline.replay_record(record)
        except Exception as exc:
            if await store_reachable(pipeline):
                if retried_with_store_up:
                    raise
                retried_with_store_up = True  # the store may have come back just now: one more try
                continue
            retried_with_store_up = False
            delay = backoff.next_delay()
            log.warning("store_unreachable_retrying_record", error=repr(exc)[:300], retry_in_s=delay)
            await asyncio.sleep(delay)


async def store_reachable(pipeline: ShadowPipeline) -> bool:
    try:
        await asyncio.wait_for(pipeline.store.ping(), timeout=5.0)
    except Exception:
        return False
    return True
