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
        self._upserts: dict[tuple[str, tuple[str, ...]], Any] = {}

    def _insert(self, table: Any) -> Any:
        if self.dialect == "postgresql":
            return pg_insert(table)
        if self.dialect == "sqlite":
            return sqlite_insert(table)
        return generic_insert(table)

    async def _add(self, connection: Any, table: Any, keys: list[str], values: list[dict[str, Any]]) -> None:
        """Upsert that adds the numeric columns to the existing totals.

        One statement per table, built once and executed for many rows: a fresh multi-row VALUES
        statement per batch would be compiled again every time. Rows with the same key must be summed
        before they get here (one statement may not update a row twice).
        """
        if not values:
            return
        await connection.execute(self._adding_upsert(table, tuple(keys)), values)

    def _adding_upsert(self, table: Any, keys: tuple[str, ...]) -> Any:
        statement = self._upserts.get((table.name, keys))
        if statement is None:
            insert = self._insert(table)
            summed = {
                column.name: column + getattr(insert.excluded, column.name)
                for column in table.columns
                if column.name not in keys and column.name != "severity"
            }
            statement = self._upserts[(table.name, keys)] = insert.on_conflict_do_update(index_elements=list(keys), set_=summed)
        return statement
