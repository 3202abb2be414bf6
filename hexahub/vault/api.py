"""Vault routes under /api/workspaces/{workspace_id}/secrets.

Layout (as Vault's KV v2, so a path can hold any name): `data/<path>` is the value (GET
reads, PUT writes, PATCH changes some keys, DELETE soft-deletes), `metadata/<path>` the
metadata and version history, `undelete/<path>` and `destroy/<path>` what they say,
`import/<path>` and `export` .env files, `policies` the path policies.

Any member reaches these routes; what they may do there is decided per path by the
vault's policies (service.authorize), which audits every refusal. Responses that carry a
value are marked `Cache-Control: no-store`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse

from hexahub.core.db import utcnow
from hexahub.core.deps import DbSession, RuntimeDep
from hexahub.core.errors import Forbidden, NotFound, Unauthenticated, ValidationFailed
from hexahub.identity.authz import (
    WorkspaceAccess,
    WorkspaceAdmin,
    WorkspaceAdminReader,
    credentials,
    identify,
    workspace_access,
)
from hexahub.identity.models import Role
from hexahub.vault import policies, service
from hexahub.vault.models import VaultSecretVersion
from hexahub.vault.schemas import (
    EnvImport,
    Imported,
    ImportWarning,
    MetadataUpdate,
    PolicyCreate,
    PolicyOut,
    SecretData,
    SecretMetadataOut,
    SecretOut,
    SecretPatch,
    SecretWrite,
    VersionOut,
    Written,
)
from hexahub.vault.service import Caller

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in, or the credentials are not valid"},
    403: {"description": "No policy (or API-key scope) allows this; the attempt is audited"},
    404: {"description": "No such workspace or secret, or not visible to the caller"},
    409: {"description": "Check-and-set failed, or the secret is in another state"},
    410: {"description": "The secret's current value has expired"},
    422: {"description": "The request is malformed; the message names the field"},
    503: {"description": "The vault is locked: its master key is missing or wrong"},
}

router = APIRouter(
    prefix="/api/workspaces/{workspace_id}/secrets", tags=["secrets"], responses=ERRORS
)


async def vault_access(
    request: Request, workspace_id: str, db: DbSession, _: None = Depends(credentials)
) -> WorkspaceAccess:
    """Any role in the workspace; the vault's policies decide the rest. Refusals here
    (no role, an API key without even the read scope) are audited too."""
    principal = await identify(request, db)
    if principal is None:
        raise Unauthenticated(
            "sign in, or send an API key or access token in the Authorization header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        return await workspace_access(
            db, principal, workspace_id, Role.viewer, "read", path=request.url.path
        )
    except (Forbidden, NotFound) as exc:
        # Someone without a role is told the workspace does not exist; the event goes to the
        # installation's log only, not to that workspace's.
        await service.record_denied(
            db,
            Caller(principal=service.detached(principal)),
            workspace_id if isinstance(exc, Forbidden) else None,
            reason=exc.message,
            details={"route": request.url.path[:300], "workspace_id": workspace_id},
        )
        raise


SecretsAccess = Annotated[WorkspaceAccess, Depends(vault_access)]
SecretPath = Annotated[str, PathParam(json_schema_extra=policies.PATH_SCHEMA)]
NO_STORE = {"Cache-Control": "no-store"}


def _version_out(row: VaultSecretVersion) -> VersionOut:
    return VersionOut(
        version=row.version,
        created_at=row.created_at,
        created_by=row.created_by,
        key_names=list(row.key_names),
        expires_at=row.expires_at,
        expired=service.is_expired(row),
    )


def _written(path: str, row: VaultSecretVersion) -> Written:
    return Written(
        path=path,
        version=row.version,
        created_at=row.created_at,
        key_names=list(row.key_names),
        expires_at=row.expires_at,
    )


def _expiry(body: SecretWrite) -> Any:
    if body.expires_at is not None and body.ttl_seconds is not None:
        raise ValidationFailed("give expires_at or ttl_seconds, not both")
    if body.ttl_seconds is not None:
        return utcnow() + timedelta(seconds=body.ttl_seconds)
    return body.expires_at


@router.get("", summary="Secrets I may list, with metadata (never values)")
async def list_secrets(
    access: SecretsAccess,
    db: DbSession,
    prefix: Annotated[
        str,
        Query(
            max_length=512,
            description="Only at or under this path",
            json_schema_extra=policies.PREFIX_SCHEMA,
        ),
    ] = "",
    deleted: Annotated[bool, Query(description="Include soft-deleted secrets")] = False,
) -> list[SecretOut]:
    workspace_id = access.workspace.id
    found = await service.list_secrets(
        db, Caller.of(access), workspace_id, prefix=prefix, include_deleted=deleted
    )
    return [SecretOut(**service.summary_dict(i.secret, i.current)) for i in found]


@router.get("/data/{path:path}", summary="Read a secret's value (audited)")
async def read_secret(
    path: SecretPath,
    access: SecretsAccess,
    db: DbSession,
    runtime: RuntimeDep,
    response: Response,
    version: Annotated[
        int | None, Query(ge=1, le=1_000_000_000, description="Default: the current one")
    ] = None,
) -> SecretData:
    workspace_id = access.workspace.id
    read = await service.read_secret(
        db, runtime.settings, Caller.of(access), workspace_id, path, version=version
    )
    response.headers.update(NO_STORE)
    return SecretData(
        path=read.secret.path,
        version=read.version.version,
        created_at=read.version.created_at,
        expires_at=read.version.expires_at,
        data=read.data,
    )


@router.put("/data/{path:path}", summary="Write a new version (check-and-set with `cas`)")
async def write_secret(
    path: SecretPath, body: SecretWrite, access: SecretsAccess, db: DbSession, runtime: RuntimeDep
) -> Written:
    workspace_id = access.workspace.id
    row = await service.write_secret(
        db,
        runtime.settings,
        Caller.of(access),
        workspace_id,
        path,
        dict(body.data),
        cas=body.cas,
        expires_at=_expiry(body),
        owner=body.owner,
        tags=body.tags,
        rotate_by=body.rotate_by,
    )
    return _written(policies.check_path(path), row)


@router.patch(
    "/data/{path:path}", summary="Set or remove some keys, keeping the others (a new version)"
)
async def patch_secret(
    path: SecretPath, body: SecretPatch, access: SecretsAccess, db: DbSession, runtime: RuntimeDep
) -> Written:
    workspace_id = access.workspace.id
    row = await service.write_secret(
        db,
        runtime.settings,
        Caller.of(access),
        workspace_id,
        path,
        dict(body.data),
        cas=body.cas,
        merge=True,
        expires_at=_expiry(body),
        owner=body.owner,
        tags=body.tags,
        rotate_by=body.rotate_by,
    )
    return _written(policies.check_path(path), row)


@router.delete(
    "/data/{path:path}", summary="Delete a secret (soft: undelete restores it)", status_code=204
)
async def delete_secret(path: SecretPath, access: SecretsAccess, db: DbSession) -> Response:
    await service.delete_secret(db, Caller.of(access), access.workspace.id, path)
    return Response(status_code=204)


@router.post("/undelete/{path:path}", summary="Restore a soft-deleted secret")
async def undelete_secret(path: SecretPath, access: SecretsAccess, db: DbSession) -> SecretOut:
    workspace_id = access.workspace.id
    caller = Caller.of(access)
    await service.undelete_secret(db, caller, workspace_id, path)
    secret, versions = await service.describe_secret(db, caller, workspace_id, path)
    return SecretOut(**service.summary_dict(secret, versions[0] if versions else None))


@router.delete(
    "/destroy/{path:path}",
    summary="Destroy a secret and every version for good (owners and admins)",
    status_code=204,
)
async def destroy_secret(path: SecretPath, access: SecretsAccess, db: DbSession) -> Response:
    await service.destroy_secret(db, Caller.of(access), access.workspace.id, path)
    return Response(status_code=204)


@router.get("/metadata/{path:path}", summary="A secret's metadata and version history")
async def secret_metadata(
    path: SecretPath, access: SecretsAccess, db: DbSession
) -> SecretMetadataOut:
    secret, versions = await service.describe_secret(
        db, Caller.of(access), access.workspace.id, path
    )
    current = next((v for v in versions if v.version == secret.current_version), None)
    return SecretMetadataOut(
        **service.summary_dict(secret, current), versions=[_version_out(v) for v in versions]
    )


@router.patch("/metadata/{path:path}", summary="Change a secret's owner, tags or rotation date")
async def update_metadata(
    path: SecretPath, body: MetadataUpdate, access: SecretsAccess, db: DbSession
) -> SecretOut:
    workspace_id = access.workspace.id
    caller = Caller.of(access)
    changes: dict[str, Any] = {}
    if "rotate_by" in body.model_fields_set:
        changes["rotate_by"] = body.rotate_by
    await service.update_metadata(
        db, caller, workspace_id, path, owner=body.owner, tags=body.tags, **changes
    )
    secret, versions = await service.describe_secret(db, caller, workspace_id, path)
    current = next((v for v in versions if v.version == secret.current_version), None)
    return SecretOut(**service.summary_dict(secret, current))


@router.post(
    "/import/{path:path}",
    summary="Store a .env file's variables as one secret's keys (warns about leaked files)",
)
async def import_env(
    path: SecretPath, body: EnvImport, access: SecretsAccess, db: DbSession, runtime: RuntimeDep
) -> Imported:
    workspace_id = access.workspace.id
    result = await service.import_env(
        db,
        runtime.settings,
        Caller.of(access),
        workspace_id,
        path,
        body.content,
        source=body.source,
        committed_to_git=body.committed_to_git,
        cas=body.cas,
        merge=body.merge,
    )
    written = _written(policies.check_path(path), result.version)
    return Imported(**written.model_dump(), warnings=[ImportWarning(**w) for w in result.warnings])


@router.get(
    "/export",
    summary="Secrets at or under a path as a .env file (needs read on each; audited)",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "The .env file"}},
)
async def export_env(
    access: SecretsAccess,
    db: DbSession,
    runtime: RuntimeDep,
    prefix: Annotated[
        str,
        Query(
            max_length=512, description="A path or a prefix", json_schema_extra=policies.PATH_SCHEMA
        ),
    ],
) -> PlainTextResponse:
    text = await service.export_env(
        db, runtime.settings, Caller.of(access), access.workspace.id, prefix
    )
    name = policies.check_path(prefix).replace("/", "_")
    return PlainTextResponse(
        text,
        headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}.env"'},
    )


# --- policies ------------------------------------------------------------------------


@router.get("/policies", summary="The workspace's vault path policies (admins)")
async def list_policies(access: WorkspaceAdminReader, db: DbSession) -> list[PolicyOut]:
    found = await service.list_policies(db, Caller.of(access), access.workspace.id)
    return [PolicyOut(**service.policy_dict(p)) for p in found]


@router.post("/policies", summary="Grant a role or an API key access to a path", status_code=201)
async def create_policy(body: PolicyCreate, access: WorkspaceAdmin, db: DbSession) -> PolicyOut:
    policy = await service.create_policy(
        db,
        Caller.of(access),
        access.workspace.id,
        path_prefix=body.path_prefix,
        capabilities=list(body.capabilities),
        role=body.role,
        api_key_id=body.api_key_id,
        description=body.description,
    )
    return PolicyOut(**service.policy_dict(policy))


@router.delete("/policies/{policy_id}", summary="Remove a path policy", status_code=204)
async def delete_policy(policy_id: str, access: WorkspaceAdmin, db: DbSession) -> Response:
    await service.delete_policy(db, Caller.of(access), access.workspace.id, policy_id)
    return Response(status_code=204)
