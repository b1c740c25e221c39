"""Readiness means "can answer the API": a Kafka broker that stops answering shows in the metrics and the
log, while /readyz stays 200 so that the pods never leave the Service (real Kafka and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
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


def _get(url: str) -> tuple[int, str]:
    """(status, text); status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except OSError:
        return 0, ""


@pytest.fixture
def fake_model(tmp_path: Path) -> Iterator[str]:
    with ExitStack() as stack:
        yield stack.enter_context(fake_model_process(clean_behaviours(tmp_path, 5)))


@pytest.fixture
def kafka_pid() -> int:
    """The pid of the test Kafka broker (scripts/services.sh), which belongs to this checkout's test run."""
    raw = os.environ.get("SHADOWD_TEST_KAFKA_PID", "")
    if not raw.isdigit():
        pytest.skip("SHADOWD_TEST_KAFKA_PID is not set (start the broker with scripts/services.sh)")
    return int(raw)


async def test_readiness_stays_200_while_kafka_does_not_answer(
    tmp_path: Path, fake_model: str, kafka_bootstrap: str, fresh_topic: Any, fresh_database_url: str,
    kafka_pid: int,
) -> None:
    """With the broker frozen (SIGSTOP: connections open, no answers), /readyz and /healthz stay 200 on every
    poll until shadowd_kafka_reachable drops to 0 and a kafka_unreachable line is logged; after SIGCONT the
    gauge returns to 1 and the daemon stops cleanly."""
    topic = await fresh_topic()
    kafka = {"bootstrap_servers": kafka_bootstrap, "topic": topic, "group_id": f"shadowd-test-{uuid.uuid4().hex[:12]}",
             "dlq_topic": f"{topic}.dlq", "decisions_topic": f"{topic}.decisions"}
    config = write_config(tmp_path, fake_model, extra="kafka: " + json.dumps(kafka))
    daemon = DaemonProcess(config, fresh_database_url, tmp_path / "daemon.log")
    frozen = False
    try:
        daemon.start()
        await daemon.wait_ready(timeout_s=120)

        async def reachable(value: str) -> bool:
            _status, text = await asyncio.to_thread(_get, f"{daemon.http_url}/metrics")
            return f"\nshadowd_kafka_reachable {value}" in text

        await wait_until(lambda: reachable("1.0"), 60, "shadowd_kafka_reachable 1 before the freeze")
        os.kill(kafka_pid, signal.SIGSTOP)
        frozen = True
        frozen_at = time.monotonic()
        polls: list[tuple[float, int, int]] = []
        deadline = frozen_at + 180  # the lag sampler runs every 15 s and waits for its request timeout
        while time.monotonic() < deadline:
            ready_status, ready_text = await asyncio.to_thread(_get, f"{daemon.http_url}/readyz")
            health_status, _ = await asyncio.to_thread(_get, f"{daemon.http_url}/healthz")
            polls.append((time.monotonic() - frozen_at, ready_status, health_status))
            assert ready_status == 200 and health_status == 200, (polls[-1], ready_text)
            assert set(json.loads(ready_text)["checks"]) == {"database", "writer"}
            if await reachable("0.0"):
                break
            await asyncio.sleep(1)
        else:
            pytest.fail(f"shadowd_kafka_reachable never dropped to 0 within 180 s: {daemon.log_tail()}")
        unreachable_after = time.monotonic() - frozen_at
        assert any(e.get("event") == "kafka_unreachable" for e in daemon.log_events())
        os.kill(kafka_pid, signal.SIGCONT)
        frozen = False
        await wait_until(lambda: reachable("1.0"), 180, "shadowd_kafka_reachable 1 after the broker answers again")
        assert (await asyncio.to_thread(_get, f"{daemon.http_url}/readyz"))[0] == 200
        daemon.sigterm()
        assert await daemon.wait(120) == 0, daemon.log_tail()
    finally:
        if frozen:
            os.kill(kafka_pid, signal.SIGCONT)
        daemon.stop_now()
    print(f"\n[readiness and Kafka] {len(polls)} polls over {unreachable_after:.0f} s with the broker frozen: "
          f"/readyz and /healthz 200 on each; shadowd_kafka_reachable 0 after {unreachable_after:.0f} s")
