"""`shadowd run`: owns the event loop, the signals and the shutdown order; the work lives elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from shadowd.adapters.kafka import KafkaClientOptionError, make_consumer, make_producer
from shadowd.adapters.sql_store import DatabaseUrlError, open_store
from shadowd.auth import TokenRegistry
from shadowd.batch import attach_batches
from shadowd.config import Config, Settings
from shadowd.consumer import MirrorConsumer
from shadowd.http import ApiState, NotReady, create_app, create_starting_app, start_http
from shadowd.metrics import Metrics, sample_consumer_lag
from shadowd.pipeline import ShadowPipeline
from shadowd.promoter import PromoterLoop
from shadowd.retention import retention_task
from shadowd.wiring import model_client
from shadowd.writer import BatchWriter

log = structlog.get_logger("shadowd.daemon")


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    http: str | None = None
    drain_timeout_s: float = 60.0
    promoter: bool = True
    promoter_interval_s: float = 30.0
    open_reads: bool = False  # anonymous report and verdict reads over HTTP (`run --open-reads`)
    tokens: TokenRegistry | None = None  # None: SHADOWD_ADMIN_TOKEN and SHADOWD_READ_TOKEN only


def run_daemon(config: Config, settings: Settings, db_url: str, options: DaemonOptions) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean drain, 1 after a fatal error."""
    try:
        asyncio.run(async_run(config, settings, db_url, options))
    except KafkaClientOptionError as exc:
        log.error("fatal", error=str(exc), config=str(config.path) if config.path else None)
        return 2
    except DatabaseUrlError as exc:
        log.error("fatal", error=f"database URL (--db / SHADOWD_DATABASE_URL): {exc}")
        return 2
    except Exception as exc:
        log.exception("fatal", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


async def async_run(
    config: Config,
    settings: Settings,
    db_url: str,
    options: DaemonOptions,
    stop: asyncio.Event | None = None,
    metrics: Metrics | None = None,
) -> None:
    stop = stop or asyncio.Event()
    metrics = metrics or Metrics()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _on_signal, stop, sig)

    # Liveness from the first second: a small app answers /healthz (and /readyz 503 with the phase)
    # while the database and Kafka are awaited; the full API replaces it on the same port.
    phase = {"now": "waiting for the database"}
    starting: web.AppRunner | None = None
    if options.http:
        starting = await start_http(create_starting_app(metrics, lambda: phase["now"]), options.http)
        log.info("http_listening", listen=options.http, phase="starting")
    try:
        store = await _open_store_when_up(db_url, stop)
    except BaseException:
        if starting is not None:
            await starting.cleanup()
        raise
    if store is None:
        if starting is not None:
            await starting.cleanup()
        return
    phase["now"] = "connecting to Kafka"
    models = model_client(config, metrics=metrics)
    pipeline = ShadowPipeline(config, models, store, metrics)
    batches = attach_batches(pipeline, config, store)
    writer = BatchWriter(store, metrics, dead_letter=pipeline.dead_letter)
    # Records in flight are bounded so that their model calls fit in models.max_concurrency.
    max_in_flight = max(1, config.models.max_concurrency // pipeline.max_calls_per_record())
    consumer = make_consumer(config.kafka, max_records=max_in_flight)
    producer = make_producer(config.kafka)
    dlq_producer = make_producer(config.kafka, idempotent=False)
    mirror = MirrorConsumer(
        consumer, dlq_producer, pipeline, writer,
        topic=config.kafka.topic, dlq_topic=config.kafka.dead_letter_topic, max_in_flight=max_in_flight,
        metrics=metrics,
    )
    runner: web.AppRunner | None = None
    background: list[asyncio.Task[None]] = []
    try:
        await producer.start()
        await dlq_producer.start()
        await consumer.start()
        await writer.start()
        mirror.subscribe()

        async def publish_decision(decision: dict[str, Any]) -> None:
            await producer.send_and_wait(
                config.kafka.decisions_topic, json.dumps(decision).encode(), key=decision["rollout"].encode()
            )

        if starting is not None:
            await starting.cleanup()
            starting = None
        if options.http:
            state = ApiState(
                config=config, store=store, metrics=metrics,
                admin_token=settings.admin_token, read_token=settings.read_token,
                # Ready means "can answer the API": the database, and verdicts getting stored. Kafka's health
                # is in the metrics (shadowd_kafka_reachable) and the logs, so a broker outage never
                # empties the Service.
                readiness={"database": store.ping, "writer": lambda: _not_stuck(writer.stuck_reason())},
                publish_decision=publish_decision, tokens=options.tokens or TokenRegistry(),
            )
            runner = await start_http(create_app(state, open_reads=options.open_reads), options.http)
            log.info("http_listening", listen=options.http, open_reads=options.open_reads,
                     token_names=state.tokens.names())
        if options.promoter and (config.rollouts or config.retention.enabled):
            promoter = PromoterLoop(
                store, config.rollouts, interval_s=options.promoter_interval_s,
                publish=publish_decision, metrics=metrics,
                actor=f"gate@{socket.gethostname()}:{os.getpid()}",
                after_tick=retention_task(store.engine, config, metrics).run_once,
            )
            background.append(asyncio.create_task(promoter.run(stop), name="shadowd-promoter"))
        background.append(asyncio.create_task(sample_consumer_lag(consumer, metrics, stop), name="shadowd-lag"))
        log.info("started", topic=config.kafka.topic, group_id=config.kafka.group_id, max_in_flight=max_in_flight,
                 rollouts=[r.name for r in config.rollouts])
        await mirror.run(stop, options.drain_timeout_s)
        log.info("stopped", records=mirror.records_done)
    finally:
        stop.set()
        if starting is not None:
            await starting.cleanup()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        if runner is not None:
            await runner.cleanup()
        with contextlib.suppress(Exception):
            await consumer.stop()
        await writer.close()
        with contextlib.suppress(Exception):
            await producer.stop()
        with contextlib.suppress(Exception):
            await dlq_producer.stop()
        if batches is not None:
            await batches.close()
        await models.close()
        await store.close()


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if stop.is_set():
        log.warning("second_signal_ignored_draining", signal=sig.name)
        return
    log.info("shutdown_requested", signal=sig.name)
    stop.set()


async def _open_store_when_up(db_url: str, stop: asyncio.Event) -> Any:
    """Start even if the database is still coming up: retry the first connection with backoff."""
    delay = 1.0
    while not stop.is_set():
        try:
            return await open_store(db_url, upgrade=True)
        except DatabaseUrlError:
            raise
        except (OSError, ConnectionError) as exc:
            log.error("database_unreachable_at_start", error=repr(exc)[:300], retry_in_s=delay)
        except Exception as exc:
            if "connect" not in repr(exc).lower():
                raise
            log.error("database_unreachable_at_start", error=repr(exc)[:300], retry_in_s=delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        delay = min(delay * 2, 15.0)
    return None



async def _not_stuck(reason: str | None) -> None:
    """Readiness fails while records cannot get through, even when every dependency answers a ping."""
    if reason is not None:
        raise NotReady(reason)


__all__ = ["DaemonOptions", "async_run", "run_daemon"]
