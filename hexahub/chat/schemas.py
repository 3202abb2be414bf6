"""API shapes of the chat: conversations, messages, templates."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from hexahub.chat.models import MAX_DESCRIPTION, MAX_MODEL, MAX_TEMPLATE_NAME, MAX_TITLE
from hexahub.chat.replies import MAX_CONTENT
from hexahub.chat.service import MAX_REPO_IDS, MAX_SYSTEM_PROMPT
from hexahub.chat.templates import MAX_TEMPLATE_BODY
from hexahub.core.bodies import JsonBody
from hexahub.core.openapi import NOT_BLANK


class Strict(JsonBody):
    pass


class Citation(BaseModel):
    number: int
    repo_id: str
    repo_name: str
    path: str
    start_line: int
    end_line: int
    url: str


class MessageOut(BaseModel):
    id: str
    conversation_id: str
    position: int
    role: Literal["user", "assistant", "system"]
    content: str
    model: str
    status: Literal["complete", "streaming", "stopped", "failed"]
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    ttft_ms: float | None
    citations: list[Citation]
    left_out: int = Field(
        0,
        description="An answer: how many earlier messages of the conversation did not fit the "
        "model's context window and were not sent to it (the oldest ones; failed answers "
        "are never sent and not counted)",
    )
    replaces_id: str | None = Field(
        description="The answer this one replaced (regenerate, edit-and-resend)"
    )
    edited_at: datetime | None
    created_at: datetime


class ConversationOut(BaseModel):
    id: str
    workspace_id: str
    user_id: str
    title: str
    model: str = Field(description="Empty: the installation's default chat model")
    system_prompt: str
    pinned: bool
    shared: bool
    use_repo_context: bool
    repo_ids: list[str] | None
    created_at: datetime
    updated_at: datetime


class ConversationSummary(ConversationOut):
    owner_email: str
    mine: bool


class ConversationList(BaseModel):
    items: list[ConversationSummary]
    total: int
    limit: int
    offset: int


class ConversationDetail(ConversationOut):
    can_change: bool
    can_delete: bool
    messages: list[MessageOut]


class ConversationCreate(Strict):
    workspace_id: str | None = Field(
        None, description="Default: the key's workspace, else the caller's only one"
    )
    title: str = Field("", max_length=MAX_TITLE)
    model: str = Field("", max_length=MAX_MODEL)
    system_prompt: str = Field("", max_length=MAX_SYSTEM_PROMPT)
    use_repo_context: bool = False
    repo_ids: list[str] | None = Field(None, max_length=MAX_REPO_IDS)


class ConversationUpdate(Strict):
    title: str | None = Field(None, max_length=MAX_TITLE)
    model: str | None = Field(None, max_length=MAX_MODEL)
    system_prompt: str | None = Field(None, max_length=MAX_SYSTEM_PROMPT)
    pinned: bool | None = None
    shared: bool | None = None
    use_repo_context: bool | None = None
    repo_ids: list[str] | None = Field(None, max_length=MAX_REPO_IDS)


class MessageCreate(Strict):
    content: str = Field(max_length=MAX_CONTENT, json_schema_extra=NOT_BLANK)
    model: str | None = Field(None, max_length=MAX_MODEL)
    stream: bool = Field(False, description="Answer as text/event-stream events")


class MessageEdit(MessageCreate):
    pass


class Regenerate(Strict):
    model: str | None = Field(None, max_length=MAX_MODEL)
    stream: bool = False


class Stopped(BaseModel):
    stopped: bool = Field(description="Whether an answer was being written")


class TemplateOut(BaseModel):
    id: str
    workspace_id: str
    name: str
    description: str
    body: str
    variables: list[str]
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class TemplateCreate(Strict):
    workspace_id: str | None = None
    name: str = Field(max_length=MAX_TEMPLATE_NAME, json_schema_extra=NOT_BLANK)
    body: str = Field(max_length=MAX_TEMPLATE_BODY, json_schema_extra=NOT_BLANK)
    description: str = Field("", max_length=MAX_DESCRIPTION)


class TemplateUpdate(Strict):
    name: str | None = Field(None, max_length=MAX_TEMPLATE_NAME, json_schema_extra=NOT_BLANK)
    body: str | None = Field(None, max_length=MAX_TEMPLATE_BODY, json_schema_extra=NOT_BLANK)
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)


class TemplateRender(Strict):
    variables: dict[str, str] = Field(default_factory=dict)


class Rendered(BaseModel):
    text: str
    variables: list[str]


def fields_given(model: BaseModel) -> dict[str, Any]:
    """The fields a request actually sent (null included), for partial updates."""
    return {name: getattr(model, name) for name in model.model_fields_set}
