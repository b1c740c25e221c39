"""Fixtures that hand integration tests a real Kafka broker and a real PostgreSQL server.

`bash scripts/test.sh` starts both (scripts/services.sh) and exports their addresses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, NoReturn

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy.engine import make_url

KAFKA_ENV = "SHADOWD_TEST_KAFKA"
DATABASE_ENV = "SHADOWD_TEST_DATABASE_URL"
REQUIRE_ENV = "SHADOWD_REQUIRE_SERVICES"
REACH_TIMEOUT_S = 15.0

FreshTopic = Callable[..., Awaitable[str]]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration so `-m "not integration"` leaves them out."""
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here + os.sep):
            item.add_marker(pytest.mark.integration)


def _unavailable(reason: str) -> NoReturn:
    """Fail when CI demands the services (SHADOWD_REQUIRE_SERVICES=1), skip otherwise."""
    message = f"{reason}; run the tests with `bash scripts/test.sh`, which starts Kafka and PostgreSQL"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{message} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(message)


def _required_env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        _unavailable(f"{name} is not set")
    return value


def _run_isolated(make_coro: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    # A private thread and loop, so session setup never touches the loop pytest-asyncio gives tests.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, make_coro()).result()


def _asyncpg_dsn(sqlalchemy_url: str, database: str | None = None) -> str:
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


async def _kafka_metadata(bootstrap: str) -> None:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(client.bootstrap(), REACH_TIMEOUT_S)
        metadata = await asyncio.wait_for(client.fetch_all_metadata(), REACH_TIMEOUT_S)
        if not metadata.brokers():
            raise RuntimeError("metadata lists no broker")
    finally:
        await client.close()


async def _postgres_select_one(dsn: str) -> None:
    connection = await asyncpg.connect(dsn, timeout=REACH_TIMEOUT_S)
    try:
        await connection.fetchval("select 1")
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The bootstrap address of a reachable Kafka broker, from SHADOWD_TEST_KAFKA."""
    bootstrap = _required_env(KAFKA_ENV)
    try:
        _run_isolated(lambda: _kafka_metadata(bootstrap))
    except Exception as exc:  # any failure means "not reachable"
        _unavailable(f"Kafka at {KAFKA_ENV}={bootstrap} is not reachable: {exc!r}")
    return bootstrap


@pytest.fixture(scope="session")
def database_url() -> str:
    """The SQLAlchemy async URL of a reachable PostgreSQL database, from SHADOWD_TEST_DATABASE_URL."""
    url = _required_env(DATABASE_ENV)
    try:
        if make_url(url).get_backend_name() != "postgresql":
            _unavailable(f"{DATABASE_ENV} must be a postgresql URL, got {url!r}")
        _run_isolated(lambda: _postgres_select_one(_asyncpg_dsn(url)))
    except Exception as exc:  # any failure means "not reachable"; skip/fail are BaseExceptions
        _unavailable(f"PostgreSQL at {DATABASE_ENV} is not reachable: {exc!r}")
    return url


class PostgresControl:
    """Stops and starts the test PostgreSQL server, so tests can live through a database outage."""

    def __init__(self, bin_dir: str, data_dir: str, port: int, os_user: str, log_file: str) -> None:
        self.bin_dir = bin_dir
        self.data_dir = data_dir
        self.port = port
        self.os_user = os_user
        self.log_file = log_file

    def _pg_ctl(self, *args: str, check: bool = True) -> int:
        command = [os.path.join(self.bin_dir, "pg_ctl"), *args]
        # pg_ctl refuses to run as root; services.sh started the server as this OS user.
        if os.geteuid() == 0 and self.os_user not in ("", "root"):
            command = ["runuser", "-u", self.os_user, "--", *command]
        done = subprocess.run(
            command,
            check=check,
            stdout=subprocess.DEVNULL,
            stderr=None if check else subprocess.DEVNULL,
            timeout=120,
        )
        return done.returncode

    def is_running(self) -> bool:
        """True when the server's postmaster is up."""
        return self._pg_ctl("status", "-D", self.data_dir, check=False) == 0

    def stop(self, mode: str = "fast") -> None:
        """Stop the server and wait until it is down; `mode="immediate"` is a crash, not a shutdown."""
        if self.is_running():
            self._pg_ctl("stop", "-D", self.data_dir, "-m", mode, "-w", "-t", "60")

    def start(self) -> None:
        """Start the server again and wait until it accepts connections."""
        if not self.is_running():
            self._pg_ctl("start", "-D", self.data_dir, "-l", self.log_file, "-w", "-t", "60")
        deadline = time.monotonic() + 60
        isready = os.path.join(self.bin_dir, "pg_isready")
        while subprocess.run(
            [isready, "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False
        ).returncode:
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL on port {self.port} did not come back within 60 s")
            time.sleep(0.2)


@pytest.fixture(scope="session")
def pg_control(database_url: str) -> Iterator[PostgresControl]:
    """A handle that stops and restarts the test PostgreSQL server; it is running again after the session."""
    control = PostgresControl(
        bin_dir=_required_env("SHADOWD_TEST_PG_BIN"),
        data_dir=_required_env("SHADOWD_TEST_PG_DATA"),
        port=int(_required_env("SHADOWD_TEST_PG_PORT")),
        os_user=os.environ.get("SHADOWD_TEST_PG_OS_USER", ""),
        log_file=os.environ.get("SHADOWD_TEST_PG_LOG")
        or os.path.join(os.path.dirname(_required_env("SHADOWD_TEST_PG_DATA")), "server.log"),
    )
    yield control
    control.start()


@pytest_asyncio.fixture
async def fresh_database_url(database_url: str) -> AsyncIterator[str]:
    """The URL of a new, empty database on the test server, dropped after the test."""
    name = f"shadowd_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(_asyncpg_dsn(database_url), timeout=REACH_TIMEOUT_S)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    # A test may have stopped the server or left connections open; FORCE ends them.
    try:
        admin = await asyncpg.connect(_asyncpg_dsn(database_url), timeout=REACH_TIMEOUT_S)
    except (OSError, asyncpg.PostgresError):
        return
    try:
        await _drop_database(admin, name)
    finally:
        await admin.close()


async def _drop_database(admin: asyncpg.Connection, name: str, timeout_s: float = 30.0) -> None:
    """DROP DATABASE ... WITH (FORCE), waiting out a backend the role may not end: an autovacuum worker
    on a busy test database, on a server whose test role is not in pg_signal_backend."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except asyncpg.InsufficientPrivilegeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _wait_for_leaders(admin: AIOKafkaAdminClient, topic: str, partitions: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        described = await admin.describe_topics([topic])
        found = [p for d in described if d["error_code"] == 0 for p in d["partitions"]]
        if len(found) == partitions and all(p["leader"] >= 0 for p in found):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no leader for all {partitions} partitions after 30 s")
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture
async def fresh_topic(kafka_bootstrap: str) -> AsyncIterator[FreshTopic]:
    """A factory of uniquely named topics (`await fresh_topic(partitions=3)`), deleted afterwards."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=30000)
    await admin.start()
    created: list[str] = []

    async def create(partitions: int = 1, prefix: str = "shadowd-test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        response = await admin.create_topics([NewTopic(name, partitions, 1)])
        errors = [(topic, code, message) for topic, code, message in response.topic_errors if code != 0]
        if errors:
            raise RuntimeError(f"creating topic {name} failed: {errors}")
        created.append(name)
        await _wait_for_leaders(admin, name, partitions)
        return name

    try:
        yield create
    finally:
        if created:
            try:
                await admin.delete_topics(created)
            except Exception:  # cleanup must not mask the test's own result
                pass
        await admin.close()
