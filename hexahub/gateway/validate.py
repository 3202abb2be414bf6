"""Checking /v1 request bodies before anything is sent upstream.

Bodies are plain dicts (the gateway forwards fields it does not know, as clients expect);
these checks cover what must be right for any provider and name the offending field, in
the API's own way (`messages[0].content` on the OpenAI routes, `messages.0.content` on
the Anthropic ones).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from hexahub.core.errors import BadRequest

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
# The content part types of OpenAI's chat API; anything else is refused here rather than
# forwarded for a provider to ignore or misread.
CONTENT_PART_TYPES = ("text", "image_url", "input_audio", "file", "refusal")
MAX_MESSAGES = 10_000
# Deeper bodies are refused: no real request nests this far (tool schemas included), and
# every later step that walks or re-encodes a body then stays far from Python's recursion
# limit.
MAX_JSON_DEPTH = 100

Style = Literal["openai", "anthropic"]
# The JSON escapes of UTF-16 surrogates (\ud800-\udfff), paired or not.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


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


def parse_body(raw: bytes, *, style: Style = "openai") -> dict[str, Any]:
    """The JSON object a /v1 request sent, refused (400, naming the field) when it is not
    one, nests deeper than MAX_JSON_DEPTH, or holds text that is not valid Unicode (an
    unpaired surrogate escape such as "\\ud800", which no provider could be sent)."""
    if not raw:
        raise InvalidRequest("the request body is empty; send a JSON object")
    try:
        body = json.loads(raw)
    except RecursionError as exc:
        raise InvalidRequest(f"the request body nests deeper than {MAX_JSON_DEPTH} levels") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from exc
    found = require_object(body)
    # Walking the whole body costs time on every request; only a body with that many
    # brackets can nest that deep, and only a surrogate escape can leave one unpaired.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH or _SURROGATE_ESCAPE.search(raw):
        _check_tree(found, style)
    return found


def _param(path: tuple[str | int, ...], style: Style) -> str:
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]" if style == "openai" else f".{step}"
        else:
            text += f".{step}" if text else step
    return text or "the request body"


def _valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_tree(body: dict[str, Any], style: Style) -> None:
    """Refuse the first place where `body` nests too deep or holds a lone surrogate.
    Iterative, so any depth that got through the parser is safe to walk."""
    pending: list[tuple[Any, tuple[str | int, ...]]] = [(body, ())]
    while pending:
        value, path = pending.pop()
        if isinstance(value, str):
            if not _valid_text(value):
                raise _fail(
                    _param(path, style),
                    "holds an unpaired UTF-16 surrogate (a \\ud800-\\udfff escape "
                    "without its pair); send valid Unicode text",
                )
            continue
        if not isinstance(value, dict | list):
            continue
        if len(path) >= MAX_JSON_DEPTH:
            # The top-level field is name enough; the full path would be a hundred steps.
            raise _fail(_param(path[:1], style), f"nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, list):
            pending.extend((item, (*path, i)) for i, item in enumerate(value))
            continue
        for key, item in value.items():
            if not _valid_text(key):
                raise _fail(_param(path, style), "has a key with an unpaired UTF-16 surrogate")
            pending.append((item, (*path, key)))


def model_name(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _fail("model", "give the model to use, as a string")
    if len(model) > 200:
        raise _fail("model", "is longer than 200 characters")
    return model


def _whole(value: Any) -> int | None:
    """`value` as an int when it is a whole JSON number (8 or 8.0, as JSON Schema counts
    integers), else None."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _positive_int(body: dict[str, Any], name: str, *, maximum: int = 10_000_000) -> None:
    value = body.get(name)
    if value is None:
        return
    number = _whole(value)
    if number is None or not 1 <= number <= maximum:
        raise _fail(name, f"must be a whole number from 1 to {maximum}")
    body[name] = number  # providers take 8, not 8.0


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _fail(name, f"must be a number from {low:g} to {high:g}")


def _stream_options(body: dict[str, Any]) -> None:
    value = body.get("stream_options")
    if value is None:
        return
    if not isinstance(value, dict):
        raise _fail("stream_options", 'must be an object, like {"include_usage": true}')
    if not isinstance(value.get("include_usage", False), bool):
        raise _fail("stream_options.include_usage", "must be true or false")


def _stop(body: dict[str, Any], name: str = "stop", *, text: bool = True) -> None:
    """`text`: one string may stand for a list of one (OpenAI's stop, not Anthropic's)."""
    value = body.get(name)
    if value is None or (text and isinstance(value, str)):
        return
    if not isinstance(value, list) or len(value) > 16 or not all(isinstance(s, str) for s in value):
        either = "a string or " if text else ""
        raise _fail(name, f"must be {either}a list of at most 16 strings")


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
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        names = {t.get("function", {}).get("name") for t in tool_list or []}
        if not isinstance(name, str) or name not in names:
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
        if part["type"] not in CONTENT_PART_TYPES:
            raise _fail(
                f"{where}[{j}].type",
                f"{part['type'][:40]!r} is not a content part type; use one of "
                + ", ".join(CONTENT_PART_TYPES),
            )
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise _fail(f"{where}[{j}].text", "must be a string")
        if part["type"] == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
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
        if not isinstance(role, str) or role not in ROLES:
            raise _fail(f"{where}.role", f"must be one of {', '.join(sorted(ROLES))}")
        calls = message.get("tool_calls")
        if role == "assistant" and calls is not None and not isinstance(calls, list):
            raise _fail(f"{where}.tool_calls", "must be a list")
        _content(message.get("content"), f"{where}.content", str(role))
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise _fail(f"{where}.tool_call_id", "is required on tool messages")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _fail("stream", "must be true or false")
    n = body.get("n")
    if n is not None and (n != 1 or isinstance(n, bool)):
        raise _fail("n", "only n=1 is supported")
    _positive_int(body, "max_tokens")
    _positive_int(body, "max_completion_tokens")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _stop(body)
    _stream_options(body)
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
    _stream_options(body)


def embeddings_request(body: dict[str, Any]) -> None:
    model_name(body)
    value = body.get("input")
    if isinstance(value, str) and value:
        return
    if isinstance(value, list) and value and len(value) <= 2048:
        if all(isinstance(v, str) and v for v in value):
            return
        if all(_whole(v) is not None for v in value):
            body["input"] = [_whole(v) for v in value]
            return
        if all(isinstance(v, list) and v and all(_whole(t) is not None for t in v) for v in value):
            body["input"] = [[_whole(t) for t in v] for v in value]
            return
    raise _fail(
        "input", "must be a text or a list of 1 to 2048 texts (or token arrays), none of them empty"
    )


def anthropic_request(body: dict[str, Any]) -> None:
    """Check an Anthropic messages body (max_tokens is required there)."""
    if body.get("max_tokens") is None:
        model_name(body)
        raise _fail("max_tokens", "is required")
    _positive_int(body, "max_tokens")
    count_tokens_request(body)


def count_tokens_request(body: dict[str, Any]) -> None:
    """Check what an Anthropic messages body and a count_tokens body share."""
    model_name(body)
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
        if content == []:
            raise _fail(f"{where}.content", "holds no content block")
        if isinstance(content, list):
            for j, block in enumerate(content):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    raise _fail(f"{where}.content.{j}", "must be a content block with a type")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise _fail("system", "must be a string or a list of text blocks")
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    _stop(body, "stop_sequences", text=False)
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
            if tool.get("type") in (None, "custom") and (
                not isinstance(schema, dict) or schema.get("type") != "object"
            ):
                raise _fail(f"tools.{i}.input_schema", "must be a JSON Schema of type object")
    _anthropic_tool_choice(body.get("tool_choice"))


def _anthropic_tool_choice(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or value.get("type") not in ("auto", "any", "tool", "none"):
        raise _fail("tool_choice", 'must be {"type": "auto"}, "any", "tool" or "none"')
    if value["type"] == "tool" and not isinstance(value.get("name"), str):
        raise _fail("tool_choice.name", 'is required with type "tool"')
