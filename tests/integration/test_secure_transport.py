"""Kafka SASL/PLAIN and TLS, PostgreSQL TLS from `sslmode=` URLs: on the real services' secured listeners."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import certifi
import pytest
import pytest_asyncio
from aiokafka.errors import KafkaError
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shadowd.adapters.kafka import make_consumer
from shadowd.adapters.sql_store import create_engine
from shadowd.config import KafkaConfig
from shadowd.demo.traffic import generate_envelopes
from tests.daemon_harness import (
    DaemonProcess,
    Verdicts,
    asyncpg_dsn,
    clean_behaviours,
    committed_equals_end,
    envelope_records,
    produce,
    wait_until,
)
from tests.helpers import fake_model_process, run_cli, write_config

SASL_ENV = "SHADOWD_TEST_KAFKA_SASL"
SSL_ENV = "SHADOWD_TEST_KAFKA_SSL"


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        message = f"{name} is not set; run the tests with `bash scripts/test.sh` (scripts/services.sh exports it)"
        if os.environ.get("SHADOWD_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return value


@pytest.fixture
def fake_model(tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Starts a clean `shadowd fake-model` process for the test."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(fake_model_process(clean_behaviours(tmp_path, 5)))


@pytest_asyncio.fixture
async def tls_database_url(database_url: str, fresh_database_url: str) -> AsyncIterator[str]:
    """A fresh database owned by a new role with a random password, as a `sslmode=verify-full` URL."""
    role = f"shadowd_tls_{uuid.uuid4().hex[:10]}"
    password = secrets.token_hex(12)
    admin = await asyncpg.connect(asyncpg_dsn(fresh_database_url), timeout=15)
    database = make_url(fresh_database_url).database
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        await admin.execute(f"GRANT {role} TO CURRENT_USER")  # PostgreSQL 15: needed to hand it the database
        # The new owner also owns the public schema (pg_database_owner).
        await admin.execute(f'ALTER DATABASE "{database}" OWNER TO {role}')
    finally:
        await admin.close()
    ca = quote(_env("SHADOWD_TEST_TLS_CA"), safe="/")
    url = make_url(fresh_database_url).set(username=role, password=password)
    yield url.render_as_string(hide_password=False) + f"?sslmode=verify-full&sslrootcert={ca}"
    admin = await asyncpg.connect(asyncpg_dsn(database_url), timeout=15)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
    finally:
        await admin.close()


async def _encrypted_sessions(admin_url: str, database: str) -> tuple[int, int]:
    """(TLS sessions, plain sessions) of other clients connected to `database` right now."""
    connection = await asyncpg.connect(asyncpg_dsn(admin_url), timeout=15)
    try:
        rows = await connection.fetch(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
            " WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
            database,
        )
    finally:
        await connection.close()
    return sum(1 for r in rows if r["ssl"]), sum(1 for r in rows if not r["ssl"])


def _kafka_yaml(bootstrap: str, topic: str, group: str, client: dict[str, Any]) -> str:
    kafka = {
        "bootstrap_servers": bootstrap, "topic": topic, "group_id": group,
        "dlq_topic": f"{topic}.dlq", "decisions_topic": f"{topic}.decisions", "client": client,
    }
    return "kafka: " + json.dumps(kafka)


async def _run_through(
    tmp_path: Path, base_url: str, kafka_bootstrap: str, topic: str, listener: str, client: dict[str, Any],
    db_url: str, admin_url: str, env: dict[str, str],
) -> list[dict[str, Any]]:
    """`shadowd run` consuming 20 envelopes through `listener`; returns its log events once all are verdicted."""
    count, group = 20, f"shadowd-test-{uuid.uuid4().hex[:12]}"
    config = write_config(tmp_path, base_url, extra=_kafka_yaml(listener, topic, group, client),
                          rollouts="\n  - name: opus-4-7\n    baseline: claude-opus-4-6\n"
                                   "    candidate: claude-opus-4-7\n    gate: {min_samples: 50}\n")
    await produce(kafka_bootstrap, topic, envelope_records(generate_envelopes(count, seed=41)))
    old_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # DaemonProcess passes the test's environment on
    daemon = DaemonProcess(config, db_url, tmp_path / "daemon.log")
    try:
        daemon.start()
    finally:
        for key, value in old_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        await daemon.wait_ready(timeout_s=120)
        store = Verdicts(admin_url)
        await wait_until(lambda: _count_at_least(store, count), 180, f"{count} verdicts")
        await wait_until(lambda: committed_equals_end(kafka_bootstrap, group, topic), 60, "committed offsets at end")
        tls, plain = await _encrypted_sessions(admin_url, make_url(admin_url).database or "")
        assert tls >= 1 and plain == 0, f"daemon sessions: {tls} over TLS, {plain} in the clear"
        daemon.sigterm()
        assert await daemon.wait(90) == 0, daemon.log_tail()
        return daemon.log_events()
    finally:
        daemon.stop_now()


async def _count_at_least(store: Verdicts, expected: int) -> bool:
    return await store.count() >= expected


async def test_run_consumes_through_sasl_plain_and_stores_over_verified_tls(
    tmp_path: Path, fake_model: Callable[[], str], kafka_bootstrap: str, fresh_topic: Any,
    fresh_database_url: str, tls_database_url: str,
) -> None:
    """`shadowd run` on the SASL_PLAINTEXT listener with the password from `_env` verdicts every record into
    PostgreSQL over verify-full TLS, and neither password appears in its logs."""
    topic = await fresh_topic()
    password = _env("SHADOWD_TEST_KAFKA_SASL_PASSWORD")
    client = {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
        "sasl_plain_username": _env("SHADOWD_TEST_KAFKA_SASL_USERNAME"),
        "sasl_plain_password_env": "TEST_SHADOWD_KAFKA_PASSWORD",
    }
    log_text_before = (tmp_path / "daemon.log")
    await _run_through(
        tmp_path, fake_model(), kafka_bootstrap, topic, _env(SASL_ENV), client, tls_database_url,
        _admin_view(fresh_database_url, tls_database_url), {"TEST_SHADOWD_KAFKA_PASSWORD": password},
    )
    logs = log_text_before.read_text()
    db_password = make_url(tls_database_url.split("?", 1)[0]).password
    assert password not in logs and db_password and db_password not in logs


async def test_run_consumes_through_the_tls_listener_with_an_encrypted_client_key(
    tmp_path: Path, fake_model: Callable[[], str], kafka_bootstrap: str, fresh_topic: Any,
    fresh_database_url: str, tls_database_url: str,
) -> None:
    """`shadowd run` on the SSL listener (client certificate required) with `ssl_password_env` under `consumer:`
    and `producer:` verdicts every record, and the key's password appears in no log line."""
    topic = await fresh_topic()
    key_password = _env("SHADOWD_TEST_TLS_CLIENT_KEY_PASSWORD")
    role = {"ssl_password_env": "TEST_SHADOWD_KAFKA_KEY_PASSWORD"}
    client = {
        "security_protocol": "SSL", "ssl_cafile": _env("SHADOWD_TEST_TLS_CA"),
        "ssl_certfile": _env("SHADOWD_TEST_TLS_CLIENT_CERT"), "ssl_keyfile": _env("SHADOWD_TEST_TLS_CLIENT_KEY"),
        "consumer": role, "producer": role,
    }
    await _run_through(
        tmp_path, fake_model(), kafka_bootstrap, topic, _env(SSL_ENV), client, tls_database_url,
        _admin_view(fresh_database_url, tls_database_url), {"TEST_SHADOWD_KAFKA_KEY_PASSWORD": key_password},
    )
    assert key_password not in (tmp_path / "daemon.log").read_text()


def _admin_view(admin_url: str, tls_url: str) -> str:
    """The admin's URL for the TLS test database (the tests read verdicts as the admin, in the clear)."""
    return make_url(admin_url).set(database=make_url(tls_url.split("?", 1)[0]).database).render_as_string(
        hide_password=False
    )


async def _consume_one(kafka: KafkaConfig, topic: str) -> bytes:
    consumer = make_consumer(kafka, max_records=10)
    await asyncio.wait_for(consumer.start(), 30)
    try:
        consumer.subscribe([topic])
        while True:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 60)
            for records in batch.values():
                if records and records[0].value is not None:
                    return bytes(records[0].value)
    finally:
        await consumer.stop()


async def test_consumer_adapter_reads_through_sasl_and_refuses_a_wrong_password(
    kafka_bootstrap: str, fresh_topic: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer adapter authenticates with SASL/PLAIN from `_env`; the wrong password fails to connect."""
    topic = await fresh_topic()
    await produce(kafka_bootstrap, topic, [(None, b"over-sasl")])
    monkeypatch.setenv("TEST_SHADOWD_KAFKA_PASSWORD", _env("SHADOWD_TEST_KAFKA_SASL_PASSWORD"))
    client = {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
        "sasl_plain_username": _env("SHADOWD_TEST_KAFKA_SASL_USERNAME"),
        "sasl_plain_password_env": "TEST_SHADOWD_KAFKA_PASSWORD",
    }
    kafka = KafkaConfig(bootstrap_servers=_env(SASL_ENV), topic=topic, group_id=f"g-{uuid.uuid4().hex}", client=client)
    assert await _consume_one(kafka, topic) == b"over-sasl"
    monkeypatch.setenv("TEST_SHADOWD_KAFKA_PASSWORD", "not-the-password")
    consumer = make_consumer(kafka, max_records=10)
    with pytest.raises(KafkaError):
        await asyncio.wait_for(consumer.start(), 60)
    await consumer.stop()


async def test_consumer_adapter_reads_through_tls_and_needs_the_client_certificate(
    kafka_bootstrap: str, fresh_topic: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer adapter reads over TLS with the CA and an encrypted client key; without the client
    certificate, or trusting another CA, the broker cannot be used."""
    topic = await fresh_topic()
    await produce(kafka_bootstrap, topic, [(None, b"over-tls")])
    monkeypatch.setenv("TEST_SHADOWD_KAFKA_KEY_PASSWORD", _env("SHADOWD_TEST_TLS_CLIENT_KEY_PASSWORD"))
    client: dict[str, Any] = {
        "security_protocol": "SSL", "ssl_cafile": _env("SHADOWD_TEST_TLS_CA"),
        "consumer": {"ssl_certfile": _env("SHADOWD_TEST_TLS_CLIENT_CERT"),
                     "ssl_keyfile": _env("SHADOWD_TEST_TLS_CLIENT_KEY"),
                     "ssl_password_env": "TEST_SHADOWD_KAFKA_KEY_PASSWORD"},
    }
    kafka = KafkaConfig(bootstrap_servers=_env(SSL_ENV), topic=topic, group_id=f"g-{uuid.uuid4().hex}", client=client)
    assert await _consume_one(kafka, topic) == b"over-tls"
    for near_miss in (
        {"security_protocol": "SSL", "ssl_cafile": _env("SHADOWD_TEST_TLS_CA")},  # no client certificate
        {**client, "ssl_cafile": certifi.where()},  # the broker's CA is not trusted
    ):
        bad = KafkaConfig(bootstrap_servers=_env(SSL_ENV), topic=topic, group_id=f"g-{uuid.uuid4().hex}",
                          client=near_miss, )
        consumer = make_consumer(bad, max_records=10)
        with pytest.raises((KafkaError, OSError, TimeoutError)):
            await asyncio.wait_for(consumer.start(), 30)
        await consumer.stop()


@pytest.mark.parametrize(
    ("query", "encrypted"),
    [
        ("sslmode=require", True),
        ("sslmode=verify-ca&sslrootcert={ca}", True),
        ("sslmode=verify-full&sslrootcert={ca}", True),
        ("sslmode=disable", False),
    ],
)
async def test_sslmode_urls_connect_as_libpq_would(database_url: str, query: str, encrypted: bool) -> None:
    """`sslmode=` URLs connect to the TLS-enabled PostgreSQL with the session encrypted (or not, for disable)."""
    ca = quote(_env("SHADOWD_TEST_TLS_CA"), safe="/")
    engine = create_engine(f"{database_url}?{query.format(ca=ca)}")
    try:
        async with engine.connect() as connection:
            got = (await connection.execute(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            )).scalar_one()
    finally:
        await engine.dispose()
    assert got is encrypted


async def test_verify_full_refuses_a_server_its_ca_did_not_sign(database_url: str) -> None:
    """Near miss: verify-full with another CA's bundle refuses the test server's certificate."""
    engine = create_engine(f"{database_url}?sslmode=verify-full&sslrootcert={certifi.where()}")
    try:
        with pytest.raises(Exception, match="(?i)certificate"):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


def test_db_upgrade_and_demo_print_no_password(tls_database_url: str) -> None:
    """`db upgrade` over a verify-full URL and `demo --db` with a password print neither the password nor a
    traceback."""
    password = make_url(tls_database_url.split("?", 1)[0]).password
    assert password
    upgrade = run_cli("db", "upgrade", "--db", tls_database_url)
    assert upgrade.returncode == 0, upgrade.stderr[-2000:]
    demo = run_cli("demo", "--count", "20", "--db", tls_database_url)
    assert demo.returncode == 0, demo.stderr[-2000:]
    output = upgrade.stdout + upgrade.stderr + demo.stdout + demo.stderr
    assert password not in output
    assert ":***@" in demo.stdout and "Traceback" not in output
