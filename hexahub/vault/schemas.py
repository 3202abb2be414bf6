"""Request and response shapes of the vault API. Values appear only in `SecretData.data`
(a read, audited) and in write requests; every other shape holds names and metadata."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hexahub.core.bodies import JsonBody
from hexahub.core.timestamps import Timestamp
from hexahub.vault import policies, service

Capability = Literal["read", "write", "list"]
# service.check_data, check_key_name and check_tags, as JSON Schema.
KEY_NAMES: dict[str, Any] = {"propertyNames": {"pattern": service.KEY_NAME.pattern}}
SECRET_DATA: dict[str, Any] = {"minProperties": 1, "maxProperties": service.MAX_KEYS, **KEY_NAMES}
TAGS: dict[str, Any] = {"items": {"pattern": service.TAG.pattern}}


class Body(JsonBody):
    pass


class SecretWrite(Body):
    # expires_at or ttl_seconds, not both (api._expiry)
    model_config = ConfigDict(
        json_schema_extra={
            "not": {
                "required": ["expires_at", "ttl_seconds"],
                "properties": {
                    "expires_at": {"type": "string"},
                    "ttl_seconds": {"type": "integer"},
                },
            }
        }
    )

    data: dict[str, str] = Field(
        description='The secret\'s keys and values, e.g. {"username": ..., "password": ...}; '
        "a new version holds exactly these keys.",
        json_schema_extra=SECRET_DATA,
    )
    cas: int | None = Field(
        default=None,
        ge=0,
        description="Check-and-set: write only if the current version is this number "
        "(0: only if the secret does not exist yet). A mismatch answers 409.",
    )
    expires_at: Timestamp | None = Field(
        default=None,
        description="A moment in the future; this version's value is refused after it (410).",
    )
    ttl_seconds: int | None = Field(
        default=None, ge=1, le=10 * 365 * 86400, description="Or: expire this long from now."
    )
    owner: str | None = Field(default=None, max_length=320)
    tags: list[str] | None = Field(default=None, max_length=20, json_schema_extra=TAGS)
    rotate_by: Timestamp | None = Field(
        default=None, description="When the value should next be rotated at its source."
    )


class SecretPatch(SecretWrite):
    data: dict[str, str | None] = Field(  # type: ignore[assignment]
        description="Keys to set; a null removes that key. Other keys keep their values.",
        json_schema_extra=SECRET_DATA,
    )


class MetadataUpdate(Body):
    owner: str | None = Field(default=None, max_length=320)
    tags: list[str] | None = Field(default=None, max_length=20, json_schema_extra=TAGS)
    rotate_by: Timestamp | None = Field(default=None, description="null clears it")


class EnvImport(Body):
    content: str = Field(max_length=1024 * 1024, description="The .env file's text.")
    source: str = Field(
        default="", max_length=500, description="Where the file came from (its name or path)."
    )
    committed_to_git: bool = Field(
        default=False,
        description="The file is tracked by git or appears in a repository's history "
        "(`hexahub secret import` finds out by asking git).",
    )
    cas: int | None = Field(default=None, ge=0)
    merge: bool = Field(default=False, description="Keep the secret's other keys.")


class VersionOut(BaseModel):
    version: int
    created_at: datetime
    created_by: str
    key_names: list[str]
    expires_at: datetime | None
    expired: bool


class SecretOut(BaseModel):
    path: str
    current_version: int
    key_names: list[str]
    owner: str
    tags: list[str]
    rotate_by: datetime | None
    rotation_due: bool
    expires_at: datetime | None
    expired: bool
    deleted: bool
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime
    created_by: str
    updated_by: str


class SecretMetadataOut(SecretOut):
    versions: list[VersionOut]


class SecretData(BaseModel):
    path: str
    version: int
    created_at: datetime
    expires_at: datetime | None
    data: dict[str, str]


class Written(BaseModel):
    path: str
    version: int
    created_at: datetime
    key_names: list[str]
    expires_at: datetime | None


class ImportWarning(BaseModel):
    key: str | None
    kind: str
    message: str


class Imported(Written):
    warnings: list[ImportWarning]


class PolicyCreate(Body):
    model_config = ConfigDict(
        # Exactly one of role and api_key_id (service.create_policy).
        json_schema_extra={
            "oneOf": [
                {"required": ["role"], "properties": {"role": {"type": "string"}}},
                {"required": ["api_key_id"], "properties": {"api_key_id": {"type": "string"}}},
            ]
        },
    )
    path_prefix: str = Field(
        default="",
        json_schema_extra=policies.PREFIX_SCHEMA,
        max_length=512,
        description='"" covers every path; "infra" covers infra and everything under infra/.',
    )
    role: Literal["viewer", "member"] | None = Field(
        default=None, description="Grant to this role and every stronger one."
    )
    api_key_id: str | None = Field(
        default=None, max_length=36, description="Or: grant to this API key alone."
    )
    capabilities: list[Capability] = Field(min_length=1)
    description: str = Field(default="", max_length=500)


class PolicyOut(BaseModel):
    id: str
    path_prefix: str
    role: str | None
    api_key_id: str | None
    capabilities: list[str]
    description: str
    created_by: str
    created_at: str | None
