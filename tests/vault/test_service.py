"""The vault service on SQLite and PostgreSQL: versions, check-and-set, soft delete,
expiry, metadata, references, .env files, wrong and rotated master keys, tampering."""

from __future__ import annotations

import asyncio
import logging
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from hexahub.core.db import Database, utcnow
from hexahub.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from hexahub.identity import audit
from hexahub.identity.models import AuditEvent
from hexahub.settings import Settings
from hexahub.vault import keyring, service
from hexahub.vault.keyring import MasterKey, VaultIntegrityError, VaultLocked
from hexahub.vault.models import VaultSecret, VaultSecretVersion
from tests.conftest import make_settings
from tests.vault.conftest import SYSTEM, Space, canary


async def put(
    database: Database, settings: Settings, space: Space, path: str, data: dict, **kw
) -> VaultSecretVersion:
    async with database.sessions() as db:
        return await service.write_secret(
            db, settings, SYSTEM, space.workspace_id, path, data, **kw
        )


async def get(
    database: Database, settings: Settings, space: Space, path: str, **kw
) -> service.SecretRead:
    async with database.sessions() as db:
        return await service.read_secret(db, settings, SYSTEM, space.workspace_id, path, **kw)


async def events(database: Database, action: str) -> list[AuditEvent]:
    async with database.sessions() as db:
        return await audit.query(db, action=action, limit=500)


async def test_versions_and_history(settings: Settings, database: Database, space: Space) -> None:
    values = [canary(f"v{i}") for i in range(3)]
    for value in values:
        await put(database, settings, space, "/infra/proxmox/api-token/", {"token": value})
    read = await get(database, settings, space, "infra/proxmox/api-token")
    assert read.version.version == 3 and read.data == {"token": values[2]}
    first = await get(database, settings, space, "infra/proxmox/api-token", version=1)
    assert first.data == {"token": values[0]}
    async with database.sessions() as db:
        secret, versions = await service.describe_secret(
            db, SYSTEM, space.workspace_id, "infra/proxmox/api-token"
        )
    assert [v.version for v in versions] == [3, 2, 1]
    assert secret.owner == "" and versions[0].key_names == ["token"]
    # Every read is audited, with names and never the value.
    reads = await events(database, "secret.read")
    assert len(reads) == 2
    assert all(values[0] not in str(audit.as_dict(e)) for e in reads)
    assert reads[0].details == {
        "path": "infra/proxmox/api-token",
        "version": 1,
        "keys": ["token"],
    }


async def test_only_the_configured_number_of_versions_is_kept(
    tmp_path: Path, database_url: str, space: Space, database: Database
) -> None:
    settings = make_settings(tmp_path, database_url=database_url, vault_keep_versions=2)
    for number in range(4):
        await put(database, settings, space, "app/key", {"value": f"v{number}"})
    async with database.sessions() as db:
        kept = await db.scalars(select(VaultSecretVersion.version).order_by("version"))
        assert list(kept) == [3, 4]
    with pytest.raises(NotFound) as gone:
        await get(database, settings, space, "app/key", version=1)
    assert "not kept" in gone.value.message
    assert (await get(database, settings, space, "app/key", version=3)).data == {"value": "v2"}


async def test_check_and_set(settings: Settings, database: Database, space: Space) -> None:
    await put(database, settings, space, "db/password", {"value": "one"}, cas=0)
    with pytest.raises(Conflict) as exists:
        await put(database, settings, space, "db/password", {"value": "two"}, cas=0)
    assert "version 1, not 0" in exists.value.message
    await put(database, settings, space, "db/password", {"value": "two"}, cas=1)
    with pytest.raises(Conflict):
        await put(database, settings, space, "db/password", {"value": "three"}, cas=1)
    assert (await get(database, settings, space, "db/password")).data == {"value": "two"}
    # A failed check changes nothing and names no value.
    assert "two" not in exists.value.message and "three" not in exists.value.message


async def test_concurrent_check_and_set_writes_one_winner_per_version(
    settings: Settings, database: Database, space: Space
) -> None:
    await put(database, settings, space, "race/token", {"value": "start"})
    contenders = 8

    async def attempt(writer: int, expected: int) -> int | None:
        async with database.sessions() as db:
            try:
                row = await service.write_secret(
                    db,
                    settings,
                    SYSTEM,
                    space.workspace_id,
                    "race/token",
                    {"value": f"round{expected}-writer{writer}"},
                    cas=expected,
                )
            except Conflict:
                return None
            return row.version

    winners_by_round = []
    for expected in (1, 2, 3):
        results = await asyncio.gather(*(attempt(w, expected) for w in range(contenders)))
        winners = [(w, v) for w, v in enumerate(results) if v is not None]
        assert len(winners) == 1, results
        assert winners[0][1] == expected + 1
        winners_by_round.append(winners[0][0])
    # Each round's winner is exactly what that version holds: nothing lost or mixed.
    for expected, writer in zip((1, 2, 3), winners_by_round, strict=True):
        read = await get(database, settings, space, "race/token", version=expected + 1)
        assert read.data == {"value": f"round{expected}-writer{writer}"}


async def test_concurrent_writes_without_cas_all_land_in_their_own_version(
    settings: Settings, database: Database, space: Space
) -> None:
    writers = 8

    async def write(writer: int) -> int:
        async with database.sessions() as db:
            row = await service.write_secret(
                db,
                settings,
                SYSTEM,
                space.workspace_id,
                "race/free",
                {"value": f"writer{writer}"},
            )
            return row.version

    versions = await asyncio.gather(*(write(w) for w in range(writers)))
    assert sorted(versions) == list(range(1, writers + 1))
    seen = set()
    for version in versions:
        seen.add((await get(database, settings, space, "race/free", version=version)).data["value"])
    assert seen == {f"writer{w}" for w in range(writers)}


async def test_soft_delete_undelete_and_destroy(
    settings: Settings, database: Database, space: Space
) -> None:
    value = canary()
    await put(database, settings, space, "app/old", {"value": value})
    async with database.sessions() as db:
        await service.delete_secret(db, SYSTEM, space.workspace_id, "app/old")
    with pytest.raises(NotFound) as deleted:
        await get(database, settings, space, "app/old")
    assert "deleted" in deleted.value.message
    async with database.sessions() as db:
        assert await service.list_secrets(db, SYSTEM, space.workspace_id) == []
        listed = await service.list_secrets(db, SYSTEM, space.workspace_id, include_deleted=True)
        assert [i.secret.path for i in listed] == ["app/old"]
        await service.undelete_secret(db, SYSTEM, space.workspace_id, "app/old")
        with pytest.raises(Conflict):
            await service.undelete_secret(db, SYSTEM, space.workspace_id, "app/old")
    assert (await get(database, settings, space, "app/old")).data == {"value": value}
    async with database.sessions() as db:
        await service.destroy_secret(db, SYSTEM, space.workspace_id, "app/old")
        assert await db.scalar(select(VaultSecretVersion.id)) is None
    with pytest.raises(NotFound):
        await get(database, settings, space, "app/old")


async def test_writing_a_deleted_secret_brings_it_back(
    settings: Settings, database: Database, space: Space
) -> None:
    await put(database, settings, space, "app/x", {"value": "1"})
    async with database.sessions() as db:
        await service.delete_secret(db, SYSTEM, space.workspace_id, "app/x")
    await put(database, settings, space, "app/x", {"value": "2"})
    assert (await get(database, settings, space, "app/x")).data == {"value": "2"}


async def test_expired_versions_are_refused(
    settings: Settings, database: Database, space: Space
) -> None:
    await put(
        database,
        settings,
        space,
        "tmp/token",
        {"value": "t"},
        expires_at=utcnow() + timedelta(hours=1),
    )
    async with database.sessions() as db:
        await db.execute(
            update(VaultSecretVersion).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await db.commit()
    with pytest.raises(service.SecretExpired) as expired:
        await get(database, settings, space, "tmp/token")
    assert expired.value.status_code == 410
    failed = await events(database, "secret.read")
    assert failed[0].outcome == "failed" and failed[0].details["error"] == "expired"
    with pytest.raises(ValidationFailed):
        await put(database, settings, space, "tmp/token", {"value": "t"}, expires_at=utcnow())
    # A new version without expiry reads again.
    await put(database, settings, space, "tmp/token", {"value": "fresh"})
    assert (await get(database, settings, space, "tmp/token")).data == {"value": "fresh"}


async def test_merge_keeps_other_keys_and_null_removes(
    settings: Settings, database: Database, space: Space
) -> None:
    await put(database, settings, space, "db/main", {"user": "app", "password": "p1"})
    await put(database, settings, space, "db/main", {"password": "p2", "host": "db"}, merge=True)
    assert (await get(database, settings, space, "db/main")).data == {
        "user": "app",
        "password": "p2",
        "host": "db",
    }
    await put(database, settings, space, "db/main", {"host": None}, merge=True)
    assert (await get(database, settings, space, "db/main")).data == {
        "user": "app",
        "password": "p2",
    }
    with pytest.raises(ValidationFailed):
        await put(
            database, settings, space, "db/main", {"user": None, "password": None}, merge=True
        )


async def test_metadata(settings: Settings, database: Database, space: Space) -> None:
    due = utcnow() + timedelta(days=30)
    await put(
        database,
        settings,
        space,
        "infra/dns",
        {"value": "k"},
        owner="ops",
        tags=["dns", "prod"],
        rotate_by=due,
    )
    async with database.sessions() as db:
        secret = await service.update_metadata(
            db, SYSTEM, space.workspace_id, "infra/dns", tags=["dns"], rotate_by=None
        )
        assert secret.owner == "ops" and secret.tags == ["dns"] and secret.rotate_by is None
        changed = await audit.query(db, action="secret.metadata_changed")
        assert changed[0].before["tags"] == ["dns", "prod"] and changed[0].after["tags"] == ["dns"]


async def test_bad_paths_are_refused_without_echo(
    settings: Settings, database: Database, space: Space
) -> None:
    for path in ("", "/", "a//b", "a/../b", "./a", "a b", "a/\u00e9", "x" * 513, "a/b?c"):
        with pytest.raises(ValidationFailed) as caught:
            await put(database, settings, space, path, {"value": "v"})
        assert path.strip("/") == "" or path not in caught.value.message


async def test_size_limit(
    tmp_path: Path, database_url: str, database: Database, space: Space
) -> None:
    settings = make_settings(tmp_path, database_url=database_url, vault_max_value_bytes=1024)
    with pytest.raises(ValidationFailed) as caught:
        await put(database, settings, space, "big", {"value": "x" * 2000})
    assert "limit is 1024" in caught.value.message


# --- references ----------------------------------------------------------------------


async def test_vault_references_resolve_by_slug_or_id(
    settings: Settings, database: Database, space: Space
) -> None:
    token = canary("token")
    await put(database, settings, space, "providers/openai", {"api_key": token, "org": "o"})
    await put(database, settings, space, "single", {"value": "only"})
    async with database.sessions() as db:
        by_slug = await service.resolve_reference(
            db,
            settings,
            f"vault://{space.slug}/providers/openai#api_key",
            purpose="gateway",
            workspace_id=space.workspace_id,
        )
        assert by_slug.get_secret_value() == token
        assert token not in repr(by_slug) and token not in str(by_slug)
        by_id = await service.resolve_reference(
            db, settings, f"vault://{space.workspace_id}/single", purpose="jobs"
        )
        assert by_id.get_secret_value() == "only"
        with pytest.raises(ValidationFailed) as which:
            await service.resolve_reference(
                db, settings, f"vault://{space.slug}/providers/openai", purpose="x"
            )
        assert "api_key, org" in which.value.message
        with pytest.raises(NotFound) as missing:
            await service.resolve_reference(
                db, settings, f"vault://{space.slug}/providers/openai#nope", purpose="x"
            )
        assert token not in missing.value.message
        with pytest.raises(Forbidden):
            await service.resolve_reference(
                db,
                settings,
                f"vault://{space.slug}/single",
                purpose="gateway",
                workspace_id="another-workspace",
            )
        raw = "sk-this-is-a-raw-key-pasted-by-mistake"
        with pytest.raises(ValidationFailed) as bad:
            await service.resolve_reference(db, settings, raw, purpose="x")
        assert raw not in bad.value.message
    resolved = await events(database, "secret.resolved")
    assert [e.details["purpose"] for e in resolved] == ["x", "x", "jobs", "gateway"]
    assert resolved[-1].actor == "system:gateway"
    assert all(token not in str(audit.as_dict(e)) for e in resolved)


# --- .env import and export ----------------------------------------------------------


async def test_env_import_export_round_trip_with_warnings(
    settings: Settings, database: Database, space: Space
) -> None:
    aws = "AKIA" + "ABCDEFGHIJKLMNOP"
    text = (
        "# app settings\n"
        "export DB_USER=app\n"
        'DB_PASSWORD="p@ss word \\"quoted\\" $HOME"\n'
        "AWS_ACCESS_KEY_ID=" + aws + "  # from the console\n"
        "PEM='-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----'\n"
    )
    async with database.sessions() as db:
        result = await service.import_env(
            db,
            settings,
            SYSTEM,
            space.workspace_id,
            "apps/web",
            text,
            source="/src/app/.env.example",
            committed_to_git=True,
        )
    kinds = [(w["kind"], w["key"]) for w in result.warnings]
    assert ("committed_to_git", None) in kinds and ("example_file", None) in kinds
    assert ("credential_format", "AWS_ACCESS_KEY_ID") in kinds
    assert ("credential_format", "PEM") in kinds
    assert ("credential_format", "DB_USER") not in kinds
    assert all(aws not in w["message"] for w in result.warnings)
    read = await get(database, settings, space, "apps/web")
    assert read.data == {
        "DB_USER": "app",
        "DB_PASSWORD": 'p@ss word "quoted" $HOME',
        "AWS_ACCESS_KEY_ID": aws,
        "PEM": "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----",
    }
    await put(database, settings, space, "apps/web/extra", {"EXTRA": "1"})
    async with database.sessions() as db:
        exported = await service.export_env(db, settings, SYSTEM, space.workspace_id, "apps/web")
    from hexahub.vault import dotenv

    assert dotenv.parse_env(exported) == {**read.data, "EXTRA": "1"}
    assert len(await events(database, "secret.exported")) == 2
    imported = await events(database, "secret.imported")
    assert imported[0].details["warnings"] == [
        "committed_to_git",
        "credential_format",
        "example_file",
    ]


async def test_env_parse_errors_name_the_line_not_the_value(
    settings: Settings, database: Database, space: Space
) -> None:
    hidden = canary()
    async with database.sessions() as db:
        for text, line in ((f"A=1\nB='{hidden}\n", 2), (f"A=1\n\n{hidden}\n", 3)):
            with pytest.raises(ValidationFailed) as caught:
                await service.import_env(db, settings, SYSTEM, space.workspace_id, "x", text)
            assert f"line {line}" in caught.value.message
            assert hidden not in caught.value.message


async def test_export_conflicting_keys(
    settings: Settings, database: Database, space: Space
) -> None:
    await put(database, settings, space, "env/a", {"TOKEN": "1"})
    await put(database, settings, space, "env/b", {"TOKEN": "2"})
    async with database.sessions() as db:
        with pytest.raises(Conflict) as caught:
            await service.export_env(db, settings, SYSTEM, space.workspace_id, "env")
    assert "TOKEN" in caught.value.message and "1" not in caught.value.message.split("TOKEN")[-1]


# --- master keys ---------------------------------------------------------------------


async def test_first_use_creates_a_private_key_file_and_warns(
    settings: Settings, database: Database, space: Space, caplog: pytest.LogCaptureFixture
) -> None:
    path = keyring.key_file_path(settings)
    assert not path.exists()
    with caplog.at_level(logging.WARNING, logger="hexahub.vault"):
        await put(database, settings, space, "a", {"value": "v"})
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "Back this file up" in caplog.text
    assert path.read_text().count("\n") > 3  # the header says how to keep it


async def test_a_missing_key_file_is_not_replaced_once_the_vault_holds_data(
    settings: Settings, database: Database, space: Space
) -> None:
    await put(database, settings, space, "a", {"value": "v"})
    path = keyring.key_file_path(settings)
    path.unlink()
    keyring.forget_keyrings()
    with pytest.raises(VaultLocked) as locked:
        await get(database, settings, space, "a")
    assert str(path) in locked.value.message and "Restore" in locked.value.message
    assert not path.exists()


async def test_wrong_master_key_fails_closed_with_a_clear_message(
    tmp_path: Path, database_url: str, database: Database, space: Space
) -> None:
    right = MasterKey.generate()
    wrong = MasterKey.generate()
    value = canary()
    good = make_settings(tmp_path, database_url=database_url, vault_master_key=right.encoded())
    await put(database, good, space, "infra/key", {"value": value})
    bad = make_settings(tmp_path, database_url=database_url, vault_master_key=wrong.encoded())
    with pytest.raises(VaultLocked) as locked:
        await get(database, bad, space, "infra/key")
    message = locked.value.message
    assert right.id in message and wrong.id in message and "wrong key" in message
    assert value not in message and locked.value.status_code == 503
    failed = await events(database, "secret.read")
    assert failed[0].outcome == "failed" and failed[0].details["error"] == "vault_locked"
    # A wrong key cannot write on top of data it cannot read either (merge needs the value).
    with pytest.raises(VaultLocked):
        await put(database, bad, space, "infra/key", {"x": "y"}, merge=True)
    assert (await get(database, good, space, "infra/key")).data == {"value": value}


async def test_tampered_ciphertext_is_detected(
    settings: Settings, database: Database, space: Space
) -> None:
    value = canary()
    await put(database, settings, space, "infra/key", {"value": value})
    async with database.sessions() as db:
        row = await db.scalar(select(VaultSecretVersion))
        assert row is not None
        flipped = bytearray(row.ciphertext)
        flipped[0] ^= 0xFF
        row.ciphertext = bytes(flipped)
        await db.commit()
    with pytest.raises(VaultIntegrityError) as caught:
        await get(database, settings, space, "infra/key")
    assert "integrity check" in caught.value.message and value not in caught.value.message
    failed = await events(database, "secret.read")
    assert failed[0].outcome == "failed" and failed[0].details["error"] == "vault_integrity_error"


async def test_a_ciphertext_moved_to_another_path_does_not_open(
    settings: Settings, database: Database, space: Space
) -> None:
    await put(database, settings, space, "prod/db", {"value": canary("prod")})
    await put(database, settings, space, "dev/db", {"value": "dev-password"})
    async with database.sessions() as db:
        rows = {
            path: version
            for version, path in (
                await db.execute(
                    select(VaultSecretVersion, VaultSecret.path).join(
                        VaultSecret, VaultSecret.id == VaultSecretVersion.secret_id
                    )
                )
            ).all()
        }
        # Someone with database access copies prod's sealed value over dev's.
        await db.execute(
            update(VaultSecretVersion)
            .where(VaultSecretVersion.id == rows["dev/db"].id)
            .values(
                nonce=rows["prod/db"].nonce,
                ciphertext=rows["prod/db"].ciphertext,
                wrapped_key=rows["prod/db"].wrapped_key,
                master_key_id=rows["prod/db"].master_key_id,
            )
        )
        await db.commit()
    with pytest.raises(VaultIntegrityError):
        await get(database, settings, space, "dev/db")


async def test_master_key_rotation_keeps_every_version_readable(
    settings: Settings, database: Database, space: Space
) -> None:
    values = {(path, n): canary(f"{path}-{n}") for path in ("a", "b/c", "d/e/f") for n in range(3)}
    for (path, _), value in sorted(values.items()):
        await put(database, settings, space, path, {"value": value})
    live = keyring.configured_keyring(settings)  # what a running server holds
    assert live is not None
    old_id = live.active.id

    # `hexahub vault rotate-master`, as another process would run it: its own keyring.
    rotating = keyring.Keyring.from_file(keyring.key_file_path(settings))
    new = service.add_master_key(settings, rotating)
    async with database.sessions() as db:
        assert await service.count_to_rewrap(db, rotating) == 9
    batches: list[int] = []
    report = await service.rewrap_all(database.sessions, rotating, batch=4, on_batch=batches.append)
    assert report.rewrapped == 9 and report.failed == [] and sum(batches) == 9
    async with database.sessions() as db:
        found = await service.status(db, settings)
        assert found.versions_by_key == {new.id: 9} and found.active_id == new.id
        assert found.key_ids == [new.id, old_id] and found.missing == []
        assert found.file_private is True
        # The old key wraps nothing now and can go.
        assert await service.retire_old_keys(db, rotating) == [old_id]

    # The running server never restarted: every version still reads through its keyring.
    for (path, n), value in values.items():
        assert (await get(database, settings, space, path, version=n + 1)).data == {"value": value}
    # And a fresh process with only the new key file reads them too; new writes use it.
    keyring.forget_keyrings()
    assert keyring.configured_keyring(settings).ids == [new.id]  # type: ignore[union-attr]
    for (path, n), value in values.items():
        assert (await get(database, settings, space, path, version=n + 1)).data == {"value": value}
    written = await put(database, settings, space, "a", {"value": "after"})
    assert written.master_key_id == new.id


async def test_rotation_with_environment_keys(
    tmp_path: Path, database_url: str, database: Database, space: Space
) -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    before = make_settings(tmp_path, database_url=database_url, vault_master_key=old.encoded())
    await put(database, before, space, "k", {"value": "v1"})
    await put(database, before, space, "k", {"value": "v2"})
    ring_before = keyring.configured_keyring(before)
    assert ring_before is not None
    with pytest.raises(ValidationFailed) as needs_env:
        service.add_master_key(before, ring_before)
    assert "HEXAHUB_VAULT_MASTER_KEY" in needs_env.value.message
    after = make_settings(
        tmp_path, database_url=database_url, vault_master_key=f"{new.encoded()},{old.encoded()}"
    )
    ring_after = keyring.configured_keyring(after)
    assert ring_after is not None
    report = await service.rewrap_all(database.sessions, ring_after)
    assert report.rewrapped == 2
    only_new = make_settings(tmp_path, database_url=database_url, vault_master_key=new.encoded())
    assert (await get(database, only_new, space, "k", version=1)).data == {"value": "v1"}
    assert (await get(database, only_new, space, "k")).data == {"value": "v2"}


async def test_system_callers_are_audited_by_label(
    settings: Settings, database: Database, space: Space
) -> None:
    await put(database, settings, space, "a", {"v": "1"})
    written = await events(database, "secret.written")
    assert written[0].actor == "test" and written[0].actor_user_id is None
