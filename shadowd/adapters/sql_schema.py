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
    false,
    text,
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
    # Compared verdicts counted when the stage began: the stage's samples are the total minus this.
    Column("stage_started_compared", BigInteger, nullable=False, server_default="0"),
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
    # For status error: why there was no fair comparison (shadowd.core.results.ErrorReason).
    Column("error_reason", String(32)),
    Column("findings", Json, nullable=False),
    Column("baseline", Json),
    Column("candidate", Json),
    Column("baseline_repeat", Json),
    Column("adaptations", Json, nullable=False),
    Column("attributes", Json, nullable=False),
    # The request as the verdict page shows it (shadowd.records.summarise_request): bounded, never the whole body.
    Column("request", Json),
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
    # The judge's grades (SPEC §8): `grading` is the grading status, NULL when the route has no judge.
    Column("grading", String(16)),
    Column("grades", Json),
    Column("baseline_acceptable", Boolean),
    Column("candidate_acceptable", Boolean),
    Column("grading_cost_usd", Float),
    Column("source", String(512)),
    Column("partition", Integer),
    Column("offset", BigInteger),
    Column("captured_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # False until the verdict is folded into the rollup tables (exactly once, whatever the commit order).
    Column("rolled_up", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("rollout", "request_id", name="uq_verdicts_rollout_request"),
    Index("ix_verdicts_rollout_id", "rollout", "id"),
    Index("ix_verdicts_rollout_status_id", "rollout", "status", "id"),
    Index("ix_verdicts_rollout_route_id", "rollout", "route", "id"),
    Index("ix_verdicts_rollout_created", "rollout", "created_at"),
    Index("ix_verdicts_rollout_grading_id", "rollout", "grading", "id"),
    Index(
        "ix_verdicts_rollup_pending", "rollout", "id",
        postgresql_where=text("NOT rolled_up"), sqlite_where=text("NOT rolled_up"),
    ),
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
    # True when the record was larger than the dead-letter limit and `payload` holds its first bytes.
    Column("payload_truncated", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("source", "partition", "offset", name="uq_dead_letters_position"),
    Index("ix_dead_letters_reason", "reason"),
    Index("ix_dead_letters_created", "created_at"),
)

# Running totals per rollout, kept by SqlVerdictStore.roll_up(): reports read these small tables
# instead of aggregating every verdict.
rollup_status = Table(
    "rollup_status",
    metadata,
    Column("rollout", String(128), primary_key=True),
    Column("route", String(256), primary_key=True),
    Column("status", String(16), primary_key=True),
    Column("n", BigInteger, nullable=False),
    Column("candidate_regressions", BigInteger, nullable=False),
    Column("baseline_noise_regressions", BigInteger, nullable=False),
    Column("both_regressed", BigInteger, nullable=False),
    Column("cost_usd_baseline", Float, nullable=False),
    Column("cost_usd_candidate", Float, nullable=False),
)

rollup_codes = Table(
    "rollup_codes",
    metadata,
    Column("rollout", String(128), primary_key=True),
    Column("code", String(64), primary_key=True),
    Column("noise", Boolean, primary_key=True),
    Column("severity", String(16), nullable=False),
    Column("n", BigInteger, nullable=False),  # verdicts with at least one such finding
)

rollup_latency = Table(
    "rollup_latency",
    metadata,
    Column("rollout", String(128), primary_key=True),
    Column("side", String(16), primary_key=True),
    Column("bucket", Integer, primary_key=True),  # shadowd.core.histogram buckets
    Column("n", BigInteger, nullable=False),
)

# Per rollout and route, what the judge did with the compared verdicts of judged routes.
rollup_grades = Table(
    "rollup_grades",
    metadata,
    Column("rollout", String(128), primary_key=True),
    Column("route", String(256), primary_key=True),
    Column("judged", BigInteger, nullable=False),  # compared verdicts on a route with a judge
    Column("graded", BigInteger, nullable=False),
    Column("failed", BigInteger, nullable=False),
    Column("over_budget", BigInteger, nullable=False),
    Column("baseline_acceptable", BigInteger, nullable=False),
    Column("candidate_acceptable", BigInteger, nullable=False),
    Column("candidate_worse", BigInteger, nullable=False),  # baseline acceptable, candidate not
    Column("candidate_better", BigInteger, nullable=False),  # candidate acceptable, baseline not
    Column("cost_usd", Float, nullable=False),
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

# The baseline's learned noise (SPEC §8): per baseline model, route, kind ("path" | "code" |
# "requests") and key, counts of noise-checked requests per hour. The rates over a recent window
# are sums over its buckets, so old behaviour ages out without rewriting any row.
noise_counts = Table(
    "noise_counts",
    metadata,
    Column("baseline", String(128), primary_key=True),
    Column("route", String(256), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("key", String(512), primary_key=True),
    Column("bucket", DateTime(timezone=True), primary_key=True),
    Column("samples", BigInteger, nullable=False),
    Column("differed", BigInteger, nullable=False),
    Index("ix_noise_counts_bucket", "bucket"),
)

# Model calls a rollout's verdicts cost, and how many had the baseline's second replay: the
# report states the noise_check share and the calls per compared verdict actually spent.
rollout_calls = Table(
    "rollout_calls",
    metadata,
    Column("rollout", String(128), primary_key=True),
    Column("replayed", BigInteger, nullable=False),  # verdicts with at least one model call
    Column("noise_checked", BigInteger, nullable=False),
    Column("model_calls", BigInteger, nullable=False),
    # Calls and USD by purpose (shadowd.core.spend.Spend; 0008_call_spend).
    Column("replay_calls", BigInteger, nullable=False, server_default="0"),
    Column("replay_usd", Float, nullable=False, server_default="0"),
    Column("noise_calls", BigInteger, nullable=False, server_default="0"),
    Column("noise_usd", Float, nullable=False, server_default="0"),
    Column("grading_calls", BigInteger, nullable=False, server_default="0"),
    Column("grading_usd", Float, nullable=False, server_default="0"),
    Column("cache_read_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_saved_usd", Float, nullable=False, server_default="0"),
)

# How far a retention task has got, per rollout (shadowd.adapters.sql_retention): the outputs purge has
# emptied every verdict of `rollout` created before `done_before`, so it never reads those rows again.
retention_marks = Table(
    "retention_marks",
    metadata,
    Column("task", String(32), primary_key=True),
    Column("rollout", String(128), primary_key=True),
    Column("done_before", DateTime(timezone=True), nullable=False),
)
