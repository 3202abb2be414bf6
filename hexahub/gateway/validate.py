"""Checking /v1 request bodies before anything is sent upstream.

Bodies are plain dicts (the gateway forwards fields it does not know, as clients expect);
these checks cover what must be right for any provider and name the offending field.
"""

from __future__ import annotations

from typing import Any

from hexahub.core.errors import BadRequest

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
MAX_MESSAGES = 10_000


class InvalidRequest(BadRequest):
    code = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _fail(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def model_name(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _fail("model", "give the model to use, as a string")
    if len(model) > 200:
        raise _fail("model", "is longer than 200 characters")
    return model


def _positive_int(body: dict[str, Any], name: str, *, maximum: int = 10_000_000) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise _fail(name, f"must be a whole number from 1 to {maximum}")


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _fail(name, f"must be a number from {low:g} to {high:g}")


def _stop(body: dict[str, Any], name: str = "stop") -> None:
    value = body.get(name)
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list) or len(value) > 16 or not all(isinstance(s, str) for s in value):
        raise _fail(name, "must be a string or a list of at most 16 strings")


def tools(value: Any, *, param: str = "tools") -> None:
    if value is None:
        return
    if not isinstance(value, list) or len(value) > 512:
        raise _fail(param, "must be a list of at most 512 tools")
    for i, tool in enumerate(value):
        where = f"{param}[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise _fail(where, 'must be {"type": "function", "function": {...}}')
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _fail(f"{where}.function", "is missing")
        name = function.get("name")
        if not isinstance(name, str) or not name or len(name) > 64:
            raise _fail(f"{where}.function.name", "must be a name of 1 to 64 characters")
        parameters = function.get("parameters")
        if parameters is not None and (
            not isinstance(parameters, dict) or parameters.get("type", "object") != "object"
        ):
            raise _fail(f"{where}.function.parameters", "must be a JSON Schema of type object")


def tool_choice(value: Any, tool_list: Any) -> None:
    if value is None or value in ("auto", "none", "required"):
        return
    if isinstance(value, dict) and value.get("type") == "function":
        name = (value.get("function") or {}).get("name")
        names = {t.get("function", {}).get("name") for t in tool_list or []}
        if name not in names:
            raise _fail("tool_choice", f"names the tool {name!r}, which is not in tools")
        return
    raise _fail("tool_choice", 'must be "auto", "none", "required" or a named function')


def _content(value: Any, where: str, role: str) -> None:
    if value is None:
        if role in ("assistant",):
            return
        raise _fail(where, "is missing")
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise _fail(where, "must be a string or a list of content parts")
    for j, part in enumerate(value):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _fail(f"{where}[{j}]", "must be an object with a type")
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise _fail(f"{where}[{j}].text", "must be a string")
        if part["type"] == "image_url":
            url = (part.get("image_url") or {}).get("url")
            if not isinstance(url, str) or not url.startswith(("data:", "http://", "https://")):
                raise _fail(f"{where}[{j}].image_url.url", "must be a data: or http(s) URL")


def chat_request(body: dict[str, Any]) -> None:
    """Check an OpenAI chat completions body."""
    model_name(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _fail("messages", "must be a non-empty list")
    if len(messages) > MAX_MESSAGES:
        raise _fail("messages", f"has more than {MAX_MESSAGES} messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _fail(where, "must be an object")
        role = message.get("role")
        if role not in ROLES:
            raise _fail(f"{where}.role", f"must be one of {', '.join(sorted(ROLES))}")
        if role == "assistant" and message.get("tool_calls"):
            if not isinstance(message["tool_calls"], list):
                raise _fail(f"{where}.tool_calls", "must be a list")
        else:
            _content(message.get("content"), f"{where}.content", str(role))
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise _fail(f"{where}.tool_call_id", "is required on tool messages")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _fail("stream", "must be true or false")
    n = body.get("n")
    if n is not None and n != 1:
        raise _fail("n", "only n=1 is supported")
    _positive_int(body, "max_tokens")
    _positive_int(body, "max_completion_tokens")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _stop(body)
    tools(body.get("tools"))
    tool_choice(body.get("tool_choice"), body.get("tools"))


def completion_request(body: dict[str, Any]) -> None:
    model_name(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if not prompt or len(prompt) > 1 or not isinstance(prompt[0], str):
            raise _fail("prompt", "give one prompt string (batches are not supported)")
    elif not isinstance(prompt, str):
        raise _fail("prompt", "must be a string")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _fail("stream", "must be true or false")
    _positive_int(body, "max_tokens")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _stop(body)


def embeddings_request(body: dict[str, Any]) -> None:
    model_name(body)
    value = body.get("input")
    if isinstance(value, str):
        return
    if isinstance(value, list) and value and len(value) <= 2048:
        if all(isinstance(v, str) for v in value):
            return
        if all(isinstance(v, int) for v in value):
            return
        if all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value):
            return
    raise _fail("input", "must be a string or a list of 1 to 2048 strings (or token arrays)")


def anthropic_request(body: dict[str, Any]) -> None:
    """Check an Anthropic messages body (max_tokens is required there)."""
    model_name(body)
    if "max_tokens" not in body:
        raise _fail("max_tokens", "is required")
    _positive_int(body, "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _fail("messages", "must be a non-empty list")
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _fail(f"{where}.role", 'must be "user" or "assistant"')
        content = message.get("content")
        if not isinstance(content, str | list):
            raise _fail(f"{where}.content", "must be a string or a list of content blocks")
        if isinstance(content, list):
            for j, block in enumerate(content):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    raise _fail(f"{where}.content.{j}", "must be a content block with a type")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise _fail("system", "must be a string or a list of text blocks")
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    _stop(body, "stop_sequences")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _fail("stream", "must be true or false")
    tool_list = body.get("tools")
    if tool_list is not None:
        if not isinstance(tool_list, list):
            raise _fail("tools", "must be a list")
        for i, tool in enumerate(tool_list):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                raise _fail(f"tools.{i}.name", "is required")
            schema = tool.get("input_schema")
            if "type" not in tool and (
                not isinstance(schema, dict) or schema.get("type") != "object"
            ):
                raise _fail(f"tools.{i}.input_schema", "must be a JSON Schema of type object")
