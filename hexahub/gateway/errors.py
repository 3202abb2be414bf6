"""Answering /v1 errors in the shape each API's clients expect.

The OpenAI-compatible routes answer `{"error": {"message", "type", "param", "code"}}`;
`/v1/messages` answers Anthropic's `{"type": "error", "error": {"type", "message"}}`.
A route class wraps the whole handler, authentication included, so no HexaHub-shaped
error ever reaches an SDK.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from hexahub.core.errors import HexaHubError
from hexahub.gateway.providers.base import UpstreamError
from hexahub.gateway.schemas import AnthropicError, OpenAIError
from hexahub.gateway.translate import anthropic as translate

log = logging.getLogger("hexahub.gateway")


def _parts(exc: Exception) -> tuple[int, str, str | None, dict[str, str] | None]:
    """(status, message, code, headers) of an error raised while serving a /v1 request."""
    if isinstance(exc, UpstreamError):
        status = exc.status if 400 <= exc.status < 600 else 502
        headers = {"Retry-After": str(int(exc.retry_after))} if exc.retry_after else None
        return status, exc.message, exc.error_type, headers
    if isinstance(exc, HexaHubError):
        return exc.status_code, exc.message, exc.code, exc.headers
    log.exception("unexpected error in the gateway")
    return 500, "internal error; the server log has the details under this request's id", None, None


def openai_error(exc: Exception) -> JSONResponse:
    status, message, code, headers = _parts(exc)
    kind = "insufficient_quota" if code == "budget_exceeded" else None
    body = translate.openai_error(status, message, kind, code, getattr(exc, "param", None))
    return JSONResponse(body, status_code=status, headers=headers)


def anthropic_error(exc: Exception) -> JSONResponse:
    status, message, _code, headers = _parts(exc)
    return JSONResponse(
        translate.anthropic_error(status, message), status_code=status, headers=headers
    )


def _route_class(
    shape: Callable[[Exception], JSONResponse], model: type[BaseModel]
) -> type[APIRoute]:
    class ShapedErrors(APIRoute):
        # The error body the OpenAPI document gives these routes (hexahub.core.openapi).
        error_model = model

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def shaped(request: Request) -> Response:
                try:
                    return await handler(request)
                except (HexaHubError, UpstreamError) as exc:
                    return shape(exc)
                except Exception as exc:
                    return shape(exc)

            return shaped

    return ShapedErrors


OpenAIRoute = _route_class(openai_error, OpenAIError)
AnthropicRoute = _route_class(anthropic_error, AnthropicError)
