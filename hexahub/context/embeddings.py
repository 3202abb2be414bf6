"""Embeddings for code chunks and queries, through the gateway (a local model by default).

`Embedder` is what the indexer and the search need; `GatewayEmbedder` asks the gateway, so
the workspace's policy ("local models only"), usage accounting and fallbacks apply to
indexing as to any other request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from hexahub.core.runtime import Runtime
from hexahub.gateway.engine import CallContext, Gateway


class Embedder(Protocol):
    model: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


async def gateway_of(runtime: Runtime) -> Gateway:
    """The process's gateway: the server's own, or (in a worker) one started on first use."""
    found = runtime.services.get("gateway")
    if found is not None:
        return found
    lock: asyncio.Lock = runtime.services.setdefault("gateway.lock", asyncio.Lock())
    async with lock:
        found = runtime.services.get("gateway")
        if found is None:
            found = await Gateway.start(runtime)
            runtime.services["gateway"] = found
            runtime.closers.append(found.stop)
    return found


class GatewayEmbedder:
    def __init__(
        self,
        gateway: Gateway,
        model: str,
        *,
        workspace_id: str | None,
        user_id: str | None = None,
        key_id: str | None = None,
        local_only: bool = False,
    ) -> None:
        self.gateway = gateway
        self.model = model
        self._who = (workspace_id, user_id, key_id, local_only)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        workspace_id, user_id, key_id, local_only = self._who
        ctx = CallContext(
            workspace_id=workspace_id, user_id=user_id, key_id=key_id, local_only=local_only
        )
        body = {"model": self.model, "input": list(texts)}
        response, _, _ = await self.gateway.complete(ctx, "embeddings", self.model, body)
        data = sorted(response.get("data") or [], key=lambda item: item.get("index", 0))
        if len(data) != len(texts):
            raise RuntimeError(
                f"the embedding model {self.model} answered {len(data)} vectors "
                f"for {len(texts)} texts"
            )
        return [[float(x) for x in item["embedding"]] for item in data]
