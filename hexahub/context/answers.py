"""Context for a question: retrieve, number the passages, cite them.

Used by POST /api/ask, by the chat (repository context on demand) and by gateway
requests that ask for workspace context (`X-HexaHub-Context`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncSession

from hexahub.context.types import Hit
from hexahub.core.runtime import Runtime
from hexahub.identity.authz import Principal

# Passages are cut to this many characters each, so a small local context window holds
# several of them and the question.
PASSAGE_CHARS = 1200

INSTRUCTIONS = (
    "You answer questions about the user's code. Use the numbered passages below, which "
    "come from their repositories. Cite the passages you use as [1], [2], ... right after "
    "the sentence they support. If the passages do not contain the answer, say so."
)


def code_url(workspace_id: str, repo_id: str, path: str, start: int, end: int) -> str:
    """The code view's address for a line range (the page highlights it)."""
    return f"/workspaces/{workspace_id}/repos/{repo_id}/code/{quote(path)}#L{start}-L{end}"


@dataclass(frozen=True)
class Citation:
    number: int  # [1], [2], ... as the prompt numbers the passages
    repo_id: str
    repo_name: str
    path: str
    start_line: int
    end_line: int
    url: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "repo_id": self.repo_id,
            "repo": self.repo_name,
            "path": self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "url": self.url,
        }


@dataclass
class Retrieved:
    hits: list[Hit] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    # A system message that holds the numbered passages and asks for [n] citations;
    # empty when nothing was found.
    prompt: str = ""


def _passage(number: int, citation: Citation, hit: Hit) -> str:
    text = hit.text if len(hit.text) <= PASSAGE_CHARS else hit.text[:PASSAGE_CHARS] + "\n..."
    where = f"{citation.repo_name}/{citation.path} lines {hit.start_line}-{hit.end_line}"
    return f"[{number}] {where}\n```{hit.language}\n{text}\n```"


async def retrieve(
    runtime: Runtime,
    db: AsyncSession,
    workspace_id: str,
    question: str,
    *,
    repo_ids: list[str] | None = None,
    limit: int = 8,
    principal: Principal | None = None,
) -> Retrieved:
    """The passages of the workspace's repositories (or of `repo_ids`, names or ids) that
    best answer `question`, ready to put in front of a model."""
    from hexahub.context import service

    found, _ = await service.search_workspace(
        runtime,
        db,
        workspace_id,
        question,
        principal=principal,
        repos=repo_ids or None,
        limit=limit,
    )
    if not found:
        return Retrieved()
    citations: list[Citation] = []
    passages: list[str] = []
    for number, item in enumerate(found, start=1):
        hit = item.hit
        citation = Citation(
            number,
            item.repo.id,
            item.repo.name,
            hit.path,
            hit.start_line,
            hit.end_line,
            item.url,
        )
        citations.append(citation)
        passages.append(_passage(number, citation, hit))
    prompt = INSTRUCTIONS + "\n\n" + "\n\n".join(passages)
    return Retrieved([item.hit for item in found], citations, prompt)


def messages_with_context(retrieved: Retrieved, messages: list[Any]) -> list[Any]:
    """`messages` (OpenAI chat format) with the passages added as a system message in
    front of the last user message."""
    if not retrieved.prompt:
        return list(messages)
    context = {"role": "system", "content": retrieved.prompt}
    last_user = max(
        (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"),
        default=len(messages),
    )
    return [*messages[:last_user], context, *messages[last_user:]]


async def ask_stream(
    runtime: Runtime,
    gateway: Any,
    ctx: Any,
    model: str,
    retrieved: Retrieved,
    question: str,
    *,
    max_tokens: int | None = None,
) -> AsyncIterator[Any]:
    """The answer to `question` over the retrieved passages: text pieces, then the
    gateway's `TextStreamEnd`."""
    messages = messages_with_context(retrieved, [{"role": "user", "content": question}])
    body: dict[str, Any] = {"messages": messages}
    if max_tokens:
        body["max_tokens"] = max_tokens
    async for item in gateway.stream_text(ctx, model, body):
        yield item
