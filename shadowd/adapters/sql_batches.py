"""The batch ledger in SQL: which Message Batch holds which call, so a restart resumes it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from shadowd.core.batching import BatchItem
from shadowd.core.storable import escape_text

# Kept apart from the verdict tables' metadata: created by migration 0007_replay_batches.
metadata = MetaData()

replay_batches = Table(
    "replay_batches",
    metadata,
    Column("batch_id", String(128), primary_key=True),
    Column("state", String(16), nullable=False, server_default="submitted"),  # submitted | ended | lost
    Column("requests", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
)

replay_batch_items = Table(
    "replay_batch_items",
    metadata,
    Column("batch_id", String(128), ForeignKey("replay_batches.batch_id", ondelete="CASCADE"), primary_key=True),
    Column("custom_id", String(64), primary_key=True),
    Column("rollout", String(128), nullable=False),
    Column("request_id", Text, nullable=False),
    Column("model", String(128), nullable=False),
    Column("slot", String(16), nullable=False),
    Column("source", Text, nullable=True),
    Column("partition", Integer, nullable=True),
    Column("offset", BigInteger, nullable=True),
)

_CHUNK = 1000  # rows per INSERT: a 100,000-request batch stays within every driver's parameter limit


class SqlBatchLedger:
    """Batch ids and their calls' identities (rollout, request id, custom id, source position)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def record(self, batch_id: str, items: Sequence[BatchItem], created_at: datetime) -> None:
        """Store a submitted batch and every call in it, in one transaction."""
        rows = [
            {
                "batch_id": batch_id, "custom_id": item.custom_id, "rollout": item.rollout,
                "request_id": escape_text(item.request_id), "model": item.model, "slot": item.slot,
                "source": escape_text(item.source) if item.source is not None else None,
                "partition": item.partition, "offset": item.offset,
            }
            for item in items
        ]
        async with self.engine.begin() as connection:
            await connection.execute(
                insert(replay_batches).values(batch_id=batch_id, state="submitted", requests=len(rows),
                                              created_at=created_at)
            )
            for start in range(0, len(rows), _CHUNK):
                await connection.execute(insert(replay_batch_items), rows[start:start + _CHUNK])

    async def find(self, custom_ids: Sequence[str]) -> dict[str, str]:
        """custom id -> the newest usable batch holding it (batches the API lost are skipped)."""
        if not custom_ids:
            return {}
        query = (
            select(replay_batch_items.c.custom_id, replay_batches.c.batch_id)
            .join(replay_batches, replay_batches.c.batch_id == replay_batch_items.c.batch_id)
            .where(replay_batch_items.c.custom_id.in_(list(custom_ids)), replay_batches.c.state != "lost")
            .order_by(replay_batches.c.created_at)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return {str(cid): str(batch_id) for cid, batch_id in rows}

    async def submitted(self) -> list[str]:
        """Batches submitted and not yet seen to end, oldest first."""
        query = select(replay_batches.c.batch_id).where(replay_batches.c.state == "submitted").order_by(
            replay_batches.c.created_at
        )
        async with self.engine.connect() as connection:
            return [str(row[0]) for row in (await connection.execute(query)).all()]

    async def items(self, batch_id: str) -> list[BatchItem]:
        query = select(replay_batch_items).where(replay_batch_items.c.batch_id == batch_id)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [
            BatchItem(
                custom_id=row["custom_id"], rollout=row["rollout"], request_id=row["request_id"], model=row["model"],
                slot=row["slot"], params={}, source=row["source"], partition=row["partition"], offset=row["offset"],
            )
            for row in rows
        ]

    async def mark(self, batch_id: str, state: str, at: datetime) -> None:
        """`ended` once its results are read, `lost` when the API no longer knows it."""
        async with self.engine.begin() as connection:
            await connection.execute(
                update(replay_batches).where(replay_batches.c.batch_id == batch_id).values(state=state, ended_at=at)
            )

    async def forget_before(self, cutoff: datetime) -> int:
        """Drop batches that ended before `cutoff` (their results are gone from the API anyway)."""
        async with self.engine.begin() as connection:
            result = await connection.execute(
                delete(replay_batches).where(replay_batches.c.state != "submitted", replay_batches.c.ended_at < cutoff)
            )
        return int(result.rowcount or 0)
