"""aiokafka consumer and producer built from `kafka:` config; client options pass through."""

from __future__ import annotations

import os
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.helpers import create_ssl_context

from shadowd.config import KafkaConfig
from shadowd.core.envelope import MAX_ENVELOPE_BYTES

# Room for the record's key, headers and batch framing on top of an envelope-sized value.
_RECORD_OVERHEAD_BYTES = 64 * 1024

# Options both clients understand; everything else goes under `client.consumer` / `client.producer`.
_SHARED = {
    "client_id", "security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
    "sasl_kerberos_service_name", "sasl_kerberos_domain_name", "request_timeout_ms", "retry_backoff_ms",
    "metadata_max_age_ms", "connections_max_idle_ms", "api_version",
}


class KafkaClientOptionError(ValueError):
    pass


def client_options(kafka: KafkaConfig, role: str) -> dict[str, Any]:
    """Shared options plus the role's own; `*_env` keys read secrets from the environment."""
    raw = dict(kafka.client)
    own = raw.pop(role, {}) or {}
    raw.pop("consumer" if role == "producer" else "producer", None)
    ssl = {k: raw.pop(k) for k in ("ssl_cafile", "ssl_certfile", "ssl_keyfile") if k in raw}
    options: dict[str, Any] = {}
    for key, value in {**raw, **own}.items():
        if key.endswith("_env"):
            name = key.removesuffix("_env")
            if str(value) not in os.environ:
                raise KafkaClientOptionError(f"kafka.client.{key}: environment variable {value} is not set")
            options[name] = os.environ[str(value)]
        elif key in _SHARED or key in own:
            options[key] = value
        else:
            raise KafkaClientOptionError(
                f"kafka.client.{key}: not a shared client option; put it under kafka.client.{role} or the other role"
            )
    if ssl:
        options["ssl_context"] = create_ssl_context(
            cafile=ssl.get("ssl_cafile"), certfile=ssl.get("ssl_certfile"), keyfile=ssl.get("ssl_keyfile")
        )
    return options


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


__all__ = ["ConsumerRebalanceListener", "KafkaClientOptionError", "client_options", "make_consumer", "make_producer"]
