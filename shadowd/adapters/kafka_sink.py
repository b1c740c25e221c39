"""The mirror's Kafka sink: an aiokafka producer for envelopes published from a production process."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaProducer


class KafkaSink:
    """The real sink: an aiokafka producer (acks=1, a short linger, a 10 s request timeout)."""

    def __init__(self, bootstrap_servers: str, topic: str, options: Mapping[str, Any] | None = None) -> None:
        self.topic = topic
        self._producer = AIOKafkaProducer(**{
            "bootstrap_servers": bootstrap_servers,
            "acks": 1,
            "linger_ms": 10,
            "request_timeout_ms": 10_000,
            "retry_backoff_ms": 200,
            "max_request_size": 4 * 1024 * 1024 + 65536,
            **(options or {}),
        })

    async def start(self) -> None:
        await self._producer.start()

    async def send(self, key: bytes, value: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self._producer.send(self.topic, value, key=key)
        return future

    async def stop(self) -> None:
        await self._producer.stop()


__all__ = ["KafkaSink"]
