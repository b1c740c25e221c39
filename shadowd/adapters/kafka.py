"""The Kafka ports over aiokafka: consumer and producer built from `kafka:` config (client options pass
through, secrets from the environment), and the record source and publisher the consumer uses."""

from __future__ import annotations

import inspect
import os
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError, MessageSizeTooLargeError, RecordTooLargeError
from aiokafka.helpers import create_ssl_context

from shadowd.config import KafkaConfig
from shadowd.core.envelope import MAX_ENVELOPE_BYTES
from shadowd.credentials import is_secret_key
from shadowd.logging import register_secrets
from shadowd.ports_kafka import (
    CommitFailed,
    KafkaUnavailable,
    OnAssigned,
    OnRevoked,
    RecordTooLarge,
    SourceMessage,
    TopicPartition,
)

# Room for the record's key, headers and batch framing on top of an envelope-sized value.
_RECORD_OVERHEAD_BYTES = 64 * 1024

# Options both clients understand; everything else goes under `client.consumer` / `client.producer`.
_SHARED = frozenset({
    "client_id", "security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
    "sasl_kerberos_service_name", "sasl_kerberos_domain_name", "request_timeout_ms", "retry_backoff_ms",
    "metadata_max_age_ms", "connections_max_idle_ms", "api_version",
})
# TLS options, at either level: shadowd turns them into the one `ssl_context` aiokafka takes.
_TLS = frozenset({"ssl_cafile", "ssl_capath", "ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_check_hostname"})
# Python objects (serializers, callbacks, a loop) cannot come from YAML; the rest of each client's
# keyword arguments may be set under its role.
_NOT_FROM_YAML = frozenset({
    "self", "loop", "topics", "ssl_context", "sasl_oauth_token_provider", "key_deserializer", "value_deserializer",
    "key_serializer", "value_serializer", "partitioner",
})
_ROLE_OPTIONS = {
    "consumer": frozenset(inspect.signature(AIOKafkaConsumer.__init__).parameters) - _NOT_FROM_YAML,
    "producer": frozenset(inspect.signature(AIOKafkaProducer.__init__).parameters) - _NOT_FROM_YAML,
}


class KafkaClientOptionError(ValueError):
    pass


def client_options(kafka: KafkaConfig, role: str) -> dict[str, Any]:
    """Shared options plus the role's own; `*_env` keys read their value (secrets) from the environment."""
    raw = dict(kafka.client)
    own = raw.pop(role, None) or {}
    raw.pop("consumer" if role == "producer" else "producer", None)
    if not isinstance(own, dict):
        raise KafkaClientOptionError(f"kafka.client.{role}: must be a mapping of {role} options")
    options = {
        **_resolve(raw, "kafka.client", _SHARED | _TLS, role),
        **_resolve(own, f"kafka.client.{role}", _ROLE_OPTIONS[role] | _TLS, role),
    }
    tls = {key: options.pop(key) for key in _TLS if key in options}
    if tls or str(options.get("security_protocol", "")).upper() in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(tls)
    return options


def _resolve(section: dict[str, Any], where: str, allowed: frozenset[str], role: str) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in section.items():
        name = key.removesuffix("_env") if key.endswith("_env") else key
        if name not in allowed:
            hint = (
                f"put it under kafka.client.{role} (or the other role)" if where == "kafka.client"
                else f"not an option of aiokafka's {role}"
            )
            raise KafkaClientOptionError(f"{where}.{key}: unknown client option; {hint}")
        if key.endswith("_env"):
            if not isinstance(value, str) or not value:
                raise KafkaClientOptionError(f"{where}.{key}: must name an environment variable")
            env_value = os.environ.get(value)
            if not env_value:
                raise KafkaClientOptionError(f"{where}.{key}: environment variable {value} is not set or empty")
            if is_secret_key(name):
                register_secrets([env_value])  # no log line may show it, even alone
            resolved[name] = env_value
        elif is_secret_key(key):
            raise KafkaClientOptionError(
                f"{where}.{key}: secrets come from the environment only; use {key}_env: NAME_OF_ENV_VAR"
            )
        else:
            resolved[name] = value
    return resolved


def _ssl_context(tls: dict[str, Any]) -> ssl.SSLContext:
    for key in ("ssl_cafile", "ssl_capath", "ssl_certfile", "ssl_keyfile"):
        if key in tls and not Path(str(tls[key])).exists():
            raise KafkaClientOptionError(f"kafka.client.{key}: {tls[key]} does not exist")
    if "ssl_keyfile" in tls and "ssl_certfile" not in tls:
        raise KafkaClientOptionError("kafka.client.ssl_keyfile: needs ssl_certfile (the client certificate) too")
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=tls.get("ssl_cafile"), capath=tls.get("ssl_capath"), certfile=tls.get("ssl_certfile"),
            keyfile=tls.get("ssl_keyfile"), password=tls.get("ssl_password"),
        )
    except ssl.SSLError as exc:
        # The reason only (wrong password, not PEM...): never the password itself.
        raise KafkaClientOptionError(f"kafka.client: the TLS files cannot be used: {exc.reason or exc}") from None
    check_hostname = tls.get("ssl_check_hostname", True)
    if not isinstance(check_hostname, bool):
        raise KafkaClientOptionError("kafka.client.ssl_check_hostname: must be true or false")
    context.check_hostname = check_hostname
    return context


def make_consumer(kafka: KafkaConfig, max_records: int) -> AIOKafkaConsumer:
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "group_id": kafka.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # Replays can take minutes; polling never stops (pause() is the backpressure), but a
        # generous poll interval keeps a slow drain from costing the group membership.
        "max_poll_interval_ms": 15 * 60 * 1000,
        "rebalance_timeout_ms": 5 * 60 * 1000,
        "session_timeout_ms": 15_000,
        "heartbeat_interval_ms": 3_000,
        "max_poll_records": max_records,
        # Any record up to the envelope limit must be fetchable, whatever the topic allows.
        "max_partition_fetch_bytes": MAX_ENVELOPE_BYTES + _RECORD_OVERHEAD_BYTES,
        **client_options(kafka, "consumer"),
    }
    return AIOKafkaConsumer(**options)


def make_producer(kafka: KafkaConfig, *, idempotent: bool = True) -> AIOKafkaProducer:
    """A producer for decisions (idempotent) or for dead letters (`idempotent=False`).

    The dead-letter producer is not idempotent on purpose: when the broker refuses a record as too large,
    an idempotent producer has spent the record's sequence number and every later send to that partition
    fails with OutOfOrderSequenceNumber, forever. A dead letter sent twice after a lost acknowledgement is
    the lesser harm (the DLQ topic is at-least-once anyway).
    """
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "acks": "all",
        "enable_idempotence": idempotent,
        "linger_ms": 5,
        # A dead letter carries its record's bytes (up to the envelope limit): the client must not refuse
        # it before the broker is asked. A topic that takes less gets a cut payload (see the consumer).
        "max_request_size": MAX_ENVELOPE_BYTES + _RECORD_OVERHEAD_BYTES,
        **client_options(kafka, "producer"),
    }
    return AIOKafkaProducer(**options)


class KafkaRecordSource:
    """RecordSource over an AIOKafkaConsumer (see `make_consumer`)."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    def subscribe(self, topic: str, on_revoked: OnRevoked, on_assigned: OnAssigned) -> None:
        self.consumer.subscribe([topic], listener=_RebalanceListener(on_revoked, on_assigned))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self.consumer.assignment()}

    def pause(self, *partitions: TopicPartition) -> None:
        self.consumer.pause(*(KafkaTopicPartition(*tp) for tp in partitions))

    def resume(self, *partitions: TopicPartition) -> None:
        self.consumer.resume(*(KafkaTopicPartition(*tp) for tp in partitions))

    async def fetch(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[SourceMessage]]:
        batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return {
            TopicPartition(tp.topic, tp.partition): [
                SourceMessage(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp) for m in messages
            ]
            for tp, messages in batch.items()
        }

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit({KafkaTopicPartition(*tp): offset for tp, offset in offsets.items()})
        except (CommitFailedError, KafkaError) as exc:
            raise CommitFailed(repr(exc)) from exc

    async def end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        ends = await self.consumer.end_offsets([KafkaTopicPartition(*tp) for tp in partitions])
        return {TopicPartition(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    async def committed(self, partition: TopicPartition) -> int | None:
        offset = await self.consumer.committed(KafkaTopicPartition(*partition))
        return None if offset is None else int(offset)

    async def probe(self) -> None:
        await self.consumer.topics()


class _RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, on_revoked: OnRevoked, on_assigned: OnAssigned) -> None:
        self.on_revoked = on_revoked
        self.on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: set[KafkaTopicPartition]) -> None:
        await self.on_revoked({TopicPartition(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[KafkaTopicPartition]) -> None:
        self.on_assigned({TopicPartition(tp.topic, tp.partition) for tp in assigned})


class KafkaRecordPublisher:
    """RecordPublisher over an AIOKafkaProducer (see `make_producer`)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def publish(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        try:
            await self.producer.send_and_wait(topic, value=value, key=key, headers=list(headers) or None)
        except (MessageSizeTooLargeError, RecordTooLargeError) as exc:
            raise RecordTooLarge(repr(exc)) from exc
        except KafkaError as exc:
            raise KafkaUnavailable(repr(exc)) from exc


__all__ = [
    "ConsumerRebalanceListener",
    "KafkaClientOptionError",
    "KafkaRecordPublisher",
    "KafkaRecordSource",
    "client_options",
    "make_consumer",
    "make_producer",
]
