"""A provider's API key can live in the vault: the table holds only the reference, and
the router gets the value (audited as a secret read)."""

from __future__ import annotations

import uuid

from sqlalchemy import select, text

from hexahub.core.db import Database
from hexahub.gateway import service
from hexahub.gateway.config import ProviderSpec
from hexahub.identity import service as identity
from hexahub.identity import workspaces
from hexahub.identity.models import AuditEvent
from hexahub.settings import Settings
from hexahub.vault import service as vault


async def test_vault_reference_is_resolved_for_the_router_only(settings: Settings) -> None:
    database = Database(settings)
    token = f"sk-from-vault-{uuid.uuid4().hex}"
    try:
        async with database.sessions() as db:
            admin = await identity.create_first_admin(
                db, email="owner@example.org", password="correct horse battery"
            )
            workspace = (await workspaces.workspaces_of(db, admin.id))[0][0]
            await vault.write_secret(
                db,
                settings,
                vault.Caller.system("test"),
                workspace.id,
                "providers/openai",
                {"api_key": token},
            )
            reference = f"vault://{workspace.slug}/providers/openai#api_key"
            await service.create_provider(
                db,
                ProviderSpec(
                    name="openai",
                    kind="openai",
                    base_url="https://example.invalid/v1",
                    api_key=reference,
                ),
                settings.resolved_secret_key(),
            )
            await db.commit()
        async with database.sessions() as db:
            snapshot = await service.load_snapshot(db, settings)
            assert snapshot.providers["openai"].api_key == token
            stored = (
                await db.execute(text("SELECT api_key_sealed FROM gateway_providers"))
            ).scalar()
            assert stored == reference
            shown = service.provider_dict((await service.list_providers(db))[0])
            assert shown["api_key_source"] == "vault" and token not in str(shown)
            reads = await db.scalars(
                select(AuditEvent.action).where(AuditEvent.action == "secret.resolved")
            )
            assert list(reads) == ["secret.resolved"]
    finally:
        await database.dispose()


async def test_unreadable_reference_leaves_the_provider_without_a_key(settings: Settings) -> None:
    database = Database(settings)
    try:
        async with database.sessions() as db:
            await identity.create_first_admin(
                db, email="owner@example.org", password="correct horse battery"
            )
            await service.create_provider(
                db,
                ProviderSpec(
                    name="claude",
                    kind="anthropic",
                    base_url="https://example.invalid",
                    api_key="vault://default/does/not/exist#key",
                ),
                settings.resolved_secret_key(),
            )
            await db.commit()
        async with database.sessions() as db:
            snapshot = await service.load_snapshot(db, settings)
            assert snapshot.providers["claude"].api_key is None
    finally:
        await database.dispose()
