"""A workspace's prompt templates: bodies with {{variable}} slots filled in when used.

Templates are read by everyone in the workspace, created by members, changed and deleted
by their creator or an admin. Strangers are told a template does not exist.

    template_access(db, principal, template_id, need="read", *, path="") -> TemplateAccess
    list_templates(db, access) -> list[PromptTemplate]
    create_template(db, access, *, name, body, description="") -> PromptTemplate
    update_template(db, target, *, name=UNSET, body=UNSET, description=UNSET)
        -> PromptTemplate
    delete_template(db, target) -> None
    template_variables(body) -> list[str]
    render_template(body, variables) -> str
    template_dict(t) -> the template as an answer's shape
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.chat.models import MAX_DESCRIPTION, MAX_TEMPLATE_NAME, PromptTemplate
from hexahub.chat.service import UNSET, access_or_missing, refuse, require_member
from hexahub.core.db import new_id
from hexahub.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from hexahub.identity import audit
from hexahub.identity.authz import Principal, WorkspaceAccess
from hexahub.identity.models import Role

MAX_TEMPLATE_BODY = 50_000


@dataclass
class TemplateAccess:
    access: WorkspaceAccess
    template: PromptTemplate

    @property
    def can_change(self) -> bool:
        own = (
            self.template.created_by == self.access.user.id
            and self.access.role.at_least(Role.member)
            and self.access.principal.has_scope("write")
        )
        admin = self.access.role.at_least(Role.admin) and self.access.principal.has_scope("admin")
        return own or admin


async def template_access(
    db: AsyncSession,
    principal: Principal,
    template_id: str,
    need: Literal["read", "change"] = "read",
    *,
    path: str = "",
) -> TemplateAccess:
    """Load a template the caller may read (anyone in its workspace) or change (its
    creator, or an admin). NotFound for strangers, Forbidden (audited) for the rest."""
    missing = NotFound(f"no template with id {template_id}")
    template = await db.get(PromptTemplate, template_id)
    if template is None:
        raise missing
    access = await access_or_missing(db, principal, template.workspace_id, need, path, missing)
    target = TemplateAccess(access, template)
    if need == "change" and not target.can_change:
        refusal = "only the template's creator or a workspace admin may change it"
        await refuse(db, principal, need, path, "prompt_template", template, refusal)
    return target


def template_dict(template: PromptTemplate) -> dict[str, Any]:
    return {
        "id": template.id,
        "workspace_id": template.workspace_id,
        "name": template.name,
        "description": template.description,
        "body": template.body,
        "variables": template_variables(template.body),
        "created_by": template.created_by,
        "created_at": template.created_at,
        "updated_at": template.updated_at,
    }


VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")


def template_variables(body: str) -> list[str]:
    """The {{variable}} names in a template body, each once, in order of appearance."""
    return list(dict.fromkeys(VARIABLE.findall(body)))


def render_template(body: str, variables: Mapping[str, str]) -> str:
    """Fill every {{variable}}; a value is inserted as it is (never expanded again).
    A variable without a value is a 422 that names every missing one."""
    missing = [name for name in template_variables(body) if name not in variables]
    if missing:
        raise ValidationFailed(
            f"variables: no value for {', '.join(missing)}",
            details={"missing": missing},
        )
    return VARIABLE.sub(lambda m: str(variables[m.group(1)]), body)


def _check_template_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise ValidationFailed("name: give the template a name")
    if len(name) > MAX_TEMPLATE_NAME:
        raise ValidationFailed(f"name: at most {MAX_TEMPLATE_NAME} characters")
    return name


def _check_template_body(body: str) -> str:
    if not body.strip():
        raise ValidationFailed("body: the template is empty")
    if len(body) > MAX_TEMPLATE_BODY:
        raise ValidationFailed(f"body: at most {MAX_TEMPLATE_BODY} characters")
    return body


def _check_description(text: str) -> str:
    if len(text) > MAX_DESCRIPTION:
        raise ValidationFailed(f"description: at most {MAX_DESCRIPTION} characters")
    return text


async def _name_taken(
    db: AsyncSession, workspace_id: str, name: str, except_id: str | None = None
) -> None:
    found = await db.scalar(
        select(PromptTemplate.id).where(
            PromptTemplate.workspace_id == workspace_id, PromptTemplate.name == name
        )
    )
    if found is not None and found != except_id:
        raise _name_in_use(name)


def _name_in_use(name: str) -> Conflict:
    return Conflict(f"a template named {name!r} already exists in this workspace")


async def _commit(db: AsyncSession, name: str) -> None:
    """Commit; a template given the same name meanwhile is a 409."""
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise _name_in_use(name) from None


def _audit(
    db: AsyncSession, action: str, actor: Principal, template: PromptTemplate, **fields: Any
) -> None:
    audit.record(
        db,
        action,
        actor=actor,
        workspace_id=template.workspace_id,
        target_type="prompt_template",
        target_id=template.id,
        **fields,
    )


async def list_templates(db: AsyncSession, access: WorkspaceAccess) -> list[PromptTemplate]:
    """The workspace's templates by name."""
    found = await db.scalars(
        select(PromptTemplate)
        .where(PromptTemplate.workspace_id == access.workspace.id)
        .order_by(PromptTemplate.name)
    )
    return list(found.all())


async def create_template(
    db: AsyncSession,
    access: WorkspaceAccess,
    *,
    name: str,
    body: str,
    description: str = "",
) -> PromptTemplate:
    """A new template in the workspace (members and up; audited). Names are unique in a
    workspace (409 otherwise)."""
    require_member(access)
    name = _check_template_name(name)
    template = PromptTemplate(
        id=new_id(),
        workspace_id=access.workspace.id,
        name=name,
        body=_check_template_body(body),
        description=_check_description(description),
        created_by=access.user.id,
    )
    await _name_taken(db, access.workspace.id, name)
    db.add(template)
    _audit(
        db,
        "template.created",
        access.principal,
        template,
        after={"name": name, "variables": template_variables(template.body)},
    )
    await _commit(db, name)
    return template


async def update_template(
    db: AsyncSession,
    target: TemplateAccess,
    *,
    name: str = UNSET,
    body: str = UNSET,
    description: str = UNSET,
) -> PromptTemplate:
    """Change a template (its creator or an admin; audited)."""
    if not target.can_change:
        raise Forbidden("only the template's creator or a workspace admin may change it")
    template = target.template
    changes: dict[str, Any] = {}
    if name is not UNSET:
        changes["name"] = _check_template_name(name)
        await _name_taken(db, template.workspace_id, changes["name"], except_id=template.id)
    if body is not UNSET:
        changes["body"] = _check_template_body(body)
    if description is not UNSET:
        changes["description"] = _check_description(description)
    before = {k: getattr(template, k) for k in changes if k != "body"}
    for key, value in changes.items():
        setattr(template, key, value)
    _audit(
        db,
        "template.updated",
        target.access.principal,
        template,
        before=before,
        after={k: v for k, v in changes.items() if k != "body"},
        details={"changed": sorted(changes)},
    )
    await _commit(db, template.name)
    return template


async def delete_template(db: AsyncSession, target: TemplateAccess) -> None:
    """Delete a template (its creator or an admin; audited)."""
    if not target.can_change:
        raise Forbidden("only the template's creator or a workspace admin may delete it")
    template = target.template
    _audit(
        db, "template.deleted", target.access.principal, template, before={"name": template.name}
    )
    await db.delete(template)
    await db.commit()
