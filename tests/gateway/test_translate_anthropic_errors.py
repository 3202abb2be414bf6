"""Error bodies of both APIs and the mapping between them."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types.shared import ErrorResponse
from openai.types.shared import ErrorObject

from hexahub.gateway.translate.anthropic import (
    StreamError,
    TranslationError,
    anthropic_error,
    anthropic_error_from_openai,
    openai_error,
    openai_error_from_anthropic,
)


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (529, "overloaded_error"),
        (409, "invalid_request_error"),
        (422, "invalid_request_error"),
        (502, "api_error"),
    ],
)
def test_anthropic_error_body_follows_the_status(status: int, error_type: str) -> None:
    body = anthropic_error(status, "something went wrong")
    assert body == {
        "type": "error",
        "error": {"type": error_type, "message": "something went wrong"},
    }
    if error_type != "request_too_large":  # documented, but absent from the SDK's union
        assert ErrorResponse.model_validate(body).error.type == error_type


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (503, "server_error"),
    ],
)
def test_openai_error_body_follows_the_status(status: int, error_type: str) -> None:
    body = openai_error(status, "nope")
    assert body == {"error": {"message": "nope", "type": error_type, "param": None, "code": None}}
    ErrorObject.model_validate(body["error"])


def test_openai_error_takes_type_code_and_param() -> None:
    assert openai_error(
        400, "bad", type_="invalid_request_error", code="context_length_exceeded", param="messages"
    ) == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


@pytest.mark.parametrize(
    ("status", "body", "expected_status", "expected"),
    [
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            503,
            {
                "message": "Overloaded",
                "type": "server_error",
                "param": None,
                "code": "overloaded_error",
            },
        ),
        (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "messages.0.content: Field required",
                },
            },
            400,
            {
                "message": "messages.0.content: Field required",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            },
        ),
        (
            404,
            {"type": "error", "error": {"type": "not_found_error", "message": "model: x"}},
            404,
            {
                "message": "model: x",
                "type": "invalid_request_error",
                "param": None,
                "code": "not_found_error",
            },
        ),
        (
            429,
            {
                "type": "error",
                "error": {"type": "rate_limit_error", "message": "slow down"},
                "request_id": "req_1",
            },
            429,
            {"message": "slow down", "type": "rate_limit_error", "param": None, "code": None},
        ),
        (
            413,
            "<html>Request Entity Too Large</html>",
            413,
            {
                "message": "<html>Request Entity Too Large</html>",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            },
        ),
        (
            500,
            None,
            500,
            {
                "message": "the upstream model server answered HTTP 500 without an error message",
                "type": "server_error",
                "param": None,
                "code": None,
            },
        ),
    ],
)
def test_anthropic_errors_become_openai_errors(
    status: int, body: Any, expected_status: int, expected: dict[str, Any]
) -> None:
    assert openai_error_from_anthropic(status, body) == (expected_status, {"error": expected})


@pytest.mark.parametrize(
    ("status", "body", "expected_status", "expected"),
    [
        (
            401,
            {
                "error": {
                    "message": "Incorrect API key provided",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            401,
            {"type": "authentication_error", "message": "Incorrect API key provided"},
        ),
        (
            503,
            {
                "error": {
                    "message": "The engine is currently overloaded",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            },
            529,
            {"type": "overloaded_error", "message": "The engine is currently overloaded"},
        ),
        (
            404,
            {"error": "model 'llama9' not found"},  # Ollama
            404,
            {"type": "not_found_error", "message": "model 'llama9' not found"},
        ),
        (
            422,
            {"detail": "temperature must be at most 2"},  # FastAPI-based servers
            422,
            {"type": "invalid_request_error", "message": "temperature must be at most 2"},
        ),
        (
            429,
            {
                "error": {
                    "message": "You exceeded your current quota",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
            429,
            {"type": "rate_limit_error", "message": "You exceeded your current quota"},
        ),
        (502, "Bad Gateway", 502, {"type": "api_error", "message": "Bad Gateway"}),
    ],
)
def test_openai_errors_become_anthropic_errors(
    status: int, body: Any, expected_status: int, expected: dict[str, Any]
) -> None:
    out_status, out = anthropic_error_from_openai(status, body)
    assert (out_status, out) == (expected_status, {"type": "error", "error": expected})
    ErrorResponse.model_validate(out)


def test_translation_error_names_its_field() -> None:
    error = TranslationError("is not valid JSON", param="messages[1].tool_calls[0].id")
    assert str(error) == "messages[1].tool_calls[0].id: is not valid JSON"
    assert error.param == "messages[1].tool_calls[0].id"
    assert isinstance(error, ValueError)
    assert str(TranslationError("plain")) == "plain"


@pytest.mark.parametrize(
    ("error_type", "status"),
    [
        ("overloaded_error", 529),
        ("rate_limit_error", 429),
        ("api_error", 500),
        ("something_new", 500),
    ],
)
def test_stream_error_knows_its_status(error_type: str, status: int) -> None:
    error = StreamError(error_type, "msg")
    assert error.status == status
    assert str(error) == f"{error_type}: msg"
