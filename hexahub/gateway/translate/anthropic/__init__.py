"""Translation between the OpenAI Chat Completions format (the gateway's canonical
shape) and Anthropic's Messages format, both ways: requests, complete replies, streams
and errors. Pure functions and per-stream state machines over plain JSON dicts; no I/O.
"""

from hexahub.gateway.translate.anthropic.errors import (
    StreamError,
    TranslationError,
    anthropic_error,
    anthropic_error_from_openai,
    openai_error,
    openai_error_from_anthropic,
)
from hexahub.gateway.translate.anthropic.requests import (
    DEFAULT_MAX_TOKENS,
    JSON_OBJECT_INSTRUCTION,
    TOOL_ERROR_PREFIX,
    anthropic_request_to_openai,
    openai_request_to_anthropic,
)
from hexahub.gateway.translate.anthropic.responses import (
    anthropic_response_to_openai,
    openai_response_to_anthropic,
)
from hexahub.gateway.translate.anthropic.streams import (
    SSE_OPENAI_DONE,
    AnthropicToOpenAIStream,
    OpenAIToAnthropicStream,
    sse_anthropic,
    sse_openai,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "JSON_OBJECT_INSTRUCTION",
    "SSE_OPENAI_DONE",
    "TOOL_ERROR_PREFIX",
    "AnthropicToOpenAIStream",
    "OpenAIToAnthropicStream",
    "StreamError",
    "TranslationError",
    "anthropic_error",
    "anthropic_error_from_openai",
    "anthropic_request_to_openai",
    "anthropic_response_to_openai",
    "openai_error",
    "openai_error_from_anthropic",
    "openai_request_to_anthropic",
    "openai_response_to_anthropic",
    "sse_anthropic",
    "sse_openai",
]
