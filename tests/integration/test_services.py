"""Smoke tests that the integration services are the real Apache Kafka and PostgreSQL 15."""

from __future__ import annotations

import asyncio

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.engine import make_url

from tests.integration.conftest import FreshTopic, PostgresControl

RECORDS = 10


async def test_kafka_round_trips_records_across_partitions(
    kafka_bootstrap: str, fresh_topic: FreshTopic
) -> None:
    """Ten records produced to a fresh 3-partition topic all come back to a consumer, each exactly once."""
    topic = await fresh_topic(partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(RECORDS):
            await producer.send_and_wait(topic, f"value-{i}".encode(), key=f"key-{i}".encode())
        partitions = await producer.partitions_for(topic)
    finally:
        await producer.stop()
    assert partitions == {0, 1, 2}

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=f"{topic}-smoke", auto_offset_reset="earliest"
    )
    await consumer.start()
    received: list[tuple[int, bytes]] = []
    try:
        async with asyncio.timeout(60):
            while len(received) < RECORDS:
                batches = await consumer.getmany(timeout_ms=1000)
                received += [(r.partition, r.value) for records in batches.values() for r in records]
    finally:
        await consumer.stop()

    assert sorted(value for _, value in received) == sorted(f"value-{i}".encode() for i in range(RECORDS))
    assert len({partition for partition, _ in received}) > 1, "keys should spread over the partitions"


async def test_postgres_is_version_15(database_url: str) -> None:
    """The test database answers `select version()` as PostgreSQL 15."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        version = await connection.fetchval("select version()")
    finally:
        await connection.close()
    assert version.startswith("PostgreSQL 15"), version


async def test_fresh_database_is_empty_and_writable(fresh_database_url: str, database_url: str) -> None:
    """A fresh database is a distinct, empty database that the test role can create tables in."""
    assert make_url(fresh_database_url).database != make_url(database_url).database
    dsn = make_url(fresh_database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        tables = await connection.fetchval("select count(*) from pg_tables where schemaname = 'public'")
        await connection.execute("create table probe (id int primary key)")
    finally:
        await connection.close()
    assert tables == 0


async def test_postgres_outage_and_recovery(pg_control: PostgresControl, database_url: str) -> None:
    """Stopping the server through pg_control refuses connections, and starting it again serves them."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    pg_control.stop()
    try:
        assert not pg_control.is_running()
        refused = False
        try:
            connection = await asyncpg.connect(dsn, timeout=5)
            await connection.close()
        except (OSError, asyncpg.PostgresError):
            refused = True
        assert refused
    finally:
        pg_control.start()
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        assert await connection.fetchval("select 1") == 1
    finally:
        await connection.close()
