"""The least a Python gateway can do: a Starlette app that forwards
`POST /v1/chat/completions` to an upstream with pooled `httpx.AsyncClient`s and hands back
the upstream's JSON. No auth, no routing, no accounting, no metrics, no logging.

It is the benchmark's floor for "the same stack, doing nothing": HexaHub is built on the
same parts (uvicorn with uvloop and httptools, Starlette underneath FastAPI, httpx). By
default it uses one client, kept alive up to its connection limit; `--pools 8` spreads the
connections over eight clients (least busy first), as HexaHub's providers do.

    .venv/bin/python bench/passthrough.py --port 9101 --upstream http://127.0.0.1:9100/v1
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def make_app(upstream: str, *, max_connections: int, pools: int) -> Starlette:
    target = upstream.rstrip("/") + "/chat/completions"
    headers = {"content-type": "application/json"}
    clients: list[httpx.AsyncClient] = []
    busy = [0] * pools

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        per_pool = max(1, max_connections // pools)
        limits = httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
        timeout = httpx.Timeout(120.0, connect=10.0)
        for _ in range(pools):
            clients.append(httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False))
        try:
            yield
        finally:
            for client in clients:
                await client.aclose()

    async def chat_completions(request: Request) -> Response:
        body = await request.body()
        index = busy.index(min(busy)) if pools > 1 else 0
        busy[index] += 1
        try:
            upstream_response = await clients[index].post(target, content=body, headers=headers)
        finally:
            busy[index] -= 1
        return Response(
            upstream_response.content,
            status_code=upstream_response.status_code,
            media_type="application/json",
        )

    return Starlette(
        routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"])],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL ending in /v1")
    parser.add_argument("--max-connections", type=int, default=200, help="over all pools")
    parser.add_argument("--pools", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.upstream, max_connections=args.max_connections, pools=args.pools),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
