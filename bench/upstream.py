"""A fast local upstream that speaks just enough of OpenAI's API for the gateway benchmark.

`POST .../chat/completions` answers every request with the same small, non-streamed chat
completion (with usage); `GET .../models` lists one model (for health checks). It is a raw
ASGI app on uvicorn (uvloop, httptools, no access log), so each request costs the upstream
as little as possible and the gateways in front of it are what the benchmark measures.

    .venv/bin/python bench/upstream.py --port 9100
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import uvicorn

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "bench-upstream",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "pong"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
    },
    separators=(",", ":"),
).encode()
MODELS = json.dumps(
    {"object": "list", "data": [{"id": "bench-upstream", "object": "model", "created": 0}]}
).encode()
NOT_FOUND = json.dumps(
    {"error": {"message": "not found", "type": "invalid_request_error"}}
).encode()


def _start(status: int, body: bytes) -> dict[str, Any]:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    # Drain the request body so keep-alive connections stay usable.
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    path: str = scope["path"]
    if scope["method"] == "POST" and path.endswith("/chat/completions"):
        body, status = COMPLETION, 200
    elif scope["method"] == "GET" and path.endswith("/models"):
        body, status = MODELS, 200
    else:
        body, status = NOT_FOUND, 404
    await send(_start(status, body))
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
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
