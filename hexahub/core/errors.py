"""One exception hierarchy for HexaHub, and the handlers that turn it into JSON.

Every error body outside `/v1` is `{"error": {"code": ..., "message": ...}}`. The `/v1`
gateway routes install their own handlers for the OpenAI and Anthropic shapes. A
handler never leaks a stack trace: unexpected exceptions are logged with the request id
and answered with a generic 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import Scope

log = logging.getLogger("hexahub.errors")


class HexaHubError(Exception):
    """Base of every error HexaHub raises on purpose."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers


class BadRequest(HexaHubError):
    status_code = 400
    code = "bad_request"


class Unauthenticated(HexaHubError):
    status_code = 401
    code = "unauthenticated"


class Forbidden(HexaHubError):
    status_code = 403
    code = "forbidden"


class NotFound(HexaHubError):
    status_code = 404
    code = "not_found"


class Conflict(HexaHubError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(HexaHubError):
    status_code = 413
    code = "payload_too_large"


class ValidationFailed(HexaHubError):
    status_code = 422
    code = "validation_error"


class RateLimited(HexaHubError):
    status_code = 429
    code = "rate_limited"


class ServiceUnavailable(HexaHubError):
    status_code = 503
    code = "unavailable"


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    503: "unavailable",
}


class ErrorInfo(BaseModel):
    code: str = Field(description="A stable, machine-readable name, e.g. `not_found`")
    message: str = Field(description="What went wrong and, where it helps, what to do")
    details: Any = Field(
        None,
        description="More about the error where there is more to say; for validation "
        "errors a list of `{field, problem}`",
    )


class ErrorBody(BaseModel):
    """The body of every error answered outside `/v1`."""

    error: ErrorInfo


INTERNAL_ERROR_MESSAGE = "internal error; the server log has the details under this request's id"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    problems = []
    for item in exc.errors():
        location = ".".join(str(part) for part in item.get("loc", ()))
        problems.append({"field": location, "problem": item.get("msg", "invalid")})
    if any(item.get("type") == "json_invalid" for item in exc.errors()):
        return "request body is not valid JSON", problems
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
    return f"invalid request: {summary}", problems


async def _hexahub_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HexaHubError)
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route matches {request.method} {request.url.path}"
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
        # No route lists methods for a mounted static directory, which serves GET and HEAD.
        headers["Allow"] = ", ".join(allowed_methods(request)) or "GET, HEAD"
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this request's path. The router's own `Allow`
    names only the methods of the first route whose path matched, while GET and POST of
    one path are usually two routes."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        if route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods |= route.methods
    return sorted(methods)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, problems = _validation_message(exc)
    status = 400 if message.startswith("request body is not valid JSON") else 422
    code = "invalid_json" if status == 400 else "validation_error"
    return JSONResponse(error_body(code, message, problems), status_code=status)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Only reached for errors outside RequestContextMiddleware, which answers (and logs
    # with the request id) everything raised inside it.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body("internal_error", INTERNAL_ERROR_MESSAGE), status_code=500)


ErrorShape = Callable[[Exception], JSONResponse]


def register_error_shape(app: FastAPI, prefix: str, shape: ErrorShape) -> None:
    """Answer errors raised outside routing (the per-IP limit, say) on paths under
    `prefix` in another shape: the /v1 APIs register their clients' shapes here, so core
    need not know them. The longest matching prefix wins."""
    shapes: list[tuple[str, ErrorShape]] = getattr(app.state, "error_shapes", [])
    shapes = sorted([*shapes, (prefix, shape)], key=lambda item: -len(item[0]))
    app.state.error_shapes = shapes


def error_response(scope: Scope, exc: HexaHubError) -> JSONResponse:
    """The answer to `exc` for a request that never reached its route."""
    path = scope.get("path", "")
    state = getattr(scope.get("app"), "state", None)
    for prefix, shape in getattr(state, "error_shapes", []):
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return shape(exc)
    return JSONResponse(
        error_body(exc.code, exc.message, exc.details),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HexaHubError, _hexahub_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
