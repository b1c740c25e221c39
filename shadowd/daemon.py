"""`shadowd run`: owns the event loop, the signals and the shutdown order; the work lives elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from dataclasses import dataclass

import structlog
from aiohttp import web

from shadowd import wiring
from shadowd.adapters.kafka import KafkaClientOptionError
from shadowd.adapters.sql_store import DatabaseUrlError
from shadowd.auth import TokenRegistry
from shadowd.config import Config, Settings
from shadowd.http import create_app, create_starting_app, start_http
from shadowd.metrics import Metrics, sample_consumer_lag

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
    frozen = freeze_startup_heap()
    thresholds = widen_collector_thresholds()
    log.debug("startup_heap_frozen", objects=frozen, gc_thresholds=thresholds)
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


def freeze_startup_heap() -> int:
    """Collect start-up garbage, then move every object alive now out of the cyclic collector's reach.

    What exists at this point (the imported modules, the SDK's and SQLAlchemy's types, the config) lives
    as long as the process. Left in the collector, each full collection walks all of it again while
    records flow: at a 0 ms model that was about a fifth of the daemon's CPU (benchmarks/README.md).
    Frozen objects are still freed by reference counting; only a cycle among them is never collected.
    Returns how many objects are frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


# The cyclic collector's thresholds while records flow (CPython's defaults: 700, 10, 10). A call in
# flight holds a few hundred container objects for as long as the model takes; with hundreds of calls
# in flight they outlive several default-sized young collections, reach the oldest generation, and
# make full collections, each a walk over everything in flight, frequent: at a 2,000 ms model and
# 1,500 calls in flight the SDK's own loop spent a third of its CPU in the collector (13 full
# collections per 9,000 calls), 7 % with these thresholds (benchmarks/README.md). Reference counting
# still frees almost everything at once; the collector only finds cycles, a little later than before:
# a young collection per 50,000 new container objects, a full one at most every 200 young ones.
COLLECTOR_THRESHOLDS = (50_000, 20, 10)


def widen_collector_thresholds() -> tuple[int, int, int]:
    """Set `COLLECTOR_THRESHOLDS`; returns the thresholds now in force."""
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    return gc.get_threshold()


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
        store = await wiring.open_store_when_up(db_url, stop)
    except BaseException:
        if starting is not None:
            await starting.cleanup()
        raise
    if store is None:
        if starting is not None:
            await starting.cleanup()
        return
    phase["now"] = "connecting to Kafka"
    parts = wiring.daemon_parts(config, store, metrics)
    runner: web.AppRunner | None = None
    background: list[asyncio.Task[None]] = []
    try:
        await parts.decisions.start()
        await parts.dead_letter_producer.start()
        await parts.source.start()
        await parts.writer.start()
        parts.mirror.subscribe()
        if starting is not None:
            await starting.cleanup()
            starting = None
        if options.http:
            state = wiring.api_state(
                config, settings, store, metrics, readiness=parts.readiness(), tokens=options.tokens,
                publish_decision=parts.publish_decision,
            )
            runner = await start_http(create_app(state, open_reads=options.open_reads), options.http)
            log.info("http_listening", listen=options.http, open_reads=options.open_reads,
                     token_names=state.tokens.names())
        if options.promoter and wiring.wants_promoter(config):
            promoter = wiring.promoter_loop(store, config, interval_s=options.promoter_interval_s,
                                            metrics=metrics, publish=parts.publish_decision)
            background.append(asyncio.create_task(promoter.run(stop), name="shadowd-promoter"))
        background.append(asyncio.create_task(sample_consumer_lag(parts.source, metrics, stop), name="shadowd-lag"))
        log.info("started", topic=config.kafka.topic, group_id=config.kafka.group_id,
                 max_in_flight=parts.records_in_flight, rollouts=[r.name for r in config.rollouts])
        await parts.mirror.run(stop, options.drain_timeout_s)
        log.info("stopped", records=parts.mirror.records_done)
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
            await parts.source.stop()
        await parts.writer.close()
        with contextlib.suppress(Exception):
            await parts.decisions.stop()
        with contextlib.suppress(Exception):
            await parts.dead_letter_producer.stop()
        if parts.batches is not None:
            await parts.batches.close()
        await parts.models.close()
        await store.close()


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if stop.is_set():
        log.warning("second_signal_ignored_draining", signal=sig.name)
        return
    log.info("shutdown_requested", signal=sig.name)
    stop.set()


__all__ = [
    "COLLECTOR_THRESHOLDS",
    "DaemonOptions",
    "async_run",
    "freeze_startup_heap",
    "run_daemon",
    "widen_collector_thresholds",
]
