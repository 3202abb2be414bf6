"""The chat workspace's pages: conversations, the composer with streamed answers, and the
workspace's prompt templates.

    GET  /chat                                        your (chosen) workspace's chat
    GET  /workspaces/{ws}/chat                        a new conversation; the sidebar
    GET  /workspaces/{ws}/chat/conversations?q=       the sidebar's list (HTMX search)
    GET  /workspaces/{ws}/chat/{id}                   one conversation (shared ones read-only)
    POST /workspaces/{ws}/chat/new                    start a conversation with a message
    POST /workspaces/{ws}/chat/{id}/send              send, regenerate, or edit and resend
    POST /workspaces/{ws}/chat/{id}/stop              stop the answer being written
    POST /workspaces/{ws}/chat/{id}/settings          title, system prompt, model, context
                                                      (and which repositories: none = all)
    POST /workspaces/{ws}/chat/{id}/pin | share | delete
    GET  /workspaces/{ws}/templates                   prompt templates (POST creates one)
    GET  /workspaces/{ws}/templates/{id}              edit (POST saves, POST .../delete)

Every action goes through hexahub.chat's service, replies and templates with the browser
session as the caller, so the pages may do exactly what /api/conversations and
/api/templates allow and nothing more; the export links are the API's own export route (a
GET the session cookie authenticates). The send routes answer in two ways: a browser
running static/chat.js asks for `text/event-stream` and receives the service's answer
events as they come (the events the API streams, after a first `conversation` event with
the page's address); a browser without JavaScript waits for the whole answer and is
redirected to the conversation. Stopping (the Stop button, or a closed connection) keeps
the text written so far.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from hexahub.chat import render as chat_render
from hexahub.chat import replies, service, templates
from hexahub.chat.models import Message, MessageRole, PromptTemplate
from hexahub.chat.replies import Reply
from hexahub.chat.service import ConversationAccess
from hexahub.context import service as context_service
from hexahub.core.deps import DbSession
from hexahub.core.errors import HexaHubError, NotFound
from hexahub.gateway.engine import Gateway
from hexahub.identity import authz, workspaces
from hexahub.identity.authz import Principal, WorkspaceAccess
from hexahub.identity.models import Role
from hexahub.web.access import PagePrincipal, PageRoute, WorkspaceReaderPage, workspace_context
from hexahub.web.csrf import require_csrf
from hexahub.web.gateway_pages import emails_of
from hexahub.web.rendering import redirect, render

router = APIRouter(include_in_schema=False, route_class=PageRoute)
CsrfChecked = Depends(require_csrf)

SIDEBAR_LIMIT = 50

Text = Annotated[str, Form(max_length=replies.MAX_CONTENT)]
Short = Annotated[str, Form(max_length=500)]
Checkbox = Annotated[str, Form(max_length=10)]
RepoIds = Annotated[list[str], Form(max_length=service.MAX_REPO_IDS)]


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _recover(db: AsyncSession, access: WorkspaceAccess) -> None:
    """Undo a refused change and reload what the page shows of the workspace and person."""
    await db.rollback()
    await db.refresh(access.workspace)
    await db.refresh(access.user)


def _wants_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


# --- what the templates show ------------------------------------------------------------


async def _repositories(db: AsyncSession, access: WorkspaceAccess) -> list[dict[str, str]]:
    """The workspace's repositories, for the context picker."""
    return [
        {"id": r.id, "name": r.name, "state": r.state}
        for r in await context_service.list_repos(db, access.workspace.id)
    ]


def _chosen_repos(repo_ids: list[str] | None) -> list[str] | None:
    """The picker's checked repositories; none checked means all of them (None). The
    service refuses an id that is no repository of this workspace, as the API does."""
    chosen = [i for i in repo_ids or [] if i]
    return chosen or None


def _message_view(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "html": chat_render.markdown_to_html(message.content, message.citations)
        if message.role == MessageRole.assistant
        else "",
        "model": message.model,
        "status": message.status,
        "error": message.error,
        "tokens": message.prompt_tokens + message.completion_tokens,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "cost_usd": message.cost_usd,
        "citations": [c for c in message.citations or [] if isinstance(c, dict)],
        "edited": message.edited_at is not None,
        "left_out": message.left_out or 0,
    }


def _template_view(template: PromptTemplate) -> dict[str, Any]:
    return {
        "id": template.id,
        "name": template.name,
        "description": template.description,
        "body": template.body,
        "variables": templates.template_variables(template.body),
        "created_by": template.created_by,
    }


async def _chat_page(
    request: Request,
    db: AsyncSession,
    access: WorkspaceAccess,
    target: ConversationAccess | None,
    *,
    q: str = "",
    error: HexaHubError | None = None,
    draft: str = "",
) -> Response:
    gateway = _gateway(request)
    context = workspace_context(access, "chat")
    base = context["base"]
    sidebar = await service.list_conversations(db, access, q=q or None, limit=SIDEBAR_LIMIT)
    saved = await templates.list_templates(db, access)
    can_write = access.role.at_least(Role.member)
    conversation = target.conversation if target else None
    messages = [_message_view(m) for m in await service.get_messages(db, target)] if target else []
    owner_email = ""
    if target is not None and not target.is_owner:
        owner_email = next(
            (i.owner_email for i in sidebar.items if i.conversation.id == target.conversation.id),
            "",
        ) or await _owner_email(db, target)
    last_assistant = next(
        (m["id"] for m in reversed(messages) if m["role"] == MessageRole.assistant), None
    )
    default = service.default_model(gateway)
    context.update(
        {
            "active": "chat",
            "sidebar": sidebar,
            "q": q,
            "conversation": conversation,
            "messages": messages,
            "last_assistant": last_assistant,
            "can_change": bool(target and target.can_change) or (target is None and can_write),
            "can_delete": bool(target and target.can_delete),
            "is_owner": bool(target and target.is_owner),
            "owner_email": owner_email,
            "can_write": can_write,
            "models": service.chat_models(gateway),
            "repositories": await _repositories(db, access),
            "chosen_repos": list(conversation.repo_ids or []) if conversation else [],
            "chosen_model": (conversation.model if conversation else "") or default,
            "default_model": default,
            "templates": [_template_view(t) for t in saved],
            "page_error": error.message if error else "",
            "draft": draft,
            "chat_url": f"{base}/chat/{conversation.id}" if conversation else f"{base}/chat",
            "send_url": (
                f"{base}/chat/{conversation.id}/send" if conversation else f"{base}/chat/new"
            ),
        }
    )
    return render(
        request,
        "chat.html",
        context,
        status_code=error.status_code if error else 200,
        user=access.user,
    )


async def _owner_email(db: AsyncSession, target: ConversationAccess) -> str:
    found = await emails_of(db, [target.conversation.user_id])
    return found.get(target.conversation.user_id, "")


async def _conversation(
    request: Request,
    db: AsyncSession,
    principal: Principal,
    access: WorkspaceAccess,
    conversation_id: str,
    need: service.Need = "read",
) -> ConversationAccess:
    """The conversation, checked by the service; one of another workspace is not here."""
    target = await service.conversation_access(
        db, principal, conversation_id, need, path=request.url.path
    )
    if target.conversation.workspace_id != access.workspace.id:
        raise NotFound(f"no conversation with id {conversation_id}")
    return target


async def _refused_page(
    request: Request,
    db: AsyncSession,
    principal: Principal,
    access: WorkspaceAccess,
    conversation_id: str,
    error: HexaHubError,
    draft: str = "",
) -> Response:
    """The conversation's page again, as stored, with why a change was refused."""
    await _recover(db, access)
    target = await _conversation(request, db, principal, access, conversation_id)
    return await _chat_page(request, db, access, target, error=error, draft=draft)


# --- pages ------------------------------------------------------------------------------


@router.get("/chat")
async def chat_home(
    request: Request, db: DbSession, principal: PagePrincipal, workspace: str = ""
) -> Response:
    """The navigation's Chat link: the named workspace, else the first of yours."""
    if not workspace:
        mine = await workspaces.workspaces_of(db, principal.user.id)
        if not mine:
            return redirect("/workspaces")
        workspace = mine[0][0].id
    access = await authz.workspace_access(
        db, principal, workspace, Role.viewer, "read", path=request.url.path
    )
    return redirect(f"/workspaces/{access.workspace.id}/chat")


@router.get("/workspaces/{workspace_id}/chat")
async def new_chat_page(
    request: Request, db: DbSession, access: WorkspaceReaderPage, q: str = ""
) -> Response:
    return await _chat_page(request, db, access, None, q=q[: service.MAX_SEARCH])


@router.get("/workspaces/{workspace_id}/chat/conversations")
async def sidebar_list(
    request: Request, db: DbSession, access: WorkspaceReaderPage, q: str = ""
) -> Response:
    """The sidebar's list alone, for the search box (hx-get)."""
    q = q[: service.MAX_SEARCH]
    sidebar = await service.list_conversations(db, access, q=q or None, limit=SIDEBAR_LIMIT)
    return render(
        request,
        "chat_list.html",
        {**workspace_context(access, "chat"), "sidebar": sidebar, "q": q, "conversation": None},
        user=access.user,
    )


@router.get("/workspaces/{workspace_id}/chat/{conversation_id}")
async def conversation_page(
    request: Request,
    db: DbSession,
    access: WorkspaceReaderPage,
    principal: PagePrincipal,
    conversation_id: str,
    q: str = "",
) -> Response:
    target = await _conversation(request, db, principal, access, conversation_id)
    return await _chat_page(request, db, access, target, q=q[: service.MAX_SEARCH])


# --- sending and streaming ----------------------------------------------------------------


def _sse(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, default=str, separators=(",", ":"))
    return f"event: {event.get('type', 'message')}\ndata: {data}\n\n".encode()


def _refused(exc: HexaHubError) -> JSONResponse:
    """A refusal chat.js can show: the API's error shape and status."""
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message}}, status_code=exc.status_code
    )


async def _answer(request: Request, reply: Reply, conversation_id: str, base: str) -> Response:
    """Stream the reply's events to chat.js, or, without JavaScript, wait and redirect."""
    where = f"{base}/chat/{conversation_id}"
    if not _wants_stream(request):
        await reply.finish()
        return redirect(where)

    async def events() -> AsyncIterator[bytes]:
        # The conversation's address first, so a new chat's page can be opened after.
        yield _sse({"type": "conversation", "id": conversation_id, "url": where})
        async for event in reply:
            yield _sse(event)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/workspaces/{workspace_id}/chat/new", dependencies=[CsrfChecked])
async def start_conversation(
    request: Request,
    db: DbSession,
    access: WorkspaceReaderPage,
    content: Text = "",
    model: Short = "",
    system_prompt: Annotated[str, Form(max_length=service.MAX_SYSTEM_PROMPT)] = "",
    use_repo_context: Checkbox = "",
    repo_ids: RepoIds | None = None,
) -> Response:
    try:
        conversation, reply = await replies.start_conversation(
            db,
            _gateway(request),
            access,
            content,
            model=model,
            system_prompt=system_prompt,
            use_repo_context=use_repo_context == "true",
            repo_ids=_chosen_repos(repo_ids),
        )
    except HexaHubError as exc:
        # Refused before anything was stored: no empty conversation is left behind.
        if _wants_stream(request):
            return _refused(exc)
        await _recover(db, access)
        return await _chat_page(request, db, access, None, error=exc, draft=content)
    return await _answer(request, reply, conversation.id, f"/workspaces/{access.workspace.id}")


@router.post("/workspaces/{workspace_id}/chat/{conversation_id}/send", dependencies=[CsrfChecked])
async def send(
    request: Request,
    db: DbSession,
    access: WorkspaceReaderPage,
    principal: PagePrincipal,
    conversation_id: str,
    content: Text = "",
    model: Short = "",
    action: Short = "send",
    message_id: Short = "",
) -> Response:
    gateway = _gateway(request)
    target = await _conversation(request, db, principal, access, conversation_id, "change")
    try:
        if action == "regenerate":
            reply = await replies.regenerate(db, gateway, target, model=model or None)
        elif action == "edit":
            reply = await replies.edit_and_resend(
                db, gateway, target, message_id, content, model=model or None
            )
        else:
            reply = await replies.send_message(db, gateway, target, content, model=model or None)
    except HexaHubError as exc:
        if _wants_stream(request):
            return _refused(exc)
        return await _refused_page(request, db, principal, access, conversation_id, exc, content)
    return await _answer(request, reply, conversation_id, f"/workspaces/{access.workspace.id}")


@router.post("/workspaces/{workspace_id}/chat/{conversation_id}/stop", dependencies=[CsrfChecked])
async def stop(
    request: Request,
    db: DbSession,
    access: WorkspaceReaderPage,
    principal: PagePrincipal,
    conversation_id: str,
) -> Response:
    target = await _conversation(request, db, principal, access, conversation_id, "change")
    stopped = await replies.stop_reply(db, _gateway(request), target)
    if _wants_stream(request) or request.headers.get("accept", "").startswith("application/json"):
        return JSONResponse({"stopped": stopped})
    return redirect(f"/workspaces/{access.workspace.id}/chat/{conversation_id}")


# --- conversation settings ------------------------------------------------------------------


@router.post(
    "/workspaces/{workspace_id}/chat/{conversation_id}/settings", dependencies=[CsrfChecked]
)
async def save_settings(
    request: Request,
    db: DbSession,
    access: WorkspaceReaderPage,
    principal: PagePrincipal,
    conversation_id: str,
    title: Short = "",
    model: Short = "",
    system_prompt: Annotated[str, Form(max_length=service.MAX_SYSTEM_PROMPT)] = "",
    use_repo_context: Checkbox = "",
    repo_ids: RepoIds | None = None,
) -> Response:
    target = await _conversation(request, db, principal, access, conversation_id, "change")
    try:
        await service.update_conversation(
            db,
            _gateway(request),
            target,
            title=title,
            model=model,
            system_prompt=system_prompt,
            use_repo_context=use_repo_context == "true",
            repo_ids=_chosen_repos(repo_ids),
        )
    except HexaHubError as exc:
        return await _refused_page(request, db, principal, access, conversation_id, exc)
    where = f"/workspaces/{access.workspace.id}/chat/{conversation_id}"
    return redirect(f"{where}?ok=conversation_saved")


@router.post("/workspaces/{workspace_id}/chat/{conversation_id}/pin", dependencies=[CsrfChecked])
async def pin(
    request: Request,
    db: DbSession,
    access: WorkspaceReaderPage,
    principal: PagePrincipal,
    conversation_id: str,
    pinned: Checkbox = "",
) -> Response:
    target = await _conversation(request, db, principal, access, conversation_id, "change")
    await service.pin(db, target, pinned == "true")
    return redirect(f"/workspaces/{access.workspace.id}/chat/{conversation_id}")


@router.post("/workspaces/{workspace_id}/chat/{conversation_id}/share", dependencies=[CsrfChecked])
async def share(
    request: Request,
    db: DbSession,
    access: WorkspaceReaderPage,
    principal: PagePrincipal,
    conversation_id: str,
    shared: Checkbox = "",
) -> Response:
    target = await _conversation(request, db, principal, access, conversation_id, "change")
    await service.share(db, target, shared == "true")
    ok = "conversation_shared" if shared == "true" else "conversation_unshared"
    return redirect(f"/workspaces/{access.workspace.id}/chat/{conversation_id}?ok={ok}")


@router.post("/workspaces/{workspace_id}/chat/{conversation_id}/delete", dependencies=[CsrfChecked])
async def delete(
    request: Request,
    db: DbSession,
    access: WorkspaceReaderPage,
    principal: PagePrincipal,
    conversation_id: str,
) -> Response:
    target = await _conversation(request, db, principal, access, conversation_id, "delete")
    await service.delete_conversation(db, target)
    return redirect(f"/workspaces/{access.workspace.id}/chat?ok=conversation_deleted")


# --- prompt templates ---------------------------------------------------------------------


async def _templates_page(
    request: Request,
    db: AsyncSession,
    access: WorkspaceAccess,
    *,
    editing: templates.TemplateAccess | None = None,
    form: dict[str, str] | None = None,
    error: HexaHubError | None = None,
) -> Response:
    saved = await templates.list_templates(db, access)
    views = []
    for template in saved:
        view = _template_view(template)
        view["can_change"] = templates.TemplateAccess(access, template).can_change
        views.append(view)
    context = workspace_context(access, "templates")
    context.update(
        {
            "active": "chat",
            "templates": views,
            "editing": _template_view(editing.template) if editing else None,
            "form": form or {"name": "", "description": "", "body": ""},
            "can_write": access.role.at_least(Role.member),
            "page_error": error.message if error else "",
        }
    )
    return render(
        request,
        "chat_templates.html",
        context,
        status_code=error.status_code if error else 200,
        user=access.user,
    )


async def _template(
    request: Request,
    db: AsyncSession,
    principal: Principal,
    access: WorkspaceAccess,
    template_id: str,
    need: Any = "read",
) -> templates.TemplateAccess:
    path = request.url.path
    target = await templates.template_access(db, principal, template_id, need, path=path)
    if target.template.workspace_id != access.workspace.id:
        raise NotFound(f"no template with id {template_id}")
    return target


TemplateName = Annotated[str, Form(max_length=500)]
TemplateBody = Annotated[str, Form(max_length=templates.MAX_TEMPLATE_BODY)]


@router.get("/workspaces/{workspace_id}/templates")
async def templates_page(request: Request, db: DbSession, access: WorkspaceReaderPage) -> Response:
    return await _templates_page(request, db, access)


@router.post("/workspaces/{workspace_id}/templates", dependencies=[CsrfChecked])
async def create_template(
    request: Request,
    db: DbSession,
    access: WorkspaceReaderPage,
    name: TemplateName = "",
    description: TemplateName = "",
    body: TemplateBody = "",
) -> Response:
    try:
        await templates.create_template(db, access, name=name, body=body, description=description)
    except HexaHubError as exc:
        await _recover(db, access)
        form = {"name": name, "description": description, "body": body}
        return await _templates_page(request, db, access, form=form, error=exc)
    return redirect(f"/workspaces/{access.workspace.id}/templates?ok=template_created")


@router.get("/workspaces/{workspace_id}/templates/{template_id}")
async def edit_template_page(
    request: Request,
    db: DbSession,
    access: WorkspaceReaderPage,
    principal: PagePrincipal,
    template_id: str,
) -> Response:
    target = await _template(request, db, principal, access, template_id)
    form = {
        "name": target.template.name,
        "description": target.template.description,
        "body": target.template.body,
    }
    return await _templates_page(request, db, access, editing=target, form=form)


@router.post("/workspaces/{workspace_id}/templates/{template_id}", dependencies=[CsrfChecked])
async def update_template(
    request: Request,
    db: DbSession,
    access: WorkspaceReaderPage,
    principal: PagePrincipal,
    template_id: str,
    name: TemplateName = "",
    description: TemplateName = "",
    body: TemplateBody = "",
) -> Response:
    target = await _template(request, db, principal, access, template_id, "change")
    try:
        await templates.update_template(db, target, name=name, body=body, description=description)
    except HexaHubError as exc:
        await _recover(db, access)
        target = await _template(request, db, principal, access, template_id)
        form = {"name": name, "description": description, "body": body}
        return await _templates_page(request, db, access, editing=target, form=form, error=exc)
    return redirect(f"/workspaces/{access.workspace.id}/templates?ok=template_saved")


@router.post(
    "/workspaces/{workspace_id}/templates/{template_id}/delete", dependencies=[CsrfChecked]
)
async def delete_template(
    request: Request,
    db: DbSession,
    access: WorkspaceReaderPage,
    principal: PagePrincipal,
    template_id: str,
) -> Response:
    target = await _template(request, db, principal, access, template_id, "change")
    await templates.delete_template(db, target)
    return redirect(f"/workspaces/{access.workspace.id}/templates?ok=template_deleted")


def register_pages(app: FastAPI) -> None:
    """Called by create_app() after pages.mount(app)."""
    app.include_router(router)
