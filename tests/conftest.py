"""Shared fixtures: settings isolated per test, a migrated database on SQLite and, when
HEXAHUB_TEST_POSTGRES_URL is set, PostgreSQL; an in-process app and client."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from hexahub.app import create_app
from hexahub.core import migrate
from hexahub.settings import Settings, get_settings

POSTGRES_URL = os.environ.get("HEXAHUB_TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("HEXAHUB_TEST_REDIS_URL", "")
NATS_URL = os.environ.get("HEXAHUB_TEST_NATS_URL", "")

POSTGRES_SKIP = (
    "PostgreSQL tests need HEXAHUB_TEST_POSTGRES_URL "
    "(e.g. postgresql://postgres@127.0.0.1:5432/test)"
)
REDIS_SKIP = "Redis tests need HEXAHUB_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/15)"
NATS_SKIP = "NATS tests need HEXAHUB_TEST_NATS_URL (e.g. nats://127.0.0.1:4222)"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No HEXAHUB_* variable, .env or config file of the developer's leaks into a test."""
    for name in list(os.environ):
        if name.startswith("HEXAHUB_") and not name.startswith("HEXAHUB_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class PostgresServer:
    """Creates throwaway databases on the test server (one per test session)."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url.replace("postgresql://", "postgresql+asyncpg://", 1))

    async def _admin(self, statement: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(
            host=self.url.host or "127.0.0.1",
            port=self.url.port or 5432,
            user=self.url.username or "postgres",
            password=self.url.password,
            database=self.url.database or "postgres",
        )
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    def create(self) -> str:
        name = f"hexahub_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(self._admin(f'CREATE DATABASE "{name}"'))
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_SKIP)
    server = PostgresServer(POSTGRES_URL)
    url = server.create()
    migrate.upgrade(url)
    yield url
    server.drop(url)


def _truncate_postgres(url: str) -> None:
    async def run() -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(url)
        async with engine.begin() as conn:
            names = (
                (
                    await conn.execute(
                        text(
                            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                            "AND tablename <> 'alembic_version'"
                        )
                    )
                )
                .scalars()
                .all()
            )
            if names:
                # The audit log refuses TRUNCATE by trigger; lift that for the cleanup only.
                await conn.execute(text("SET LOCAL session_replication_role = replica"))
                await conn.execute(
                    text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " CASCADE")
                )
        await engine.dispose()

    asyncio.run(run())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per test session; each test gets a copy of it."""
    path = tmp_path_factory.mktemp("template") / "hexahub.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    with sqlite3.connect(path) as conn:  # everything into the main file before copying
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: SQLite always, PostgreSQL when configured."""
    if request.param == "sqlite":
        path = tmp_path / "hexahub.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_database")
    yield url
    _truncate_postgres(url)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "secret_key": "test-secret-key-" + "x" * 32,
        "queue_retry_base_seconds": 0.05,
        "queue_retry_max_seconds": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


@pytest.fixture
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, lifespan included, driven in-process over ASGI."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hexahub.test") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c
