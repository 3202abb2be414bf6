"""The vault's first use, raced: the key file is created once, atomically with the first
secret stored under it, however many writers (in one process or in several replicas)
arrive at once, on SQLite and PostgreSQL.

Each round starts from an empty vault and no key file, and lets many writers in at once
through several database connections pools (replicas); a round that loses a write, or
stores secrets under two different keys, fails the test.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from sqlalchemy import delete, select

from hexahub.core.db import Database
from hexahub.settings import Settings
from hexahub.vault import keyring, service
from hexahub.vault.keyring import Keyring, VaultLocked
from hexahub.vault.models import VaultSecret, VaultSecretVersion
from tests.vault.conftest import SYSTEM, Space, canary

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 6
WRITERS = 16
REPLICAS = 2


async def empty_vault(database: Database) -> None:
    async with database.sessions() as db:
        await db.execute(delete(VaultSecretVersion))
        await db.execute(delete(VaultSecret))
        await db.commit()
    keyring.forget_keyrings()


async def stored_key_ids(database: Database) -> set[str]:
    async with database.sessions() as db:
        return set((await db.scalars(select(VaultSecretVersion.master_key_id))).all())


async def write(
    database: Database, settings: Settings, space: Space, path: str, value: str
) -> VaultSecretVersion:
    async with database.sessions() as db:
        return await service.write_secret(
            db, settings, SYSTEM, space.workspace_id, path, {"value": value}
        )


async def read(database: Database, settings: Settings, space: Space, path: str) -> str:
    async with database.sessions() as db:
        found = await service.read_secret(db, settings, SYSTEM, space.workspace_id, path)
        return found.data["value"]


async def test_many_first_writers_share_one_new_key(
    settings: Settings, database: Database, space: Space, tmp_path: Path
) -> None:
    replicas = [database] + [Database(settings) for _ in range(REPLICAS - 1)]
    try:
        for round_ in range(ROUNDS):
            await empty_vault(database)
            # A fresh data directory each round: the key file does not exist yet.
            path = tmp_path / f"round-{round_}" / "vault.key"
            shared = settings.model_copy(update={"vault_master_key_file": path})
            values = {f"race/{round_}/{w}": canary(f"w{w}") for w in range(WRITERS)}
            written = await asyncio.gather(
                *(
                    write(replicas[w % REPLICAS], shared, space, name, value)
                    for w, (name, value) in enumerate(values.items())
                ),
                return_exceptions=True,
            )
            failures = [w for w in written if isinstance(w, BaseException)]
            assert not failures, f"round {round_}: {failures[0]!r}"
            ring = Keyring.from_file(path)
            assert len(ring.ids) == 1
            assert await stored_key_ids(database) == set(ring.ids), f"round {round_}"
            for name, value in values.items():
                assert await read(database, shared, space, name) == value
    finally:
        for replica in replicas[1:]:
            await replica.dispose()


async def test_replicas_with_their_own_key_files_never_split_the_vault(
    settings: Settings, database: Database, space: Space, tmp_path: Path
) -> None:
    """Replicas that do not share a data directory (a misconfiguration) race to make the
    vault's first key: one of them does, and the others are refused (VaultLocked) instead
    of storing secrets under keys of their own that no other replica could read."""
    replicas = [database] + [Database(settings) for _ in range(REPLICAS - 1)]
    try:
        for round_ in range(ROUNDS):
            await empty_vault(database)
            own = [
                settings.model_copy(
                    update={"vault_master_key_file": tmp_path / f"r{round_}-{i}" / "vault.key"}
                )
                for i in range(REPLICAS)
            ]
            values = {f"split/{round_}/{w}": canary(f"w{w}") for w in range(WRITERS)}
            outcomes = await asyncio.gather(
                *(
                    write(replicas[w % REPLICAS], own[w % REPLICAS], space, name, value)
                    for w, (name, value) in enumerate(values.items())
                ),
                return_exceptions=True,
            )
            unexpected = [
                o
                for o in outcomes
                if isinstance(o, BaseException) and not isinstance(o, VaultLocked)
            ]
            assert not unexpected, repr(unexpected[0])
            made = [s for s in own if keyring.key_file_path(s).exists()]
            assert len(made) == 1, f"round {round_}: {len(made)} replicas made a key"
            winner = made[0]
            ring = Keyring.from_file(keyring.key_file_path(winner))
            assert await stored_key_ids(database) == set(ring.ids), f"round {round_}"
            for (name, value), outcome in zip(values.items(), outcomes, strict=True):
                if isinstance(outcome, VaultLocked):
                    assert "does not exist" in outcome.message
                    continue
                assert await read(database, winner, space, name) == value
    finally:
        for replica in replicas[1:]:
            await replica.dispose()


PROCESSES = 3
PROCESS_WRITERS = 12
PROCESS_TIMEOUT = 120.0


async def test_replica_processes_sharing_a_data_directory_share_one_key(
    settings: Settings, database: Database, space: Space, tmp_path: Path
) -> None:
    """Separate processes (each with its own keyring cache and connections) sharing one
    data directory and database all write at the same moment into an empty vault."""
    shared = tmp_path / "shared-data"
    values = {
        "database_url": settings.resolved_database_url,
        "data_dir": str(shared),
        "secret_key": settings.resolved_secret_key(),
    }
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.vault.first_writer",
            json.dumps(values),
            space.workspace_id,
            f"proc{p}",
            str(PROCESS_WRITERS),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=str(ROOT),
        )
        for p in range(PROCESSES)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), PROCESS_TIMEOUT)
            assert line.strip() == b"ready", line
        for process in processes:  # every replica is connected: all start at once
            assert process.stdin is not None
            process.stdin.write(b"go\n")
        results = await asyncio.wait_for(
            asyncio.gather(*(p.communicate() for p in processes)), PROCESS_TIMEOUT
        )
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert [p.returncode for p in processes] == [0] * PROCESSES
    outcomes = [o for out, _ in results for o in json.loads(out.decode().strip().splitlines()[-1])]
    assert outcomes == ["ok"] * (PROCESSES * PROCESS_WRITERS)
    ring = Keyring.from_file(shared / "vault.key")
    assert len(ring.ids) == 1 and await stored_key_ids(database) == set(ring.ids)
    replica = settings.model_copy(update={"data_dir": shared})
    for p in range(PROCESSES):
        for n in range(PROCESS_WRITERS):
            assert await read(database, replica, space, f"proc{p}/{n}") == f"proc{p}-{n}"
