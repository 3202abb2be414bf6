"""Conversations, messages and prompt templates: the chat's logic, for the API and the pages.

Who may do what (the same for the API and the pages, because both go through here):
a conversation is readable by its owner and, when `shared`, by everyone with a role in its
workspace; only its owner (with at least the member role) changes it or talks in it; its
owner or a workspace admin deletes it. Templates are read by everyone in the workspace,
created by members, changed and deleted by their creator or an admin. Strangers are told
a conversation or template does not exist.

Access (load a row and check the caller may act on it; raise NotFound / Forbidden):
    conversation_access(db, principal, conversation_id, need="read", *, path="")
        -> ConversationAccess                      # need: "read" | "change" | "delete"
    template_access(db, principal, template_id, need="read", *, path="") -> TemplateAccess

Conversations (a WorkspaceAccess comes from authz.chosen_workspace / workspace_access):
    list_conversations(db, access, *, q=None, limit=50, offset=0) -> ConversationPage
    create_conversation(db, gateway, access, *, title="", model="", system_prompt="",
                        use_repo_context=False, repo_ids=None) -> Conversation
    get_messages(db, target) -> list[Message]
    update_conversation(db, gateway, target, *, title=UNSET, model=UNSET,
                        system_prompt=UNSET, pinned=UNSET, shared=UNSET,
                        use_repo_context=UNSET, repo_ids=UNSET) -> Conversation
    rename(db, target, title) / pin(db, target, pinned) / set_model(db, gateway, target,
        model) / set_system_prompt(db, target, text) / set_repo_context(db, target,
        enabled, repo_ids=None) / share(db, target, shared)     -> Conversation
    delete_conversation(db, target) -> None
    export_markdown(db, target) -> str
    export_json(db, target) -> dict

Answers (the question and an empty answer, status `streaming`, are stored at once; the
model's text streams when the Reply is iterated and is saved however the stream ends):
    start_conversation(db, gateway, access, content, *, title="", model="",
                       system_prompt="", use_repo_context=False, repo_ids=None)
        -> (Conversation, Reply)      # a new conversation with its first message
    send_message(db, gateway, target, content, *, model=None) -> Reply
    regenerate(db, gateway, target, *, model=None) -> Reply
    edit_and_resend(db, gateway, target, message_id, content, *, model=None) -> Reply
    stop_reply(db, gateway, target) -> bool
    fail_interrupted(db) -> int       # at start: answers a stopped server left streaming
    `async for event in reply` gives {"type": "start" | "context" | "delta" | "done" |
    "error", ...}; `await reply.finish()` runs it to the end and returns the answer.
    Regenerating, or editing a user message, replaces the messages after that point.
    Repository context is added when the conversation asks for it, or for the
    repositories a message names as @name.

Templates:
    list_templates(db, access) -> list[PromptTemplate]
    create_template(db, access, *, name, body, description="") -> PromptTemplate
    update_template(db, target, *, name=UNSET, body=UNSET, description=UNSET)
        -> PromptTemplate
    delete_template(db, target) -> None
    template_variables(body) -> list[str]
    render_template(body, variables) -> str

Models: chat_models(gateway) -> names that can chat (the picker's); check_model(gateway,
    name) -> name, or a 422 for an unknown or embedding model.

Shapes for answers and exports: conversation_dict(c), message_dict(m), template_dict(t).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import anyio
from sqlalchemy import and_, case, delete, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.chat.models import (
    MAX_DESCRIPTION,
    MAX_MODEL,
    MAX_TEMPLATE_NAME,
    MAX_TITLE,
    Conversation,
    Message,
    MessageRole,
    MessageStatus,
    PromptTemplate,
)
from hexahub.core.db import new_id, utcnow
from hexahub.core.errors import Conflict, Forbidden, HexaHubError, NotFound, ValidationFailed
from hexahub.gateway import callers
from hexahub.gateway.engine import CallContext, Gateway, TextStreamEnd
from hexahub.gateway.providers.base import JSON
from hexahub.identity import audit
from hexahub.identity.authz import Principal, WorkspaceAccess, workspace_access
from hexahub.identity.models import Role, User

log = logging.getLogger("hexahub.chat")

MAX_CONTENT = 100_000  # characters in one message
MAX_SYSTEM_PROMPT = 20_000
MAX_TEMPLATE_BODY = 50_000
MAX_REPO_IDS = 50
MAX_SEARCH = 200
MAX_PAGE = 200
# How much of a long conversation goes to the model: the newest messages that fit.
HISTORY_CHARS = 60_000
# A streaming answer not written for this long was cut off; it no longer blocks others.
STALE_STREAM = timedelta(minutes=15)
# At start, a streaming answer not written for this long (well over SAVE_EVERY_SECONDS,
# and over any pause of a model that is still answering) is one the server stopped writing
# by stopping; an answer written meanwhile by another replica is left alone.
INTERRUPTED_AFTER = timedelta(minutes=2)
INTERRUPTED = "interrupted: the server stopped while answering"
# While an answer streams: how often to look for a stop request, and to save partial text.
STOP_POLL_SECONDS = 0.25
SAVE_EVERY_SECONDS = 3.0
STOP_KEY = "chat:stop:"

Need = Literal["read", "change", "delete"]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


class UpstreamFailed(HexaHubError):
    """The model failed to answer; the failed answer is stored with what it had written."""

    status_code = 502
    code = "upstream_error"


# --- access -----------------------------------------------------------------------------


@dataclass
class ConversationAccess:
    """A conversation and the caller's access to its workspace, checked."""

    access: WorkspaceAccess
    conversation: Conversation

    @property
    def principal(self) -> Principal:
        return self.access.principal

    @property
    def is_owner(self) -> bool:
        return self.conversation.user_id == self.access.user.id

    @property
    def can_change(self) -> bool:
        return (
            self.is_owner
            and self.access.role.at_least(Role.member)
            and self.principal.has_scope("write")
        )

    @property
    def can_delete(self) -> bool:
        admin = self.access.role.at_least(Role.admin) and self.principal.has_scope("admin")
        return self.can_change or admin


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


async def conversation_access(
    db: AsyncSession,
    principal: Principal,
    conversation_id: str,
    need: Need = "read",
    *,
    path: str = "",
) -> ConversationAccess:
    """Load a conversation the caller may `need` ("read", "change" or "delete").

    NotFound when it does not exist or the caller may not even read it (no role in its
    workspace; someone else's conversation that is not shared); Forbidden when they may
    read it but not do what they asked (the refusal is audited)."""
    missing = NotFound(f"no conversation with id {conversation_id}")
    conversation = await db.get(Conversation, conversation_id)
    if conversation is None:
        raise missing
    scope = "read" if need == "read" else "write"
    try:
        access = await workspace_access(
            db, principal, conversation.workspace_id, Role.viewer, scope, path=path
        )
    except NotFound:
        raise missing from None
    target = ConversationAccess(access, conversation)
    if not target.is_owner and not conversation.shared:
        raise missing
    refusal = None
    if need == "change" and not target.can_change:
        refusal = (
            "this conversation is shared with you read-only; only its owner may change it"
            if not target.is_owner
            else "changing a conversation needs the member role and the `write` scope"
        )
    elif need == "delete" and not target.can_delete:
        refusal = "only the owner of this conversation or a workspace admin may delete it"
    if refusal is not None:
        await audit.record_now(
            db,
            "access.denied",
            actor=principal,
            workspace_id=conversation.workspace_id,
            outcome="denied",
            target_type="conversation",
            target_id=conversation.id,
            details={"needs": need, "path": path[:300]},
        )
        raise Forbidden(refusal)
    return target


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
    scope = "read" if need == "read" else "write"
    try:
        access = await workspace_access(
            db, principal, template.workspace_id, Role.viewer, scope, path=path
        )
    except NotFound:
        raise missing from None
    target = TemplateAccess(access, template)
    if need == "change" and not target.can_change:
        await audit.record_now(
            db,
            "access.denied",
            actor=principal,
            workspace_id=template.workspace_id,
            outcome="denied",
            target_type="prompt_template",
            target_id=template.id,
            details={"needs": need, "path": path[:300]},
        )
        raise Forbidden("only the template's creator or a workspace admin may change it")
    return target


def _require_member(access: WorkspaceAccess) -> None:
    if not access.role.at_least(Role.member) or not access.principal.has_scope("write"):
        raise Forbidden(
            f"this needs the member role and the `write` scope; you are {access.role.value}"
        )


def _require_change(target: ConversationAccess) -> None:
    if not target.can_change:
        raise Forbidden("only the owner of this conversation may change it")


# --- shapes -----------------------------------------------------------------------------


def conversation_dict(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "workspace_id": conversation.workspace_id,
        "user_id": conversation.user_id,
        "title": conversation.title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "pinned": conversation.pinned,
        "shared": conversation.shared,
        "use_repo_context": conversation.use_repo_context,
        "repo_ids": list(conversation.repo_ids) if conversation.repo_ids is not None else None,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
    }


def message_dict(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "position": message.position,
        "role": message.role,
        "content": message.content,
        "model": message.model,
        "status": message.status,
        "error": message.error,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "cost_usd": message.cost_usd,
        "ttft_ms": message.ttft_ms,
        "citations": list(message.citations or []),
        "replaces_id": message.replaces_id,
        "edited_at": message.edited_at,
        "created_at": message.created_at,
    }


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


def _json_safe(value: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in value.items()}


# --- checks -----------------------------------------------------------------------------


def _check_title(title: str) -> str:
    title = " ".join(title.split())
    if len(title) > MAX_TITLE:
        raise ValidationFailed(f"title: at most {MAX_TITLE} characters (got {len(title)})")
    return title


def _check_content(content: str) -> str:
    if not content or not content.strip():
        raise ValidationFailed("content: the message is empty; write something to send")
    if len(content) > MAX_CONTENT:
        raise ValidationFailed(
            f"content: the message is too long ({len(content)} characters; at most {MAX_CONTENT})"
        )
    return content


def _check_system_prompt(text: str) -> str:
    if len(text) > MAX_SYSTEM_PROMPT:
        raise ValidationFailed(
            f"system_prompt: at most {MAX_SYSTEM_PROMPT} characters (got {len(text)})"
        )
    return text


def _check_repo_ids(repo_ids: list[str] | None) -> list[str] | None:
    if repo_ids is None:
        return None
    if len(repo_ids) > MAX_REPO_IDS:
        raise ValidationFailed(f"repo_ids: at most {MAX_REPO_IDS} repositories")
    cleaned = []
    for repo_id in repo_ids:
        if not isinstance(repo_id, str) or not repo_id.strip() or len(repo_id) > 36:
            raise ValidationFailed(f"repo_ids: {repo_id!r} is not a repository id")
        if repo_id not in cleaned:
            cleaned.append(repo_id)
    return cleaned


def chat_models(gateway: Gateway) -> list[str]:
    """The model names that can chat (embedding models left out), by name."""
    routes = gateway.router.snapshot.routes
    return sorted(name for name, route in routes.items() if route.mode == "chat")


def check_model(gateway: Gateway, model: str) -> str:
    """`model` if the gateway serves it as a chat model; else a 422 that names it and the
    chat models there are."""
    model = model.strip()
    if len(model) > MAX_MODEL:
        raise ValidationFailed(f"model: at most {MAX_MODEL} characters")
    route = gateway.router.snapshot.routes.get(model)
    names = ", ".join(chat_models(gateway)) or "none configured"
    if route is None:
        raise ValidationFailed(f"model: unknown model {model!r}; available models: {names}")
    if route.mode != "chat":
        raise ValidationFailed(
            f"model: {model!r} is an embedding model and cannot chat; chat models: {names}"
        )
    return model


def default_model(gateway: Gateway) -> str:
    return gateway.runtime.settings.local_chat_model


def _title_from(content: str) -> str:
    first = " ".join(content.strip().split())
    return first if len(first) <= 80 else first[:79].rstrip() + "…"


# --- conversations ----------------------------------------------------------------------


@dataclass
class ConversationItem:
    conversation: Conversation
    owner_email: str
    mine: bool


@dataclass
class ConversationPage:
    items: list[ConversationItem]
    total: int
    limit: int
    offset: int


async def list_conversations(
    db: AsyncSession,
    access: WorkspaceAccess,
    *,
    q: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> ConversationPage:
    """The caller's conversations and those shared in the workspace: the caller's pinned
    ones first, then the most recently active. `q` matches titles and message text."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit: between 1 and {MAX_PAGE}")
    if offset < 0:
        raise ValidationFailed("offset: 0 or more")
    me = access.user.id
    conditions: list[Any] = [
        Conversation.workspace_id == access.workspace.id,
        or_(Conversation.user_id == me, Conversation.shared.is_(True)),
    ]
    q = (q or "").strip()
    if len(q) > MAX_SEARCH:
        raise ValidationFailed(f"q: at most {MAX_SEARCH} characters")
    if q:
        in_messages = exists().where(
            Message.conversation_id == Conversation.id,
            Message.content.icontains(q, autoescape=True),
        )
        conditions.append(or_(Conversation.title.icontains(q, autoescape=True), in_messages))
    total = await db.scalar(select(func.count()).select_from(Conversation).where(*conditions))
    pinned_first = case(
        (and_(Conversation.pinned.is_(True), Conversation.user_id == me), 0), else_=1
    )
    rows = (
        await db.execute(
            select(Conversation, User.email)
            .join(User, User.id == Conversation.user_id)
            .where(*conditions)
            .order_by(pinned_first, Conversation.updated_at.desc(), Conversation.id)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    items = [ConversationItem(c, email, c.user_id == me) for c, email in rows]
    return ConversationPage(items, int(total or 0), limit, offset)


async def create_conversation(
    db: AsyncSession,
    gateway: Gateway,
    access: WorkspaceAccess,
    *,
    title: str = "",
    model: str = "",
    system_prompt: str = "",
    use_repo_context: bool = False,
    repo_ids: list[str] | None = None,
) -> Conversation:
    """A new conversation of the caller's in `access.workspace` (members and up). An empty
    title is filled from the first message; an empty model means the default chat model."""
    _require_member(access)
    conversation = Conversation(
        id=new_id(),
        workspace_id=access.workspace.id,
        user_id=access.user.id,
        title=_check_title(title),
        model=check_model(gateway, model) if model else "",
        system_prompt=_check_system_prompt(system_prompt),
        use_repo_context=use_repo_context,
        repo_ids=_check_repo_ids(repo_ids),
    )
    db.add(conversation)
    await db.commit()
    return conversation


async def start_conversation(
    db: AsyncSession,
    gateway: Gateway,
    access: WorkspaceAccess,
    content: str,
    *,
    title: str = "",
    model: str = "",
    system_prompt: str = "",
    use_repo_context: bool = False,
    repo_ids: list[str] | None = None,
) -> tuple[Conversation, Reply]:
    """A new conversation with its first message, and the answer to stream.

    Everything `create_conversation` and `send_message` refuse is refused here before
    anything is stored, so a refused first message leaves no empty conversation behind;
    the conversation, the message and the answer's row are stored in one transaction."""
    _require_member(access)
    content = _check_content(content)
    conversation = Conversation(
        id=new_id(),
        workspace_id=access.workspace.id,
        user_id=access.user.id,
        title=_check_title(title) or _title_from(content),
        model=check_model(gateway, model) if model else "",
        system_prompt=_check_system_prompt(system_prompt),
        use_repo_context=use_repo_context,
        repo_ids=_check_repo_ids(repo_ids),
        pinned=False,
        shared=False,
    )
    target = ConversationAccess(access, conversation)
    chosen = conversation.model or default_model(gateway)
    ctx = await _call_context(db, gateway, target, chosen)
    db.add(conversation)
    message = Message(
        id=new_id(),
        conversation_id=conversation.id,
        position=0,
        role=MessageRole.user,
        content=content,
        status=MessageStatus.complete,
        created_at=utcnow(),
    )
    db.add(message)
    reply = await _reply(
        db,
        gateway,
        target,
        chosen,
        ctx,
        question=content,
        user_message=message,
        replaces_id=None,
    )
    return conversation, reply


async def get_messages(db: AsyncSession, target: ConversationAccess) -> list[Message]:
    """The conversation's messages, oldest first."""
    found = await db.scalars(
        select(Message)
        .where(Message.conversation_id == target.conversation.id)
        .order_by(Message.position)
    )
    return list(found.all())


async def update_conversation(
    db: AsyncSession,
    gateway: Gateway,
    target: ConversationAccess,
    *,
    title: str = UNSET,
    model: str = UNSET,
    system_prompt: str = UNSET,
    pinned: bool = UNSET,
    shared: bool = UNSET,
    use_repo_context: bool = UNSET,
    repo_ids: list[str] | None = UNSET,
) -> Conversation:
    """Change what is given (owner only); sharing changes are audited. Every value is
    checked before anything is changed."""
    _require_change(target)
    conversation = target.conversation
    changes: dict[str, Any] = {}
    if title is not UNSET:
        changes["title"] = _check_title(title)
    if model is not UNSET:
        changes["model"] = check_model(gateway, model) if model else ""
    if system_prompt is not UNSET:
        changes["system_prompt"] = _check_system_prompt(system_prompt)
    if pinned is not UNSET:
        changes["pinned"] = bool(pinned)
    if shared is not UNSET:
        changes["shared"] = bool(shared)
    if use_repo_context is not UNSET:
        changes["use_repo_context"] = bool(use_repo_context)
    if repo_ids is not UNSET:
        changes["repo_ids"] = _check_repo_ids(repo_ids)
    was_shared = conversation.shared
    for name, value in changes.items():
        setattr(conversation, name, value)
    if "shared" in changes and changes["shared"] != was_shared:
        audit.record(
            db,
            "conversation.shared" if conversation.shared else "conversation.unshared",
            actor=target.principal,
            workspace_id=conversation.workspace_id,
            target_type="conversation",
            target_id=conversation.id,
            before={"shared": was_shared},
            after={"shared": conversation.shared},
        )
    await db.commit()
    return conversation


async def rename(db: AsyncSession, target: ConversationAccess, title: str) -> Conversation:
    _require_change(target)
    target.conversation.title = _check_title(title)
    await db.commit()
    return target.conversation


async def pin(db: AsyncSession, target: ConversationAccess, pinned: bool) -> Conversation:
    _require_change(target)
    target.conversation.pinned = pinned
    await db.commit()
    return target.conversation


async def set_model(
    db: AsyncSession, gateway: Gateway, target: ConversationAccess, model: str
) -> Conversation:
    return await update_conversation(db, gateway, target, model=model)


async def set_system_prompt(
    db: AsyncSession, target: ConversationAccess, text: str
) -> Conversation:
    _require_change(target)
    target.conversation.system_prompt = _check_system_prompt(text)
    await db.commit()
    return target.conversation


async def set_repo_context(
    db: AsyncSession,
    target: ConversationAccess,
    enabled: bool,
    repo_ids: list[str] | None = None,
) -> Conversation:
    _require_change(target)
    target.conversation.repo_ids = _check_repo_ids(repo_ids)
    target.conversation.use_repo_context = enabled
    await db.commit()
    return target.conversation


async def share(db: AsyncSession, target: ConversationAccess, shared: bool) -> Conversation:
    """Share the conversation read-only with its workspace, or stop sharing it (audited)."""
    _require_change(target)
    conversation = target.conversation
    if conversation.shared != shared:
        audit.record(
            db,
            "conversation.shared" if shared else "conversation.unshared",
            actor=target.principal,
            workspace_id=conversation.workspace_id,
            target_type="conversation",
            target_id=conversation.id,
            before={"shared": conversation.shared},
            after={"shared": shared},
        )
        conversation.shared = shared
    await db.commit()
    return conversation


async def delete_conversation(db: AsyncSession, target: ConversationAccess) -> None:
    """Delete the conversation and its messages for good (owner or admin; audited)."""
    if not target.can_delete:
        raise Forbidden("only the owner of this conversation or a workspace admin may delete it")
    conversation = target.conversation
    count = await db.scalar(
        select(func.count()).select_from(Message).where(Message.conversation_id == conversation.id)
    )
    audit.record(
        db,
        "conversation.deleted",
        actor=target.principal,
        workspace_id=conversation.workspace_id,
        target_type="conversation",
        target_id=conversation.id,
        before={
            "title": conversation.title,
            "owner": conversation.user_id,
            "messages": int(count or 0),
            "shared": conversation.shared,
        },
    )
    # Delete the messages here as well as by the foreign key's cascade, so the result is
    # the same on a database that does not enforce foreign keys.
    await db.execute(delete(Message).where(Message.conversation_id == conversation.id))
    await db.delete(conversation)
    await db.commit()


# --- export -----------------------------------------------------------------------------


async def export_json(db: AsyncSession, target: ConversationAccess) -> dict[str, Any]:
    """The conversation and every message, as plain JSON values."""
    messages = await get_messages(db, target)
    return {
        "format": "hexahub.conversation.v1",
        "exported_at": utcnow().isoformat(),
        "conversation": _json_safe(conversation_dict(target.conversation)),
        "messages": [_json_safe(message_dict(m)) for m in messages],
    }


async def export_markdown(db: AsyncSession, target: ConversationAccess) -> str:
    """The conversation as a Markdown document: a heading per message, sources listed."""
    conversation = target.conversation
    messages = await get_messages(db, target)
    lines = [f"# {conversation.title or 'Untitled conversation'}", ""]
    lines.append(f"- Model: {conversation.model or 'default'}")
    lines.append(f"- Created: {conversation.created_at.isoformat(timespec='seconds')}")
    lines.append(f"- Exported: {utcnow().isoformat(timespec='seconds')}")
    lines.append("")
    if conversation.system_prompt:
        lines.append("## System prompt")
        lines.append("")
        lines.append(conversation.system_prompt.rstrip())
        lines.append("")
    for message in messages:
        who = {"user": "You", "assistant": "Assistant", "system": "System"}.get(
            message.role, message.role
        )
        heading = f"## {who}"
        if message.role == MessageRole.assistant and message.model:
            heading += f" ({message.model})"
        if message.status in (MessageStatus.stopped, MessageStatus.failed):
            heading += f" [{message.status}]"
        lines.append(heading)
        lines.append("")
        lines.append(message.content.rstrip() or "_(no text)_")
        lines.append("")
        if message.error:
            lines.append(f"> Error: {message.error}")
            lines.append("")
        if message.citations:
            lines.append("Sources:")
            lines.append("")
            for cite in message.citations:
                where = f"{cite.get('repo_name', '')}/{cite.get('path', '')}"
                span = f"L{cite.get('start_line')}-L{cite.get('end_line')}"
                lines.append(f"- [{cite.get('number')}] {where} {span} ({cite.get('url', '')})")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --- answers ----------------------------------------------------------------------------


async def _next_position(db: AsyncSession, conversation_id: str) -> int:
    last = await db.scalar(
        select(func.max(Message.position)).where(Message.conversation_id == conversation_id)
    )
    return int(last) + 1 if last is not None else 0


async def _refuse_while_streaming(db: AsyncSession, conversation_id: str) -> None:
    busy = await db.scalar(
        select(Message.id).where(
            Message.conversation_id == conversation_id,
            Message.status == MessageStatus.streaming,
            Message.updated_at > utcnow() - STALE_STREAM,
        )
    )
    if busy is not None:
        raise Conflict(
            "an answer is still being written in this conversation; wait for it or stop it"
        )


async def _call_context(
    db: AsyncSession, gateway: Gateway, target: ConversationAccess, model: str
) -> CallContext:
    """The gateway's rules for this caller in the conversation's workspace, checked now
    (scope, role, limits, local-only policy), before anything is stored."""
    caller = await callers.resolve(db, target.principal, target.conversation.workspace_id)
    ctx = CallContext.for_caller(caller)
    await gateway.check_limits(ctx)
    gateway.router.plan(model, local_only=ctx.local_only)
    return ctx


def _history(conversation: Conversation, messages: list[Message]) -> list[JSON]:
    """What the model is sent: the system prompt, then the newest messages that fit in
    HISTORY_CHARS (always the last one). Failed answers and empty ones are left out."""
    usable = [
        m
        for m in messages
        if m.role != MessageRole.assistant
        or (m.status in (MessageStatus.complete, MessageStatus.stopped) and m.content)
    ]
    chosen: list[JSON] = []
    used = 0
    for message in reversed(usable):
        used += len(message.content)
        if chosen and used > HISTORY_CHARS:
            break
        chosen.append({"role": message.role, "content": message.content})
    chosen.reverse()
    head: list[JSON] = []
    if conversation.system_prompt:
        head.append({"role": "system", "content": conversation.system_prompt})
    return head + chosen


MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][\w.-]{0,99})")


def mentions(text: str) -> list[str]:
    """Repository names mentioned as @name in a message."""
    return list(dict.fromkeys(m.rstrip(".") for m in MENTION.findall(text)))


async def _prepare(
    db: AsyncSession,
    gateway: Gateway,
    target: ConversationAccess,
    model: str | None,
) -> tuple[str, CallContext]:
    _require_change(target)
    conversation = target.conversation
    chosen = check_model(gateway, model) if model else (conversation.model or "")
    chosen = chosen or default_model(gateway)
    ctx = await _call_context(db, gateway, target, chosen)
    await _refuse_while_streaming(db, conversation.id)
    if model and conversation.model != chosen:
        conversation.model = chosen  # the picker's choice holds for the next messages too
    return chosen, ctx


async def _reply(
    db: AsyncSession,
    gateway: Gateway,
    target: ConversationAccess,
    model: str,
    ctx: CallContext,
    *,
    question: str,
    user_message: Message | None,
    replaces_id: str | None,
) -> Reply:
    conversation = target.conversation
    conversation.updated_at = utcnow()
    messages = await get_messages(db, target)
    history = _history(conversation, messages)
    # The answer's row is stored with the question, so its place in the conversation is
    # taken at once and a second message meanwhile is refused (an answer is streaming).
    answer = Message(
        id=new_id(),
        conversation_id=conversation.id,
        position=messages[-1].position + 1 if messages else 0,
        role=MessageRole.assistant,
        content="",
        model=model,
        status=MessageStatus.streaming,
        replaces_id=replaces_id,
        citations=[],
        created_at=utcnow(),
    )
    db.add(answer)
    try:
        await db.commit()  # and no transaction stays open while the answer streams
    except IntegrityError:
        await db.rollback()
        raise Conflict(
            "another message was sent to this conversation at the same moment; send yours again"
        ) from None
    return Reply(
        gateway,
        ctx,
        conversation_id=conversation.id,
        workspace_id=conversation.workspace_id,
        model=model,
        history=history,
        question=question,
        use_repo_context=conversation.use_repo_context,
        repo_ids=list(conversation.repo_ids) if conversation.repo_ids else None,
        principal=target.principal,
        answer=message_dict(answer),
        user_message=message_dict(user_message) if user_message is not None else None,
    )


async def send_message(
    db: AsyncSession,
    gateway: Gateway,
    target: ConversationAccess,
    content: str,
    *,
    model: str | None = None,
) -> Reply:
    """Store the user's message now and return the answer to stream.

    Everything that can be refused (empty or too long text, an unknown model, limits,
    a local-only policy, an answer still streaming) is refused here, before anything is
    stored. `model` also becomes the conversation's model for the messages after it."""
    content = _check_content(content)
    chosen, ctx = await _prepare(db, gateway, target, model)
    conversation = target.conversation
    message = Message(
        id=new_id(),
        conversation_id=conversation.id,
        position=await _next_position(db, conversation.id),
        role=MessageRole.user,
        content=content,
        status=MessageStatus.complete,
        created_at=utcnow(),
    )
    db.add(message)
    if not conversation.title:
        conversation.title = _title_from(content)
    return await _reply(
        db,
        gateway,
        target,
        chosen,
        ctx,
        question=content,
        user_message=message,
        replaces_id=None,
    )


async def _drop_after(db: AsyncSession, conversation_id: str, position: int) -> str | None:
    """Delete the messages after `position`; the id of the first answer among them."""
    later = (
        await db.scalars(
            select(Message)
            .where(Message.conversation_id == conversation_id, Message.position > position)
            .order_by(Message.position)
        )
    ).all()
    replaced = next((m.id for m in later if m.role == MessageRole.assistant), None)
    if later:
        await db.execute(
            delete(Message).where(
                Message.conversation_id == conversation_id, Message.position > position
            )
        )
    return replaced


async def regenerate(
    db: AsyncSession,
    gateway: Gateway,
    target: ConversationAccess,
    *,
    model: str | None = None,
) -> Reply:
    """Answer the last user message again: the answer(s) after it are replaced."""
    chosen, ctx = await _prepare(db, gateway, target, model)
    conversation = target.conversation
    last_user = await db.scalar(
        select(Message)
        .where(Message.conversation_id == conversation.id, Message.role == MessageRole.user)
        .order_by(Message.position.desc())
        .limit(1)
    )
    if last_user is None:
        raise ValidationFailed("nothing to regenerate: this conversation has no message yet")
    replaced = await _drop_after(db, conversation.id, last_user.position)
    return await _reply(
        db,
        gateway,
        target,
        chosen,
        ctx,
        question=last_user.content,
        user_message=None,
        replaces_id=replaced,
    )


async def edit_and_resend(
    db: AsyncSession,
    gateway: Gateway,
    target: ConversationAccess,
    message_id: str,
    content: str,
    *,
    model: str | None = None,
) -> Reply:
    """Change one of the user's messages and answer it again: everything after it is
    replaced by the new answer."""
    content = _check_content(content)
    conversation = target.conversation
    message = await db.get(Message, message_id)
    if message is None or message.conversation_id != conversation.id:
        raise NotFound(f"no message with id {message_id} in this conversation")
    if message.role != MessageRole.user:
        raise ValidationFailed("only your own (user) messages can be edited and sent again")
    chosen, ctx = await _prepare(db, gateway, target, model)
    replaced = await _drop_after(db, conversation.id, message.position)
    message.content = content
    message.edited_at = utcnow()
    return await _reply(
        db,
        gateway,
        target,
        chosen,
        ctx,
        question=content,
        user_message=message,
        replaces_id=replaced,
    )


async def fail_interrupted(db: AsyncSession, *, older_than: timedelta = INTERRUPTED_AFTER) -> int:
    """Mark the answers left `streaming` by a server that stopped (not written for
    `older_than`) as failed, keeping their partial text; how many. Called at start."""
    found = (
        await db.scalars(
            select(Message).where(
                Message.status == MessageStatus.streaming,
                Message.updated_at < utcnow() - older_than,
            )
        )
    ).all()
    for message in found:
        message.status = MessageStatus.failed
        message.error = INTERRUPTED
    await db.commit()
    if found:
        log.warning("%d chat answer(s) were cut off by a stop; marked failed", len(found))
    return len(found)


async def stop_reply(db: AsyncSession, gateway: Gateway, target: ConversationAccess) -> bool:
    """Ask the answer being written in this conversation to stop (on whichever replica
    writes it); it keeps its text with status `stopped`. False when nothing streams."""
    _require_change(target)
    streaming = (
        await db.scalars(
            select(Message.id).where(
                Message.conversation_id == target.conversation.id,
                Message.status == MessageStatus.streaming,
            )
        )
    ).all()
    for message_id in streaming:
        await gateway.runtime.shared.set(STOP_KEY + message_id, b"1", ttl_seconds=3600)
    return bool(streaming)


@dataclass
class _Progress:
    text: list[str] = field(default_factory=list)
    status: str = MessageStatus.streaming
    error: str | None = None
    error_code: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    ttft_ms: float | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)


class Reply:
    """One answer being written. Iterate it (once) for events:

    {"type": "start", "message": {...}, "user_message": {...} | None}  the stored answer row
    {"type": "context", "citations": [...]}     repository passages the answer may cite
    {"type": "delta", "text": "..."}            the next piece of text
    {"type": "done", "message": {...}}          finished: status complete, or stopped
    {"type": "error", "error": {"code", "message"}, "message": {...}}  failed (status failed)

    However it ends (finished, stopped, the reader gone, the model failed), the answer is
    saved with the text written so far, its usage and cost."""

    def __init__(
        self,
        gateway: Gateway,
        ctx: CallContext,
        *,
        conversation_id: str,
        workspace_id: str,
        model: str,
        history: list[JSON],
        question: str,
        use_repo_context: bool,
        repo_ids: list[str] | None,
        principal: Principal | None,
        answer: dict[str, Any],
        user_message: dict[str, Any] | None,
    ) -> None:
        self.gateway = gateway
        self.ctx = ctx
        self.conversation_id = conversation_id
        self.workspace_id = workspace_id
        self.model = model
        self.history = history
        self.question = question
        self.use_repo_context = use_repo_context
        self.principal = principal
        self.repo_ids = repo_ids
        self.answer = answer
        self.user_message = user_message
        self.message_id: str = answer["id"]
        self._started = False

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        if self._started:
            raise RuntimeError("a reply can be read only once")
        self._started = True
        return self._run()

    async def finish(self) -> dict[str, Any]:
        """Run to the end; the answer (a message dict). UpstreamFailed if the model failed."""
        async for event in self:
            if event["type"] == "done":
                message: dict[str, Any] = event["message"]
                return message
            if event["type"] == "error":
                raise UpstreamFailed(
                    event["error"]["message"], details={"message": _json_safe(event["message"])}
                )
        raise RuntimeError("the reply ended without an answer")

    async def _save(self, progress: _Progress, *, final: bool) -> dict[str, Any] | None:
        async with self.gateway.runtime.db.sessions() as db:
            row = await db.get(Message, self.message_id)
            if row is None:  # the conversation was deleted meanwhile
                return None
            row.content = "".join(progress.text)
            row.citations = progress.citations
            if final:
                row.status = progress.status
                row.error = progress.error
                row.prompt_tokens = progress.prompt_tokens
                row.completion_tokens = progress.completion_tokens
                row.cost_usd = progress.cost_usd
                row.ttft_ms = progress.ttft_ms
                conversation = await db.get(Conversation, self.conversation_id)
                if conversation is not None:
                    conversation.updated_at = utcnow()
            await db.commit()
            return message_dict(row)

    async def _context(self, progress: _Progress, messages: list[JSON]) -> list[JSON]:
        """`messages` with the repository passages that fit the question, when found.

        Repositories named as @name in the question are searched first; when those names
        are no repositories, the conversation's own choice (if it uses context at all)."""
        from hexahub.context import answers

        runtime = self.gateway.runtime
        choices: list[list[str] | None] = []
        named = mentions(self.question)
        if named:
            choices.append(named)
        if self.use_repo_context:
            choices.append(self.repo_ids)
        for repo_ids in choices:
            try:
                async with runtime.db.sessions() as db:
                    found = await answers.retrieve(
                        runtime,
                        db,
                        self.workspace_id,
                        self.question,
                        repo_ids=repo_ids,
                        principal=self.principal,
                    )
            except HexaHubError as exc:
                log.info("no repository context from %s: %s", repo_ids, exc.message)
                continue
            except Exception:
                # An answer without context beats no answer; the log says what went wrong.
                log.exception("repository context for a chat answer failed")
                return messages
            progress.citations = [dataclasses.asdict(c) for c in found.citations]
            return answers.messages_with_context(found, messages)
        return messages

    async def _stop_requested(self) -> bool:
        return await self.gateway.runtime.shared.get(STOP_KEY + self.message_id) is not None

    async def _run(self) -> AsyncIterator[dict[str, Any]]:
        gateway, ctx, progress = self.gateway, self.ctx, _Progress()
        started = self.answer
        yield {"type": "start", "message": _json_safe(started), "user_message": _user(self)}
        pump: asyncio.Task[None] | None = None
        final: dict[str, Any] | None = None
        try:
            messages = list(self.history)
            if self.use_repo_context or mentions(self.question):
                messages = await self._context(progress, messages)
                if progress.citations:
                    yield {"type": "context", "citations": progress.citations}
            ctx.started, ctx.upstream_seconds = time.perf_counter(), 0.0
            # The model is read by a task of its own, so a stop request is seen even while
            # the model is silent, and stopping is cancelling that task.
            queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
            pump = asyncio.create_task(
                _pump(gateway.stream_text(ctx, self.model, {"messages": messages}), queue)
            )
            last_poll = last_save = time.monotonic()
            while True:
                try:
                    kind, item = await asyncio.wait_for(queue.get(), STOP_POLL_SECONDS)
                except TimeoutError:
                    kind, item = "idle", None
                if kind == "error":
                    _failed(progress, item)
                    break
                if kind == "end":
                    end: TextStreamEnd = item
                    progress.prompt_tokens = end.prompt_tokens
                    progress.completion_tokens = end.completion_tokens
                    progress.cost_usd = end.cost_usd
                    progress.ttft_ms = end.ttft_ms
                    if end.error:
                        progress.status, progress.error = MessageStatus.failed, end.error
                        progress.error_code = "upstream_error"
                    else:
                        progress.status = MessageStatus.complete
                    break
                now = time.monotonic()
                if kind == "idle" or now - last_poll >= STOP_POLL_SECONDS:
                    last_poll = now
                    if await self._stop_requested():
                        progress.status = MessageStatus.stopped
                        break
                if kind == "idle":
                    continue
                if progress.ttft_ms is None:
                    progress.ttft_ms = round((time.perf_counter() - ctx.started) * 1000, 2)
                progress.text.append(item)
                yield {"type": "delta", "text": item}
                if now - last_save >= SAVE_EVERY_SECONDS:
                    last_save = now
                    await self._save(progress, final=False)
        except (asyncio.CancelledError, GeneratorExit):
            progress.status = MessageStatus.stopped  # the reader went away
            raise
        except Exception as exc:
            log.exception("a chat answer failed")
            progress.status, progress.error = MessageStatus.failed, f"internal error: {exc}"
            progress.error_code = "internal_error"
        finally:
            # Saved whatever happens, even while this task is being cancelled.
            with anyio.CancelScope(shield=True):
                if pump is not None and not pump.done():
                    pump.cancel()  # the gateway accounts for the call as it closes
                    with contextlib.suppress(BaseException):
                        await pump
                if progress.status == MessageStatus.streaming:
                    progress.status = MessageStatus.stopped
                final = await self._save(progress, final=True)
                with contextlib.suppress(Exception):
                    await gateway.runtime.shared.delete(STOP_KEY + self.message_id)
        if final is None:  # deleted while it was written
            final = {**started, "content": "".join(progress.text), "status": progress.status}
        if progress.status == MessageStatus.failed:
            yield {
                "type": "error",
                "error": {
                    "code": progress.error_code or "upstream_error",
                    "message": progress.error,
                },
                "message": _json_safe(final),
            }
        else:
            yield {"type": "done", "message": _json_safe(final)}


async def _pump(
    stream: AsyncIterator[str | TextStreamEnd], queue: asyncio.Queue[tuple[str, Any]]
) -> None:
    try:
        async for item in stream:
            queue.put_nowait(("end", item) if isinstance(item, TextStreamEnd) else ("piece", item))
    except Exception as exc:
        queue.put_nowait(("error", exc))


def _user(reply: Reply) -> dict[str, Any] | None:
    return _json_safe(reply.user_message) if reply.user_message is not None else None


def _failed(progress: _Progress, exc: Exception) -> None:
    progress.status = MessageStatus.failed
    progress.error = str(getattr(exc, "message", exc))[:2000]
    progress.error_code = (
        exc.code if isinstance(exc, HexaHubError) else getattr(exc, "error_type", "upstream_error")
    )


# --- templates --------------------------------------------------------------------------

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
        raise Conflict(f"a template named {name!r} already exists in this workspace")


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
    _require_member(access)
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
    audit.record(
        db,
        "template.created",
        actor=access.principal,
        workspace_id=access.workspace.id,
        target_type="prompt_template",
        target_id=template.id,
        after={"name": name, "variables": template_variables(template.body)},
    )
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise Conflict(f"a template named {name!r} already exists in this workspace") from None
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
    audit.record(
        db,
        "template.updated",
        actor=target.access.principal,
        workspace_id=template.workspace_id,
        target_type="prompt_template",
        target_id=template.id,
        before=before,
        after={k: v for k, v in changes.items() if k != "body"},
        details={"changed": sorted(changes)},
    )
    name_now = template.name
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise Conflict(f"a template named {name_now!r} already exists in this workspace") from None
    return template


async def delete_template(db: AsyncSession, target: TemplateAccess) -> None:
    """Delete a template (its creator or an admin; audited)."""
    if not target.can_change:
        raise Forbidden("only the template's creator or a workspace admin may delete it")
    template = target.template
    audit.record(
        db,
        "template.deleted",
        actor=target.access.principal,
        workspace_id=template.workspace_id,
        target_type="prompt_template",
        target_id=template.id,
        before={"name": template.name},
    )
    await db.delete(template)
    await db.commit()
