"""Tables for verdicts, findings, dead letters, rollouts and the decision audit trail."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identity.
Id = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")

rollouts = Table(
    "rollouts",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("baseline", String(128), nullable=False),
    Column("candidate", String(128), nullable=False),
    Column("stage_index", Integer, nullable=False, server_default="0"),
    Column("state", String(16), nullable=False, server_default="active"),
    # Verdicts with an id above this one count toward the current stage's min_samples.
    Column("stage_started_verdict_id", BigInteger, nullable=False, server_default="0"),
    Column("stage_started_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

verdicts = Table(
    "verdicts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rollout", String(128), nullable=False),
    Column("request_id", String(256), nullable=False),
    Column("route", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("findings", Json, nullable=False),
    Column("baseline", Json),
    Column("candidate", Json),
    Column("baseline_repeat", Json),
    Column("adaptations", Json, nullable=False),
    Column("attributes", Json, nullable=False),
    Column("comparator_version", String(32), nullable=False),
    Column("baseline_noise_blocking", Boolean, nullable=False, server_default="0"),
    # Denormalised measurements so reports aggregate without reading the JSON documents.
    Column("baseline_model", String(128)),
    Column("candidate_model", String(128)),
    Column("baseline_latency_ms", Float),
    Column("candidate_latency_ms", Float),
    Column("baseline_cost_usd", Float),
    Column("candidate_cost_usd", Float),
    Column("baseline_output_tokens", Integer),
    Column("candidate_output_tokens", Integer),
    Column("source", String(512)),
    Column("partition", Integer),
    Column("offset", BigInteger),
    Column("captured_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("rollout", "request_id", name="uq_verdicts_rollout_request"),
    Index("ix_verdicts_rollout_id", "rollout", "id"),
    Index("ix_verdicts_rollout_status_id", "rollout", "status", "id"),
    Index("ix_verdicts_rollout_route_id", "rollout", "route", "id"),
    Index("ix_verdicts_rollout_created", "rollout", "created_at"),
)

findings = Table(
    "findings",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("verdict_id", BigInteger, ForeignKey("verdicts.id", ondelete="CASCADE"), nullable=False),
    Column("rollout", String(128), nullable=False),
    Column("code", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("path", Text),
    Column("detail", Text, nullable=False),
    Column("noise", Boolean, nullable=False, server_default="0"),
    Index("ix_findings_rollout_code_verdict", "rollout", "code", "verdict_id"),
    Index("ix_findings_verdict", "verdict_id"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(512), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("reason", String(128), nullable=False),
    Column("detail", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("source", "partition", "offset", name="uq_dead_letters_position"),
    Index("ix_dead_letters_reason", "reason"),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("rollout", String(128), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(16), nullable=False),  # gate | manual
    Column("actor", String(256), nullable=False),
    Column("action", String(32), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("stage_index", Integer, nullable=False),
    Column("canary_percent", Integer, nullable=False),
    Column("reasons", Json, nullable=False),
    Column("figures", Json, nullable=False),
    Index("ix_decisions_rollout_id", "rollout", "id"),
)
