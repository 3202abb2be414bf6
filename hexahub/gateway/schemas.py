"""The /v1 request and error shapes, as the OpenAPI document describes them.

The routes read their bodies themselves (hexahub.gateway.validate), because the gateway
forwards fields it does not know, as clients expect; these models say the same rules in
JSON Schema so that clients and generated SDKs know them. They document, they do not
validate: the API fuzz test (tests/test_api_fuzz.py) keeps the two in step.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hexahub.gateway.validate import MAX_MESSAGES

MAX_MODEL_NAME = 200
MAX_TOKENS = 10_000_000
MAX_STOP = 16
MAX_TOOLS = 512
MAX_TOOL_NAME = 64
MAX_EMBEDDING_INPUTS = 2048

ModelName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_MODEL_NAME,
        pattern=r"\S",
        description="A model name of this installation (GET /v1/models lists them)",
        examples=["local-chat"],
    ),
]
TokenCount = Annotated[int, Field(ge=1, le=MAX_TOKENS)]
Stop = str | Annotated[list[str], Field(max_length=MAX_STOP)]


class Open(BaseModel):
    """Fields not named here are forwarded to the provider as they are."""

    model_config = ConfigDict(extra="allow")


# --- errors ---------------------------------------------------------------------------


class OpenAIErrorInfo(BaseModel):
    message: str
    type: str = Field(description="e.g. invalid_request_error, authentication_error")
    param: str | None = Field(description="The offending field, where one is to blame")
    code: str | None


class OpenAIError(BaseModel):
    """Errors of the OpenAI-compatible routes, as OpenAI's SDKs expect them."""

    error: OpenAIErrorInfo


class AnthropicErrorInfo(BaseModel):
    type: str = Field(description="e.g. invalid_request_error, authentication_error")
    message: str


class AnthropicError(BaseModel):
    """Errors of the Anthropic-compatible routes, as Anthropic's SDKs expect them."""

    type: Literal["error"]
    error: AnthropicErrorInfo


# --- OpenAI chat completions -------------------------------------------------------------


class TextPart(Open):
    type: Literal["text"]
    text: str


class ImageURL(Open):
    url: str = Field(pattern=r"^(data:|https?://)", description="A data: or http(s) URL")


class ImagePart(Open):
    type: Literal["image_url"]
    image_url: ImageURL


class OtherPart(Open):
    type: Literal["input_audio", "file", "refusal"]


ContentPart = Annotated[TextPart | ImagePart | OtherPart, Field(discriminator="type")]
Content = str | list[ContentPart]


class SystemMessage(Open):
    role: Literal["system", "developer", "user", "function"]
    content: Content


class AssistantMessage(Open):
    role: Literal["assistant"]
    content: Content | None = None
    tool_calls: list[Any] | None = None


class ToolMessage(Open):
    role: Literal["tool"]
    content: Content
    tool_call_id: str


ChatMessage = Annotated[SystemMessage | AssistantMessage | ToolMessage, Field(discriminator="role")]


class FunctionSpec(Open):
    name: str = Field(min_length=1, max_length=MAX_TOOL_NAME)
    parameters: dict[str, Any] | None = Field(
        None,
        description="A JSON Schema of type object (the arguments)",
        json_schema_extra={"properties": {"type": {"const": "object"}}},
    )


class Tool(Open):
    type: Literal["function"] = "function"
    function: FunctionSpec


class NamedFunction(Open):
    name: str = Field(description="One of the names in `tools`")


class NamedToolChoice(Open):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(Open):
    include_usage: bool = False


class ChatCompletionRequest(Open):
    model: ModelName
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = Field(False, description="Answer as text/event-stream chunks")
    stream_options: StreamOptions | None = None
    n: Literal[1] | None = Field(None, description="Only one choice is supported")
    max_tokens: TokenCount | None = None
    max_completion_tokens: TokenCount | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    stop: Stop | None = None
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None


class CompletionRequest(Open):
    model: ModelName
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)] = Field(
        description="One prompt (batches are not supported)"
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: TokenCount | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: Stop | None = None


class EmbeddingsRequest(Open):
    model: ModelName
    input: (
        Annotated[str, Field(min_length=1)]
        | Annotated[
            list[Annotated[str, Field(min_length=1)]],
            Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS),
        ]
        | Annotated[list[int], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
        | Annotated[
            list[Annotated[list[int], Field(min_length=1)]],
            Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS),
        ]
    ) = Field(description="A text, texts, or token arrays")


# --- Anthropic messages -----------------------------------------------------------------


class TextBlock(Open):
    type: Literal["text"]
    text: str


class Base64Source(Open):
    type: Literal["base64"]
    media_type: str
    data: str


class URLSource(Open):
    type: Literal["url"]
    url: str


class ImageBlock(Open):
    type: Literal["image"]
    source: Annotated[Base64Source | URLSource, Field(discriminator="type")]


class PDFSource(Open):
    type: Literal["base64"]
    media_type: Literal["application/pdf"]
    data: str


class PlainTextSource(Open):
    type: Literal["text"]
    data: str


class DocumentBlock(Open):
    type: Literal["document"]
    source: Annotated[PDFSource | PlainTextSource, Field(discriminator="type")]


class ToolResultBlock(Open):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] | None = (
        None
    )


class ToolUseBlock(Open):
    type: Literal["tool_use"]
    id: str
    name: str


class ThinkingBlock(Open):
    """Thinking of an earlier answer; not passed on to other models."""

    type: Literal["thinking", "redacted_thinking"]


UserBlock = Annotated[
    TextBlock | ImageBlock | DocumentBlock | ToolResultBlock, Field(discriminator="type")
]
AssistantBlock = Annotated[TextBlock | ToolUseBlock | ThinkingBlock, Field(discriminator="type")]


class AnthropicUserMessage(Open):
    role: Literal["user"]
    content: str | Annotated[list[UserBlock], Field(min_length=1)]


class AnthropicAssistantMessage(Open):
    role: Literal["assistant"]
    content: str | Annotated[list[AssistantBlock], Field(min_length=1)]


AnthropicMessage = Annotated[
    AnthropicUserMessage | AnthropicAssistantMessage, Field(discriminator="role")
]


class AnthropicTool(Open):
    type: Literal["custom"] | None = Field(None, description="Only custom tools are supported")
    name: str
    input_schema: dict[str, Any] = Field(
        description="A JSON Schema of type object",
        json_schema_extra={"properties": {"type": {"const": "object"}}, "required": ["type"]},
    )


class AnyToolChoice(Open):
    type: Literal["auto", "any", "none"]


class NamedTool(Open):
    type: Literal["tool"]
    name: str = Field(description="One of the names in `tools`")


AnthropicToolChoice = Annotated[AnyToolChoice | NamedTool, Field(discriminator="type")]


class CountTokensRequest(Open):
    model: ModelName
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: TokenCount
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    stop_sequences: Annotated[list[str], Field(max_length=MAX_STOP)] | None = None
    stream: bool = Field(False, description="Answer as text/event-stream events")
