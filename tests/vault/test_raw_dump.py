"""A raw copy of the database holds no plaintext secret: the SQLite file (with its WAL)
byte for byte, and PostgreSQL through pg_dump (or, without it, every column as text)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from hexahub.core.db import Database
from hexahub.settings import Settings
from hexahub.vault import keyring, service
from tests.identity.conftest import Person
from tests.vault.conftest import canary


def forms(value: str) -> list[bytes]:
    """The ways a value could sit in a dump: as text, hex (bytea) or base64."""
    raw = value.encode()
    return [raw, raw.hex().encode(), base64.b64encode(raw), base64.urlsafe_b64encode(raw)]


def sqlite_bytes(url: str) -> bytes:
    database = Path(make_url(url).database or "")
    files = sorted(database.parent.glob(database.name + "*"))  # the file, -wal and -shm
    assert database in files
    return b"".join(p.read_bytes() for p in files)


def pg_dump_bytes(url: str) -> bytes:
    libpq_url = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    pg_dump = shutil.which("pg_dump")
    if pg_dump is not None:
        done = subprocess.run(
            [pg_dump, "--no-owner", f"--dbname={libpq_url}"],
            capture_output=True,
            timeout=120,
            check=False,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        assert b"vault_secret_versions" in done.stdout
        return done.stdout
    raise AssertionError("unreachable: the caller falls back when pg_dump is missing")


async def every_column_as_text(url: str) -> bytes:
    """The fallback without pg_dump: SELECT every column of every table, cast to text."""
    engine = create_async_engine(url)
    chunks: list[bytes] = []
    try:
        async with engine.connect() as conn:
            tables = (
                await conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
            ).scalars()
            for table in list(tables):
                rows = await conn.execute(text(f'SELECT t::text FROM "{table}" AS t'))
                chunks.extend(str(row[0]).encode() for row in rows)
    finally:
        await engine.dispose()
    return b"\n".join(chunks)


async def fill_the_vault(
    client: httpx.AsyncClient, person: Person, settings: Settings, database: Database
) -> list[str]:
    """Write secrets every way the vault can take them; return the values written."""
    values = [canary(f"n{i}") for i in range(8)]
    base = f"/api/workspaces/{person.workspace_id}/secrets"
    h = person.headers
    for value in values[:3]:  # three versions of one secret
        ok = await client.put(f"{base}/data/dump/versions", headers=h, json={"data": {"v": value}})
        assert ok.status_code == 200, ok.text
    patched = await client.patch(
        f"{base}/data/dump/versions", headers=h, json={"data": {"extra": values[3]}}
    )
    assert patched.status_code == 200, patched.text
    imported = await client.post(
        f"{base}/import/dump/env",
        headers=h,
        json={"content": f"TOKEN={values[4]}\nOTHER='{values[5]}'\n"},
    )
    assert imported.status_code == 200, imported.text
    await client.put(f"{base}/data/dump/deleted", headers=h, json={"data": {"v": values[6]}})
    await client.delete(f"{base}/data/dump/deleted", headers=h)
    await client.put(f"{base}/data/dump/destroyed", headers=h, json={"data": {"v": values[7]}})
    await client.delete(f"{base}/destroy/dump/destroyed", headers=h)
    # Reads, reveals, exports and resolutions leave audit events: none may hold a value.
    assert (await client.get(f"{base}/data/dump/versions", headers=h)).status_code == 200
    assert (await client.get(f"{base}/export", headers=h, params={"prefix": "dump/env"})).text
    async with database.sessions() as db:
        await service.resolve_reference(
            db, settings, f"vault://{person.workspace_id}/dump/env#TOKEN", purpose="test"
        )
    # A master-key rotation rewrites every wrapped data key.
    async with database.sessions() as db:
        ring = await keyring.open_keyring(db, settings)
    service.add_master_key(settings, ring)
    await service.rewrap_all(database.sessions, ring)
    return values


async def test_raw_database_holds_no_plaintext_secret(
    app_client: httpx.AsyncClient,
    alice: Person,
    settings: Settings,
    database_url: str,
    database: Database,
) -> None:
    values = await fill_the_vault(app_client, alice, settings, database)
    master_keys = keyring.Keyring.from_file(keyring.key_file_path(settings)).keys
    if database_url.startswith("sqlite"):
        dump = sqlite_bytes(database_url)
    elif shutil.which("pg_dump"):
        dump = pg_dump_bytes(database_url)
    else:
        dump = await every_column_as_text(database_url)
    # The dump is the right one: paths and key names are there, in the clear.
    assert b"dump/versions" in dump and b"dump/env" in dump and b"TOKEN" in dump
    for value in values:
        for form in forms(value):
            assert form not in dump, f"a secret value ({form[:20]!r}...) is in the raw database"
    for key in master_keys:
        assert key.encoded().encode() not in dump and key.material not in dump


async def test_pg_fallback_dump_sees_every_table(
    app_client: httpx.AsyncClient, alice: Person, database_url: str
) -> None:
    """The dump helpers see what is written (a check on the check)."""
    marker = canary("path").replace("plaintext-", "")
    response = await app_client.put(
        f"/api/workspaces/{alice.workspace_id}/secrets/data/{marker}",
        headers=alice.headers,
        json={"data": {"v": "x"}},
    )
    assert response.status_code == 200
    if database_url.startswith("sqlite"):
        dump = sqlite_bytes(database_url)
    else:
        dump = await every_column_as_text(database_url)
    assert marker.encode() in dump
