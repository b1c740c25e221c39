"""The store on SQLAlchemy 2 async: PostgreSQL (asyncpg) in production, SQLite embedded.

One class, `SqlVerdictStore`, implements the whole store port (`shadowd.ports.Store`); its parts live in
this package by noun: `writes` (verdict inserts and their running totals), `reads` (totals and queries),
`rollouts` (state, audit trail, the promoter's lock), `dead_letters`, `rows` (row conversion), `errors`
(what a database error means) and `engine` (connecting and migrating).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shadowd.adapters.database_url import DatabaseUrlError, normalise_url
from shadowd.adapters.sql_retention import SqlRetention
from shadowd.adapters.sql_store.dead_letters import DeadLetterRecords
from shadowd.adapters.sql_store.engine import (
    SchemaNotReady,
    create_engine,
    current_revision,
    downgrade_database,
    head_revision,
    known_revisions,
    migrations_dir,
    sqlite_file,
    upgrade_database,
)
from shadowd.adapters.sql_store.errors import classify_store_error
from shadowd.adapters.sql_store.reads import VerdictReads
from shadowd.adapters.sql_store.rollouts import RolloutRecords, SqlLeadership
from shadowd.adapters.sql_store.writes import VerdictWrites
from shadowd.ports import Store, StoredVerdict, VerdictFilter


class SqlVerdictStore(VerdictWrites, VerdictReads, RolloutRecords, DeadLetterRecords):
    """Insert-if-absent writes and the queries that reports, the CLI and the API need."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    def retention(self, batch_rows: int) -> SqlRetention:
        return SqlRetention(self.engine, batch_rows=batch_rows)

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))


def _implements_the_port(store: SqlVerdictStore) -> Store:
    """mypy checks here that the SQL store implements the whole store port."""
    return store


async def open_existing_store(url: str) -> SqlVerdictStore:
    """Open a database without creating or migrating it; SchemaNotReady says what to run instead."""
    hint = "create or migrate it with `shadowd db upgrade`"
    file = sqlite_file(url)
    if normalise_url(url).startswith("sqlite") and (file is None or not file.exists()):
        raise SchemaNotReady(f"no database at {url}: {hint}")
    engine = create_engine(url)
    try:
        revision = await current_revision(engine)
        head = head_revision()
        if revision is None:
            raise SchemaNotReady(f"the database has no shadowd schema: {hint}")
        if revision != head:
            if revision in known_revisions():
                raise SchemaNotReady(f"the database schema is at {revision}, this shadowd needs {head}: "
                                     "migrate it with `shadowd db upgrade`")
            raise SchemaNotReady(f"the database schema is at {revision}, newer than this shadowd knows "
                                 f"(head {head}): upgrade shadowd")
    except BaseException:
        await engine.dispose()
        raise
    return SqlVerdictStore(engine)


async def open_store(url: str, *, upgrade: bool = False) -> SqlVerdictStore:
    engine = create_engine(url)
    if upgrade:
        await upgrade_database(engine)
    return SqlVerdictStore(engine)


__all__ = [
    "DatabaseUrlError",
    "SchemaNotReady",
    "SqlLeadership",
    "SqlVerdictStore",
    "StoredVerdict",
    "VerdictFilter",
    "classify_store_error",
    "create_engine",
    "current_revision",
    "downgrade_database",
    "head_revision",
    "migrations_dir",
    "normalise_url",
    "open_existing_store",
    "open_store",
    "sqlite_file",
    "upgrade_database",
]
