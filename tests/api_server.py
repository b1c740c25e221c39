"""The HTTP API alone, over a seeded SQLite database, for tests that probe it from another process.

    python -m tests.api_server DIR [--db URL] [--open-reads]

Seeds the database at URL (default: DIR/db.sqlite) when it has no verdicts yet, serves on a free loopback port with the admin token from SHADOWD_ADMIN_TOKEN and
the read token from SHADOWD_READ_TOKEN, prints `listening <port>` on stdout and serves until killed.
Logs go to stderr through shadowd's own logging set-up.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from aiohttp import web

from shadowd.adapters.sql_store import open_store
from shadowd.config import load_config
from shadowd.http import ApiState, create_app, runner_options
from shadowd.logging import configure_logging, register_secrets
from shadowd.metrics import Metrics
from tests.unit.test_api import CONFIG, _verdict


async def serve(folder: Path, db_url: str | None, open_reads: bool) -> None:
    store = await open_store(db_url or "sqlite:///" + str(folder / "db.sqlite"), upgrade=True)
    if not await store.rollout_names():
        records = [_verdict("regressed", i, regression=i < 24) for i in range(40)]
        records += [_verdict("clean", i, regression=False) for i in range(40)]
        await store.save(records, [])
    config_path = folder / "shadowd.yaml"
    config_path.write_text(CONFIG, encoding="utf-8")
    admin, read = os.environ.get("SHADOWD_ADMIN_TOKEN"), os.environ.get("SHADOWD_READ_TOKEN")
    register_secrets([admin, read])
    state = ApiState(
        config=load_config(config_path), store=store, metrics=Metrics(), admin_token=admin, read_token=read,
        readiness={"database": store.ping},
    )
    runner = web.AppRunner(create_app(state, open_reads=open_reads), **runner_options())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"listening {port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await store.close()


def main() -> None:
    configure_logging("info", "json")
    options = sys.argv[2:]
    db_url = options[options.index("--db") + 1] if "--db" in options else None
    asyncio.run(serve(Path(sys.argv[1]), db_url, "--open-reads" in options))


if __name__ == "__main__":
    main()
