"""Workspace context on gateway requests: `X-HexaHub-Context` or a `+context` model suffix.

`register()` adds a `ContextEnricher` to the gateway when the app starts (the gateway is
the lower layer and never imports this; hexahub.gateway.enrich). For each /v1 chat
request the gateway asks it what the request wants (`wanted()`) and, when context is asked
for, runs `add_to_openai()` on the request in OpenAI format (/v1/messages after its
translation) before it goes to the router. The query's embedding is part of that request:
its tokens and cost go on the request's usage record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hexahub.context import answers
from hexahub.core.errors import ValidationFailed
from hexahub.core.runtime import Runtime
from hexahub.gateway.engine import CallContext, Gateway
from hexahub.gateway.enrich import Enrichment

HEADER = "x-hexahub-context"
SUFFIX = "+context"
CITATIONS_HEADER = "X-HexaHub-Context-Citations"


def wanted(header: str | None, body: dict[str, Any]) -> list[str] | None:
    """None when no context is asked for; [] for all repositories; else repository names.
    Strips the `+context` suffix from the body's model."""
    model = body.get("model")
    asked: list[str] | None = None
    if isinstance(model, str) and model.endswith(SUFFIX):
        body["model"] = model.removesuffix(SUFFIX)
        asked = []
    if header is not None and header.strip():
        value = header.strip()
        if value.lower() in ("workspace", "all", "on", "true", "1"):
            asked = []
        else:
            names = [n.strip() for n in value.split(",") if n.strip()]
            if not names or len(names) > 20:
                raise ValidationFailed(
                    "X-HexaHub-Context: say `workspace` or list up to 20 repository names"
                )
            asked = names
    return asked


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _question(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))[:2000]
    return ""


async def _retrieve(
    runtime: Runtime, workspace_id: str | None, repos: list[str], question: str
) -> answers.Retrieved:
    if not workspace_id or not question.strip():
        return answers.Retrieved()
    async with runtime.db.sessions() as db:
        return await answers.retrieve(runtime, db, workspace_id, question, repo_ids=repos or None)


def citations_header(retrieved: answers.Retrieved) -> dict[str, str]:
    if not retrieved.citations:
        return {}
    cited = [c.as_dict() for c in retrieved.citations]
    return {CITATIONS_HEADER: json.dumps(cited, separators=(",", ":"))}


async def add_to_openai(
    runtime: Runtime, workspace_id: str | None, repos: list[str], body: dict[str, Any]
) -> answers.Retrieved:
    retrieved = await _retrieve(runtime, workspace_id, repos, _question(body.get("messages")))
    if retrieved.prompt:
        body["messages"] = answers.messages_with_context(retrieved, body["messages"])
    return retrieved


class ContextEnricher:
    """The gateway's request enricher for workspace code context."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def asked(self, headers: Mapping[str, str], body: dict[str, Any]) -> Enrichment | None:
        repos = wanted(headers.get(HEADER), body)
        if repos is None:
            return None

        async def add(ctx: CallContext, canonical: dict[str, Any]) -> dict[str, str]:
            retrieved = await add_to_openai(self.runtime, ctx.workspace_id, repos, canonical)
            return citations_header(retrieved)

        return add


def register(gateway: Gateway) -> None:
    """Offer workspace context on the gateway's chat requests (at app start)."""
    gateway.add_enricher(ContextEnricher(gateway.runtime))
