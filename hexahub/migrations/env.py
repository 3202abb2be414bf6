"""Alembic environment: runs HexaHub's migrations on SQLite or PostgreSQL (async)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from hexahub.core.db import install_sqlite_pragmas
from hexahub.models import metadata

config = context.config
# Serialises concurrent `migrate` runs (several replicas starting at once) on PostgreSQL.
PG_MIGRATION_LOCK = 0x4E7A4855


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from hexahub.settings import get_settings

        url = get_settings().resolved_database_url
    return url


def run_migrations_offline() -> None:
    context.configure(
        url=_url(), target_metadata=metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    is_pg = connection.dialect.name == "postgresql"
    if is_pg:
        connection.execute(text(f"SELECT pg_advisory_lock({PG_MIGRATION_LOCK})"))
    try:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if is_pg:
            connection.execute(text(f"SELECT pg_advisory_unlock({PG_MIGRATION_LOCK})"))
            connection.commit()


async def run_migrations_online() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":
        install_sqlite_pragmas(engine.sync_engine)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
