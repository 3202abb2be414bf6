"""A conversation as a file: JSON (every field) or Markdown (for reading).

export_json(db, target) -> dict
export_markdown(db, target) -> str
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.chat.models import MessageRole, MessageStatus
from hexahub.chat.service import (
    ConversationAccess,
    conversation_dict,
    get_messages,
    json_safe,
    message_dict,
)
from hexahub.core.db import utcnow


async def export_json(db: AsyncSession, target: ConversationAccess) -> dict[str, Any]:
    """The conversation and every message, as plain JSON values."""
    messages = await get_messages(db, target)
    return {
        "format": "hexahub.conversation.v1",
        "exported_at": utcnow().isoformat(),
        "conversation": json_safe(conversation_dict(target.conversation)),
        "messages": [json_safe(message_dict(m)) for m in messages],
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
