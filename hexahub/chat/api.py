"""Chat routes: /api/conversations (and their messages) and /api/templates.

Collection routes take an optional `workspace_id` (default: the API key's workspace, else
the caller's only one). Routes with a conversation or template id load it and check the
caller's role in its workspace; strangers get 404. What each route needs is its typed
parameter: ConversationReader (the owner, or anyone in the workspace when it is shared),
ConversationOwner (the owner, a member), ConversationDeleter (the owner or an admin).

Sending a message answers either as JSON (the finished answer) or, with `"stream": true`,
as `text/event-stream`: one `data: {json}` line per event, `start`, maybe `context`, then
`delta`s, then `done` or `error` (hexahub.chat.replies.Reply).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.chat import exports, replies, service, templates
from hexahub.chat.replies import Reply
from hexahub.chat.schemas import (
    ConversationCreate,
    ConversationDetail,
    ConversationList,
    ConversationOut,
    ConversationSummary,
    ConversationUpdate,
    MessageCreate,
    MessageEdit,
    MessageOut,
    Regenerate,
    Rendered,
    Stopped,
    TemplateCreate,
    TemplateOut,
    TemplateRender,
    TemplateUpdate,
    fields_given,
)
from hexahub.chat.service import ConversationAccess
from hexahub.chat.templates import TemplateAccess
from hexahub.core.deps import DbSession, get_db
from hexahub.gateway.engine import Gateway
from hexahub.identity.authz import (
    Authenticated,
    AuthenticatedWriter,
    Principal,
    WorkspaceAccess,
    chosen_workspace,
    require_user,
)
from hexahub.identity.models import Role

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in, or the credentials are not valid"},
    403: {"description": "The caller may see this but not do this (audited)"},
    404: {"description": "No such conversation, message or template visible to the caller"},
    409: {"description": "A name is taken, or an answer is still being written"},
    422: {"description": "The request is malformed; the message names the field"},
    429: {"description": "A rate limit or budget of the caller is reached"},
}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
STREAM_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The answer (JSON), or its events (`stream: true`)",
        "content": {"text/event-stream": {}},
    },
    502: {"description": "The model failed; the failed answer is stored with its text"},
}

router = APIRouter(prefix="/api", tags=["chat"], responses=ERRORS)


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _conversation(need: service.Need) -> Any:
    scope = "read" if need == "read" else "write"

    async def dependency(
        request: Request,
        conversation_id: str,
        db: AsyncSession = Depends(get_db),
        principal: Principal = Depends(require_user(scope)),
    ) -> ConversationAccess:
        return await service.conversation_access(
            db, principal, conversation_id, need, path=request.url.path
        )

    dependency.__name__ = f"conversation_{need}"
    return dependency


def _template(need: Literal["read", "change"]) -> Any:
    scope = "read" if need == "read" else "write"

    async def dependency(
        request: Request,
        template_id: str,
        db: AsyncSession = Depends(get_db),
        principal: Principal = Depends(require_user(scope)),
    ) -> TemplateAccess:
        return await templates.template_access(
            db, principal, template_id, need, path=request.url.path
        )

    dependency.__name__ = f"template_{need}"
    return dependency


ConversationReader = Annotated[ConversationAccess, Depends(_conversation("read"))]
ConversationOwner = Annotated[ConversationAccess, Depends(_conversation("change"))]
ConversationDeleter = Annotated[ConversationAccess, Depends(_conversation("delete"))]
TemplateReader = Annotated[TemplateAccess, Depends(_template("read"))]
TemplateEditor = Annotated[TemplateAccess, Depends(_template("change"))]


def _conversation_out(conversation: Any) -> ConversationOut:
    return ConversationOut(**service.conversation_dict(conversation))


async def _detail(db: AsyncSession, target: ConversationAccess) -> ConversationDetail:
    messages = await service.get_messages(db, target)
    return ConversationDetail(
        **service.conversation_dict(target.conversation),
        can_change=target.can_change,
        can_delete=target.can_delete,
        messages=[MessageOut(**service.message_dict(m)) for m in messages],
    )


async def _answer(reply: Reply, stream: bool) -> Response:
    if stream:
        return StreamingResponse(
            _events(reply), media_type="text/event-stream", headers=SSE_HEADERS
        )
    message = await reply.finish()
    return JSONResponse(MessageOut(**message).model_dump(mode="json"))


async def _events(reply: Reply) -> AsyncIterator[bytes]:
    async for event in reply:
        yield b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


# --- conversations ----------------------------------------------------------------------


@router.get("/conversations", summary="My conversations and those shared in the workspace")
async def list_conversations(
    request: Request,
    principal: Authenticated,
    db: DbSession,
    workspace_id: Annotated[str | None, Query(description="Default: your only workspace")] = None,
    q: Annotated[
        str | None, Query(max_length=service.MAX_SEARCH, description="Search titles and text")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ConversationList:
    access = await chosen_workspace(
        db, principal, workspace_id, Role.viewer, "read", path=request.url.path
    )
    page = await service.list_conversations(db, access, q=q, limit=limit, offset=offset)
    return ConversationList(
        items=[
            ConversationSummary(
                **service.conversation_dict(item.conversation),
                owner_email=item.owner_email,
                mine=item.mine,
            )
            for item in page.items
        ],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post("/conversations", summary="Start a conversation", status_code=201)
async def create_conversation(
    request: Request, body: ConversationCreate, principal: AuthenticatedWriter, db: DbSession
) -> ConversationOut:
    access: WorkspaceAccess = await chosen_workspace(
        db, principal, body.workspace_id, Role.member, "write", path=request.url.path
    )
    conversation = await service.create_conversation(
        db,
        gateway_of(request),
        access,
        title=body.title,
        model=body.model,
        system_prompt=body.system_prompt,
        use_repo_context=body.use_repo_context,
        repo_ids=body.repo_ids,
    )
    return _conversation_out(conversation)


@router.get("/conversations/{conversation_id}", summary="A conversation with its messages")
async def get_conversation(target: ConversationReader, db: DbSession) -> ConversationDetail:
    return await _detail(db, target)


@router.patch(
    "/conversations/{conversation_id}",
    summary="Rename, pin, share, or set the model, system prompt or repository context",
)
async def update_conversation(
    request: Request, body: ConversationUpdate, target: ConversationOwner, db: DbSession
) -> ConversationOut:
    changes = {
        name: value
        for name, value in fields_given(body).items()
        if value is not None or name == "repo_ids"  # null repo_ids: every repository
    }
    conversation = await service.update_conversation(db, gateway_of(request), target, **changes)
    return _conversation_out(conversation)


@router.delete(
    "/conversations/{conversation_id}",
    summary="Delete a conversation and its messages (owner or admin)",
    status_code=204,
)
async def delete_conversation(target: ConversationDeleter, db: DbSession) -> Response:
    await service.delete_conversation(db, target)
    return Response(status_code=204)


@router.post(
    "/conversations/{conversation_id}/messages",
    summary="Send a message and get the answer (streamed with `stream: true`)",
    responses=STREAM_RESPONSE,
    response_model=MessageOut,
)
async def send_message(
    request: Request, body: MessageCreate, target: ConversationOwner, db: DbSession
) -> Response:
    reply = await replies.send_message(
        db, gateway_of(request), target, body.content, model=body.model
    )
    return await _answer(reply, body.stream)


@router.post(
    "/conversations/{conversation_id}/regenerate",
    summary="Answer the last message again (replaces the answer after it)",
    responses=STREAM_RESPONSE,
    response_model=MessageOut,
)
async def regenerate(
    request: Request, target: ConversationOwner, db: DbSession, body: Regenerate | None = None
) -> Response:
    body = body or Regenerate()
    reply = await replies.regenerate(db, gateway_of(request), target, model=body.model)
    return await _answer(reply, body.stream)


@router.patch(
    "/conversations/{conversation_id}/messages/{message_id}",
    summary="Edit one of my messages and send it again (replaces everything after it)",
    responses=STREAM_RESPONSE,
    response_model=MessageOut,
)
async def edit_message(
    request: Request,
    message_id: str,
    body: MessageEdit,
    target: ConversationOwner,
    db: DbSession,
) -> Response:
    reply = await replies.edit_and_resend(
        db, gateway_of(request), target, message_id, body.content, model=body.model
    )
    return await _answer(reply, body.stream)


@router.post(
    "/conversations/{conversation_id}/stop",
    summary="Stop the answer being written (its text so far is kept)",
)
async def stop(request: Request, target: ConversationOwner, db: DbSession) -> Stopped:
    return Stopped(stopped=await replies.stop_reply(db, gateway_of(request), target))


@router.get(
    "/conversations/{conversation_id}/export",
    summary="Export a conversation as Markdown or JSON",
    response_model=None,
    responses={
        200: {
            "description": "The conversation",
            "content": {"text/markdown": {}, "application/json": {}},
        }
    },
)
async def export_conversation(
    target: ConversationReader,
    db: DbSession,
    format: Annotated[Literal["markdown", "json"], Query()] = "markdown",
) -> Response:
    stem = _filename(target.conversation.title or "conversation")
    if format == "json":
        data = await exports.export_json(db, target)
        return JSONResponse(
            data, headers={"Content-Disposition": f'attachment; filename="{stem}.json"'}
        )
    text = await exports.export_markdown(db, target)
    return PlainTextResponse(
        text,
        media_type="text/markdown; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{stem}.md"'},
    )


def _filename(title: str) -> str:
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in title)
    return "-".join(part for part in safe.split("-") if part)[:60] or "conversation"


# --- templates --------------------------------------------------------------------------


def _template_out(template: Any) -> TemplateOut:
    return TemplateOut(**templates.template_dict(template))


@router.get("/templates", summary="The workspace's prompt templates")
async def list_templates(
    request: Request,
    principal: Authenticated,
    db: DbSession,
    workspace_id: Annotated[str | None, Query(description="Default: your only workspace")] = None,
) -> list[TemplateOut]:
    access = await chosen_workspace(
        db, principal, workspace_id, Role.viewer, "read", path=request.url.path
    )
    return [_template_out(t) for t in await templates.list_templates(db, access)]


@router.post("/templates", summary="Create a prompt template", status_code=201)
async def create_template(
    request: Request, body: TemplateCreate, principal: AuthenticatedWriter, db: DbSession
) -> TemplateOut:
    access = await chosen_workspace(
        db, principal, body.workspace_id, Role.member, "write", path=request.url.path
    )
    template = await templates.create_template(
        db, access, name=body.name, body=body.body, description=body.description
    )
    return _template_out(template)


@router.get("/templates/{template_id}", summary="A prompt template")
async def get_template(target: TemplateReader) -> TemplateOut:
    return _template_out(target.template)


@router.patch("/templates/{template_id}", summary="Change a template (its creator or an admin)")
async def update_template(
    body: TemplateUpdate, target: TemplateEditor, db: DbSession
) -> TemplateOut:
    changes = {k: v for k, v in fields_given(body).items() if v is not None}
    template = await templates.update_template(db, target, **changes)
    return _template_out(template)


@router.delete(
    "/templates/{template_id}",
    summary="Delete a template (its creator or an admin)",
    status_code=204,
)
async def delete_template(target: TemplateEditor, db: DbSession) -> Response:
    await templates.delete_template(db, target)
    return Response(status_code=204)


@router.post(
    "/templates/{template_id}/render",
    summary="Fill a template's {{variables}} (422 names any without a value)",
)
async def render_template(body: TemplateRender, target: TemplateReader) -> Rendered:
    text = templates.render_template(target.template.body, body.variables)
    return Rendered(text=text, variables=templates.template_variables(target.template.body))
