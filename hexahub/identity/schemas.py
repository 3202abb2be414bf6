"""Request and response shapes of the identity API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hexahub.core.bodies import JsonBody
from hexahub.core.openapi import NOT_BLANK, SPACE

RoleName = Literal["viewer", "member", "admin", "owner"]
GrantableRole = Literal["viewer", "member", "admin"]
ScopeName = Literal["read", "write", "admin", "gateway"]
# What service.normalise_email accepts, before it trims and lower-cases the address.
EMAIL: dict[str, Any] = {
    "pattern": f"^[{SPACE}]*[^@{SPACE}]{{1,64}}@[^@{SPACE}]{{1,255}}[{SPACE}]*$"
}
# service.check_password_rules
NEW_PASSWORD: dict[str, Any] = {"minLength": 10}


class Body(JsonBody):
    model_config = ConfigDict(str_max_length=4096)


class LoginRequest(Body):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class RefreshRequest(Body):
    refresh_token: str = Field(max_length=200)


class LogoutRequest(Body):
    refresh_token: str | None = Field(default=None, max_length=200)


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str
    is_admin: bool
    is_active: bool
    has_password: bool
    created_at: str | None
    last_login_at: str | None


class MeUpdate(Body):
    display_name: str = Field(max_length=200)


class PasswordChange(Body):
    current_password: str | None = Field(default=None, max_length=1024)
    new_password: str = Field(max_length=1024, json_schema_extra=NEW_PASSWORD)


class UserCreate(Body):
    email: str = Field(max_length=320, json_schema_extra=EMAIL)
    password: str | None = Field(
        default=None,
        max_length=1024,
        description="None: the person signs in through single sign-on only",
        json_schema_extra=NEW_PASSWORD,
    )
    display_name: str = Field(default="", max_length=200)
    is_admin: bool = False


class UserUpdate(Body):
    is_active: bool | None = None
    is_admin: bool | None = None
    display_name: str | None = Field(default=None, max_length=200)


class WorkspaceCreate(Body):
    name: str = Field(max_length=200, json_schema_extra=NOT_BLANK)
    description: str = Field(default="", max_length=2000)
    organization_id: str | None = Field(default=None, max_length=36)


class WorkspaceUpdate(Body):
    name: str | None = Field(default=None, max_length=200, json_schema_extra=NOT_BLANK)
    description: str | None = Field(default=None, max_length=2000)


class WorkspaceOut(BaseModel):
    id: str
    organization_id: str
    name: str
    slug: str
    description: str
    created_at: str
    role: RoleName | None = None


class MemberAdd(Body):
    email: str = Field(max_length=320)
    role: GrantableRole = "member"


class MemberUpdate(Body):
    role: GrantableRole


class MemberOut(BaseModel):
    user_id: str
    email: str
    display_name: str
    role: RoleName
    joined_at: str


class OwnershipTransfer(Body):
    user_id: str = Field(max_length=36)


class GroupCreate(Body):
    name: str = Field(max_length=200, json_schema_extra=NOT_BLANK)


class GroupOut(BaseModel):
    id: str
    name: str
    source: str
    member_ids: list[str]


class GroupMemberAdd(Body):
    email: str = Field(max_length=320)


class GroupRoleSet(Body):
    role: GrantableRole | None


class KeyCreate(Body):
    name: str = Field(max_length=200, json_schema_extra=NOT_BLANK)
    scopes: list[ScopeName] = Field(min_length=1, max_length=4)
    workspace_id: str | None = Field(default=None, max_length=36)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    user_id: str
    workspace_id: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The secret. Shown once; store it now.")


class AuditEventOut(BaseModel):
    id: str
    created_at: str
    workspace_id: str | None
    actor: str
    actor_user_id: str | None
    actor_key_id: str | None
    ip: str
    action: str
    outcome: str
    target_type: str
    target_id: str
    before: dict[str, object] | None
    after: dict[str, object] | None
    details: dict[str, object] | None
