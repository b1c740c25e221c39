"""Dead letters: records that could not become verdicts (written by `save`, with the verdicts)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from shadowd.adapters.sql_schema import dead_letters
from shadowd.adapters.sql_store.base import SqlBase
from shadowd.adapters.sql_store.rows import utc


class DeadLetterRecords(SqlBase):
    async def dead_letter_counts(self) -> dict[str, int]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(dead_letters.c.reason, func.count().label("n")).group_by(dead_letters.c.reason)
            )
            return {row.reason: int(row.n) for row in rows}

    async def list_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit))
            return [
                {
                    "id": row.id,
                    "source": row.source,
                    "partition": row.partition,
                    "offset": row.offset,
                    "reason": row.reason,
                    "detail": row.detail,
                    "payload": bytes(row.payload).decode("utf-8", errors="replace"),
                    "payload_truncated": bool(row.payload_truncated),
                    "created_at": utc(row.created_at).isoformat(),
                }
                for row in rows
            ]
