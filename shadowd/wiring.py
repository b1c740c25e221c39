"""The one place that builds adapters from config and connects them: for `run`, `serve`, `replay`, `demo`
and the CLI's reads. Nothing else constructs a store, a model client, a Kafka client or a writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import structlog

from shadowd.adapters.anthropic_client import AnthropicModelClient, RetryPolicy
from shadowd.adapters.kafka import KafkaRecordPublisher, KafkaRecordSource, make_consumer, make_producer
from shadowd.adapters.sql_store import DatabaseUrlError, SqlVerdictStore, open_existing_store, open_store
from shadowd.auth import TokenRegistry
from shadowd.batch import BatchReplayer, attach_batches
from shadowd.config import Config, Settings
from shadowd.consumer import MirrorConsumer
from shadowd.core.backoff import Backoff
from shadowd.core.in_flight import calls_per_record, records_in_flight
from shadowd.dlq_publisher import DeadLetterPublisher
from shadowd.http import ApiState, NotReady
from shadowd.metrics import Metrics
from shadowd.pipeline import ShadowPipeline
from shadowd.ports_kafka import RecordPublisher, RecordSource
from shadowd.promoter import PromoterLoop
from shadowd.retention import retention_task
from shadowd.writer import BatchWriter

log = structlog.get_logger("shadowd.wiring")

Readiness = Mapping[str, Callable[[], Awaitable[None]]]
PublishDecision = Callable[[dict[str, Any]], Awaitable[None]]


def model_client(
    config: Config, base_url: str | None = None, metrics: Metrics | None = None
) -> AnthropicModelClient:
    return AnthropicModelClient(
        base_url=base_url or config.models.base_url,
        api_key=config.api_key(),
        timeout_s=config.models.timeout_s,
        max_concurrency=config.models.max_concurrency,
        profiles=config.profiles,
        retry=RetryPolicy(max_attempts=config.models.max_attempts, deadline_s=config.models.retry_deadline_s),
        metrics=metrics,
        open_telemetry=config.models.sdk_open_telemetry,
    )


def records_in_flight_for(config: Config) -> int:
    """Records replayed at once so that their model calls fit in `models.max_concurrency`."""
    return records_in_flight(config.models.max_concurrency, calls_per_record(config.rollouts))


class PipelineParts(NamedTuple):
    """What `open_pipeline` yields; unpacks as (pipeline, writer, store, models)."""

    pipeline: ShadowPipeline
    writer: BatchWriter
    store: SqlVerdictStore
    models: AnthropicModelClient

    @property
    def records_in_flight(self) -> int:
        return records_in_flight_for(self.pipeline.config)


@asynccontextmanager
async def open_pipeline(
    config: Config, db_url: str, *, base_url: str | None = None, metrics: Metrics | None = None
) -> AsyncIterator[PipelineParts]:
    """Store (migrated to head), model client, pipeline and writer; all closed on exit (`replay`, `demo`)."""
    metrics = metrics or Metrics()
    store = await open_store(db_url, upgrade=True)
    models = model_client(config, base_url, metrics)
    pipeline = ShadowPipeline(config, models, store, metrics)
    batches = attach_batches(pipeline, config, store, base_url)
    writer = BatchWriter(store, metrics, dead_letter=pipeline.dead_letter)
    try:
        await writer.start()
        yield PipelineParts(pipeline, writer, store, models)
    finally:
        await writer.close()
        if batches is not None:
            await batches.close()
        await models.close()
        await store.close()


@asynccontextmanager
async def open_query_store(db_url: str) -> AsyncIterator[SqlVerdictStore]:
    """A database whose schema is at head, for reads and manual actions; never created or migrated here.

    A missing database or schema raises `SchemaNotReady` naming `shadowd db upgrade` (SPEC §4).
    """
    store = await open_existing_store(db_url)
    try:
        yield store
    finally:
        await store.close()


async def open_serve_store(db_url: str) -> SqlVerdictStore:
    """The store `serve` answers from: opened as it is, never migrated."""
    return await open_store(db_url, upgrade=False)


async def open_store_when_up(db_url: str, stop: asyncio.Event) -> SqlVerdictStore | None:
    """The daemon's store, migrated to head; a database still coming up is retried with backoff until
    `stop` (then None). A bad URL or an error that is not about connecting is raised at once."""
    backoff = Backoff(1.0, 15.0)
    while not stop.is_set():
        try:
            return await open_store(db_url, upgrade=True)
        except DatabaseUrlError:
            raise
        except (OSError, ConnectionError) as exc:
            delay = backoff.next_delay()
            log.error("database_unreachable_at_start", error=repr(exc)[:300], retry_in_s=delay)
        except Exception as exc:
            if "connect" not in repr(exc).lower():
                raise
            delay = backoff.next_delay()
            log.error("database_unreachable_at_start", error=repr(exc)[:300], retry_in_s=delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
    return None


def api_state(
    config: Config,
    settings: Settings,
    store: SqlVerdictStore,
    metrics: Metrics,
    *,
    readiness: Readiness,
    tokens: TokenRegistry | None = None,
    publish_decision: PublishDecision | None = None,
) -> ApiState:
    """What the HTTP API answers from (`run --http` and `serve`)."""
    return ApiState(
        config=config, store=store, metrics=metrics,
        admin_token=settings.admin_token, read_token=settings.read_token,
        readiness=dict(readiness), publish_decision=publish_decision, tokens=tokens or TokenRegistry(),
    )


def wants_promoter(config: Config) -> bool:
    """The promoter's tick has work: rollouts to gate, or retention to apply."""
    return bool(config.rollouts) or config.retention.enabled


def promoter_loop(
    store: SqlVerdictStore,
    config: Config,
    *,
    interval_s: float,
    metrics: Metrics,
    publish: PublishDecision | None = None,
) -> PromoterLoop:
    """The gate's loop, with the retention purge after each tick; its actor names this process in the
    audit trail."""
    return PromoterLoop(
        store, config.rollouts, interval_s=interval_s, publish=publish, metrics=metrics,
        actor=f"gate@{socket.gethostname()}:{os.getpid()}",
        after_tick=retention_task(store, config, metrics).run_once,
    )


@dataclass(slots=True)
class DaemonParts:
    """Everything `run` connects once the store is open; `daemon.py` starts and stops them in order."""

    config: Config
    store: SqlVerdictStore
    metrics: Metrics
    models: AnthropicModelClient
    pipeline: ShadowPipeline
    writer: BatchWriter
    records_in_flight: int
    batches: BatchReplayer | None  # batched calls (replay_mode: batch, a rollout's or a route's)
    source: RecordSource  # the mirrored topic, as a consumer-group member
    decisions: RecordPublisher  # gate decisions to the decisions topic
    dead_letter_producer: RecordPublisher  # dead letters to the DLQ topic
    mirror: MirrorConsumer

    async def publish_decision(self, decision: dict[str, Any]) -> None:
        await self.decisions.publish(
            self.config.kafka.decisions_topic, json.dumps(decision).encode(), key=decision["rollout"].encode()
        )

    def readiness(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """Ready means "can answer the API": the database, and verdicts getting stored. Kafka's health is in
        the metrics (shadowd_kafka_reachable) and the logs, so a broker outage never empties the Service."""
        return {"database": self.store.ping, "writer": lambda: _not_stuck(self.writer.stuck_reason())}


def daemon_parts(config: Config, store: SqlVerdictStore, metrics: Metrics) -> DaemonParts:
    """The model client, pipeline, writer and Kafka clients of `run`, over an open store."""
    models = model_client(config, metrics=metrics)
    pipeline = ShadowPipeline(config, models, store, metrics)
    batches = attach_batches(pipeline, config, store)
    writer = BatchWriter(store, metrics, dead_letter=pipeline.dead_letter)
    in_flight = records_in_flight_for(config)
    source = KafkaRecordSource(make_consumer(config.kafka, max_records=in_flight))
    decisions = KafkaRecordPublisher(make_producer(config.kafka))
    # Not idempotent on purpose: see make_producer.
    dead_letter_producer = KafkaRecordPublisher(make_producer(config.kafka, idempotent=False))
    mirror = MirrorConsumer(
        source, DeadLetterPublisher(dead_letter_producer, config.kafka.dead_letter_topic), pipeline, writer,
        topic=config.kafka.topic, max_in_flight=in_flight, metrics=metrics,
    )
    return DaemonParts(
        config=config, store=store, metrics=metrics, models=models, pipeline=pipeline, writer=writer,
        records_in_flight=in_flight, batches=batches, source=source, decisions=decisions,
        dead_letter_producer=dead_letter_producer, mirror=mirror,
    )


async def _not_stuck(reason: str | None) -> None:
    """Readiness fails while records cannot get through, even when every dependency answers a ping."""
    if reason is not None:
        raise NotReady(reason)


__all__ = [
    "DaemonParts",
    "PipelineParts",
    "api_state",
    "daemon_parts",
    "model_client",
    "open_pipeline",
    "open_query_store",
    "open_serve_store",
    "open_store_when_up",
    "promoter_loop",
    "wants_promoter",
    "records_in_flight_for",
]
