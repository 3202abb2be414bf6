"""Conversations and who may act on them: the chat's logic, for the API and the pages.

Who may do what (the same for the API and the pages, because both go through here):
a conversation is readable by its owner and, when `shared`, by everyone with a role in its
workspace; only its owner (with at least the member role) changes it or talks in it; its
owner or a workspace admin deletes it. Strangers are told a conversation does not exist.
Answers are in hexahub.chat.replies, prompt templates in hexahub.chat.templates, exports
in hexahub.chat.exports.

Access (load a row and check the caller may act on it; raise NotFound / Forbidden):
    conversation_access(db, principal, conversation_id, need="read", *, path="")
        -> ConversationAccess                      # need: "read" | "change" | "delete"

Conversations (a WorkspaceAccess comes from authz.chosen_workspace / workspace_access):
    list_conversations(db, access, *, q=None, limit=50, offset=0) -> ConversationPage
    create_conversation(db, gateway, access, *, title="", model="", system_prompt="",
                        use_repo_context=False, repo_ids=None) -> Conversation
        # repo_ids: repositories of the conversation's workspace (404 for any other id)
    get_messages(db, target) -> list[Message]
    update_conversation(db, gateway, target, *, title=UNSET, model=UNSET,
                        system_prompt=UNSET, pinned=UNSET, shared=UNSET,
                        use_repo_context=UNSET, repo_ids=UNSET) -> Conversation
    rename(db, target, title) / pin(db, target, pinned) / set_model(db, gateway, target,
        model) / set_system_prompt(db, target, text) / set_repo_context(db, target,
        enabled, repo_ids=None) / share(db, target, shared)     -> Conversation
    delete_conversation(db, target) -> None

Models: chat_models(gateway) -> names that can chat (the picker's); check_model(gateway,
    name) -> name, or a 422 for an unknown or embedding model.

Shapes for answers and exports: conversation_dict(c), message_dict(m).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NoReturn

from sqlalchemy import and_, case, delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.chat.models import MAX_MODEL, MAX_TITLE, Conversation, Message, PromptTemplate
from hexahub.context import service as context_service
from hexahub.core.db import new_id
from hexahub.core.errors import Forbidden, NotFound, ValidationFailed
from hexahub.gateway.engine import Gateway
from hexahub.identity import audit
from hexahub.identity.authz import Principal, WorkspaceAccess, workspace_access
from hexahub.identity.models import Role, User

MAX_SYSTEM_PROMPT = 20_000
MAX_REPO_IDS = 50
MAX_SEARCH = 200
MAX_PAGE = 200

Need = Literal["read", "change", "delete"]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


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
    access = await access_or_missing(db, principal, conversation.workspace_id, need, path, missing)
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
        await refuse(db, principal, need, path, "conversation", conversation, refusal)
    return target


async def access_or_missing(
    db: AsyncSession,
    principal: Principal,
    workspace_id: str,
    need: str,
    path: str,
    missing: NotFound,
) -> WorkspaceAccess:
    """The caller's access to the workspace of a row they `need` to act on (any role
    reads; the rest needs the `write` scope); `missing` when they have no role there."""
    scope = "read" if need == "read" else "write"
    try:
        return await workspace_access(db, principal, workspace_id, Role.viewer, scope, path=path)
    except NotFound:
        raise missing from None


async def refuse(
    db: AsyncSession,
    principal: Principal,
    need: str,
    path: str,
    target_type: str,
    target: Conversation | PromptTemplate,
    refusal: str,
) -> NoReturn:
    """Audit that the caller was refused `need` on a row they may read; raise Forbidden."""
    await audit.record_now(
        db,
        "access.denied",
        actor=principal,
        workspace_id=target.workspace_id,
        outcome="denied",
        target_type=target_type,
        target_id=target.id,
        details={"needs": need, "path": path[:300]},
    )
    raise Forbidden(refusal)


def require_member(access: WorkspaceAccess) -> None:
    if not access.role.at_least(Role.member) or not access.principal.has_scope("write"):
        raise Forbidden(
            f"this needs the member role and the `write` scope; you are {access.role.value}"
        )


def require_change(target: ConversationAccess) -> None:
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
        "left_out": message.left_out or 0,
        "replaces_id": message.replaces_id,
        "edited_at": message.edited_at,
        "created_at": message.created_at,
    }


def json_safe(value: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in value.items()}


# --- checks -----------------------------------------------------------------------------


def _check_title(title: str) -> str:
    title = " ".join(title.split())
    if len(title) > MAX_TITLE:
        raise ValidationFailed(f"title: at most {MAX_TITLE} characters (got {len(title)})")
    return title


def _check_system_prompt(text: str) -> str:
    if len(text) > MAX_SYSTEM_PROMPT:
        raise ValidationFailed(
            f"system_prompt: at most {MAX_SYSTEM_PROMPT} characters (got {len(text)})"
        )
    return text


async def check_repo_ids(
    db: AsyncSession, workspace_id: str, repo_ids: list[str] | None
) -> list[str] | None:
    """`repo_ids` without repeats, each a repository of the workspace (None: all of them).
    An id of another workspace's repository, or of none, is a 404 like any unknown object,
    so a conversation can never point at code its workspace does not hold."""
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
    if cleaned:
        known = {repo.id for repo in await context_service.list_repos(db, workspace_id)}
        unknown = next((repo_id for repo_id in cleaned if repo_id not in known), None)
        if unknown is not None:
            raise NotFound(f"repo_ids: no repository with id {unknown!r} in this workspace")
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


def title_from(content: str) -> str:
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
    require_member(access)
    conversation = await new_conversation(
        db,
        gateway,
        access,
        title=title,
        model=model,
        system_prompt=system_prompt,
        use_repo_context=use_repo_context,
        repo_ids=repo_ids,
    )
    db.add(conversation)
    await db.commit()
    return conversation


async def new_conversation(
    db: AsyncSession,
    gateway: Gateway,
    access: WorkspaceAccess,
    *,
    title: str,
    model: str,
    system_prompt: str,
    use_repo_context: bool,
    repo_ids: list[str] | None,
    first_message: str = "",
) -> Conversation:
    """A conversation of the caller's with every value checked, not yet stored; an empty
    title is taken from `first_message`."""
    return Conversation(
        id=new_id(),
        workspace_id=access.workspace.id,
        user_id=access.user.id,
        title=_check_title(title) or title_from(first_message),
        model=check_model(gateway, model) if model else "",
        system_prompt=_check_system_prompt(system_prompt),
        use_repo_context=use_repo_context,
        repo_ids=await check_repo_ids(db, access.workspace.id, repo_ids),
        pinned=False,
        shared=False,
    )


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
    require_change(target)
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
        changes["repo_ids"] = await check_repo_ids(db, conversation.workspace_id, repo_ids)
    was_shared = conversation.shared
    for name, value in changes.items():
        setattr(conversation, name, value)
    if "shared" in changes and changes["shared"] != was_shared:
        _record_sharing(db, target, was_shared)
    await db.commit()
    return conversation


async def rename(db: AsyncSession, target: ConversationAccess, title: str) -> Conversation:
    require_change(target)
    target.conversation.title = _check_title(title)
    await db.commit()
    return target.conversation


async def pin(db: AsyncSession, target: ConversationAccess, pinned: bool) -> Conversation:
    require_change(target)
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
    require_change(target)
    target.conversation.system_prompt = _check_system_prompt(text)
    await db.commit()
    return target.conversation


async def set_repo_context(
    db: AsyncSession,
    target: ConversationAccess,
    enabled: bool,
    repo_ids: list[str] | None = None,
) -> Conversation:
    require_change(target)
    checked = await check_repo_ids(db, target.conversation.workspace_id, repo_ids)
    target.conversation.repo_ids = checked
    target.conversation.use_repo_context = enabled
    await db.commit()
    return target.conversation


async def share(db: AsyncSession, target: ConversationAccess, shared: bool) -> Conversation:
    """Share the conversation read-only with its workspace, or stop sharing it (audited)."""
    require_change(target)
    conversation = target.conversation
    if conversation.shared != shared:
        was_shared, conversation.shared = conversation.shared, shared
        _record_sharing(db, target, was_shared)
    await db.commit()
    return conversation


def _record_sharing(db: AsyncSession, target: ConversationAccess, was_shared: bool) -> None:
    """Audit a change of the conversation's `shared` (already made)."""
    conversation = target.conversation
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
