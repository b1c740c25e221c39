"""`shadowd run` is alive from its first second, and ready only once it can answer the API (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_harness import DaemonProcess, clean_behaviours, wait_until
from tests.helpers import fake_model_process, write_config


def _get(url: str) -> tuple[int, dict[str, Any] | str]:
    """(status, JSON body or text); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            status, body = int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = int(exc.code), exc.read().decode()
    except OSError:
        return 0, ""
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


@pytest.fixture
def fake_model(tmp_path: Path) -> Iterator[str]:
    with ExitStack() as stack:
        yield stack.enter_context(fake_model_process(clean_behaviours(tmp_path, 5)))


async def test_healthz_answers_while_the_database_is_down_and_readiness_waits_for_it(
    tmp_path: Path, fake_model: str, kafka_bootstrap: str, fresh_topic: Any, fresh_database_url: str,
    pg_control: Any,
) -> None:
    """With PostgreSQL down at start, /healthz is 200 within seconds (no liveness restart), /readyz and the API
    answer 503 naming the wait; once PostgreSQL is back the daemon becomes ready, reports Kafka reachable in
    its metrics, and stops cleanly."""
    topic = await fresh_topic()
    kafka = {"bootstrap_servers": kafka_bootstrap, "topic": topic, "group_id": f"shadowd-test-{uuid.uuid4().hex[:12]}",
             "dlq_topic": f"{topic}.dlq", "decisions_topic": f"{topic}.decisions"}
    config = write_config(tmp_path, fake_model, extra="kafka: " + json.dumps(kafka))
    await asyncio.to_thread(pg_control.stop)
    daemon = DaemonProcess(config, fresh_database_url, tmp_path / "daemon.log")
    try:
        started = time.monotonic()
        daemon.start()

        async def alive() -> bool:
            return (await asyncio.to_thread(_get, f"{daemon.http_url}/healthz"))[0] == 200

        alive_after = await wait_until(alive, 30, "/healthz while PostgreSQL is down", interval_s=0.1)
        ready_status, ready_body = await asyncio.to_thread(_get, f"{daemon.http_url}/readyz")
        api_status, api_body = await asyncio.to_thread(_get, f"{daemon.http_url}/v1/rollouts")
        assert ready_status == 503 and isinstance(ready_body, dict)
        assert "waiting for the database" in ready_body["checks"]["startup"]
        assert api_status == 503 and isinstance(api_body, dict) and "starting" in api_body["error"]
        assert daemon.running
        await asyncio.to_thread(pg_control.start)
        await daemon.wait_ready(timeout_s=120)
        ready_status, ready_body = await asyncio.to_thread(_get, f"{daemon.http_url}/readyz")
        assert ready_status == 200 and isinstance(ready_body, dict) and set(ready_body["checks"]) == {"database", "writer"}

        async def kafka_reported() -> bool:
            _status, text = await asyncio.to_thread(_get, f"{daemon.http_url}/metrics")
            return isinstance(text, str) and "\nshadowd_kafka_reachable 1.0" in text

        await wait_until(kafka_reported, 60, "shadowd_kafka_reachable 1 on /metrics")
        daemon.sigterm()
        assert await daemon.wait(90) == 0, daemon.log_tail()
    finally:
        daemon.stop_now()
        await asyncio.to_thread(pg_control.start)
    print(f"\n[startup health] /healthz answered {alive_after:.1f} s after the process started "
          f"({time.monotonic() - started:.1f} s in all)")
