"""Secret paths and the path-policy decision (pure functions, no database).

Owners and admins of a workspace may do everything in its vault: they manage the policies.
Everyone else is denied unless a policy grants the capability under a prefix of the path:
- a role grant (`role: member`) applies to that role and every stronger one;
- an API key is further limited: it needs the key's scope (`read` for read and list,
  `write` for write) *and* a policy naming that very key, on top of what its owner may do.
HexaHub itself (reference resolution, the CLI acting as the system) is not limited.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hexahub.core.errors import ValidationFailed
from hexahub.core.openapi import SPACE
from hexahub.identity.models import Role
from hexahub.vault.models import MAX_PATH

CAPABILITIES = ("read", "write", "list")
# The API-key scope each capability needs.
SCOPE_FOR = {"read": "read", "list": "read", "write": "write"}
_SEGMENT = re.compile(r"^[A-Za-z0-9_.@+=-]+$")
PATH_RULE = (
    "use segments of letters, digits and _ . @ + = - separated by single slashes "
    f"(at most {MAX_PATH} characters), like infra/proxmox/api-token"
)

# check_path's rule as JSON Schema, for the OpenAPI document: segments as above (neither
# `.` nor `..`), and the surrounding spaces and slashes check_path trims.
_SEGMENT_PATTERN = rf"(?!\.{{1,2}}(?:/|[{SPACE}]*$))[A-Za-z0-9_.@+=-]+"
PATH_SCHEMA: dict[str, Any] = {
    "maxLength": MAX_PATH,
    "pattern": rf"^[{SPACE}]*/*{_SEGMENT_PATTERN}(?:/{_SEGMENT_PATTERN})*/*[{SPACE}]*$",
    "examples": ["infra/proxmox/api-token"],
}
PREFIX_SCHEMA: dict[str, Any] = {
    "maxLength": MAX_PATH,
    "pattern": rf"^[{SPACE}]*/*(?:{_SEGMENT_PATTERN}(?:/{_SEGMENT_PATTERN})*)?/*[{SPACE}]*$",
    "examples": ["infra"],
}


def check_path(path: str, *, field: str = "path", allow_empty: bool = False) -> str:
    """A normalised secret path (no leading or trailing slash). Never echoes the input,
    which might be a value pasted into the wrong field."""
    cleaned = path.strip().strip("/")
    if not cleaned:
        if allow_empty:
            return ""
        raise ValidationFailed(f"{field}: give a path; {PATH_RULE}")
    segments = cleaned.split("/")
    if len(cleaned) > MAX_PATH or any(not _SEGMENT.match(s) or s in (".", "..") for s in segments):
        raise ValidationFailed(f"{field}: {PATH_RULE}")
    return cleaned


def covers(prefix: str, path: str) -> bool:
    """`infra` covers `infra` and `infra/...`, not `infra2`; `` covers everything."""
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def overlaps(prefix: str, area: str) -> bool:
    """Some path under `area` may be covered by `prefix`."""
    return covers(prefix, area) or covers(area, prefix)


@dataclass(frozen=True)
class Grant:
    path_prefix: str
    capabilities: frozenset[str]
    role: Role | None = None
    api_key_id: str | None = None


@dataclass(frozen=True)
class Subject:
    """What the decision needs to know about a caller."""

    system: bool = False
    role: Role | None = None
    api_key_id: str | None = None
    scopes: frozenset[str] = frozenset()

    @property
    def manages(self) -> bool:
        """Owners, admins and HexaHub itself: everything, and the policies."""
        return self.system or (self.role is not None and self.role.at_least(Role.admin))


def missing_scope(subject: Subject, capability: str) -> str | None:
    """The API-key scope the subject lacks for `capability`, if any."""
    if subject.api_key_id is None:
        return None
    scope = SCOPE_FOR[capability]
    return None if scope in subject.scopes else scope


def _role_grants(subject: Subject, grants: Iterable[Grant], capability: str) -> list[Grant]:
    role = subject.role
    if role is None:
        return []
    return [
        g
        for g in grants
        if g.role is not None and capability in g.capabilities and role.at_least(g.role)
    ]


def _key_grants(subject: Subject, grants: Iterable[Grant], capability: str) -> list[Grant]:
    return [
        g
        for g in grants
        if g.api_key_id is not None
        and g.api_key_id == subject.api_key_id
        and capability in g.capabilities
    ]


def allows(subject: Subject, grants: Iterable[Grant], capability: str, path: str) -> bool:
    if subject.system:
        return True
    if missing_scope(subject, capability):
        return False
    grants = list(grants)
    owner_may = subject.manages or any(
        covers(g.path_prefix, path) for g in _role_grants(subject, grants, capability)
    )
    if subject.api_key_id is None:
        return owner_may
    return owner_may and any(
        covers(g.path_prefix, path) for g in _key_grants(subject, grants, capability)
    )


def allows_somewhere(subject: Subject, grants: Iterable[Grant], capability: str, area: str) -> bool:
    """Whether any path at or under `area` could be allowed (deciding to refuse a list)."""
    if subject.system:
        return True
    if missing_scope(subject, capability):
        return False
    grants = list(grants)
    owner_may = subject.manages or any(
        overlaps(g.path_prefix, area) for g in _role_grants(subject, grants, capability)
    )
    if subject.api_key_id is None:
        return owner_may
    return owner_may and any(
        overlaps(g.path_prefix, area) for g in _key_grants(subject, grants, capability)
    )
