"""The data directory is 0700 and the databases in it 0600 (with their -wal and -shm
files), whatever the umask, after a start and some writes; looser modes left by an older
version are tightened."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hexahub.app import create_app
from hexahub.context import service as context_service
from hexahub.core import migrate
from hexahub.settings import Settings
from tests.conftest import make_settings
from tests.identity.conftest import make_person


@pytest.fixture(params=[0o022, 0o000])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """A umask that lets group and others read new files, as most systems' defaults do."""
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(folder: Path) -> dict[str, int]:
    return {path.name: mode(path) for path in sorted(folder.iterdir()) if path.is_file()}


async def start_and_write(settings: Settings) -> dict[str, int]:
    """Start as `hexahub serve` does (migrate, then the app), write through the API and
    into the code index and the vault; the data files' modes while it still runs."""
    await migrate.upgrade_async(settings.resolved_database_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hexahub.test") as c:
            c.app = app  # type: ignore[attr-defined]
            alice = await make_person(c, "alice@example.org", first=True)
            created = await c.post("/api/workspaces", headers=alice.headers, json={"name": "w"})
            assert created.status_code == 201, created.text
            stored = await c.put(
                f"/api/workspaces/{alice.workspace_id}/secrets/data/app/token",
                headers=alice.headers,
                json={"data": {"value": "x"}},
            )
            assert stored.status_code == 200, stored.text
            await context_service.store_of(app.state.runtime)  # creates code-index.db
            return modes(settings.data_dir)


async def test_data_files_are_private_after_start_and_writes(tmp_path: Path, umask: int):
    settings = make_settings(tmp_path, database_url="", secret_key=None)
    running = await start_and_write(settings)
    for name in ("hexahub.db", "code-index.db"):
        for suffix in ("", "-wal", "-shm"):
            assert running.get(name + suffix) == 0o600, (name + suffix, running)
    assert running["secret_key"] == 0o600 and running["vault.key"] == 0o600
    assert mode(settings.data_dir) == 0o700
    # Stopped, nothing is looser (SQLite may have removed its -wal and -shm files).
    assert set(modes(settings.data_dir).values()) == {0o600}


async def test_loose_modes_left_by_an_older_version_are_tightened(tmp_path: Path, umask: int):
    settings = make_settings(tmp_path, database_url="")
    data = settings.data_dir
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    await migrate.upgrade_async(settings.resolved_database_url)
    for name in ("hexahub.db", "hexahub.db-wal", "hexahub.db-shm", "code-index.db"):
        (data / name).touch()
        os.chmod(data / name, 0o644)
    running = await start_and_write(settings)
    assert mode(data) == 0o700
    assert {name: running[name] for name in ("hexahub.db", "code-index.db")} == {
        "hexahub.db": 0o600,
        "code-index.db": 0o600,
    }
    assert set(modes(data).values()) == {0o600}


def test_a_database_outside_the_data_directory_leaves_its_folder_alone(tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    migrate.upgrade(f"sqlite+aiosqlite:///{shared / 'elsewhere.db'}")
    assert mode(shared) == 0o1777
    assert mode(shared / "elsewhere.db") == 0o600
    fresh = tmp_path / "new" / "folder"
    migrate.upgrade(f"sqlite+aiosqlite:///{fresh / 'db.sqlite'}")
    assert mode(fresh) == 0o700
