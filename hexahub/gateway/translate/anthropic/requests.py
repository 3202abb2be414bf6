"""Request bodies: Anthropic Messages <-> OpenAI Chat Completions.

Choices made where the two APIs do not line up:

- Text that is a list of separate pieces (system blocks, the text of a tool result, several
  system/developer messages) is joined with a blank line; text that is one continuous
  reply (an assistant turn cut into blocks around tool calls) is joined with nothing, so a
  non-streamed answer reads exactly like its streamed twin.
- Anthropic's tool results sit inside a user turn; OpenAI wants one `tool` message per
  result right after the assistant's tool calls. Results therefore come first, in their
  order, then a user message with the turn's other content, in its order. `is_error` is
  written into the text as TOOL_ERROR_PREFIX, and read back into `is_error` the other way.
- OpenAI's temperature runs 0..2 and Anthropic's 0..1. Values above 1 are clamped to 1
  rather than scaled, so the common 0..1 settings keep their exact meaning.
- `response_format` json_object has no Anthropic switch, so it becomes an instruction at
  the end of the system prompt; json_schema becomes Anthropic's structured output
  (`output_config.format`).
- Parameters with no counterpart are dropped: top_k, thinking and cache_control on the
  way to OpenAI (the real OpenAI API rejects unknown fields such as top_k); penalties,
  logit_bias, seed, logprobs, reasoning_effort, metadata and image `detail` on the way
  to Anthropic. What cannot be dropped without changing the answer (n > 1, audio,
  Anthropic's server tools, the legacy `functions` API) raises TranslationError, which
  the gateway answers as a 400 naming the field.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hexahub.gateway.translate.anthropic.errors import TranslationError
from hexahub.gateway.translate.anthropic.wire import JSON, compact_json

TOOL_ERROR_PREFIX = "[tool error] "
PIECE_SEPARATOR = "\n\n"
JSON_OBJECT_INSTRUCTION = (
    "Reply with a single valid JSON object and nothing else: no prose and no code fences."
)
ANTHROPIC_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
EMPTY_OBJECT_SCHEMA: JSON = {"type": "object", "properties": {}}

_DATA_URL = re.compile(
    r"^data:(?P<media_type>[\w.+-]+/[\w.+-]+)(?:;[^;,]*)*;base64,(?P<data>.*)$", re.DOTALL
)
_MEDIA_TYPE_ALIASES = {"image/jpg": "image/jpeg"}
_SKIPPED_ANTHROPIC_BLOCKS = frozenset({"thinking", "redacted_thinking"})


# --- Anthropic -> OpenAI --------------------------------------------------------------


def anthropic_request_to_openai(body: JSON) -> JSON:
    """An Anthropic Messages request body as the gateway's Chat Completions body."""
    out: JSON = {}
    if "model" in body:
        out["model"] = body["model"]

    messages: list[JSON] = []
    system = _anthropic_system_text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for i, message in enumerate(_list(body.get("messages"), "messages")):
        messages.extend(_anthropic_message_to_openai(message, f"messages.{i}"))
    out["messages"] = messages

    tools = body.get("tools")
    if tools:
        out["tools"] = [
            _anthropic_tool_to_openai(tool, f"tools.{i}")
            for i, tool in enumerate(_list(tools, "tools"))
        ]
        _anthropic_tool_choice_to_openai(body.get("tool_choice"), out)

    for name in ("max_tokens", "temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop_sequences")
    if stop:
        out["stop"] = list(_list(stop, "stop_sequences"))
    if body.get("stream"):
        out["stream"] = True
        # The Anthropic stream ends with token counts, so the canonical stream must too.
        out["stream_options"] = {"include_usage": True}
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    return out


def _anthropic_system_text(system: Any) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    texts = []
    for j, block in enumerate(_list(system, "system")):
        where = f"system.{j}"
        if _block_type(block, where) != "text":
            raise TranslationError("only text blocks can form the system prompt", param=where)
        texts.append(_str(block.get("text"), f"{where}.text"))
    return PIECE_SEPARATOR.join(t for t in texts if t)


def _anthropic_message_to_openai(message: Any, where: str) -> list[JSON]:
    if not isinstance(message, dict):
        raise TranslationError("must be an object with a role and content", param=where)
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise TranslationError('must be "user" or "assistant"', param=f"{where}.role")
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    blocks = _list(content, f"{where}.content")
    if role == "assistant":
        return [_anthropic_assistant_to_openai(blocks, f"{where}.content")]
    return _anthropic_user_to_openai(blocks, f"{where}.content")


def _anthropic_assistant_to_openai(blocks: list[Any], where: str) -> JSON:
    texts: list[str] = []
    tool_calls: list[JSON] = []
    for j, block in enumerate(blocks):
        kind = _block_type(block, f"{where}.{j}")
        if kind == "text":
            texts.append(_str(block.get("text"), f"{where}.{j}.text"))
        elif kind == "tool_use":
            tool_input = block.get("input")
            tool_calls.append(
                {
                    "id": _str(block.get("id"), f"{where}.{j}.id"),
                    "type": "function",
                    "function": {
                        "name": _str(block.get("name"), f"{where}.{j}.name"),
                        "arguments": compact_json(tool_input if tool_input is not None else {}),
                    },
                }
            )
        elif kind not in _SKIPPED_ANTHROPIC_BLOCKS:
            raise _unsupported_block(kind, f"{where}.{j}")
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def _anthropic_user_to_openai(blocks: list[Any], where: str) -> list[JSON]:
    tool_messages: list[JSON] = []
    parts: list[JSON] = []
    for j, block in enumerate(blocks):
        at = f"{where}.{j}"
        kind = _block_type(block, at)
        if kind == "text":
            parts.append({"type": "text", "text": _str(block.get("text"), f"{at}.text")})
        elif kind == "image":
            parts.append(_anthropic_image_to_openai(block, at))
        elif kind == "document":
            parts.append(_anthropic_document_to_openai(block, at))
        elif kind == "tool_result":
            tool_message, images = _anthropic_tool_result_to_openai(block, at)
            tool_messages.append(tool_message)
            parts.extend(images)
        else:
            raise _unsupported_block(kind, at)
    if not parts:
        return tool_messages
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*tool_messages, {"role": "user", "content": parts[0]["text"]}]
    return [*tool_messages, {"role": "user", "content": parts}]


def _anthropic_tool_result_to_openai(block: JSON, where: str) -> tuple[JSON, list[JSON]]:
    """The `tool` message for a tool_result block, plus user content parts for any images
    in it (OpenAI tool messages carry text only, so images follow in the user message)."""
    call_id = _str(block.get("tool_use_id"), f"{where}.tool_use_id")
    content = block.get("content")
    texts: list[str] = []
    images: list[JSON] = []
    if isinstance(content, str):
        texts.append(content)
    elif content is not None:
        for k, item in enumerate(_list(content, f"{where}.content")):
            at = f"{where}.content.{k}"
            kind = _block_type(item, at)
            if kind == "text":
                texts.append(_str(item.get("text"), f"{at}.text"))
            elif kind == "image":
                images.append({"type": "text", "text": f"Image returned by tool call {call_id}:"})
                images.append(_anthropic_image_to_openai(item, at))
            else:
                raise _unsupported_block(kind, at)
    text = PIECE_SEPARATOR.join(t for t in texts if t)
    if block.get("is_error") is True:
        text = TOOL_ERROR_PREFIX + text
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _anthropic_image_to_openai(block: JSON, where: str) -> JSON:
    source = _dict(block.get("source"), f"{where}.source")
    kind = source.get("type")
    if kind == "base64":
        media_type = _str(source.get("media_type"), f"{where}.source.media_type")
        data = _str(source.get("data"), f"{where}.source.data")
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        url = _str(source.get("url"), f"{where}.source.url")
    else:
        raise TranslationError(
            f"image source {kind!r} cannot be forwarded; send the image as base64 or a URL",
            param=f"{where}.source.type",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _anthropic_document_to_openai(block: JSON, where: str) -> JSON:
    source = _dict(block.get("source"), f"{where}.source")
    kind = source.get("type")
    if kind == "base64" and source.get("media_type") == "application/pdf":
        data = _str(source.get("data"), f"{where}.source.data")
        title = block.get("title")
        return {
            "type": "file",
            "file": {
                "file_data": f"data:application/pdf;base64,{data}",
                "filename": title if isinstance(title, str) and title else "document.pdf",
            },
        }
    if kind == "text":
        return {"type": "text", "text": _str(source.get("data"), f"{where}.source.data")}
    raise TranslationError(
        "only base64 PDF and plain-text documents can be forwarded", param=f"{where}.source"
    )


def _anthropic_tool_to_openai(tool: Any, where: str) -> JSON:
    tool = _dict(tool, where)
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise TranslationError(
            f"{kind!r} is one of Anthropic's own tools, which other models cannot run; "
            "define it as a custom tool with an input_schema",
            param=f"{where}.type",
        )
    function: JSON = {"name": _str(tool.get("name"), f"{where}.name")}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    schema = tool.get("input_schema")
    function["parameters"] = schema if isinstance(schema, dict) else dict(EMPTY_OBJECT_SCHEMA)
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _anthropic_tool_choice_to_openai(choice: Any, out: JSON) -> None:
    if choice is None:
        return
    choice = _dict(choice, "tool_choice")
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        name = _str(choice.get("name"), "tool_choice.name")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise TranslationError(
            'must be of type "auto", "any", "tool" or "none"', param="tool_choice.type"
        )
    if kind != "none" and choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False


# --- OpenAI -> Anthropic --------------------------------------------------------------


# For callers that pass no default of their own; the gateway passes its setting
# (HEXAHUB_GATEWAY_DEFAULT_MAX_TOKENS, whose default this is).
DEFAULT_MAX_TOKENS = 4096


def openai_request_to_anthropic(
    body: JSON, *, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> JSON:
    """A Chat Completions body as an Anthropic Messages request body.

    `default_max_tokens` fills Anthropic's required max_tokens when the client gave none.
    """
    n = body.get("n")
    if n is not None and n != 1:
        raise TranslationError("Anthropic models return one choice; n must be 1", param="n")
    for legacy in ("functions", "function_call"):
        if body.get(legacy) is not None:
            raise TranslationError(
                "the legacy functions API is not supported for Anthropic models; "
                "use tools and tool_choice",
                param=legacy,
            )

    out: JSON = {}
    if "model" in body:
        out["model"] = body["model"]

    system_pieces: list[str] = []
    turns: list[JSON] = []
    for i, message in enumerate(_list(body.get("messages"), "messages")):
        where = f"messages[{i}]"
        message = _dict(message, where)
        role = message.get("role")
        if role in ("system", "developer"):
            text = _openai_text(message.get("content"), f"{where}.content")
            if text:
                system_pieces.append(text)
            continue
        if role == "user":
            blocks = _openai_user_blocks(message.get("content"), f"{where}.content")
        elif role == "assistant":
            blocks = _openai_assistant_blocks(message, where)
        elif role == "tool":
            role = "user"
            blocks = [_openai_tool_result(message, where)]
        else:
            raise TranslationError(
                'must be "system", "developer", "user", "assistant" or "tool"',
                param=f"{where}.role",
            )
        if not blocks:
            continue
        # Anthropic requires user and assistant turns to alternate.
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for turn in turns:
        if turn["role"] == "user":
            # Anthropic requires a turn's tool results to come before its other content.
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    _trim_final_assistant(turns)
    if not turns:
        raise TranslationError("holds no user or assistant message with content", param="messages")
    out["messages"] = [_collapse_turn(turn) for turn in turns]

    _openai_response_format(body.get("response_format"), system_pieces, out)
    if system_pieces:
        out["system"] = PIECE_SEPARATOR.join(system_pieces)

    tools = body.get("tools")
    if tools:
        out["tools"] = [
            _openai_tool_to_anthropic(tool, f"tools[{i}]")
            for i, tool in enumerate(_list(tools, "tools"))
        ]
        _openai_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"), out)

    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    out["max_tokens"] = max_tokens if max_tokens is not None else default_max_tokens

    stop = body.get("stop")
    stop_sequences = [stop] if isinstance(stop, str) else _list(stop or [], "stop")
    stop_sequences = [s for s in stop_sequences if isinstance(s, str) and s]
    if stop_sequences:
        out["stop_sequences"] = stop_sequences
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        out["temperature"] = min(max(float(temperature), 0.0), 1.0)
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if body.get("stream"):
        out["stream"] = True
    return out


def _openai_text(content: Any, where: str) -> str:
    """The text of system/developer/tool content: a string or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(_list(content, where)):
        kind = _block_type(part, f"{where}[{j}]")
        if kind not in ("text", "refusal"):
            raise TranslationError("only text parts are accepted here", param=f"{where}[{j}]")
        texts.append(_str(part.get(kind), f"{where}[{j}].{kind}"))
    return "".join(texts)


def _text_block(text: str) -> list[JSON]:
    # Anthropic rejects empty and whitespace-only text blocks.
    return [{"type": "text", "text": text}] if text.strip() else []


def _openai_user_blocks(content: Any, where: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return _text_block(content)
    blocks: list[JSON] = []
    for j, part in enumerate(_list(content, where)):
        at = f"{where}[{j}]"
        kind = _block_type(part, at)
        if kind == "text":
            blocks.extend(_text_block(_str(part.get("text"), f"{at}.text")))
        elif kind == "image_url":
            blocks.append(_openai_image_block(part, at))
        elif kind == "file":
            blocks.append(_openai_file_block(part, at))
        else:
            raise TranslationError(
                f"{kind!r} content is not supported by Anthropic models", param=f"{at}.type"
            )
    return blocks


def _openai_image_block(part: JSON, where: str) -> JSON:
    image = part.get("image_url")
    url = image if isinstance(image, str) else _dict(image, f"{where}.image_url").get("url")
    url = _str(url, f"{where}.image_url.url")
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    match = _DATA_URL.match(url)
    if not match:
        raise TranslationError(
            "must be an http(s) URL or a base64 data: URL", param=f"{where}.image_url.url"
        )
    media_type = match["media_type"].lower()
    media_type = _MEDIA_TYPE_ALIASES.get(media_type, media_type)
    if media_type not in ANTHROPIC_IMAGE_TYPES:
        raise TranslationError(
            f"{media_type} images are not accepted by Anthropic; send JPEG, PNG, GIF or WebP",
            param=f"{where}.image_url.url",
        )
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type, "data": match["data"]},
    }


def _openai_file_block(part: JSON, where: str) -> JSON:
    file = _dict(part.get("file"), f"{where}.file")
    match = _DATA_URL.match(str(file.get("file_data") or ""))
    if not match or match["media_type"].lower() != "application/pdf":
        raise TranslationError(
            "only PDF files sent inline as a base64 data: URL are supported", param=f"{where}.file"
        )
    block: JSON = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": match["data"]},
    }
    if isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return block


def _openai_assistant_blocks(message: JSON, where: str) -> list[JSON]:
    if message.get("function_call") is not None:
        raise TranslationError(
            "the legacy function_call is not supported; use tool_calls",
            param=f"{where}.function_call",
        )
    blocks = _text_block(_openai_text(message.get("content"), f"{where}.content"))
    for j, call in enumerate(_list(message.get("tool_calls") or [], f"{where}.tool_calls")):
        at = f"{where}.tool_calls[{j}]"
        call = _dict(call, at)
        if call.get("type", "function") != "function":
            raise TranslationError("only function tool calls are supported", param=f"{at}.type")
        function = _dict(call.get("function"), f"{at}.function")
        blocks.append(
            {
                "type": "tool_use",
                "id": _str(call.get("id"), f"{at}.id"),
                "name": _str(function.get("name"), f"{at}.function.name"),
                "input": _parse_arguments(function.get("arguments"), f"{at}.function.arguments"),
            }
        )
    return blocks


def _parse_arguments(arguments: Any, where: str) -> JSON:
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        return {}  # clients send "" for functions that take no arguments
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        raise TranslationError("must be a JSON string", param=where)
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise TranslationError(
            f"is not valid JSON ({exc.msg} at character {exc.pos})", param=where
        ) from exc
    except RecursionError as exc:
        raise TranslationError("nests too deeply to be read as JSON", param=where) from exc
    if not isinstance(parsed, dict):
        raise TranslationError(
            "must encode a JSON object, as Anthropic tool input is one", param=where
        )
    return parsed


def _openai_tool_result(message: JSON, where: str) -> JSON:
    text = _openai_text(message.get("content"), f"{where}.content")
    block: JSON = {
        "type": "tool_result",
        "tool_use_id": _str(message.get("tool_call_id"), f"{where}.tool_call_id"),
    }
    if text.startswith(TOOL_ERROR_PREFIX):
        text = text[len(TOOL_ERROR_PREFIX) :]
        block["is_error"] = True
    if text:
        block["content"] = text
    return block


def _trim_final_assistant(turns: list[JSON]) -> None:
    """Anthropic rejects a final (prefill) assistant turn that ends in whitespace."""
    if not turns or turns[-1]["role"] != "assistant":
        return
    blocks = turns[-1]["content"]
    if blocks[-1]["type"] == "text":
        text = blocks[-1]["text"].rstrip()
        if text:
            blocks[-1] = {**blocks[-1], "text": text}
        else:
            blocks.pop()
    if not blocks:
        turns.pop()


def _collapse_turn(turn: JSON) -> JSON:
    """A turn that is one text block is sent as a plain string, as clients usually write it."""
    blocks = turn["content"]
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        return {"role": turn["role"], "content": blocks[0]["text"]}
    return turn


def _openai_response_format(value: Any, system_pieces: list[str], out: JSON) -> None:
    if value is None:
        return
    kind = _dict(value, "response_format").get("type")
    if kind == "text":
        return
    if kind == "json_object":
        system_pieces.append(JSON_OBJECT_INSTRUCTION)
    elif kind == "json_schema":
        spec = _dict(value.get("json_schema"), "response_format.json_schema")
        schema = _dict(spec.get("schema"), "response_format.json_schema.schema")
        out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    else:
        raise TranslationError(
            'must be of type "text", "json_object" or "json_schema"', param="response_format.type"
        )


def _openai_tool_to_anthropic(tool: Any, where: str) -> JSON:
    tool = _dict(tool, where)
    if tool.get("type", "function") != "function":
        raise TranslationError(
            "only function tools are supported for Anthropic models", param=f"{where}.type"
        )
    function = _dict(tool.get("function"), f"{where}.function")
    out: JSON = {"name": _str(function.get("name"), f"{where}.function.name")}
    if isinstance(function.get("description"), str):
        out["description"] = function["description"]
    schema = function.get("parameters")
    out["input_schema"] = schema if isinstance(schema, dict) else dict(EMPTY_OBJECT_SCHEMA)
    if isinstance(function.get("strict"), bool):
        out["strict"] = function["strict"]
    return out


def _openai_tool_choice(choice: Any, parallel: Any, out: JSON) -> None:
    anthropic_choice: JSON | None
    if choice is None:
        anthropic_choice = None
    elif choice == "auto":
        anthropic_choice = {"type": "auto"}
    elif choice == "required":
        anthropic_choice = {"type": "any"}
    elif choice == "none":
        # Kept as a choice rather than by dropping the tools: earlier turns may hold
        # tool_use blocks, which Anthropic only accepts when the tools are defined.
        anthropic_choice = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        function = _dict(choice.get("function"), "tool_choice.function")
        anthropic_choice = {
            "type": "tool",
            "name": _str(function.get("name"), "tool_choice.function.name"),
        }
    else:
        raise TranslationError(
            'must be "auto", "required", "none" or a named function', param="tool_choice"
        )
    if parallel is False:
        anthropic_choice = anthropic_choice or {"type": "auto"}
        if anthropic_choice["type"] != "none":
            anthropic_choice["disable_parallel_tool_use"] = True
    if anthropic_choice is not None:
        out["tool_choice"] = anthropic_choice


# --- shape checks that name the field -------------------------------------------------


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise TranslationError("must be a list", param=where)
    return value


def _dict(value: Any, where: str) -> JSON:
    if not isinstance(value, dict):
        raise TranslationError("must be an object", param=where)
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise TranslationError("must be a string", param=where)
    return value


def _block_type(block: Any, where: str) -> str:
    return _str(_dict(block, where).get("type"), f"{where}.type")


def _unsupported_block(kind: str, where: str) -> TranslationError:
    return TranslationError(
        f"{kind!r} blocks cannot be translated for this model", param=f"{where}.type"
    )


__all__: list[str] = [
    "JSON_OBJECT_INSTRUCTION",
    "TOOL_ERROR_PREFIX",
    "anthropic_request_to_openai",
    "openai_request_to_anthropic",
]
