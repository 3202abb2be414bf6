"""The ASGI middleware every request passes through.

One pure-ASGI layer (cheap on the hot path) that:
- gives each request an id (taken from a sane `X-Request-ID` header or made up), puts it in
  the logging context and in the response's `X-Request-ID` header;
- refuses bodies over the configured size with 413 (by Content-Length up front, and by
  counting while streaming when there is none);
- answers an unhandled exception with a generic 500 and logs it under the request id;
- records Prometheus request counts and latencies by route template and status;
- adds security headers to every response.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hexahub.core.errors import INTERNAL_ERROR_MESSAGE, error_body
from hexahub.core.logging import request_id_var
from hexahub.core.metrics import HTTP_IN_FLIGHT, HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("hexahub.http")
error_log = logging.getLogger("hexahub.errors")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class BodyTooLarge(HTTPException):
    """Raised while a body without Content-Length is read. An HTTPException because
    FastAPI turns any other error raised while it reads a body into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            detail=f"request body is larger than the {limit}-byte limit",
            headers={"connection": "close"},
        )


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, hsts: bool = False) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
            (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        ]
        if hsts:
            headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
        self.security_headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}
        method = scope["method"]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(h for h in self.security_headers if h[0] not in present)
                message["headers"] = headers
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.max_body_bytes:
                await _send_too_large(send_wrapper, self.max_body_bytes)
                return
            try:
                await self.app(scope, self._limited(receive), send_wrapper)
            except Exception:
                # Answered here rather than by Starlette's outermost handler, so that the
                # 500 gets the request id and security headers and the log line the id.
                error_log.exception("unhandled error on %s %s", method, scope.get("path", ""))
                if status_holder["started"]:
                    raise  # too late for an error response: the server drops the connection
                status_holder["status"] = 500
                await _send_json(
                    send_wrapper, 500, error_body("internal_error", INTERNAL_ERROR_MESSAGE)
                )
        finally:
            HTTP_IN_FLIGHT.dec()
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            status = status_holder["status"]
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_LATENCY.labels(method, route).observe(elapsed)
            log.info(
                "%s %s -> %s in %.1f ms",
                method,
                scope.get("path", ""),
                status,
                elapsed * 1000,
                extra={"status": status, "duration_ms": round(elapsed * 1000, 2)},
            )
            request_id_var.reset(token)

    def _limited(self, receive: Receive) -> Receive:
        limit = self.max_body_bytes
        seen = 0

        async def receive_limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return receive_limited


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _SAFE_REQUEST_ID.match(candidate) else None
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else "<unmatched>"


async def _send_too_large(send: Send, limit: int) -> None:
    body = error_body("payload_too_large", f"request body is larger than the {limit}-byte limit")
    await _send_json(send, 413, body, [(b"connection", b"close")])


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
