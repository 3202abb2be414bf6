"""Chat tables: conversations, their messages, and a workspace's prompt templates.

A conversation belongs to one person in one workspace; `shared` makes it readable (never
changeable) by everyone else in that workspace. Deleting a conversation deletes its
messages (a database cascade); there is no soft delete.

Messages form one line per conversation, ordered by `position`. Regenerating an answer or
editing a user message and sending it again *replaces* what came after that point: the
later messages are deleted and the new answer is written in their place. The new answer
keeps the id of the one it replaced in `replaces_id`, and an edited user message has
`edited_at` set, so a reader can tell the line was rewritten.

An answer's row is written together with its question (status `streaming`) and filled in
as the model writes: its text every few seconds, and everything (text, status, tokens,
cost, time to first token, citations) when it finishes, is stopped, or fails. An answer
the server stopped writing by stopping itself is marked failed when HexaHub starts again.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from hexahub.core.db import Base, IdMixin, TimestampMixin, UTCDateTime, utcnow

MAX_TITLE = 200
MAX_MODEL = 200
MAX_TEMPLATE_NAME = 100
MAX_DESCRIPTION = 500


class MessageRole(enum.StrEnum):
    user = "user"
    assistant = "assistant"
    system = "system"


class MessageStatus(enum.StrEnum):
    complete = "complete"
    streaming = "streaming"  # the answer is being written right now
    stopped = "stopped"  # the reader stopped it or went away; the partial text is kept
    failed = "failed"  # the model failed; `error` says why, the partial text is kept


class Conversation(IdMixin, TimestampMixin, Base):
    __tablename__ = "conversations"
    __table_args__ = (
        # My conversations, most recent first (the sidebar), and the shared ones.
        Index("ix_conversations_owner_recent", "workspace_id", "user_id", "updated_at"),
        Index("ix_conversations_shared_recent", "workspace_id", "shared", "updated_at"),
        Index("ix_conversations_title", "workspace_id", "title"),
    )

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    title: Mapped[str] = mapped_column(String(MAX_TITLE), nullable=False, default="")
    # "" means the installation's default chat model.
    model: Mapped[str] = mapped_column(String(MAX_MODEL), nullable=False, default="")
    system_prompt: Mapped[str] = mapped_column(Text, nullable=False, default="")
    pinned: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    use_repo_context: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Which repositories to draw context from; None means all of the workspace's.
    repo_ids: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    shared: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)


class Message(IdMixin, Base):
    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("conversation_id", "position"),)

    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    # Order in the conversation; the unique index also serves "messages of a conversation".
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False, default="")
    model: Mapped[str] = mapped_column(String(MAX_MODEL), nullable=False, default="")
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="complete")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    # An answer: how many earlier messages did not fit the model's context window and were
    # not sent (the oldest ones; hexahub.chat.history).
    left_out: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    # [{number, repo_id, repo_name, path, start_line, end_line, url}, ...]
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    # The answer this one replaced (regenerate, edit-and-resend); that row is gone.
    replaces_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, nullable=False)
    # Last written: for an answer being written, when its partial text was last saved (an
    # answer left `streaming` whose row has not changed for a while was cut off).
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class PromptTemplate(IdMixin, TimestampMixin, Base):
    __tablename__ = "prompt_templates"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    workspace_id: Mapped[str] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(MAX_TEMPLATE_NAME), nullable=False)
    description: Mapped[str] = mapped_column(String(MAX_DESCRIPTION), nullable=False, default="")
    # Text with {{variable}} placeholders.
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_by: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
