"""Errors both ways: the exceptions the translators raise, and each API's error body.

OpenAI answers `{"error": {"message", "type", "param", "code"}}`; Anthropic answers
`{"type": "error", "error": {"type", "message"}}`, where the type follows the HTTP status
(400 invalid_request_error ... 529 overloaded_error). When an error crosses from one API
to the other the status is kept, except for "overloaded": Anthropic says 529, which
generic HTTP clients and proxies do not know, and OpenAI-style servers say 503 for the
same condition, so those two are swapped. Information the target shape has no field for
(Anthropic's error type seen by an OpenAI client) travels in OpenAI's `code`.
"""

from __future__ import annotations

from typing import Any

from hexahub.gateway.translate.anthropic.wire import JSON

ANTHROPIC_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ANTHROPIC_STATUS_BY_TYPE: dict[str, int] = {t: s for s, t in ANTHROPIC_TYPE_BY_STATUS.items()}

OPENAI_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

ANTHROPIC_OVERLOADED_STATUS = 529
OPENAI_OVERLOADED_STATUS = 503


class TranslationError(ValueError):
    """A request cannot be expressed in the other API. The gateway answers 400.

    `param` names the offending field the way the client's own API names fields
    (`messages[2].tool_calls[0].function.arguments`, `messages.1.content.0`).
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(f"{param}: {message}" if param else message)
        self.param = param
        self.detail = message


class StreamError(Exception):
    """An upstream stream reported an error or broke off before its end.

    Carries Anthropic's error type either way, so the gateway can pick the status and
    the body for whichever API its client speaks.
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message

    @property
    def status(self) -> int:
        """The HTTP status Anthropic documents for this error type (500 when unknown)."""
        return ANTHROPIC_STATUS_BY_TYPE.get(self.error_type, 500)


def anthropic_error_type(status: int) -> str:
    if status in ANTHROPIC_TYPE_BY_STATUS:
        return ANTHROPIC_TYPE_BY_STATUS[status]
    # Anthropic documents invalid_request_error for 4xx statuses it does not list.
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def openai_error_type(status: int) -> str:
    if status in OPENAI_TYPE_BY_STATUS:
        return OPENAI_TYPE_BY_STATUS[status]
    return "invalid_request_error" if 400 <= status < 500 else "server_error"


def anthropic_error(status: int, message: str) -> JSON:
    """Anthropic's error body for an HTTP status."""
    return {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}}


def openai_error(
    status: int,
    message: str,
    type_: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> JSON:
    """OpenAI's error body; the type follows the status unless given."""
    return {
        "error": {
            "message": message,
            "type": type_ or openai_error_type(status),
            "param": param,
            "code": code,
        }
    }


def openai_error_from_anthropic(status: int, body: Any) -> tuple[int, JSON]:
    """(status, body) for an OpenAI client, from an Anthropic error answer."""
    error_type, message = _anthropic_error_parts(status, body)
    out_status = OPENAI_OVERLOADED_STATUS if status == ANTHROPIC_OVERLOADED_STATUS else status
    type_ = openai_error_type(out_status)
    code = error_type if error_type and error_type != type_ else None
    return out_status, openai_error(out_status, message, type_, code)


def anthropic_error_from_openai(status: int, body: Any) -> tuple[int, JSON]:
    """(status, body) for an Anthropic client, from an OpenAI(-compatible) error answer."""
    message = _openai_error_message(status, body)
    out_status = ANTHROPIC_OVERLOADED_STATUS if status == OPENAI_OVERLOADED_STATUS else status
    return out_status, anthropic_error(out_status, message)


def _anthropic_error_parts(status: int, body: Any) -> tuple[str | None, str]:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            error_type = error.get("type")
            message = error.get("message")
            return (
                error_type if isinstance(error_type, str) else None,
                message if isinstance(message, str) and message else _fallback(status),
            )
    if isinstance(body, str) and body.strip():
        return None, body.strip()
    return None, _fallback(status)


def _openai_error_message(status: int, body: Any) -> str:
    """The message of an OpenAI-shaped error, or of the shapes compatible servers use instead
    (Ollama's `{"error": "..."}`, FastAPI's `{"detail": ...}`, plain text)."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        for key in ("message", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    if isinstance(body, str) and body.strip():
        return body.strip()
    return _fallback(status)


def _fallback(status: int) -> str:
    return f"the upstream model server answered HTTP {status} without an error message"
