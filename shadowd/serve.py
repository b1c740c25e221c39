"""`shadowd serve`: the HTTP API (and optionally the promoter) over a database, without Kafka (SPEC §10)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog

from shadowd import wiring
from shadowd.auth import TokenRegistry
from shadowd.config import Config, Settings
from shadowd.http import create_app, start_http
from shadowd.metrics import Metrics

log = structlog.get_logger("shadowd.serve")


async def async_serve(
    config: Config,
    settings: Settings,
    db_url: str,
    listen: str,
    *,
    promoter: bool = False,
    promoter_interval_s: float = 30.0,
    open_reads: bool | None = None,
    tokens: TokenRegistry | None = None,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve until `stop` is set (or SIGTERM/SIGINT); the database is never created or migrated here.

    Reads are open without a token on a loopback address (or with `open_reads`), as for the demo.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    metrics = Metrics()
    store = await wiring.open_serve_store(db_url)
    background: list[asyncio.Task[None]] = []
    runner = None
    try:
        state = wiring.api_state(config, settings, store, metrics, readiness={"database": store.ping}, tokens=tokens)
        reads_open = is_loopback(listen) if open_reads is None else open_reads
        runner = await start_http(create_app(state, open_reads=reads_open), listen)
        log.info("http_listening", listen=listen, promoter=promoter, kafka=False, open_reads=reads_open)
        if promoter and wiring.wants_promoter(config):
            loop_ = wiring.promoter_loop(store, config, interval_s=promoter_interval_s, metrics=metrics)
            background.append(asyncio.create_task(loop_.run(stop), name="shadowd-promoter"))
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        stop.set()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        if runner is not None:
            await runner.cleanup()
        await store.close()


def is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0].strip("[]")
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def run_serve(config: Config, settings: Settings, db_url: str, listen: str, *, promoter: bool,
              promoter_interval_s: float, open_reads: bool | None = None, tokens: TokenRegistry | None = None) -> int:
    """0 after SIGTERM/SIGINT; 2 for a bad --http; 3 when the address or the database is unusable at start."""
    try:
        asyncio.run(async_serve(config, settings, db_url, listen, promoter=promoter,
                                promoter_interval_s=promoter_interval_s, open_reads=open_reads, tokens=tokens))
    except ValueError as exc:
        log.error("fatal", error=str(exc))
        return 2
    except OSError as exc:
        log.error("fatal", error=f"{type(exc).__name__}: {exc}"[:300])
        return 3
    return 0
