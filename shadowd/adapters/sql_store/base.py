"""What every part of the SQL store shares: the engine, its dialect, and the dialect's upserts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert as generic_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine


class SqlBase:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    def _insert(self, table: Any) -> Any:
        if self.dialect == "postgresql":
            return pg_insert(table)
        if self.dialect == "sqlite":
            return sqlite_insert(table)
        return generic_insert(table)

    async def _add(self, connection: Any, table: Any, keys: list[str], values: list[dict[str, Any]]) -> None:
        """Upsert that adds the numeric columns to the existing totals."""
        if not values:
            return
        statement = self._insert(table).values(values)
        summed = {
            column.name: column + getattr(statement.excluded, column.name)
            for column in table.columns
            if column.name not in keys and column.name != "severity"
        }
        await connection.execute(statement.on_conflict_do_update(index_elements=keys, set_=summed))
