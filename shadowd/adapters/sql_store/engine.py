"""The SQL engine and its schema: connecting, migrating, and checking a database is at this shadowd's revision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shadowd.adapters.database_url import engine_target, normalise_url
from shadowd.core.fastjson import storable_dumps


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """An engine for `url`; a URL shadowd cannot use raises DatabaseUrlError (never showing its password)."""
    target = engine_target(url)
    # Every JSON column is written storable (NUL and lone surrogates escaped, NaN null) and fast.
    if target.url.get_backend_name() == "sqlite":
        engine = create_async_engine(target.url, connect_args={"timeout": 30}, json_serializer=storable_dumps)
        _sqlite_pragmas(engine)
        return engine
    return create_async_engine(
        target.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, connect_args=target.connect_args,
        json_serializer=storable_dumps,
    )


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    from sqlalchemy import event

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def migrations_dir() -> Path:
    """The Alembic scripts: inside the installed wheel, or at the top of a checkout."""
    here = Path(__file__).resolve()  # shadowd/adapters/sql_store/engine.py
    packaged = here.parents[2] / "_migrations"
    if packaged.is_dir():
        return packaged
    return here.parents[3] / "migrations"


async def upgrade_database(engine: AsyncEngine, revision: str = "head") -> None:
    """Run Alembic migrations up to `revision` on this engine's database."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    def run(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Several processes may start at once: one migrates, the others wait and find it done.
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('shadowd.migrations'))"))
        config = AlembicConfig()
        config.set_main_option("script_location", str(migrations_dir()))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


class SchemaNotReady(Exception):
    """The database is missing, has no shadowd schema, or one at another revision than this shadowd's."""


def head_revision() -> str:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir()))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir()))
    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


async def current_revision(engine: AsyncEngine) -> str | None:
    """The schema revision stamped in the database, or None when it has no shadowd schema."""
    from sqlalchemy import inspect

    async with engine.connect() as connection:
        has_table = await connection.run_sync(lambda sync: inspect(sync).has_table("alembic_version"))
        if not has_table:
            return None
        return (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for an in-memory database or another engine)."""
    normalised = normalise_url(url)
    if not normalised.startswith("sqlite"):
        return None
    path = normalised.split(":///", 1)[-1].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


async def downgrade_database(engine: AsyncEngine, revision: str = "-1") -> None:
    """Run Alembic migrations down to `revision` (by default one step)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    def run(connection: Connection) -> None:
        config = AlembicConfig()
        config.set_main_option("script_location", str(migrations_dir()))
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)
